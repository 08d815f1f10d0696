"""``audit verify``: the live trail against its hash chain, its signed checkpoints, and what was kept elsewhere.

In one REPEATABLE READ snapshot (so it runs beside live servers):

1. every stored checkpoint verifies with an audit key of this instance, matches its signed form,
   and follows the one before (its ``prevHash`` and ``firstSeq`` are where that one ended);
2. pruned months are the oldest ones, and each had a verified export of its checkpoint;
3. the kept months are walked row by row in chain order, from where the last pruned month's
   checkpoint left the chain (else from the beginning): each row matches its hash, each link holds,
   no entry or row is missing, and a checkpointed month ends exactly where its checkpoint says;
4. against an anchor kept outside the database: the chain must pass through an expected head hash,
   and a checkpoint copied elsewhere must still be the one stored (deleting rows at the tail, with
   their chain entries and even the month's checkpoint, is found this way).

The first problem found is the verdict. Rows of a month still open that are not chained yet are
pending, not wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.audit.chain import GENESIS, link_hash
from registry.audit.checkpoints import CheckpointInvalid, month_label, open_checkpoint, parse_month, public_keys

if TYPE_CHECKING:
    from joserfc.jwk import RSAKey

    from registry.audit.repository import AuditMonth, AuditRepository, StoredExport
    from registry.db.pool import Connection

__all__ = ("Anchor", "Verdict", "verify")


@dataclass(frozen=True, slots=True)
class Anchor:
    """What the operator kept outside the database.

    Attributes:
        head_hash: a head hash that ``audit verify`` printed earlier: the chain must pass through it.
        checkpoint: a checkpoint (compact JWS) copied from ``GET /audit/checkpoints``: it must still be stored.
    """

    head_hash: bytes | None = None
    checkpoint: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of walking the trail.

    Attributes:
        ok: every check held.
        rows: rows verified by the walk (the kept months' chained rows, when ok).
        head_hash: hash of the last verified entry (hex).
        head_seq: its sequence number.
        pending: rows not chained yet (their month is open, their transactions recent).
        since: the pruned month whose checkpoint the walk started from (None: from the beginning).
        checkpoints: checkpoints verified.
        problem: the first thing that does not verify, and why (None when ok).
        row_id: the row to blame, when there is one.
    """

    ok: bool
    rows: int
    head_hash: str
    head_seq: int = 0
    pending: int = 0
    since: str | None = None
    checkpoints: int = 0
    problem: str | None = None
    row_id: int | None = None


