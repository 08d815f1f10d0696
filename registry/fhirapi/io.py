"""FHIR HTTP plumbing shared by the FHIR controllers: route declarations, bodies in, resources out.

- ``fhir_route`` declares a FHIR handler (its ``RouteSpec``): who may call it, the query parameters it
  takes (``_format`` always among them) and, for patient-linked routes, what its audit row records.
- ``fhir_router`` mounts FHIR controllers under ``/fhir``, behind ``check_format`` (which refuses a
  ``_format`` other than JSON with 406) and the body limit of ordinary routes.
- ``read_resource`` reads a body and turns inbound FHIR errors of ``schemas.fhir.parse`` into the error tree: not JSON
  is 400, not a valid resource 422.
- ``fhir_response`` answers ``application/fhir+json``; ``etag`` and ``if_match`` speak versions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Response, Router

from registry import errors
from registry.http import base_url, refused_json
from registry.outcome import FHIR_JSON
from registry.route import RouteSpec
from schemas import strictjson
from schemas.fhir.capability import FORMAT
from schemas.fhir.parse import NotJson, ResourceError

if TYPE_CHECKING:
    from datetime import datetime

    from litestar import Request
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler
    from litestar.types import ControllerRouterHandler

    from schemas.audit import Interaction

__all__ = (
    "check_format",
    "etag",
    "fhir_base",
    "fhir_response",
    "fhir_route",
    "fhir_router",
    "if_match",
    "last_modified",
    "read_resource",
    "translate_resource_errors",
)

T = TypeVar("T")
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_IF_MATCH = re.compile(r' *(?:W/)?"([0-9]{1,9})" *')


def fhir_route(
    query: Iterable[str] = (),
    *,
    scopes: tuple[str, ...] = (),
    public: bool = False,
    audit: Interaction | None = None,
) -> dict[str, Any]:
    """A FHIR handler's ``opt``: its ``RouteSpec``, with ``_format`` among the query parameters it takes.

    Raises:
        ValueError: the route names no scopes and is not public (a FHIR route says which it is).
    """
    if bool(scopes) == public:
        raise ValueError("a FHIR route either needs scopes or is public")
    return RouteSpec(scopes=scopes, public=public, query=frozenset({FORMAT, *query}), audit=audit).opt


async def check_format(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """Refuse ``_format`` values other than JSON (a ``+`` sent unencoded arrives as a space).

    A coroutine so that Litestar does not run it in a worker thread (see ``registry.http.check_request``).

    Raises:
        NotAcceptable: the request asks for XML, Turtle or anything else that is not JSON.
    """
    for value in connection.query_params.getall(FORMAT, []):
        if value.strip().replace(" ", "+").lower() not in _JSON_FORMATS:
            message = f"_format {value!r} is not served; this server speaks FHIR JSON only (application/fhir+json)"
            raise errors.NotAcceptable(message, issues=[errors.Issue(message, FORMAT)])


def fhir_router(route_handlers: Iterable[ControllerRouterHandler], *, max_body_bytes: int) -> Router:
    """FHIR controllers mounted under ``/fhir``: the ``_format`` guard and the body limit of every FHIR route."""
    return Router(
        path="/fhir", route_handlers=list(route_handlers), guards=[check_format], request_max_body_size=max_body_bytes
    )


def fhir_base(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The external URL of the FHIR base (``…/fhir``)."""
    return f"{base_url(connection)}/fhir"


@contextlib.contextmanager
def translate_resource_errors() -> Iterator[None]:
    """Inbound FHIR problems as the error tree: not JSON is ``MalformedRequest``, the rest ``InvalidInput``."""
    try:
        yield
    except NotJson as exc:
        cause = exc.__cause__
        if isinstance(cause, strictjson.JsonError):
            raise refused_json(cause) from None
        raise errors.MalformedRequest(str(exc)) from None
    except ResourceError as exc:
        issues = [errors.Issue(m, e) for m, e in exc.issues]
        raise errors.InvalidInput(str(exc), issues=issues, code=errors.ErrorCode.INVALID_RESOURCE) from None


async def read_resource(request: Request[Any, Any, Any], parse: Callable[[bytes], T]) -> T:
    """Read the request body (413 over the router's limit) and parse it as a FHIR resource.

    Raises:
        MalformedRequest: the body is not JSON.
        InvalidInput: not a valid resource; one issue per problem.
    """
    body = await request.body()
    with translate_resource_errors():
        return parse(body)


def fhir_response(
    resource: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """A FHIR JSON response."""
    return Response(content=msgspec.json.encode(resource), status_code=status, media_type=FHIR_JSON, headers=headers)


def etag(version: int) -> str:
    """The weak ETag of a resource version, as FHIR writes it."""
    return f'W/"{version}"'


def last_modified(when: datetime) -> str:
    """An HTTP date for the ``Last-Modified`` header."""
    return format_datetime(when, usegmt=True)


def if_match(request: Request[Any, Any, Any]) -> int | None:
    """The version an ``If-Match`` header asks for, or None without one.

    Raises:
        MalformedRequest: the header is not a version ETag (``W/"3"`` or ``"3"``).
    """
    value = request.headers.get("if-match")
    if value is None:
        return None
    match = _IF_MATCH.fullmatch(value)
    if not match:
        message = 'If-Match takes the ETag of a version, such as W/"3"'
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, "If-Match")])
    return int(match.group(1))
