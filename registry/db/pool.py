"""The asyncpg pools of one server process: primary, and an optional read replica."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from registry.db.errors import translate_db_errors

if TYPE_CHECKING:
    from registry.config import DatabaseSettings

__all__ = ("Connection", "Database", "connect", "open_database")

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
"""A plain connection or one borrowed from a pool: what repositories take."""


@dataclass(slots=True)
class Database:
    """The pools a process uses: ``primary`` for writes, ``read`` for look-ups (the primary when unset)."""

    primary: asyncpg.Pool
    read: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def writer(self) -> AsyncIterator[Connection]:
        """A primary connection for the block; failing to get one is ``DependencyUnavailable``."""
        with translate_db_errors():
            async with self.primary.acquire() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def reader(self) -> AsyncIterator[Connection]:
        """A connection for read-only look-ups (the replica when configured)."""
        with translate_db_errors():
            async with self.read.acquire() as conn:
                yield conn

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


async def _pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url,
        min_size=min(settings.pool_min, settings.pool_max),
        max_size=settings.pool_max,
        command_timeout=settings.command_timeout,
        timeout=10,  # connecting; a black-holed database host must not hang readiness probes
        statement_cache_size=100 if settings.statement_cache else 0,
        reset=_noop_reset,
    )
    assert pool is not None
    return pool


async def open_database(url: str, settings: DatabaseSettings) -> Database:
    """Open the primary pool, and the replica pool when ``settings.read_url`` is set."""
    primary = await _pool(url, settings)
    read = await _pool(settings.read_url, settings) if settings.read_url else primary
    return Database(primary=primary, read=read)


async def connect(url: str) -> asyncpg.Connection:
    """One plain connection (CLI commands, migrations)."""
    return await asyncpg.connect(url)