class _Failed(Exception):
    def __init__(self, problem: str, row_id: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.row_id = row_id


@dataclass(slots=True)
class _Walk:
    """Where the walk stands: the next sequence number expected, the hash before it, what was seen."""

    expected: int = 1
    prev: bytes = GENESIS
    start: int = 1
    pending: int = 0
    looking_for: bytes | None = None
    """The anchor's head hash, until an entry of the walk has it."""
    found: bool = False

    @property
    def rows(self) -> int:
        return self.expected - self.start


async def verify(conn: Connection, repo: AuditRepository, anchor: Anchor | None = None) -> Verdict:
    """Check the whole trail; the first problem found is the verdict."""
    anchor = anchor or Anchor()
    walk = _Walk(looking_for=anchor.head_hash)
    since: str | None = None
    checkpoints = 0
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            keys = public_keys(pem for _, pem in await repo.signing_keys(conn))
            months = await repo.months(conn)
            checkpoints = _check_checkpoints(months, keys)
            since = _check_pruned(months, await repo.exports(conn), walk)
            kept = [m for m in months if m.pruned_at is None]
            present = await repo.partitions_present(conn, [m.month for m in kept])
            for month in kept:
                if month.month not in present:
                    raise _Failed(f"the partitions of {month_label(month.month)} are missing (dropped without prune)")
                await _walk_month(conn, repo, month, walk)
            if walk.expected <= await repo.last_seq(conn):
                await _missing(conn, repo, walk.expected)
            _check_anchor(anchor, months, keys, walk)
    except _Failed as failed:
        return Verdict(
            ok=False, rows=walk.rows, head_hash=walk.prev.hex(), head_seq=walk.expected - 1, since=since,
            checkpoints=checkpoints, problem=failed.problem, row_id=failed.row_id,
        )  # fmt: skip
    return Verdict(
        ok=True, rows=walk.rows, head_hash=walk.prev.hex(), head_seq=walk.expected - 1, pending=walk.pending,
        since=since, checkpoints=checkpoints,
    )  # fmt: skip


def _check_checkpoints(months: list[AuditMonth], keys: list[RSAKey]) -> int:
    """Every stored checkpoint verifies, matches its columns and follows the one before; how many there are."""
    before_seq, before_hash, unsealed = 0, GENESIS, None
    count = 0
    for month in months:
        label, stored = month_label(month.month), month.checkpoint
        if stored is None:
            unsealed = unsealed or label
            continue
        if unsealed is not None:
            raise _Failed(f"{label} has a checkpoint but the earlier month {unsealed} has none")
        try:
            signed = open_checkpoint(stored.jws, keys)
        except CheckpointInvalid as exc:
            raise _Failed(f"the checkpoint of {label} does not verify: {exc}") from None
        claims = (signed.month, signed.first_seq, signed.last_seq, signed.rows, signed.prev_hash, signed.head_hash)
        if claims != (
            label,
            stored.first_seq,
            stored.last_seq,
            stored.rows,
            stored.prev_hash.hex(),
            stored.head_hash.hex(),
        ):
            raise _Failed(f"the stored checkpoint of {label} is not what its signature covers")
        if (stored.first_seq, stored.prev_hash) != (before_seq + 1, before_hash):
            raise _Failed(f"the checkpoint of {label} does not go on from where the one before it ends")
        before_seq, before_hash = stored.last_seq, stored.head_hash
        count += 1
    return count


def _check_pruned(months: list[AuditMonth], exports: list[StoredExport], walk: _Walk) -> str | None:
    """Pruned months are the oldest, each exported and verified; the walk starts where the last one ended."""
    exported = {(export.month, export.head_hash) for export in exports}
    since: str | None = None
    kept_before: str | None = None
    for month in months:
        label = month_label(month.month)
        if month.pruned_at is None:
            kept_before = kept_before or label
            continue
        if kept_before is not None:
            raise _Failed(f"{label} was pruned but the earlier month {kept_before} is kept")
        if month.checkpoint is None or (month.month, month.checkpoint.head_hash) not in exported:
            raise _Failed(f"{label} was dropped without a verified export of its checkpoint")
        walk.expected = walk.start = month.checkpoint.last_seq + 1
        walk.prev = month.checkpoint.head_hash
        since = label
    return since


async def _walk_month(conn: Connection, repo: AuditRepository, month: AuditMonth, walk: _Walk) -> None:
    label, sealed = month_label(month.month), month.checkpoint
    last = await repo.month_last_seq(conn, month.month)
    first = walk.expected
    async for walked in repo.walk(conn, month):
        event = walked.event
        if walked.seq is None or walked.hash is None:
            if sealed is not None or (last is not None and walk.expected <= last):
                raise _Failed(f"row id {event.id} is not in the chain", event.id)
            walk.pending += 1
            continue
        if walked.seq != walk.expected:
            await _missing(conn, repo, walk.expected)
        if walked.prev_hash != walk.prev:
            link = f"chain entry {walk.expected} (row id {event.id})"
            raise _Failed(f"broken link at {link}: its prev_hash is not the previous hash", event.id)
        if link_hash(walk.prev, event) != walked.hash:
            raise _Failed(f"row id {event.id} (chain entry {walk.expected}) does not match its hash", event.id)
        walk.prev = walked.hash
        walk.found = walk.found or walked.hash == walk.looking_for
        walk.expected += 1
    if last is not None and walk.expected <= last:
        await _missing(conn, repo, walk.expected)
    if sealed is not None and (first, walk.expected - 1, walk.prev) != (
        sealed.first_seq,
        sealed.last_seq,
        sealed.head_hash,
    ):
        raise _Failed(
            f"the chain of {label} runs from entry {first} to {walk.expected - 1}, but its checkpoint seals entries "
            f"{sealed.first_seq}-{sealed.last_seq} ending in {sealed.head_hash.hex()}: rows were removed or rewritten"
        )


async def _missing(conn: Connection, repo: AuditRepository, seq: int) -> None:
    """Name what is wrong about the chain entry ``seq`` that the walk expected and did not find in its place."""
    entry = await repo.chain_entry(conn, seq)
    if entry is None:
        raise _Failed(f"chain entry {seq} is missing from audit_chain")
    audit_id, present = entry
    if not present:
        raise _Failed(f"row id {audit_id} (chain entry {seq}) is missing from audit_events", audit_id)
    raise _Failed(f"row id {audit_id} (chain entry {seq}) is out of chain order (xid or id changed)", audit_id)


def _check_anchor(anchor: Anchor, months: list[AuditMonth], keys: list[RSAKey], walk: _Walk) -> None:
    sealed = {m.month: m.checkpoint for m in months if m.checkpoint is not None}
    if (
        anchor.head_hash is not None
        and not walk.found
        and anchor.head_hash not in {c.head_hash for c in sealed.values()}
    ):
        raise _Failed(
            f"the chain does not pass through the expected head {anchor.head_hash.hex()}: "
            "rows at its tail were removed (or the hash is not one this trail printed)"
        )
    if anchor.checkpoint is not None:
        try:
            kept = open_checkpoint(anchor.checkpoint, keys)
        except CheckpointInvalid as exc:
            raise _Failed(f"the checkpoint given does not verify: {exc}") from None
        stored = sealed.get(parse_month(kept.month))
        if stored is None:
            raise _Failed(
                f"the checkpoint of {kept.month} (entries {kept.first_seq}-{kept.last_seq}, head {kept.head_hash}) "
                "is not in the database: the trail was cut back"
            )
        if (stored.last_seq, stored.head_hash.hex()) != (kept.last_seq, kept.head_hash):
            raise _Failed(f"the checkpoint of {kept.month} in the database is not the one given: it was replaced")
