"""Scale-out benchmark: ``python -m tests.bench.scaleout [--records N] [--duration S] [--rounds R] ...``.

Every process runs on this one machine and shares its cores: a throwaway PostgreSQL cluster, the
server processes (``python -m registry serve``, each on its own port, one database), the delivery
workers (``python -m registry worker``), a subscriber process and the load generators. Three parts,
each measured in alternating rounds and printed with its ratios:

1. **servers**: registrations (``PUT`` status changes of loaded records) and look-ups (``GET``) at
   ``--concurrency``, sent to one server process or spread over two (no load balancer: the load
   generator, ``tests/bench/loadgen.py``, opens its connections on both ports in turn).
2. **workers**: notification delivery by one ``ief-registry worker`` or two (the API server's own
   worker off). ``--patients`` subscriptions, one per patient, ``id-only``, one event per
   notification. *Drain*: one batch changes every record of those patients at once (``--gateways``
   records each), so the workers start with a backlog: notifications per second until the last is
   received, commit→receipt p50/p99. *Steady*: ``--steady`` single registrations at ``--rate`` per
   second, commit→receipt p50/p99 (commit = the registration's HTTP answer, which follows it).
3. **replica**: look-ups from a server with and without ``IEF_DATABASE_READ_URL`` pointing at a
   streaming replica of the cluster (``pg_basebackup``, as ``tests/replica.py`` makes it): rate,
   latency, and the CPU of the primary and of the replica.

``--parts`` chooses the parts; ``--json FILE`` keeps every number. Results and the command are in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import msgspec

from registry.db.migrate import apply_migrations
from tests.bench.loadgen import LoadResult, LoadSpec
from tests.bench.notifications import _percentile, _subscriber_process, _subscription, _wait_active
from tests.bench.scenarios import Scenario, bulk_load_phase, ihi
from tests.bench.servers import ROOT, ProcessTree, ServerProcess
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.replica import StreamingReplica
from tests.scale.fleet import Fleet, dev_token, fleet
from tests.server import add_service, free_port

__all__ = ("Results", "main", "report", "run")

_PATIENT_BASE = 900_000_000
"""Benchmark IHI numbers of the notification part's patients (far from the loaded records)."""


class ServersPhase(msgspec.Struct, kw_only=True):
    """One load phase against one or two server processes."""

    phase: str
    servers: int
    load: LoadResult
    server_cpu: float
    pg_cpu: float


class DeliveryPhase(msgspec.Struct, kw_only=True):
    """One delivery phase with one or two workers."""

    phase: str
    workers: int
    events: int
    received: int
    seconds: float
    rate: float
    """Notifications received per second (each carries one event)."""
    p50_ms: float
    p99_ms: float
    worker_cpu: float
    pg_cpu: float
    per_worker: dict[str, int]


class ReplicaPhase(msgspec.Struct, kw_only=True):
    """One look-up phase with or without the read replica."""

    reads_from: str
    load: LoadResult
    server_cpu: float
    primary_cpu: float
    replica_cpu: float


class Results(msgspec.Struct, kw_only=True):
    """Everything one run measured (``--json``)."""

    settings: dict[str, Any]
    servers: list[ServersPhase] = msgspec.field(default_factory=list)
    workers: list[DeliveryPhase] = msgspec.field(default_factory=list)
    replica: list[ReplicaPhase] = msgspec.field(default_factory=list)


async def _load(ports: Sequence[int], scenario: Scenario) -> LoadResult:
    """Run one scenario in a load generator process, its connections spread over ``ports``."""
    spec = LoadSpec(host="127.0.0.1", port=ports[0], more_ports=list(ports[1:]), scenario=scenario)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.loadgen", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(msgspec.json.encode(spec))
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed on {scenario.name}:\n{err.decode()}")
    return msgspec.json.decode(out, type=LoadResult)


