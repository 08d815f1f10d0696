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
from schemas.privacy import CLEARANCE_LABELS, PatientPolicy, policy_decoder
from schemas.records import Actor, HistoryEntry, ServiceRef
from schemas.types import RecordChange, RecordStatus, RecordType, SearchStyle, ServiceKind, ServiceStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.audit import AuditEntry

__all__ = ("BatchRow", "RecordRepository", "RecordVersion", "StoredChange", "StoredRecord", "Writer", "policy_of")


@dataclass(frozen=True, slots=True)
class Writer:
    """Who makes a write, as the record and its history keep it: the client, its bound service, and
    whether it acts as the operator (``admin``)."""

    client_id: str
    service_id: str
    admin: bool

    @property
    def columns(self) -> tuple[str, str, bool]:
        """The actor as the write statements take it."""
        return (self.client_id, self.service_id, self.admin)


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
    service_status: ServiceStatus = ServiceStatus.ENABLED
    security_labels: tuple[str, ...] = ()
    policy: PatientPolicy = ()


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record: a ``record_history`` row, the record as that change left it.

    ``record.last_updated`` is when the change was recorded; ``entry`` the change as ``GET …/history`` shows
    it (what it was, who made it, why): one reading of history rows for both.
    """

    record: StoredRecord
    entry: HistoryEntry

    @property
    def change(self) -> str:
        """What the change was (``created``, ``registered``, ``status-changed``, ``moved``, ``updated``)."""
        return str(self.entry.change)


def _version(row: asyncpg.Record) -> RecordVersion:
    """A history row (its ``last_updated`` is when the change was recorded) as a version of its record."""
    return RecordVersion(record=_stored(row), entry=_history(row))


@dataclass(frozen=True, slots=True)
class StoredChange:
    """One history entry, with the patient's compiled Consents (what its disclosure is decided on)."""

    entry: HistoryEntry
    policy: PatientPolicy


class BatchRow(msgspec.Struct, frozen=True, gc=False):
    """The outcome of one batch row as the database reports it (a Struct: ten thousand are made per batch)."""

    ord: int
    record_id: UUID | None
    status: RecordStatus
    type: RecordType
    last_updated: datetime | None
    outcome: str
    held_reason: str | None = None


_CLEARANCES = sorted(CLEARANCE_LABELS)
"""The labels a record needs a clearance for, as get_records_audited takes them."""
_STATUSES = {status.value: status for status in RecordStatus}
_TYPES = {type_.value: type_ for type_ in RecordType}


def policy_of(raw: str | None) -> PatientPolicy:
    """A patient's compact privacy policy as stored (jsonb text; NULL: no Consent)."""
    return policy_decoder.decode(raw) if raw else ()


