"""The one app-wide guard: authentication and authorization, then the request checks.

Each route declares who may call it in its ``RouteSpec`` (``registry.route``):

- ``public=True``: no token (health, metadata, discovery documents, the token endpoint, OpenAPI);
- ``scopes=("system/Basic.rs", …)``: a valid bearer token granting every listed scope;
- neither: fails closed, the route needs ``admin``.

Authentication runs before the request checks of ``registry.http.check_request``, so strangers learn
nothing about query parameters or media types. It puts the ``Principal`` in
``scope["state"][PRINCIPAL_KEY]`` before checking scopes, so a refusal is attributable too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import errors
from registry.auth.requester import requester_of
from registry.auth.scopes import ADMIN, PRINCIPAL_KEY, is_scope
from registry.http import check_request, scope_header
from registry.route import REQUESTER_KEY, ROUTE_KEY, RouteSpec, route_spec

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = ("authenticate", "authorize", "check_route_security", "guard", "open_options", "required_scopes")


def required_scopes(handler: BaseRouteHandler) -> tuple[str, ...] | None:
    """What a route needs: None when it is public, else its scopes (``admin`` when it declares none)."""
    spec = route_spec(handler)
    if spec.public:
        return None
    return spec.scopes or (ADMIN,)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Authenticate the caller and check the route's scopes.

    Raises:
        Unauthenticated: no valid bearer token.
        Forbidden: the token lacks a scope the route needs.
        RateLimited: the client (or, after failures, the address) is over its rate.
    """
    required = required_scopes(handler)
    if required is None:
        return
    client = connection.scope.get("client")
    principal = await connection.app.state.authenticator.principal(
        scope_header(connection.scope, b"authorization"), client[0] if client else None
    )
    connection.scope["state"][PRINCIPAL_KEY] = principal
    for scope in required:
        if not principal.allows(scope):
            message = f"this needs the scope {scope}, which the token does not grant"
            raise errors.Forbidden(message, code=errors.ErrorCode.SCOPE_MISSING)
    requester = requester_of(connection, principal)
    connection.scope["state"][REQUESTER_KEY] = requester
    if (
        requester.purpose is None
        and connection.app.state.get("require_purpose", False)
        and route_spec(handler).audit is not None
        and connection.scope.get("method") in ("GET", "HEAD")
    ):
        message = "a read of patient-linked data states its purpose of use (IEF-Purpose-Of-Use)"
        raise errors.MalformedRequest(
            message, issues=[errors.Issue(message, "IEF-Purpose-Of-Use")], code=errors.ErrorCode.PURPOSE_REQUIRED
        )


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-wide guard: authentication first (strangers learn nothing about parameters or media
    types), then the request checks. One guard rather than two: Litestar copies the route handler
    for every guard it runs, and each copy cost about 2.5 % of a look-up (docs/benchmarks.md).
    """
    await authenticate(connection, handler)
    await check_request(connection, handler)


async def authorize(request: Request[Any, Any, Any]) -> None:
    """``guard`` as the application's ``before_request`` hook: the same checks in the same order, without the
    copy of the route handler that Litestar makes for every guard it runs (2.6 % of a look-up's CPU,
    docs/benchmarks.md). It runs before the handler's parameters and body are parsed, as a guard does."""
    await guard(request, request.scope["route_handler"])


def check_route_security(app: Litestar) -> None:
    """Refuse to start when a route declares a scope this server does not understand.

    Raises:
        ValueError: a route's ``RouteSpec`` names something that is not a scope.
    """
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for scope in required_scopes(handler) or ():
                if not is_scope(scope):
                    raise ValueError(f"route {route.path} declares {scope!r}, which is not a scope")


def open_options(app: Litestar) -> None:
    """Declare the ``OPTIONS`` handler Litestar adds to each path public where every other method of the path is.

    ``OPTIONS`` says which methods a path takes and nothing else; on a public path (metadata, discovery
    documents, health) it needs no token either, and a CORS preflight never carries one. Elsewhere it
    keeps the fail-closed default (``admin``), so a stranger learns nothing about protected paths.
    """
    for route in app.routes:
        handlers = getattr(route, "route_handlers", ())
        options = [h for h in handlers if getattr(h, "http_methods", ()) == {"OPTIONS"}]
        others = [h for h in handlers if h not in options]
        if options and others and all(route_spec(h).public for h in others):
            for handler in options:
                handler.opt[ROUTE_KEY] = RouteSpec(public=True)
