"""Reading the audit trail: AuditEvent search and read. No HTTP in here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry import errors
from registry.audit.context import note_patients, note_records
from registry.audit.repository import SearchFilter
from registry.audit.search import Cursor, date_bounds, decode_cursor, encode_cursor, one_value, parse_patient

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository
    from registry.config import FhirSettings
    from registry.db.pool import Database
    from schemas.audit import StoredAuditEvent

__all__ = ("AuditPage", "AuditQuery", "AuditService")


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """An AuditEvent search as the request put it (every value still text)."""

    patient: list[str] | None = None
    agent: list[str] | None = None
    date: list[str] | None = None
    count: int | None = None
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of AuditEvents, newest first, and the cursor of the next page (None on the last)."""

    events: list[StoredAuditEvent]
    next_cursor: str | None


class AuditService:
    """Search and read of audit rows (the primary: the audit is never read from a replica that may lag)."""

    def __init__(self, db: Database, repository: AuditRepository, settings: FhirSettings) -> None:
        self._db = db
        self._repo = repository
        self._settings = settings

    async def search(self, query: AuditQuery) -> AuditPage:
        """A page of audit rows matching every given parameter.

        Raises:
            InvalidInput: a bad IHI, date or page size, or a repeated single-value parameter.
            MalformedRequest: a cursor this server did not make.
        """
        patient_value = one_value(query.patient, "patient")
        patient = parse_patient(patient_value) if patient_value else None
        agent = one_value(query.agent, "agent")
        since, until = date_bounds(query.date)
        count = self._settings.default_count if query.count is None else query.count
        if count < 1:
            message = "_count must be at least 1"
            raise errors.InvalidInput(message, issues=[errors.Issue(message, "_count")])
        limit = min(count, self._settings.max_count)
        after = decode_cursor(query.cursor)
        if patient:
            note_patients([patient])
        where = SearchFilter(
            since=since, until=until, before_recorded=after.recorded, before_id=after.id, limit=limit + 1,
            patient=patient, client_id=agent,
        )  # fmt: skip
        async with self._db.writer() as conn:
            rows = await self._repo.search(conn, where)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(Cursor(page[-1].recorded, page[-1].id)) if more else None
        return AuditPage(events=page, next_cursor=next_cursor)

    async def read(self, event_id: str) -> StoredAuditEvent:
        """One audit row by its AuditEvent id.

        Raises:
            NotFound: no such AuditEvent.
        """
        try:
            key = uuid.UUID(event_id)
        except ValueError:
            raise errors.NotFound("no such AuditEvent") from None
        async with self._db.writer() as conn:
            event = await self._repo.by_event_id(conn, key)
        if event is None:
            raise errors.NotFound("no such AuditEvent")
        note_patients(event.patients)
        note_records(event.records)
        return event
