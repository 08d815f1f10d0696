"""The hash chain over the audit table: sealing new rows, and verifying the whole trail.

Rows are inserted freely by concurrent transactions. ``seal`` appends them to ``audit_chain`` in
``(xid, id)`` order, taking only rows whose transaction is older than every transaction still
running (``xid < pg_snapshot_xmin(pg_current_snapshot())``): those transactions have ended, and any
row inserted later gets a larger xid, so the order is final and no committed row is ever skipped.

``hash = SHA-256(prev_hash || canonical(row))`` where ``canonical`` is the JSON array of every
column of the row in a fixed order (``CANONICAL_VERSION`` first). The first entry's ``prev_hash``
is 32 zero bytes. ``verify`` walks rows and chain together and names the first row that does not
verify.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

import msgspec

from registry.audit.repository import ChainLink

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository
    from registry.db.pool import Connection
    from schemas.audit import StoredAuditEvent

__all__ = ("GENESIS", "ChainBroken", "SealResult", "Verdict", "canonical", "link_hash", "seal", "verify")

CANONICAL_VERSION = 1
PRIVACY_VERSION = 2
"""The canonical form of a row with privacy columns (``canonical``)."""
GENESIS = bytes(32)
"""``prev_hash`` of the first chain entry."""

_encoder = msgspec.json.Encoder()


def canonical(event: StoredAuditEvent) -> bytes:
    """The bytes a chain entry hashes: every column of the row, in a fixed order, as a compact JSON array.

    A row that says anything of privacy (purpose, practitioner, withheld, break-glass) is hashed in
    version 2, with those columns appended; any other row hashes as it did before they existed, so a
    trail sealed before them still verifies, and clearing or setting them on a sealed row breaks it.
    """
    recorded = event.recorded.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    privacy = [event.purpose_of_use, event.practitioner, event.withheld, event.break_glass]
    said = privacy != [None, None, 0, False]
    return _encoder.encode(
        [
            PRIVACY_VERSION if said else CANONICAL_VERSION, event.id, event.event_id, event.xid, recorded,
            event.request_id, event.peer_request_id, event.interaction, event.action, event.outcome, event.status,
            event.detail,
            event.method, event.path, event.query, event.client_id, event.client_service, event.client_address,
            event.token_id, event.observer, list(event.patients), list(event.records), *(privacy if said else []),
        ]
    )  # fmt: skip


def link_hash(prev_hash: bytes, event: StoredAuditEvent) -> bytes:
    """The hash of a chain entry: SHA-256 of the previous hash followed by the row's canonical bytes."""
    return hashlib.sha256(prev_hash + canonical(event)).digest()


@dataclass(frozen=True, slots=True)
class SealResult:
    """What one sealing run did.

    Attributes:
        sealed: rows appended to the chain.
        head_seq: the chain's last sequence number afterwards.
        more: rows remain after the head (not yet sealable, or beyond this run's limit).
        locked: this run held the sealer lock (False: another sealer was at work; nothing done).
    """

    sealed: int
    head_seq: int
    more: bool
    locked: bool


class ChainBroken(RuntimeError):
    """The chain's head row is missing from the table: sealing stops until ``audit verify`` is run."""


async def seal(conn: Connection, repo: AuditRepository, *, limit: int = 5000, wait: bool = False) -> SealResult:
    """Append sealable rows to the chain, at most ``limit``, in one transaction.

    Raises:
        ChainBroken: the head entry's row is gone (the table was tampered with).
    """
    async with conn.transaction():
        if not await repo.lock_sealer(conn, wait=wait):
            return SealResult(sealed=0, head_seq=0, more=True, locked=False)
        head = await repo.head(conn)
        if head is not None and head.xid is None:
            raise ChainBroken(f"the row of chain entry {head.seq} (row id {head.audit_id}) is missing")
        position = (head.xid or 0, head.audit_id) if head else (0, 0)
        seq, prev = (head.seq, head.hash) if head else (0, GENESIS)
        rows = await repo.sealable(conn, position, limit)
        links: list[ChainLink] = []
        for event in rows:
            seq += 1
            digest = link_hash(prev, event)
            links.append(ChainLink(seq=seq, audit_id=event.id, prev_hash=prev, hash=digest))
            prev = digest
        if links:
            await repo.append_chain(conn, links)
            position = (rows[-1].xid, rows[-1].id)
        more = await repo.unsealed_exists(conn, position)
    return SealResult(sealed=len(links), head_seq=seq, more=more, locked=True)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of walking the trail.

    Attributes:
        ok: every sealed row matches its hash, every link holds, nothing is missing.
        rows: rows verified (the chain's length when ok).
        head_hash: hash of the last verified entry (hex; the genesis hash when the chain is empty).
        pending: rows not yet sealable (their transactions were still open).
        problem: the first row that does not verify, and why (None when ok).
        row_id: that row's id, when one is to blame.
    """

    ok: bool
    rows: int
    head_hash: str
    pending: int
    problem: str | None = None
    row_id: int | None = None


def _fail(rows: int, head: bytes, problem: str, row_id: int | None = None) -> Verdict:
    return Verdict(ok=False, rows=rows, head_hash=head.hex(), pending=0, problem=problem, row_id=row_id)


async def _missing(conn: Connection, repo: AuditRepository, seq: int, rows: int, head: bytes) -> Verdict:
    entry = await repo.chain_entry(conn, seq)
    if entry is None:
        return _fail(rows, head, f"chain entry {seq} is missing from audit_chain")
    audit_id, present = entry
    if not present:
        return _fail(rows, head, f"row id {audit_id} (chain entry {seq}) is missing from audit_events", audit_id)
    return _fail(
        rows, head, f"row id {audit_id} (chain entry {seq}) is out of chain order (xid or id changed)", audit_id
    )


async def verify(conn: Connection, repo: AuditRepository) -> Verdict:
    """Walk every row in chain order against the chain; the first problem found is the verdict.

    Runs in one REPEATABLE READ transaction, so rows and chain are read from one snapshot while
    servers keep writing. Rows after the chain's last entry are pending, not wrong.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        last = await repo.last_seq(conn)
        expected, prev, pending = 1, GENESIS, 0
        async for walked in repo.walk(conn):
            event, verified = walked.event, expected - 1
            if walked.seq is None or walked.hash is None:
                if expected <= last:
                    return _fail(verified, prev, f"row id {event.id} is not in the chain", event.id)
                pending += 1
                continue
            if walked.seq != expected:
                return await _missing(conn, repo, expected, verified, prev)
            if walked.prev_hash != prev:
                problem = (
                    f"broken link at chain entry {expected} (row id {event.id}): its prev_hash is not the previous hash"
                )
                return _fail(verified, prev, problem, event.id)
            if link_hash(prev, event) != walked.hash:
                return _fail(
                    verified, prev, f"row id {event.id} (chain entry {expected}) does not match its hash", event.id
                )
            prev = walked.hash
            expected += 1
        if expected <= last:
            return await _missing(conn, repo, expected, expected - 1, prev)
    return Verdict(ok=True, rows=expected - 1, head_hash=prev.hex(), pending=pending)
