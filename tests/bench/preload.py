"""Millions of records straight into a build's database with ``COPY``, for runs that measure growth.

``python -m tests.bench --load copy --records 1000000 --grow-to 10000000`` loads its records this
way instead of through ``POST /registry/records:batch``: 10,000,000 records in minutes rather than
the better part of an hour. The rows go into ``records`` itself, in chunks of ``CHUNK`` (one
``COPY`` and one transaction each), so the table's own triggers write their history, check their
service and match subscriptions, as for any write; no audit rows are written (no request was made).
"""

from __future__ import annotations

import time

import asyncpg

from tests.bench.scenarios import ihi

__all__ = ("CHUNK", "copy_records")

CHUNK = 100_000
"""Records per ``COPY`` (and per transaction)."""


async def copy_records(database_url: str, service_id: str, start: int, stop: int) -> float:
    """Register IHIs ``start`` to ``stop`` as active records of ``service_id``; return the seconds it took."""
    conn = await asyncpg.connect(database_url)
    try:
        began = time.perf_counter()
        for first in range(start, stop, CHUNK):
            rows = [(ihi(n), service_id, "active", "record") for n in range(first, min(first + CHUNK, stop))]
            await conn.copy_records_to_table("records", records=rows, columns=("ihi", "service_id", "status", "type"))
        return time.perf_counter() - began
    finally:
        await conn.close()
