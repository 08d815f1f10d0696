"""SMART scopes and the authenticated caller.

Routes declare what they need in their ``RouteSpec``: ``scopes=("system/Basic.rs", …)`` (every entry
is required) or ``public=True`` (no token at all). A granted scope set satisfies a
requirement when it holds every permission letter the requirement names, for that resource or
for ``*``; ``admin`` satisfies every requirement.

Spellings accepted in tokens and client registrations:

- SMART v2: ``system/Basic.cu``, ``system/*.rs``: letters from ``cruds``, in that order;
- SMART v1: ``system/Basic.read`` (= ``rs``), ``system/Basic.write`` (= ``cud``),
  ``system/Basic.*`` (= ``cruds``);
- ``admin``: the operator scope.

``patient/`` and ``user/`` scopes grant nothing here (this is a backend service API), and v2
scopes with query parameters (``system/Basic.rs?category=…``) are not honoured: they would
promise a finer restriction than this server enforces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from registry import errors
from registry.route import PRINCIPAL_KEY

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

__all__ = (
    "ADMIN",
    "PRINCIPAL_KEY",
    "Principal",
    "caller_of",
    "granted_permissions",
    "is_scope",
    "may_hold",
    "principal_of",
    "satisfies",
)

ADMIN = "admin"
"""The operator scope: satisfies every requirement."""

_LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": _LETTERS}
_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)")


def _v2_letters(text: str) -> str | None:
    """The permission letters of a v2 suffix, or None when it is not one (order matters in v2)."""
    if not text or any(c not in _LETTERS for c in text):
        return None
    positions = [_LETTERS.index(c) for c in text]
    return text if positions == sorted(set(positions)) else None


def granted_permissions(scopes: frozenset[str] | set[str] | list[str]) -> dict[str, frozenset[str]]:
    """Map each resource type (or ``*``) to the permission letters the scopes grant on it.

    Unknown or foreign scopes (``patient/…``, ``openid``, v2 scopes with query parameters) grant
    nothing and are ignored.
    """
    granted: dict[str, set[str]] = {}
    for scope in scopes:
        match = _SCOPE.fullmatch(scope)
        if not match:
            continue
        resource, suffix = match.groups()
        letters = _V1.get(suffix) or _v2_letters(suffix)
        if letters:
            granted.setdefault(resource, set()).update(letters)
    return {resource: frozenset(letters) for resource, letters in granted.items()}


def satisfies(scopes: frozenset[str], required: str) -> bool:
    """Whether a granted scope set meets one requirement (``admin`` meets all)."""
    if ADMIN in scopes:
        return True
    if required == ADMIN:
        return False
    match = _SCOPE.fullmatch(required)
    if not match:
        raise ValueError(f"not a scope requirement: {required!r}")
    resource, suffix = match.groups()
    needed = set(_V1.get(suffix) or _v2_letters(suffix) or "")
    if not needed:
        raise ValueError(f"not a scope requirement: {required!r}")
    permissions = granted_permissions(scopes)
    held = set(permissions.get(resource, frozenset())) | set(permissions.get("*", frozenset()))
    return needed <= held


def is_scope(scope: str) -> bool:
    """Whether ``scope`` is one this server understands: ``admin`` or a ``system/`` scope (v1 or v2)."""
    if scope == ADMIN:
        return True
    match = _SCOPE.fullmatch(scope)
    return bool(match and (_V1.get(match.group(2)) or _v2_letters(match.group(2))))


def may_hold(registered: frozenset[str], scope: str) -> bool:
    """Whether a client registered with ``registered`` may be granted ``scope``.

    It may when it registered that very scope, or when its registered scopes already grant every
    permission ``scope`` names (``system/*.rs`` covers ``system/Basic.read``; ``admin`` covers all).
    """
    if scope in registered:
        return True
    return is_scope(scope) and satisfies(registered, scope)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a client of this registry, bound to one service ID.

    Attributes:
        client_id: the local client ID (for tokens from an external authority: the local client
            its client ID maps to).
        service_id: the service the client is bound to; writes take the service ID from here.
        scopes: the scopes the token grants (already limited to what the client may hold).
        issuer: the ``iss`` of the verified token.
        token_id: the token's ``jti``, when it has one.
        expires_at: the token's ``exp`` (Unix seconds).
        clearances: the security labels the client is cleared for (its registration).
        break_glass: the client may state ``ETREAT`` to override a patient's restrictions.
        purposes: the purposes of use the client may state (empty: any).
        purpose: the purpose of use its token states (claim ``purpose_of_use``), if any.
        practitioner: the HPI-I its token names (claim ``requesting_practitioner``), if any.
    """

    client_id: str
    service_id: str
    scopes: frozenset[str]
    issuer: str
    expires_at: int
    token_id: str | None = None
    clearances: frozenset[str] = frozenset()
    break_glass: bool = False
    purposes: frozenset[str] = frozenset()
    purpose: str | None = None
    practitioner: str | None = None
    _cache: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        """Whether the caller holds the operator scope."""
        return ADMIN in self.scopes

    def allows(self, required: str) -> bool:
        """Whether this caller meets one scope requirement (memoised per principal)."""
        known = self._cache.get(required)
        if known is None:
            known = self._cache[required] = satisfies(self.scopes, required)
        return known

    def may_act_for(self, service_id: str) -> bool:
        """Whether this caller may write records of ``service_id``: its own, or any with ``admin``."""
        return self.is_admin or self.service_id == service_id


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The authenticated caller of a request, or None when it carries no verified token."""
    value = connection.scope.get("state", {}).get(PRINCIPAL_KEY)
    return value if isinstance(value, Principal) else None


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller of a request on a route that needs a token.

    Raises:
        Unauthenticated: no verified token (only on a public route that asks for a caller: a wiring mistake).
    """
    principal = principal_of(connection)
    if principal is None:
        raise errors.Unauthenticated("this needs a bearer token", token_sent=False)
    return principal
