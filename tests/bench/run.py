"""``python -m tests.bench``: bulk-load, then drive PUT and GET at a fixed concurrency, and report.

One run: measure the load generator's ceiling against a trivial server; start a throwaway
PostgreSQL cluster; start the server of each build (this checkout; ``--ref`` in a temporary git
worktree, with ``--ref-patch`` applied; the bare reference app with ``--bare``) on its own
database; bulk-load ``--records`` records through the batch endpoint; run each timed phase
(``scenarios.standard_phases``, ``--rounds`` times) on every build in turn, rotating which goes
first; print one table, and the checkout's rates as ratios to every other build's (and
``--json FILE``). The load generator is a separate process (``tests.bench.loadgen``); the
servers' resident memory is sampled over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import asyncpg
import msgspec
import psutil

from registry.db.migrate import apply_migrations
from tests.bench.clients import BenchClients
from tests.bench.loadgen import LoadResult, LoadSpec
from tests.bench.preload import CHUNK, copy_records
from tests.bench.scenarios import Scenario, bulk_load_phase, ihi, reregister_phases, standard_phases
from tests.bench.servers import (
    BARE_LABEL,
    LIFTED_LABEL,
    ROOT,
    Build,
    ProcessTree,
    ServerProcess,
    checkout,
    git_describe,
    peak_rss,
)
from tests.bench.sizing import TableSize, table_sizes, wal_position
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import add_service, free_port

__all__ = ("CHECKOUT", "BenchResult", "main", "parser", "ratios", "run", "table")

CHECKOUT = "checkout"
"""Label of the build run from this checkout: the one every ratio is about."""


class PhaseResult(msgspec.Struct, kw_only=True):
    """One phase on one build: the load generator's measurements and the CPU the server side used."""

    phase: str
    build: str
    load: LoadResult
    round: int = 1
    """Which repetition of the timed phases (``--rounds``); the bulk load is round 1."""
    records: int = 0
    """Records in the build's database while the phase ran (after a bulk load: when it ended)."""
    server_cpu: float
    """Cores used by the server processes on average during the phase."""
    pg_cpu: float
    """Cores used by PostgreSQL (postmaster and backends) on average during the phase."""
    wal_bytes: int = 0
    """WAL the cluster wrote during the phase (warm-up included; the builds' phases never overlap)."""


class BuildResult(msgspec.Struct, kw_only=True):
    """One server build: what it ran from, its bulk load, its memory."""

    label: str
    commit: str
    records_in_database: int
    peak_rss_mb: float
    """Peak resident memory of the server process and its worker children, summed."""


class Ratio(msgspec.Struct, kw_only=True):
    """The checkout's rate in one phase divided by another build's, per round (adjacent in time) and their median.

    ``cpu_per_round`` and ``cpu_median`` compare server CPU per operation the other way round (the
    other build's divided by the checkout's: above 1, the checkout spends less), which varies less
    than rates when other work shares the machine.
    """

    phase: str
    versus: str
    per_round: list[float]
    median: float
    cpu_per_round: list[float] = msgspec.field(default_factory=list)
    cpu_median: float = 0.0


class Growth(msgspec.Struct, kw_only=True):
    """How a build's rate in one phase changed when the records grew (``--grow-to``): medians over rounds."""

    phase: str
    build: str
    records_before: int
    records_after: int
    rate_before: float
    rate_after: float
    ratio: float


class SizeReading(msgspec.Struct, kw_only=True):
    """A build's tables after a bulk load (for sizing: bytes per record, history entry and audit row)."""

    build: str
    after: str
    """The phase after which they were read."""
    tables: list[TableSize]


