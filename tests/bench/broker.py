"""``python -m tests.bench.broker``: what the broker adds over its gateways, and how many searches it serves.

One run starts a throwaway PostgreSQL cluster, ``--gateways`` gateways that each answer every
ImagingStudy search after ``--delay-ms`` (one process, a lean asyncio server answering the
reference gateway's fixture Bundle: two studies per patient, one of them held by every gateway),
and the registry server (``python -m registry serve``, one worker, the broker's default bounds).
It registers the gateways as members with bearer token files and ``--patients`` patients each with
a record at every gateway (one batch), then drives ImagingStudy searches from a separate load
generator process (``python -m tests.bench.broker load``), each request for another patient, so
no two concurrent searches share a fan-out:

- ``gateway`` c=1: one gateway asked directly (the floor: its delay, loopback and the client);
- ``fan-out`` c=1: every gateway asked at once directly, with httpx, by the load generator (what
  the HTTP client stack alone costs a ten-way fan-out, without the broker);
- ``fan-out/hc`` c=1: the same with httpcore's connection pools used directly (as the broker does);
- ``broker`` c=1 and c=``--concurrency``: consumer searches through the broker.

It prints, per phase, requests, rate, latency p50/p99, the broker's added latency (latency minus
the gateways' delay) p50/p99, the server's and gateways' CPU use, the load generator's CPU per
search (for the direct phases, the HTTP client's cost), and from the server's own
``discovery_search`` log lines the median parts of a fan-out (locate, ask every gateway, merge).
``--json FILE`` keeps the numbers; ``--profile FILE`` runs the server under cProfile (read it with
``pstats``). Every broker answer is checked: 200, ``gateways + 1`` merged studies, no outcome entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import httpcore
import httpx
import msgspec
import psutil

from tests.factories import IHI_SYSTEM, LOOPBACK_NETWORKS, make_ihi, make_service_id
from tests.gateway import ReferenceGateway
from tests.pg import TestCluster
from tests.server import free_port

__all__ = ("Phase", "main", "parser", "report", "run")

ROOT = Path(__file__).resolve().parents[2]
_PLACEHOLDER_IHI = "8003608166690503"


class Phase(msgspec.Struct, kw_only=True):
    """What one load phase measured."""

    name: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    added_p50_ms: float
    added_p99_ms: float
    server_cpu: float = 0.0
    """Cores the registry server used on average during the phase."""
    gateways_cpu: float = 0.0
    """Cores the gateways' process used on average during the phase."""
    client_cpu_ms: float = 0.0
    """The load generator's CPU per search (for the direct phases: what the HTTP client costs)."""
    locate_ms: float = 0.0
    """Median time the server spent locating the patient's gateways (its ``discovery_search`` log lines)."""
    gateways_ms: float = 0.0
    """Median time from asking the first gateway to having every answer."""
    merge_ms: float = 0.0
    """Median time merging and checking the answers."""


# --- the gateways: one process, a lean asyncio server per gateway -------------------------------


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/fhir+json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


