"""Storage of records and their history: named queries in, msgspec Structs out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import msgspec

from registry.audit.repository import insert_columns
from registry.db.errors import translate_db_errors
from registry.db.paging import fetch_page
from schemas.records import HistoryEntry, ServiceRef
from schemas.types import RecordStatus, RecordType, SearchStyle, ServiceKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.audit import AuditEntry

__all__ = ("BatchRow", "RecordRepository", "StoredRecord")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record row, with the storage-only fields the FHIR facade needs (id, version).

    ``service`` is the service's directory entry, read by look-ups by IHI only.
    """

    ihi: str
    service_id: str
    record_id: UUID
    status: RecordStatus
    type: RecordType
    version: int
    last_updated: datetime
    service: ServiceRef | None = None


class BatchRow(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one batch row as the database reports it (a Struct: ten thousand are made per batch)."""

    ord: int
    record_id: UUID
    status: RecordStatus
    type: RecordType
    last_updated: datetime | None
    outcome: str


_STATUSES = {status.value: status for status in RecordStatus}
_TYPES = {type_.value: type_ for type_ in RecordType}


def _stored(row: asyncpg.Record, service: ServiceRef | None = None) -> StoredRecord:
    return StoredRecord(
        ihi=row["ihi"],
        service_id=row["service_id"],
        record_id=row["record_id"],
        status=RecordStatus(row["status"]),
        type=RecordType(row["type"]),
        version=row["version"],
        last_updated=row["last_updated"],
        service=service,
    )


def _with_service(row: asyncpg.Record) -> StoredRecord:
    service = ServiceRef(
        kind=ServiceKind(row["service_kind"]),
        name=row["service_name"],
        base_url=row["service_base_url"],
        search_style=SearchStyle(row["service_search_style"]),
    )
    return _stored(row, service)


class RecordRepository:
    """The only caller of ``sql/queries/records.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def put(
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str
    ) -> tuple[StoredRecord, str]:
        """Write one record idempotently; return it and ``created``, ``updated`` or ``unchanged``."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["put_record"], ihi, service_id, status, type_)
        assert row is not None
        return _stored(row), row["outcome"]

    async def put_audited(
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str,
        audit_rows: list[tuple[str, AuditEntry]],
    ) -> tuple[StoredRecord, str]:  # fmt: skip
        """Write one record idempotently and insert the audit row of its outcome, in one statement.

        ``audit_rows`` pairs each outcome (``created``, ``updated``, ``unchanged``) with the row to
        insert if the write ends that way; the row gets the record's id.
        """
        outcomes = [name for name, _ in audit_rows]
        columns = insert_columns([entry for _, entry in audit_rows])
        with translate_db_errors():
            row = await conn.fetchrow(self._q["put_record_audited"], ihi, service_id, status, type_, *columns, outcomes)
        assert row is not None
        return _stored(row), row["outcome"]

    async def merge_batch(
        self, conn: Connection, items: Sequence[tuple[int, str, str, str, str]]
    ) -> dict[int, BatchRow]:
        """Apply de-duplicated batch items, sorted by key, in the caller's transaction; outcomes keyed by ``ord``.

        ``items`` are ``(ord, ihi, service_id, status, type)``. They are copied (``COPY``, binary) into a
        staging table and applied by one set-based statement, whose triggers write history, subscription
        events and the service check once for the whole batch. An item without an outcome named a
        service that is not enabled.
        """
        ords = {(ihi, service_id): ord_ for ord_, ihi, service_id, _, _ in items}
        with translate_db_errors():
            await conn.execute(self._q["stage_batch"])
            await conn.copy_records_to_table("batch_input", records=items)
            written = await conn.fetch(self._q["merge_batch"])
        found: dict[int, BatchRow] = {}
        for row in written:
            ord_ = ords[(row["ihi"], row["service_id"])]
            found[ord_] = BatchRow(
                ord=ord_, record_id=row["record_id"], status=_STATUSES[row["status"]], type=_TYPES[row["type"]],
                last_updated=row["last_updated"], outcome="created" if row["version"] == 1 else "updated",
            )  # fmt: skip
        if len(found) < len(items):
            missing = [ord_ for ord_, *_ in items if ord_ not in found]
            with translate_db_errors():
                unwritten = await conn.fetch(self._q["batch_unwritten"], missing)
            for row in unwritten:
                found[row["ord"]] = BatchRow(
                    ord=row["ord"], record_id=row["record_id"], status=_STATUSES[row["status"]],
                    type=_TYPES[row["type"]], last_updated=row["last_updated"], outcome="unchanged",
                )  # fmt: skip
        return found

    async def for_ihi(self, conn: Connection, ihi: str, statuses: list[str]) -> list[StoredRecord]:
        """The records of one IHI with the given statuses, each with its service's directory entry."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_records"], ihi, statuses)
        return [_with_service(row) for row in rows]

    async def for_ihi_audited(
        self, conn: Connection, ihi: str, statuses: list[str], audit_row: AuditEntry
    ) -> list[StoredRecord]:
        """``for_ihi`` and the request's audit row in one statement; the row gets the ids of the records found."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_records_audited"], ihi, statuses, *insert_columns([audit_row]))
        return [_with_service(row) for row in rows]

    async def history(self, conn: Connection, ihi: str) -> list[HistoryEntry]:
        """Every change of every record of one IHI, oldest first."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_history"], ihi)
        return [
            HistoryEntry(
                service_id=row["service_id"],
                status=RecordStatus(row["status"]),
                type=RecordType(row["type"]),
                change=row["change"],
                previous_status=RecordStatus(row["previous_status"]) if row["previous_status"] else None,
                recorded_at=row["recorded_at"],
            )
            for row in rows
        ]

    async def by_id(self, conn: Connection, record_id: UUID) -> StoredRecord | None:
        """One record by its resource id."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_record_by_id"], record_id)
        return _stored(row) if row else None

    async def by_key(self, conn: Connection, ihi: str, service_id: str) -> StoredRecord | None:
        """One record by its natural key."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_record_by_key"], ihi, service_id)
        return _stored(row) if row else None

    async def lock_by_key(self, conn: Connection, ihi: str, service_id: str) -> StoredRecord | None:
        """One record by its natural key, locked until the caller's transaction ends."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_record_for_update"], ihi, service_id)
        return _stored(row) if row else None

    async def search(
        self,
        conn: Connection,
        *,
        ihis: list[str] | None,
        service_ids: list[str] | None,
        record_ids: list[UUID] | None,
        statuses: list[str],
        limit: int,
        offset: int,
    ) -> tuple[list[StoredRecord], int]:
        """A page of records matching the filters (None: any), and the count of every match."""
        rows, total = await fetch_page(
            conn, self._q["search_records"], ihis, service_ids, record_ids, statuses, limit=limit, offset=offset
        )
        return [_stored(row) for row in rows], total