class BenchResult(msgspec.Struct, kw_only=True):
    """Everything a run measured (``--json``)."""

    started_at: str
    machine: dict[str, str | int]
    settings: dict[str, str | bool | int | float | None]
    ceiling: LoadResult
    builds: list[BuildResult]
    phases: list[PhaseResult]
    ratios: list[Ratio] = msgspec.field(default_factory=list)
    growth: list[Growth] = msgspec.field(default_factory=list)
    sizes: list[SizeReading] = msgspec.field(default_factory=list)


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench`` (the registry matrix)."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to bulk-load (default 1,000,000)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per timed phase (default 15)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the loaded phases (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="server processes per build (default 1)")
    parser.add_argument("--ref", help="also run the server of this git revision, for a before/after comparison")
    parser.add_argument(
        "--ref-patch", type=Path, help="apply this patch (git apply) to the --ref checkout; nothing is committed"
    )
    parser.add_argument("--bare", action="store_true", help="also run the bare reference app (tests.bench.bare)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the timed phases this many times (default 1)")
    parser.add_argument(
        "--grow-to", type=int, metavar="N", help="then load up to N records and run the timed phases once more"
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="record the checkout's server with py-spy in every phase (to DIR)"
    )
    parser.add_argument(
        "--mode", choices=("deployment", "lifted"), default="deployment",
        help="deployment (default): the servers' default settings (per-client rate limit on, info logging), "
        "--clients clients each with its own token from /auth/token; lifted: one operator admin token and the "
        "rate limit lifted (the earlier profile)",
    )  # fmt: skip
    parser.add_argument(
        "--compare-lifted", action="store_true",
        help="also run this checkout in the lifted mode, as a build of its own (label 'lifted'), phases alternating",
    )  # fmt: skip
    parser.add_argument(
        "--against-records", type=int, metavar="N",
        help="also run this checkout on a database of N records, as a build of its own, phases alternating "
        "(growth measured in one run: --records 10000000 --against-records 1000000)",
    )  # fmt: skip
    parser.add_argument(
        "--clients", type=int, default=32, help="distinct clients in the deployment mode, requests spread over them"
    )
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    parser.add_argument(
        "--reregister", action="store_true",
        help="time re-registrations (PUT active to active records) instead of the standard phases",
    )  # fmt: skip
    parser.add_argument(
        "--subscriptions", type=int, default=0, metavar="N",
        help="after the bulk load, one subscription per patient of the first N records (the re-registered ones)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=5000, help="records per batch request (default 5000)")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="batch requests in flight (default 4)")
    parser.add_argument(
        "--load", choices=("http", "copy"), default="http",
        help="how the records get in: http (default), the batch endpoint, measured; copy, COPY straight into each "
        "build's database (tests.bench.preload: millions in minutes, for --grow-to)",
    )  # fmt: skip
    parser.add_argument(
        "--sequential-share", type=float, default=0.5,
        help="share of --records loaded first by one client, one batch after another (default 0.5; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--sequential-batch-size", type=int, default=10_000, help="items per batch of that load (default 10,000)"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter of the server processes (default: this one)"
    )
    parser.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="send a header with every request"
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="IEF_X=VALUE", help="a setting for the servers"
    )
    parser.add_argument(
        "--pg-setting", action="append", default=[], metavar="NAME=VALUE",
        help="a PostgreSQL setting for the benchmark's cluster (ALTER SYSTEM, then a restart), e.g. shared_buffers=2GB",
    )  # fmt: skip
    return parser


async def _configure_cluster(cluster: TestCluster, settings: dict[str, str]) -> None:
    """Apply PostgreSQL settings to the benchmark's cluster and restart it so that every one takes effect."""
    if not settings:
        return
    conn = await asyncpg.connect(cluster.url)
    try:
        for name, value in settings.items():
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()
    cluster.cluster.stop()
    cluster.start()
    conn = await asyncpg.connect(cluster.url)
    try:
        shown = {name: await conn.fetchval(f"SHOW {name}") for name in settings}
    finally:
        await conn.close()
    print(f"PostgreSQL settings: {shown}", flush=True)


