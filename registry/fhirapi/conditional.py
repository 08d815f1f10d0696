"""Conditional create (``If-None-Exist``, FHIR R4 §3.1.0.8.1) for every resource that declares it.

A resource opts in by declaring ``conditional_create=True`` on its ``ResourceCapability`` (the
CapabilityStatement says so), by letting its create route take the search's parameters
(``conditional_create_route``), and by asking ``if_none_exist`` before it creates, with a function
that finds the resources its search would match. The criteria come from the ``If-None-Exist``
header (FHIR R4) or, as clients such as fhirpy send them, from the create's own query string
(``POST Basic?patient=…``); never both. The rules are FHIR's, the same for every resource:

- no match: create as usual (the caller goes on);
- one match: nothing is written; the caller answers 200 with the existing resource;
- several: 412 Precondition Failed.

The criteria are a search of the resource type, read strictly: a parameter the search does not
define is 400, because ignoring a criterion could match another resource than the one meant. A
resource that does not declare conditional create refuses the header (400) rather than ignore it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl

from registry import errors
from registry.fhirapi.search import Criteria
from registry.fhirapi.shaping import RESULT_NAMES
from registry.http import query_items
from schemas.fhir.capability import FORMAT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar import Request

    from schemas.fhir.capability import ResourceCapability

__all__ = ("IF_NONE_EXIST", "asks_if_none_exist", "conditional_create_route", "if_none_exist")

IF_NONE_EXIST = "If-None-Exist"
_GENERAL = frozenset({FORMAT, *RESULT_NAMES})
T = TypeVar("T")


def conditional_create_route(capability: ResourceCapability) -> frozenset[str]:
    """The query parameters a create route of ``capability`` takes: its search's, as conditions (none without it)."""
    return capability.query() if capability.conditional_create else frozenset()


def _criteria(header: str | None, query: list[tuple[str, str]], capability: ResourceCapability) -> Criteria:
    """The search a conditional create names (``a=1&b=2``, optionally prefixed ``Type?``), checked strictly."""
    if header is not None and query:
        message = f"give a conditional create's criteria once: in {IF_NONE_EXIST} or in the query, not both"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, IF_NONE_EXIST)])
    items = query
    if header is not None:
        text = header.strip().removeprefix(f"{capability.type}?").removeprefix("?")
        try:
            items = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            items = []
    if not items:
        message = f"{IF_NONE_EXIST} names search parameters of {capability.type}, such as a=1&b=2"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, IF_NONE_EXIST)])
    unknown = sorted({name for name, _ in items} - capability.query())
    if unknown:
        message = f"{IF_NONE_EXIST} names parameter(s) a {capability.type} search does not take: {', '.join(unknown)}"
        raise errors.UnknownParameter(message, issues=[errors.Issue(message, IF_NONE_EXIST)])
    return Criteria(items)


def asks_if_none_exist(request: Request[Any, Any, Any]) -> bool:
    """Whether a create is conditional (``If-None-Exist``, or the criteria in its query string)."""
    return request.headers.get(IF_NONE_EXIST) is not None or any(
        key not in _GENERAL for key, _value in query_items(request)
    )


async def if_none_exist(
    request: Request[Any, Any, Any],
    capability: ResourceCapability,
    matches: Callable[[Criteria], Awaitable[list[T]]],
) -> T | None:
    """The resource a conditional create finds (answer it with 200), or None: no condition, or nothing matched.

    ``matches`` runs the resource type's search over the criteria and returns at most two matches.

    Raises:
        MalformedRequest: the resource does not declare conditional create, or the header names no criteria.
        UnknownParameter: the header names a parameter the search does not take.
        PreconditionFailed: the criteria match more than one resource.
    """
    header = request.headers.get(IF_NONE_EXIST)
    query = [(key, value) for key, value in query_items(request) if key not in _GENERAL]
    if header is None and not query:
        return None
    if not capability.conditional_create:
        message = f"conditional create ({IF_NONE_EXIST}) is not supported for {capability.type}"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, IF_NONE_EXIST)])
    found = await matches(_criteria(header, query, capability))
    if len(found) > 1:
        raise errors.PreconditionFailed(
            f"the {IF_NONE_EXIST} criteria match more than one {capability.type}; nothing was created"
        )
    return found[0] if found else None
