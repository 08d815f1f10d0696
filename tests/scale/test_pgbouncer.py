"""The server behind a real PgBouncer in transaction pool mode (``IEF_DATABASE_STATEMENT_CACHE=false``).

PgBouncer here gives each database two server connections, shared by every client connection one
transaction at a time, so anything that leans on session state (a prepared statement, a session
advisory lock, LISTEN) meets another session sooner or later.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec
import pytest
from joserfc.jwk import RSAKey
from structlog.testing import capture_logs

from broker.subscriptions import delivery
from registry.config import DatabaseSettings
from registry.db.migrate import apply_migrations, known_migrations, schema_state
from registry.db.roles import SERVER_LOGIN
from tests.audit_ledger import AuditLedger
from tests.auth import assertion, bearer, request_token
from tests.cli import run_cli
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import check_fhir_response, entry_ids, record_body
from tests.pg import TestCluster
from tests.pgbouncer import PgBouncer
from tests.server import RunningServer, running_server
from tests.subscriptions.conftest import fast_settings
from tests.subscriptions.helpers import Subscriptions
from tests.subscriptions.subscriber import Subscriber

pytestmark = pytest.mark.slow

POOL_SIZE = 2
"""Server connections PgBouncer keeps per database: far fewer than the clients that share them."""


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="module")
async def bouncer(template: TestCluster) -> AsyncIterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the session's cluster."""
    folder = Path(tempfile.mkdtemp(prefix="ief-test-pgbouncer-"))
    await asyncio.to_thread(folder.chmod, 0o755)  # PgBouncer runs as the cluster's user
    running = PgBouncer(template.cluster, folder, pool_size=POOL_SIZE)
    try:
        await asyncio.to_thread(running.start)
        yield running
    finally:
        await asyncio.to_thread(running.stop)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class Pooled:
    """A server whose every pool connection goes through PgBouncer, and its database's direct URL."""

    server: RunningServer
    direct_url: str
    subs: Subscriptions


@asynccontextmanager
async def _pooled_server(
    template: TestCluster, bouncer: PgBouncer, subscriber: Subscriber, *, direct: bool, **subscriptions: Any
) -> AsyncIterator[Pooled]:
    """A dev-mode server on a fresh database through PgBouncer (statement cache off), ``IEF_DATABASE_DIRECT_URL``
    set when ``direct``; its clients are audit-checked."""
    direct_url = await template.new_database()
    pooled_url = bouncer.url_for(urlsplit(direct_url).path.lstrip("/"))
    database = DatabaseSettings(statement_cache=False, direct_url=direct_url if direct else None)
    settings = msgspec.structs.replace(fast_settings(**subscriptions), database=database)
    async with running_server(settings, pooled_url, make_service_id()) as server:
        service_id = make_service_id()
        await server.add_service(service_id)
        ledger = AuditLedger(server.audited)

        def make(**options: Any) -> httpx.AsyncClient:
            hooks = ledger.hooks()
            hooks["response"].append(check_fhir_response)
            return httpx.AsyncClient(base_url=server.base_url, event_hooks=hooks, timeout=30, **options)

        async with make(headers=await server.headers("admin")) as http:
            yield Pooled(server, direct_url, Subscriptions(server, http, subscriber, service_id, make))
        await ledger.check(direct_url)


@pytest.fixture(scope="module")
async def pooled(template: TestCluster, bouncer: PgBouncer, subscriber: Subscriber) -> AsyncIterator[Pooled]:
    """A server through PgBouncer with ``IEF_DATABASE_DIRECT_URL`` set; its worker polls only every 30 s."""
    async with _pooled_server(template, bouncer, subscriber, direct=True, poll_interval=30) as found:
        yield found


async def test_migrations_through_pgbouncer_apply_each_file_once(template: TestCluster, bouncer: PgBouncer) -> None:
    """Four processes migrating one empty database at once through PgBouncer apply every file exactly once."""
    direct_url = await template.empty_database("ief_pgbouncer_migrations")
    pooled_url = bouncer.url_for("ief_pgbouncer_migrations")
    connections = [await asyncpg.connect(pooled_url, statement_cache_size=0) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(apply_migrations(conn) for conn in connections))
    finally:
        for conn in connections:
            await conn.close()
    names = sorted(m.name for run in applied for m in run)
    assert names == sorted(m.name for m in known_migrations())
    conn = await asyncpg.connect(direct_url)
    try:
        assert (await schema_state(conn)).at_head
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()


