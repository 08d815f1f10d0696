"""OperationOutcome builders and the catalogue of issue codes by error kind."""

from __future__ import annotations

from typing import Any

__all__ = ("OUTCOME_CODES", "operation_outcome")

OUTCOME_CODES: dict[int, str] = {
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
"""FHIR ``IssueType`` code for each HTTP status we answer with."""


def operation_outcome(
    status: int,
    issues: list[tuple[str, str | None]],
    *,
    severity: str = "error",
    code: str | None = None,
) -> dict[str, Any]:
    """Build an R4 OperationOutcome: one issue per ``(diagnostics, expression)`` pair."""
    issue_code = code or OUTCOME_CODES.get(status, "processing")
    rendered: list[dict[str, Any]] = []
    for diagnostics, expression in issues:
        issue: dict[str, Any] = {"severity": severity, "code": issue_code, "diagnostics": diagnostics}
        if expression:
            issue["expression"] = [expression]
        rendered.append(issue)
    return {"resourceType": "OperationOutcome", "issue": rendered}
