"""Scale-out on one database: two ``serve`` processes and two ``ief-registry worker`` processes.

Each server runs its own delivery worker too (the default), so four delivery loops compete for
the same subscriptions while registrations arrive at both servers at once. Every process is the
real command line, with its own log; the subscriber is a real HTTP server.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster, as_server
from tests.scale.fleet import deployment_settings, dev_token, fleet
from tests.server import add_service
from tests.subscriptions.helpers import subscription_body
from tests.subscriptions.subscriber import Hook, Subscriber

pytestmark = pytest.mark.slow

PER_SERVER = 120
"""Registrations sent to each server (all at once, both servers together)."""

PUBLIC_BASE = "http://registry.test"
"""The one public base URL every process presents, as behind a load balancer."""


async def _register(http: httpx.AsyncClient, gateway: str, ihis: list[str], concurrency: int = 8) -> None:
    pending = iter(ihis)

    async def lane() -> None:
        for ihi in pending:
            answer = await http.put(f"/registry/records/{ihi}/{gateway}", json={"status": "active"})
            assert answer.status_code == 201, answer.text

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _active(http: httpx.AsyncClient, subscription_id: str) -> None:
    for _ in range(600):
        if (await http.get(f"/fhir/Subscription/{subscription_id}")).json()["status"] == "active":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscription {subscription_id} did not become active")


async def _all_delivered(database_url: str, events: int, within: float = 90) -> None:
    """Wait until the database counts ``events`` events, all delivered (each got its 2xx)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            counts = await conn.fetchrow(
                "SELECT count(*) AS events, count(*) FILTER (WHERE state = 'delivered') AS delivered "
                "FROM subscription_events"
            )
            assert counts is not None
            if counts["events"] == counts["delivered"] == events:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError(f"not every event was delivered within {within} s")


async def test_two_servers_and_two_workers_deliver_every_event_once_in_order(
    template: TestCluster, subscriber: Subscriber
) -> None:
    """Registrations sent to two servers at once reach every subscription as events 1..N, each exactly once and
    in order; both worker processes, and the servers' own loops, sent some of them."""
    database_url = await template.new_database()
    gateway = make_service_id()
    await add_service(database_url, gateway)
    settings = deployment_settings("scale-out", PUBLIC_BASE) | {
        "IEF_SUBSCRIPTIONS_WORKER_CONCURRENCY": "2",  # so that no one loop can hold every subscription at once
    }
    work = Path(tempfile.mkdtemp(prefix="ief-test-scale-out-"))
    try:
        async with fleet(as_server(database_url), work, servers=2, workers=2, settings=settings) as running:
            token = dev_token(running.servers[0])
            one, two = (
                httpx.AsyncClient(base_url=server.base_url, headers=token, timeout=60) for server in running.servers
            )
            async with one, two:
                hooks: list[Hook] = [subscriber.hook() for _ in range(4)]
                topic = f"{PUBLIC_BASE}/fhir/SubscriptionTopic/patient-registration"
                created = [
                    (await one.post("/fhir/Subscription", json=subscription_body(topic, hook.url, max_count=count)))
                    for hook, count in zip(hooks, (None, None, None, 10), strict=True)
                ]
                assert [c.status_code for c in created] == [201] * 4, [c.text for c in created]
                ids = [c.json()["id"] for c in created]
                for subscription_id in ids:
                    await _active(two, subscription_id)  # the other server sees the same subscriptions

                total = 2 * PER_SERVER
                started, started_wall = time.perf_counter(), time.time()
                await asyncio.gather(
                    _register(one, gateway, [make_ihi() for _ in range(PER_SERVER)]),
                    _register(two, gateway, [make_ihi() for _ in range(PER_SERVER)]),
                )
                registered = time.perf_counter() - started
                await _all_delivered(database_url, 4 * total)
                last = max(r.at for hook in hooks for r in hook.received)
                await asyncio.sleep(0.5)  # a duplicate would arrive now
            delivered = running.delivered()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for hook in hooks:
        assert hook.event_numbers() == list(range(1, total + 1))  # each once, in order
        sent = hook.of_kind("event-notification")
        assert len({r.headers["webhook-id"] for r in sent}) == len(sent)
    notifications = sum(len(hook.of_kind("event-notification")) for hook in hooks)
    assert sum(delivered.values()) == notifications, delivered
    assert min(delivered["worker-1"], delivered["worker-2"]) > 0, delivered  # the workers shared the work
    assert sum(count for name, count in delivered.items() if name.startswith("serve")) > 0, delivered
    print(
        f"{total} registrations through 2 servers in {registered:.2f} s ({total / registered:.0f}/s); "
        f"{4 * total} events in {notifications} notifications, delivered by {delivered}; "
        f"the last received {last - started_wall:.2f} s after the first registration"
    )