class _Cpu:
    """Cores used by some process trees between ``__init__`` and ``cores()``."""

    def __init__(self, trees: Sequence[ProcessTree]) -> None:
        self._trees = trees
        self._before = sum(tree.cpu_seconds() for tree in trees)
        self._started = time.monotonic()

    def cores(self) -> float:
        spent = sum(tree.cpu_seconds() for tree in self._trees) - self._before
        return round(spent / max(time.monotonic() - self._started, 1e-9), 2)


def _trees(servers: Sequence[ServerProcess]) -> list[ProcessTree]:
    return [server.tree for server in servers]


async def _migrated(cluster: TestCluster, name: str) -> str:
    url = await cluster.empty_database(name)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return url


def _common_settings() -> dict[str, str]:
    """What every process of a run shares: one registry behind the (absent) load balancer."""
    return {
        "IEF_SERVICE_ID": make_service_id(),
        "IEF_LOG_HASH_KEY": "bench-scaleout",
        "IEF_DEV": "true",  # the admin token in the log; http subscribers on loopback
        "IEF_LOG_ACCESS": "false",
        "IEF_AUTH_RATE_PER_SECOND": "1000000",
        "IEF_AUTH_RATE_BURST": "1000000",
    }


# ---- part 1: one server process or two --------------------------------------------------------------------------


async def servers_part(
    args: argparse.Namespace, database_url: str, gateway: str, work: Path, pg: ProcessTree, results: Results
) -> None:
    """PUT and GET at ``--concurrency`` against one server process, then spread over two, in alternating rounds."""
    async with fleet(database_url, work, servers=2, workers=0, settings=_common_settings()) as running:
        token = dev_token(running.servers[0])
        half, rounds = args.records // 2, args.rounds
        slice_size = half // (2 * rounds)
        warmup = min(2.0, args.duration / 5)
        slices = iter(range(0, 2 * rounds * slice_size, slice_size))
        for round_number in range(rounds):
            for count in (1, 2) if round_number % 2 == 0 else (2, 1):
                start = next(slices)
                put = Scenario(
                    name="PUT", requests="put_status", concurrency=args.concurrency, headers=token,
                    duration=args.duration, warmup=warmup,
                    params={"service_id": gateway, "start": start, "stop": start + slice_size, "sample": slice_size},
                )  # fmt: skip
                get = Scenario(
                    name="GET", requests="get_records", concurrency=args.concurrency, headers=token,
                    duration=args.duration, warmup=warmup,
                    params={"start": half, "stop": args.records, "sample": 50_000, "seed": round_number * 2 + count},
                )  # fmt: skip
                for scenario in (put, get):
                    print(f"servers: {scenario.name} on {count} server process(es) ...", flush=True)
                    servers, postgres = _Cpu(_trees(running.servers)), _Cpu([pg])
                    load = await _load(running.ports[:count], scenario)
                    results.servers.append(
                        ServersPhase(
                            phase=scenario.name,
                            servers=count,
                            load=load,
                            server_cpu=servers.cores(),
                            pg_cpu=postgres.cores(),
                        )
                    )


# ---- part 2: one worker or two ----------------------------------------------------------------------------------


class _Subscribers:
    """The subscriber process: answers 200 on ``/hook/{n}`` and writes (path, kind:number, time) per event."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.out = work / "receipts.jsonl"
        self.out.touch()
        self._process = multiprocessing.get_context("spawn").Process(
            target=_subscriber_process, args=(self.port, str(self.out))
        )

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        if self._process.pid:
            os.kill(self._process.pid, signal.SIGTERM)
        self._process.join(10)

    def receipts(self) -> dict[tuple[str, int], float]:
        """The first receipt time of every (path, event number) so far."""
        found: dict[tuple[str, int], float] = {}
        for line in self.out.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            path, label, at = json.loads(line)
            kind, _, number = label.partition(":")
            if kind == "event-notification":
                found.setdefault((path, int(number)), at)
        return found

    def received(self) -> int:
        """Event notifications received so far, repeats included."""
        return sum(1 for line in self.out.read_text(encoding="utf-8").splitlines() if "event-notification" in line)


class _Registrations:
    """The patients' records and their statuses: every write flips a record, so each is an event."""

    def __init__(self, patients: int, gateways: list[str]) -> None:
        self.patients = [ihi(_PATIENT_BASE + n) for n in range(patients)]
        self.gateways = gateways
        self.status: dict[tuple[int, str], str] = {}
        self.keys = itertools.cycle([(p, g) for g in gateways for p in range(patients)])

    def flip(self, key: tuple[int, str]) -> dict[str, str]:
        new = "removed" if self.status.get(key) == "active" else "active"
        self.status[key] = new
        return {"ihi": self.patients[key[0]], "serviceId": key[1], "status": new}


