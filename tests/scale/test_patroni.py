"""A real Patroni failover under load: the leader's machine dies mid-burst and nothing acknowledged is lost.

etcd, three PostgreSQL nodes under Patroni (synchronous mode) and HAProxy on the leader
(``tests/patroni.py``); two ``serve`` processes and one ``ief-registry worker`` on HAProxy's port
(``tests/scale/fleet.py``), and a third ``serve`` on the multi-host URL of the three nodes
(``target_session_attrs=read-write``, the deployment without a proxy); real HTTP subscribers.
Clients register records and create subscriptions at a steady rate through the three servers in
turn; the leader's Patroni and PostgreSQL are SIGKILLed together; Patroni promotes the synchronous
standby once the leader key expires. Two more ``serve`` processes are started while no leader
exists, one on HAProxy and one on the multi-host URL: they wait, and come up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from registry.db.migrate import apply_migrations
from registry.db.roles import prepare_roles
from tests.bench.servers import ROOT, Build, ServerProcess, git_describe, server_environment
from tests.factories import make_ihi, make_service_id
from tests.patroni import PATRONI_TIMINGS, PatroniCluster, patroni_cluster
from tests.pg import as_owner, as_server
from tests.scale.fleet import deployment_settings, dev_token, fleet
from tests.server import add_service
from tests.subscriptions.helpers import subscription_body
from tests.subscriptions.subscriber import Hook, Received, Subscriber

pytestmark = [pytest.mark.ha, pytest.mark.slow]

PUBLIC_BASE = "http://registry.test"
TOPIC = f"{PUBLIC_BASE}/fhir/SubscriptionTopic/patient-registration"
LANES = 4
"""Clients registering at once, each at ``LANE_RATE`` requests a second, the servers taken in turn."""
LANE_RATE = 8.0
SUBSCRIBE_RATE = 2.0
"""Subscriptions created a second (each for a patient of its own) by one more client."""
STARTUP_EVENTS = ("database_waiting", "database_reachable", "server_starting")
WRITES_BEFORE = 80
"""Registrations acknowledged before the leader is killed, and again after the new leader took over."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One request of the load and what came back."""

    kind: str  # "record" or "subscription"
    key: str  # the IHI registered, or the subscription's patient
    status: int
    sent: float
    answered: float
    retry_after: str | None
    resource_type: str | None
    resource_id: str | None


class Load:
    """Registrations and subscriptions at a steady rate, through every server in turn, until stopped."""

    def __init__(self, clients: list[httpx.AsyncClient], gateway: str, hook: Hook) -> None:
        self.clients = clients
        self.gateway = gateway
        self.hook = hook
        self.answers: list[Answer] = []
        self.stop = asyncio.Event()
        self.progress = asyncio.Event()
        self._turn = itertools.count()

    def acknowledged(self, kind: str, since: float = 0.0) -> list[Answer]:
        """The requests of one kind answered 2xx, sent after ``since``."""
        return [a for a in self.answers if a.kind == kind and 200 <= a.status < 300 and a.sent >= since]

    async def _send(self, kind: str, key: str, request: Any) -> None:
        sent = time.monotonic()
        answer: httpx.Response = await request(self.clients[next(self._turn) % len(self.clients)])
        body = answer.json()
        retry_after, resource = answer.headers.get("retry-after"), (body.get("resourceType"), body.get("id"))
        self.answers.append(Answer(kind, key, answer.status_code, sent, time.monotonic(), retry_after, *resource))
        self.progress.set()

    async def _paced(self, rate: float, one: Any) -> None:
        period = 1 / rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            await one()
            next_at = max(next_at + period, time.monotonic() - period)  # no catching up after a slow answer
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=max(0.0, next_at - time.monotonic()))

    async def _register(self) -> None:
        ihi = make_ihi()
        await self._send(
            "record", ihi, lambda http: http.put(f"/registry/records/{ihi}/{self.gateway}", json={"status": "active"})
        )

    async def _subscribe(self) -> None:
        ihi = make_ihi()
        body = subscription_body(TOPIC, self.hook.url, filters=[f"patient={ihi}"], timeout=2)
        await self._send("subscription", ihi, lambda http: http.post("/fhir/Subscription", json=body))

    async def run(self) -> None:
        """Send until ``stop`` is set."""
        lanes = [self._paced(LANE_RATE, self._register) for _ in range(LANES)]
        await asyncio.gather(*lanes, self._paced(SUBSCRIBE_RATE, self._subscribe))

    async def wait_acknowledged(self, kind: str, count: int, since: float, within: float) -> None:
        """Wait until ``count`` requests of one kind sent after ``since`` were answered 2xx."""
        deadline = time.monotonic() + within
        while len(self.acknowledged(kind, since)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{count} {kind} writes were not acknowledged within {within} s: {self.summary()}")
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), timeout=min(left, 1.0))

    def summary(self) -> Counter[tuple[str, int]]:
        """Answers by kind and status."""
        return Counter((a.kind, a.status) for a in self.answers)


