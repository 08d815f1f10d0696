"""``python -m tests.bench --all``: every benchmark scenario with small sizes, and one summary table.

The scenarios run one after another in this process, each through its own module's runner
(the registry matrix of ``tests.bench.run`` with the bare reference app, then
``tests.bench.federation``, ``tests.bench.broker`` and ``tests.bench.notifications``), each
printing its own detailed table as it finishes. At the end one table sums them up: per row the
scenario, its throughput, p50 and p99, its ratios (to the bare app, to a local look-up, to one
gateway, to registrations without subscriptions) and the peak resident memory of a registry
server process during it. ``--only NAME,...`` narrows the run; ``--ref``/``--ref-patch`` add a
build to the registry matrix (the comparison with the build before security). Nothing here
passes or fails: a scenario that breaks is reported in the table and the others still run.

A scenario is an entry of ``SCENARIOS``: a name and an async runner taking the ``Options`` and
returning ``SummaryRow`` values. Adding one (``tests.bench.scaleout``, say) is one more entry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psutil

from tests.bench import broker, federation, notifications, scaleout
from tests.bench import run as matrix
from tests.pg import TestCluster

__all__ = ("SCENARIOS", "Options", "SummaryRow", "main", "summary_table")


class Options(msgspec.Struct, kw_only=True):
    """What the scenarios are told: the registry matrix's comparison build, if any."""

    ref: str | None = None
    ref_patch: Path | None = None


class SummaryRow(msgspec.Struct, kw_only=True):
    """One line of the summary: a scenario's phase and what it measured."""

    scenario: str
    throughput: float
    unit: str = "req/s"
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    ratios: dict[str, float] = msgspec.field(default_factory=dict)
    """This row's figure divided by another's, named by what it is compared with (``÷ bare``)."""
    peak_rss_mb: float | None = None
    """Peak resident memory of a registry server process (filled in by the suite when the runner leaves it out)."""


class Scenario(msgspec.Struct, frozen=True):
    """A named runner of the suite."""

    name: str
    runner: Callable[[Options], Awaitable[list[SummaryRow]]]


class SuiteResult(msgspec.Struct, kw_only=True):
    """Everything the suite printed (``--json``)."""

    rows: list[SummaryRow]
    seconds: dict[str, float]


# --- the scenarios ---------------------------------------------------------------------------------


async def _registry(options: Options) -> list[SummaryRow]:
    """The registry matrix: bulk load, PUT and GET at c=32 and c=1, against the bare app in alternating rounds."""
    argv = ["--records", "100000", "--duration", "6", "--rounds", "2", "--bare"]
    if options.ref:
        argv += ["--ref", options.ref]
    if options.ref_patch:
        argv += ["--ref-patch", str(options.ref_patch)]
    result = await matrix.run(matrix.parser().parse_args(argv))
    print(matrix.table(result), flush=True)
    return registry_rows(result)


def registry_rows(result: matrix.BenchResult) -> list[SummaryRow]:
    """The checkout's phases (medians over rounds) with the median ratio of its rate to every other build's."""
    rss = next((b.peak_rss_mb for b in result.builds if b.label == matrix.CHECKOUT), None)
    rows = []
    for name in dict.fromkeys(p.phase for p in result.phases):
        mine = [p for p in result.phases if p.phase == name and p.build == matrix.CHECKOUT]
        if not mine:
            continue
        bulk = mine[0].load.items != mine[0].load.requests
        rows.append(
            SummaryRow(
                scenario=f"registry {name}",
                throughput=statistics.median(p.load.item_rate if bulk else p.load.rate for p in mine),
                unit="records/s" if bulk else "req/s",
                p50_ms=statistics.median(p.load.p50_ms for p in mine),
                p99_ms=statistics.median(p.load.p99_ms for p in mine),
                errors=sum(p.load.errors for p in mine),
                ratios={f"÷ {r.versus}": r.median for r in result.ratios if r.phase == name},
                peak_rss_mb=rss,
            )
        )
    return rows


async def _federation(_options: Options) -> list[SummaryRow]:
    """Local look-ups against one and two federation hops, at c=1 and c=8."""
    argv = ["--ihis", "500", "--duration", "4", "--rounds", "2", "--concurrency", "1,8"]
    results = await federation.run(federation.parser().parse_args(argv))
    print(federation.table(results), flush=True)
    return federation_rows(results)


