"""The benchmark's summaries: ratios between builds inside each round, and growth with the record count."""

from __future__ import annotations

from tests.bench.loadgen import LoadResult
from tests.bench.run import CHECKOUT, PhaseResult, growth, ratios


def _phase(
    phase: str, build: str, rate: float, *, round_: int = 1, records: int = 1000, cpu: float = 0.5
) -> PhaseResult:
    load = LoadResult(
        scenario=phase, concurrency=1, requests=int(rate), items=int(rate), errors=0, statuses={"200": int(rate)},
        seconds=1.0, rate=rate, item_rate=rate, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0, max_ms=1.0, client_cpu=0.1,
    )  # fmt: skip
    return PhaseResult(phase=phase, build=build, load=load, server_cpu=cpu, pg_cpu=0.1, round=round_, records=records)


def test_ratios_pair_builds_inside_each_round() -> None:
    """The checkout's rate is divided by the other build's of the same round, and CPU per operation the other way."""
    phases = [
        _phase("GET", CHECKOUT, 800, round_=1), _phase("GET", "bare", 1000, round_=1, cpu=0.5),
        _phase("GET", CHECKOUT, 400, round_=2), _phase("GET", "bare", 800, round_=2),
    ]  # fmt: skip
    [ratio] = ratios(phases)
    assert (ratio.phase, ratio.versus) == ("GET", "bare")
    assert ratio.per_round == [0.8, 0.5]
    assert ratio.median == 0.65
    assert ratio.cpu_per_round == [0.8, 0.5]  # same CPU, so CPU per operation follows the rates


def test_growth_compares_the_largest_record_count_with_the_smallest() -> None:
    """Growth is the median rate of a phase at the most records over its median at the fewest, per build."""
    phases = [
        _phase("GET", CHECKOUT, 900, round_=1), _phase("GET", CHECKOUT, 1100, round_=2),
        _phase("GET", CHECKOUT, 850, round_=3, records=10_000), _phase("bulk load", CHECKOUT, 5, records=1000),
    ]  # fmt: skip
    [grown] = growth(phases)
    assert (grown.phase, grown.records_before, grown.records_after) == ("GET", 1000, 10_000)
    assert (grown.rate_before, grown.rate_after, grown.ratio) == (1000, 850, 0.85)
    assert growth(phases[:2]) == []
