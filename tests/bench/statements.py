"""Where a subscribed re-registration's database time goes: ``python -m tests.bench.statements [--duration S]``.

On a cluster of its own with ``pg_stat_statements`` loaded (``track = all``, ``track_planning =
on``): 20,000 active records, one subscription on each of the first ``--subscriptions`` patients,
then ``--connections`` connections re-registering the subscribed patients by ``put_record()`` for
``--duration`` seconds. Printed: the re-registrations made, then every statement run more than
100 times (the nested ones of ``put_record()`` and its triggers included), with its calls and
plans, its time per execution and per plan, and its execution and planning time per
re-registration, largest first. A statement planned on every call has as many plans as calls.

With ``--against N``: the same load on two databases of one cluster, one migrated through
migration N and one to the head, in ``--rounds`` rounds alternating which goes first (commits not
waiting for the disk, no statement statistics); printed per round and as medians: re-registrations
per second and the database's CPU per re-registration (its backends' user and system time), and the
head's ratios to the other. The database's CPU is the steadier of the two on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import psutil

from registry.db.migrate import apply_migrations
from tests.factories import make_ihi
from tests.pg import TestCluster

__all__ = ("Round", "compare", "main", "run")

_PUT = "SELECT * FROM put_record($1, 's1', 'active', 'record', 'c1', 's1', false, NULL, NULL)"
_TOP = """
SELECT calls, plans, total_exec_time / calls * 1000 AS exec_us,
       total_plan_time / greatest(plans, 1) * 1000 AS plan_us,
       (total_exec_time + total_plan_time) / $1 * 1000 AS us_per_put,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
FROM pg_stat_statements WHERE calls > 100 ORDER BY total_exec_time + total_plan_time DESC LIMIT 25
"""
_RECORDS = 20_000


async def _with_statement_statistics(cluster: TestCluster) -> None:
    conn = await asyncpg.connect(cluster.url)
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    cluster.cluster.stop()
    cluster.cluster.start()
    conn = await asyncpg.connect(cluster.url)
    try:  # the extension's settings exist once it is loaded
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def _load(conn: asyncpg.Connection, ihis: list[str], subscriptions: int) -> None:
    """A gateway ``s1``, a client ``c1`` bound to it, a record of each IHI, a subscription on the first ones."""
    await conn.execute(
        "INSERT INTO services (service_id, kind, name, base_url) VALUES ('s1', 'gateway', 'G', 'https://g.example')"
    )
    await conn.execute(
        "INSERT INTO clients (client_id, name, service_id, scopes, auth_method) VALUES ('c1', 'C', 's1', '{}', 'none')"
    )
    await conn.execute(
        "INSERT INTO records (ihi, service_id, status, type) SELECT i, 's1', 'active', 'record'"
        " FROM unnest($1::bpchar[]) i",
        ihis,
    )
    await conn.execute(
        "INSERT INTO subscriptions (client_id, reason, base_url, endpoint, payload_type, content, secret,"
        " timeout_seconds, status, filter_ihi) SELECT 'c1', 'r', 'https://r.example/fhir', 'https://s.example/h',"
        " 'application/fhir+json', 'id-only', 'whsec_x', 10, 'active', i FROM unnest($1::bpchar[]) i",
        ihis[:subscriptions],
    )
    await conn.execute("VACUUM ANALYZE")


def _patients() -> list[str]:
    return list(dict.fromkeys(make_ihi() for _ in range(_RECORDS + 100)))[:_RECORDS]


async def _reregister(
    url: str, patients: list[str], connections: int, duration: float, *, warmed: str | None = None
) -> tuple[int, float, float]:  # fmt: skip
    """Re-register ``patients`` round-robin on ``connections`` connections for ``duration`` seconds, after half a
    second of the same (then ``warmed`` is run, if given): the number made, the seconds taken, and the CPU
    seconds the connections' backends used meanwhile."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        pids = [await conn.fetchval("SELECT pg_backend_pid()") for conn in conns]
        made = 0

        async def register(conn: asyncpg.Connection, first: int, stop: float) -> None:
            nonlocal made
            n = first
            while time.monotonic() < stop:
                await conn.fetchrow(_PUT, patients[n % len(patients)])
                n += connections
                made += 1

        await asyncio.gather(*(register(conn, k, time.monotonic() + 0.5) for k, conn in enumerate(conns)))  # warm
        made = 0
        if warmed is not None:
            await conns[0].execute(warmed)
        cpu_before, started = _cpu_seconds(pids), time.monotonic()
        await asyncio.gather(*(register(conn, k, started + duration) for k, conn in enumerate(conns)))
        return made, time.monotonic() - started, _cpu_seconds(pids) - cpu_before
    finally:
        for conn in conns:
            await conn.close()


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes."""
    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


async def run(subscriptions: int, connections: int, duration: float) -> tuple[int, list[asyncpg.Record]]:
    """Load, re-register, print the statements; the number of re-registrations made, and the statements."""
    cluster = TestCluster()
    cluster.start()
    try:
        await _with_statement_statistics(cluster)
        await cluster.make_template()
        url = await cluster.new_database()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
            ihis = _patients()
            await _load(conn, ihis, subscriptions)
            subscribed = ihis[: max(1, subscriptions // 2)]
            made, _, _ = await _reregister(
                url, subscribed, connections, duration, warmed="SELECT pg_stat_statements_reset()"
            )
            print(f"{made:,} re-registrations in {duration:g} s on {connections} connections")
            print(f"{'calls':>8} {'plans':>8} {'exec µs':>9} {'plan µs':>9} {'µs/put':>8}  statement")
            statements = await conn.fetch(_TOP, made)
            for row in statements:
                print(
                    f"{row['calls']:>8,} {row['plans']:>8,} {row['exec_us']:>9.1f} {row['plan_us']:>9.1f} "
                    f"{row['us_per_put']:>8.1f}  {row['q']}"
                )
        finally:
            await conn.close()
        return made, statements
    finally:
        cluster.stop()


class Round:
    """One round of one database: re-registrations per second and the database's CPU µs per re-registration."""

    __slots__ = ("cpu_us", "database", "number", "rate")

    def __init__(self, database: str, number: int, rate: float, cpu_us: float) -> None:
        self.database, self.number, self.rate, self.cpu_us = database, number, rate, cpu_us