def federation_rows(results: Sequence[federation.Phase]) -> list[SummaryRow]:
    """Each phase at each concurrency (medians over rounds), its rate as a ratio to the local look-up's."""
    by_phase = federation.medians(list(results))
    rows = []
    for (phase, concurrency), load in sorted(by_phase.items(), key=lambda item: item[0][1]):
        local = by_phase.get(("local", concurrency))
        ratios = {"÷ local": round(load.rate / local.rate, 3)} if local and local.rate and phase != "local" else {}
        rows.append(
            SummaryRow(
                scenario=f"federation {phase} c={concurrency}",
                throughput=load.rate,
                p50_ms=load.p50_ms,
                p99_ms=load.p99_ms,
                errors=load.errors,
                ratios=ratios,
            )
        )
    return rows


async def _broker(_options: Options) -> list[SummaryRow]:
    """ImagingStudy searches fanned out to ten gateways answering in 50 ms."""
    args = broker.parser().parse_args(["--patients", "300", "--requests-c1", "150", "--requests-cn", "600"])
    phases = await broker.run(args)
    broker.report(phases, args)
    return broker_rows(phases)


def broker_rows(phases: Sequence[broker.Phase]) -> list[SummaryRow]:
    """Each phase, its p50 as a ratio to one gateway asked directly (the floor)."""
    floor = next((p.p50_ms for p in phases if p.name == "gateway"), 0.0)
    return [
        SummaryRow(
            scenario=f"broker {p.name} c={p.concurrency}",
            throughput=p.rate,
            p50_ms=p.p50_ms,
            p99_ms=p.p99_ms,
            errors=p.errors,
            ratios={"p50 ÷ one gateway's": round(p.p50_ms / floor, 3)} if floor and p.name != "gateway" else {},
        )
        for p in phases
    ]


async def _notifications(_options: Options) -> list[SummaryRow]:
    """Notification latency with 100 subscribers; registration rates with and without subscriptions."""
    args = notifications.parser().parse_args(
        ["--events", "300", "--scale", "2000", "--rounds", "2", "--per-round", "300"]
    )
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.make_template()
        found = await notifications.latency(cluster, args.events, args.rate)
        rates = await notifications.rates(cluster, args.scale, args.rounds, args.per_round, args.concurrency)
    finally:
        cluster.stop()
    print(f"notifications: latency {found}; registration rates {rates['mean']}", flush=True)
    return notification_rows(found, rates, rate=args.rate, scale=args.scale, concurrency=args.concurrency)


def notification_rows(
    latency: dict[str, float], rates: dict[str, Any], *, rate: float, scale: int, concurrency: int
) -> list[SummaryRow]:
    """Commit-to-receipt latency at a fixed rate, then the registration rate of each server, as a ratio to none."""
    rows = [
        SummaryRow(
            scenario=f"notifications commit→receipt, 100 subscribers ({latency['received']:.0f} received)",
            throughput=rate,
            unit="events/s",
            p50_ms=latency["p50_ms"],
            p99_ms=latency["p99_ms"],
            errors=int(latency["events"] - latency["received"]),
        )
    ]
    mean: dict[str, float] = rates["mean"]
    labels = {
        "none": "no subscriptions",
        "outbox": f"{scale:,} subscriptions, outbox only",
        "scale": f"{scale:,} subscriptions, delivering",
        "admin": "one unfiltered subscription",
    }
    for name, label in labels.items():
        ratios = {"÷ no subscriptions": round(mean[name] / mean["none"], 3)} if name != "none" and mean["none"] else {}
        rows.append(
            SummaryRow(
                scenario=f"registrations c={concurrency}, {label}",
                throughput=mean[name],
                unit="req/s",
                ratios=ratios,
            )
        )
    return rows


async def _scaleout(_options: Options) -> list[SummaryRow]:
    """One server process against two, one delivery worker against two, look-ups with and without a replica."""
    args = scaleout.parser().parse_args(
        ["--records", "50000", "--duration", "5", "--rounds", "1", "--patients", "100", "--steady", "500"]
    )
    results = await scaleout.run(args)
    print(scaleout.report(results), flush=True)
    return scaleout_rows(results)


