"""Audit rows into monthly partitions: ``python -m tests.bench.audit_months [--rounds N]``.

Two databases in one throwaway cluster: one migrated to 0006 (``audit_events`` one table), one to
head (monthly partitions). The same ``insert_audit_events`` statement writes groups of 1 row (a
lone request's row, one commit each) and of 100 (a group commit) into each, in alternating
rounds, and the median rates and their ratio (months / before) are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from registry.audit.repository import insert_columns
from registry.db.migrate import apply_migrations
from registry.db.queries import load_queries
from tests.factories import make_audit_entry, make_ihi
from tests.pg import TestCluster

_BUILDS = {"before": 7, "months": None}
_GROUPS = ((1, 1500), (100, 150))
"""Rows per insert, and inserts per round."""


async def _rates(cluster: TestCluster, rounds: int) -> dict[str, dict[int, list[float]]]:
    conns: dict[str, asyncpg.Connection] = {}
    for name, through in _BUILDS.items():
        conns[name] = await asyncpg.connect(await cluster.empty_database(f"bench_audit_{name}"))
        await apply_migrations(conns[name], through=through)
    statement = load_queries()["insert_audit_events"]
    rates: dict[str, dict[int, list[float]]] = {name: {size: [] for size, _ in _GROUPS} for name in _BUILDS}
    try:
        for number in range(rounds):
            for name in list(_BUILDS) if number % 2 == 0 else list(_BUILDS)[::-1]:
                for size, count in _GROUPS:
                    groups = [
                        insert_columns([make_audit_entry(patients=(make_ihi(),)) for _ in range(size)])
                        for _ in range(count)
                    ]
                    started = time.perf_counter()
                    for columns in groups:
                        await conns[name].execute(statement, *columns)
                    rates[name][size].append(size * count / (time.perf_counter() - started))
    finally:
        for conn in conns.values():
            await conn.close()
    return rates


async def main(rounds: int) -> None:
    """Run the comparison and print it."""
    cluster = TestCluster()
    cluster.start()
    try:
        rates = await _rates(cluster, rounds)
    finally:
        cluster.stop()
    for size, _ in _GROUPS:
        before, months = (statistics.median(rates[name][size]) for name in _BUILDS)
        print(
            f"{size:>3} rows per insert: before {before:,.0f} rows/s, months {months:,.0f} rows/s, "
            f"months/before {months / before:.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="Alternating rounds (default 6).")
    asyncio.run(main(parser.parse_args().rounds))
