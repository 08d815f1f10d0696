"""What must hold end to end: a killed worker, a subscriber down and back, a dead subscriber, 10,000 subscriptions."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from registry.config import Settings
from tests.clients import client_factory
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import running_server
from tests.subscriptions.conftest import fast_settings
from tests.subscriptions.helpers import IHI_SYSTEM, Subscriptions
from tests.subscriptions.subscriber import Hook, Subscriber


@asynccontextmanager
async def _own_server(
    template: TestCluster, subscriber: Subscriber, settings: Settings
) -> AsyncIterator[Subscriptions]:
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        service_id = make_service_id()
        await server.add_service(service_id)
        clients = client_factory(server.base_url, await server.headers("admin"))
        async with clients() as http:
            yield Subscriptions(server, http, subscriber, service_id, clients)


async def _burst(count: int, concurrency: int, register: Callable[[int], Awaitable[object]]) -> float:
    """Run ``register(i)`` for i in 0..count-1 with bounded concurrency; return registrations per second."""
    numbers = iter(range(count))
    started = time.perf_counter()

    async def lane() -> None:
        for number in numbers:
            await register(number)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    """``ief-registry worker`` as a process of its own (so that it can be killed), its output discarded."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "worker", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_registration_to_verified_notification(subs: Subscriptions) -> None:
    """A registration is notified: history Bundle, event number 1, id-only focus, signature verified."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    record = (await subs.register(ihi)).json()
    (event,) = await hook.wait_count("event-notification", 1)
    Webhook(next(e["valueString"] for e in created["channel"]["extension"] if "secret" in e["url"])).verify(
        event.body, event.headers
    )
    assert event.bundle["type"] == "history"
    assert event.event_numbers == [1]
    focus = event.bundle["entry"][1]["fullUrl"]
    read = (await subs.http.get(focus.removeprefix(subs.server.base_url))).json()
    assert read["subject"]["identifier"] == {"system": IHI_SYSTEM, "value": ihi}
    assert record["ihi"] == ihi


@pytest.mark.slow
async def test_worker_killed_mid_burst_delivers_everything_in_order(
    template: TestCluster, subscriber: Subscriber
) -> None:
    """SIGKILL of the worker process during 1,000 registrations: after a restart each subscriber has 1..N in order."""
    settings = fast_settings(worker=False, events_page_max=2000, lease_margin=0.5, max_count_max=25)
    total = 1000
    env = {
        **os.environ,
        "IEF_DEV": "true",
        "IEF_LOG_LEVEL": "warning",
        "IEF_SUBSCRIPTIONS_RETRY_SCHEDULE": settings.subscriptions.retry_schedule,
        "IEF_SUBSCRIPTIONS_POLL_INTERVAL": "0.05",
        "IEF_SUBSCRIPTIONS_LEASE_MARGIN": "0.5",
        "IEF_SUBSCRIPTIONS_TIMEOUT_DEFAULT": "2",
    }
    async with _own_server(template, subscriber, settings) as subs:
        env["IEF_DATABASE_URL"] = subs.server.database_url

        worker = await _start_worker(env)
        try:
            hooks = [subscriber.hook(), subscriber.hook()]
            created = [await subs.create(subs.body(hook, max_count=25)) for hook in hooks]
            for subscription in created:
                await subs.wait_status(subscription["id"], "active", within=30)
            ihis = [make_ihi() for _ in range(total)]
            killed = asyncio.Event()

            async def register(number: int) -> None:
                await subs.register(ihis[number])
                if number == total // 3 and not killed.is_set():
                    await hooks[0].wait(lambda h: len(h.event_numbers()) > 0, within=30)
                    worker.kill()  # SIGKILL, mid-burst, with notifications in flight
                    await worker.wait()
                    killed.set()

            await _burst(total, 8, register)
            assert worker.returncode == -signal.SIGKILL
            worker = await _start_worker(env)
            for hook in hooks:
                await hook.wait(lambda h: set(h.event_numbers()) >= set(range(1, total + 1)), within=90)
        finally:
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
        for hook, subscription in zip(hooks, created, strict=True):
            # each event once, in order; a repeat is the notification in flight at the kill, resent as it was
            assert hook.processed_event_numbers()[0] == list(range(1, total + 1))
            events = await subs.http.get(
                f"/fhir/Subscription/{subscription['id']}/$events",
                params={"eventsSinceNumber": "1", "eventsUntilNumber": str(total)},
            )
            parts = [p for p in events.json()["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"]
            assert [int(p["part"][0]["valueString"]) for p in parts] == list(range(1, total + 1))
            states = await subs.sql(
                "SELECT state, count(*) AS n FROM subscription_events WHERE subscription_id = $1 GROUP BY 1",
                subscription["id"],
            )
            assert {(r["state"], r["n"]) for r in states} == {("delivered", total)}


@pytest.mark.slow
async def test_a_notification_sent_but_not_recorded_is_sent_again_as_it_was(
    template: TestCluster, subscriber: Subscriber
) -> None:
    """The worker dies after the subscriber took a notification and before its 2xx was recorded, and more events
    arrive meanwhile: the next worker sends that notification again with the same events, bytes and webhook-id
    (a subscriber that keeps webhook-ids sees each event once), then the newer events."""
    settings = fast_settings(worker=False)
    env = {
        **os.environ, "IEF_DEV": "true", "IEF_LOG_LEVEL": "warning", "IEF_SUBSCRIPTIONS_POLL_INTERVAL": "0.05",
        "IEF_SUBSCRIPTIONS_LEASE_MARGIN": "0.5",
    }  # fmt: skip
    async with _own_server(template, subscriber, settings) as subs:
        env["IEF_DATABASE_URL"] = subs.server.database_url

        worker = await _start_worker(env)
        try:
            hook = subscriber.hook()
            created = await subs.create(subs.body(hook, max_count=10, timeout=5))
            await subs.wait_status(created["id"], "active", within=30)
            hook.delay = 3.0  # the subscriber holds its answer: the worker is killed while waiting for it
            await subs.register(make_ihi())
            await hook.wait_count("event-notification", 1, within=30)
            worker.kill()
            await worker.wait()
            hook.delay = 0.0
            for _ in range(3):  # events 2..4 arrive while event 1's notification waits for its lease to end
                await subs.register(make_ihi())
            worker = await _start_worker(env)
            await hook.wait(lambda h: set(h.event_numbers()) >= {1, 2, 3, 4}, within=60)
        finally:
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
    first, again, *_rest = hook.of_kind("event-notification")
    assert first.event_numbers == again.event_numbers == [1]
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert hook.processed_event_numbers() == ([1, 2, 3, 4], 1)


@pytest.mark.slow
async def test_backlog_after_downtime_and_a_dead_subscriber_delays_no_one(template: TestCluster) -> None:
    """A subscriber down for a while gets its backlog in order; one answering 500 forever ends in error without
    holding up a healthy one by more than a delivery timeout."""
    settings = fast_settings(retry_schedule="0.3s,0.6s,1s,2s", timeout_default=1)
    own = Subscriber()
    await own.up()
    try:
        async with _own_server(template, own, settings) as subs:
            resting = own.hook()
            created, ihi = await subs.active(resting)
            await own.down()
            for status in ("active", "removed", "archived", "active"):
                await subs.register(ihi, status=status)
            await asyncio.sleep(1.0)  # retries meet a closed port
            await own.up()
            await resting.wait(lambda h: set(h.event_numbers()) == {1, 2, 3, 4})
            numbers = resting.event_numbers()
            assert numbers == sorted(numbers)
            assert (await subs.read(created["id"]))["status"] == "active"

            dead = own.hook(delay=0.8)
            healthy = own.hook()
            dead_subscription, dead_ihi = await subs.active(dead)
            dead.status = 500
            _, healthy_ihi = await subs.active(healthy)
            latencies = []
            for round_number in range(4):
                await subs.register(dead_ihi, status="removed" if round_number % 2 == 0 else "active")
                started = time.time()
                await subs.register(healthy_ihi, status="removed" if round_number % 2 == 0 else "active")
                await healthy.wait(lambda h, n=round_number: len(h.event_numbers()) > n)  # type: ignore[misc]
                latencies.append(healthy.of_kind("event-notification")[-1].at - started)
            await subs.wait_status(dead_subscription["id"], "error", within=30)
    finally:
        await own.down()
    assert max(latencies) < 1.0 + 2.0, latencies  # one delivery timeout, plus a margin for a busy machine


async def _delivered(hook: Hook, events: int) -> None:
    """Wait until ``hook`` has received ``events`` events in all."""
    await hook.wait(lambda received: len(received.event_numbers()) >= events, within=60)


def _registrar(subs: Subscriptions, ihis: list[str]) -> Callable[[int], Awaitable[object]]:
    async def register(number: int) -> object:
        return await subs.register(ihis[number])

    return register


async def _insert_subscriptions(database_url: str, ihis: list[str], endpoint: str, base: str) -> dict[str, str]:
    """Active subscriptions, one per IHI, written straight into the database (the API would take minutes)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """INSERT INTO subscriptions (client_id, status, reason, base_url, filter_ihi, filters, endpoint,
                                          payload_type, content, secret, timeout_seconds, handshake_pending)
               SELECT 'operator', 'active', 'scale test', $3, ihi, ARRAY['patient=' || ihi], $2,
                      'application/fhir+json', 'id-only',
                      'whsec_' || encode(decode(md5(ihi) || md5(ihi || 'x'), 'hex'), 'base64'), 2, false
               FROM unnest($1::text[]) AS ihi
               RETURNING subscription_id::text, filter_ihi::text""",
            ihis, endpoint, base,
        )  # fmt: skip
    finally:
        await conn.close()
    return {row["subscription_id"]: row["filter_ihi"] for row in rows}


