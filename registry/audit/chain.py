"""The hash chain over the audit table: its canonical row form, and sealing new rows month by month.

Rows are inserted freely by concurrent transactions into the partition of their month. ``seal``
appends them to ``audit_chain`` one month at a time, the oldest month without a checkpoint first,
in ``(xid, id)`` order within the month. While the month is open it takes only rows whose
transaction is older than every transaction still running (``xid <
pg_snapshot_xmin(pg_current_snapshot())``): those transactions have ended, and any row inserted
later gets a larger xid, so the order is final and no committed row is ever skipped. Once the
month has ended (and the close grace has passed) it is closed: its partition refuses rows, every
row of it is committed, and the rest are chained in order. Then its checkpoint is signed and
stored, and the next month's rows follow.

``hash = SHA-256(prev_hash || canonical(row))`` where ``canonical`` is the JSON array of every
column of the row in a fixed order, its format version first: ``CANONICAL_VERSION`` for a row that
says nothing of privacy (every row written before migration 0011, so those hash as they always
did), ``PRIVACY_VERSION`` with purpose of use, practitioner, withheld count and break-glass
appended for a row that does. The first entry's ``prev_hash`` is 32 zero bytes; the first entry
of each month links to the last of the month before, so the chain runs on across partitions.
``registry.audit.verify`` walks it; an export carries each row in this form, and
``decode_canonical`` reads either version back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from registry.audit.checkpoints import month_label
from registry.audit.repository import ChainLink, StoredCheckpoint
from schemas.audit import StoredAuditEvent
from schemas.types import ascii_int

if TYPE_CHECKING:
    from registry.audit.checkpoints import CheckpointSigner
    from registry.audit.repository import AuditRepository, ChainHead, LastCheckpoint, SealingMonth
    from registry.db.pool import Connection

__all__ = (
    "GENESIS",
    "ChainBroken",
    "SealResult",
    "canonical",
    "decode_canonical",
    "link_hash",
    "seal",
)

CANONICAL_VERSION = 1
PRIVACY_VERSION = 2
"""The canonical form of a row with privacy columns (``canonical``)."""
GENESIS = bytes(32)
"""``prev_hash`` of the first chain entry."""

_encoder = msgspec.json.Encoder()
_Canonical = tuple[
    int, int, str, int, datetime, str, str | None, str, str, int, int, str | None, str, str, str, str | None,
    str | None, str | None, str | None, str, list[str], list[str],
]  # fmt: skip
_CanonicalPrivacy = tuple[
    int, int, str, int, datetime, str, str | None, str, str, int, int, str | None, str, str, str, str | None,
    str | None, str | None, str | None, str, list[str], list[str], str | None, str | None, int, bool,
]  # fmt: skip
_decoders: dict[int, msgspec.json.Decoder[tuple[Any, ...]]] = {
    CANONICAL_VERSION: msgspec.json.Decoder(_Canonical),
    PRIVACY_VERSION: msgspec.json.Decoder(_CanonicalPrivacy),
}
_NO_PRIVACY = (None, None, 0, False)


def canonical(event: StoredAuditEvent) -> bytes:
    """The bytes a chain entry hashes: every column of the row, in a fixed order, as a compact JSON array.

    A row that says anything of privacy (purpose, practitioner, withheld, break-glass) is hashed in
    version 2, with those columns appended; any other row hashes as it did before they existed, so a
    trail sealed before them still verifies, and clearing or setting them on a sealed row breaks it.
    """
    recorded = event.recorded.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    privacy = (event.purpose_of_use, event.practitioner, event.withheld, event.break_glass)
    said = privacy != _NO_PRIVACY
    return _encoder.encode(
        [
            PRIVACY_VERSION if said else CANONICAL_VERSION, event.id, event.event_id, event.xid, recorded,
            event.request_id, event.peer_request_id, event.interaction, event.action, event.outcome, event.status,
            event.detail,
            event.method, event.path, event.query, event.client_id, event.client_service, event.client_address,
            event.token_id, event.observer, list(event.patients), list(event.records), *(privacy if said else []),
        ]
    )  # fmt: skip


def _version(data: bytes) -> int:
    """The format version a canonical row begins with (0 when it begins with none)."""
    head, comma, _ = bytes(memoryview(data)[:8]).partition(b",")  # any buffer (a msgspec.Raw too)
    version = ascii_int(head[1:].decode("latin-1"), max_digits=3) if head[:1] == b"[" and comma else None
    return version or 0


def decode_canonical(data: bytes) -> StoredAuditEvent:
    """The row that ``canonical`` made ``data`` from (an export carries rows in this form), in either version.

    Raises:
        ValueError: not the canonical form of a row (of a known format version, with privacy columns
            exactly when it is of ``PRIVACY_VERSION``).
    """
    version = _version(data)
    decoder = _decoders.get(version)
    if decoder is None:
        raise ValueError(f"not a canonical audit row of format version {CANONICAL_VERSION} or {PRIVACY_VERSION}")
    try:
        fields = decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a canonical audit row of format version {version}: {exc}") from None
    (
        _, row_id, event_id, xid, recorded, request_id, peer_request_id, interaction, action, outcome, status,
        detail, method, path, query, client_id, client_service, client_address, token_id, observer, patients,
        records,
    ) = fields[:22]  # fmt: skip
    privacy = tuple(fields[22:]) or _NO_PRIVACY
    if version == PRIVACY_VERSION and privacy == _NO_PRIVACY:
        raise ValueError(f"a canonical audit row of format version {PRIVACY_VERSION} says nothing of privacy")
    purpose_of_use, practitioner, withheld, break_glass = privacy
    return StoredAuditEvent(
        id=row_id, event_id=event_id, xid=xid, recorded=recorded, request_id=request_id,
        peer_request_id=peer_request_id, interaction=interaction, action=action, outcome=outcome, status=status,
        detail=detail, method=method, path=path, query=query, client_id=client_id, client_service=client_service,
        client_address=client_address, token_id=token_id, observer=observer, patients=tuple(patients),
        records=tuple(records), purpose_of_use=purpose_of_use, practitioner=practitioner, withheld=withheld,
        break_glass=break_glass,
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
        more: rows remain after the head (not yet sealable, beyond this run's limit, or in a later month).
        locked: this run held the sealer lock (False: another sealer was at work; nothing done).
        checkpointed: the month whose checkpoint this run stored, if any.
    """

    sealed: int
    head_seq: int
    more: bool
    locked: bool
    checkpointed: str | None = None


