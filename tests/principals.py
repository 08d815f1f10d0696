"""A stand-in for the authentication guard's output, for audit tests that need a known caller.

The audit reads the caller from ``scope["state"]["principal"]`` (the contract in
``registry/auth/scopes.py``). Until token authentication is wired in, ``PrincipalFromHeader`` puts
a ``Principal`` there from an ``X-Test-Client: <client id> <service id> [scope…]`` header, so the
audit's agent fields can be tested over real HTTP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from registry.auth.scopes import PRINCIPAL_KEY, Principal

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ("PrincipalFromHeader", "as_client")

_HEADER = b"x-test-client"


def as_client(client_id: str, service_id: str, *scopes: str) -> dict[str, str]:
    """The header that makes a request come from ``client_id`` bound to ``service_id``."""
    return {"X-Test-Client": " ".join([client_id, service_id, *scopes])}


class PrincipalFromHeader:
    """Outer ASGI layer: an ``X-Test-Client`` header becomes the request's ``Principal``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] == ScopeType.HTTP:
            for name, value in scope["headers"]:
                if name == _HEADER:
                    client_id, service_id, *scopes = value.decode().split()
                    scope.setdefault("state", {})[PRINCIPAL_KEY] = Principal(
                        client_id=client_id,
                        service_id=service_id,
                        scopes=frozenset(scopes),
                        issuer="https://issuer.test",
                        expires_at=int(time.time()) + 300,
                        token_id=f"jti-{client_id}",
                    )
        await self.app(scope, receive, send)
