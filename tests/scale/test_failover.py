"""A failover as Patroni makes one: the primary dies mid-burst, its synchronous standby is promoted.

The server reaches the database through a multi-host URL with ``target_session_attrs=read-write``
(what HAProxy on Patroni's ``/primary`` check or a VIP does in production): its pools find the new
primary by themselves. With the standby synchronous (``synchronous_standby_names``), a write the
server acknowledged is on the standby before the answer, so the promotion loses none of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from registry.config import LogSettings, Settings
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.replica import replicated
from tests.server import running_server

pytestmark = pytest.mark.slow


async def _sql(url: str, query: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_a_failover_loses_no_acknowledged_write_and_answers_503_meanwhile() -> None:
    """SIGKILL-like stop of the primary during a burst of writes, then promotion of the synchronous standby:
    requests in between get 503 OperationOutcomes with Retry-After (never 500), the pools reconnect to the
    new primary without a restart, and every write answered 201 is there."""
    async with replicated("ief-test-failover-") as pg:
        await _sql(pg.primary_url, "ALTER SYSTEM SET synchronous_standby_names = '\"ief-replica\"'")
        await _sql(pg.primary_url, "SELECT pg_reload_conf()")
        for _ in range(200):
            if await _sql(pg.primary_url, "SELECT sync_state FROM pg_stat_replication") == "sync":
                break
            await asyncio.sleep(0.05)
        assert await _sql(pg.primary_url, "SELECT sync_state FROM pg_stat_replication") == "sync"

        hosts = quote(f"{pg.primary.socket_dir},{pg.standby.socket_dir}", safe="/,")
        both = f"postgresql://ief@/postgres?host={hosts}&target_session_attrs=read-write"
        settings = Settings(log=LogSettings(access=False))
        async with running_server(settings, both, make_service_id()) as server:
            gateway = make_service_id()
            await server.add_service(gateway)
            answers: list[tuple[str, int, float]] = []
            refusals: set[tuple[str | None, str]] = set()  # (Retry-After, resourceType) of every 503
            since, written, enough = [0.0], [0], asyncio.Event()  # 201s since a moment; set at 50 of them
            stop = asyncio.Event()
            async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers(), timeout=30) as http:

                async def lane() -> None:
                    while not stop.is_set():
                        ihi = make_ihi()
                        answer = await http.put(f"/registry/records/{ihi}/{gateway}", json={})
                        answers.append((ihi, answer.status_code, time.monotonic()))
                        if answer.status_code == 503:
                            refusals.add((answer.headers.get("retry-after"), answer.json()["resourceType"]))
                        if answer.status_code == 201 and answers[-1][2] > since[0]:
                            written[0] += 1
                            if written[0] >= 50:
                                enough.set()

                lanes = [asyncio.create_task(lane()) for _ in range(4)]
                await asyncio.wait_for(enough.wait(), timeout=30)
                crash = ("pg_ctl", "stop", "-D", str(pg.primary.cluster), "-m", "immediate")
                await asyncio.to_thread(pg.primary._run, *crash)
                await asyncio.sleep(1.0)  # the gap: no primary at all
                await asyncio.to_thread(pg.standby._run, "pg_ctl", "promote", "-D", str(pg.standby.cluster), "-w")
                since[0], written[0] = time.monotonic(), 0
                enough.clear()
                await asyncio.wait_for(enough.wait(), timeout=30)  # writes succeed again, on the new primary
                stop.set()
                await asyncio.gather(*lanes)
                ready = await http.get("/health/ready")

        statuses = Counter(status for _, status, _ in answers)
        assert set(statuses) <= {201, 503}, statuses
        assert statuses[503] > 0, statuses  # the gap was seen, and answered as "try again"
        assert refusals == {("2", "OperationOutcome")}
        assert ready.status_code == 200
        acknowledged = [ihi for ihi, status, _ in answers if status == 201]
        conn = await asyncpg.connect(pg.standby_url)
        try:
            assert await conn.fetchval("SELECT pg_is_in_recovery()") is False
            found = await conn.fetchval("SELECT count(*) FROM records WHERE ihi = ANY($1::bpchar[])", acknowledged)
        finally:
            await conn.close()
        assert found == len(acknowledged)


async def test_a_read_only_database_is_503_and_not_ready(template: TestCluster) -> None:
    """When the pools reach a server that refuses writes (a standby behind a stale route, a primary being
    demoted), writes and reads are 503 OperationOutcomes with Retry-After, never an unexpected error, and
    /health/ready says not ready."""
    database_url = await template.new_database()
    name = database_url.split("/")[3].split("?")[0]
    async with running_server(Settings(log=LogSettings(access=False)), database_url, make_service_id()) as server:
        gateway = make_service_id()
        await server.add_service(gateway)
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers(), timeout=30) as http:
            assert (await http.get("/health/ready")).status_code == 200
            conn = await asyncpg.connect(database_url)
            try:  # every new session is read-only, and the pools' sessions are ended: they reconnect into it
                await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
            with capture_logs() as logs:
                answers = [
                    await http.put(f"/registry/records/{make_ihi()}/{gateway}", json={}),
                    await http.post("/registry/records:batch", json=[{"ihi": make_ihi(), "serviceId": gateway}]),
                    await http.get(f"/registry/records/{make_ihi()}"),
                ]
                ready = await http.get("/health/ready")
    assert [a.status_code for a in answers] == [503, 503, 503], [a.text for a in answers]
    assert [a.headers.get("retry-after") for a in answers] == ["2", "2", "2"]
    assert [a.json()["resourceType"] for a in answers] == ["OperationOutcome"] * 3
    assert ready.status_code == 503
    assert "read-only" in ready.text
    assert [e for e in logs if e["event"] == "unhandled_error"] == []
