"""The one app-wide authentication and authorization guard, and the check that every route declares one.

Each route handler declares what it takes in ``opt``:

- ``opt={"public": True}``: no token (health, metadata, discovery documents, the token endpoint,
  OpenAPI);
- ``opt={"scopes": ("system/Basic.rs", …)}``: a valid bearer token granting every listed scope;
- neither: fails closed, the route needs ``admin``.

The guard runs before the request checks of ``registry.http.check_request``, so strangers learn
nothing about query parameters or media types. It puts the ``Principal`` in
``scope["state"][PRINCIPAL_KEY]`` before checking scopes, so a refusal is attributable too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.auth.scopes import ADMIN, PRINCIPAL_KEY, is_scope
from registry.http import scope_header

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = ("authenticate", "check_route_security", "required_scopes")


def required_scopes(handler: BaseRouteHandler) -> tuple[str, ...] | None:
    """What a route needs: None when it is public, else its scopes (``admin`` when it declares none)."""
    opt = handler.opt
    if opt.get("public") is True:
        return None
    scopes: tuple[str, ...] = tuple(opt.get("scopes") or ())
    return scopes or (ADMIN,)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Authenticate the caller and check the route's scopes.

    Raises:
        Unauthenticated: no valid bearer token.
        Forbidden: the token lacks a scope the route needs.
        RateLimited: the client (or, after failures, the address) is over its rate.
    """
    opt = handler.opt
    if opt.get("public") is True:
        return
    client = connection.scope.get("client")
    principal = await connection.app.state.authenticator.principal(
        scope_header(connection.scope, b"authorization"), client[0] if client else None
    )
    connection.scope["state"][PRINCIPAL_KEY] = principal
    for required in opt.get("scopes") or (ADMIN,):
        if not principal.allows(required):
            raise errors.Forbidden(f"this needs the scope {required}, which the token does not grant")


def check_route_security(app: Litestar) -> None:
    """Refuse to start when a route declares a scope this server does not understand.

    Raises:
        ValueError: a route's ``opt["scopes"]`` names something that is not a scope.
    """
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for scope in required_scopes(handler) or ():
                if not is_scope(scope):
                    raise ValueError(f"route {route.path} declares {scope!r}, which is not a scope")
