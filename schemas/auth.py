"""OAuth and SMART wire types: token responses, discovery, and clients as listed. snake_case, as OAuth has it."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ("ClientInfo", "SmartConfiguration", "TokenResponse")


class TokenResponse(msgspec.Struct, kw_only=True):
    """A successful token response (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    scope: str


class SmartConfiguration(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``/.well-known/smart-configuration`` (also under the FHIR base): what a SMART Backend Services client needs
    to get a token. ``issuer`` is given only when it is an ``https`` URL (SMART App Launch 2: it is required only
    with ``sso-openid-connect``, and OAuth clients refuse any other)."""

    issuer: str | None = None
    jwks_uri: str
    token_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    scopes_supported: list[str]
    capabilities: list[str]


class ClientInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A client as ``ief-registry clients list --json`` shows it (never its secret or hash)."""

    client_id: str
    name: str
    service_id: str
    scopes: list[str]
    auth_method: str
    key_source: str | None = None
    status: str
    rate_per_second: float | None = None
    created_at: datetime
    updated_at: datetime
    clearances: list[str] = msgspec.field(default_factory=list)
    break_glass: bool = False
    purposes: list[str] = msgspec.field(default_factory=list)
