"""``audit export``, ``audit verify --export`` and ``audit prune`` (the real CLI) on a trail with sealed months."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import shutil
import sys
from datetime import date
from pathlib import Path

import asyncpg
import msgspec
import pytest

from registry.audit.chain import decode_canonical
from registry.audit.checkpoints import month_label, open_checkpoint, read_trusted_keys
from registry.audit.export import CHAIN_FILE, CHECKPOINT_FILE, EVENTS_FILE, KEYS_FILE, MANIFEST_FILE
from registry.audit.repository import AuditRepository
from registry.db.queries import load_queries
from schemas.fhir.audit import check_r4b
from tests.audit_months import insert_events, months_back
from tests.cli import CliResult, InstanceOf, run_cli
from tests.factories import make_rsa_key, make_service_id
from tests.pg import TestCluster

_NOW = {"IEF_AUDIT_CLOSE_GRACE_SECONDS": "0"}
"""Months close as soon as they end (a test may run in the first minutes of a month)."""


async def _cli(instance: InstanceOf, *args: str) -> CliResult:
    return await run_cli(instance, *args, extra_env=_NOW)


async def _sealed_trail(template: TestCluster) -> InstanceOf:
    instance = InstanceOf(await template.new_database(), make_service_id())
    conn = await asyncpg.connect(instance.database_url)
    try:
        await AuditRepository(load_queries()).ensure_months(conn, months_back(2), months_back(2))
        await insert_events(conn, months_back(2), 300, prefix="older")
        await insert_events(conn, months_back(1), 50, prefix="last")
        await conn.execute(
            "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path,"
            " observer) SELECT now(), 'now-' || g, 'read', 'R', 0, 200, 'GET', '/', 'x' FROM generate_series(1, 5) g"
        )
    finally:
        await conn.close()
    result = await _cli(instance, "audit", "verify")
    assert result.code == 0, result.err
    assert "ok: 355 rows chained" in result.out
    return instance


@pytest.fixture
async def sealed(template: TestCluster) -> InstanceOf:
    """A trail whose month before last holds 300 events and last month 50, both sealed; this month has 5."""
    return await _sealed_trail(template)


@pytest.fixture(scope="module")
async def shared(template: TestCluster) -> InstanceOf:
    """The same trail, shared by the tests of this module that only read it."""
    return await _sealed_trail(template)


@pytest.fixture(scope="module")
async def exported(shared: InstanceOf, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of the month before last of the shared trail (tests copy it before changing it)."""
    folder = tmp_path_factory.mktemp("export") / "out"
    result = await _cli(shared, "audit", "export", "--month", _label(months_back(2)), "--to", str(folder))
    assert result.code == 0, result.err
    return folder


def _label(month: date) -> str:
    return month_label(month)


async def test_export_writes_bulk_ndjson_that_verifies_offline(shared: InstanceOf, tmp_path: Path) -> None:
    """An export holds the month's AuditEvents (valid R4, BALP) with their chain and checkpoint; it verifies alone."""
    month = _label(months_back(2))
    folder = tmp_path / "out"
    exported = await _cli(shared, "audit", "export", "--month", month, "--to", str(folder))
    assert exported.code == 0, exported.err
    assert f"audit export: {month}: 300 events to {folder} (" in exported.out
    assert "read back and verified" in exported.out
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [EVENTS_FILE, CHAIN_FILE, CHECKPOINT_FILE, KEYS_FILE, MANIFEST_FILE]
    )
    manifest = msgspec.json.decode((folder / MANIFEST_FILE).read_bytes())
    assert manifest["output"] == [{"type": "AuditEvent", "url": EVENTS_FILE, "count": 300}]
    assert manifest["requiresAccessToken"] is False
    events = [msgspec.json.decode(line) for line in (folder / EVENTS_FILE).read_bytes().splitlines()]
    assert len(events) == 300
    check_r4b(events[0])
    assert {e["resourceType"] for e in events} == {"AuditEvent"}
    assert all(e["recorded"].startswith(month) for e in events)
    chain = [msgspec.json.decode(line) for line in (folder / CHAIN_FILE).read_bytes().splitlines()]
    assert [c["seq"] for c in chain] == list(range(1, 301))
    checkpoint = open_checkpoint((folder / CHECKPOINT_FILE).read_text(), read_trusted_keys(folder / KEYS_FILE))
    assert (checkpoint.month, checkpoint.rows, checkpoint.first_seq, checkpoint.last_seq) == (month, 300, 1, 300)
    assert checkpoint.head_hash == chain[-1]["hash"]
    assert checkpoint.issuer == shared.service_id

    offline = await run_cli(InstanceOf("postgresql://nowhere.invalid/none", shared.service_id),
                            "audit", "verify", "--export", str(folder))  # fmt: skip
    assert offline.code == 0, offline.err
    assert f"ok: export {folder}: {month}, 300 events, head hash {checkpoint.head_hash}" in offline.out