async def test_the_api_works_through_pgbouncer(pooled: Pooled, client_key: RSAKey) -> None:
    """Tokens, writes, look-ups, history, batches, FHIR and the audit search all work, many at once, through
    two shared server connections."""
    server, http, gateway = pooled.server, pooled.subs.http, pooled.subs.service_id
    scopes = "system/Basic.cu system/Basic.rs"
    client_id, _ = await server.add_client(gateway, scopes, public_key_pem=client_key.as_pem(private=False).decode())
    token_url = f"{server.base_url}/auth/token"
    async with pooled.subs.clients(headers={}) as anonymous:
        tokens = await asyncio.gather(
            *(request_token(anonymous, assertion(client_key, client_id, token_url), scopes) for _ in range(10))
        )
        assert [t.status_code for t in tokens] == [200] * 10, [t.text for t in tokens if t.status_code != 200]
        ihis = [make_ihi() for _ in range(40)]
        writes = await asyncio.gather(
            *(
                anonymous.put(
                    f"/registry/records/{ihi}/{gateway}", json={}, headers=bearer(tokens[n % 10].json()["access_token"])
                )
                for n, ihi in enumerate(ihis)
            )
        )
    assert [w.status_code for w in writes] == [201] * 40

    batch = [{"ihi": make_ihi(), "serviceId": gateway, "status": "active"} for _ in range(200)]
    fhir_ihis = [make_ihi() for _ in range(10)]
    calls: list[Awaitable[httpx.Response]] = [
        *(http.get(f"/registry/records/{ihi}") for ihi in ihis),
        *(http.get(f"/registry/records/{ihi}/history") for ihi in ihis),
        http.post("/registry/records:batch", json=batch),
        *(http.post("/fhir/Basic", json=record_body(ihi, gateway)) for ihi in fhir_ihis),
    ]
    answers = await asyncio.gather(*calls)
    assert [a.status_code for a in answers[:80]] == [200] * 80
    assert all(len(a.json().get("records", a.json().get("history"))) == 1 for a in answers[:80])
    assert answers[80].status_code == 200
    assert [item["result"] for item in answers[80].json()["results"]] == ["created"] * 200
    created = answers[81:91]
    assert [c.status_code for c in created] == [201] * 10

    searches = await asyncio.gather(
        *(http.get("/fhir/Basic", params={"subject:identifier": f"{IHI_SYSTEM}|{ihi}"}) for ihi in fhir_ihis),
        *(http.get(f"/fhir/Basic/{c.json()['id']}") for c in created),
        http.get("/fhir/AuditEvent", params={"patient": f"{IHI_SYSTEM}|{ihis[-1]}"}),
        *(http.put(f"/registry/records/{ihi}/{gateway}", json={"status": "archived"}) for ihi in ihis[:20]),
    )
    assert [entry_ids(s.json()) for s in searches[:10]] == [[c.json()["id"]] for c in created]
    assert [s.json()["id"] for s in searches[10:20]] == [c.json()["id"] for c in created]
    audit = searches[20]
    assert audit.status_code == 200, audit.text
    assert len(audit.json()["entry"]) == 3  # the write, the look-up, the history
    assert [a.status_code for a in searches[21:]] == [200] * 20

    conn = await asyncpg.connect(pooled.direct_url)
    try:
        backends = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query NOT LIKE 'LISTEN%' AND usename = $1",
            SERVER_LOGIN,
        )
    finally:
        await conn.close()
    assert backends <= POOL_SIZE  # the server's statements above shared PgBouncer's two server connections

    env = {"IEF_DATABASE_STATEMENT_CACHE": "false"}
    verified = await run_cli(server, "audit", "verify", extra_env=env)
    assert verified.code == 0, verified.err
    assert verified.out.startswith("audit verify: ok:")
    status = await run_cli(server, "db", "status", extra_env=env)
    assert status.code == 0, status.err + status.out


async def test_notifications_wake_the_worker_on_its_direct_connection(pooled: Pooled) -> None:
    """With ``IEF_DATABASE_DIRECT_URL`` the worker's LISTEN works behind PgBouncer: a handshake and a notification
    go out at once, although the worker polls only every 30 seconds."""
    hook = pooled.subs.subscriber.hook()
    _, ihi = await pooled.subs.active(hook)
    await pooled.subs.register(ihi)
    (event,) = await hook.wait_count("event-notification", 1, within=15)
    assert event.event_numbers == [1]


async def test_without_a_direct_url_the_worker_says_so_and_polls(
    template: TestCluster, bouncer: PgBouncer, subscriber: Subscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With LISTEN through PgBouncer the worker logs that it gets no notifications and names the setting; it
    still delivers, by polling."""
    # Through PgBouncer the probe's notification never comes: how long the worker waits for it (3 s)
    # changes nothing here but this test's time.
    monkeypatch.setattr(delivery, "_PROBE_SECONDS", 0.5)
    with capture_logs() as logs:
        async with _pooled_server(template, bouncer, subscriber, direct=False, poll_interval=0.2) as found:
            hook = subscriber.hook()
            _, ihi = await found.subs.active(hook)
            await found.subs.register(ihi)
            (event,) = await hook.wait_count("event-notification", 1)
    assert event.event_numbers == [1]
    failed = [entry for entry in logs if entry["event"] == "worker_listen_failed"]
    assert len(failed) == 1, failed
    assert "IEF_DATABASE_DIRECT_URL" in failed[0]["error"]
