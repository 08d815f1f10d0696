"""Record lifecycle rules (pure): which statuses exist, which route discovery, how filters and labels parse,
the wire form of a stored record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import errors
from schemas.privacy import parse_labels
from schemas.records import Record
from schemas.types import InvalidValueError, RecordStatus

if TYPE_CHECKING:
    from registry.records.repository import StoredRecord

__all__ = ("ROUTING_STATUSES", "WRITE_STATUS", "check_labels", "parse_statuses", "shows_unrouted", "to_record")

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


def shows_unrouted(statuses: list[str] | None, *, operator: bool) -> bool:
    """Whether a look-up may show records of services that are not routed (disabled, retired).

    Only an operator (``admin``) who widened the statuses sees them, marked with the service's
    status; every other answer leaves them out (the routing rule, ``routable_service()`` in SQL).
    """
    return bool(statuses) and operator


def to_record(stored: StoredRecord) -> Record:
    """The wire form of a stored record (with its service's directory entry when the look-up read it, the
    service's status when it is not routed, and its security labels when it has any)."""
    return Record(
        ihi=stored.ihi,
        service_id=stored.service_id,
        status=stored.status,
        type=stored.type,
        last_updated=stored.last_updated,
        service=stored.service,
        service_status=None if stored.service_status.routes else stored.service_status,
        security_labels=list(stored.security_labels) or None,
    )


def check_labels(labels: list[str] | None, expression: str = "securityLabels") -> list[str] | None:
    """Validate a record's security labels (None: not given).

    Raises:
        InvalidInput: one is not a confidentiality or sensitivity code.
    """
    if labels is None:
        return None
    try:
        return list(parse_labels(labels))
    except InvalidValueError as exc:
        message = f"invalid security label: {exc}"
        raise errors.InvalidInput(message, issues=[errors.Issue(message, expression)]) from None