def scaleout_rows(results: scaleout.Results) -> list[SummaryRow]:
    """Each configuration's mean rate, the two-process (replica) configuration as a ratio to the one-process one."""
    rows: list[SummaryRow] = []

    def add(
        scenario: str, loads: list[tuple[float, float, float, int]], base: float | None, versus: str, unit: str
    ) -> float:
        rate = statistics.mean(load[0] for load in loads)
        rows.append(
            SummaryRow(
                scenario=scenario, throughput=rate, unit=unit,
                p50_ms=statistics.median(load[1] for load in loads),
                p99_ms=statistics.median(load[2] for load in loads),
                errors=sum(load[3] for load in loads),
                ratios={f"÷ {versus}": round(rate / base, 3)} if base else {},
            )
        )  # fmt: skip
        return rate

    for phase in ("PUT", "GET"):
        base = None
        for servers in (1, 2):
            loads = [
                (p.load.rate, p.load.p50_ms, p.load.p99_ms, p.load.errors)
                for p in results.servers if p.phase == phase and p.servers == servers
            ]  # fmt: skip
            if loads:
                rate = add(f"scale-out {phase} c=32, {servers} server process(es)", loads, base, "one", "req/s")
                base = base or rate
    base = None
    for workers in (1, 2):
        drains = [
            (d.rate, d.p50_ms, d.p99_ms, abs(d.events - d.received))  # lost or repeated
            for d in results.workers if d.phase == "drain" and d.workers == workers
        ]  # fmt: skip
        if drains:
            rate = add(f"scale-out drain, {workers} delivery worker(s)", drains, base, "one", "notifications/s")
            base = base or rate
    base = None
    for source in ("primary", "replica"):
        loads = [
            (r.load.rate, r.load.p50_ms, r.load.p99_ms, r.load.errors)
            for r in results.replica
            if r.reads_from == source
        ]
        if loads:
            rate = add(f"scale-out GET c=32, reads from the {source}", loads, base, "primary", "req/s")
            base = base or rate
    return rows


SCENARIOS: list[Scenario] = [
    Scenario("registry", _registry),
    Scenario("federation", _federation),
    Scenario("broker", _broker),
    Scenario("notifications", _notifications),
    Scenario("scaleout", _scaleout),
]
"""Every scenario of ``--all``, in the order they run."""


# --- memory, the table, the command -------------------------------------------------------------------


@contextlib.contextmanager
def _server_peak(interval: float = 0.2) -> Iterator[list[int]]:
    """Sample every ``python -m registry serve`` process this one started; yields ``[peak RSS in bytes]``."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        me = psutil.Process(os.getpid())
        while not stop.is_set():
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    command = child.cmdline()
                    if "registry" in command and "serve" in command:
                        peak[0] = max(peak[0], child.memory_info().rss)
            stop.wait(interval)

    thread = threading.Thread(target=sample, name="server-rss", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def _cell(value: float | None, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def summary_table(rows: Sequence[SummaryRow], seconds: dict[str, float]) -> str:
    """The one table: scenario, throughput, p50, p99, errors, ratios, peak RSS; then each scenario's wall time."""
    header = ("scenario", "throughput", "p50 ms", "p99 ms", "errors", "ratio", "peak RSS MB")
    cells = [header] + [
        (
            row.scenario,
            f"{row.throughput:,.0f} {row.unit}",
            _cell(row.p50_ms, "{:.2f}"),
            _cell(row.p99_ms, "{:.2f}"),
            str(row.errors),
            "; ".join(f"{value:.2f} {name}" for name, value in row.ratios.items()),
            _cell(row.peak_rss_mb, "{:.0f}"),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    left = {0, 5}

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i in left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    lines = [line(cells[0]), "  ".join("-" * w for w in widths), *(line(c) for c in cells[1:]), ""]
    lines.append(
        "wall time: "
        + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
        + f"; in all {sum(seconds.values()):.0f} s"
    )
    return "\n".join(lines)


async def _run(scenarios: Sequence[Scenario], options: Options) -> SuiteResult:
    rows: list[SummaryRow] = []
    seconds: dict[str, float] = {}
    for scenario in scenarios:
        print(f"\n=== {scenario.name} ===", flush=True)
        started = time.monotonic()
        with _server_peak() as peak:
            try:
                found = await scenario.runner(options)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not lose the others' numbers
                traceback.print_exc()
                found = [SummaryRow(scenario=f"{scenario.name}: failed ({type(exc).__name__})", throughput=0.0)]
        sampled = round(peak[0] / 2**20, 1) if peak[0] else None
        rows += [
            row if row.peak_rss_mb is not None else msgspec.structs.replace(row, peak_rss_mb=sampled) for row in found
        ]
        seconds[scenario.name] = round(time.monotonic() - started, 1)
    return SuiteResult(rows=rows, seconds=seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench --all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="run every scenario (the default of this command)")
    names = ", ".join(s.name for s in SCENARIOS)
    parser.add_argument("--only", metavar="NAME,...", help=f"run only these scenarios ({names})")
    parser.add_argument("--ref", help="also run this git revision in the registry matrix")
    parser.add_argument("--ref-patch", type=Path, help="apply this patch to the --ref checkout")
    parser.add_argument("--json", type=Path, help="write the summary rows and wall times to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen scenarios, then print the summary table."""
    args = _parser().parse_args(argv)
    chosen = list(SCENARIOS)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {s.name for s in SCENARIOS}
        if unknown:
            raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
        chosen = [s for s in SCENARIOS if s.name in wanted]
    result = asyncio.run(_run(chosen, Options(ref=args.ref, ref_patch=args.ref_patch)))
    print("\n" + summary_table(result.rows, result.seconds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
