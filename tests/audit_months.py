"""Test support for the audit trail's months: the instance's checkpoint signer, sealing to the end, bulk rows.

``insert_events`` writes many audit rows in one set-based statement (not the HTTP path), spread
over a month, so that tests of months, checkpoints and exports can fill a month with a million
rows in seconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import date

import asyncpg

from registry.audit.chain import SealResult, seal
from registry.audit.checkpoints import CheckpointSigner
from registry.audit.partitions import add_months, this_month
from registry.audit.repository import AuditRepository
from registry.auth.repository import AuthRepository
from registry.auth.wiring import key_ring
from registry.config import DatabaseSettings, Settings
from registry.db.pool import open_database
from registry.db.queries import load_queries

__all__ = ("insert_events", "instance_signer", "months_back", "seal_all")


def months_back(count: int) -> date:
    """The first day of the month ``count`` months before the current one (UTC)."""
    return add_months(this_month(), -count)


@contextlib.asynccontextmanager
async def instance_signer(database_url: str, issuer: str = "test-instance") -> AsyncIterator[CheckpointSigner]:
    """The signer of the database's own audit key (created if missing), as a server of it would sign with."""
    database = await open_database(database_url, DatabaseSettings(pool_min=0, pool_max=2))
    try:
        keys = key_ring(database, AuthRepository(load_queries()), Settings())
        await keys.ensure()
        yield CheckpointSigner(key=lambda: keys.keys.audit, issuer=issuer)
    finally:
        await database.close()


async def seal_all(conn: asyncpg.Connection, signer: CheckpointSigner, *, close_grace: float = 0.0) -> SealResult:
    """Seal until nothing more can be sealed now (closing and checkpointing every month that is due)."""
    repo = AuditRepository(load_queries())
    result = await seal(conn, repo, signer, close_grace=close_grace)
    while result.more and (result.sealed or result.checkpointed):
        result = await seal(conn, repo, signer, close_grace=close_grace)
    return result


async def insert_events(conn: asyncpg.Connection, month: date, count: int, *, prefix: str = "bulk") -> None:
    """``count`` audit rows of look-ups spread evenly over ``month``, in one statement (the month must exist)."""
    await conn.execute(
        """
        INSERT INTO audit_events (recorded, request_id, interaction, action, outcome, status, method, path, query,
                                  client_id, client_service, client_address, token_id, observer, patients, records)
        SELECT $1::timestamptz + (g - 1) * (($2::timestamptz - $1::timestamptz) / $3::int),
               $4 || '-' || g, 'search-type', 'E', 0, 200, 'GET',
               '/registry/records/' || ihi, 'status=active', 'client-' || (g % 7), 'service-' || (g % 7),
               '127.0.0.1', 'jti-' || g, 'registry-under-test', ARRAY[ihi], ARRAY[gen_random_uuid()]
        FROM generate_series(1, $3::int) AS g,
             LATERAL (SELECT '800360' || lpad((g % 1000)::text, 10, '0') AS ihi) AS p
        """,
        month,
        add_months(month, 1),
        count,
        prefix,
    )
