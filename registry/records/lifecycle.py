"""Record lifecycle rules (pure): which statuses exist, which route discovery, how filters parse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import errors
from schemas.types import RecordStatus

if TYPE_CHECKING:
    from registry.auth.scopes import Principal

__all__ = ("ROUTING_STATUSES", "WRITE_STATUS", "parse_statuses", "shows_unrouted")

ROUTING_STATUSES: tuple[RecordStatus, ...] = (RecordStatus.ACTIVE,)
"""Only active records route discovery; the others are returned only when asked for."""

WRITE_STATUS = {"created": 201, "registered": 200, "updated": 200, "unchanged": 200}
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


def shows_unrouted(statuses: list[str] | None, actor: Principal | None) -> bool:
    """Whether a look-up may show records of services that are not routed (disabled, retired).

    Only an operator (``admin``) who widened the statuses sees them, marked with the service's
    status; every other answer leaves them out (the routing rule, ``routable_service()`` in SQL).
    """
    return bool(statuses) and actor is not None and actor.is_admin