class _LeanGateway(asyncio.Protocol):
    """Answers each request (keep-alive, in order) after ``delay`` with the Bundle for the patient asked for."""

    def __init__(self, template: bytes, token: str, delay: float) -> None:
        self._template = template
        self._authorization = f"authorization: bearer {token}".encode()
        self._delay = delay
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._refused = _response("401 Unauthorized", b'{"resourceType":"OperationOutcome","issue":[]}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        loop = asyncio.get_running_loop()
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode("latin-1")
            ihi = dict(parse_qsl(urlsplit(target).query)).get("patient.identifier", "").rpartition("|")[2]
            if self._authorization not in head.lower() or len(ihi) != 16:
                answer = self._refused
            else:
                answer = _response("200 OK", self._template.replace(_PLACEHOLDER_IHI.encode(), ihi.encode()))
            loop.call_later(self._delay, self._send, answer)

    def _send(self, answer: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)


def _templates(count: int) -> list[bytes]:
    """Each gateway's answer for the placeholder patient: its own study and the one every gateway holds."""
    shared = "2.25.1000"
    answers = []
    for number in range(count):
        gateway = ReferenceGateway(base_url="http://gateway.invalid/fhir")
        own = gateway.study(_PLACEHOLDER_IHI, f"2.25.{2000 + number}", started=f"20{10 + number}-06-01")
        common = gateway.study(_PLACEHOLDER_IHI, shared, started="2025-01-01")
        answers.append(msgspec.json.encode(gateway.searchset("ImagingStudy", [own, common])))
    return answers


async def _serve_gateways(count: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    listing = []
    for template in _templates(count):
        token = make_service_id()
        server = await loop.create_server(functools.partial(_LeanGateway, template, token, delay), "127.0.0.1", 0)
        listing.append({"port": server.sockets[0].getsockname()[1], "token": token})
    print(msgspec.json.encode(listing).decode(), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin


# --- the load generator: its own process -----------------------------------------------------------


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``requests`` searches at ``concurrency``, each for the next patient and sent to every one of
    ``targets`` (base URL, token) at once; latencies (of the slowest) after ``warmup``, and this process's
    CPU seconds. ``client``: ``httpx`` (an ``AsyncClient``), or ``httpcore`` (a connection pool per
    target used directly, the URL's fixed parts and the headers prepared once, as the broker does)."""
    concurrency, total, warmup = spec["concurrency"], spec["requests"], spec["warmup"]
    patients, expected = spec["patients"], spec.get("expected")
    connections = concurrency * len(spec["targets"])
    latencies: list[float] = []
    errors = 0
    numbers = itertools.count()
    send, close = _client(spec, connections)
    try:

        async def worker() -> None:
            nonlocal errors
            while (number := next(numbers)) < total + warmup:
                ihi = patients[number % len(patients)]
                started = time.perf_counter()
                answers = await asyncio.gather(*(send(index, ihi) for index in range(len(spec["targets"]))))
                elapsed = time.perf_counter() - started
                if number >= warmup:
                    latencies.append(elapsed)
                    errors += not all(_as_expected(status, body, expected) for status, body in answers)

        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    finally:
        await close()
    return {"latencies": latencies, "errors": errors, "seconds": seconds, "cpu": cpu / (total + warmup)}


Send = Callable[[int, str], Awaitable[tuple[int, bytes]]]


def _client(spec: dict[str, Any], connections: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """A function sending the search for a patient to target N (status and body back), and a closer."""
    targets = spec["targets"]
    if spec.get("client", "httpx") == "httpx":
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        http = httpx.AsyncClient(limits=limits, timeout=60)

        async def send_httpx(index: int, ihi: str) -> tuple[int, bytes]:
            base_url, token = targets[index]
            params = {"patient.identifier": f"{IHI_SYSTEM}|{ihi}"}
            response = await http.get(
                f"{base_url}{spec['path']}", params=params, headers={"Authorization": f"Bearer {token}"}
            )
            return response.status_code, response.content

        return send_httpx, http.aclose
    per_target = max(1, connections // len(targets))
    pools: list[httpcore.AsyncConnectionPool] = []
    prepared = []
    for base_url, token in targets:
        url = httpx.URL(base_url)
        pools.append(httpcore.AsyncConnectionPool(max_connections=per_target, max_keepalive_connections=per_target))
        headers = [(b"Host", url.netloc), (b"Authorization", f"Bearer {token}".encode())]
        prepared.append(
            (url.raw_scheme, url.raw_host, url.port, url.raw_path.rstrip(b"/") + spec["path"].encode(), headers)
        )

    async def send_httpcore(index: int, ihi: str) -> tuple[int, bytes]:
        scheme, host, port, path, headers = prepared[index]
        query = urlencode({"patient.identifier": f"{IHI_SYSTEM}|{ihi}"}).encode()
        url = httpcore.URL(scheme=scheme, host=host, port=port, target=path + b"?" + query)
        response = await pools[index].request(b"GET", url, headers=headers, extensions={"timeout": {"pool": 60.0}})
        return response.status, response.content

    async def close() -> None:
        for pool in pools:
            await pool.aclose()

    return send_httpcore, close


def _as_expected(status: int, body: bytes, matches: int | None) -> bool:
    if status != 200:
        return False
    if matches is None:
        return True
    entries = msgspec.json.decode(body).get("entry", [])
    return len(entries) == matches and all(e["search"]["mode"] == "match" for e in entries)


def _run_load(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.broker", "load"],
        input=msgspec.json.encode(spec),
        capture_output=True,
        cwd=ROOT,
        check=True,
    )
    return msgspec.json.decode(done.stdout)  # type: ignore[no-any-return]


# --- the run ------------------------------------------------------------------------------------------


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _phase(name: str, concurrency: int, measured: dict[str, Any], delay: float, cpu: tuple[float, float]) -> Phase:
    latencies = [value * 1000 for value in measured["latencies"]]
    p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
    seconds = measured["seconds"]
    return Phase(
        name=name, concurrency=concurrency, requests=len(latencies), errors=measured["errors"], seconds=seconds,
        rate=len(latencies) / seconds, p50_ms=p50, p99_ms=p99, added_p50_ms=p50 - delay * 1000,
        added_p99_ms=p99 - delay * 1000, server_cpu=cpu[0] / seconds, gateways_cpu=cpu[1] / seconds,
        client_cpu_ms=measured["cpu"] * 1000,
    )  # fmt: skip


def _searches_logged(log: Path) -> list[dict[str, Any]]:
    """The server's ``discovery_search`` log lines so far (one per fan-out)."""
    found = []
    for line in log.read_bytes().splitlines():
        if b'"discovery_search"' in line:
            found.append(msgspec.json.decode(line))
    return found


def _cpu(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = member.cpu_times()
            total += float(times.user + times.system)
    return total


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], **options: Any) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, **options)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "registry", *args], env=env, cwd=ROOT, capture_output=True, check=True)
    return done.stdout.decode().strip().splitlines()[-1]


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[str]:
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.make_template()
        yield await cluster.new_database()
    finally:
        cluster.stop()


async def _register(database_url: str, gateways: list[dict[str, Any]], folder: Path) -> list[str]:
    """Add the gateways as members with bearer token files; return their service IDs."""
    ids = []
    conn = await asyncpg.connect(database_url)
    try:
        for number, gateway in enumerate(gateways):
            service_id = make_service_id()
            token_file = folder / f"{service_id}.token"
            token_file.write_text(gateway["token"], encoding="utf-8")
            await conn.execute(
                "INSERT INTO services (service_id, kind, name, base_url, search_style, status, bearer_token_file) "
                "VALUES ($1, 'gateway', $2, $3, 'ief', 'enabled', $4)",
                service_id, f"Bench gateway {number}", f"http://127.0.0.1:{gateway['port']}/fhir", str(token_file),
            )  # fmt: skip
            ids.append(service_id)
    finally:
        await conn.close()
    return ids


async def _wait_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError("the server exited during start-up")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready")


async def run(args: argparse.Namespace) -> list[Phase]:
    """Start the cluster, the gateways and the server, load the patients, measure every phase."""
    delay = args.delay_ms / 1000
    async with _cluster() as database_url:
        with tempfile.TemporaryDirectory(prefix="ief-bench-broker-") as tmp:
            folder = Path(tmp)
            port = free_port()
            env = {
                **os.environ, "IEF_DATABASE_URL": database_url, "IEF_HTTP_PORT": str(port),
                "IEF_DATA_DIR": str(folder / "data"), "IEF_LOG_ACCESS": "false", "IEF_LOG_FORMAT": "json",
                "IEF_AUTH_RATE_PER_SECOND": "1000000", "IEF_AUTH_RATE_BURST": "1000000",
                "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,  # the gateways run on loopback
            }  # fmt: skip
            gateway_command = [sys.executable, "-m", "tests.bench.broker", "gateways", str(args.gateways), str(delay)]
            with _process(gateway_command, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as gateways:
                assert gateways.stdout is not None
                listing = msgspec.json.decode(gateways.stdout.readline())
                service_ids = await _register(database_url, listing, folder)
                profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
                server_log = folder / "server.log"
                with (
                    server_log.open("wb") as log,
                    _process([sys.executable, *profile, "-m", "registry", "serve"], env, stderr=log) as server,
                ):
                    base_url = f"http://127.0.0.1:{port}"
                    await _wait_ready(base_url, server)
                    admin = _cli(env, "token", "--scopes", "admin", "--lifetime", "43200")
                    consumer = _cli(env, "token", "--scopes", "system/ImagingStudy.rs", "--lifetime", "43200")
                    patients = [make_ihi() for _ in range(args.patients)]
                    items = [{"ihi": ihi, "serviceId": sid} for ihi in patients for sid in service_ids]
                    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
                        loaded = await http.post(
                            "/registry/records:batch", json=items, headers={"Authorization": f"Bearer {admin}"}
                        )
                        assert loaded.status_code == 200, loaded.text
                    phases = []
                    gateway_urls = [(f"http://127.0.0.1:{g['port']}", g["token"]) for g in listing]
                    common: dict[str, Any] = {"path": "/fhir/ImagingStudy", "patients": patients}
                    direct = {**common, "targets": gateway_urls[:1]}
                    fan_out = {**common, "targets": gateway_urls}
                    fan_out_core = {**fan_out, "client": "httpcore"}
                    brokered = {**common, "targets": [(base_url, consumer)], "expected": args.gateways + 1}
                    plan = [
                        ("gateway", direct, 1, args.requests_c1),
                        ("fan-out", fan_out, 1, args.requests_c1),
                        ("fan-out/hc", fan_out_core, 1, args.requests_c1),
                        ("broker", brokered, 1, args.requests_c1),
                        ("broker", brokered, args.concurrency, args.requests_cn),
                    ]
                    for name, spec, concurrency, requests in plan:
                        before = (_cpu(server.pid), _cpu(gateways.pid))
                        logged = len(_searches_logged(server_log))
                        measured = _run_load({**spec, "concurrency": concurrency, "requests": requests, "warmup": 30})
                        cpu = (_cpu(server.pid) - before[0], _cpu(gateways.pid) - before[1])
                        phase = _phase(name, concurrency, measured, delay, cpu)
                        lines = _searches_logged(server_log)[logged + 30 :]  # the phase's, after its warm-up
                        if lines:
                            phase.locate_ms, phase.gateways_ms, phase.merge_ms = (
                                statistics.median(line[part] for line in lines)
                                for part in ("locate_ms", "gateways_ms", "merge_ms")
                            )
                        phases.append(phase)
                assert gateways.stdin is not None
                gateways.stdin.close()
    return phases


def report(phases: list[Phase], args: argparse.Namespace) -> None:
    """Print the phases' table and the median parts of a fan-out."""
    print(f"broker fan-out: {args.gateways} gateways answering in {args.delay_ms} ms, {args.patients} patients")
    print(
        f"{'phase':<10} {'c':>3} {'requests':>8} {'errors':>6} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'added p50':>10} {'added p99':>10} {'server CPU':>10} {'CPU/search':>10} {'gateways CPU':>12} "
        f"{'client CPU/search':>17}"
    )
    for p in phases:
        print(
            f"{p.name:<10} {p.concurrency:>3} {p.requests:>8} {p.errors:>6} {p.rate:>8.1f} {p.p50_ms:>8.1f} "
            f"{p.p99_ms:>8.1f} {p.added_p50_ms:>10.1f} {p.added_p99_ms:>10.1f} {p.server_cpu:>10.2f} "
            f"{p.server_cpu / p.rate * 1000:>8.1f}ms {p.gateways_cpu:>12.2f} {p.client_cpu_ms:>15.1f}ms"
        )
    print("median parts of a fan-out (server log): locate / ask every gateway / merge and check, ms")
    for p in phases:
        if p.name == "broker":
            print(f"  broker c={p.concurrency}: {p.locate_ms:.1f} / {p.gateways_ms:.1f} / {p.merge_ms:.1f}")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench.broker``."""
    found = argparse.ArgumentParser(prog="python -m tests.bench.broker", description=__doc__.split("\n")[0])
    found.add_argument("--gateways", type=int, default=10)
    found.add_argument("--delay-ms", type=float, default=50.0)
    found.add_argument("--patients", type=int, default=1000)
    found.add_argument("--concurrency", type=int, default=32)
    found.add_argument("--requests-c1", type=int, default=300)
    found.add_argument("--requests-cn", type=int, default=2000)
    found.add_argument("--json", type=Path, help="also write the numbers to this file")
    found.add_argument("--profile", type=Path, help="run the server under cProfile, writing its stats to this file")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, internally, the gateways or a load phase)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gateways"]:
        asyncio.run(_serve_gateways(int(argv[1]), float(argv[2])))
        return 0
    if argv[:1] == ["load"]:
        result = asyncio.run(_load(msgspec.json.decode(sys.stdin.buffer.read())))
        sys.stdout.buffer.write(msgspec.json.encode(result))
        return 0
    args = parser().parse_args(argv)
    phases = asyncio.run(run(args))
    report(phases, args)
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(phases)))
    return 0 if all(p.errors == 0 for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