async def test_the_export_is_the_search_rendering(shared: InstanceOf, tmp_path: Path) -> None:
    """Each exported line is the AuditEvent of its chain row, in chain order: the same mapping as the FHIR search."""
    month = _label(months_back(1))
    assert (await _cli(shared, "audit", "export", "--month", month, "--to", str(tmp_path))).code == 0
    lines = (tmp_path / EVENTS_FILE).read_bytes().splitlines()
    rows = [decode_canonical(msgspec.json.decode(line, type=dict[str, msgspec.Raw])["row"])
            for line in (tmp_path / CHAIN_FILE).read_bytes().splitlines()]  # fmt: skip
    assert [msgspec.json.decode(line)["id"] for line in lines] == [row.event_id for row in rows]
    conn = await asyncpg.connect(shared.database_url)
    try:
        stored = await conn.fetch(
            "SELECT e.event_id::text, e.request_id FROM audit_chain c JOIN audit_events e ON e.id = c.audit_id"
            " WHERE c.month = $1 ORDER BY c.seq",
            months_back(1),
        )
    finally:
        await conn.close()
    assert [(row.event_id, row.request_id) for row in rows] == [(r["event_id"], r["request_id"]) for r in stored]
    assert {msgspec.json.decode(line)["action"] for line in lines} == {"E"}


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        ("event-line", "line 1 of AuditEvent.ndjson is not the AuditEvent of chain entry 1"),
        ("chain-row", "line 7: chain entry 7 does not match its hash"),
        ("dropped-line", "the export holds 299 events ending at entry 299"),
        ("reordered", "line 11: chain entry 12 where 11 follows"),
        ("checkpoint", "the checkpoint does not verify"),
        ("other-key", "which is not a trusted audit key"),
    ],
)
async def test_a_changed_export_fails_offline(
    shared: InstanceOf, exported: Path, tmp_path: Path, tamper: str, named: str
) -> None:
    """Changing an event, a chain row, the order, the length or the checkpoint of an export (verified when written,
    by `audit export`) is caught offline."""
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    events, chain = folder / EVENTS_FILE, folder / CHAIN_FILE
    args = ["audit", "verify", "--export", str(folder)]
    if tamper == "event-line":
        events.write_bytes(events.read_bytes().replace(b'"outcome":"0"', b'"outcome":"4"', 1))
    elif tamper == "chain-row":
        chain.write_bytes(chain.read_bytes().replace(b"older-7", b"older-8", 1))
    elif tamper == "dropped-line":
        for path in (events, chain):
            path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    elif tamper == "reordered":
        for path in (events, chain):
            lines = path.read_bytes().splitlines(keepends=True)
            lines[10], lines[11] = lines[11], lines[10]
            path.write_bytes(b"".join(lines))
    elif tamper == "checkpoint":
        token = (folder / CHECKPOINT_FILE).read_text().strip().split(".")
        token[1] = token[1][:-4] + ("AAAA" if not token[1].endswith("AAAA") else "BBBB")
        (folder / CHECKPOINT_FILE).write_text(".".join(token))
    else:
        other = tmp_path / "other.jwks"
        other.write_bytes(msgspec.json.encode({"keys": [make_rsa_key(alg="RS256").as_dict(private=False)]}))
        args += ["--key", str(other)]
    result = await run_cli(shared, *args)
    assert result.code == 1, result.out
    assert f"FAILED: export {folder}" in result.err
    assert named in result.err