async def _events(database_url: str, after: Mapping[str, int] | None = None) -> dict[tuple[str, int], float]:
    """Every event (subscription endpoint path, number) numbered after ``after``'s numbers, with its time.

    The time is ``subscription_events.occurred_at``: the start of the registration's transaction,
    which commits a moment later (milliseconds for a single registration, longer for a batch).
    """
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT s.endpoint, e.event_number, extract(epoch FROM e.occurred_at)::float8 AS at "
            "FROM subscription_events e JOIN subscriptions s USING (subscription_id)"
        )
    finally:
        await conn.close()
    found: dict[tuple[str, int], float] = {}
    for row in rows:
        path = "/" + str(row["endpoint"]).split("/", 3)[3]
        if after is None or row["event_number"] > after.get(path, 0):
            found[(path, int(row["event_number"]))] = float(row["at"])
    return found


def _last_numbers(events: Mapping[tuple[str, int], float]) -> dict[str, int]:
    last: dict[str, int] = {}
    for path, number in events:
        last[path] = max(last.get(path, 0), number)
    return last


async def _wait_for(subscribers: _Subscribers, expected: Mapping[tuple[str, int], float], within: float) -> float:
    """Wait until every expected event was received; return when the last one arrived."""
    deadline = time.monotonic() + within
    while True:
        receipts = subscribers.receipts()
        missing = [key for key in expected if key not in receipts]
        if not missing:
            return max(receipts[key] for key in expected)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} of {len(expected)} events were not received in {within} s")
        await asyncio.sleep(0.2)


async def _phase_numbers(
    subscribers: _Subscribers, expected: Mapping[tuple[str, int], float], first: float, before: int, within: float
) -> tuple[int, float, float, list[float]]:
    """Wait for the expected events; (notifications received since ``before`` were, seconds from ``first`` to the
    last receipt, notifications per second, event→receipt latencies in ms)."""
    last = await _wait_for(subscribers, expected, within)
    receipts = subscribers.receipts()
    latencies = [(receipts[key] - at) * 1000 for key, at in expected.items()]
    seconds = max(last - first, 1e-6)
    return subscribers.received() - before, seconds, len(expected) / seconds, latencies


def _delivery(
    phase: str, running: Fleet, before: Mapping[str, int], measured: tuple[int, float, float, list[float]], **cpu: float
) -> DeliveryPhase:
    received, seconds, rate, latencies = measured
    return DeliveryPhase(
        phase=phase, workers=len(running.workers), events=len(latencies), received=received,
        seconds=round(seconds, 2), rate=round(rate, 1), p50_ms=round(statistics.median(latencies), 1),
        p99_ms=round(_percentile(latencies, 0.99), 1), worker_cpu=cpu["worker"], pg_cpu=cpu["pg"],
        per_worker=_share(running, before),
    )  # fmt: skip


