"""``ief-registry audit verify`` (the real CLI) against tampered and untouched trails.

Every kind of tampering is caught: a changed row, a deleted row, a row deleted with its chain
entry, rows or entries put in another order, a forged checkpoint, and rows cut off at the tail
(with their chain entries, and even their month's checkpoint), the last through an anchor kept
outside the database.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import date
from pathlib import Path

import asyncpg
import msgspec
import pytest

from registry.audit.checkpoints import checkpoints_document, month_label
from registry.audit.repository import AuditRepository
from registry.db.queries import load_queries
from tests.audit_months import insert_events, months_back
from tests.cli import InstanceOf, run_cli
from tests.factories import make_audit_entry, make_ihi, make_service_id
from tests.pg import TestCluster


async def _verify(database_url: str, *args: str) -> tuple[int, str]:
    """Run the CLI (months close as soon as they end); return its exit status and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "audit", "verify", *args,
        env={
            **os.environ, "IEF_DATABASE_URL": database_url, "IEF_LOG_LEVEL": "warning",
            "IEF_AUDIT_CLOSE_GRACE_SECONDS": "0",
        },
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


def _head(output: str) -> str:
    return output.split("head hash ")[1].split(maxsplit=1)[0]


async def test_verify_names_rows_or_entries_put_in_another_order(trail: str) -> None:
    """Swapping two chain entries, or moving a row to a later transaction, breaks the chain where it happened."""
    assert (await _verify(trail))[0] == 0
    await _as_superuser_without_triggers(
        trail,
        "UPDATE audit_chain SET seq = 1000 WHERE seq = 4",
        "UPDATE audit_chain SET seq = 4 WHERE seq = 5",
        "UPDATE audit_chain SET seq = 5 WHERE seq = 1000",
    )
    status, output = await _verify(trail)
    assert status == 1
    assert "row id 5 (chain entry 4) is out of chain order" in output
    await _as_superuser_without_triggers(
        trail,
        "UPDATE audit_chain SET seq = 1000 WHERE seq = 5",
        "UPDATE audit_chain SET seq = 5 WHERE seq = 4",
        "UPDATE audit_chain SET seq = 4 WHERE seq = 1000",
    )
    assert (await _verify(trail))[0] == 0
    await _as_superuser_without_triggers(
        trail, "UPDATE audit_events SET xid = (SELECT xid FROM audit_events WHERE id = 9) WHERE id = 5"
    )
    status, output = await _verify(trail)
    assert status == 1
    assert "row id 5 (chain entry 5) is out of chain order (xid or id changed)" in output


async def test_verify_names_a_row_deleted_with_its_chain_entry(trail: str) -> None:
    """A row deleted together with its chain entry leaves a gap in the sequence numbers."""
    assert (await _verify(trail))[0] == 0
    await _as_superuser_without_triggers(
        trail, "DELETE FROM audit_events WHERE id = 6", "DELETE FROM audit_chain WHERE audit_id = 6"
    )
    status, output = await _verify(trail)
    assert status == 1
    assert "chain entry 6 is missing from audit_chain" in output


async def test_tail_truncation_is_caught_by_the_expected_head(trail: str) -> None:
    """Rows cut off at the tail with their chain entries fail against a head hash kept from before."""
    status, output = await _verify(trail)
    assert status == 0
    kept = _head(output)
    assert (await _verify(trail, "--expect-head", kept))[0] == 0
    await _as_superuser_without_triggers(
        trail, "DELETE FROM audit_chain WHERE seq > 9", "DELETE FROM audit_events WHERE id > 9"
    )
    status, output = await _verify(trail)
    assert (status, "ok: 9 rows chained") == (0, output.split("audit verify: ")[1][:18])  # alone, it cannot tell
    status, output = await _verify(trail, "--expect-head", kept)
    assert status == 1
    assert f"the chain does not pass through the expected head {kept}" in output


@pytest.fixture
async def months(template: TestCluster) -> str:
    """A database whose last month holds 40 sealed rows (checkpointed) and this month 6 chained rows."""
    database_url = await template.new_database()
    conn = await asyncpg.connect(database_url)
    try:
        await insert_events(conn, months_back(1), 40)
        await AuditRepository(load_queries()).insert(conn, [make_audit_entry() for _ in range(6)])
    finally:
        await conn.close()
    status, output = await _verify(database_url)
    assert status == 0, output
    assert "ok: 46 rows chained" in output
    return database_url


async def _stored_checkpoint(database_url: str, month: date) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT jws FROM audit_checkpoints WHERE month = $1", month))
    finally:
        await conn.close()


