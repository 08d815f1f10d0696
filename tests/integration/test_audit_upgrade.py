"""Upgrading a database with an audit trail from before months (migration 0007) to months (0008)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import asyncpg

from registry.audit.chain import GENESIS, link_hash
from registry.audit.partitions import add_months, this_month
from registry.audit.repository import AuditRepository
from registry.db.migrate import apply_migrations, known_migrations
from registry.db.queries import load_queries
from schemas.audit import StoredAuditEvent
from tests.cli import InstanceOf, run_cli
from tests.factories import make_audit_entry, make_service_id
from tests.pg import TestCluster, as_owner, as_server

_databases = itertools.count(1)
_ROW = (
    "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path, observer,"
    " patients) VALUES ($1, $2, 'search-type', 'E', 0, 200, 'GET', '/registry/records/8003608166690503',"
    " 'registry', ARRAY['8003608166690503'])"
)


async def _chain_as_before_months(conn: asyncpg.Connection, count: int) -> list[bytes]:
    """Chain the first ``count`` rows in (xid, id) order from the beginning, as the sealer before months did."""
    rows = await conn.fetch("SELECT * FROM audit_events ORDER BY xid, id LIMIT $1", count)
    prev, hashes = GENESIS, []
    for seq, row in enumerate(rows, start=1):
        event = StoredAuditEvent(
            **{k: row[k] for k in ("id", "xid", "recorded", "request_id", "peer_request_id", "interaction", "action",
                                   "outcome", "status", "detail", "method", "path", "query", "client_id",
                                   "client_service", "client_address", "token_id", "observer")},
            event_id=str(row["event_id"]), patients=tuple(row["patients"]), records=tuple(map(str, row["records"])),
        )  # fmt: skip
        digest = link_hash(prev, event)
        await conn.execute("INSERT INTO audit_chain VALUES ($1, $2, $3, $4)", seq, row["id"], prev, digest)
        prev = digest
        hashes.append(digest)
    return hashes


async def test_a_trail_from_before_months_is_kept_whole_and_goes_on(template: TestCluster) -> None:
    """Rows of several months (their months interleaved in chain order), chained or not, verify after the upgrade.

    The old tables become the period up to the end of this month: nothing is copied or chained again,
    new rows continue the ids and the chain, and every partition stays append-only.
    """
    url = await template.empty_database(f"ief_audit_upgrade_{next(_databases)}")
    start = datetime.combine(this_month(), datetime.min.time(), UTC)
    conn = await asyncpg.connect(as_owner(url))  # the role that runs migrations
    try:
        await apply_migrations(conn, through=7)  # the release before the months
        for n in range(12):  # two months back, last month and this month
            await conn.execute(_ROW, start - timedelta(days=40) + timedelta(days=n * 4), f"old-{n}")
        # A transaction that began before another but records a later month: chain order is not month order.
        first, second = conn, await asyncpg.connect(url)
        try:
            async with first.transaction():
                await first.execute(_ROW, start + timedelta(seconds=1), "this-month-earlier-xid")
                async with second.transaction():
                    await second.execute(_ROW, start - timedelta(seconds=1), "last-month-later-xid")
        finally:
            await second.close()
        hashes = await _chain_as_before_months(conn, 10)
        last_id = await conn.fetchval("SELECT max(id) FROM audit_events")
        applied = await apply_migrations(conn)  # the months and the releases after them
        months = await conn.fetch("SELECT month, starts, ends FROM audit_months ORDER BY month")
        kept = [bytes(row["hash"]) for row in await conn.fetch("SELECT hash FROM audit_chain ORDER BY seq")]
        server = await asyncpg.connect(as_server(url))  # a server of the new release, as its role
        try:
            await AuditRepository(load_queries()).insert(server, [make_audit_entry("after-the-upgrade")])
            new_id = await server.fetchval("SELECT id FROM audit_events WHERE request_id = 'after-the-upgrade'")
        finally:
            await server.close()
        where = await conn.fetchval("SELECT tableoid::regclass::text FROM audit_events WHERE request_id = 'old-0'")
    finally:
        await conn.close()
    assert [m.version for m in applied] == [m.version for m in known_migrations() if m.version >= 8]  # 0008 on
    assert {8, 9, 10, 11, 12} <= {m.version for m in applied}  # months, lifecycle, versions, privacy, batches
    assert [row["month"] for row in months] == [add_months(this_month(), n) for n in range(3)]
    assert months[0]["starts"].year == 1  # -infinity: the period holds everything from before
    assert months[0]["ends"] == datetime.combine(add_months(this_month(), 1), datetime.min.time(), UTC)
    assert kept == hashes
    assert where == f"audit_events_y{this_month().year}m{this_month().month:02d}"
    assert new_id == last_id + 1

    result = await run_cli(InstanceOf(url, make_service_id()), "audit", "verify")
    assert result.code == 0, result.err
    assert "ok: 15 rows chained" in result.out
