"""FHIR HTTP plumbing shared by the FHIR controllers: route declarations, bodies in, resources out.

- ``route_opt`` builds a handler's ``opt``: the query parameters it takes (``check_request``
  refuses the rest) and what it will need of the caller (``registry.auth.scopes``).
- ``check_format`` (a guard on the FHIR router) refuses a ``_format`` other than JSON with 406.
- ``read_resource`` reads a body and turns inbound FHIR errors of ``schemas.fhir.parse`` into the error tree: not JSON
  is 400, not a valid resource 422.
- ``fhir_response`` answers ``application/fhir+json``; ``etag`` and ``if_match`` speak versions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Response

from registry import errors
from registry.audit.context import AUDIT_OPT
from registry.http import base_url
from registry.outcome import FHIR_JSON
from schemas.audit import Interaction
from schemas.fhir.capability import FORMAT
from schemas.fhir.parse import NotJson, ResourceError

if TYPE_CHECKING:
    from datetime import datetime

    from litestar import Request
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = (
    "check_format",
    "etag",
    "fhir_base",
    "fhir_response",
    "if_match",
    "last_modified",
    "read_resource",
    "route_opt",
    "translate_resource_errors",
)

T = TypeVar("T")
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_IF_MATCH = re.compile(r' *(?:W/)?"([0-9]{1,9})" *')


def route_opt(
    query: frozenset[str] = frozenset({FORMAT}),
    *,
    scopes: tuple[str, ...] = (),
    public: bool = False,
    audit: Interaction | None = None,
) -> dict[str, Any]:
    """A FHIR handler's ``opt``: the query parameters it takes, the scopes it needs (or ``public``),
    and, for a route that touches patient data, the interaction its audit row records."""
    assert bool(scopes) != public, "a route either needs scopes or is public"
    assert not (public and audit), "a public route reveals no patient data"
    opt: dict[str, Any] = {"query": query, **({"public": True} if public else {"scopes": scopes})}
    if audit is not None:
        opt[AUDIT_OPT] = audit
    return opt


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


def fhir_base(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The external URL of the FHIR base (``…/fhir``)."""
    return f"{base_url(connection)}/fhir"


@contextlib.contextmanager
def translate_resource_errors() -> Iterator[None]:
    """Inbound FHIR problems as the error tree: not JSON is ``MalformedRequest``, the rest ``InvalidInput``."""
    try:
        yield
    except NotJson as exc:
        raise errors.MalformedRequest(str(exc)) from None
    except ResourceError as exc:
        raise errors.InvalidInput(str(exc), issues=[errors.Issue(m, e) for m, e in exc.issues]) from None


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
