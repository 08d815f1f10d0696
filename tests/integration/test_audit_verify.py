"""``ief-registry audit verify`` (the real CLI) against tampered and untouched trails."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import asyncpg
import pytest

from registry.audit.repository import AuditRepository
from registry.db.queries import load_queries
from tests.factories import make_audit_entry, make_ihi
from tests.pg import TestCluster


async def _verify(database_url: str) -> tuple[int, str]:
    """Run the CLI; return its exit status and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "audit", "verify",
        env={**os.environ, "IEF_DATABASE_URL": database_url, "IEF_LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def _as_superuser_without_triggers(database_url: str, *statements: str) -> None:
    """Change the trail the way an attacker with the database's superuser would: triggers bypassed."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def trail(template: TestCluster) -> str:
    """A database with twelve audit rows, not yet sealed."""
    database_url = await template.new_database()
    conn = await asyncpg.connect(database_url)
    try:
        repo = AuditRepository(load_queries())
        for _ in range(3):
            await repo.insert(conn, [make_audit_entry(patients=(make_ihi(),)) for _ in range(4)])
    finally:
        await conn.close()
    return database_url


async def test_verify_seals_then_names_a_changed_row(trail: str) -> None:
    """An untouched trail verifies (sealed first); a row changed in SQL fails naming it; changed back, it verifies."""
    status, output = await _verify(trail)
    assert status == 0, output
    assert "ok: 12 rows chained, head hash " in output
    await _as_superuser_without_triggers(trail, "UPDATE audit_events SET client_id = 'someone-else' WHERE id = 7")
    status, output = await _verify(trail)
    assert status == 1
    assert "row id 7 (chain entry 7) does not match its hash" in output
    assert "after 6 good rows" in output
    await _as_superuser_without_triggers(trail, "UPDATE audit_events SET client_id = NULL WHERE id = 7")
    assert (await _verify(trail))[0] == 0


@pytest.mark.parametrize(
    ("tampering", "named"),
    [
        ("DELETE FROM audit_events WHERE id = 5", "row id 5 (chain entry 5) is missing from audit_events"),
        (
            "UPDATE audit_chain SET hash = sha256(hash) WHERE seq = 3",
            "row id 3 (chain entry 3) does not match its hash",
        ),
        ("DELETE FROM audit_chain WHERE seq = 9", "row id 9 is not in the chain"),
    ],
)
async def test_verify_names_what_was_removed_or_rewritten(trail: str, tampering: str, named: str) -> None:
    """A deleted row, a rewritten chain hash or a deleted chain entry fails verification, naming it."""
    assert (await _verify(trail))[0] == 0
    await _as_superuser_without_triggers(trail, tampering)
    status, output = await _verify(trail)
    assert status == 1
    assert named in output


async def test_verify_names_a_row_slipped_in_behind_the_head(trail: str) -> None:
    """A row inserted with a forged old transaction id, so that no sealer would take it, is named."""
    assert (await _verify(trail))[0] == 0
    conn = await asyncpg.connect(trail)
    try:
        forged = await conn.fetchval(
            "INSERT INTO audit_events (xid, recorded, request_id, interaction, action, outcome, status, method, path,"
            " observer) VALUES ('3', now(), 'forged', 'read', 'R', 0, 200, 'GET', '/', 'x') RETURNING id"
        )
    finally:
        await conn.close()
    status, output = await _verify(trail)
    assert status == 1
    assert f"row id {forged} is not in the chain" in output


async def test_verify_over_ten_thousand_rows_is_quick(template: TestCluster) -> None:
    """Sealing and verifying 10,000 rows with the CLI takes seconds, not minutes."""
    database_url = await template.new_database()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path,"
            " observer, patients) SELECT now() - make_interval(secs => g), 'bulk-' || g, 'search-type', 'E', 0, 200,"
            " 'GET', '/registry/records/8003608166690503', 'registry', ARRAY['8003608166690503']"
            " FROM generate_series(1, 10000) AS g"
        )
    finally:
        await conn.close()
    started = time.perf_counter()
    status, output = await _verify(database_url)
    elapsed = time.perf_counter() - started
    assert status == 0, output
    assert "ok: 10000 rows chained" in output
    assert elapsed < 60, f"audit verify over 10,000 rows took {elapsed:.1f} s"
