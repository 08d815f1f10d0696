"""The audit trail by month on a real PostgreSQL: partitions made ahead, closing, checkpoints, refusals, plans."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from registry import errors
from registry.audit.chain import seal
from registry.audit.checkpoints import month_label, open_checkpoint, read_trusted_keys
from registry.audit.partitions import MONTHS_AHEAD, MonthKeeper, add_months, ensure_months, this_month
from registry.audit.repository import AuditRepository
from registry.audit.verify import verify
from registry.config import AuditSettings, DatabaseSettings, LogSettings, Settings
from registry.db.pool import Database, open_database
from registry.db.queries import load_queries
from registry.db.roles import SERVER_LOGIN
from schemas.audit import AuditEntry
from tests.audit_ledger import AuditLedger
from tests.audit_months import insert_events, instance_signer, months_back, seal_all
from tests.factories import make_audit_entry, make_service_id
from tests.pg import TestCluster, as_server
from tests.server import running_server


def _start_of(month: date) -> datetime:
    return datetime.combine(month, datetime.min.time(), UTC)


def _entry_at(recorded: datetime, request_id: str | None = None) -> AuditEntry:
    return msgspec.structs.replace(make_audit_entry(request_id), recorded=recorded)


@pytest.fixture
async def fresh(template: TestCluster) -> str:
    """A migrated database of the test's own."""
    return await template.new_database()


def _partitions(conn: asyncpg.Connection, parent: str) -> Any:
    return conn.fetch(
        "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1",
        parent,
    )


async def test_a_new_database_has_last_month_to_two_months_ahead(fresh: str) -> None:
    """Migrated, a database has partitions for last month through MONTHS_AHEAD months ahead, events and chain alike."""
    conn = await asyncpg.connect(fresh)
    try:
        months = [row["month"] for row in await conn.fetch("SELECT month FROM audit_months ORDER BY month")]
        events = [row["relname"] for row in await _partitions(conn, "audit_events")]
        chain = [row["relname"] for row in await _partitions(conn, "audit_chain")]
    finally:
        await conn.close()
    expected = [add_months(this_month(), n) for n in range(-1, MONTHS_AHEAD + 1)]
    assert months == expected
    assert events == [f"audit_events_y{m.year}m{m.month:02d}" for m in expected]
    assert chain == [f"audit_chain_y{m.year}m{m.month:02d}" for m in expected]


async def test_months_are_made_ahead_consecutively_and_once(fresh: str) -> None:
    """Later on, the next months are made without gaps; again, nothing; more than a year ahead is refused."""
    repo = AuditRepository(load_queries())
    later = datetime.now(UTC) + timedelta(days=95)
    conn = await asyncpg.connect(fresh)
    try:
        made = await ensure_months(conn, repo, later)
        again = await ensure_months(conn, repo, later)
        months = [row["month"] for row in await conn.fetch("SELECT month FROM audit_months ORDER BY month")]
        with pytest.raises(asyncpg.InvalidParameterValueError, match="twelve months ahead"):
            await repo.ensure_months(conn, this_month(), add_months(this_month(), 13))
    finally:
        await conn.close()
    assert (made, again) == (3, 0)
    assert months == [add_months(this_month(), n) for n in range(-1, MONTHS_AHEAD + 4)]


async def test_the_keeper_makes_the_months_due_at_start_and_then_on_its_interval(fresh: str) -> None:
    """A process's keeper makes what is missing before it serves, and again on its interval as time goes on."""
    later = [datetime.now(UTC)]
    database = await open_database(fresh, DatabaseSettings(pool_min=0, pool_max=2))
    keeper = MonthKeeper(database, AuditRepository(load_queries()), interval=0.05, clock=lambda: later[0])
    try:
        await keeper.start()
        at_start = await _last_month(database)
        later[0] += timedelta(days=40)
        for _ in range(200):
            if await _last_month(database) > at_start:
                break
            await asyncio.sleep(0.02)
        moved_on = await _last_month(database)
    finally:
        await keeper.stop()
        await database.close()
    assert at_start == add_months(this_month(), MONTHS_AHEAD)
    assert moved_on == add_months(this_month(later[0]), MONTHS_AHEAD)


async def test_a_keeper_that_fails_at_start_lets_the_process_start(fresh: str) -> None:
    """Making months can fail at start (here: a clock far ahead); the process starts anyway and the keeper goes on."""
    database = await open_database(fresh, DatabaseSettings(pool_min=0, pool_max=2))
    far = datetime.now(UTC) + timedelta(days=800)
    keeper = MonthKeeper(database, AuditRepository(load_queries()), interval=3600, clock=lambda: far)
    try:
        await keeper.start()
        last = await _last_month(database)
    finally:
        await keeper.stop()
        await database.close()
    assert last == add_months(this_month(), MONTHS_AHEAD)


