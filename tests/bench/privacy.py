"""``python -m tests.bench.privacy``: what the privacy decision point costs, as ratios measured in one run.

1. **Look-ups with Consents**: two servers of this checkout, each on its own database holding the
   same ``--patients`` patients (one active record each); on one database every patient also holds
   a Consent (``--opted-out`` of them an opt-out, the others a consent with a restriction by
   purpose), on the other none. ``GET /registry/records/{ihi}`` of a random sample of the patients
   at ``--concurrency`` for ``--duration`` seconds, ``--rounds`` times, alternating which database
   goes first; the result is the rate with Consents ÷ the rate without (medians of the rounds), and
   the same for the server's CPU per look-up (less sensitive to what else the machine runs).
2. **Broker added latency**: the broker's ImagingStudy search at c=1 through ``--gateways`` gateways
   answering in ``--delay-ms``, by the server of ``--ref`` (today's, without the decision point;
   from a temporary git worktree, on a database it migrates itself) and by this checkout (the
   decision point on, every patient holding a Consent that restricts research only, IEF-Requester
   signed for every gateway), alternating, ``--rounds`` times; the result is the checkout's added
   p99 (latency minus the gateways' delay) ÷ the reference's.

Every answer is checked (200; the broker's with every gateway's studies and no outcome entry). The
load generators are separate processes (``tests.bench.loadgen``, the broker bench's ``load``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec

from schemas.privacy import ConsentRules, Provision, policy_encoder
from tests.bench.broker import _phase, _register, _run_load
from tests.bench.run import _run_loadgen
from tests.bench.scenarios import Scenario, ihi
from tests.bench.servers import ROOT, Build, ServerProcess, checkout, git_describe
from tests.factories import LOOPBACK_NETWORKS, make_service_id
from tests.pg import TestCluster
from tests.scale.fleet import log_events

__all__ = ("main", "parser")

_SETTINGS = {
    "IEF_LOG_ACCESS": "false", "IEF_LOG_LEVEL": "warning", "IEF_AUTH_RATE_PER_SECOND": "1000000",
    "IEF_AUTH_RATE_BURST": "1000000",
    "IEF_OUTBOUND_ALLOWED_NETWORKS": LOOPBACK_NETWORKS,  # the gateways run on loopback (an older build ignores it)
}  # fmt: skip
_OPT_OUT = {"resourceType": "Consent", "status": "active", "provision": {"type": "deny"}}
_RESTRICTION = {
    "resourceType": "Consent",
    "status": "active",
    "provision": {"type": "permit", "provision": [{"type": "deny", "purpose": [{"code": "HRESCH"}]}]},
}


async def _load_patients(database_url: str, service_id: str, count: int) -> None:
    """One active record at ``service_id`` for each of the first ``count`` benchmark IHIs."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO services (service_id, kind, name, base_url, search_style, status) "
            "VALUES ($1, 'gateway', 'Bench gateway', 'https://gateway.bench/fhir', 'ief', 'enabled')",
            service_id,
        )
        await conn.execute(
            "INSERT INTO records (ihi, service_id, status, type) "
            "SELECT i, $2, 'active', 'record' FROM unnest($1::bpchar[]) AS i",
            [ihi(n) for n in range(count)], service_id,
        )  # fmt: skip
        await conn.execute("ANALYZE records")
    finally:
        await conn.close()


async def _load_consents(database_url: str, count: int, opted_out: float, *, seed: int = 7) -> int:
    """A Consent for each of the first ``count`` IHIs: ``opted_out`` of them opt-outs, the rest restrictions
    by purpose (research). Returns how many opted out. The trigger keeps each patient's compact policy."""
    chooser = random.Random(seed)
    deny = ConsentRules(consent_id="", permit=False)
    restrict = ConsentRules(consent_id="", permit=True, provisions=(Provision(permit=False, purposes=("HRESCH",)),))
    kinds = [chooser.random() < opted_out for _ in range(count)]
    conn = await asyncpg.connect(database_url)
    try:
        chunk = 10_000
        for first in range(0, count, chunk):
            numbers = range(first, min(first + chunk, count))
            await conn.execute(
                "INSERT INTO consents (ihi, status, resource, rules, actor) "
                "SELECT i, 'active', r::jsonb, p::jsonb, 'bench' FROM unnest($1::bpchar[], $2::text[], $3::text[]) "
                "AS c(i, r, p)",
                [ihi(n) for n in numbers],
                [msgspec.json.encode(_OPT_OUT if kinds[n] else _RESTRICTION).decode() for n in numbers],
                [policy_encoder.encode(deny if kinds[n] else restrict).decode() for n in numbers],
            )  # fmt: skip
        await conn.execute("ANALYZE patient_policies")
    finally:
        await conn.close()
    return sum(kinds)


