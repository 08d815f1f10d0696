"""FHIR shapes of the broker's answers: where each result came from, and the per-gateway outcome entry.

A merged ImagingStudy or DocumentReference names every gateway that returned it with one
``broker-source`` extension each (``valueIdentifier``: the IEF service ID), in the order the
gateways were asked; ``meta.source`` is the FHIR base of the first, whose copy the entry holds.
Problems with gateways become the issues of one ``OperationOutcome`` entry
(``search.mode = outcome``): one issue per gateway problem, coded from the ``broker-outcome`` code
system, naming the service with the same extension.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from schemas.discovery import GatewayProblem
from schemas.fhir.canonical import BROKER_OUTCOME, EXT_BROKER_SOURCE
from schemas.fhir.outcome import OutcomeIssue, operation_outcome, withheld_issue

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals

__all__ = ("ISSUE_TYPES", "outcome_entry", "source_extension")

ISSUE_TYPES: dict[GatewayProblem, str] = {
    GatewayProblem.TIMEOUT: "timeout",
    GatewayProblem.UNREACHABLE: "transient",
    GatewayProblem.ERROR_RESPONSE: "exception",
    GatewayProblem.INVALID_RESPONSE: "invalid",
    GatewayProblem.TOO_LARGE: "too-costly",
    GatewayProblem.UNAUTHORIZED: "security",
    GatewayProblem.CIRCUIT_OPEN: "transient",
    GatewayProblem.SKIPPED: "incomplete",
    GatewayProblem.UNRESOLVED: "incomplete",
    GatewayProblem.INCOMPLETE: "incomplete",
}
"""FHIR ``IssueType`` of each problem (the ``broker-outcome`` code says precisely what happened)."""

_INFORMATION = frozenset({GatewayProblem.INCOMPLETE})


def source_extension(canon: Canonicals, service_id: str) -> dict[str, Any]:
    """The ``broker-source`` extension naming one member service."""
    return {
        "url": canon.extension(EXT_BROKER_SOURCE),
        "valueIdentifier": {"system": canon.service_id_system, "value": service_id},
    }


def outcome_entry(
    canon: Canonicals, problems: list[tuple[GatewayProblem, str | None, str]], *, withheld: bool = False
) -> dict[str, Any]:
    """The Bundle entry of the search's OperationOutcome: one issue per ``(problem, service ID, text)``, and
    one (``suppressed``) when the privacy decision point withheld gateways from the requester.

    Partial results are normal: issues are warnings (information for ``incomplete``), never errors.
    """
    system = canon.code_system(BROKER_OUTCOME)
    issues = [
        OutcomeIssue(
            text,
            ISSUE_TYPES[problem],
            severity="information" if problem in _INFORMATION else "warning",
            coding=(system, str(problem)),
            extensions=(source_extension(canon, service_id),) if service_id else (),
        )
        for problem, service_id, text in problems
    ]
    if withheld:
        issues.append(withheld_issue(canon))
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": operation_outcome(issues),
        "search": {"mode": "outcome"},
    }
