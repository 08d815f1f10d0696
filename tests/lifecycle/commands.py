"""Lifecycle commands as the operator runs them: the real CLI on a database of its own, loaded with many records."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass

import asyncpg

from tests.cli import CliResult, run_cli

__all__ = ("Fleet", "kill_half_way", "load_records")


@dataclass(frozen=True, slots=True)
class Fleet:
    """A database and the service ID of the instance whose operator runs the commands."""

    database_url: str
    service_id: str


async def load_records(database_url: str, service_id: str, count: int, *, start: int = 0) -> None:
    """``count`` active records of ``service_id`` for IHIs numbered from ``start`` (as a bulk load would leave them)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO records (ihi, service_id, status, type, actor_client, actor_service) "
            "SELECT '800360' || lpad(i::text, 10, '0'), $1, 'active', 'record', 'loader', $1 "
            "FROM generate_series($2::bigint, $2::bigint + $3 - 1) AS i",
            service_id, start, count,
        )  # fmt: skip
    finally:
        await conn.close()


async def kill_half_way(fleet: Fleet, job_key: str, total: int, *args: str, chunk: int = 2000) -> CliResult:
    """Start ``ief-registry ARGS``, SIGKILL it once its job has gone through a third of ``total`` records, then run
    it again to the end; return the second run."""
    env = {
        **os.environ, "IEF_DATABASE_URL": fleet.database_url, "IEF_SERVICE_ID": fleet.service_id,
        "IEF_LOG_LEVEL": "warning", "IEF_RECORDS_LIFECYCLE_CHUNK_SIZE": str(chunk),
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", *args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    conn = await asyncpg.connect(fleet.database_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT processed FROM lifecycle_jobs WHERE job_key = $1", job_key)
            if done is not None and done >= total // 3:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed_at = await conn.fetchval("SELECT processed FROM lifecycle_jobs WHERE job_key = $1", job_key)
    finally:
        await conn.close()
    assert 0 < killed_at < total, f"killed at {killed_at} of {total}: not half way"
    return await run_cli(fleet, *args, extra_env={"IEF_RECORDS_LIFECYCLE_CHUNK_SIZE": str(chunk)})