@pytest.mark.slow
async def test_ten_thousand_subscriptions_match_by_index_and_cost_little(
    template: TestCluster, subscriber: Subscriber
) -> None:
    """With 10,000 subscriptions (one per patient) only matching ones are notified, and registering stays fast."""
    async with (
        _own_server(template, subscriber, fast_settings()) as plain,
        _own_server(template, subscriber, fast_settings()) as busy,
    ):
        hook = subscriber.hook()
        ihis = [make_ihi() for _ in range(10_000)]
        by_id = await _insert_subscriptions(busy.server.database_url, ihis, hook.url, f"{busy.server.base_url}/fhir")
        assert len(by_id) == 10_000
        subscribed = ihis[:50]
        for ihi in [*subscribed, *(make_ihi() for _ in range(50))]:
            await busy.register(ihi)
        await hook.wait(lambda h: len(h.event_numbers()) >= 50, within=30)
        await asyncio.sleep(0.3)
        notified = [
            r.parameter("subscription")["reference"].rsplit("/", 1)[1] for r in hook.of_kind("event-notification")
        ]
        assert len(notified) == 50
        assert sorted(by_id[s] for s in notified) == sorted(subscribed)

        # Side by side, alternating which goes first: registrations with no subscriptions, registrations of
        # subscribed patients (matched, numbered and delivered), and of patients nobody subscribed to. Each kind is
        # measured by its best run of three: on a shared machine other work only ever slows a run down, so the best
        # run is the one least disturbed, and comparing the best runs compares the server's costs, not the load
        # that happened to fall on one run. A matching run's notifications are delivered before the next run
        # starts, so that run is not charged for them.
        rates: dict[str, list[float]] = {"plain": [], "matching": [], "unmatched": []}
        delivered = 50
        for round_number in range(3):
            batch = ihis[1000 * (round_number + 1) : 1000 * (round_number + 1) + 100]
            runs = [
                ("plain", plain, [make_ihi() for _ in range(100)]),
                ("matching", busy, batch),
                ("unmatched", busy, [make_ihi() for _ in range(100)]),
            ]
            for name, subs, chosen in runs if round_number % 2 == 0 else runs[::-1]:
                rates[name].append(await _burst(len(chosen), 8, _registrar(subs, chosen)))
                if name == "matching":
                    delivered += len(chosen)
                    await _delivered(hook, delivered)
        matching = max(rates["matching"]) / max(rates["plain"])
        unmatched = max(rates["unmatched"]) / max(rates["plain"])
        print(f"registrations/s: {rates}; best-run ratio matching {matching:.2f}, unmatched {unmatched:.2f}")
        # The 80 % target is measured by the benchmark (tests/bench/notifications.py), with the server, the load and
        # the subscribers in processes of their own. Here one event loop runs the test, both servers, the delivery
        # worker and the subscriber: every notification the matching run causes is paid for by the same CPU that
        # registers. These bounds guard against matching that scans the subscriptions (which would cost far more).
        assert unmatched > 0.6, rates
        assert matching > 0.3, rates
