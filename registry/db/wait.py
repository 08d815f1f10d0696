"""Waiting at start for a database that is not there yet: a failover in progress, a server still starting.

``serve`` and ``worker`` call ``wait_for_database`` before their first statement. It tries to open a
session that may write, again and again with a growing pause (up to 2 s), for at most
``database.startup_wait`` seconds, logging ``database_waiting`` with the reason at the first failure
and every 10 s after, and ``database_reachable`` once through. What will not heal by waiting (a
wrong password or role, a database that does not exist) is not waited for.

During a Patroni failover a new connection meets, in turn: the dead leader (refused, or cut by the
proxy), no leader at all (the proxy closes the connection at once), and the promoted standby. A
proxy whose health check has not yet moved may also route to a standby: that session is read-only
and counts as not there yet.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import asyncpg

from registry import errors
from registry.db.errors import translate_db_errors
from registry.db.pool import connect, read_only
from registry.log import get_logger

if TYPE_CHECKING:
    from registry.config import DatabaseSettings

__all__ = ("wait_for_database",)

_log = get_logger(__name__)

_WILL_NOT_HEAL = (asyncpg.InvalidAuthorizationSpecificationError, asyncpg.InvalidCatalogNameError)
"""Configuration errors: waiting would only delay the message."""

_LOG_EVERY = 10.0
_PAUSE_MAX = 2.0
_CONNECT_TIMEOUT = 10.0


async def _writable_session(url: str, settings: DatabaseSettings, connect_timeout: float) -> None:
    """Open one session and close it; ``DependencyUnavailable`` when none can be had or it may not write."""
    with translate_db_errors():
        conn = await connect(url, statement_cache=settings.statement_cache, connect_timeout=connect_timeout)
        try:
            if await read_only(conn):
                raise errors.DependencyUnavailable("the database refuses writes (a standby, or a leader being demoted)")
        finally:
            await conn.close()


def _reason(exc: errors.DependencyUnavailable) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else exc.message


async def wait_for_database(url: str, settings: DatabaseSettings) -> None:
    """Return once ``url`` gives a session that may write; wait for it up to ``settings.startup_wait`` seconds.

    Raises:
        DependencyUnavailable: still unreachable when the time is up (at once for a configuration
            error); the message says why.
    """
    started = time.monotonic()
    deadline = started + settings.startup_wait
    pause, attempts, next_log = 0.1, 0, started
    while True:
        attempts += 1
        try:
            await _writable_session(url, settings, max(1.0, min(_CONNECT_TIMEOUT, deadline - time.monotonic())))
        except errors.DependencyUnavailable as exc:
            reason = _reason(exc)
            now = time.monotonic()
            if isinstance(exc.__cause__, _WILL_NOT_HEAL) or now >= deadline:
                waited = f" within {settings.startup_wait:g} s" if settings.startup_wait else ""
                raise errors.DependencyUnavailable(f"the database could not be reached{waited}: {reason}") from exc
            if now >= next_log:
                _log.warning(
                    "database_waiting", reason=reason, attempts=attempts, waited_seconds=round(now - started, 1),
                    limit_seconds=settings.startup_wait,
                )  # fmt: skip
                next_log = now + _LOG_EVERY
            await asyncio.sleep(min(pause, max(0.0, deadline - now)))
            pause = min(_PAUSE_MAX, pause * 2)
            continue
        if attempts > 1:
            _log.info("database_reachable", attempts=attempts, waited_seconds=round(time.monotonic() - started, 1))
        return
