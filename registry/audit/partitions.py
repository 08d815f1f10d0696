"""The audit trail's monthly partitions, made ahead of time.

Every audit row goes into the partition of its month (UTC, by ``recorded``); a row whose month has
no partition cannot be written, and its request is answered 503. So each server process and each
``ief-registry worker`` keeps this month and the next ``MONTHS_AHEAD`` made: once before it serves
or works, then every ``CHECK_SECONDS``. ``audit_ensure_months`` (a SECURITY DEFINER function of
the migration's role) makes them, so a server role that owns no table can. Making a month attaches
an empty table and waits for no one's transaction (0008_audit_months.sql).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from registry.log import get_logger

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository
    from registry.db.pool import Connection, Database

__all__ = ("CHECK_SECONDS", "MONTHS_AHEAD", "MonthKeeper", "add_months", "ensure_months", "this_month")

MONTHS_AHEAD = 2
"""Months made beyond the current one."""
CHECK_SECONDS = 3600.0
_RETRY_SECONDS = 60.0
_FIRST_RETRY_SECONDS = 5.0
_log = get_logger(__name__)


def this_month(now: datetime | None = None) -> date:
    """The first day of the current month (UTC)."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return today.replace(day=1)


def add_months(month: date, count: int) -> date:
    """The first day of the month ``count`` months after (or before) ``month``."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


async def ensure_months(conn: Connection, repository: AuditRepository, now: datetime | None = None) -> int:
    """Make this month and the next ``MONTHS_AHEAD`` where missing; how many were made."""
    current = this_month(now)
    return await repository.ensure_months(conn, current, add_months(current, MONTHS_AHEAD))


class MonthKeeper:
    """Keeps the audit partitions made ahead, in a server process or a worker."""

    def __init__(
        self,
        db: Database,
        repository: AuditRepository,
        *,
        interval: float = CHECK_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._repo = repository
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Make what is missing now (so the first request has its partition), then keep it up.

        A failure now (a lock not had in time, the database away) is logged and retried soon; it does
        not stop the process, whose requests answer 503 meanwhile only if this month has no partition.
        """
        first_wait = self._interval
        try:
            await self._ensure()
        except Exception as exc:  # noqa: BLE001 - see above
            _log.error("audit_months_failed", error=f"{type(exc).__name__}: {exc}")
            first_wait = min(self._interval, _FIRST_RETRY_SECONDS)
        self._task = asyncio.create_task(self._keep(first_wait), name="audit-months")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MonthKeeper]:
        """``start``, and ``stop`` at the end of the block."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop keeping."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _ensure(self) -> None:
        async with self._db.writer() as conn:
            made = await ensure_months(conn, self._repo, self._clock())
        if made:
            _log.info("audit_months_made", months=made)

    async def _keep(self, wait: float) -> None:
        while True:
            await asyncio.sleep(wait)
            try:
                await self._ensure()
            except Exception as exc:  # noqa: BLE001 - the keeper must outlive a database outage
                _log.error("audit_months_failed", error=f"{type(exc).__name__}: {exc}")
                wait = _RETRY_SECONDS
            else:
                wait = self._interval