async def test_prune_drops_only_exported_months_and_verify_goes_on_from_the_checkpoint(
    sealed: InstanceOf, tmp_path: Path
) -> None:
    """Prune refuses a month without a verified export (dropping nothing), drops it once exported (by --before or
    the retention policy), and says so in the chain."""
    older, last = _label(months_back(2)), _label(months_back(1))
    refused = await _cli(sealed, "audit", "prune", "--before", _label(months_back(0)))
    assert refused.code == 1
    assert f"nothing pruned: {older}, {last} have no verified export" in refused.err

    assert (await _cli(sealed, "audit", "export", "--month", older, "--to", str(tmp_path / older))).code == 0
    still_refused = await _cli(sealed, "audit", "prune", "--before", _label(months_back(0)))
    assert still_refused.code == 1
    assert f"nothing pruned: {last} has no verified export" in still_refused.err

    no_policy = await _cli(sealed, "audit", "prune")
    assert no_policy.code == 1
    assert "give --before YYYY-MM, or set IEF_AUDIT_RETENTION_MONTHS" in no_policy.err
    pruned = await run_cli(sealed, "audit", "prune", extra_env={**_NOW, "IEF_AUDIT_RETENTION_MONTHS": "1"})
    assert pruned.code == 0, pruned.err
    assert f"audit prune: dropped {older} (300 events; exported to {tmp_path / older})" in pruned.out
    conn = await asyncpg.connect(sealed.database_url)
    try:
        left = await conn.fetchval("SELECT count(*) FROM audit_events WHERE recorded < $1", months_back(1))
        partition = await conn.fetchval("SELECT to_regclass($1)", f"audit_events_y{older.replace('-', 'm')}")
        record = await conn.fetchrow("SELECT * FROM audit_events WHERE path = 'ief-registry audit prune'")
    finally:
        await conn.close()
    assert (left, partition) == (0, None)
    assert record is not None
    assert (record["interaction"], record["action"], record["client_id"]) == ("delete", "D", "operator")
    assert f"pruned audit month {older}: 300 events, chain entries 1-300" in record["detail"]

    verified = await _cli(sealed, "audit", "verify")
    assert verified.code == 0, verified.err
    # 50 of last month, 5 of this month and the prune's own row, chained on from where the older month ended.
    assert f"ok: 56 rows chained from the checkpoint of {older}" in verified.out
    assert "(chain entry 356;" in verified.out
    again = await run_cli(sealed, "audit", "verify", "--export", str(tmp_path / older))
    assert again.code == 0, again.err


async def test_export_refuses_an_open_month_and_a_used_directory(shared: InstanceOf, tmp_path: Path) -> None:
    """This month is not sealed yet; an export never overwrites files; an unknown month is named."""
    this_month = await _cli(shared, "audit", "export", "--month", _label(months_back(0)), "--to", str(tmp_path / "a"))
    assert this_month.code == 1
    assert "has no checkpoint yet" in this_month.err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    used = await _cli(shared, "audit", "export", "--month", _label(months_back(1)), "--to", str(tmp_path / "b"))
    assert used.code == 1
    assert "is not empty" in used.err
    unknown = await _cli(shared, "audit", "export", "--month", "1999-01", "--to", str(tmp_path / "c"))
    assert unknown.code == 1
    assert "has no month 1999-01" in unknown.err
    bad = await _cli(shared, "audit", "export", "--month", "May", "--to", str(tmp_path / "d"))
    assert bad.code == 2
    assert "is not a month (YYYY-MM)" in bad.err


async def test_a_terminal_gets_a_progress_bar(shared: InstanceOf, tmp_path: Path) -> None:
    """On a terminal, export and offline verify draw a progress bar (on stderr) that reaches every event."""
    folder = tmp_path / "out"
    drawn = [
        await _on_a_terminal(shared, "audit", "export", "--month", _label(months_back(2)), "--to", str(folder)),
        await _on_a_terminal(shared, "audit", "verify", "--export", str(folder)),
    ]
    assert "exporting" in drawn[0]
    assert "300/300" in drawn[0]
    assert "verifying" in drawn[1]
    assert "300/300" in drawn[1]


async def _on_a_terminal(instance: InstanceOf, *args: str) -> str:
    """Run the CLI with its stderr on a pseudo-terminal; what was drawn there."""
    leader, follower = pty.openpty()
    env = {**os.environ, "IEF_DATABASE_URL": instance.database_url, "IEF_SERVICE_ID": instance.service_id,
           "IEF_LOG_LEVEL": "warning", **_NOW}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    await process.communicate()
    drawn = b""
    with contextlib.suppress(OSError):  # the terminal is closed once the process has ended and all is read
        while chunk := os.read(leader, 65536):
            drawn += chunk
    os.close(leader)
    assert process.returncode == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")
