"""Test helpers for authentication: forged access tokens, client assertions, token requests."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from joserfc import jwt

from registry.auth.issuer import ASSERTION_TYPE, SERVICE_CLAIM
from registry.auth.wiring import issuer_name

if TYPE_CHECKING:
    import httpx
    from joserfc.jwk import Key

    from tests.server import RunningServer

__all__ = ("assertion", "bearer", "claims_for", "forge", "request_token")


def bearer(token: str) -> dict[str, str]:
    """An Authorization header for a bearer token."""
    return {"Authorization": f"Bearer {token}"}


def claims_for(server: RunningServer, **overrides: Any) -> dict[str, Any]:
    """Valid access-token claims of the server's built-in issuer for its operator (admin), then overrides."""
    now = int(time.time())
    issuer = issuer_name(server.settings, server.service_id)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": "operator",
        "aud": server.settings.auth.audience or issuer,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "admin",
        SERVICE_CLAIM: server.service_id,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def forge(server: RunningServer, *, key: Key | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """An access token signed RS256 with the server's own issuer key (or ``key``), with chosen claims."""
    signer = key or server.auth.keys.keys.issuer
    head = {"alg": "RS256", "kid": signer.kid, **(header or {})}
    return jwt.encode(head, claims_for(server, **claims), signer, algorithms=[str(head["alg"])])


def assertion(key: Key, client_id: str, token_url: str, **overrides: Any) -> str:
    """A SMART Backend Services client assertion signed with ``key`` (its own alg), then overrides."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    alg = str(key.alg)
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key, algorithms=[alg])


async def request_token(http: httpx.AsyncClient, client_assertion: str, scope: str) -> httpx.Response:
    """POST a client-credentials request with a client assertion to ``/auth/token``."""
    return await http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
    )
