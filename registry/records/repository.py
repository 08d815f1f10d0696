"""Storage of records and their history: named queries in, msgspec Structs out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from registry.audit.repository import insert_columns
from registry.db.errors import translate_db_errors
from registry.db.paging import fetch_page
from schemas.privacy import PatientPolicy, policy_decoder
from schemas.records import HistoryEntry, ServiceRef
from schemas.types import RecordStatus, RecordType, SearchStyle, ServiceKind

if TYPE_CHECKING:
    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.audit import AuditEntry

__all__ = ("BatchRow", "RecordRepository", "StoredChange", "StoredRecord", "policy_of")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record row, with the storage-only fields the FHIR facade needs (id, version).

    ``service`` is the service's directory entry, read by look-ups by IHI only; ``policy`` the
    patient's compiled Consents, read with every disclosure (empty: none).
    """

    ihi: str
    service_id: str
    record_id: UUID
    status: RecordStatus
    type: RecordType
    version: int
    last_updated: datetime
    service: ServiceRef | None = None
    security_labels: tuple[str, ...] = ()
    policy: PatientPolicy = ()


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One history entry, with the patient's compiled Consents (what its disclosure is decided on)."""

    entry: HistoryEntry
    policy: PatientPolicy


@dataclass(frozen=True, slots=True)
class BatchRow:
    """The outcome of one batch row as the database reports it."""

    ord: int
    record_id: UUID
    status: RecordStatus
    type: RecordType
    last_updated: datetime | None
    outcome: str


def policy_of(raw: str | None) -> PatientPolicy:
    """A patient's compact privacy policy as stored (jsonb text; NULL: no Consent)."""
    return policy_decoder.decode(raw) if raw else ()


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
        security_labels=tuple(row["security_labels"]),
        policy=policy_of(row.get("policy")),
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
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str, labels: list[str] | None
    ) -> tuple[StoredRecord, str]:
        """Write one record idempotently (``labels`` None keeps its security labels); return it and
        ``created``, ``updated`` or ``unchanged``."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["put_record"], ihi, service_id, status, type_, labels)
        assert row is not None
        return _stored(row), row["outcome"]

    async def put_audited(
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str, labels: list[str] | None,
        audit_rows: list[tuple[str, AuditEntry]],
    ) -> tuple[StoredRecord, str]:  # fmt: skip
        """Write one record idempotently and insert the audit row of its outcome, in one statement.

        ``audit_rows`` pairs each outcome (``created``, ``updated``, ``unchanged``) with the row to
        insert if the write ends that way; the row gets the record's id.
        """
        outcomes = [name for name, _ in audit_rows]
        columns = insert_columns([entry for _, entry in audit_rows])
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["put_record_audited"], ihi, service_id, status, type_, labels, *columns, outcomes
            )
        assert row is not None
        return _stored(row), row["outcome"]

    async def plan_batches(self, conn: Connection) -> None:
        """Plan the batch statements of the caller's transaction for their own parameters (never a generic plan)."""
        with translate_db_errors():
            await conn.execute(self._q["custom_batch_plans"])

    async def put_many(
        self,
        conn: Connection,
        *,
        ords: list[int],
        ihis: list[str],
        service_ids: list[str],
        statuses: list[str],
        types: list[str],
        labels: list[str | None],
    ) -> dict[int, BatchRow]:
        """Apply one chunk of de-duplicated items in one statement; outcomes keyed by ``ord``. ``labels``
        are each item's security labels, space-separated (None: keep the stored ones)."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["put_records"], ords, ihis, service_ids, statuses, types, labels)
        return {
            row["ord"]: BatchRow(
                ord=row["ord"],
                record_id=row["record_id"],
                status=RecordStatus(row["status"]),
                type=RecordType(row["type"]),
                last_updated=row["last_updated"],
                outcome=row["outcome"],
            )
            for row in rows
        }

    async def for_ihi(self, conn: Connection, ihi: str, statuses: list[str]) -> list[StoredRecord]:
        """The records of one IHI with the given statuses, each with its service's directory entry."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_records"], ihi, statuses)
        return [_with_service(row) for row in rows]

    async def history(self, conn: Connection, ihi: str) -> list[StoredChange]:
        """Every change of every record of one IHI, oldest first."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_history"], ihi)
        policy = policy_of(rows[0]["policy"]) if rows else ()
        return [
            StoredChange(
                HistoryEntry(
                    service_id=row["service_id"],
                    status=RecordStatus(row["status"]),
                    type=RecordType(row["type"]),
                    change=row["change"],
                    previous_status=RecordStatus(row["previous_status"]) if row["previous_status"] else None,
                    recorded_at=row["recorded_at"],
                    security_labels=list(row["security_labels"]) or None,
                ),
                policy,
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