def _stored(
    row: asyncpg.Record, service: ServiceRef | None = None, service_status: ServiceStatus = ServiceStatus.ENABLED
) -> StoredRecord:
    return StoredRecord(
        ihi=row["ihi"],
        service_id=row["service_id"],
        record_id=row["record_id"],
        status=RecordStatus(row["status"]),
        type=RecordType(row["type"]),
        version=row["version"],
        last_updated=row["last_updated"],
        service=service,
        service_status=service_status,
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
    return _stored(row, service, ServiceStatus(row["service_status"]))


def _history(row: asyncpg.Record) -> HistoryEntry:
    known_actor = row["actor_admin"] is not None
    return HistoryEntry(
        service_id=row["service_id"],
        status=RecordStatus(row["status"]),
        type=RecordType(row["type"]),
        change=RecordChange(row["change"]),
        previous_status=RecordStatus(row["previous_status"]) if row["previous_status"] else None,
        recorded_at=row["recorded_at"],
        record_id=str(row["record_id"]),
        version=row["version"],
        actor=Actor(client_id=row["actor_client"], service_id=row["actor_service"], admin=row["actor_admin"])
        if known_actor
        else None,
        reason=row["reason"],
        previous_service=row["previous_service"],
        security_labels=list(row["security_labels"]) or None,
    )


class RecordRepository:
    """The only caller of ``sql/queries/records.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def put(
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str, writer: Writer,
        reason: str | None, labels: list[str] | None,
    ) -> tuple[StoredRecord, str]:  # fmt: skip
        """Write one record (``labels`` None keeps its security labels); return it and ``created``,
        ``registered``, ``updated`` or ``unchanged``."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["put_record"], ihi, service_id, status, type_, *writer.columns, reason, labels
            )
        assert row is not None
        return _stored(row), row["outcome"]

    async def put_audited(
        self, conn: Connection, *, ihi: str, service_id: str, status: str, type_: str, writer: Writer,
        reason: str | None, labels: list[str] | None, audit_rows: list[tuple[str, AuditEntry]],
    ) -> tuple[StoredRecord, str]:  # fmt: skip
        """Write one record and insert the audit row of its outcome, in one statement.

        ``audit_rows`` pairs each outcome (``created``, ``registered``, ``updated``, ``unchanged``)
        with the row to insert if the write ends that way; the row gets the record's id.
        """
        outcomes = [name for name, _ in audit_rows]
        columns = insert_columns([entry for _, entry in audit_rows])
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["put_record_audited"], ihi, service_id, status, type_, *writer.columns, reason, labels,
                *columns, outcomes,
            )  # fmt: skip
        assert row is not None
        return _stored(row), row["outcome"]

    async def merge_batch(
        self,
        conn: Connection,
        items: Sequence[tuple[int, str, str, str, str, str | None, list[str] | None]],
        writer: Writer,
    ) -> dict[int, BatchRow]:
        """Apply de-duplicated batch items, sorted by key, in the caller's transaction; outcomes keyed by ``ord``.

        ``items`` are ``(ord, ihi, service_id, status, type, reason, security labels)`` (labels None: keep
        the stored ones), written by ``writer``. They are copied (``COPY``, binary) into a staging table
        and applied by one set-based statement with every rule of the single write (re-registration, the
        operator's decisions, type against kind, routable services, a change of labels is a change), whose
        triggers write history, versions, subscription events, publications and the
        service check once for the whole batch. The items it did not write are then told apart in one
        statement: unchanged, held by an operator's decision, or naming a service that is unknown, not
        routed or of the other kind.
        """
        ords = {(ihi, service_id): ord_ for ord_, ihi, service_id, *_ in items}
        with translate_db_errors():
            await conn.execute(self._q["stage_batch"])
            await conn.copy_records_to_table("batch_input", records=items)
            written = await conn.fetch(self._q["merge_batch"], *writer.columns)
        found: dict[int, BatchRow] = {}
        for row in written:
            ord_ = ords[(row["ihi"], row["service_id"])]
            outcome = "created" if row["version"] == 1 else "registered" if row["change"] == "registered" else "updated"
            found[ord_] = BatchRow(
                ord=ord_, record_id=row["record_id"], status=_STATUSES[row["status"]], type=_TYPES[row["type"]],
                last_updated=row["last_updated"], outcome=outcome,
            )  # fmt: skip
        if len(found) < len(items):
            missing = [ord_ for ord_, *_ in items if ord_ not in found]
            with translate_db_errors():
                unwritten = await conn.fetch(self._q["batch_unwritten"], missing, writer.admin)
            for row in unwritten:
                found[row["ord"]] = BatchRow(
                    ord=row["ord"], record_id=row["record_id"], status=_STATUSES[row["status"]],
                    type=_TYPES[row["type"]], last_updated=row["last_updated"], outcome=row["outcome"],
                    held_reason=row["held_reason"],
                )  # fmt: skip
        return found

    async def for_ihi(
        self, conn: Connection, ihi: str, statuses: list[str], *, unrouted: bool = False
    ) -> list[StoredRecord]:
        """The records of one IHI with the given statuses, each with its service's directory entry; records
        of services that are not routed only with ``unrouted``."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_records"], ihi, statuses, unrouted)
        return [_with_service(row) for row in rows]

    async def unrouted(self, conn: Connection, service_ids: list[str]) -> set[str]:
        """The services among ``service_ids`` that this directory knows and does not route to."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["unrouted_services"], service_ids)
        return {row["service_id"] for row in rows}

    async def for_ihi_audited(
        self, conn: Connection, ihi: str, statuses: list[str], audit_row: AuditEntry, *, unrouted: bool = False
    ) -> tuple[list[StoredRecord], bool]:
        """``for_ihi`` and, when nothing found needs the privacy decision point's judgement, the request's
        audit row in the same statement; whether the row was inserted.

        The row is inserted only when the patient has no Consent and no record found carries a label that
        needs a clearance: then every record found is disclosed (``DecisionPoint.verdict``), and the row
        names them all. Otherwise nothing is inserted and the caller decides, then audits as any read.
        """
        with translate_db_errors():
            rows = await conn.fetch(
                self._q["get_records_audited"], ihi, statuses, unrouted, *insert_columns([audit_row]), _CLEARANCES
            )
        return [_with_service(row) for row in rows], not rows or rows[0]["audited"]

    async def history(self, conn: Connection, ihi: str) -> list[StoredChange]:
        """Every change of every record of one IHI, oldest first."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["get_history"], ihi)
        policy = policy_of(rows[0]["policy"]) if rows else ()
        return [StoredChange(_history(row), policy) for row in rows]

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

    async def lock_key(self, conn: Connection, ihi: str, service_id: str) -> None:
        """Hold a natural key, row or not, until the caller's transaction ends (a write that must find it absent)."""
        with translate_db_errors():
            await conn.execute(self._q["lock_record_key"], ihi, service_id)

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
        unrouted: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[StoredRecord], int]:
        """A page of records matching the filters (None: any), and the count of every match; records of
        services that are not routed only with ``unrouted``."""
        rows, total = await fetch_page(
            conn, self._q["search_records"], ihis, service_ids, record_ids, statuses, unrouted,
            limit=limit, offset=offset,
        )  # fmt: skip
        return [_stored(row) for row in rows], total

    async def version(self, conn: Connection, record_id: UUID, version: int) -> RecordVersion | None:
        """One version of a record, or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_record_version"], record_id, version)
        return _version(row) if row else None

    async def versions(
        self, conn: Connection, record_id: UUID, *, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[RecordVersion], int]:
        """A page of one record's versions, newest first, and the count of every match."""
        rows, total = await fetch_page(
            conn, self._q["get_record_versions"], record_id, since, limit=limit, offset=offset
        )
        return [_version(row) for row in rows], total

    async def all_versions(
        self, conn: Connection, *, service_ids: list[str] | None, since: datetime | None, limit: int, offset: int
    ) -> tuple[list[RecordVersion], int]:
        """A page of the versions of every record of ``service_ids`` (None: any), newest first, and their count."""
        rows, total = await fetch_page(
            conn, self._q["get_records_versions"], service_ids, since, limit=limit, offset=offset
        )
        return [_version(row) for row in rows], total