async def test_truncating_a_checkpointed_month_is_caught_by_its_checkpoint(months: str) -> None:
    """Cutting rows and entries off the end of a sealed month fails against the month's stored checkpoint."""
    last = months_back(1)
    await _as_superuser_without_triggers(
        months,
        f"CREATE TEMP TABLE cut AS SELECT audit_id FROM audit_chain WHERE month = '{last}' AND seq > 35",
        f"DELETE FROM audit_events WHERE recorded < '{months_back(0)}' AND id IN (SELECT audit_id FROM cut)",
        f"DELETE FROM audit_chain WHERE month = '{last}' AND seq > 35",
    )
    status, output = await _verify(months)
    assert status == 1
    assert f"the chain of {month_label(last)} runs from entry 1 to 35, but its checkpoint seals entries 1-40" in output


async def test_cutting_back_a_month_and_its_checkpoint_is_caught_by_a_kept_checkpoint(
    months: str, tmp_path: Path
) -> None:
    """Rows, entries and checkpoint deleted and the trail sealed anew: a checkpoint kept elsewhere fails it."""
    last = months_back(1)
    kept = tmp_path / "checkpoint.jws"
    kept.write_text(await _stored_checkpoint(months, last))
    assert (await _verify(months, "--checkpoint", str(kept)))[0] == 0
    await _as_superuser_without_triggers(
        months,
        "CREATE TEMP TABLE cut AS SELECT audit_id FROM audit_chain WHERE seq > 30",
        "DELETE FROM audit_events WHERE id IN (SELECT audit_id FROM cut)",
        "DELETE FROM audit_chain WHERE seq > 30",
        f"DELETE FROM audit_checkpoints WHERE month >= '{last}'",
    )
    status, output = await _verify(months)  # the sealer signs the shortened month again: alone, it looks fine
    assert status == 0, output
    assert await _stored_checkpoint(months, last) != kept.read_text()
    status, output = await _verify(months, "--checkpoint", str(kept))
    assert status == 1
    assert f"the checkpoint of {month_label(last)} in the database is not the one given: it was replaced" in output


async def test_a_deleted_checkpoint_is_caught_by_a_kept_copy(months: str, tmp_path: Path) -> None:
    """A checkpoint kept from GET /audit/checkpoints names the month whose checkpoint is gone from the database."""
    last = months_back(1)
    kept = tmp_path / "checkpoints.json"
    kept.write_bytes(
        msgspec.json.encode(
            {"checkpoints": [{"month": month_label(last), "jws": await _stored_checkpoint(months, last)}]}
        )
    )
    await _as_superuser_without_triggers(
        months,
        "DELETE FROM audit_chain",
        "DELETE FROM audit_events",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_months SET closed_at = NULL",
    )
    status, output = await _verify(months, "--checkpoint", str(kept))
    assert status == 1
    assert f"the checkpoint of {month_label(last)} (entries 1-40, head " in output
    assert "is not in the database: the trail was cut back" in output


@pytest.mark.parametrize(
    ("forgery", "named"),
    [
        ("UPDATE audit_checkpoints SET head_hash = sha256(head_hash)", "is not what its signature covers"),
        ("UPDATE audit_checkpoints SET jws = replace(jws, '.', '.x')", "does not verify"),
        ("UPDATE auth_keys SET purpose = 'retired-audit' WHERE purpose = 'audit'", "not a trusted audit key"),
    ],
)
async def test_a_forged_checkpoint_is_named(months: str, forgery: str, named: str) -> None:
    """A stored checkpoint changed, or signed by a key that is not the instance's, fails verification."""
    if "auth_keys" in forgery:  # the purpose check refuses another name: drop it for the attack
        await _as_superuser_without_triggers(months, "ALTER TABLE auth_keys DROP CONSTRAINT auth_keys_purpose_check")
    await _as_superuser_without_triggers(months, forgery)
    status, output = await _verify(months)
    assert status == 1
    assert f"checkpoint of {month_label(months_back(1))}" in output
    assert named in output


async def test_checkpoints_signed_before_an_audit_key_rotation_still_verify(months: str) -> None:
    """After `keys rotate --audit`, old checkpoints verify with the retired key; the published keys hold both."""
    instance = InstanceOf(months, make_service_id())
    rotated = await run_cli(instance, "keys", "rotate", "--audit")
    assert rotated.code == 0, rotated.err
    assert "new active audit key" in rotated.out
    conn = await asyncpg.connect(months)
    try:
        await conn.execute("UPDATE auth_keys SET expires_at = now() - interval '1 day' WHERE retired_at IS NOT NULL")
        document = await checkpoints_document(conn, AuditRepository(load_queries()))
    finally:
        await conn.close()
    status, output = await _verify(months)
    assert status == 0, output
    assert "1 checkpoints verified" in output
    assert len(document["jwks"]["keys"]) == 2
