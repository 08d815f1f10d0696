"""Migrations on a real PostgreSQL: apply from zero, idempotent, every named query prepares and uses its indexes."""

from __future__ import annotations

import asyncpg

from registry.db.migrate import apply_migrations, schema_state
from registry.db.queries import load_queries
from registry.records.repository import RecordRepository, Writer
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import add_service


async def test_migrations_apply_from_zero_and_then_nothing(template: TestCluster) -> None:
    """An empty database gets every migration once; a second run applies nothing and is at head."""
    conn = await asyncpg.connect(await template.empty_database("ief_schema_zero"))
    try:
        assert (await schema_state(conn)).pending
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)
        state = await schema_state(conn)
    finally:
        await conn.close()
    assert [m.version for m in first] == [m.version for m in state.known]
    assert second == []
    assert state.at_head


async def test_every_named_query_prepares(template: TestCluster) -> None:
    """Every statement in sql/queries is valid SQL against the migrated schema (PREPARE succeeds)."""
    conn = await asyncpg.connect(await template.new_database())
    try:
        queries = load_queries()
        for name in queries.names():
            await conn.prepare(queries[name])
    finally:
        await conn.close()


async def _records_tuples_read(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_force_next_flush()")  # this session's counters, flushed once idle
    return int(
        await conn.fetchval(
            "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relname = 'records'"
        )
    )


async def test_writes_and_reads_by_ihi_use_the_primary_key(template: TestCluster) -> None:
    """Writes and look-ups of one IHI read a handful of rows, not every record of the service (the key is used)."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    repository = RecordRepository(load_queries())
    writer = Writer("test", service_id, admin=False)
    loaded = [make_ihi() for _ in range(2000)]
    conn = await asyncpg.connect(database_url)
    try:
        await repository.put_many(
            conn, ords=list(range(len(loaded))), ihis=loaded, service_ids=[service_id] * len(loaded),
            statuses=["active"] * len(loaded), types=["record"] * len(loaded), reasons=[None] * len(loaded),
            labels=[None] * len(loaded), writer=writer,
        )  # fmt: skip
        await conn.execute("ANALYZE records")
        before = await _records_tuples_read(conn)
        for status in ("archived", "archived"):  # an update, then an unchanged repeat
            await repository.put(
                conn,
                ihi=loaded[0],
                service_id=service_id,
                status=status,
                type_="record",
                writer=writer,
                reason=None,
                labels=None,
            )
        await repository.put_many(
            conn, ords=[0, 1], ihis=loaded[1:3], service_ids=[service_id] * 2, statuses=["removed"] * 2,
            types=["record"] * 2, reasons=[None] * 2, labels=[None, None], writer=writer,
        )  # fmt: skip
        await repository.for_ihi(conn, loaded[1], ["active"])
        await repository.by_key(conn, loaded[1], service_id)
        await repository.search(
            conn,
            ihis=[loaded[2]],
            service_ids=None,
            record_ids=None,
            statuses=["active"],
            unrouted=False,
            limit=10,
            offset=0,
        )
        read = await _records_tuples_read(conn) - before
    finally:
        await conn.close()
    assert read < 50


async def test_batch_statements_are_planned_for_their_own_rows(template: TestCluster) -> None:
    """In a batch transaction the chunk statement never gets a generic plan (which nest-loops over the chunk)."""
    database_url = await template.new_database()
    service_id = make_service_id()
    await add_service(database_url, service_id)
    repository = RecordRepository(load_queries())
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await repository.plan_batches(conn)
            for _ in range(8):  # PostgreSQL weighs a generic plan from the sixth execution on
                chunk = sorted(make_ihi() for _ in range(200))
                await repository.put_many(
                    conn, ords=list(range(len(chunk))), ihis=chunk, service_ids=[service_id] * len(chunk),
                    statuses=["active"] * len(chunk), types=["record"] * len(chunk), reasons=[None] * len(chunk),
                    labels=[None] * len(chunk), writer=Writer("test", service_id, admin=False),
                )  # fmt: skip
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE 'WITH input AS%'"
        )
    finally:
        await conn.close()
    assert plans is not None
    assert (plans["generic_plans"], plans["custom_plans"]) == (0, 8)