def _pairs(values: Sequence[str], separator: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, found, rest = value.partition(separator)
        if not found:
            raise SystemExit(f"expected NAME{separator}VALUE, got {value!r}")
        pairs[name.strip()] = rest.strip()
    return pairs


async def _run_loadgen(port: int, scenario: Scenario) -> LoadResult:
    spec = msgspec.json.encode(LoadSpec(host="127.0.0.1", port=port, scenario=scenario))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.loadgen", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(spec)
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed on {scenario.name}:\n{err.decode()}")
    return msgspec.json.decode(out, type=LoadResult)


async def _ceiling(concurrency: int, duration: float) -> LoadResult:
    port = free_port()
    trivial = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.bench.trivial", str(port), cwd=ROOT)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        scenario = Scenario(
            name="ceiling", requests="ping", concurrency=concurrency, duration=duration, warmup=min(1.0, duration / 5)
        )
        return await _run_loadgen(port, scenario)
    finally:
        trivial.terminate()
        await trivial.wait()


@contextlib.asynccontextmanager
async def _profiled(server: ServerProcess, scenario: Scenario, folder: Path | None, round_: int) -> AsyncIterator[None]:
    """Record the server with ``py-spy`` (collapsed stacks, 250 samples/s) while the block runs."""
    if folder is None or server.build.label != CHECKOUT:
        yield
        return
    name = "".join(c if c.isalnum() else "-" for c in scenario.name.lower())
    out = folder / f"{name}-round{round_}.txt"
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    process = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(server.process.pid), "--format", "raw", "--rate", "250", "--nonblocking",
        "--output", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        await process.wait()


async def _measured(
    server: ServerProcess, pg: ProcessTree, scenario: Scenario, auth: dict[str, str], *, profile: Path | None = None,
    round_: int = 1, clients: BenchClients | None = None,
) -> PhaseResult:  # fmt: skip
    header_sets = await clients.header_sets() if clients is not None else []
    scenario = msgspec.structs.replace(scenario, headers={**auth, **scenario.headers}, header_sets=header_sets)
    wal_before = await wal_position(server.database_url)
    server_before, pg_before = server.tree.cpu_seconds(), pg.cpu_seconds()
    wall_before = asyncio.get_running_loop().time()
    async with _profiled(server, scenario, profile, round_):
        load = await _run_loadgen(server.port, scenario)
    wall = asyncio.get_running_loop().time() - wall_before
    server_cpu, pg_cpu = server.tree.cpu_seconds() - server_before, pg.cpu_seconds() - pg_before
    return PhaseResult(
        phase=scenario.name,
        build=server.build.label,
        load=load,
        server_cpu=round(server_cpu / wall, 2),
        pg_cpu=round(pg_cpu / wall, 2),
        wal_bytes=await wal_position(server.database_url) - wal_before,
    )


def _resized(args: argparse.Namespace, service_id: str, headers: dict[str, str]) -> dict[tuple[int, int], Scenario]:
    """The timed phases of the build at ``--against-records``, by (round, phase within the round)."""
    resized: dict[tuple[int, int], Scenario] = {}
    for round_ in range(args.rounds if args.against_records else 0):
        timed = standard_phases(
            records=args.against_records, service_id=service_id, concurrency=args.concurrency,
            duration=args.duration, headers=headers, round_=round_, rounds=args.rounds,
        )  # fmt: skip
        resized |= {(round_ + 1, number): phase for number, phase in enumerate(timed)}
    return resized


def _sized(scenario: Scenario, build: Build, timed: Scenario | None) -> Scenario | None:
    """The scenario as a build of another size runs it: its own timed phases, its loads cut at its size (None:
    nothing of this load is its)."""
    if build.records is None:
        return scenario
    if scenario.requests != "batch_load":
        return timed
    start, stop = min(int(scenario.params["start"]), build.records), min(int(scenario.params["stop"]), build.records)
    if start >= stop:
        return None
    return msgspec.structs.replace(scenario, params={**scenario.params, "start": start, "stop": stop})


