"""Look-ups served by a streaming replica (``IEF_DATABASE_READ_URL``), writes and security state on the primary."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from registry.config import DatabaseSettings, LogSettings, Settings
from registry.db.embedded import EmbeddedPostgres
from registry.db.migrate import apply_migrations
from tests.audit_ledger import AuditLedger
from tests.factories import make_ihi, make_service_id
from tests.fhir import extension, record_body
from tests.replica import StreamingReplica
from tests.server import RunningServer, running_server

pytestmark = pytest.mark.slow


@dataclass(frozen=True, slots=True)
class Pair:
    """A primary, its streaming replica, and a server that writes to the one and reads from the other."""

    server: RunningServer
    primary_url: str
    replica_url: str
    http: httpx.AsyncClient
    replica: StreamingReplica


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> float:
    """Wait until ``check()`` returns true; return how long it took."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "the replica did not catch up in time"
        await asyncio.sleep(0.01)


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[Pair]:
    """A fresh primary and a replica made from it with pg_basebackup; a server using both."""
    folder = Path(tempfile.mkdtemp(prefix="ief-test-replica-"))
    user = os.environ.get("IEF_EMBEDDED_USER", "postgres")
    primary = EmbeddedPostgres(folder / "primary", user=user)
    replica = StreamingReplica(folder / "replica", primary, user=user)
    try:
        # PostgreSQL runs as an unprivileged user when the tests run as root: it must reach the folder.
        await asyncio.to_thread(folder.chmod, 0o755)
        primary_url = await asyncio.to_thread(primary.start)
        conn = await asyncpg.connect(primary_url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        replica_url = await asyncio.to_thread(replica.start)
        settings = Settings(log=LogSettings(access=False), database=DatabaseSettings(read_url=replica_url))
        async with running_server(settings, primary_url, make_service_id()) as server:
            ledger = AuditLedger(server.audited)
            async with httpx.AsyncClient(
                base_url=server.base_url, headers=await server.headers(), event_hooks=ledger.hooks(), timeout=30
            ) as http:
                yield Pair(server, primary_url, replica_url, http, replica)
            await ledger.check(primary_url)
    finally:
        await asyncio.to_thread(replica.stop)
        await asyncio.to_thread(primary.stop)
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)


async def _replay(replica_url: str, *, paused: bool) -> None:
    conn = await asyncpg.connect(replica_url)
    try:
        await conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")
    finally:
        await conn.close()


async def test_the_replica_is_a_streaming_standby(pair: Pair) -> None:
    """The replica is in recovery and the primary streams WAL to it."""
    conn = await asyncpg.connect(pair.replica_url)
    try:
        assert await conn.fetchval("SELECT pg_is_in_recovery()") is True
    finally:
        await conn.close()
    conn = await asyncpg.connect(pair.primary_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") == 1
    finally:
        await conn.close()


async def test_look_ups_come_from_the_replica_and_writes_go_to_the_primary(pair: Pair) -> None:
    """With replay paused, a write still succeeds (primary) but the look-up does not see it (replica) until replay."""
    gateway, ihi = make_service_id(), make_ihi()
    await pair.server.add_service(gateway)
    await _replay(pair.replica_url, paused=True)
    try:
        written = await pair.http.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
        assert written.status_code == 201
        stale = await pair.http.get(f"/registry/records/{ihi}")
        assert stale.status_code == 200
        assert stale.json()["records"] == []
    finally:
        await _replay(pair.replica_url, paused=False)

    async def visible() -> bool:
        found = (await pair.http.get(f"/registry/records/{ihi}")).json()["records"]
        return [r["serviceId"] for r in found] == [gateway]

    await _eventually(visible)


async def test_a_fhir_update_reads_the_record_from_the_primary(pair: Pair) -> None:
    """Updating a record by id right after creating it works while the replica lags (its read is on the primary)."""
    gateway, ihi = make_service_id(), make_ihi()
    await pair.server.add_service(gateway)
    await _replay(pair.replica_url, paused=True)
    try:
        body = record_body(ihi, gateway)
        created = await pair.http.post("/fhir/Basic", json=body)
        assert created.status_code == 201, created.text
        changed = record_body(ihi, gateway, status="archived", record_id=created.json()["id"])
        updated = await pair.http.put(f"/fhir/Basic/{changed['id']}", json=changed)
        assert updated.status_code == 200, updated.text
        assert extension(updated.json(), "registry-record-status")["valueCode"] == "archived"
    finally:
        await _replay(pair.replica_url, paused=False)


async def test_a_new_client_is_authenticated_while_the_replica_lags(pair: Pair) -> None:
    """Client state is read from the primary: a client added while replay is paused can use its token at once."""
    gateway = make_service_id()
    await pair.server.add_service(gateway)
    await _replay(pair.replica_url, paused=True)
    try:
        client_id, _ = await pair.server.add_client(gateway, "system/Basic.cu system/Basic.rs", external=True)
        token = await pair.server.token("system/Basic.cu", client_id=client_id, service_id=gateway)
        answer = await pair.http.put(
            f"/registry/records/{make_ihi()}/{gateway}", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 201, answer.text
    finally:
        await _replay(pair.replica_url, paused=False)


async def test_replication_lag_under_writes_is_small(pair: Pair) -> None:
    """After a burst of 200 writes, the replica has replayed them all within a second or two (the staleness bound)."""
    gateway = make_service_id()
    await pair.server.add_service(gateway)
    ihis = [make_ihi() for _ in range(200)]
    answers = await asyncio.gather(*(pair.http.put(f"/registry/records/{ihi}/{gateway}", json={}) for ihi in ihis))
    assert {a.status_code for a in answers} == {201}
    primary = await asyncpg.connect(pair.primary_url)
    replica = await asyncpg.connect(pair.replica_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()::text")

        async def replayed() -> bool:
            return bool(await replica.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target))

        lag = await _eventually(replayed)
    finally:
        await primary.close()
        await replica.close()
    print(f"replica caught up {lag * 1000:.1f} ms after the burst")
    assert lag < 5.0


async def test_zz_look_ups_move_to_the_primary_when_the_replica_is_down(pair: Pair) -> None:
    """With the replica stopped, look-ups are answered from the primary (fresh), not refused; it comes back after."""
    gateway, ihi = make_service_id(), make_ihi()
    await pair.server.add_service(gateway)
    assert (await pair.http.put(f"/registry/records/{ihi}/{gateway}", json={})).status_code == 201
    replica = pair.replica
    await asyncio.to_thread(replica.stop)
    try:
        answers = [await pair.http.get(f"/registry/records/{ihi}") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert all([r["serviceId"] for r in a.json()["records"]] == [gateway] for a in answers)
    finally:
        await asyncio.to_thread(replica.start)
