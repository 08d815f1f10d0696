"""What FHIR says about every answer, applied once for every FHIR route (an ASGI middleware of the FHIR routers).

Controllers answer the full resource; ``FhirAnswers`` then applies, in this order:

- ``If-None-Match`` on a read: ``304 Not Modified`` when the answer's ``ETag`` matches (weak comparison);
- ``Prefer: return=minimal | representation | OperationOutcome`` on a create or update (the route's
  audit interaction says which routes those are): no body, the resource, or an OperationOutcome
  saying what was done; ``Preference-Applied`` says which;
- ``_summary``, ``_elements``, ``_total`` (``schemas.fhir.results``) on a successful answer;
- the query parameters a lenient route ignored (``registry.route.IGNORED_KEY``): a warning per
  parameter in the search Bundle's OperationOutcome entry (the self link already leaves them out);
- ``_pretty=true``: indented JSON.

The values were checked before the handler ran (``registry.fhirapi.io.check_fhir_request``), so
nothing here refuses a request. A response that is not FHIR JSON, or is streamed, passes untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from litestar.enums import ScopeType

from registry.http import preference, scope_header
from registry.outcome import FHIR_JSON
from registry.route import IGNORED_KEY, route_spec
from schemas.audit import Interaction
from schemas.fhir.outcome import OutcomeIssue, operation_outcome
from schemas.fhir.results import ResultParameters, add_outcome_issues, shape

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ("RESULT_NAMES", "FhirAnswers", "result_parameters")

RESULT_NAMES = frozenset({"_summary", "_elements", "_total", "_pretty"})
"""The result parameters every FHIR route takes."""

_WRITES = frozenset({Interaction.CREATE, Interaction.UPDATE})
_RETURNS = frozenset({"minimal", "representation", "operationoutcome"})
_DROPPED_ON_304 = frozenset({b"content-type", b"content-length", b"content-encoding"})


def result_parameters(items: list[tuple[str, str]]) -> tuple[ResultParameters, bool]:
    """The result parameters among query ``items`` (their last value each) and whether ``_pretty=true``."""
    given = {key: value for key, value in items if key in RESULT_NAMES}
    elements = given.get("_elements")
    return (
        ResultParameters(
            summary=given.get("_summary"),
            elements=None if elements is None else frozenset(e.strip() for e in elements.split(",") if e.strip()),
            total=given.get("_total"),
        ),
        given.get("_pretty") == "true",
    )


def _etag_matches(condition: str, etag: str | None) -> bool:
    """RFC 9110 §13.1.2: ``*`` or any listed tag equal to the answer's, compared weakly (a bare version id, as
    some clients send ``meta.versionId``, is taken as its tag)."""
    if etag is None:
        return False
    if condition.strip() == "*":
        return True
    mine = etag.removeprefix("W/").strip('"')
    return any(tag.strip().removeprefix("W/").strip('"') == mine for tag in condition.split(","))


class FhirAnswers:
    """ASGI middleware: the answer of a FHIR route, shaped as the request asked (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, holding the answer's start until its body is known."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                held.append(message)
                return
            if held and message["type"] == "http.response.body" and not message.get("more_body", False):
                start, body = _shaped(scope, held.pop(), bytes(message.get("body", b"")))
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            if held:  # streamed: passed on as it is
                await send(held.pop())
            await send(message)

        await self.app(scope, receive, answer)


def _headers(start: Any) -> dict[bytes, bytes]:
    return {key.lower(): value for key, value in start.get("headers", ())}


def _shaped(scope: Any, start: Any, body: bytes) -> tuple[Any, bytes]:
    """The response start and body after the request's conditions and preferences."""
    status = int(start["status"])
    headers = _headers(start)
    fhir_json = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1") == FHIR_JSON
    if not fhir_json or not 200 <= status < 300:
        return start, body
    method = scope["method"]
    condition = scope_header(scope, b"if-none-match")
    if method == "GET" and status == 200 and condition is not None:
        etag = headers.get(b"etag")
        if _etag_matches(condition, etag.decode("latin-1") if etag is not None else None):
            kept = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in _DROPPED_ON_304]
            return {**start, "status": 304, "headers": kept}, b""
    extra: list[tuple[bytes, bytes]] = []
    items = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    params, pretty = result_parameters(items)
    resource: dict[str, Any] | None = None
    handler = scope.get("route_handler")
    wanted = preference(scope, "return") if handler is not None and route_spec(handler).audit in _WRITES else None
    if wanted in _RETURNS:
        extra.append((b"preference-applied", f"return={wanted}".encode()))
        if wanted == "minimal":
            return _with(start, b"", extra, content_type=False), b""
        if wanted == "operationoutcome":
            done = "created" if status == 201 else "updated or unchanged"
            resource = operation_outcome([OutcomeIssue(f"the resource was {done}", "informational", "information")])
    ignored = scope.get("state", {}).get(IGNORED_KEY) or []
    if resource is None and (params.active or ignored):
        resource = shape(msgspec.json.decode(body), params)
        issues = [
            OutcomeIssue(f"query parameter {name!r} is not supported here and was ignored", "not-supported", "warning",
                         expression=name)
            for name in ignored
        ]  # fmt: skip
        resource = add_outcome_issues(resource, operation_outcome(issues)["issue"]) if issues else resource
    if resource is not None:
        body = msgspec.json.encode(resource)
    if pretty:
        body = msgspec.json.format(body, indent=2)
    return _with(start, body, extra), body


def _with(start: Any, body: bytes, extra: list[tuple[bytes, bytes]], *, content_type: bool = True) -> Any:
    """The start message with the body's length (and, without ``content_type``, no media type) and ``extra``."""
    dropped = {b"content-length"} if content_type else {b"content-length", b"content-type"}
    kept = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in dropped]
    return {**start, "headers": [*kept, (b"content-length", str(len(body)).encode()), *extra]}
