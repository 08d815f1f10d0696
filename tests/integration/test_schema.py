"""Migrations on a real PostgreSQL: apply from zero, idempotent, and every named query prepares."""

from __future__ import annotations

import asyncpg

from registry.db.migrate import apply_migrations, schema_state
from registry.db.queries import load_queries
from tests.pg import TestCluster


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