async def _drain(
    http: httpx.AsyncClient,
    running: Fleet,
    records: _Registrations,
    subscribers: _Subscribers,
    database_url: str,
    pg: ProcessTree,
) -> DeliveryPhase:
    numbers, before, received = _last_numbers(await _events(database_url)), running.delivered(), subscribers.received()
    keys = [(p, g) for g in records.gateways for p in range(len(records.patients))]
    workers, postgres = _Cpu([w.tree for w in running.workers]), _Cpu([pg])
    answer = await http.post("/registry/records:batch", json=[records.flip(key) for key in keys])
    committed = time.time()
    assert answer.status_code == 200, answer.text
    expected = await _events(database_url, numbers)
    measured = await _phase_numbers(subscribers, expected, committed, received, within=600)
    return _delivery("drain", running, before, measured, worker=workers.cores(), pg=postgres.cores())


async def _steady(
    http: httpx.AsyncClient,
    running: Fleet,
    records: _Registrations,
    subscribers: _Subscribers,
    database_url: str,
    pg: ProcessTree,
    args: argparse.Namespace,
) -> DeliveryPhase:
    numbers, before, received = _last_numbers(await _events(database_url)), running.delivered(), subscribers.received()

    async def one(key: tuple[int, str]) -> None:
        item = records.flip(key)
        answer = await http.put(f"/registry/records/{item['ihi']}/{item['serviceId']}", json={"status": item["status"]})
        assert answer.status_code in (200, 201), answer.text

    workers, postgres = _Cpu([w.tree for w in running.workers]), _Cpu([pg])
    started, first = time.perf_counter(), time.time()
    tasks = []
    for number in range(args.steady):
        delay = started + number / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(next(records.keys))))
    await asyncio.gather(*tasks)
    expected = await _events(database_url, numbers)
    measured = await _phase_numbers(subscribers, expected, first, received, within=600)
    return _delivery(f"steady {args.rate:g}/s", running, before, measured, worker=workers.cores(), pg=postgres.cores())


async def workers_part(
    args: argparse.Namespace, cluster: TestCluster, work: Path, pg: ProcessTree, results: Results
) -> None:
    """Delivery by one worker or two: a backlog drained, then a steady rate; alternating rounds."""
    database_url = await _migrated(cluster, "bench_scaleout_notify")
    gateways = [make_service_id() for _ in range(args.gateways)]
    for gateway in gateways:
        await add_service(database_url, gateway)
    records = _Registrations(args.patients, gateways)
    subscribers = _Subscribers(work)
    subscribers.start()
    settings = _common_settings()
    api_only = {"IEF_SUBSCRIPTIONS_WORKER": "false"}
    try:
        async with fleet(database_url, work, servers=1, workers=1, settings=settings, server_settings=api_only) as made:
            base = made.servers[0].base_url
            async with httpx.AsyncClient(base_url=base, headers=dev_token(made.servers[0]), timeout=60) as http:
                ids = []
                for number, patient in enumerate(records.patients):
                    body = _subscription(base, f"http://127.0.0.1:{subscribers.port}/hook/{number}", patient)
                    ids.append((await http.post("/fhir/Subscription", json=body)).json()["id"])
                await _wait_active(http, ids)
        for round_number in range(args.rounds):
            for count in (1, 2) if round_number % 2 == 0 else (2, 1):
                async with fleet(
                    database_url, work, servers=1, workers=count, settings=settings, server_settings=api_only
                ) as running:
                    server = running.servers[0]
                    async with httpx.AsyncClient(
                        base_url=server.base_url, headers=dev_token(server), timeout=120
                    ) as http:
                        print(f"workers: drain with {count} worker(s) ...", flush=True)
                        results.workers.append(await _drain(http, running, records, subscribers, database_url, pg))
                        print(f"workers: steady {args.rate:g}/s with {count} worker(s) ...", flush=True)
                        results.workers.append(
                            await _steady(http, running, records, subscribers, database_url, pg, args)
                        )
    finally:
        subscribers.stop()


def _share(running: Fleet, before: Mapping[str, int]) -> dict[str, int]:
    """Event notifications each worker process delivered since ``before`` (from their logs)."""
    return {name: count - before.get(name, 0) for name, count in running.delivered().items() if name.startswith("w")}


