"""Group commit of audit rows: many concurrent requests' rows in one insert.

``write`` queues a row and waits until the insert that carries it has committed. One flusher task
per process takes what is queued (at most ``max_rows`` at a time, after an optional gathering
wait of ``flush_interval`` that a full group or shutdown cuts short) and inserts it in one
statement; up to ``concurrency`` inserts are in flight at once, each on its own connection, and
while all are, the next group gathers. Several in flight keep a row from waiting out another
group's commit before its own starts (with one, a row that arrives during a commit waits for
two); PostgreSQL then flushes the WAL of commits that arrive together once. A failed insert
fails every request in its group with ``AuditUnavailable``, so no response goes out without its
row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from registry import errors
from registry.log import get_logger

if TYPE_CHECKING:
    from registry.audit.repository import AuditRepository
    from registry.db.pool import Database
    from schemas.audit import AuditEntry

__all__ = ("AuditUnavailable", "AuditWriter")

_log = get_logger(__name__)


class AuditUnavailable(errors.DependencyUnavailable):
    """The audit row of a request could not be written: the request must not be answered."""


class AuditWriter:
    """Queues audit rows and inserts them in groups (one flusher task per process)."""

    def __init__(
        self,
        db: Database,
        repository: AuditRepository,
        *,
        flush_interval: float,
        max_rows: int,
        timeout: float,
        concurrency: int = 1,
        on_flush: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._repo = repository
        self._interval = flush_interval
        self._max_rows = max_rows
        self._timeout = timeout
        self._on_flush = on_flush
        self._queue: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # cuts the gathering wait short: the server stops, or a group is full
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing queued and no insert in flight."""
        return not self._queue and not self._in_flight

    def start(self) -> None:
        """Start the flusher task."""
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Flush what is queued, then stop the flusher."""
        self._closing = True
        self._wake.set()
        self._hurry.set()
        if self._task is not None:
            await self._task

    async def write(self, entry: AuditEntry) -> None:
        """Queue one row and return once it is committed.

        Raises:
            AuditUnavailable: the row could not be written (or the writer is stopped).
        """
        if self._closing or self._task is None or self._task.done():
            raise AuditUnavailable("the audit trail is not accepting rows (the server is stopping)")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, future))
        self._wake.set()
        if len(self._queue) >= self._max_rows:
            self._hurry.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._queue:
                if self._closing:
                    await asyncio.gather(*self._in_flight)
                    return
                self._wake.clear()
                continue
            if self._interval and len(self._queue) < self._max_rows and not self._closing:
                with contextlib.suppress(TimeoutError):  # asyncio.timeout never turns a cancellation into one
                    async with asyncio.timeout(self._interval):
                        await self._hurry.wait()
            if not self._closing:
                self._hurry.clear()
            await self._slots.acquire()  # while every slot is busy, the group keeps gathering
            group, self._queue = self._queue[: self._max_rows], self._queue[self._max_rows :]
            task = asyncio.create_task(self._flush(group), name="audit-insert")
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _flush(self, group: list[tuple[AuditEntry, asyncio.Future[None]]]) -> None:
        try:
            await self._insert(group)
        finally:
            self._slots.release()

    async def _insert(self, group: list[tuple[AuditEntry, asyncio.Future[None]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout), self._db.writer() as conn:
                await self._repo.insert(conn, [entry for entry, _ in group])
        except Exception as exc:  # noqa: BLE001 - any failure fails the group's requests, never the flusher
            _log.error("audit_write_failed", rows=len(group), error=f"{type(exc).__name__}: {exc}")
            for _, future in group:
                if not future.done():
                    future.set_exception(AuditUnavailable("the audit trail cannot be written"))
            return
        for _, future in group:
            if not future.done():
                future.set_result(None)
        self._on_flush()
