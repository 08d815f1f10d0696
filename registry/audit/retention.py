"""``audit prune``: drop the oldest months of the trail, only once each was exported and verified.

A month is pruned only if it is closed and sealed, an export of it was read back whole against its
checkpoint (``audit_exports`` holds its head hash), and every earlier month is pruned or pruned in
the same run; otherwise nothing at all is dropped. Each month goes in a transaction of its own
that drops its two partitions (``audit_drop_month``, which checks the same again) and writes an
audit row saying so, which the sealer chains like any other: the chain itself records that the
month was pruned, and ``audit verify`` then starts from the month's checkpoint. Dropping a
partition locks the partitioned table briefly, so the transaction waits at most ``lock_timeout``
for requests that are writing audit rows; the command can simply be run again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from registry.audit.checkpoints import month_label
from registry.audit.partitions import add_months, this_month
from schemas.audit import Action, AuditEntry, Interaction, Outcome

if TYPE_CHECKING:
    from registry.audit.repository import AuditMonth, AuditRepository, StoredExport
    from registry.db.pool import Connection

__all__ = ("PruneRefused", "Pruned", "default_before", "prune")

OPERATOR = "operator"
"""The client the audit row of a prune names (the local operator, as ``ief-registry token`` does)."""


class PruneRefused(RuntimeError):
    """Some month to prune has no verified export: nothing was dropped."""


@dataclass(frozen=True, slots=True)
class Pruned:
    """A month dropped: its label, how many events it held, and the export that holds them now."""

    month: str
    events: int
    location: str


def default_before(retention_months: int, now: datetime | None = None) -> date:
    """The first month kept under a retention of ``retention_months`` full months (besides the current one)."""
    return add_months(this_month(now), -retention_months)


def _entry(month: AuditMonth, export: StoredExport, *, observer: str, before: date) -> AuditEntry:
    assert month.checkpoint is not None
    sealed = month.checkpoint
    detail = (
        f"pruned audit month {month_label(month.month)}: {sealed.rows} events, chain entries "
        f"{sealed.first_seq}-{sealed.last_seq}, checkpoint head {sealed.head_hash.hex()}; exported and verified "
        f"{export.verified_at.astimezone(UTC).isoformat(timespec='seconds')} to {export.location}"
    )
    return AuditEntry(
        recorded=datetime.now(UTC), request_id=uuid.uuid4().hex, peer_request_id=None,
        interaction=Interaction.DELETE, action=Action.DELETE, outcome=Outcome.SUCCESS, status=200, detail=detail,
        method="CLI", path="ief-registry audit prune", query=f"before={month_label(before)}", client_id=OPERATOR,
        client_service=observer, client_address=None, token_id=None, observer=observer,
    )  # fmt: skip


async def prune(
    conn: Connection, repo: AuditRepository, before: date, *, observer: str, lock_timeout: str = "5s"
) -> list[Pruned]:
    """Drop every kept month that ends on or before ``before`` (oldest first); what was dropped.

    Raises:
        PruneRefused: a month to drop is not sealed, or has no verified export of its checkpoint.
    """
    cut = datetime(before.year, before.month, 1, tzinfo=UTC)
    due = [m for m in await repo.months(conn) if m.pruned_at is None and m.ends <= cut]
    exported = {(x.month, x.head_hash): x for x in await repo.exports(conn)}
    lacking = [
        month_label(m.month) for m in due if m.checkpoint is None or (m.month, m.checkpoint.head_hash) not in exported
    ]
    if lacking:
        raise PruneRefused(
            f"nothing pruned: {', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no verified export "
            f"(`ief-registry audit export --month {lacking[0]} --to DIR` first)"
        )
    pruned: list[Pruned] = []
    for month in due:
        assert month.checkpoint is not None
        export = exported[(month.month, month.checkpoint.head_hash)]
        async with conn.transaction():
            await repo.drop_month(conn, month.month, lock_timeout=lock_timeout)
            await repo.insert(conn, [_entry(month, export, observer=observer, before=before)])
        pruned.append(Pruned(month_label(month.month), month.checkpoint.rows, export.location))
    return pruned
