"""OperationOutcome: the one place it is built, for errors and for the outcomes carried inside answers.

- ``error_outcome``: the body of an error answer. Every issue carries the error's code from the
  ``ief-error`` code system (``schemas.errors``) in ``details.coding``; its FHIR ``IssueType``
  follows from the code's HTTP status (``ISSUE_TYPES``).
- ``operation_outcome``: any other OperationOutcome (the outcome entry of a broker search or of
  ``$locate``, a deletion, events no longer kept), from ``OutcomeIssue``s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.errors import ERRORS, ErrorCode
from schemas.fhir.canonical import IEF_ERROR

if TYPE_CHECKING:
    from collections.abc import Iterable

    from schemas.fhir.canonical import Canonicals

__all__ = (
    "ISSUE_TYPES",
    "WITHHELD_TEXT",
    "OutcomeIssue",
    "error_outcome",
    "operation_outcome",
    "withheld_entry",
    "withheld_issue",
)

WITHHELD_TEXT = (
    "Some results are withheld from this requester (the patient's consent or security labels): there may be "
    "imaging not shown here."
)
"""What a FHIR answer says when the privacy decision point withheld something: that, and never what."""

ISSUE_TYPES: dict[int, str] = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
    431: "too-costly",
    500: "exception",
    503: "transient",
}
"""FHIR ``IssueType`` code for each HTTP status the server answers errors with."""


@dataclass(frozen=True, slots=True)
class OutcomeIssue:
    """One issue of an OperationOutcome.

    Attributes:
        diagnostics: what happened, for people.
        code: the FHIR ``IssueType``.
        severity: ``fatal``, ``error``, ``warning`` or ``information``.
        coding: ``(system, code)`` of ``details.coding``: the precise reason, from a published code system.
        text: ``details.text``.
        expression: where the problem is (a FHIRPath-like path, a query parameter, a header).
        extensions: the issue's extensions (the service it concerns, a chain of registries).
    """

    diagnostics: str
    code: str
    severity: str = "error"
    coding: tuple[str, str] | None = None
    text: str | None = None
    expression: str | None = None
    extensions: tuple[dict[str, Any], ...] = ()


def _issue(issue: OutcomeIssue) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if issue.extensions:
        rendered["extension"] = list(issue.extensions)
    rendered["severity"] = issue.severity
    rendered["code"] = issue.code
    if issue.coding is not None or issue.text is not None:
        details: dict[str, Any] = {}
        if issue.coding is not None:
            system, code = issue.coding
            details["coding"] = [{"system": system, "code": code}]
        if issue.text is not None:
            details["text"] = issue.text
        rendered["details"] = details
    rendered["diagnostics"] = issue.diagnostics
    if issue.expression:
        rendered["expression"] = [issue.expression]
    return rendered


def operation_outcome(issues: Iterable[OutcomeIssue]) -> dict[str, Any]:
    """An R4 OperationOutcome of ``issues``, in order."""
    return {"resourceType": "OperationOutcome", "issue": [_issue(issue) for issue in issues]}


def error_outcome(
    canon: Canonicals, code: ErrorCode, issues: Iterable[tuple[str, str | None, ErrorCode | None]]
) -> dict[str, Any]:
    """The OperationOutcome of an error answered with ``code``'s status.

    Each of ``issues`` is ``(diagnostics, expression, code)``; an issue without a code of its own
    carries the error's. Every issue is an ``error`` whose ``IssueType`` follows from the status.
    """
    issue_type = ISSUE_TYPES.get(ERRORS[code].status, "processing")
    system = canon.code_system(IEF_ERROR)
    return operation_outcome(
        OutcomeIssue(diagnostics, issue_type, coding=(system, str(own or code)), expression=expression)
        for diagnostics, expression, own in issues
    )


def withheld_issue(canon: Canonicals) -> OutcomeIssue:
    """The issue that says something was withheld (``suppressed``), without saying what or how much."""
    return OutcomeIssue(
        WITHHELD_TEXT, "suppressed", severity="warning", coding=(canon.code_system(IEF_ERROR), str(ErrorCode.WITHHELD))
    )


def withheld_entry(canon: Canonicals) -> dict[str, Any]:
    """A searchset entry (search mode ``outcome``) holding only the ``withheld`` issue."""
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": operation_outcome([withheld_issue(canon)]),
        "search": {"mode": "outcome"},
    }
