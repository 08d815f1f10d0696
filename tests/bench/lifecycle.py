"""Lifecycle command benchmark: ``python -m tests.bench.lifecycle [--records N] [--chunk N]``.

On a PostgreSQL cluster of its own: a migrated database, two gateways, ``--records`` active records
of the first (loaded in SQL, as a bulk load leaves them); then the real command line, as the
operator runs it: ``services move OLD NEW`` over every record, then ``services retire NEW`` over the
same records. Each command's wall time and records per second are printed, with the rate of a bare
``UPDATE`` of the same rows in the same database (no triggers: no history, no notifications, no
audit) and each command's rate as a ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import asyncpg

from registry.db.migrate import apply_migrations
from tests.factories import make_service_id
from tests.lifecycle.commands import load_records
from tests.pg import TestCluster
from tests.server import add_service

__all__ = ("main",)


async def _command(database_url: str, service_id: str, chunk: int, *args: str) -> tuple[float, str]:
    env = {
        **os.environ, "IEF_DATABASE_URL": database_url, "IEF_SERVICE_ID": service_id, "IEF_LOG_LEVEL": "warning",
        "IEF_RECORDS_LIFECYCLE_CHUNK_SIZE": str(chunk),
    }  # fmt: skip
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {err.decode()}")
    return seconds, out.decode().strip()


async def _bare_update(database_url: str, service_id: str) -> float:
    """Seconds for one plain UPDATE of every record of ``service_id`` with the triggers off (then rolled back)."""
    conn = await asyncpg.connect(database_url)
    transaction = conn.transaction()
    try:
        await transaction.start()
        await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers
        started = time.perf_counter()
        await conn.execute(
            "UPDATE records SET status = 'archived', version = version + 1, last_updated = now() WHERE service_id = $1",
            service_id,
        )
        seconds = time.perf_counter() - started
        await transaction.rollback()
    finally:
        await conn.close()
    return seconds


async def run(records: int, chunk: int) -> None:
    """Load, move, retire; print the rates."""
    cluster = TestCluster()
    cluster.start()
    try:
        await cluster.without_durability()
        database_url = await cluster.empty_database("bench_lifecycle")
        conn = await asyncpg.connect(database_url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        instance, old, new = make_service_id(), make_service_id(), make_service_id()
        await add_service(database_url, old)
        await add_service(database_url, new)
        print(f"loading {records:,} records ...", flush=True)
        await load_records(database_url, old, records)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("VACUUM ANALYZE records")
        finally:
            await conn.close()
        print("services move ...", flush=True)
        moved, line = await _command(database_url, instance, chunk, "services", "move", old, new)
        print(f"  {line}", flush=True)
        print("services retire ...", flush=True)
        retired, line = await _command(database_url, instance, chunk, "services", "retire", new)
        print(f"  {line}", flush=True)
        bare = await _bare_update(database_url, new)
        print(
            f"bare UPDATE of the same rows (no triggers, no history, no audit): {bare:.1f} s, "
            f"{records / bare:,.0f} records/s"
        )
        for name, seconds in (("services move", moved), ("services retire", retired)):
            print(f"{name}: {seconds:.1f} s, {records / seconds:,.0f} records/s, {bare / seconds:.2f} of the bare rate")
    finally:
        cluster.stop()


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.lifecycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to move and retire (default 1,000,000)")
    parser.add_argument("--chunk", type=int, default=5000, help="records per transaction (default 5000)")
    args = parser.parse_args()
    asyncio.run(run(args.records, args.chunk))


if __name__ == "__main__":
    main()
