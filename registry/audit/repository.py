"""Storage of the audit trail: audit rows, its months, the hash chain and checkpoints, exports, search.

The only caller of ``sql/queries/audit.sql``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import asyncpg

from registry.db.errors import translate_db_errors
from schemas.audit import StoredAuditEvent

if TYPE_CHECKING:
    from uuid import UUID

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.audit import AuditEntry

__all__ = (
    "AuditMonth",
    "AuditRepository",
    "ChainHead",
    "ChainLink",
    "LastCheckpoint",
    "SealingMonth",
    "SearchFilter",
    "StoredCheckpoint",
    "StoredExport",
    "WalkedRow",
    "from_beginning",
    "insert_columns",
)

SEAL_LOCK_KEY = 0x1EF_0A0D
"""Advisory lock key held by the one sealer at work."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last chain entry: its sequence number, hash, month, and the chain position (xid, id) of its row.

    ``xid`` is None when the row of the head has been deleted from its month.
    """

    seq: int
    hash: bytes
    month: date
    audit_id: int
    xid: int | None


@dataclass(frozen=True, slots=True)
class SealingMonth:
    """The month the sealer chains: the oldest one without a checkpoint.

    Attributes:
        month: its first day (the key of ``audit_months``).
        starts: when its rows begin (``from_beginning``: the period that holds the trail from before months).
        ends: when its rows end (exclusive).
        closed: no more rows can arrive.
        closable: it ended more than the close grace ago and is still open.
    """

    month: date
    starts: datetime
    ends: datetime
    closed: bool
    closable: bool


@dataclass(frozen=True, slots=True)
class LastCheckpoint:
    """Where the chain stood at the newest checkpoint."""

    month: date
    last_seq: int
    head_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A month's checkpoint as stored: the stretch of the chain it seals and its signed form."""

    first_seq: int
    last_seq: int
    rows: int
    prev_hash: bytes
    head_hash: bytes
    jws: str
    sealed_at: datetime


@dataclass(frozen=True, slots=True)
class AuditMonth:
    """One month of the trail: bounds, state, and its checkpoint once it has one."""

    month: date
    starts: datetime
    ends: datetime
    closed_at: datetime | None
    pruned_at: datetime | None
    checkpoint: StoredCheckpoint | None


