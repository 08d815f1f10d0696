"""FHIR operations (``$name``): routed for GET and POST alike, their input read the same way from either.

FHIR R4 (§3.1.0.3) says a server SHALL accept POST for every operation, with a ``Parameters`` body;
GET is allowed when the operation changes nothing and its parameters are primitives. Every
operation of the server is declared with ``fhir_operation`` (one handler for both methods, with
``GET``/``POST`` operation ids of its own in the OpenAPI document) and reads its input with
``operation_input``: the query parameters, and for POST also the body's parameters (the same
lenient/strict rule applies to both: an unknown name is ignored and reported, or refused on
``Prefer: handling=strict``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import HttpMethod, route

from registry import errors
from registry.fhirapi.io import fhir_route, translate_resource_errors
from registry.http import preference, query_items
from registry.route import IGNORED_KEY, route_spec
from schemas.fhir.parameters import read_parameters

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from litestar import Request
    from litestar.handlers import HTTPRouteHandler
    from litestar.types import AnyCallable, Method, OperationIDCreator

    from schemas.audit import Interaction

__all__ = ("fhir_operation", "operation_input")


def _operation_ids(name: str) -> OperationIDCreator:
    """Operation ids ``name`` (GET) and ``namePost`` (POST): one handler, two OpenAPI operations."""

    def operation_id(_handler: HTTPRouteHandler, method: Method | HttpMethod, _path: list[Any]) -> str:
        return name if method == HttpMethod.GET else f"{name}Post"

    return operation_id


def fhir_operation(
    path: str, *, name: str, query: Iterable[str] = (), scopes: tuple[str, ...], audit: Interaction | None = None
) -> Callable[[AnyCallable], HTTPRouteHandler]:
    """The route decorator of an operation: GET and POST, one ``RouteSpec`` (``query`` names its parameters)."""
    return route(
        path,
        http_method=[HttpMethod.GET, HttpMethod.POST],
        operation_id=_operation_ids(name),
        status_code=200,
        opt=fhir_route(query, scopes=scopes, audit=audit),
    )


async def operation_input(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    """The operation's parameters: the query's, then (POST) the Parameters body's, each a ``(name, text)`` pair.

    Raises:
        MalformedRequest: the body is not JSON.
        InvalidInput: the body is not a Parameters resource the operation can take.
        UnknownParameter: a body parameter the operation does not define, on ``Prefer: handling=strict``.
    """
    items = query_items(request)
    if request.method != HttpMethod.POST:
        return items
    body = await request.body()
    if not body.strip():  # POST with no parameters at all
        return items
    with translate_resource_errors():
        given = read_parameters(body)
    known = route_spec(request.route_handler).query
    unknown = sorted({key for key, _ in given} - known)
    if unknown and preference(request.scope, "handling") == "strict":
        raise errors.UnknownParameter(
            f"unknown parameter(s): {', '.join(unknown)}",
            issues=[errors.Issue(f"unknown parameter {key!r}", key) for key in unknown],
        )
    if unknown:
        state = request.scope["state"]
        state[IGNORED_KEY] = sorted({*state.get(IGNORED_KEY, ()), *unknown})
    return [*items, *((key, value) for key, value in given if key in known)]
