"""Native registry API messages (DESIGN section 4.1)."""

from __future__ import annotations

from datetime import datetime

from schemas.base import Input, Wire
from schemas.types import RecordStatus, RecordType

__all__ = (
    "BatchItem",
    "BatchItemResult",
    "BatchResult",
    "HistoryEntry",
    "Record",
    "RecordHistory",
    "RecordList",
    "RecordWrite",
    "Unresolved",
)


class RecordWrite(Input):
    """Body of ``PUT /registry/records/{ihi}/{serviceId}``."""

    status: RecordStatus = RecordStatus.ACTIVE
    type: RecordType = RecordType.RECORD


class Record(Wire):
    """A registry record as stored."""

    ihi: str
    service_id: str
    status: RecordStatus
    type: RecordType
    last_updated: datetime


class Unresolved(Wire):
    """A federation hop that could not be followed, and why."""

    service_id: str
    reason: str


class RecordList(Wire):
    """Answer of ``GET /registry/records/{ihi}``."""

    ihi: str
    records: list[Record]
    unresolved: list[Unresolved] | None = None


class HistoryEntry(Wire):
    """One change of one record, as kept in the history table."""

    service_id: str
    status: RecordStatus
    type: RecordType
    change: str
    previous_status: RecordStatus | None
    recorded_at: datetime


class RecordHistory(Wire):
    """Answer of ``GET /registry/records/{ihi}/history``: every change, oldest first."""

    ihi: str
    history: list[HistoryEntry]


class BatchItem(Input):
    """One item of ``POST /registry/records:batch``."""

    ihi: str
    service_id: str
    status: RecordStatus = RecordStatus.ACTIVE
    type: RecordType = RecordType.RECORD


class BatchItemResult(Wire):
    """The outcome of one batch item, in request order.

    ``result`` is ``created``, ``updated``, ``unchanged`` or ``error`` (then ``error`` says why).
    """

    index: int
    result: str
    ihi: str | None = None
    service_id: str | None = None
    status: RecordStatus | None = None
    type: RecordType | None = None
    last_updated: datetime | None = None
    error: str | None = None


class BatchResult(Wire):
    """Answer of ``POST /registry/records:batch``."""

    created: int
    updated: int
    unchanged: int
    errors: int
    results: list[BatchItemResult]