async def _copied(server: ServerProcess, pg: ProcessTree, scenario: Scenario, service_id: str) -> PhaseResult:
    """A bulk load by ``COPY`` straight into the build's database (``--load copy``), measured like a phase."""
    start, stop = int(scenario.params["start"]), int(scenario.params["stop"])
    wal_before, pg_before = await wal_position(server.database_url), pg.cpu_seconds()
    seconds = await copy_records(server.database_url, service_id, start, stop)
    count, chunks = stop - start, -(-(stop - start) // CHUNK)
    load = LoadResult(
        scenario=scenario.name, concurrency=1, requests=chunks, items=count, errors=0, statuses={}, seconds=seconds,
        rate=round(chunks / seconds, 1), item_rate=round(count / seconds, 1), p50_ms=0.0, p90_ms=0.0, p99_ms=0.0,
        max_ms=0.0, client_cpu=0.0, completed=chunks, completed_items=count,
    )  # fmt: skip
    return PhaseResult(
        phase=scenario.name.replace("bulk load", "COPY load"), build=server.build.label, load=load, server_cpu=0.0,
        pg_cpu=round((pg.cpu_seconds() - pg_before) / seconds, 2),
        wal_bytes=await wal_position(server.database_url) - wal_before,
    )  # fmt: skip


async def _settle(database_url: str) -> None:
    """After a bulk load: vacuum and analyze the build's database and checkpoint, so the timed phases
    that follow do not share the machine with the load's aftermath (autovacuum, dirty buffers)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _subscribe(database_url: str, count: int) -> None:
    """``count`` active subscriptions of the operator, one per patient of the first loaded records (SQL of the
    0006 schema, which every build has): each registration of those patients is matched and numbered."""
    if count <= 0:
        return
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO subscriptions (client_id, status, reason, base_url, filter_ihi, filters, endpoint, "
            "payload_type, content, secret, timeout_seconds, handshake_pending) "
            "SELECT 'operator', 'active', 'benchmark', 'http://127.0.0.1/fhir', u.ihi, ARRAY['patient=' || u.ihi], "
            "'http://127.0.0.1:9/hook', 'application/fhir+json', 'id-only', 'whsec_' || md5(u.ihi), 10, false "
            "FROM unnest($1::text[]) AS u(ihi) "
            "WHERE NOT EXISTS (SELECT 1 FROM subscriptions s WHERE s.filter_ihi = u.ihi)",
            [ihi(n) for n in range(count)],
        )  # fmt: skip
    finally:
        await conn.close()


async def _count_records(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM records"))
    finally:
        await conn.close()


@contextlib.contextmanager
def _builds(
    ref: str | None, patch: Path | None, *, bare: bool, lifted: bool = False, against: int | None = None
) -> Iterator[list[Build]]:
    current = Build(label=CHECKOUT, source=ROOT, commit=git_describe(ROOT))
    others = [Build(label=BARE_LABEL, source=ROOT, commit=current.commit, bare=True)] if bare else []
    if lifted:
        others.append(Build(label=LIFTED_LABEL, source=ROOT, commit=current.commit, lifted=True))
    if against:
        others.append(Build(label=f"at {against:,}", source=ROOT, commit=current.commit, records=against))
    if ref is None:
        yield [*others, current]
        return
    with checkout(ref, patch) as other:
        yield [other, *others, current]


async def _migrate(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _servers(args: argparse.Namespace, cluster: TestCluster, work: Path) -> AsyncIterator[list[ServerProcess]]:
    """A ready server per build, each on its own empty database (migrated by ``serve``); stopped at the end."""
    # One client for every request: lift its rate limit (200 requests/s by default).
    lifting = {"IEF_AUTH_RATE_PER_SECOND": "1000000", "IEF_AUTH_RATE_BURST": "1000000"}
    settings = lifting if args.mode == "lifted" else {}
    settings |= _pairs(args.server_env, "=")
    servers: list[ServerProcess] = []
    with _builds(
        args.ref, args.ref_patch, bare=args.bare, lifted=args.compare_lifted, against=args.against_records
    ) as builds:
        try:
            for number, build in enumerate(builds):
                database_url = await cluster.empty_database(f"bench_{number}")
                if build.bare:  # the registry migrates its own database; the bare app needs it done
                    await _migrate(database_url)
                own = lifting | _pairs(args.server_env, "=") if build.lifted else settings
                servers.append(
                    ServerProcess(build, python=args.python, database_url=database_url, workers=args.workers,
                                  work=work, settings=own)
                )  # fmt: skip
            for server in servers:
                server.wait_ready()
            yield servers
        finally:
            for server in servers:
                server.stop()


def _machine(python: str) -> dict[str, str | int]:
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpus": os.cpu_count() or 0,
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "platform": platform.platform(),
        "load_generator_python": f"{sys.executable} ({platform.python_version()})",
        "server_python": f"{python} ({version.removeprefix('Python ')})",
    }


async def run(args: argparse.Namespace) -> BenchResult:
    """One benchmark run as the arguments describe."""
    headers = _pairs(args.header, ":")
    service_id = make_service_id()
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    # (round, phase within the round, records loaded, scenario). The records are loaded in two ways, each
    # measured: the first share by one client sending one batch after another, the rest with several in flight.
    sequential = int(args.records * args.sequential_share)
    phases = [
        (1, 0, sequential, bulk_load_phase(records=sequential, service_id=service_id,
                                           batch_size=args.sequential_batch_size, concurrency=1, headers=headers)),
    ] if sequential else []  # fmt: skip
    phases.append((1, 1, args.records, bulk_load_phase(
        records=args.records, start=sequential, service_id=service_id, batch_size=args.batch_size,
        concurrency=args.batch_concurrency, headers=headers)))  # fmt: skip
    for round_ in range(args.rounds):
        timed = (
            reregister_phases(subscribed=args.subscriptions or args.records, service_id=service_id,
                              concurrency=args.concurrency, duration=args.duration, headers=headers)
            if args.reregister
            else standard_phases(records=args.records, service_id=service_id, concurrency=args.concurrency,
                                 duration=args.duration, headers=headers, round_=round_, rounds=args.rounds)
        )  # fmt: skip
        phases += [(round_ + 1, number, args.records, phase) for number, phase in enumerate(timed)]
    if args.grow_to and args.grow_to > args.records:
        grown = args.rounds + 1
        phases.append((grown, 0, args.grow_to, bulk_load_phase(
            records=args.grow_to, start=args.records, service_id=service_id, batch_size=args.batch_size,
            concurrency=args.batch_concurrency, headers=headers, grown=args.grow_to)))  # fmt: skip
        timed = standard_phases(records=args.grow_to, first=args.records, service_id=service_id,
                                concurrency=args.concurrency, duration=args.duration, headers=headers)  # fmt: skip
        phases += [(grown, number + 1, args.grow_to, phase) for number, phase in enumerate(timed)]
    resized = _resized(args, service_id, headers)
    print(f"ceiling: the load generator against a trivial server, c={args.concurrency} ...", flush=True)
    ceiling = await _ceiling(args.concurrency, min(args.duration, 5.0))
    work = Path(tempfile.mkdtemp(prefix="ief-bench-"))
    cluster = TestCluster()
    try:
        cluster.start()
        await _configure_cluster(cluster, _pairs(args.pg_setting, "="))
        postmaster = cluster.cluster.postmaster_pid()
        assert postmaster is not None
        pg = ProcessTree(postmaster)
        async with _servers(args, cluster, work) as servers:
            results: list[PhaseResult] = []
            sizes: list[SizeReading] = []
            with peak_rss({server.build.label: server.tree for server in servers}) as peaks:
                auth = {server.build.label: server.authorization() for server in servers}
                clients: dict[str, BenchClients] = {}
                for server in servers:
                    await add_service(server.database_url, service_id)
                    if args.mode == "deployment" and auth[server.build.label] and not server.build.lifted:
                        clients[server.build.label] = await BenchClients.register(
                            base_url=server.base_url,
                            database_url=server.database_url,
                            service_id=service_id,
                            count=args.clients,
                        )
                        auth[server.build.label] = {}
                for round_, number, loaded, scenario in phases:
                    # Rotate who goes first, from phase to phase and from round to round.
                    first = (number + round_ - 1) % len(servers)
                    for server in servers[first:] + servers[:first]:
                        own = _sized(scenario, server.build, resized.get((round_, number)))
                        if own is None:
                            continue
                        print(f"{own.name} (round {round_}) on {server.build.label} ...", flush=True)
                        if own.requests == "batch_load" and args.load == "copy":
                            measured = await _copied(server, pg, own, service_id)
                        else:
                            measured = await _measured(
                                server, pg, own, auth[server.build.label], profile=args.profile, round_=round_,
                                clients=clients.get(server.build.label),
                            )  # fmt: skip
                        size = loaded if server.build.records is None else min(loaded, server.build.records)
                        results.append(msgspec.structs.replace(measured, round=round_, records=size))
                    if scenario.requests == "batch_load":
                        for server in servers:
                            await _settle(server.database_url)
                            await _subscribe(server.database_url, args.subscriptions)
                            sizes.append(SizeReading(build=server.build.label, after=scenario.name,
                                                     tables=await table_sizes(server.database_url)))  # fmt: skip
            builds = [
                BuildResult(
                    label=server.build.label,
                    commit=server.build.commit,
                    records_in_database=await _count_records(server.database_url),
                    peak_rss_mb=round(peaks.get(server.build.label, 0) / 2**20, 1),
                )
                for server in servers
            ]
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    names = ("records", "duration", "concurrency", "workers", "ref", "rounds", "bare", "grow_to", "reregister",
             "subscriptions", "mode", "clients", "load")  # fmt: skip
    settings = {name: getattr(args, name) for name in names}
    settings |= {"ref_patch": str(args.ref_patch) if args.ref_patch else None}
    settings |= {"batch": f"{args.batch_size} items x {args.batch_concurrency} in flight"}
    settings |= {"sequential": f"{args.sequential_share:g} of the records in batches of {args.sequential_batch_size}"}
    settings |= {"server_env": " ".join(args.server_env) or None, "pg_settings": " ".join(args.pg_setting) or None}
    return BenchResult(
        started_at=started_at, machine=_machine(args.python), settings=settings, ceiling=ceiling, builds=builds,
        phases=results, ratios=ratios(results), growth=growth(results), sizes=sizes,
    )  # fmt: skip


def growth(phases: Sequence[PhaseResult]) -> list[Growth]:
    """Each build's median rate per timed phase at its largest record count ÷ at its smallest (``--grow-to``)."""
    found: list[Growth] = []
    timed = [p for p in phases if not p.phase.startswith(("bulk", "COPY"))]
    for name, build in dict.fromkeys((p.phase, p.build) for p in timed):
        mine = [p for p in timed if (p.phase, p.build) == (name, build)]
        counts = sorted({p.records for p in mine})
        if len(counts) < 2:
            continue
        rates = [statistics.median(_rate(p) for p in mine if p.records == count) for count in (counts[0], counts[-1])]
        found.append(
            Growth(phase=name, build=build, records_before=counts[0], records_after=counts[-1],
                   rate_before=rates[0], rate_after=rates[1], ratio=round(rates[1] / rates[0], 3) if rates[0] else 0.0)
        )  # fmt: skip
    return found


def _rate(phase: PhaseResult) -> float:
    return phase.load.item_rate if phase.load.items != phase.load.requests else phase.load.rate


def ratios(phases: Sequence[PhaseResult]) -> list[Ratio]:
    """The checkout's rate divided by every other build's, phase by phase, inside each round."""
    by_key = {(p.phase, p.build, p.round): p for p in phases}
    found: list[Ratio] = []
    names = list(dict.fromkeys(p.phase for p in phases))
    others = list(dict.fromkeys(p.build for p in phases if p.build != CHECKOUT))
    for name in names:
        for other in others:
            pairs = [
                (mine, by_key[(name, other, number)])
                for (phase, build, number), mine in by_key.items()
                if phase == name and build == CHECKOUT and (name, other, number) in by_key
            ]
            rates = [round(_rate(mine) / _rate(theirs), 3) for mine, theirs in pairs if _rate(theirs)]
            cpu = [
                round(server_micros_per_op(theirs) / server_micros_per_op(mine), 3)
                for mine, theirs in pairs
                if server_micros_per_op(mine)
            ]
            if rates:
                found.append(
                    Ratio(phase=name, versus=other, per_round=rates, median=statistics.median(rates),
                          cpu_per_round=cpu, cpu_median=statistics.median(cpu) if cpu else 0.0)
                )  # fmt: skip
    return found


_COLUMNS = (
    "phase",
    "round",
    "records",
    "build",
    "req/s",
    "records/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "server cpu",
    "server us/op",
    "pg cpu",
    "client cpu",
    "WAL B/op",
)


def _row(p: PhaseResult) -> tuple[str, ...]:
    load = p.load
    records = f"{load.item_rate:,.0f}" if load.items != load.requests else ""
    return (p.phase, str(p.round), f"{p.records:,}", p.build, f"{load.rate:,.0f}", records, f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}", str(load.errors), f"{p.server_cpu:.2f}", f"{server_micros_per_op(p):,.0f}",
            f"{p.pg_cpu:.2f}", f"{load.client_cpu:.2f}", f"{wal_per_op(p):,.0f}")  # fmt: skip


