"""Storage of the audit trail: audit rows, the hash chain, search. The only caller of ``sql/queries/audit.sql``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from registry.db.errors import translate_db_errors
from schemas.audit import StoredAuditEvent

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries
    from schemas.audit import AuditEntry

__all__ = ("AuditRepository", "ChainHead", "ChainLink", "SearchFilter", "WalkedRow", "insert_columns")

SEAL_LOCK_KEY = 0x1EF_0A0D
"""Advisory lock key held by the one sealer at work."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last chain entry: its sequence number, hash, and the chain position (xid, id) of its row.

    ``xid`` is None when the row of the head has been deleted from the table.
    """

    seq: int
    hash: bytes
    audit_id: int
    xid: int | None


@dataclass(frozen=True, slots=True)
class ChainLink:
    """One entry to append to the chain."""

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

    async def head(self, conn: Connection) -> ChainHead | None:
        """The last chain entry, or None when the chain is empty."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_chain_head"])
        if row is None:
            return None
        return ChainHead(seq=row["seq"], hash=bytes(row["hash"]), audit_id=row["audit_id"], xid=row["xid"])

    async def sealable(self, conn: Connection, after: tuple[int, int], limit: int) -> list[StoredAuditEvent]:
        """Rows after the chain position ``after`` whose place in the chain is final, in chain order."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["audit_sealable"], after[0], after[1], limit)
        return [_event(row) for row in rows]

    async def unsealed_exists(self, conn: Connection, after: tuple[int, int]) -> bool:
        """Whether any row lies after the chain position ``after``."""
        with translate_db_errors():
            return bool(await conn.fetchval(self._q["audit_unsealed_exists"], after[0], after[1]))

    async def append_chain(self, conn: Connection, links: list[ChainLink]) -> None:
        """Append chain entries in one statement."""
        with translate_db_errors():
            await conn.execute(
                self._q["append_audit_chain"],
                [link.seq for link in links],
                [link.audit_id for link in links],
                [link.prev_hash for link in links],
                [link.hash for link in links],
            )

    async def walk(self, conn: Connection) -> AsyncIterator[WalkedRow]:
        """Every row in chain order with its chain entry (needs a transaction: it reads through a cursor)."""
        with translate_db_errors():
            async for row in conn.cursor(self._q["audit_verify_walk"], prefetch=2000):
                yield WalkedRow(
                    event=_event(row),
                    seq=row["seq"],
                    prev_hash=bytes(row["prev_hash"]) if row["prev_hash"] is not None else None,
                    hash=bytes(row["hash"]) if row["hash"] is not None else None,
                )

    async def chain_entry(self, conn: Connection, seq: int) -> tuple[int, bool] | None:
        """The row id of chain entry ``seq`` and whether that row is still in the table (None: no such entry)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["audit_chain_entry"], seq)
        return (row["audit_id"], row["present"]) if row else None

    async def last_seq(self, conn: Connection) -> int:
        """The highest chain sequence number (0 when the chain is empty)."""
        with translate_db_errors():
            return int(await conn.fetchval(self._q["audit_chain_last_seq"]))

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
