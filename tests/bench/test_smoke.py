"""The benchmark command runs end to end with tiny numbers, so it cannot rot (structure only, never speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.bench.run import BenchResult
from tests.bench.servers import ROOT

pytestmark = pytest.mark.slow


def _in_git_checkout() -> bool:
    found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, check=False)
    return found.returncode == 0


def test_benchmark_runs_every_phase_on_every_build(tmp_path: Path) -> None:
    """``python -m tests.bench`` loads every record, runs each phase on each build without errors and reports them."""
    out = tmp_path / "bench.json"
    builds = ["bare", "checkout"]
    command = [
        sys.executable, "-m", "tests.bench", "--records", "2000", "--duration", "0.2", "--concurrency", "4",
        "--batch-size", "500", "--header", "X-Bench: smoke", "--json", str(out), "--bare",
    ]  # fmt: skip
    if _in_git_checkout():
        command += ["--ref", "HEAD"]
        builds = ["HEAD", "bare", "checkout"]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr + finished.stdout

    result = msgspec.json.decode(out.read_bytes(), type=BenchResult)
    assert [build.label for build in result.builds] == builds
    for build in result.builds:
        assert build.records_in_database == 2000
        assert build.peak_rss_mb > 0
    phases = ["bulk load 1x10,000", "bulk load 4x500", "PUT c=4", "GET c=4", "PUT c=1", "GET c=1"]
    assert sorted((p.phase, p.build) for p in result.phases) == sorted((p, b) for p in phases for b in builds)
    for phase in result.phases:
        assert phase.load.requests > 0, phase.phase
        assert phase.load.errors == 0, (phase.phase, phase.load.statuses)
        assert set(phase.load.statuses) == {"200"}, (phase.phase, phase.load.statuses)  # PUTs change loaded records
        assert phase.load.p50_ms <= phase.load.p99_ms <= phase.load.max_ms
        if phase.phase == "bulk load 1x10,000":  # the first half, one batch (the records are fewer than 10,000)
            assert (phase.load.items, phase.load.requests) == (1000, 1)
        if phase.phase == "bulk load 4x500":  # the second half, in batches of 500
            assert (phase.load.items, phase.load.requests) == (1000, 2)
    assert result.ceiling.requests > 0
    assert sorted((r.phase, r.versus) for r in result.ratios) == sorted(
        (p, b) for p in phases for b in builds if b != "checkout"
    )
    for ratio in result.ratios:
        assert len(ratio.per_round) == 1
        assert ratio.median > 0
    header = finished.stdout.splitlines()
    assert any(line.split()[:5] == ["phase", "round", "records", "build", "req/s"] for line in header)
    assert "load generator ceiling" in finished.stdout


async def test_updates_benchmark_compares_the_schemas_before_and_after_migration_0015() -> None:
    """``python -m tests.bench.updates`` loads both databases and times every round on each; on the head's
    schema every status change is made in place (HOT); on the one before 0015 a full page has no room for the
    first change of its rows."""
    from tests.bench.updates import run

    results = await run(records=20000, writes=300, rounds=2, before=14)
    assert [(r.build, r.round) for r in results] == [
        ("through 0014", 1), ("checkout", 1), ("checkout", 2), ("through 0014", 2),
    ]  # fmt: skip
    for result in results:
        assert result.updates == 300
        assert result.wal_per_write > 0
    assert all(r.hot == r.updates for r in results if r.build == "checkout")
    first = results[0]
    assert first.hot < first.updates / 2


async def test_statements_benchmark_shows_every_statement_of_a_re_registration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``python -m tests.bench.statements`` re-registers subscribed patients and lists the statements of
    ``put_record()`` and its triggers, none of them planned anew on most calls (migration 0017)."""
    from tests.bench.statements import run

    made, statements = await run(subscriptions=2000, connections=2, duration=1)  # enough for the statistics to matter
    printed = capsys.readouterr().out
    assert made > 100
    assert "put_record(" in printed
    assert "UPDATE subscriptions s SET events_since_start" in printed
    replanned = [row["q"] for row in statements if row["plans"] > row["calls"] // 2]
    assert replanned == []


async def test_statements_benchmark_compares_a_migration_with_the_head(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m tests.bench.statements --against N`` re-registers the same subscribed patients on a database
    migrated through N and on one at the head, in alternating rounds, and prints the head's ratios."""
    from tests.bench.statements import compare

    rounds = await compare(against=17, subscriptions=200, connections=2, duration=0.5, rounds=2)
    printed = capsys.readouterr().out
    assert [(r.number, r.database) for r in rounds] == [
        (1, "through 0017"), (1, "head"), (2, "head"), (2, "through 0017"),
    ]  # fmt: skip
    assert all(r.rate > 0 and r.cpu_us > 0 for r in rounds)
    assert "head ÷ through 0017: rate " in printed
