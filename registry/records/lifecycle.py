"""Record lifecycle rules (pure): which statuses exist, which route discovery, how filters parse."""

from __future__ import annotations

from registry import errors
from schemas.types import RecordStatus

__all__ = ("ROUTING_STATUSES", "WRITE_STATUS", "parse_statuses")

ROUTING_STATUSES: tuple[RecordStatus, ...] = (RecordStatus.ACTIVE,)
"""Only active records route discovery; the others are returned only when asked for."""

WRITE_STATUS = {"created": 201, "updated": 200, "unchanged": 200}
"""The HTTP status a write answers for each outcome (the controller sends it; the audit row records it)."""


def parse_statuses(values: list[str] | None) -> list[str]:
    """Turn repeated or comma-separated ``status`` values into a list; default: the routing statuses."""
    if not values:
        return [str(s) for s in ROUTING_STATUSES]
    wanted: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            try:
                status = RecordStatus(name)
            except ValueError:
                message = f"unknown status {name!r}; use active, removed or archived"
                raise errors.InvalidInput(message, issues=[errors.Issue(message, "status")]) from None
            if status not in wanted:
                wanted.append(status)
    return [str(s) for s in wanted]