async def _last_month(database: Database) -> date:
    async with database.writer() as conn:
        return await conn.fetchval("SELECT max(month) FROM audit_months")  # type: ignore[no-any-return]


async def test_earlier_months_are_added_only_while_nothing_is_chained(fresh: str) -> None:
    """Before the first month, months are added while the chain is empty; once a row is chained, no more."""
    repo = AuditRepository(load_queries())
    conn = await asyncpg.connect(fresh)
    try:
        assert await repo.ensure_months(conn, months_back(3), months_back(3)) == 2
        await repo.insert(conn, [make_audit_entry()])
        async with instance_signer(fresh) as signer:
            await seal_all(conn, signer)
        assert await repo.ensure_months(conn, months_back(6), months_back(6)) == 0
        first = await conn.fetchval("SELECT min(month) FROM audit_months")
    finally:
        await conn.close()
    assert first == months_back(3)


async def test_the_server_role_makes_closes_and_uses_months_but_cannot_drop_them(fresh: str) -> None:
    """The server's role (``ief_app``, a member of ``ief_server``: it owns nothing) makes months ahead and closes
    them (SECURITY DEFINER functions), writes and reads rows of a month made that way through the parent tables,
    and can neither drop a month nor call the functions that create or drop partitions directly."""
    repository = AuditRepository(load_queries())
    owner = await asyncpg.connect(fresh)
    server = await asyncpg.connect(as_server(fresh))
    try:
        assert await server.fetchval("SELECT current_user") == SERVER_LOGIN
        table_owner = await owner.fetchval(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'audit_events'"
        )
        ahead = add_months(this_month(), 4)
        made = await server.fetchval("SELECT audit_ensure_months($1::date, $2::date)", this_month(), ahead)
        await repository.insert(server, [_entry_at(_start_of(ahead), "made-later")])
        found = await server.fetchval("SELECT count(*) FROM audit_events WHERE request_id = 'made-later'")
        closed = await server.fetchval("SELECT audit_close_month($1::date, 0)", months_back(1))
        for statement in (
            f"SELECT audit_drop_month('{months_back(1)}'::date)",
            f"SELECT audit_create_month('{add_months(ahead, 1)}'::date)",
            f"DROP TABLE audit_events_y{months_back(1).year}m{months_back(1).month:02d}",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await server.execute(statement)
        owners = {row["owner"] for row in await _partitions(owner, "audit_events")}
    finally:
        await server.close()
        await owner.close()
    assert (made, found, closed) == (2, 1, True)
    assert owners == {table_owner}


@pytest.mark.parametrize("table", ["audit_events", "audit_chain"])
async def test_every_partition_is_append_only(fresh: str, table: str) -> None:
    """UPDATE, DELETE and TRUNCATE are refused on each partition as on the partitioned table."""
    conn = await asyncpg.connect(fresh)
    try:
        await insert_events(conn, months_back(1), 3)
        await AuditRepository(load_queries()).insert(conn, [make_audit_entry()])
        async with instance_signer(fresh) as signer:
            await seal_all(conn, signer)
        partitions = [row["relname"] for row in await _partitions(conn, table)]
        refused = 0
        for relation in [table, *partitions]:
            column = "status" if table == "audit_events" else "hash"
            for statement in (f"UPDATE {relation} SET {column} = {column}", f"DELETE FROM {relation}",
                              f"TRUNCATE {relation}"):  # fmt: skip
                rows = await conn.fetchval(f"SELECT count(*) FROM {relation}")
                if rows or statement.startswith("TRUNCATE"):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not allowed"):
                        await conn.execute(statement)
                    refused += 1
    finally:
        await conn.close()
    assert refused >= len(partitions) + 4  # TRUNCATE on each, UPDATE and DELETE where rows are


async def test_a_closed_month_refuses_rows_and_a_missing_month_is_unavailable(fresh: str) -> None:
    """A row for a closed month, or for a month without a partition, is a 503 (DependencyUnavailable), never a 500."""
    repo = AuditRepository(load_queries())
    conn = await asyncpg.connect(fresh)
    try:
        async with instance_signer(fresh) as signer:
            await seal_all(conn, signer)
        late = make_audit_entry()
        late = type(late)(
            **{**msgspec.structs.asdict(late), "recorded": datetime.combine(months_back(1), datetime.min.time(), UTC)}
        )
        with pytest.raises(errors.DependencyUnavailable, match="audit trail cannot take"):
            await repo.insert(conn, [late])
        with pytest.raises(asyncpg.PostgresError, match="is closed") as raised:
            await conn.execute(
                "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path,"
                " observer) VALUES ($1, 'late', 'read', 'R', 0, 200, 'GET', '/', 'x')",
                late.recorded,
            )
        assert raised.value.sqlstate == "IE002"
        ancient = _entry_at(datetime(1999, 1, 1, tzinfo=UTC))
        with pytest.raises(errors.DependencyUnavailable):
            await repo.insert(conn, [ancient])
    finally:
        await conn.close()


async def test_closing_waits_for_a_transaction_still_writing_into_the_month(fresh: str) -> None:
    """A transaction still writing into last month holds its closing (no row is lost); one in this month does not."""
    repo = AuditRepository(load_queries())
    writer, now_writer, sealer = [await asyncpg.connect(fresh) for _ in range(3)]
    try:
        await insert_events(sealer, months_back(1), 10)
        late_row = make_audit_entry("late-in-month")
        late_row = type(late_row)(
            **{
                **msgspec.structs.asdict(late_row),
                "recorded": datetime.combine(months_back(1), datetime.min.time(), UTC) + timedelta(days=3),
            }
        )
        slow = writer.transaction()
        await slow.start()
        await repo.insert(writer, [late_row])
        current = now_writer.transaction()
        await current.start()
        await repo.insert(now_writer, [make_audit_entry("this-month")])
        async with instance_signer(fresh) as signer:
            held = await seal(sealer, repo, signer, close_grace=0)
            closed_while_open = await sealer.fetchval(
                "SELECT closed_at FROM audit_months WHERE month = $1", months_back(1)
            )
            await slow.commit()
            await seal_all(sealer, signer)
            closed = await sealer.fetchval(
                "SELECT closed_at IS NOT NULL FROM audit_months WHERE month = $1", months_back(1)
            )
            rows = await sealer.fetchval("SELECT rows FROM audit_checkpoints WHERE month = $1", months_back(1))
            await current.commit()
            await seal_all(sealer, signer)
            verdict = await verify(sealer, repo)
    finally:
        for conn in (writer, now_writer, sealer):
            await conn.close()
    assert held.checkpointed is None
    assert closed_while_open is None
    assert (closed, rows) == (True, 11)
    assert (verdict.ok, verdict.rows, verdict.pending) == (True, 12, 0), verdict.problem


async def test_the_server_closes_months_and_publishes_their_checkpoints(fresh: str, tmp_path: Path) -> None:
    """A running server seals last month by itself; GET /audit/checkpoints shows it signed (admin only, not audited)."""
    conn = await asyncpg.connect(fresh)
    try:
        await insert_events(conn, months_back(1), 25)
    finally:
        await conn.close()
    settings = Settings(log=LogSettings(access=False), audit=AuditSettings(seal_interval_ms=20, close_grace_seconds=0))
    async with running_server(settings, fresh, make_service_id()) as server:
        ledger = AuditLedger(server.audited)
        async with httpx.AsyncClient(base_url=server.base_url, event_hooks=ledger.hooks()) as http:
            admin = await server.headers("admin")
            document: dict[str, Any] = {"checkpoints": []}
            for _ in range(250):  # the sealer closes and checkpoints the month within a few intervals
                response = await http.get("/audit/checkpoints", headers=admin)
                assert response.status_code == 200
                document = response.json()
                if document["checkpoints"]:
                    break
                await asyncio.sleep(0.02)
            auditor = await server.headers("system/AuditEvent.rs")
            forbidden = await http.get("/audit/checkpoints", headers=auditor)
            anonymous = await http.get("/audit/checkpoints")
        await ledger.check(fresh)
    assert (forbidden.status_code, anonymous.status_code) == (403, 401)
    assert forbidden.json()["resourceType"] == anonymous.json()["resourceType"] == "OperationOutcome"
    published = document["checkpoints"][0]
    assert (published["month"], published["rows"], published["firstSeq"], published["lastSeq"]) == (
        month_label(months_back(1)), 25, 1, 25,
    )  # fmt: skip
    saved = tmp_path / "checkpoints.json"  # as an operator keeps it, and as `audit verify --key` reads it
    saved.write_bytes(msgspec.json.encode(document))
    checkpoint = open_checkpoint(published["jws"], read_trusted_keys(saved))
    assert (checkpoint.head_hash, checkpoint.issuer) == (published["headHash"], server.service_id)


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.fixture(scope="module")
async def searchable(template: TestCluster) -> str:
    """A trail of four months, 20,000 rows each, analysed."""
    database_url = await template.new_database()
    conn = await asyncpg.connect(database_url)
    try:
        await AuditRepository(load_queries()).ensure_months(conn, months_back(4), months_back(4))
        for back in range(4, 0, -1):
            await insert_events(conn, months_back(back), 20_000, prefix=f"m{back}")
        await conn.execute("ANALYZE audit_events")
    finally:
        await conn.close()
    return database_url


_FAR = (datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
@pytest.mark.parametrize(
    ("query", "extra"),
    [("search_audit_events", ()), ("search_audit_events_by_agent", ("client-3",)),
     ("search_audit_events_by_patient", ("8003600000000007", None))],
    ids=["date", "agent", "patient"],
)  # fmt: skip
async def test_searches_by_date_read_one_month_through_an_index(
    searchable: str, query: str, extra: tuple[object, ...], generic: bool
) -> None:
    """A search within one month scans only that month's partition, through an index (custom and generic plans)."""
    month = months_back(2)
    since = datetime.combine(month, datetime.min.time(), UTC) + timedelta(days=3)
    until = since + timedelta(days=5)
    args = (since, until, *_FAR, 21, *extra)
    sql = load_queries()[query]
    conn = await asyncpg.connect(searchable)
    try:
        if generic:  # as asyncpg's prepared statements run after five executions: pruned when the plan starts
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE search AS {sql}")
            values = ", ".join(
                "NULL" if a is None else f"'{a.isoformat() if isinstance(a, datetime) else a}'" for a in args
            )
            text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE search({values})")
        else:
            text = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        rows = await conn.fetch(sql, *args)
    finally:
        await conn.close()
    nodes = list(_plan_nodes(msgspec.json.decode(text)[0]["Plan"]))
    scanned = {node["Relation Name"] for node in nodes if "Relation Name" in node}
    assert scanned == {f"audit_events_y{month.year}m{month.month:02d}"}
    assert any("Index" in node["Node Type"] for node in nodes), [node["Node Type"] for node in nodes]
    assert not any(node["Node Type"] == "Seq Scan" for node in nodes)
    assert not generic or any(node.get("Subplans Removed", 0) > 0 for node in nodes)
    assert rows
    assert all(since <= row["recorded"] < until for row in rows)


async def test_the_newest_page_reads_only_the_newest_months(searchable: str) -> None:
    """Without a date, newest first, the first page comes from the newest month; older months are never read."""
    sql = load_queries()["search_audit_events"]
    conn = await asyncpg.connect(searchable)
    try:
        text = await conn.fetchval(
            f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", datetime(1, 1, 2, tzinfo=UTC), _FAR[0], *_FAR, 21
        )
    finally:
        await conn.close()
    nodes = list(_plan_nodes(msgspec.json.decode(text)[0]["Plan"]))
    read = {node["Relation Name"] for node in nodes if "Relation Name" in node and node["Actual Loops"] > 0}
    last = months_back(1)
    newer = {
        f"audit_events_y{m.year}m{m.month:02d}" for m in (add_months(this_month(), n) for n in range(MONTHS_AHEAD + 1))
    }
    assert read == newer | {f"audit_events_y{last.year}m{last.month:02d}"}


async def test_a_month_whose_rows_fill_the_last_run_exactly_is_still_checkpointed(fresh: str) -> None:
    """A closed month of exactly two runs' worth of rows, and nothing after it, gets its checkpoint in the same loop."""
    repo = AuditRepository(load_queries())
    conn = await asyncpg.connect(fresh)
    try:
        await insert_events(conn, months_back(1), 20)
        async with instance_signer(fresh) as signer:
            runs = [await seal(conn, repo, signer, limit=10, close_grace=0)]
            while runs[-1].more and (runs[-1].sealed or runs[-1].checkpointed):
                runs.append(await seal(conn, repo, signer, limit=10, close_grace=0))
        rows = await conn.fetchval("SELECT rows FROM audit_checkpoints WHERE month = $1", months_back(1))
    finally:
        await conn.close()
    assert [r.sealed for r in runs[:3]] == [10, 10, 0]
    assert runs[2].checkpointed == month_label(months_back(1))
    assert rows == 20
