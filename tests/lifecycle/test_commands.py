"""Lifecycle commands (DESIGN §11): services retire, services move, records stale; resumable, audited, notified."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.cli import Instance, on_a_terminal, run_cli
from tests.factories import make_ihi, make_service_id
from tests.fhir import endpoint_body
from tests.lifecycle.commands import Fleet, kill_half_way, load_records
from tests.pg import TestCluster
from tests.server import RunningServer, add_service

HUGE = 100_000


async def _one(database_url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def _chain_verifies(instance: Instance, *, alone: bool = True) -> None:
    """`audit verify` chains the trail (the commands' rows among them) and finds every row in place; ``alone``
    (no server writing meanwhile): every row of the trail is in the chain."""
    rows = await _one(instance.database_url, "SELECT count(*) FROM audit_events")
    verified = await run_cli(instance, "audit", "verify", extra_env={"IEF_AUDIT_CLOSE_GRACE_SECONDS": "0"})
    assert verified.code == 0, verified.err
    assert f"ok: {rows} rows chained" in verified.out if alone else "ok: " in verified.out


@pytest.mark.slow
async def test_retire_killed_half_way_and_run_again_archives_every_record_once(template: TestCluster) -> None:
    """services retire over 100,000 records, SIGKILLed a third of the way and run again: every active record is
    archived exactly once (one history entry each), the rerun says where it resumed, and the service is retired."""
    fleet = Fleet(await template.new_database(), make_service_id())
    gateway = make_service_id()
    await add_service(fleet.database_url, gateway)
    await load_records(fleet.database_url, gateway, HUGE)
    second = await kill_half_way(fleet, f"retire:{gateway}", HUGE, "services", "retire", gateway)
    assert second.code == 0, second.err
    assert "resuming at" in second.err
    assert f"of {HUGE:,} records" in second.err
    assert f"{HUGE:,} records" in second.last_line
    archived = await _one(
        fleet.database_url,
        "SELECT count(*) FILTER (WHERE status = 'archived' AND held AND version = 2) FROM records "
        "WHERE service_id = $1",
        gateway,
    )
    entries = await _one(
        fleet.database_url,
        "SELECT count(*) * 1000000 + count(DISTINCT record_id) FROM record_history "
        "WHERE service_id = $1 AND change = 'status-changed'",
        gateway,
    )
    assert (archived, entries) == (HUGE, HUGE * 1_000_000 + HUGE)
    assert await _one(fleet.database_url, "SELECT status FROM services WHERE service_id = $1", gateway) == "retired"
    chunks = await _one(
        fleet.database_url, "SELECT count(*) FROM audit_events WHERE path = $1", f"services retire {gateway}"
    )
    assert chunks == HUGE // 2000  # one audit row per chunk, none twice
    await _chain_verifies(fleet)


@pytest.mark.slow
async def test_move_killed_half_way_and_run_again_moves_every_record_once(template: TestCluster) -> None:
    """services move over 100,000 records, SIGKILLed a third of the way and run again: every record is at NEW with
    its id, one `moved` history entry each naming OLD; OLD is disabled."""
    fleet = Fleet(await template.new_database(), make_service_id())
    old, new = make_service_id(), make_service_id()
    await add_service(fleet.database_url, old)
    await add_service(fleet.database_url, new)
    await load_records(fleet.database_url, old, HUGE)
    second = await kill_half_way(fleet, f"move:{old}:{new}", HUGE, "services", "move", old, new)
    assert second.code == 0, second.err
    assert "resuming at" in second.err
    at_new = await _one(fleet.database_url, "SELECT count(*) FROM records WHERE service_id = $1 AND version = 2", new)
    moved = await _one(
        fleet.database_url,
        "SELECT count(*) * 1000000 + count(DISTINCT record_id) FROM record_history "
        "WHERE change = 'moved' AND previous_service = $1 AND service_id = $2",
        old, new,
    )  # fmt: skip
    assert (at_new, moved) == (HUGE, HUGE * 1_000_000 + HUGE)
    assert await _one(fleet.database_url, "SELECT count(*) FROM records WHERE service_id = $1", old) == 0
    assert await _one(fleet.database_url, "SELECT status FROM services WHERE service_id = $1", old) == "disabled"
    await _chain_verifies(fleet)


async def test_retire_archives_audits_and_is_final(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A small retire through the CLI: records archived as the operator's decision (a gateway cannot undo it), one
    audit row per chunk naming the patients, the Endpoint off, and the service cannot be enabled again, from the
    command line or over FHIR."""
    gateway = make_service_id()
    await server.add_service(gateway)
    ihis = sorted(make_ihi() for _ in range(5))
    for ihi in ihis:
        await client.put(f"/registry/records/{ihi}/{gateway}", json={})
    result = await run_cli(server, "services", "retire", gateway, "--reason", "practice closed")
    assert result.code == 0, result.err
    assert "5 records" in result.last_line
    records = (await client.get(f"/registry/records/{ihis[0]}", params={"status": "archived"})).json()["records"]
    assert [(r["status"], r.get("serviceStatus")) for r in records] == [("archived", "retired")]
    history = (await client.get(f"/registry/records/{ihis[0]}/history")).json()["history"]
    assert (history[-1]["change"], history[-1]["reason"], history[-1]["actor"]["admin"]) == (
        "status-changed",
        "practice closed",
        True,
    )
    audited = await server.count(
        "SELECT count(*) FROM audit_events WHERE method = 'CLI' AND path = $1 AND patients @> $2::text[]",
        f"services retire {gateway}", ihis,
    )  # fmt: skip
    assert audited == 1
    assert (await client.get(f"/fhir/Endpoint/{gateway}")).json()["status"] == "off"
    enable = await run_cli(server, "services", "enable", gateway)
    assert enable.code != 0
    assert "retired" in enable.err
    revived = await client.put(f"/fhir/Endpoint/{gateway}", json={**endpoint_body(gateway), "id": gateway})
    assert revived.status_code == 409
    assert revived.json()["issue"][0]["details"]["coding"][0]["code"] == "service-retired"
    await _chain_verifies(server, alone=False)


async def test_stale_report_and_archive(client: httpx.AsyncClient, server: RunningServer) -> None:
    """records stale reports per service the active records not registered for the age given (CLI and HTTP) and
    archives them with --archive; a fresh registration is left alone."""
    gateway = make_service_id()
    await server.add_service(gateway, name="Old practice")
    old_ihi, fresh_ihi = make_ihi(), make_ihi()
    for ihi in (old_ihi, fresh_ihi):
        await client.put(f"/registry/records/{ihi}/{gateway}", json={})
    async with server.database.writer() as conn:
        await conn.execute(
            "UPDATE records SET last_updated = now() - interval '400 days', version = version + 1 WHERE ihi = $1",
            old_ihi,
        )
    report = (await client.get("/registry/reports/stale", params={"olderThan": "365d"})).json()
    mine = [s for s in report["services"] if s["serviceId"] == gateway]
    assert [(s["records"], s["name"]) for s in mine] == [(1, "Old practice")]
    listed = await run_cli(server, "records", "stale", "--older-than", "365d")
    assert gateway in listed.out
    archived = await run_cli(server, "records", "stale", "--older-than", "365d", "--archive")
    assert archived.code == 0, archived.err
    statuses = {
        ihi: (await client.get(f"/registry/records/{ihi}", params={"status": "active,archived"})).json()["records"][0][
            "status"
        ]
        for ihi in (old_ihi, fresh_ihi)
    }
    assert statuses == {old_ihi: "archived", fresh_ihi: "active"}
    bad = await client.get("/registry/reports/stale", params={"olderThan": "soon"})
    assert bad.status_code == 422


async def test_a_terminal_gets_a_progress_bar(client: httpx.AsyncClient, server: RunningServer) -> None:
    """On a terminal, services move draws a progress bar on stderr that says where it is and reaches every record."""
    old, new = make_service_id(), make_service_id()
    await server.add_service(old)
    await server.add_service(new)
    for ihi in [make_ihi() for _ in range(30)]:
        await client.put(f"/registry/records/{ihi}/{old}", json={})
    drawn = await on_a_terminal(
        server, "services", "move", old, new, extra_env={"IEF_RECORDS_LIFECYCLE_CHUNK_SIZE": "10"}
    )
    assert f"services move {old} {new} [" in drawn
    assert "30/30 100%" in drawn
    assert "30 moved" in drawn