# ---- part 3: look-ups with and without a read replica ---------------------------------------------------------


async def replica_part(
    args: argparse.Namespace, cluster: TestCluster, database: str, work: Path, pg: ProcessTree, results: Results
) -> None:
    """GET at ``--concurrency`` from a server reading the primary and one reading a streaming replica."""
    replica = StreamingReplica(work / "replica", cluster.cluster, user=os.environ.get("IEF_EMBEDDED_USER", "postgres"))
    await asyncio.to_thread(replica.start)
    try:
        postmaster = replica.postmaster_pid()
        assert postmaster is not None
        standby = ProcessTree(postmaster)
        replica_url = f"postgresql://ief@/{database}?host={quote(str(replica.socket_dir), safe='/')}"
        settings = _common_settings()
        database_url = cluster.url_for(database)
        async with (
            fleet(database_url, work, servers=1, workers=0, settings=settings) as plain,
            fleet(
                database_url, work, servers=1, workers=0, settings=settings,
                server_settings={"IEF_DATABASE_READ_URL": replica_url},
            ) as replicated,
        ):  # fmt: skip
            token = dev_token(plain.servers[0])
            runs = [("primary", plain), ("replica", replicated)]
            for round_number in range(args.rounds):
                for name, running in runs if round_number % 2 == 0 else runs[::-1]:
                    print(f"replica: GET reading from the {name} ...", flush=True)
                    scenario = Scenario(
                        name="GET", requests="get_records", concurrency=args.concurrency, headers=token,
                        duration=args.duration, warmup=min(2.0, args.duration / 5),
                        params={"start": args.records // 2, "stop": args.records, "sample": 50_000,
                                "seed": 100 + round_number},
                    )  # fmt: skip
                    server, primary, secondary = _Cpu(_trees(running.servers)), _Cpu([pg]), _Cpu([standby])
                    load = await _load(running.ports, scenario)
                    results.replica.append(
                        ReplicaPhase(
                            reads_from=name,
                            load=load,
                            server_cpu=server.cores(),
                            primary_cpu=primary.cores(),
                            replica_cpu=secondary.cores(),
                        )
                    )
    finally:
        await asyncio.to_thread(replica.stop)


# ---- the run ------------------------------------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else 0.0


def _compare(what: str, unit: str, one: Sequence[float], two: Sequence[float], names: tuple[str, str]) -> list[str]:
    """One line comparing the means of two configurations (none when the first was not measured)."""
    first, second = _mean(one), _mean(two)
    if not first:
        return []
    return [f"{what}: mean {first:,.0f} {unit} {names[0]}, {second:,.0f} {names[1]}: ratio {second / first:.2f}"]