async def compare(
    against: int, subscriptions: int, connections: int, duration: float, rounds: int
) -> list[Round]:  # fmt: skip
    """Re-registrations of subscribed patients on a database migrated through ``against`` and on one at the head,
    rounds alternating which goes first; prints each round and the medians, returns the rounds."""
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.without_durability()
        ihis = _patients()
        urls: dict[str, str] = {}
        for name, through in ((f"through {against:04d}", against), ("head", None)):
            url = await cluster.empty_database(f"ief_statements_{len(urls)}")
            conn = await asyncpg.connect(url)
            try:
                await apply_migrations(conn, through=through)
                await _load(conn, ihis, subscriptions)
            finally:
                await conn.close()
            urls[name] = url
        subscribed = ihis[:subscriptions]
        results: list[Round] = []
        for number in range(1, rounds + 1):
            order = list(urls) if number % 2 else list(reversed(urls))
            for name in order:
                made, seconds, used = await _reregister(urls[name], subscribed, connections, duration)
                results.append(Round(name, number, made / seconds, used / made * 1e6))
                print(f"round {number} {name:>12}: {made / seconds:8,.0f} re-registrations/s, "
                      f"database CPU {used / made * 1e6:6.0f} µs each", flush=True)  # fmt: skip
        old, head = list(urls)
        rate = [h.rate / o.rate for o, h in zip(_of(results, old), _of(results, head), strict=True)]
        cpu = [h.cpu_us / o.cpu_us for o, h in zip(_of(results, old), _of(results, head), strict=True)]
        print(f"head ÷ {old}: rate {_ratios(rate)}; CPU per re-registration {_ratios(cpu)}")
        return results
    finally:
        cluster.stop()


def _ratios(values: list[float]) -> str:
    return f"{' '.join(f'{v:.2f}' for v in values)} -> {statistics.median(values):.2f}"


def _of(results: list[Round], database: str) -> list[Round]:
    return [r for r in results if r.database == database]


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.statements", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=2000, help="subscribed patients (default 2,000)")
    parser.add_argument("--connections", type=int, default=32, help="connections re-registering (default 32)")
    parser.add_argument("--duration", type=float, default=8, help="seconds of re-registrations (default 8)")
    parser.add_argument("--against", type=int, help="compare with a database migrated through this migration")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the comparison (default 6)")
    args = parser.parse_args()
    if args.against is None:
        asyncio.run(run(args.subscriptions, args.connections, args.duration))
    else:
        asyncio.run(compare(args.against, args.subscriptions, args.connections, args.duration, args.rounds))


if __name__ == "__main__":
    main()
