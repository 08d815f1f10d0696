"""Authentication and authorization: who is calling (``Principal``) and what they may do (scopes)."""

from registry.auth.scopes import ADMIN, Principal, granted_permissions, principal_of

__all__ = ("ADMIN", "Principal", "granted_permissions", "principal_of")
