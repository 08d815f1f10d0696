"""A month of a million audit events: sealed, exported, verified offline, pruned, and the trail still verifies.

About four minutes on a busy 2-core machine: rows inserted in one statement 18 s, sealed and
verified 100 s, exported and read back 60 s (2.8 GB), verified offline 20 s.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from registry.audit.checkpoints import month_label
from registry.audit.export import CHAIN_FILE, EVENTS_FILE
from tests.audit_months import insert_events, months_back
from tests.cli import InstanceOf, run_cli
from tests.factories import make_service_id
from tests.pg import TestCluster

_EVENTS = 1_000_000
_NOW = {"IEF_AUDIT_CLOSE_GRACE_SECONDS": "0"}


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


@pytest.mark.slow
async def test_a_month_of_a_million_events_round_trips(template: TestCluster, tmp_path: Path) -> None:
    """Export and offline verify of 1,000,000 events agree with the checkpoint; prune it; verify from the checkpoint."""
    instance = InstanceOf(await template.new_database(), make_service_id())
    last = month_label(months_back(1))
    conn = await asyncpg.connect(instance.database_url)
    try:
        await insert_events(conn, months_back(1), _EVENTS)
        await conn.execute(
            "INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path,"
            " observer) SELECT now(), 'now-' || g, 'read', 'R', 0, 200, 'GET', '/', 'x' FROM generate_series(1, 3) g"
        )
    finally:
        await conn.close()

    sealed = await run_cli(instance, "audit", "verify", extra_env=_NOW)
    assert sealed.code == 0, sealed.err
    assert f"ok: {_EVENTS + 3} rows chained" in sealed.out

    folder = tmp_path / last
    try:
        await _export_verify_prune(instance, last, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # 2.8 GB: pytest keeps the folders of its last runs

    after = await run_cli(instance, "audit", "verify", extra_env=_NOW)
    assert after.code == 0, after.err
    assert f"ok: 4 rows chained from the checkpoint of {last}" in after.out  # this month's three and the prune's
    assert f"(chain entry {_EVENTS + 4};" in after.out


async def _export_verify_prune(instance: InstanceOf, last: str, folder: Path) -> None:
    exported = await run_cli(instance, "audit", "export", "--month", last, "--to", str(folder), extra_env=_NOW)
    assert exported.code == 0, exported.err
    assert f"audit export: {last}: {_EVENTS} events to {folder}" in exported.out
    assert _lines(folder / EVENTS_FILE) == _lines(folder / CHAIN_FILE) == _EVENTS

    offline = await run_cli(InstanceOf("postgresql://nowhere.invalid/none", instance.service_id),
                            "audit", "verify", "--export", str(folder))  # fmt: skip
    assert offline.code == 0, offline.err
    assert f"ok: export {folder}: {last}, {_EVENTS} events" in offline.out

    pruned = await run_cli(instance, "audit", "prune", "--before", month_label(months_back(0)), extra_env=_NOW)
    assert pruned.code == 0, pruned.err
    assert f"dropped {last} ({_EVENTS} events" in pruned.out
