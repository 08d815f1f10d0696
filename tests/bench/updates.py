"""Registrations as updates, in the database alone: ``python -m tests.bench.updates [--records N] [--writes N]``.

What a registration costs PostgreSQL where it matters most, a table too large for every page to
have changed since the last checkpoint: on a cluster of its own (fsync and full-page writes on),
two databases with ``--records`` active records each (loaded in SQL, as a bulk load leaves them),
one migrated through ``--before`` (default 14: the schema before migration 0015) and one to the
head; then, in rounds alternating which goes first, a checkpoint and ``--writes`` status changes of
records drawn at random, one ``put_record()`` after another on one connection. Printed per build
and round: milliseconds and WAL bytes per change, and the share of the updates PostgreSQL made in
place (HOT: no index touched); then the tables' bytes per row, the load rate, the head's figures
as ratios to the other's, and how long upgrading the other database to the head takes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import dataclass

import asyncpg

from registry.db.migrate import apply_migrations
from tests.factories import make_service_id
from tests.lifecycle.commands import load_records
from tests.pg import TestCluster, as_owner, table_activity
from tests.server import add_service

__all__ = ("Round", "main", "run")

_CHUNK = 200_000
_PUT = "SELECT * FROM put_record($1, $2, $3, 'record', 'loader', $2, false, NULL, NULL)"


@dataclass(frozen=True, slots=True)
class Round:
    """One build's round: time and WAL per change, and how many of its updates were HOT."""

    build: str
    round: int
    ms_per_write: float
    wal_per_write: float
    hot: int
    updates: int


async def _database(cluster: TestCluster, name: str, through: int | None, records: int) -> tuple[str, str, float]:
    """A database migrated ``through`` (None: head) with ``records`` active records; its URL, service, load rate."""
    url = await cluster.empty_database(name)
    conn = await asyncpg.connect(as_owner(url))
    try:
        await apply_migrations(conn, through=through)
    finally:
        await conn.close()
    service_id = make_service_id()
    await add_service(url, service_id)
    started = time.perf_counter()
    for start in range(0, records, _CHUNK):
        await load_records(url, service_id, min(_CHUNK, records - start), start=start)
    rate = records / (time.perf_counter() - started)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return url, service_id, rate


async def _counters(conn: asyncpg.Connection) -> tuple[int, int]:
    activity = await table_activity(conn, "records")
    return int(activity["n_tup_upd"]), int(activity["n_tup_hot_upd"])


async def _round(build: str, number: int, url: str, service_id: str, records: int, writes: int) -> Round:
    """``writes`` status changes of random records after a checkpoint (odd rounds archive, even ones reactivate)."""
    draw = random.Random(number)
    ihis = [f"800360{n:010d}" for n in draw.sample(range(records), writes)]
    status = "archived" if number % 2 else "active"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CHECKPOINT")
        updates, hot = await _counters(conn)
        start_lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        started = time.perf_counter()
        for ihi in ihis:
            await conn.fetchrow(_PUT, ihi, service_id, status)
        seconds = time.perf_counter() - started
        wal = await conn.fetchval("SELECT pg_current_wal_insert_lsn() - $1::pg_lsn", start_lsn)
        updates_after, hot_after = await _counters(conn)
    finally:
        await conn.close()
    return Round(build, number, seconds / writes * 1000, float(wal) / writes, hot_after - hot, updates_after - updates)


async def _upgrade(url: str, name: str) -> None:
    """Upgrade the other database to the head, as an operator's ``db upgrade`` would, and print how long it took."""
    conn = await asyncpg.connect(as_owner(url))
    try:
        history = await conn.fetchval("SELECT count(*) FROM record_history")
        started = time.perf_counter()
        applied = await apply_migrations(conn)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    versions = ", ".join(f"{m.version:04d}" for m in applied) or "nothing"
    print(f"{name} upgraded to the head ({versions}) with {history:,} history entries: {seconds:.1f} s")


async def _bytes_per_row(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT relname, pg_total_relation_size(relid) AS bytes, n_live_tup FROM pg_stat_user_tables"
            " WHERE relname IN ('records', 'record_history') ORDER BY relname DESC"
        )
    finally:
        await conn.close()
    return ", ".join(f"{r['relname']} {r['bytes'] / max(r['n_live_tup'], 1):,.0f} B/row" for r in rows)


async def run(records: int, writes: int, rounds: int, before: int) -> list[Round]:
    """Load both databases, run the rounds, print and return them."""
    cluster = TestCluster()
    cluster.start()
    try:
        builds = {}
        for name, through in ((f"through {before:04d}", before), ("checkout", None)):
            print(f"loading {records:,} records ({name}) ...", flush=True)
            url, service_id, rate = await _database(cluster, f"bench_updates_{through or 'head'}", through, records)
            builds[name] = (url, service_id)
            print(f"  {rate:,.0f} records/s; {await _bytes_per_row(url)}", flush=True)
        results = []
        names = list(builds)
        for number in range(1, rounds + 1):
            order = names if number % 2 else names[::-1]
            for name in order:
                url, service_id = builds[name]
                result = await _round(name, number, url, service_id, records, writes)
                results.append(result)
                print(
                    f"round {number} {name:13} {result.ms_per_write:6.3f} ms/change  "
                    f"{result.wal_per_write:8,.0f} WAL B/change  HOT {result.hot}/{result.updates}",
                    flush=True,
                )
        for name in names:
            url, _ = builds[name]
            print(f"{name}: after the rounds {await _bytes_per_row(url)}")
        await _upgrade(builds[names[0]][0], names[0])
        head, other = names[1], names[0]
        for label, attribute in (("time per change", "ms_per_write"), ("WAL per change", "wal_per_write")):
            ratios = [
                getattr(a, attribute) / getattr(b, attribute)
                for a, b in zip(
                    (r for r in results if r.build == head), (r for r in results if r.build == other), strict=True
                )
            ]
            shown = " ".join(f"{r:.2f}" for r in ratios)
            print(f"{label}, {head} ÷ {other}: {shown} -> median {statistics.median(ratios):.2f}")
        return results
    finally:
        cluster.stop()


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.updates", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2_000_000, help="records in each database (default 2,000,000)")
    parser.add_argument("--writes", type=int, default=20_000, help="status changes per round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--before", type=int, default=14, help="the other database's last migration (default 14)")
    args = parser.parse_args()
    asyncio.run(run(args.records, args.writes, args.rounds, args.before))


if __name__ == "__main__":
    main()