def report(results: Results) -> str:
    """The tables and ratios of a run, as text."""
    lines: list[str] = []
    if results.servers:
        lines += ["servers (one process vs two, load spread over both ports):",
                  "phase  servers   req/s   p50 ms   p99 ms  errors  server cpu  pg cpu"]  # fmt: skip
        for p in results.servers:
            lines.append(
                f"{p.phase:<5}  {p.servers:>7}  {p.load.rate:>6,.0f}  {p.load.p50_ms:>7.1f}  {p.load.p99_ms:>7.1f}  "
                f"{p.load.errors:>6}  {p.server_cpu:>10.2f}  {p.pg_cpu:>6.2f}"
            )
        for phase in ("PUT", "GET"):
            lines += _compare(
                phase, "req/s",
                [p.load.rate for p in results.servers if p.phase == phase and p.servers == 1],
                [p.load.rate for p in results.servers if p.phase == phase and p.servers == 2],
                ("with one process", "with two"),
            )  # fmt: skip
        lines.append("")
    if results.workers:
        lines.append("workers (API server's worker off; one ief-registry worker vs two):")
        lines.append(
            "phase         workers  events  seconds  notif/s   p50 ms   p99 ms  worker cpu  pg cpu  per worker"
        )
        for d in results.workers:
            lines.append(
                f"{d.phase:<12}  {d.workers:>7}  {d.events:>6}  {d.seconds:>7.2f}  {d.rate:>7.1f}  {d.p50_ms:>7.1f}  "
                f"{d.p99_ms:>7.1f}  {d.worker_cpu:>10.2f}  {d.pg_cpu:>6.2f}  {d.per_worker}"
            )
            if d.received != d.events:
                lines.append(f"  ({d.received} notifications received for {d.events} events: repeats)")
        lines += _compare(
            "drain", "notifications/s",
            [d.rate for d in results.workers if d.phase == "drain" and d.workers == 1],
            [d.rate for d in results.workers if d.phase == "drain" and d.workers == 2],
            ("with one worker", "with two"),
        )  # fmt: skip
        lines.append("")
    if results.replica:
        lines += ["replica (GET from one server process):",
                  "reads from   req/s   p50 ms   p99 ms  server cpu  primary cpu  replica cpu"]  # fmt: skip
        for r in results.replica:
            lines.append(
                f"{r.reads_from:<10}  {r.load.rate:>6,.0f}  {r.load.p50_ms:>7.1f}  {r.load.p99_ms:>7.1f}  "
                f"{r.server_cpu:>10.2f}  {r.primary_cpu:>11.2f}  {r.replica_cpu:>11.2f}"
            )
        lines += _compare(
            "GET", "req/s",
            [r.load.rate for r in results.replica if r.reads_from == "primary"],
            [r.load.rate for r in results.replica if r.reads_from == "replica"],
            ("on the primary", "from the replica"),
        )  # fmt: skip
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> Results:
    """One run of the chosen parts."""
    parts = set(args.parts.split(","))
    results = Results(settings={k: v for k, v in vars(args).items() if k != "json"})
    work = Path(tempfile.mkdtemp(prefix="ief-bench-scaleout-"))
    await asyncio.to_thread(work.chmod, 0o755)  # the replica's PostgreSQL runs as the cluster's user
    cluster = TestCluster()
    try:
        cluster.start()
        postmaster = cluster.cluster.postmaster_pid()
        assert postmaster is not None
        pg = ProcessTree(postmaster)
        if parts & {"servers", "replica"}:
            database_url = await _migrated(cluster, "bench_scaleout")
            gateway = make_service_id()
            await add_service(database_url, gateway)
            async with fleet(database_url, work, servers=1, workers=0, settings=_common_settings()) as loader:
                print(f"loading {args.records:,} records ...", flush=True)
                loaded = await _load(loader.ports, bulk_load_phase(
                    records=args.records, service_id=gateway, batch_size=5000, concurrency=4,
                    headers=dev_token(loader.servers[0])))  # fmt: skip
                if loaded.errors:
                    raise RuntimeError(f"the bulk load failed: {loaded.statuses}")
            if "servers" in parts:
                await servers_part(args, database_url, gateway, work, pg, results)
            if "replica" in parts:
                await replica_part(args, cluster, "bench_scaleout", work, pg, results)
        if "workers" in parts:
            await workers_part(args, cluster, work, pg, results)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench.scaleout`` (also how ``--all`` sets its sizes)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.scaleout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="servers,workers,replica", help="comma-separated: servers,workers,replica")
    parser.add_argument("--records", type=int, default=200_000, help="records bulk-loaded for PUT and GET")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per PUT/GET phase")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the PUT/GET phases")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per part (the order alternates)")
    parser.add_argument("--patients", type=int, default=200, help="subscriptions (one per patient)")
    parser.add_argument("--gateways", type=int, default=10, help="records per patient: events per drain")
    parser.add_argument("--rate", type=float, default=100.0, help="registrations per second in the steady phase")
    parser.add_argument("--steady", type=int, default=1000, help="registrations in the steady phase")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run, print the tables, write the JSON."""
    args = parser().parse_args(argv)
    results = asyncio.run(run(args))
    print()
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")


if __name__ == "__main__":
    main()
