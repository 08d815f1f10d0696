"""The summary of ``python -m tests.bench --all``: rows from each scenario's results, and the one table."""

from __future__ import annotations

from typing import Any

from tests.bench import broker, scaleout
from tests.bench.loadgen import LoadResult
from tests.bench.run import CHECKOUT, BenchResult, BuildResult, growth, ratios
from tests.bench.suite import SCENARIOS, SummaryRow, broker_rows, registry_rows, scaleout_rows, summary_table
from tests.bench.test_report import _phase


def test_registry_rows_take_medians_over_rounds_and_ratios_to_every_other_build() -> None:
    """A registry row is the checkout's median rate, p50 and p99 over rounds, with the median ratio to each build."""
    phases = [
        _phase("bulk load", CHECKOUT, 20_000), _phase("bulk load", "bare", 25_000),
        _phase("GET c=32", CHECKOUT, 800, round_=1), _phase("GET c=32", "bare", 1000, round_=1),
        _phase("GET c=32", CHECKOUT, 400, round_=2), _phase("GET c=32", "bare", 800, round_=2),
        _phase("GET c=32", CHECKOUT, 600, round_=3), _phase("GET c=32", "bare", 600, round_=3),
    ]  # fmt: skip
    phases[0].load.requests = 4  # a bulk load: many records per request
    builds = [
        BuildResult(label="bare", commit="x", records_in_database=1000, peak_rss_mb=60.0),
        BuildResult(label=CHECKOUT, commit="x", records_in_database=1000, peak_rss_mb=110.0),
    ]
    result = BenchResult(
        started_at="now", machine={}, settings={}, ceiling=phases[0].load, builds=builds, phases=phases,
        ratios=ratios(phases), growth=growth(phases),
    )  # fmt: skip
    bulk, get = registry_rows(result)
    assert (bulk.scenario, bulk.unit, bulk.throughput, bulk.ratios) == (
        "registry bulk load",
        "records/s",
        20_000,
        {"÷ bare": 0.8},
    )
    assert (get.scenario, get.unit, get.throughput) == ("registry GET c=32", "req/s", 600)
    assert get.ratios == {"÷ bare": 0.8}  # rounds 0.8, 0.5, 1.0
    assert get.peak_rss_mb == bulk.peak_rss_mb == 110.0


def test_broker_rows_compare_p50_with_one_gateway_asked_directly() -> None:
    """Every broker phase but the floor carries its p50 divided by the one-gateway p50."""
    common: dict[str, Any] = {
        "requests": 100,
        "errors": 0,
        "seconds": 1.0,
        "p99_ms": 90.0,
        "added_p50_ms": 0.0,
        "added_p99_ms": 0.0,
    }
    phases = [
        broker.Phase(name="gateway", concurrency=1, rate=18.0, p50_ms=52.0, **common),
        broker.Phase(name="broker", concurrency=32, rate=300.0, p50_ms=104.0, **common),
    ]
    floor, brokered = broker_rows(phases)
    assert floor.ratios == {}
    assert brokered.scenario == "broker broker c=32"
    assert brokered.ratios == {"p50 ÷ one gateway's": 2.0}


def test_summary_table_has_one_line_per_row_and_the_wall_times() -> None:
    """The table lists every row under its columns (blank where a scenario has no figure) and each wall time."""
    rows = [
        SummaryRow(scenario="registry GET c=32", throughput=1234.4, p50_ms=20.0, p99_ms=80.5,
                   ratios={"÷ bare": 0.61, "÷ e4b5e2c": 0.9}, peak_rss_mb=112.0),
        SummaryRow(scenario="registrations c=8, no subscriptions", throughput=310.0),
    ]  # fmt: skip
    lines = summary_table(rows, {"registry": 120.0, "broker": 61.4}).splitlines()
    assert lines[0].split() == [
        "scenario",
        "throughput",
        "p50",
        "ms",
        "p99",
        "ms",
        "errors",
        "ratio",
        "peak",
        "RSS",
        "MB",
    ]
    assert lines[2].split() == [
        "registry", "GET", "c=32", "1,234", "req/s", "20.00", "80.50", "0", "0.61", "÷", "bare;", "0.90", "÷",
        "e4b5e2c", "112",
    ]  # fmt: skip
    assert lines[3].split() == ["registrations", "c=8,", "no", "subscriptions", "310", "req/s", "0"]
    assert lines[-1] == "wall time: registry 120 s, broker 61 s; in all 181 s"


def test_every_scenario_has_its_own_name() -> None:
    """``--only`` picks scenarios by name, so no two share one; the four benchmarks of the issues are there."""
    names = [scenario.name for scenario in SCENARIOS]
    assert len(set(names)) == len(names)
    assert {"registry", "federation", "broker", "notifications"} <= set(names)


def _load(rate: float, errors: int = 0) -> LoadResult:
    return LoadResult(
        scenario="x", concurrency=32, requests=100, items=100, errors=errors, statuses={}, seconds=1.0, rate=rate,
        item_rate=rate, p50_ms=rate / 100, p90_ms=0.0, p99_ms=rate / 10, max_ms=0.0, client_cpu=0.0,
    )  # fmt: skip


def test_scaleout_rows_average_rounds_and_compare_two_processes_with_one() -> None:
    """A scale-out row is a configuration's mean rate over rounds, two processes (or the replica) divided by one."""
    servers = [
        scaleout.ServersPhase(phase="PUT", servers=n, load=_load(rate, errors), server_cpu=0.5, pg_cpu=0.5)
        for n, rate, errors in ((1, 500, 0), (2, 900, 1), (2, 1100, 0), (1, 700, 0))
    ]
    drains = [
        scaleout.DeliveryPhase(
            phase="drain",
            workers=n,
            events=100,
            received=received,
            seconds=1.0,
            rate=rate,
            p50_ms=1.0,
            p99_ms=2.0,
            worker_cpu=0.5,
            pg_cpu=0.5,
            per_worker={},
        )
        for n, rate, received in ((1, 400, 100), (2, 300, 101))
    ]
    replica = [
        scaleout.ReplicaPhase(reads_from=source, load=_load(rate), server_cpu=0.5, primary_cpu=0.2, replica_cpu=0.1)
        for source, rate in (("primary", 1000), ("replica", 1200))
    ]
    rows = scaleout_rows(scaleout.Results(settings={}, servers=servers, workers=drains, replica=replica))
    by_name = {row.scenario: row for row in rows}
    one, two = by_name["scale-out PUT c=32, 1 server process(es)"], by_name["scale-out PUT c=32, 2 server process(es)"]
    assert (one.throughput, one.ratios, two.throughput, two.errors) == (600, {}, 1000, 1)
    assert two.ratios == {"÷ one": round(1000 / 600, 3)}
    drain = by_name["scale-out drain, 2 delivery worker(s)"]
    assert (drain.ratios, drain.errors, drain.unit) == ({"÷ one": 0.75}, 1, "notifications/s")
    assert by_name["scale-out GET c=32, reads from the replica"].ratios == {"÷ primary": 1.2}
