"""Notification benchmark: ``python -m tests.bench.notifications [--events N] [--rate R] [--scale N]``.

Three processes on loopback, as in production: the server (``ief-registry serve --dev``, its
delivery worker inside, on a PostgreSQL cluster of its own), the subscribers (one HTTP server
process answering 200 on 100 endpoint paths and timing each receipt) and this load generator.

1. **Latency**: 100 subscriptions, one per patient, each to its own endpoint path. Registrations
   (status changes of those patients) at a fixed rate; for each one, the time from the
   registration's commit (its HTTP answer, which comes after the commit) to the receipt of its
   notification. Prints p50, p99 and max.
2. **Registration rate**: registrations per second at fixed concurrency, measured side by side in
   alternating rounds, against servers with: no subscriptions; ``--scale`` subscriptions (one per
   patient; the registrations are of subscribed patients, so each is matched and numbered) with the
   delivery worker elsewhere (off in that server: the cost of the outbox on the registration path);
   the same with the server's own worker delivering every notification on the same CPU; one admin
   subscription without a patient filter, which every registration locks (ADR 0010). Prints the
   rates and their ratios to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.factories import make_ihi
from tests.pg import TestCluster
from tests.server import free_port, read_body

_SUBSCRIBERS = 100
_TOPIC = "/fhir/SubscriptionTopic/patient-registration"
_SD = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def _subscriber_process(port: int, out: str) -> None:
    """Answer 200 to every POST and write (path, kind:event number, receipt time) to ``out``, one JSON line each."""
    import uvicorn

    sink = Path(out).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open for the process's life

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        at = time.time()
        kind = "?"
        numbers: list[str] = []
        with contextlib.suppress(ValueError, KeyError, IndexError):
            parameters = json.loads(body)["entry"][0]["resource"]["parameter"]
            kind = next(p["valueCode"] for p in parameters if p["name"] == "type")
            numbers = [
                part["valueString"]
                for p in parameters
                if p["name"] == "notification-event"
                for part in p["part"]
                if part["name"] == "event-number"
            ]
        for number in numbers or ["-"]:
            sink.write(json.dumps([scope["path"], f"{kind}:{number}", at]) + "\n")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    uvicorn.Server(config).run()


@contextlib.asynccontextmanager
async def _server(cluster: TestCluster, *, worker: bool = True) -> AsyncIterator[tuple[str, str, str]]:
    """A server process on a fresh database (its delivery worker on or off); yields its base URL, database URL and
    admin token."""
    database_url = await cluster.new_database()
    port = free_port()
    env = {
        **os.environ,
        "IEF_DATABASE_URL": database_url,
        "IEF_HTTP_PORT": str(port),
        "IEF_LOG_LEVEL": "warning",
        "IEF_LOG_ACCESS": "false",
        "IEF_AUTH_RATE_PER_SECOND": "100000",
        "IEF_AUTH_RATE_BURST": "100000",
        "IEF_SUBSCRIPTIONS_POLL_INTERVAL": "1",
        "IEF_SUBSCRIPTIONS_WORKER": "true" if worker else "false",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "serve", "--dev", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    token = ""
    while not token:
        line = (await process.stdout.readline()).decode()
        if not line:
            raise RuntimeError("the server stopped before printing its dev token")
        if line.startswith("Development admin token"):
            token = (await process.stdout.readline()).decode().strip()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as probe:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await probe.get(f"{base}/health/ready")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
    try:
        yield base, database_url, token
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


async def _add_service(database_url: str) -> str:
    service_id = str(uuid.uuid4())
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO services (service_id, kind, name, base_url, search_style, status) "
            "VALUES ($1, 'gateway', 'bench gateway', 'https://gateway.test/fhir', 'ief', 'enabled')",
            service_id,
        )
    finally:
        await conn.close()
    return service_id


def _subscription(base: str, endpoint: str, ihi: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "benchmark",
        "criteria": f"{base}{_TOPIC}",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": f"{_SD}/backport-payload-content", "valueCode": "id-only"}]},
        },
    }
    if ihi:
        body["_criteria"] = {"extension": [{"url": f"{_SD}/backport-filter-criteria", "valueString": f"patient={ihi}"}]}
    return body


async def _wait_active(http: httpx.AsyncClient, ids: list[str]) -> None:
    for _ in range(600):
        statuses = await http.get("/fhir/Subscription/$status", params={"status": "requested"})
        if not statuses.json().get("entry"):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{len(ids)} subscriptions did not all become active")


def _read_and_remove(path: str) -> str:
    file = Path(path)
    text = file.read_text(encoding="utf-8") if file.exists() else ""
    file.unlink(missing_ok=True)
    return text


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def latency(cluster: TestCluster, events: int, rate: float) -> dict[str, float]:
    """Registration commit to notification receipt with 100 subscribers on loopback."""
    port = free_port()
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name  # noqa: SIM115 - the child writes it
    subscriber = multiprocessing.get_context("spawn").Process(target=_subscriber_process, args=(port, out))
    subscriber.start()
    try:
        async with _server(cluster) as (base, database_url, token):
            service_id = await _add_service(database_url)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
                ihis = [make_ihi() for _ in range(_SUBSCRIBERS)]
                ids = []
                for index, ihi in enumerate(ihis):
                    body = _subscription(base, f"http://127.0.0.1:{port}/hook/{index}", ihi)
                    ids.append((await http.post("/fhir/Subscription", json=body)).json()["id"])
                await _wait_active(http, ids)
                committed: dict[tuple[int, int], float] = {}
                count_per: dict[int, int] = {}

                async def one(number: int) -> None:
                    index = number % _SUBSCRIBERS
                    status = "active" if (number // _SUBSCRIBERS) % 2 == 0 else "removed"
                    response = await http.put(f"/registry/records/{ihis[index]}/{service_id}", json={"status": status})
                    assert response.status_code in (200, 201), response.text
                    count_per[index] = count_per.get(index, 0) + 1
                    committed[(index, count_per[index])] = time.time()

                started = time.perf_counter()
                tasks = []
                for number in range(events):
                    delay = started + number / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(one(number)))
                await asyncio.gather(*tasks)
                await asyncio.sleep(3)  # let the last notifications arrive
    finally:
        if subscriber.pid:
            os.kill(subscriber.pid, signal.SIGTERM)
        subscriber.join(10)
    receipts = [json.loads(line) for line in _read_and_remove(out).splitlines() if line.strip()]
    received: dict[tuple[int, int], float] = {}
    for path, label, at in receipts:
        kind, _, number = label.partition(":")
        if kind == "event-notification":
            received.setdefault((int(path.rsplit("/", 1)[1]), int(number)), at)
    latencies = [(received[key] - at) * 1000 for key, at in committed.items() if key in received]
    return {
        "events": len(committed),
        "received": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


async def _insert_subscriptions(database_url: str, ihis: list[str | None], endpoint: str, base: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            """INSERT INTO subscriptions (client_id, status, reason, base_url, filter_ihi, filters, endpoint,
                                          payload_type, content, secret, timeout_seconds, handshake_pending)
               SELECT 'operator', 'active', 'benchmark', $3, ihi,
                      CASE WHEN ihi IS NULL THEN '{}'::text[] ELSE ARRAY['patient=' || ihi] END, $2,
                      'application/fhir+json', 'id-only',
                      'whsec_' || encode(decode(md5(coalesce(ihi, 'x')) || md5(random()::text), 'hex'), 'base64'),
                      10, false
               FROM unnest($1::text[]) AS ihi""",
            ihis, endpoint, base,
        )  # fmt: skip
    finally:
        await conn.close()


async def _rate(http: httpx.AsyncClient, service_id: str, ihis: list[str], concurrency: int) -> float:
    pending = iter(ihis)

    async def lane() -> None:
        for ihi in pending:
            response = await http.put(f"/registry/records/{ihi}/{service_id}", json={"status": "active"})
            assert response.status_code in (200, 201), response.text

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return len(ihis) / (time.perf_counter() - started)


async def rates(cluster: TestCluster, scale: int, rounds: int, per_round: int, concurrency: int) -> dict[str, Any]:
    """Registration rate with no subscriptions, with ``scale`` (one per patient), and with one admin subscription."""
    port = free_port()
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name  # noqa: SIM115 - the child writes it
    subscriber = multiprocessing.get_context("spawn").Process(target=_subscriber_process, args=(port, out))
    subscriber.start()
    results: dict[str, list[float]] = {"none": [], "outbox": [], "scale": [], "admin": []}
    try:
        async with (
            _server(cluster) as plain,
            _server(cluster, worker=False) as outbox,
            _server(cluster) as busy,
            _server(cluster) as admin,
        ):
            servers = {"none": plain, "outbox": outbox, "scale": busy, "admin": admin}
            services = {name: await _add_service(server[1]) for name, server in servers.items()}
            population = [make_ihi() for _ in range(scale)]
            endpoint = f"http://127.0.0.1:{port}/hook/scale"
            for server in (outbox, busy):
                await _insert_subscriptions(server[1], list(population), endpoint, f"{server[0]}/fhir")
            await _insert_subscriptions(admin[1], [None], endpoint, f"{admin[0]}/fhir")
            clients = {
                name: httpx.AsyncClient(
                    base_url=server[0], headers={"Authorization": f"Bearer {server[2]}"}, timeout=30
                )
                for name, server in servers.items()
            }
            try:
                for round_number in range(rounds):
                    order = ["none", "outbox", "scale", "admin"]
                    order = order if round_number % 2 == 0 else order[::-1]
                    batch = population[round_number * per_round : (round_number + 1) * per_round]
                    for name in order:
                        results[name].append(await _rate(clients[name], services[name], batch, concurrency))
            finally:
                for client in clients.values():
                    await client.aclose()
    finally:
        if subscriber.pid:
            os.kill(subscriber.pid, signal.SIGTERM)
        subscriber.join(10)
        _read_and_remove(out)
    mean = {name: statistics.mean(values) for name, values in results.items()}
    return {
        "per_round": results,
        "mean": mean,
        "ratio_outbox": mean["outbox"] / mean["none"],
        "ratio_scale": mean["scale"] / mean["none"],
        "ratio_admin": mean["admin"] / mean["none"],
    }


async def main(args: argparse.Namespace) -> None:
    """Run both scenarios and print their numbers."""
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.make_template()
        found = await latency(cluster, args.events, args.rate)
        print(
            f"latency (commit → receipt, {_SUBSCRIBERS} subscribers, {found['events']} events at {args.rate:g}/s, "
            f"{found['received']} received): p50 {found['p50_ms']:.1f} ms  p99 {found['p99_ms']:.1f} ms  "
            f"max {found['max_ms']:.1f} ms"
        )
        if args.scale:
            measured = await rates(cluster, args.scale, args.rounds, args.per_round, args.concurrency)
            mean = measured["mean"]
            print(
                f"registrations/s at concurrency {args.concurrency}: no subscriptions {mean['none']:.0f}; "
                f"{args.scale} subscriptions, every registration matched: outbox only (worker elsewhere) "
                f"{mean['outbox']:.0f} (ratio {measured['ratio_outbox']:.2f}), with the server's own worker delivering "
                f"{mean['scale']:.0f} (ratio {measured['ratio_scale']:.2f}); one admin subscription without a patient "
                f"filter {mean['admin']:.0f} (ratio {measured['ratio_admin']:.2f})"
            )
            print(f"  per round: {json.dumps({k: [round(v) for v in vs] for k, vs in measured['per_round'].items()})}")
    finally:
        cluster.stop()


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench.notifications``."""
    found = argparse.ArgumentParser(description="Notification latency and registration-rate benchmark.")
    found.add_argument("--events", type=int, default=1000, help="registrations timed for latency")
    found.add_argument("--rate", type=float, default=50.0, help="registrations per second for the latency run")
    found.add_argument("--scale", type=int, default=10_000, help="subscriptions for the rate run (0: skip it)")
    found.add_argument("--rounds", type=int, default=4)
    found.add_argument("--per-round", type=int, default=500)
    found.add_argument("--concurrency", type=int, default=8)
    return found


if __name__ == "__main__":
    asyncio.run(main(parser().parse_args()))
