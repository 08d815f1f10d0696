"""Where a subscribed re-registration's database time goes: ``python -m tests.bench.statements [--duration S]``.

On a cluster of its own with ``pg_stat_statements`` loaded (``track = all``, ``track_planning =
on``): 20,000 active records, one subscription on each of the first ``--subscriptions`` patients,
then ``--connections`` connections re-registering the subscribed patients by ``put_record()`` for
``--duration`` seconds. Printed: the re-registrations made, then every statement run more than
100 times (the nested ones of ``put_record()`` and its triggers included), with its calls and
plans, its time per execution and per plan, and its execution and planning time per
re-registration, largest first. A statement planned on every call has as many plans as calls.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from tests.factories import make_ihi
from tests.pg import TestCluster

__all__ = ("main", "run")

_PUT = "SELECT * FROM put_record($1, 's1', 'active', 'record', 'c1', 's1', false, NULL, NULL)"
_TOP = """
SELECT calls, plans, total_exec_time / calls * 1000 AS exec_us,
       total_plan_time / greatest(plans, 1) * 1000 AS plan_us,
       (total_exec_time + total_plan_time) / $1 * 1000 AS us_per_put,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS q
FROM pg_stat_statements WHERE calls > 100 ORDER BY total_exec_time + total_plan_time DESC LIMIT 25
"""


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
            await conn.execute(
                "INSERT INTO services (service_id, kind, name, base_url) VALUES ('s1', 'gateway', 'G', 'https://g.example')"
            )
            await conn.execute(
                "INSERT INTO clients (client_id, name, service_id, scopes, auth_method)"
                " VALUES ('c1', 'C', 's1', '{}', 'none')"
            )
            ihis = list(dict.fromkeys(make_ihi() for _ in range(20_100)))[:20_000]
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
            subscribed = ihis[: max(1, subscriptions // 2)]
            made = 0
            stop = time.monotonic() + duration

            async def register(first: int) -> None:
                nonlocal made
                own = await asyncpg.connect(url)
                try:
                    n = first
                    while time.monotonic() < stop:
                        await own.fetchrow(_PUT, subscribed[n % len(subscribed)])
                        n += connections
                        made += 1
                finally:
                    await own.close()

            await conn.execute("SELECT pg_stat_statements_reset()")
            await asyncio.gather(*(register(k) for k in range(connections)))
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


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.statements", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=2000, help="subscribed patients (default 2,000)")
    parser.add_argument("--connections", type=int, default=32, help="connections re-registering (default 32)")
    parser.add_argument("--duration", type=float, default=8, help="seconds of re-registrations (default 8)")
    args = parser.parse_args()
    asyncio.run(run(args.subscriptions, args.connections, args.duration))


if __name__ == "__main__":
    main()
