"""HTTP plumbing shared by every controller: request context, access log, request checks, base URL.

``RequestContext`` wraps the whole ASGI app (outside Litestar's router, so 404s are logged too):
it takes or makes the request ID (a random per-process prefix and a counter: 32 hex digits, as
unique as a UUID without a system call per request), binds it to every log line, returns it as ``X-Request-Id`` and
writes one canonical ``http_request`` line per request, with the authenticated client's ID. The
line names the route template, never the raw path, because paths carry IHIs.

``JsonRequest`` is the app's request class: every JSON body a handler takes as ``data`` is decoded
by ``schemas.strictjson`` (nesting bounded, repeated keys refused), the same path as batch items,
NDJSON lines and FHIR resources; what it refuses is 400.

``check_request`` is an app-wide guard: it refuses too many query values, query parameters the
route does not declare (its ``RouteSpec.query``) and bodies in a media type the route does not
take (``RouteSpec.media_types``), before any body is read.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from litestar import Request
from litestar.enums import ScopeType
from litestar.types import Empty

from registry import errors
from registry.log import get_logger
from registry.route import PRINCIPAL_KEY, route_spec
from schemas import strictjson
from schemas.errors import ErrorCode

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from registry.config import Settings

__all__ = (
    "JsonRequest",
    "RequestContext",
    "RequestObserver",
    "base_url",
    "check_request",
    "decode_json_body",
    "public_base_url",
    "refused_json",
    "request_id",
    "scope_header",
)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_log = get_logger("registry.http")


class RequestObserver(Protocol):
    """What counts requests (``registry.metrics``): told each request's method, route template, status and time."""

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request that took ``seconds`` to answer."""
        ...


class RequestContext:
    """Outermost ASGI middleware: request ID, log context and the canonical access line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: bool = True,
        max_query_params: int = 64,
        metrics: RequestObserver | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self.metrics = metrics
        self.max_query_params = max_query_params
        self._id_prefix = os.urandom(8).hex()
        self._id_counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = scope_header(scope, b"x-request-id")
        safe = incoming is not None and _SAFE_ID.fullmatch(incoming)
        rid = incoming if safe and incoming else f"{self._id_prefix}{next(self._id_counter):016x}"
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template", "(unmatched)")
            if self.metrics is not None:
                self.metrics.observe(scope["method"], route, status, seconds)
            if self.access_log:
                principal = scope["state"].get(PRINCIPAL_KEY)
                _log.info(
                    "http_request",
                    request_id=rid,
                    method=scope.get("method"),
                    route=route,
                    status=status,
                    client_id=getattr(principal, "client_id", None),
                    duration_ms=round(seconds * 1000, 2),
                )
            structlog.contextvars.clear_contextvars()


def decode_json_body(body: bytes) -> Any:
    """A JSON request body, decoded the one way (``schemas.strictjson``).

    Raises:
        MalformedRequest: not JSON, nested too deep, or an object repeats a key (``refused_json``).
    """
    try:
        return strictjson.decode(body)
    except strictjson.JsonError as exc:
        raise refused_json(exc) from None


def refused_json(exc: strictjson.JsonError) -> errors.MalformedRequest:
    """The error of a JSON body ``schemas.strictjson`` refused, coded by why: nested too deep
    (``json-too-deep``), a key repeated (``json-duplicate-key``), else not JSON (``malformed-request``)."""
    code = {strictjson.TooDeep: ErrorCode.JSON_TOO_DEEP, strictjson.DuplicateKey: ErrorCode.JSON_DUPLICATE_KEY}
    return errors.MalformedRequest(str(exc), code=code.get(type(exc)))


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, whose JSON body (``data`` of a handler) is decoded by ``decode_json_body``."""

    async def json(self) -> Any:
        """The JSON body, decoded once.

        Raises:
            MalformedRequest: what ``decode_json_body`` refuses.
        """
        if self._json is Empty:
            cached = self._connection_state.json
            self._json = self._connection_state.json = (
                cached if cached is not Empty else decode_json_body(await self.body() or b"null")
            )
        return self._json


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case), read from the scope without parsing the rest."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def request_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The request ID bound by ``RequestContext`` (a fresh one outside it)."""
    value = connection.scope.get("state", {}).get("request_id")
    return str(value) if value else uuid.uuid4().hex


def media_type(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The request's media type without parameters, lower case."""
    return (scope_header(connection.scope, b"content-type") or "").split(";", 1)[0].strip().lower()


async def check_request(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Refuse unknown or too many query parameters and unsupported body media types.

    A coroutine although it awaits nothing: Litestar runs a plain function guard in a worker thread,
    which cost every request a thread hand-off (a quarter of a look-up's CPU, docs/benchmarks.md).

    Raises:
        UnknownParameter: a parameter the route does not declare, or too many values.
        UnsupportedMediaType: a body media type the route does not take.
    """
    spec = route_spec(handler)
    params = connection.query_params
    limit = connection.app.state.get("max_query_params", 64)
    if sum(1 for _pair in params.multi_items()) > limit:  # one per value, repeats included
        message = f"too many query parameter values (at most {limit})"
        raise errors.UnknownParameter(message, code=errors.ErrorCode.TOO_MANY_PARAMETERS)
    unknown = sorted(set(params.keys()) - spec.query)
    if unknown:
        raise errors.UnknownParameter(
            f"unknown query parameter(s): {', '.join(unknown)}",
            issues=[errors.Issue(f"unknown query parameter {name!r}", name) for name in unknown],
        )
    if connection.scope.get("method") in _BODY_METHODS:
        got = media_type(connection)
        if got not in spec.media_types:
            raise errors.UnsupportedMediaType(
                f"body media type {got or '(none)'!r} is not accepted here; use one of: "
                f"{', '.join(sorted(spec.media_types))}"
            )


def public_base_url(settings: Settings) -> str | None:
    """This server's external base URL from configuration alone: ``public_base_url``, else
    ``http://<http.host>:<http.port>`` (a wildcard host stands for this machine's name); None in dev mode
    without one, where it follows each request (``Host``), as a developer's machine has many names.

    Security decisions (the ``aud`` client assertions must name, the URLs in answers) never follow a
    request's headers outside dev mode: behind a proxy, set ``public_base_url``.
    """
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    if settings.dev:
        return None
    host = settings.http.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard bind, named by the machine's name
        host = socket.getfqdn()
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{settings.http.port}"


def base_url(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """This server's external base URL: from configuration (``public_base_url``), else (dev mode) the request's."""
    configured = connection.app.state.get("public_base_url")
    if configured:
        return str(configured).rstrip("/")
    return str(connection.base_url).rstrip("/")