@dataclass(frozen=True, slots=True)
class StoredExport:
    """An export of a month that was read back whole against its checkpoint."""

    month: date
    head_hash: bytes
    events: int
    location: str
    verified_at: datetime


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One entry to append to the chain (of the month being sealed)."""

    seq: int
    audit_id: int
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class WalkedRow:
    """A row as ``audit verify`` walks it, with its chain entry (``seq`` None when not in the chain)."""

    event: StoredAuditEvent
    seq: int | None
    prev_hash: bytes | None
    hash: bytes | None


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """AuditEvent search: recorded in ``[since, until)``, before the keyset ``(before_recorded, before_id)``."""

    since: datetime
    until: datetime
    before_recorded: datetime
    before_id: int
    limit: int
    patient: str | None = None
    client_id: str | None = None


def _event(row: asyncpg.Record) -> StoredAuditEvent:
    return StoredAuditEvent(
        id=row["id"],
        event_id=str(row["event_id"]),
        xid=row["xid"],
        recorded=row["recorded"],
        request_id=row["request_id"],
        peer_request_id=row["peer_request_id"],
        interaction=row["interaction"],
        action=row["action"],
        outcome=row["outcome"],
        status=row["status"],
        detail=row["detail"],
        method=row["method"],
        path=row["path"],
        query=row["query"],
        client_id=row["client_id"],
        client_service=row["client_service"],
        client_address=row["client_address"],
        token_id=row["token_id"],
        observer=row["observer"],
        patients=tuple(row["patients"]),
        records=tuple(str(r) for r in row["records"]),
        purpose_of_use=row["purpose_of_use"],
        practitioner=row["practitioner"],
        withheld=row["withheld"],
        break_glass=row["break_glass"],
    )


def from_beginning(starts: datetime) -> bool:
    """Whether a month's start is PostgreSQL's ``-infinity`` (``datetime(1, 1, 1)`` to asyncpg, both ways).

    Only the period that holds the trail from before months (migration 0008) starts there.
    """
    return starts.year == 1


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint | None:
    if row["jws"] is None:
        return None
    return StoredCheckpoint(
        first_seq=row["first_seq"], last_seq=row["last_seq"], rows=row["rows"], prev_hash=bytes(row["prev_hash"]),
        head_hash=bytes(row["head_hash"]), jws=row["jws"], sealed_at=row["sealed_at"],
    )  # fmt: skip


def _walked(row: asyncpg.Record) -> WalkedRow:
    return WalkedRow(
        event=_event(row),
        seq=row["seq"],
        prev_hash=bytes(row["prev_hash"]) if row["prev_hash"] is not None else None,
        hash=bytes(row["hash"]) if row["hash"] is not None else None,
    )


def _insert_row(e: AuditEntry) -> tuple[object, ...]:
    """One row's values in the order of ``insert_audit_events``' parallel arrays."""
    return (
        e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status,
        e.detail, e.method, e.path, e.query, e.client_id, e.client_service, e.client_address,
        e.token_id, e.observer, ",".join(e.patients), ",".join(e.records), e.purpose_of_use, e.practitioner,
        e.withheld, e.break_glass,
    )  # fmt: skip


def insert_columns(entries: list[AuditEntry]) -> list[list[object]]:
    """Audit rows as the parallel arrays that ``insert_audit_events`` (and statements that embed it) take."""
    return [list(column) for column in zip(*map(_insert_row, entries), strict=True)]


class AuditRepository:
    """The only caller of the audit queries."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def insert(self, conn: Connection, entries: list[AuditEntry]) -> None:
        """Insert audit rows in one statement (in the caller's transaction, if any)."""
        if not entries:
            return
        with translate_db_errors():
            await conn.execute(self._q["insert_audit_events"], *insert_columns(entries))

    async def lock_sealer(self, conn: Connection, *, wait: bool) -> bool:
        """Take the sealer lock for the current transaction; without ``wait``, False when another sealer has it."""
        with translate_db_errors():
            if wait:
                await conn.execute(self._q["audit_seal_lock"], SEAL_LOCK_KEY)
                return True
            return bool(await conn.fetchval(self._q["audit_seal_try_lock"], SEAL_LOCK_KEY))

    async def ensure_months(self, conn: Connection, first: date, through: date) -> int:
        """Make the missing months from ``first`` through ``through`` (consecutive); how many were made."""
        with translate_db_errors():
            return int(await conn.fetchval(self._q["audit_ensure_months"], first, through))

    async def close_month(self, conn: Connection, month: date, grace_seconds: float) -> bool:
        """Close ``month`` if it ended more than ``grace_seconds`` ago; False if not now (or a lock took too long)."""
        try:
            with translate_db_errors():
                return bool(await conn.fetchval(self._q["audit_close_month"], month, grace_seconds))
        except asyncpg.LockNotAvailableError:
            return False  # an open transaction still writes into the month: the next run tries again

    async def drop_month(self, conn: Connection, month: date, *, lock_timeout: str) -> None:
        """Drop a month's partitions (the owner's connection; in the caller's transaction)."""
        with translate_db_errors():
            await conn.execute(self._q["audit_set_lock_timeout"], lock_timeout)
            await conn.execute(self._q["audit_drop_month"], month)

    async def months(self, conn: Connection) -> list[AuditMonth]:
        """Every month of the trail, oldest first, with its checkpoint."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["audit_months"])
        return [
            AuditMonth(
                month=row["month"],
                starts=row["starts"],
                ends=row["ends"],
                closed_at=row["closed_at"],
                pruned_at=row["pruned_at"],
                checkpoint=_checkpoint(row),
            )
            for row in rows
        ]

    async def sealing_month(self, conn: Connection, close_grace: float) -> SealingMonth | None:
        """The oldest month without a checkpoint (None: no month is waiting)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_sealing_month"], close_grace)
        if row is None:
            return None
        return SealingMonth(
            month=row["month"], starts=row["starts"], ends=row["ends"], closed=row["closed"], closable=row["closable"]
        )

    async def last_checkpoint(self, conn: Connection) -> LastCheckpoint | None:
        """Where the chain stood at the newest checkpoint (None: no month is sealed yet)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_last_checkpoint"])
        if row is None:
            return None
        return LastCheckpoint(month=row["month"], last_seq=row["last_seq"], head_hash=bytes(row["head_hash"]))

    async def head(self, conn: Connection) -> ChainHead | None:
        """The last chain entry, or None when the chain is empty."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_chain_head"])
        if row is None:
            return None
        return ChainHead(
            seq=row["seq"], hash=bytes(row["hash"]), month=row["month"], audit_id=row["audit_id"], xid=row["xid"]
        )

    async def sealable(
        self, conn: Connection, month: SealingMonth, after: tuple[int, int], limit: int
    ) -> list[StoredAuditEvent]:
        """Rows of ``month`` after the chain position ``after`` whose place in the chain is final, in chain order."""
        with translate_db_errors():
            rows = await conn.fetch(
                self._q["audit_sealable"], month.starts, month.ends, after[0], after[1], limit, month.closed
            )
        return [_event(row) for row in rows]

    async def unsealed_exists(self, conn: Connection, month: SealingMonth, after: tuple[int, int]) -> bool:
        """Whether any row lies after the chain position ``after`` in ``month``, or in a later month."""
        with translate_db_errors():
            return bool(
                await conn.fetchval(self._q["audit_unsealed_exists"], month.starts, month.ends, after[0], after[1])
            )

    async def append_chain(self, conn: Connection, month: date, links: list[ChainLink]) -> None:
        """Append chain entries of ``month`` in one statement."""
        with translate_db_errors():
            await conn.execute(
                self._q["append_audit_chain"],
                [link.seq for link in links],
                [link.audit_id for link in links],
                [link.prev_hash for link in links],
                [link.hash for link in links],
                month,
            )

    async def month_rows(self, conn: Connection, starts: datetime, ends: datetime) -> int:
        """How many rows the month ``[starts, ends)`` holds."""
        with translate_db_errors():
            return int(await conn.fetchval(self._q["audit_month_rows"], starts, ends))

    async def insert_checkpoint(self, conn: Connection, month: date, checkpoint: StoredCheckpoint) -> None:
        """Store a month's signed checkpoint."""
        with translate_db_errors():
            await conn.execute(
                self._q["insert_audit_checkpoint"], month, checkpoint.first_seq, checkpoint.last_seq,
                checkpoint.rows, checkpoint.prev_hash, checkpoint.head_hash, checkpoint.jws,
            )  # fmt: skip

    async def signing_keys(self, conn: Connection) -> list[tuple[str, str]]:
        """``(kid, private PEM)`` of every audit key there has been, oldest first."""
        with translate_db_errors():
            return [(row["kid"], row["private_pem"]) for row in await conn.fetch(self._q["audit_keys"])]

    async def partitions_present(self, conn: Connection, months: list[date]) -> set[date]:
        """Which of ``months`` still have both partitions."""
        with translate_db_errors():
            return {row["month"] for row in await conn.fetch(self._q["audit_partitions_present"], months)}

    async def walk(self, conn: Connection, month: AuditMonth) -> AsyncIterator[WalkedRow]:
        """Every row of ``month`` in chain order with its chain entry (in a transaction: it reads through a cursor)."""
        with translate_db_errors():
            query = self._q["audit_verify_walk"]
            async for row in conn.cursor(query, month.starts, month.ends, month.month, prefetch=2000):
                yield _walked(row)

    async def export_walk(self, conn: Connection, month: AuditMonth) -> AsyncIterator[WalkedRow]:
        """The chain entries of ``month`` in order, each with its row (needs a transaction)."""
        with translate_db_errors():
            query = self._q["audit_export_walk"]
            async for row in conn.cursor(query, month.month, month.starts, month.ends, prefetch=2000):
                yield _walked(row)

    async def chain_entry(self, conn: Connection, seq: int) -> tuple[int, bool] | None:
        """The row id of chain entry ``seq`` and whether that row is still in its month (None: no such entry)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_chain_entry"], seq)
        return (row["audit_id"], row["present"]) if row else None

    async def month_last_seq(self, conn: Connection, month: date) -> int | None:
        """The highest sequence number among ``month``'s chain entries (None when it has none)."""
        with translate_db_errors():
            value = await conn.fetchval(self._q["audit_chain_month_last_seq"], month)
        return int(value) if value is not None else None

    async def last_seq(self, conn: Connection) -> int:
        """The highest chain sequence number (0 when the chain is empty)."""
        with translate_db_errors():
            return int(await conn.fetchval(self._q["audit_chain_last_seq"]))

    async def insert_export(self, conn: Connection, month: date, head_hash: bytes, events: int, location: str) -> None:
        """Note a month's export, read back whole against its checkpoint."""
        with translate_db_errors():
            await conn.execute(self._q["insert_audit_export"], month, head_hash, events, location)

    async def exports(self, conn: Connection) -> list[StoredExport]:
        """Every verified export, oldest month first."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["audit_exports"])
        return [
            StoredExport(
                month=row["month"],
                head_hash=bytes(row["head_hash"]),
                events=row["events"],
                location=row["location"],
                verified_at=row["verified_at"],
            )
            for row in rows
        ]

    async def search(self, conn: Connection, where: SearchFilter) -> list[StoredAuditEvent]:
        """A page of audit rows, newest first."""
        common = (where.since, where.until, where.before_recorded, where.before_id, where.limit)
        with translate_db_errors():
            if where.patient is not None:
                rows = await conn.fetch(
                    self._q["search_audit_events_by_patient"], *common, where.patient, where.client_id
                )
            elif where.client_id is not None:
                rows = await conn.fetch(self._q["search_audit_events_by_agent"], *common, where.client_id)
            else:
                rows = await conn.fetch(self._q["search_audit_events"], *common)
        return [_event(row) for row in rows]

    async def break_glass(self, conn: Connection, since: datetime) -> list[StoredAuditEvent]:
        """Rows of break-glass disclosures recorded since ``since``, oldest first."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["search_break_glass"], since)
        return [_event(row) for row in rows]

    async def by_event_id(self, conn: Connection, event_id: UUID) -> StoredAuditEvent | None:
        """One audit row by its AuditEvent id."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["get_audit_event"], event_id)
        return _event(row) if row else None
