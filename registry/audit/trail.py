"""``AuditTrail``: how each process records the audit, and keeps the hash chain sealed.

- Writes: a service wraps its write transaction in ``trail.transaction(conn)`` and says how the
  request ends (``done``); the request's row is inserted in that transaction, so the write and its
  audit row commit together or not at all. A write that is one statement can carry its row in that
  statement instead (``rows_for_outcomes``, then ``committed``): one round trip, not four.
- Everything else (reads, refusals, failed writes): ``AuditMiddleware`` calls ``record`` before the
  response starts; the row goes through the group-commit ``AuditWriter``.
- The sealer task appends committed rows to the hash chain every ``seal_interval`` while there is
  work (and now and then anyway, for rows other processes left), closes months that have ended and
  signs their checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING

from registry.audit.chain import seal
from registry.audit.context import WriteOutcome, current
from registry.audit.writer import AuditWriter
from registry.log import get_logger

if TYPE_CHECKING:
    from registry.audit.checkpoints import CheckpointSigner
    from registry.audit.context import AuditContext
    from registry.audit.repository import AuditRepository
    from registry.config import AuditSettings
    from registry.db.pool import Connection, Database
    from schemas.audit import AuditEntry

__all__ = ("AuditTrail",)

_log = get_logger(__name__)
_IDLE_TICKS = 20
"""Seal anyway every this many intervals, for rows other (perhaps stopped) processes left."""
_BACKOFF_TICKS = 20
_FINAL_SEAL_SECONDS = 5
_SEAL_BATCH = 1000
"""Rows hashed per sealing transaction: bounds how long one run holds the event loop (about 15 ms)."""


class AuditTrail:
    """The audit recorder of one server process."""

    def __init__(self, repository: AuditRepository, settings: AuditSettings, *, observer: str) -> None:
        self._repo = repository
        self._settings = settings
        self.observer = observer
        self._db: Database | None = None
        self._writer: AuditWriter | None = None
        self._sealer: asyncio.Task[None] | None = None
        self._signer: CheckpointSigner | None = None
        self._dirty = True
        self._reading = False  # a read is inserting its own row (idle_read)

    async def start(self, db: Database, *, write_timeout: float, signer: CheckpointSigner) -> None:
        """Start the group writer and the sealer (in the server's lifespan); ``signer`` signs checkpoints."""
        self._db = db
        self._signer = signer
        self._writer = AuditWriter(
            db,
            self._repo,
            flush_interval=self._settings.flush_interval_ms / 1000,
            max_rows=self._settings.flush_max_rows,
            concurrency=self._settings.flush_concurrency,
            timeout=write_timeout,
            on_flush=self.poke,
        )
        self._writer.start()
        self._sealer = asyncio.create_task(self._seal_forever(), name="audit-sealer")

    async def stop(self) -> None:
        """Flush queued rows, stop the sealer, and seal once more."""
        if self._writer is not None:
            await self._writer.close()
        if self._sealer is not None:
            self._sealer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sealer
            with contextlib.suppress(TimeoutError):  # an unreachable database must not hold up shutdown
                async with asyncio.timeout(_FINAL_SEAL_SECONDS):
                    await self._seal_once()

    def poke(self) -> None:
        """Tell the sealer there are new rows."""
        self._dirty = True

    @contextlib.asynccontextmanager
    async def transaction(self, conn: Connection) -> AsyncIterator[WriteOutcome]:
        """A write transaction that carries the request's audit row.

        The row is inserted after the writes, inside the transaction, when the block has called
        ``done``; the request counts as audited only once the transaction has committed. A block
        that raises rolls everything back and leaves the audit to the middleware (as a failure).
        """
        context = current()
        outcome = WriteOutcome()
        wrote = False
        async with conn.transaction():
            yield outcome
            if context is not None and context.interaction is not None and outcome.status is not None:
                entry = context.entry(status=outcome.status, observer=self.observer, write=outcome)
                await self._repo.insert(conn, [entry])
                wrote = True
        if wrote and context is not None:
            context.audited = True
            self.poke()

    def rows_for_outcomes(self, outcomes: Mapping[str, WriteOutcome]) -> list[tuple[str, AuditEntry]] | None:
        """The request's audit row for each way a one-statement write may end, by outcome name.

        The statement inserts the row of the outcome that happened, in itself (so the write and
        its row commit together); call ``committed`` once it has. None when the request is not
        audited (no request, or a route without ``opt["audit"]``): write without a row.
        """
        context = current()
        if context is None or context.interaction is None:
            return None
        return context.entries(outcomes, observer=self.observer)

    @contextlib.contextmanager
    def idle_read(self) -> Iterator[AuditEntry | None]:
        """The row of a read (ending 200) for the read's own statement to insert, when the trail is idle.

        With nothing queued or being inserted by the group writer and no other read inserting its own
        row, a read that carries its row saves a round trip and a hand-over (a look-up at a time: one
        statement instead of two); under load the rows go through the group writer, which commits many
        at once. Yields None otherwise, or when the request is not audited: read without a row (the
        middleware writes it). Call ``committed`` once the statement that inserted it has committed.
        """
        context = current()
        if self._reading or self._writer is None or not self._writer.idle or context is None:
            yield None
            return
        if context.interaction is None:
            yield None
            return
        self._reading = True
        try:
            yield context.entry(status=200, observer=self.observer)
        finally:
            self._reading = False

    async def insert_now(self, conn: Connection, entry: AuditEntry) -> None:
        """Insert one row made outside an HTTP request (an operator's command) in the caller's transaction."""
        await self._repo.insert(conn, [entry])
        self.poke()

    def committed(self) -> None:
        """The one-statement write that carried the request's row has committed: the request is audited."""
        context = current()
        if context is not None:
            context.audited = True
            self.poke()

    async def record(self, context: AuditContext, status: int) -> None:
        """Write the row of a request that ends with ``status`` (group commit); return once it is committed.

        Raises:
            AuditUnavailable: the row could not be written.
        """
        assert self._writer is not None, "the audit trail is started in the lifespan"
        await self._writer.write(context.entry(status=status, observer=self.observer))
        context.audited = True

    async def _seal_once(self) -> str:
        """One sealing run: ``done``, ``more`` (rows remain, or another sealer was at work) or ``failed``."""
        assert self._db is not None, "the audit trail is started in the lifespan"
        assert self._signer is not None, "the audit trail is started in the lifespan"
        grace = self._settings.close_grace_seconds
        try:
            async with self._db.writer() as conn:
                result = await seal(conn, self._repo, self._signer, limit=_SEAL_BATCH, close_grace=grace)
                # A backlog, or a month just sealed: keep going, letting requests in between runs.
                while result.sealed == _SEAL_BATCH or result.checkpointed:
                    if result.checkpointed:
                        _log.info("audit_month_sealed", month=result.checkpointed, head=result.head_seq)
                    await asyncio.sleep(0)
                    result = await seal(conn, self._repo, self._signer, limit=_SEAL_BATCH, close_grace=grace)
        except Exception as exc:  # noqa: BLE001 - the sealer must outlive any one failure
            _log.error("audit_seal_failed", error=f"{type(exc).__name__}: {exc}")
            return "failed"
        if result.sealed:
            _log.debug("audit_sealed", rows=result.sealed, head=result.head_seq)
        return "more" if result.more or not result.locked else "done"

    async def _seal_forever(self) -> None:
        interval = self._settings.seal_interval_ms / 1000
        idle = 0
        while True:
            await asyncio.sleep(interval)
            idle += 1
            if not self._dirty and idle < _IDLE_TICKS:
                continue
            idle, self._dirty = 0, False
            state = await self._seal_once()
            if state != "done":
                self._dirty = True
            if state == "failed":
                await asyncio.sleep(interval * _BACKOFF_TICKS)