async def _fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _wait_for(what: str, check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {within} s")
        await asyncio.sleep(0.2)


def _focus(received: Received) -> list[str]:
    """The record IDs a notification's events point at (their ``focus``), in order."""
    return [
        part["valueReference"]["reference"].rsplit("/", 1)[1]
        for parameter in received.parameters["parameter"]
        if parameter["name"] == "notification-event"
        for part in parameter["part"]
        if part["name"] == "focus"
    ]


def _startup(log: Path) -> list[str]:
    """The start-up events of a server's log, in order: waiting for the database, reaching it, starting."""
    events = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(msgspec.DecodeError):
            entry = msgspec.json.decode(line)
            if isinstance(entry, dict) and entry.get("event") in STARTUP_EVENTS:
                events.append(str(entry["event"]))
    return events


def _server(label: str, database_url: str, work: Path, settings: dict[str, str]) -> ServerProcess:
    build = Build(label=label, source=ROOT, commit=git_describe(ROOT))
    return ServerProcess(
        build, python=sys.executable, database_url=database_url, workers=1, work=work, settings=settings
    )


async def _audit_verify(database_url: str, work: Path) -> subprocess.CompletedProcess[str]:
    env = server_environment(sys.executable, ROOT) | {"IEF_DATABASE_URL": database_url, "IEF_DATA_DIR": str(work)}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "registry", "audit", "verify"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


async def _subscribe_all(http: httpx.AsyncClient, hooks: list[Hook], max_counts: list[int | None]) -> list[str]:
    ids = []
    for hook, max_count in zip(hooks, max_counts, strict=True):
        created = await http.post(
            "/fhir/Subscription", json=subscription_body(TOPIC, hook.url, timeout=2, max_count=max_count)
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    for subscription_id in ids:

        async def active(sid: str = subscription_id) -> bool:
            return bool((await http.get(f"/fhir/Subscription/{sid}")).json()["status"] == "active")

        await _wait_for(f"subscription {subscription_id} did not become active", active, 60)
    return ids


async def test_a_patroni_failover_under_load_loses_no_acknowledged_write_and_no_notification(
    subscriber: Subscriber,
) -> None:
    """SIGKILL of the Patroni leader (Patroni and PostgreSQL) mid-burst: clients get 503 + Retry-After meanwhile,
    never a 500; every registration and subscription answered 2xx is on the new leader; every event of those
    registrations reaches every subscriber once, in order (a repeat is the same notification again, same
    webhook-id and bytes); a serve started during the failover waits and comes up; the audit chain verifies."""
    work = Path(tempfile.mkdtemp(prefix="ief-test-ha-"))
    own: list[ServerProcess] = []  # the server on the multi-host URL, and those started during the failover
    try:
        async with patroni_cluster() as ha:
            # As a deployment runs: the owner migrates, serve and worker processes log in as the server's role.
            await asyncio.to_thread(prepare_roles, ha.url)
            conn = await asyncpg.connect(as_owner(ha.url))
            try:
                await apply_migrations(conn)
            finally:
                await conn.close()
            gateway = make_service_id()
            await add_service(ha.url, gateway)
            settings = deployment_settings("ha", PUBLIC_BASE) | {
                "IEF_SUBSCRIPTIONS_LEASE_MARGIN": "2",  # a notification cut short is sent again 4 s after its claim
                "IEF_DATABASE_STARTUP_WAIT": "150",
            }
            async with fleet(as_server(ha.url), work, servers=2, workers=1, settings=settings) as running:
                own.append(await asyncio.to_thread(_server, "multi-host", as_server(ha.multi_host_url), work, settings))
                await asyncio.to_thread(own[0].wait_ready)
                outcome = await _fail_over(ha, [*running.servers, own[0]], subscriber, gateway, settings, work, own)
            verified = await _audit_verify(ha.url, work / "verify")
    finally:
        for server in own:
            await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)
    _check(outcome)
    assert verified.returncode == 0, verified.stderr
    assert "audit verify: ok" in verified.stdout


@dataclass
class Outcome:
    """What the failover run saw, checked after everything is stopped."""

    load: Load
    killed_at: float
    old_leader: str
    new_leader: str
    records_on_leader: set[str]
    subscriptions_on_leader: dict[str, str]
    events: dict[str, list[asyncpg.Record]]
    hooks: dict[str, Hook]
    late_logs: dict[str, list[str]]
    late_writes: list[int]
    ready: list[int]


async def _fail_over(
    ha: PatroniCluster, servers: list[ServerProcess], subscriber: Subscriber, gateway: str, settings: dict[str, str],
    work: Path, own: list[ServerProcess],
) -> Outcome:  # fmt: skip
    token = dev_token(servers[0])
    clients = [httpx.AsyncClient(base_url=s.base_url, headers=token, timeout=60) for s in servers]
    late: list[ServerProcess] = []
    try:
        hooks = [subscriber.hook(), subscriber.hook()]  # one event per notification, and up to ten
        ids = await _subscribe_all(clients[0], hooks, [None, 10])
        load = Load(clients, gateway, subscriber.hook())
        sending = asyncio.create_task(load.run())
        try:
            await load.wait_acknowledged("record", WRITES_BEFORE, 0.0, within=120)
            old = await asyncio.to_thread(ha.leader)
            killed_at = time.monotonic()
            await asyncio.to_thread(old.kill)
            for label, url in (("late-haproxy", as_server(ha.url)), ("late-multi-host", as_server(ha.multi_host_url))):
                late.append(await asyncio.to_thread(_server, label, url, work, settings))
                own.append(late[-1])
            new = await asyncio.to_thread(ha.wait_new_leader, old, 120)
            await load.wait_acknowledged("record", WRITES_BEFORE, time.monotonic(), within=120)
        finally:
            load.stop.set()
            await sending
        late_writes = []
        for server in late:
            await asyncio.to_thread(server.wait_ready, 120)
            async with httpx.AsyncClient(base_url=server.base_url, headers=token, timeout=60) as http:
                answer = await http.put(f"/registry/records/{make_ihi()}/{gateway}", json={"status": "active"})
                late_writes.append(answer.status_code)

        ready = [(await http.get("/health/ready")).status_code for http in clients]  # no restart needed
        created = load.acknowledged("subscription")

        async def settled() -> bool:
            rows = await _fetch(
                new.url,
                "SELECT (SELECT count(*) FROM subscription_events WHERE state <> 'delivered') AS undelivered, "
                "(SELECT count(*) FROM subscriptions WHERE subscription_id::text = ANY($1::text[]) "
                " AND status = 'active') AS active",
                [a.resource_id for a in created],
            )
            return bool(rows[0]["undelivered"] == 0 and rows[0]["active"] == len(created))

        await _wait_for("not every event was delivered and every new subscription activated", settled, 120)
        await asyncio.sleep(1.0)  # a repeated notification would arrive now
        acked = {a.key for a in load.acknowledged("record")}
        records = await _fetch(new.url, "SELECT ihi FROM records WHERE ihi = ANY($1::bpchar[])", list(acked))
        subscriptions = await _fetch(
            new.url,
            "SELECT subscription_id::text AS id, status FROM subscriptions WHERE subscription_id::text = ANY($1)",
            [a.resource_id for a in created],
        )
        events = {
            sid: await _fetch(
                new.url,
                "SELECT event_number, record_id::text AS record_id, ihi, state FROM subscription_events "
                "WHERE subscription_id = $1::uuid ORDER BY event_number",
                sid,
            )
            for sid in ids
        }
        in_recovery = await _fetch(new.url, "SELECT pg_is_in_recovery() AS standby")
        assert in_recovery[0]["standby"] is False
        return Outcome(
            load=load, killed_at=killed_at, old_leader=old.name, new_leader=new.name,
            records_on_leader={r["ihi"] for r in records},
            subscriptions_on_leader={r["id"]: r["status"] for r in subscriptions},
            events=events, hooks=dict(zip(ids, hooks, strict=True)),
            late_logs={s.build.label: _startup(s.log) for s in late},
            late_writes=late_writes, ready=ready,
        )  # fmt: skip
    finally:
        for client in clients:
            await client.aclose()


def _check(outcome: Outcome) -> None:
    load = outcome.load
    assert outcome.new_leader != outcome.old_leader
    statuses = load.summary()
    assert {status for _kind, status in statuses} <= {200, 201, 503}, statuses
    refused = [a for a in load.answers if a.status == 503]
    assert refused, statuses  # the failover was seen, and answered as "try again"
    assert {(a.retry_after, a.resource_type) for a in refused} == {("2", "OperationOutcome")}

    acked = {a.key for a in load.acknowledged("record")}
    assert outcome.records_on_leader == acked  # every registration answered 2xx is on the new leader
    created = {a.resource_id for a in load.acknowledged("subscription")}
    assert set(outcome.subscriptions_on_leader) == created
    assert set(outcome.subscriptions_on_leader.values()) <= {"active"}

    for subscription_id, rows in outcome.events.items():
        numbers = [r["event_number"] for r in rows]
        assert numbers == list(range(1, len(rows) + 1))  # gap-free from 1 on the new leader
        assert {r["state"] for r in rows} == {"delivered"}
        assert acked <= {r["ihi"] for r in rows}  # an event for every acknowledged registration
        record_of = {r["event_number"]: r["record_id"] for r in rows}
        for received in outcome.hooks[subscription_id].of_kind("event-notification"):
            assert _focus(received) == [record_of[n] for n in received.event_numbers]
        processed, repeats = outcome.hooks[subscription_id].processed_event_numbers()
        assert processed == numbers  # each event once, in order, for a subscriber that keeps webhook-ids
        print(f"subscription {subscription_id}: {len(numbers)} events, {repeats} notifications sent again")

    for label, events in outcome.late_logs.items():
        # it started while no leader answered, waited (logging every 10 s), reached the new one, then served
        assert events[0] == "database_waiting", (label, events)
        assert events[-2:] == ["database_reachable", "server_starting"], (label, events)
    assert outcome.late_writes == [201, 201]
    assert outcome.ready == [200, 200, 200]

    first_refused = min(a.sent for a in refused)
    last_refused = max(a.answered for a in refused)
    back = min(a.answered for a in load.answers if 200 <= a.status < 300 and a.sent > first_refused)
    print(
        f"Patroni failover ({PATRONI_TIMINGS}): {outcome.old_leader} killed, {outcome.new_leader} promoted; "
        f"outage seen by clients {back - first_refused:.1f} s (first 503 {first_refused - outcome.killed_at:.1f} s "
        f"after the kill, first 2xx again {back - outcome.killed_at:.1f} s after it, last 503 "
        f"{last_refused - outcome.killed_at:.1f} s after it); answers {dict(statuses)}"
    )
