"""The asyncpg pools of one server process: primary, and an optional read replica."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from registry.db.errors import translate_db_errors
from registry.log import get_logger

if TYPE_CHECKING:
    from registry.config import DatabaseSettings

__all__ = ("Connection", "Database", "connect", "open_database", "read_only")

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A plain connection or one borrowed from a pool: what repositories take."""


_log = get_logger(__name__)

_REPLICA_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)
"""What acquiring a replica connection raises when the replica is down, starting or unreachable."""

REPLICA_RETRY_SECONDS = 5.0
"""How long look-ups use the primary after the replica could not be reached."""


@dataclass(slots=True)
class Database:
    """The pools a process uses: ``primary`` for writes, ``read`` for look-ups (the primary when unset)."""

    primary: asyncpg.Pool
    read: asyncpg.Pool
    replica_down_until: float = 0.0

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[Connection]:
        """A primary connection for the block; failing to get one is ``DependencyUnavailable``."""
        with translate_db_errors():
            async with self.primary.acquire() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """A connection for read-only look-ups: the replica when configured and reachable, else the primary.

        A replica that cannot be reached is skipped for ``REPLICA_RETRY_SECONDS`` (look-ups go to the
        primary meanwhile, and the outage is logged once), so a replica outage costs freshness of
        nothing and availability of nothing.
        """
        with translate_db_errors():
            conn: asyncpg.pool.PoolConnectionProxy | None = None
            if self.read is not self.primary and time.monotonic() >= self.replica_down_until:
                try:
                    conn = await self.read.acquire()
                except _REPLICA_DOWN as exc:
                    if not self.replica_down_until:
                        _log.warning("replica_unavailable", error=type(exc).__name__)
                    self.replica_down_until = time.monotonic() + REPLICA_RETRY_SECONDS
            if conn is None:
                async with self.primary.acquire() as primary_conn:
                    yield primary_conn
                return
            self.replica_down_until = 0.0
            try:
                yield conn
            finally:
                await self.read.release(conn)

    async def close(self) -> None:
        """Close both pools."""
        if self.read is not self.primary:
            await self.read.close()
        await self.primary.close()


async def _noop_reset(_conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query: handlers never change session state outside transactions.

    The default reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) costs a round trip per
    release and halves look-up throughput (see docs/benchmarks.md).
    """


def _statement_cache_size(enabled: bool) -> int:
    """asyncpg's prepared-statement cache size: none behind a transaction-mode pooler.

    With no cache asyncpg uses the unnamed statement and parses it again with every execution, so
    no statement outlives the transaction that PgBouncer gave a server connection to.
    """
    return 100 if enabled else 0


async def _pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min(settings.pool_min, settings.pool_max),
        max_size=settings.pool_max,
        command_timeout=settings.command_timeout,
        timeout=10,  # connecting; a black-holed database host must not hang readiness probes
        statement_cache_size=_statement_cache_size(settings.statement_cache),
        reset=_noop_reset,
    )
    assert pool is not None
    return pool


async def open_database(url: str, settings: DatabaseSettings) -> Database:
    """Open the primary pool, and the replica pool when ``settings.read_url`` is set."""
    primary = await _pool(url, settings)
    read = await _pool(settings.read_url, settings) if settings.read_url else primary
    return Database(primary=primary, read=read)


async def connect(url: str, *, statement_cache: bool = True, connect_timeout: float = 60) -> asyncpg.Connection:
    """One plain connection (CLI commands, migrations); ``statement_cache`` as ``database.statement_cache``."""
    return await asyncpg.connect(
        url, statement_cache_size=_statement_cache_size(statement_cache), timeout=connect_timeout
    )


async def read_only(conn: Connection) -> bool:
    """Whether the server behind ``conn`` refuses writes: a standby, or a primary being demoted in a failover."""
    return bool(await conn.fetchval("SELECT current_setting('transaction_read_only') = 'on'"))