@contextlib.contextmanager
def _servers(build: Build, urls: list[str], work: Path, **settings: str) -> Iterator[list[ServerProcess]]:
    started = [
        ServerProcess(
            build, python=sys.executable, database_url=url, workers=1, work=work, settings={**_SETTINGS, **settings}
        )
        for url in urls
    ]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def _token(server: ServerProcess, scopes: str) -> str:
    done = subprocess.run(
        [server.python, "-m", "registry", "token", "--scopes", scopes, "--lifetime", "43200"],
        cwd=server.build.source, env=server.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


async def lookups(args: argparse.Namespace, cluster: TestCluster, work: Path) -> dict[str, Any]:
    """Part 1: the look-up rate with every patient holding a Consent ÷ the rate with none."""
    build = Build(label="checkout", source=ROOT, commit=git_describe(ROOT))
    plain, consented = await cluster.new_database(), await cluster.new_database()
    for url in (plain, consented):
        await _load_patients(url, make_service_id(), args.patients)
    began = time.monotonic()
    opted_out = await _load_consents(consented, args.patients, args.opted_out)
    print(f"loaded {args.patients} Consents ({opted_out} opt-outs) in {time.monotonic() - began:.0f} s", flush=True)
    rates: dict[str, list[float]] = {"none": [], "consents": []}
    p99: dict[str, list[float]] = {"none": [], "consents": []}
    cpu_ms: dict[str, list[float]] = {"none": [], "consents": []}
    with _servers(build, [plain, consented], work) as (without, with_consents):
        targets = {"none": without, "consents": with_consents}
        headers = {
            name: {"Authorization": f"Bearer {_token(server, 'system/Basic.rs')}"} for name, server in targets.items()
        }
        for round_number in range(args.rounds):
            order = ["none", "consents"] if round_number % 2 == 0 else ["consents", "none"]
            for name in order:
                scenario = Scenario(
                    name=f"GET {name}", requests="get_records",
                    params={"start": 0, "stop": args.patients, "sample": min(args.patients, 20_000),
                            "seed": round_number},
                    headers=headers[name], concurrency=args.concurrency, duration=args.duration, warmup=2.0,
                )  # fmt: skip
                before = targets[name].tree.cpu_seconds()
                result = await _run_loadgen(targets[name].port, scenario)
                used = targets[name].tree.cpu_seconds() - before
                assert result.errors == 0, result.statuses
                rates[name].append(result.rate)
                p99[name].append(result.p99_ms)
                cpu_ms[name].append(used / (result.rate * (result.seconds + 2.0)) * 1000)  # the warm-up too
                print(
                    f"  round {round_number + 1} {name:8}: {result.rate:8.1f} req/s, p99 {result.p99_ms:.1f} ms, "
                    f"server CPU {cpu_ms[name][-1]:.2f} ms per look-up",
                    flush=True,
                )
    return {
        "patients": args.patients, "opted_out": opted_out, "rates": rates, "p99_ms": p99, "cpu_ms": cpu_ms,
        "ratio": statistics.median(rates["consents"]) / statistics.median(rates["none"]),
        "cpu_ratio": statistics.median(cpu_ms["none"]) / statistics.median(cpu_ms["consents"]),
    }  # fmt: skip


@contextlib.contextmanager
def _gateways(count: int, delay: float) -> Iterator[tuple[subprocess.Popen[bytes], list[dict[str, Any]]]]:
    command = [sys.executable, "-m", "tests.bench.broker", "gateways", str(count), str(delay)]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        yield process, msgspec.json.decode(process.stdout.readline())
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(timeout=20)


async def broker(args: argparse.Namespace, cluster: TestCluster, work: Path) -> dict[str, Any]:
    """Part 2: the broker's added latency p99 with the decision point on ÷ today's (``--ref``)."""
    delay = args.delay_ms / 1000
    patients = [ihi(n) for n in range(args.broker_patients)]
    with (
        _gateways(args.gateways, delay) as (_, listing),
        checkout(args.ref) as reference,
    ):
        ref_url = await cluster.empty_database("ief_bench_ref")
        this_url = await cluster.new_database()
        with (
            _servers(reference, [ref_url], work, IEF_LOG_LEVEL="info") as (ref_server,),
            _servers(Build("checkout", ROOT, git_describe(ROOT)), [this_url], work, IEF_LOG_LEVEL="info") as (
                this_server,
            ),
        ):
            await _load_consents(this_url, args.broker_patients, 0.0)
            specs = {}
            for name, server, url in (("ref", ref_server, ref_url), ("checkout", this_server, this_url)):
                ids = await _register(url, listing, work)
                items = [{"ihi": p, "serviceId": sid} for p in patients for sid in ids]
                admin = _token(server, "admin")
                async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
                    loaded = await http.post(
                        "/registry/records:batch", json=items, headers={"Authorization": f"Bearer {admin}"}
                    )
                    assert loaded.status_code == 200, loaded.text
                specs[name] = {
                    "path": "/fhir/ImagingStudy", "patients": patients, "expected": args.gateways + 1,
                    "targets": [(server.base_url, _token(server, "system/ImagingStudy.rs"))],
                }  # fmt: skip
            added: dict[str, list[float]] = {"ref": [], "checkout": []}
            servers = {"ref": ref_server, "checkout": this_server}
            for round_number in range(args.rounds):
                order = ["ref", "checkout"] if round_number % 2 == 0 else ["checkout", "ref"]
                for name in order:
                    logged = len(log_events(servers[name].log, "discovery_search"))
                    cpu_before = servers[name].tree.cpu_seconds()
                    measured = await asyncio.to_thread(
                        _run_load, {**specs[name], "concurrency": 1, "requests": args.broker_requests, "warmup": 30}
                    )
                    server_cpu_ms = (servers[name].tree.cpu_seconds() - cpu_before) * 1000 / (args.broker_requests + 30)
                    lines = log_events(servers[name].log, "discovery_search")[logged + 30 :]
                    parts = [
                        statistics.median(float(str(line[part])) for line in lines) if lines else 0.0
                        for part in ("locate_ms", "gateways_ms", "merge_ms")
                    ]
                    phase = _phase(name, 1, measured, delay, (0.0, 0.0))
                    assert phase.errors == 0, f"{name}: {phase.errors} searches were not as expected"
                    added[name].append(phase.added_p99_ms)
                    print(
                        f"  round {round_number + 1} {name:8}: added p50 {phase.added_p50_ms:.1f} ms, "
                        f"added p99 {phase.added_p99_ms:.1f} ms; median locate / ask gateways / merge "
                        f"{parts[0]:.1f} / {parts[1]:.1f} / {parts[2]:.1f} ms; server CPU per search "
                        f"{server_cpu_ms:.2f} ms",
                        flush=True,
                    )
    return {
        "ref": args.ref, "added_p99_ms": added,
        "ratio": statistics.median(added["checkout"]) / statistics.median(added["ref"]),
    }  # fmt: skip


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[TestCluster]:
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.without_durability()
        await cluster.make_template()
        yield cluster
    finally:
        cluster.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both parts, in one run, on one throwaway cluster."""
    results: dict[str, Any] = {}
    async with _cluster() as cluster:
        with tempfile.TemporaryDirectory(prefix="ief-bench-privacy-") as tmp:
            if not args.skip_lookups:
                print("look-ups: without Consents vs every patient holding one", flush=True)
                results["lookups"] = await lookups(args, cluster, Path(tmp))
            if not args.skip_broker:
                print(f"broker: {args.ref} vs this checkout, c=1", flush=True)
                results["broker"] = await broker(args, cluster, Path(tmp))
    return results


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m tests.bench.privacy``."""
    found = argparse.ArgumentParser(prog="python -m tests.bench.privacy", description=__doc__.split("\n")[0])
    found.add_argument("--patients", type=int, default=100_000, help="patients (each with a record and a Consent)")
    found.add_argument("--opted-out", type=float, default=0.10, help="share of the Consents that opt out")
    found.add_argument("--concurrency", type=int, default=16)
    found.add_argument("--duration", type=float, default=15.0, help="measured seconds per look-up phase")
    found.add_argument("--rounds", type=int, default=2)
    found.add_argument("--ref", default="main", help="the git revision of today's broker (default main)")
    found.add_argument("--gateways", type=int, default=10)
    found.add_argument("--delay-ms", type=float, default=50.0)
    found.add_argument("--broker-patients", type=int, default=300)
    found.add_argument("--broker-requests", type=int, default=300)
    found.add_argument("--skip-lookups", action="store_true")
    found.add_argument("--skip-broker", action="store_true")
    found.add_argument("--json", type=Path, help="also write the numbers to this file")
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print both ratios."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("IEF_LOG_LEVEL", "warning")
    results = asyncio.run(run(args))
    if "lookups" in results:
        print(f"look-up rate with {args.patients} Consents ÷ without: {results['lookups']['ratio']:.3f}")
        print(
            "server CPU per look-up without ÷ with Consents (the rate one core sustains, as a ratio): "
            f"{results['lookups']['cpu_ratio']:.3f}"
        )
    if "broker" in results:
        print(f"broker added latency p99, decision point on ÷ {args.ref}: {results['broker']['ratio']:.3f}")
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