class ChainBroken(RuntimeError):
    """The chain does not go on from where it stands (its head row is gone, or a month is short of rows).

    Sealing stops until ``audit verify`` is run and the trail is looked into.
    """


def _start(
    head: ChainHead | None, last: LastCheckpoint | None, month: SealingMonth
) -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, int]]:
    """Where sealing ``month`` goes on: the chain before the month, the head, and the head row's position."""
    before = (last.last_seq, last.head_hash) if last else (0, GENESIS)
    if head is not None and head.month == month.month:
        if head.xid is None:
            raise ChainBroken(f"the row of chain entry {head.seq} (row id {head.audit_id}) is missing")
        return before, (head.seq, head.hash), (head.xid, head.audit_id)
    if head is not None and (head.seq, head.hash) != before:
        where = f"the checkpoint of {month_label(last.month)}" if last else "the beginning"
        raise ChainBroken(f"the chain's last entry ({head.seq}) is not where {where} leaves it")
    return before, before, (0, 0)


async def seal(
    conn: Connection,
    repo: AuditRepository,
    signer: CheckpointSigner,
    *,
    limit: int = 5000,
    wait: bool = False,
    close_grace: float = 300.0,
) -> SealResult:
    """Append sealable rows of the oldest month without a checkpoint to the chain, at most ``limit``.

    A month that ended more than ``close_grace`` seconds ago is closed first (in a transaction of
    its own, which waits for the transactions still inserting into it); once a closed month is
    chained to its last row, its checkpoint is signed and stored in the same transaction as its
    last entries.

    Raises:
        ChainBroken: the chain cannot go on from where it stands (the trail was tampered with).
    """
    month = await repo.sealing_month(conn, close_grace)
    if month is not None and month.closable:
        async with conn.transaction():
            await repo.close_month(conn, month.month, close_grace)
    async with conn.transaction():
        if not await repo.lock_sealer(conn, wait=wait):
            return SealResult(sealed=0, head_seq=0, more=True, locked=False)
        month = await repo.sealing_month(conn, close_grace)
        if month is None:
            head = await repo.head(conn)
            return SealResult(sealed=0, head_seq=head.seq if head else 0, more=False, locked=True)
        (before_seq, before_hash), (seq, prev), position = _start(
            await repo.head(conn), await repo.last_checkpoint(conn), month
        )
        rows = await repo.sealable(conn, month, position, limit)
        links: list[ChainLink] = []
        for event in rows:
            seq += 1
            digest = link_hash(prev, event)
            links.append(ChainLink(seq=seq, audit_id=event.id, prev_hash=prev, hash=digest))
            prev = digest
        if links:
            await repo.append_chain(conn, month.month, links)
            position = (rows[-1].xid, rows[-1].id)
        if month.closed and len(rows) < limit:
            held = await repo.month_rows(conn, month.starts, month.ends)
            if held != seq - before_seq:
                raise ChainBroken(
                    f"{month_label(month.month)} holds {held} rows but chain entries {before_seq + 1}-{seq} "
                    f"are {seq - before_seq}: it is not checkpointed"
                )
            checkpoint = signer.checkpoint(
                month.month, month.starts, month.ends, first_seq=before_seq + 1, last_seq=seq, prev=before_hash,
                head=prev,
            )  # fmt: skip
            stored = StoredCheckpoint(
                first_seq=checkpoint.first_seq, last_seq=checkpoint.last_seq, rows=checkpoint.rows,
                prev_hash=before_hash, head_hash=prev, jws=signer.sign(checkpoint), sealed_at=checkpoint.sealed,
            )  # fmt: skip
            await repo.insert_checkpoint(conn, month.month, stored)
            return SealResult(sealed=len(links), head_seq=seq, more=True, locked=True, checkpointed=checkpoint.month)
        # A closed month has work left until its checkpoint is stored (its rows may have filled this run exactly).
        more = month.closed or await repo.unsealed_exists(conn, month, position)
    return SealResult(sealed=len(links), head_seq=seq, more=more, locked=True)
