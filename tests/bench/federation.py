"""``python -m tests.bench.federation``: the cost of federation hops over a local look-up (p50/p99).

Three registries (A, B, C) run as separate server processes (``ief-registry serve``), each on its
own database in a throwaway PostgreSQL cluster; trust is set up with the CLI as operators would
(A is a client of B and of C: resolving iteratively, A asks C itself). Records: for one set of
IHIs A holds the gateway record itself (local); for another A refers to B, which holds it (one
hop); for a third A refers to B, B to C, which holds it (two hops). A load generator in its own
process (``… federation loadgen``, plain HTTP/1.1 keep-alive, each request encoded before the
clock starts) then asks A for each phase at each concurrency:

- ``local``: ``GET /registry/records/{ihi}`` (no follow), the baseline;
- ``local+follow``: the same IHIs with ``follow=true`` (the resolver's cost when nothing is referred);
- ``1 hop`` / ``2 hops``: ``follow=true`` on the referred IHIs.

Besides latency and rate, each phase reports the CPU spent per request by the registry asked, by
all registry processes together and by PostgreSQL: on a shared machine CPU per request is steadier
than latency.

With ``--ref REV`` the ``local`` phase also runs against a server of git revision ``REV`` (exported
with ``git archive``, on its own database with the same records), to compare plain look-ups before
and after a change. Every phase runs ``--rounds`` times, in alternating order, and the table shows
the median of each measure over the rounds, with ratios to ``local`` (``--json FILE`` keeps every
round).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import httpx
import msgspec
import psutil

from tests.factories import LOOPBACK_NETWORKS, make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import free_port

__all__ = ("LoadResult", "LoadSpec", "Phase", "main", "medians", "parser", "run", "table")

ROOT = Path(__file__).resolve().parents[2]
_SERVER_SETTINGS = {
    "IEF_LOG_LEVEL": "warning",
    "IEF_LOG_ACCESS": "false",
    # The benchmark measures look-ups, not the per-client rate limiter.
    "IEF_AUTH_RATE_PER_SECOND": "1000000",
    "IEF_AUTH_RATE_BURST": "1000000",
    # The peers run on loopback (an older build ignores the setting).
    "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,
}


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One phase for the load generator: where, what, how hard, how long."""

    port: int
    paths: list[str]
    headers: dict[str, str]
    concurrency: int
    duration: float
    warmup: float


class LoadResult(msgspec.Struct, kw_only=True):
    """What one phase measured (requests started after the warm-up; ``sent`` counts the warm-up's too)."""

    sent: int
    requests: int
    errors: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


# --- the load generator (its own process) -------------------------------------------------------