def wal_per_op(phase: PhaseResult) -> float:
    """WAL bytes per request (per record in a bulk load), the warm-up's requests and WAL both counted."""
    load = phase.load
    done = load.completed_items if load.items != load.requests else load.completed
    return phase.wal_bytes / done if done else 0.0


def server_micros_per_op(phase: PhaseResult) -> float:
    """Server CPU per request (per record in the bulk load) in microseconds: steadier than rates on a shared machine."""
    rate = _rate(phase)
    return phase.server_cpu / rate * 1e6 if rate else 0.0


def table(result: BenchResult) -> str:
    """The run's table, its ceiling and memory lines, the ratios and the growth, as printed."""
    rows = [_COLUMNS, *(_row(p) for p in result.phases)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(widths[i]) if i in {0, 3} else cell.rjust(widths[i]) for i, cell in enumerate(row))

    lines = [line(rows[0]), "  ".join("-" * width for width in widths), *(line(row) for row in rows[1:])]
    ceiling = result.ceiling
    lines += [
        "",
        f"load generator ceiling (trivial server, c={ceiling.concurrency}): {ceiling.rate:,.0f} req/s, "
        f"p50 {ceiling.p50_ms:.2f} ms, client cpu {ceiling.client_cpu:.2f}",
    ]
    lines += [
        f"{b.label} ({b.commit}): {b.records_in_database:,} records in the database, "
        f"server peak RSS {b.peak_rss_mb:,.0f} MB"
        for b in result.builds
    ]
    if result.ratios:
        lines += [
            "",
            "checkout ÷ other build: rate (records/s for the bulk load, else req/s), per round -> median;",
            "  server CPU per operation, other build ÷ checkout (above 1: the checkout spends less), likewise",
        ]
        lines += [
            f"  {r.phase} vs {r.versus}: rate {' '.join(f'{v:.2f}' for v in r.per_round)} -> {r.median:.2f};"
            f" cpu {' '.join(f'{v:.2f}' for v in r.cpu_per_round)} -> {r.cpu_median:.2f}"
            for r in result.ratios
        ]
    if result.sizes:
        lines += ["", "tables after each bulk load: rows, MB (heap, indexes, TOAST; every partition), bytes per row"]
        lines += [
            f"  {reading.build} after {reading.after}: "
            + "; ".join(
                f"{t.table} {t.rows:,} rows {t.bytes / 2**20:,.1f} MB {t.bytes_per_row:,.0f} B/row"
                for t in reading.tables
            )
            for reading in result.sizes
        ]
    if result.growth:
        lines += ["", "rate with more records ÷ rate before (medians over rounds):"]
        lines += [
            f"  {g.phase} on {g.build}: {g.rate_after:,.0f} at {g.records_after:,} ÷ {g.rate_before:,.0f} at "
            f"{g.records_before:,} = {g.ratio:.2f}"
            for g in result.growth
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, run, print the table, write the JSON."""
    args = parser().parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args))
    print()
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