async def _connection(spec: LoadSpec, raw: list[bytes], start: int, sink: list[tuple[float, float, bool]]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", spec.port)
    clock = time.perf_counter
    end = clock() + spec.warmup + spec.duration
    n = start
    try:
        while clock() < end:
            began = clock()
            writer.write(raw[n % len(raw)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            sink.append((began, clock() - began, head[9:12] != b"200"))
            n += 1
    finally:
        writer.close()


async def run_load(spec: LoadSpec) -> LoadResult:
    """Send the paths round-robin over ``concurrency`` keep-alive connections and measure."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in spec.headers.items())
    raw = [f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode() for path in spec.paths]
    sink: list[tuple[float, float, bool]] = []
    started = time.perf_counter()
    step = max(1, len(raw) // spec.concurrency)
    await asyncio.gather(*(_connection(spec, raw, i * step, sink) for i in range(spec.concurrency)))
    measured = [(latency, error) for began, latency, error in sink if began >= started + spec.warmup]
    latencies = sorted(latency for latency, _ in measured)
    seconds = time.perf_counter() - started - spec.warmup

    def pct(fraction: float) -> float:
        return round(latencies[min(len(latencies) - 1, round(fraction * (len(latencies) - 1)))] * 1000, 2)

    return LoadResult(
        sent=max(1, len(sink)),
        requests=len(latencies),
        errors=sum(1 for _, error in measured if error),
        seconds=round(seconds, 2),
        rate=round(len(latencies) / seconds, 1),
        p50_ms=pct(0.5),
        p99_ms=pct(0.99),
        mean_ms=round(statistics.fmean(latencies) * 1000, 2),
    )


def _loadgen() -> None:
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=LoadSpec)
    sys.stdout.buffer.write(msgspec.json.encode(asyncio.run(run_load(spec))))


# --- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``ief-registry serve`` process on its own database."""

    name: str
    source: Path
    database_url: str
    service_id: str = field(default_factory=make_service_id)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def base_url(self) -> str:
        """Where it answers."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of its processes (server and CLI)."""
        return {
            **os.environ, **_SERVER_SETTINGS, "PYTHONPATH": str(self.source),
            "IEF_DATABASE_URL": self.database_url, "IEF_SERVICE_ID": self.service_id,
        }  # fmt: skip

    def start(self, work: Path) -> None:
        """Start the server (it migrates its empty database first)."""
        self.log = work / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "registry", "serve", "--port", str(self.port)],
                cwd=self.source, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def cli(self, *args: str) -> str:
        """Run the CLI as this registry's operator; return its last output line."""
        done = subprocess.run(
            [sys.executable, "-m", "registry", *args], cwd=self.source, env=self.env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: ief-registry {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait for ``/health/ready``."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {self.log}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health/ready").status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready in {timeout} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def _exported(ref: str | None) -> Iterator[Path | None]:
    """The source tree of git revision ``ref`` in a temporary folder (``git archive``), a folder ``ref`` names
    as it is (a variant made by hand), or None."""
    if ref is None:
        yield None
        return
    if Path(ref).is_dir():
        yield Path(ref).resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="ief-bench-ref-"))
    try:
        archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _running(servers: Sequence[Server], work: Path) -> AsyncIterator[None]:
    try:
        for server in servers:
            server.start(work)
        for server in servers:
            await asyncio.to_thread(server.wait_ready)
        yield
    finally:
        for server in servers:
            server.stop()


def _trust(caller: Server, callee: Server) -> None:
    """At the callee: admit the caller by its JWKS URL; at the caller: add the callee with the client ID it gave."""
    client_id = callee.cli(
        "clients", "add", f"Registry {caller.name}", "--service-id", caller.service_id, "--scopes", "system/Basic.rs",
        "--jwks-url", f"{caller.base_url}/.well-known/jwks.json",
    )  # fmt: skip
    caller.cli(
        "services", "add", "--id", callee.service_id, "--kind", "registry", "--name", f"Registry {callee.name}",
        "--base-url", callee.base_url, "--client-id", client_id,
    )  # fmt: skip


async def _load(server: Server, token: str, items: list[dict[str, str]]) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
        for start in range(0, len(items), 5000):
            response = await http.post(
                "/registry/records:batch",
                json=items[start : start + 5000],
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code != 200 or response.json()["errors"]:
                raise RuntimeError(f"{server.name}: loading records failed: {response.text[:500]}")


def _gateway(server: Server) -> str:
    service_id = make_service_id()
    server.cli(
        "services", "add", "--id", service_id, "--kind", "gateway", "--name", f"Gateway at {server.name}",
        "--base-url", f"https://{server.name.lower()}.gateway.test/fhir",
    )  # fmt: skip
    return service_id


# --- the run ------------------------------------------------------------------------------------


class Phase(msgspec.Struct, kw_only=True):
    """One measured phase; CPU is per request, summed over every registry process, and over PostgreSQL."""

    phase: str
    server: str
    concurrency: int
    load: LoadResult
    asked_cpu_ms: float
    """CPU of the registry the load generator asks (A, or the reference build)."""
    registry_cpu_ms: float
    """CPU of every registry process together (the one asked and the peers it asks)."""
    pg_cpu_ms: float


def _cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes and their children, as far as they still run."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
    return total


async def _measure(
    server: Server, token: str, paths: list[str], concurrency: int, args: argparse.Namespace
) -> LoadResult:
    spec = LoadSpec(
        port=server.port, paths=paths, headers={"Authorization": f"Bearer {token}"}, concurrency=concurrency,
        duration=args.duration, warmup=args.warmup,
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bench.federation", "loadgen", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate(msgspec.json.encode(spec))
    if process.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{err.decode()}")
    return msgspec.json.decode(out, type=LoadResult)


async def _set_up(
    servers: dict[str, Server], local: list[str], one_hop: list[str], two_hops: list[str]
) -> dict[str, str]:
    """Trust (A asks B and C: an iterative resolver asks every registry itself), a gateway in each directory,
    the records; check that a two-hop look-up resolves; return an admin token per server."""
    a, b, c = servers["A"], servers["B"], servers["C"]
    _trust(a, b)
    _trust(a, c)
    b.cli(  # B refers to C, so C is in B's directory; B never asks C itself
        "services", "add", "--id", c.service_id, "--kind", "registry", "--name", "Registry C", "--base-url", c.base_url
    )
    tokens = {name: s.cli("token", "--scopes", "admin", "--lifetime", "7200") for name, s in servers.items()}
    gateways = {name: _gateway(s) for name, s in servers.items()}

    def held(ihis: list[str], name: str) -> list[dict[str, str]]:
        return [{"ihi": i, "serviceId": gateways[name]} for i in ihis]

    def referred(ihis: list[str], to: Server) -> list[dict[str, str]]:
        return [{"ihi": i, "serviceId": to.service_id, "type": "registry"} for i in ihis]

    await _load(a, tokens["A"], held(local, "A") + referred(one_hop + two_hops, b))
    await _load(b, tokens["B"], held(one_hop, "B") + referred(two_hops, c))
    await _load(c, tokens["C"], held(two_hops, "C"))
    if "ref" in servers:
        await _load(servers["ref"], tokens["ref"], held(local, "ref"))
    async with httpx.AsyncClient(base_url=a.base_url, timeout=30) as http:
        answer = (
            await http.get(
                f"/registry/records/{two_hops[0]}?follow=true", headers={"Authorization": f"Bearer {tokens['A']}"}
            )
        ).json()
    if answer.get("unresolved") or [r["via"] for r in answer["records"]] != [[b.service_id, c.service_id]]:
        raise RuntimeError(f"a two-hop look-up does not resolve: {answer}")
    return tokens


async def _rounds(
    args: argparse.Namespace,
    servers: dict[str, Server],
    tokens: dict[str, str],
    phases: list[tuple[str, str, list[str]]],
    pg_pids: list[int],
) -> list[Phase]:
    """Every phase at every concurrency, ``--rounds`` times, alternating the order (noise then hits all alike)."""
    registry_pids = [s.process.pid for s in servers.values() if s.process is not None]
    results: list[Phase] = []
    for concurrency in args.concurrency:
        for round_ in range(args.rounds):
            for label, name, paths in phases if round_ % 2 == 0 else phases[::-1]:
                print(f"{label} at c={concurrency}, round {round_ + 1} ...", flush=True)
                process = servers[name].process
                asked = [process.pid] if process is not None else []
                before = _cpu_seconds(asked), _cpu_seconds(registry_pids), _cpu_seconds(pg_pids)
                load = await _measure(servers[name], tokens[name], paths, concurrency, args)
                after = _cpu_seconds(asked), _cpu_seconds(registry_pids), _cpu_seconds(pg_pids)
                per_request = [round((a - b) * 1000 / load.sent, 3) for a, b in zip(after, before, strict=True)]
                results.append(
                    Phase(
                        phase=label,
                        server=name,
                        concurrency=concurrency,
                        load=load,
                        asked_cpu_ms=per_request[0],
                        registry_cpu_ms=per_request[1],
                        pg_cpu_ms=per_request[2],
                    )
                )
    return results


async def run(args: argparse.Namespace) -> list[Phase]:
    """Start the registries, load the records, measure every phase."""
    local, one_hop, two_hops = ([make_ihi() for _ in range(args.ihis)] for _ in range(3))
    cluster = TestCluster()
    work = Path(tempfile.mkdtemp(prefix="ief-bench-fed-"))
    try:
        cluster.start()
        with _exported(args.ref) as ref_source:
            sources = {"A": ROOT, "B": ROOT, "C": ROOT, **({"ref": ref_source} if ref_source else {})}
            servers = {
                name: Server(name, source, await cluster.empty_database(f"bench_fed_{name.lower()}"))
                for name, source in sources.items()
            }
            async with _running(list(servers.values()), work):
                print("setting up trust and records ...", flush=True)
                tokens = await _set_up(servers, local, one_hop, two_hops)
                phases = [
                    *(
                        [(f"local ({args.ref})", "ref", [f"/registry/records/{i}" for i in local])]
                        if ref_source
                        else []
                    ),
                    ("local", "A", [f"/registry/records/{i}" for i in local]),
                    ("local+follow", "A", [f"/registry/records/{i}?follow=true" for i in local]),
                    ("1 hop", "A", [f"/registry/records/{i}?follow=true" for i in one_hop]),
                    ("2 hops", "A", [f"/registry/records/{i}?follow=true" for i in two_hops]),
                ]
                postmaster = cluster.cluster.postmaster_pid()
                return await _rounds(args, servers, tokens, phases, [postmaster] if postmaster else [])
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def medians(results: list[Phase]) -> dict[tuple[str, int], LoadResult]:
    """Per phase and concurrency, the median of each measure over the rounds (errors summed)."""
    grouped: dict[tuple[str, int], list[LoadResult]] = {}
    for p in results:
        grouped.setdefault((p.phase, p.concurrency), []).append(p.load)
    return {
        key: LoadResult(
            sent=sum(r.sent for r in loads),
            requests=sum(r.requests for r in loads),
            errors=sum(r.errors for r in loads),
            seconds=sum(r.seconds for r in loads),
            rate=statistics.median(r.rate for r in loads),
            p50_ms=statistics.median(r.p50_ms for r in loads),
            p99_ms=statistics.median(r.p99_ms for r in loads),
            mean_ms=statistics.median(r.mean_ms for r in loads),
        )
        for key, loads in grouped.items()
    }


def table(results: list[Phase]) -> str:
    """Medians over the rounds per phase and concurrency, with ratios to ``local``."""
    by_phase = medians(results)
    cpu: dict[tuple[str, int], tuple[float, float, float]] = {}
    for key in by_phase:
        rounds = [p for p in results if (p.phase, p.concurrency) == key]
        cpu[key] = (
            statistics.median(p.asked_cpu_ms for p in rounds),
            statistics.median(p.registry_cpu_ms for p in rounds),
            statistics.median(p.pg_cpu_ms for p in rounds),
        )
    rows = [(
        "phase", "c", "req/s", "p50 ms", "p99 ms", "errors", "p50 / local", "req/s / local",
        "asked cpu ms/req", "registries cpu ms/req", "pg cpu ms/req",
    )]  # fmt: skip
    for (phase, concurrency), load in sorted(by_phase.items(), key=lambda item: item[0][1]):
        local = by_phase[("local", concurrency)]
        asked_cpu, registry_cpu, pg_cpu = cpu[(phase, concurrency)]
        rows.append((
            phase, str(concurrency), f"{load.rate:,.0f}", f"{load.p50_ms:.2f}", f"{load.p99_ms:.2f}",
            str(load.errors), f"{load.p50_ms / local.p50_ms:.2f}", f"{load.rate / local.rate:.2f}",
            f"{asked_cpu:.2f}", f"{registry_cpu:.2f}", f"{pg_cpu:.2f}",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench.federation``."""
    found = argparse.ArgumentParser(prog="python -m tests.bench.federation", description=__doc__.split("\n\n")[0])
    found.add_argument("--ihis", type=int, default=2000, help="IHIs per kind of look-up (default 2000)")
    found.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    found.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default 1)")
    found.add_argument("--rounds", type=int, default=3, help="rounds of every phase, order alternating (default 3)")
    found.add_argument(
        "--concurrency", type=lambda text: [int(x) for x in text.split(",")], default=[1, 8],
        help="connections, comma-separated (default 1,8)",
    )  # fmt: skip
    found.add_argument("--ref", help="also run the plain look-up on a server of this git revision (or source folder)")
    found.add_argument("--json", type=Path, help="write every measurement to this file")
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run (or, as ``loadgen``, serve as the load generator)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loadgen"]:
        _loadgen()
        return
    args = parser().parse_args(argv)
    results = asyncio.run(run(args))
    print()
    print(table(results))
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")


if __name__ == "__main__":
    main()
