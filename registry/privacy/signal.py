"""The consent-change signal: every server process hears, within moments, that a patient's Consents changed.

Disclosures never cache a patient's policy: it is read in the same query as the records (ADR 0026),
so a change is obeyed by every process on its next request. What a process does keep in memory is
told here: the broker's results kept for paging (dropped for that patient), and, when look-ups read
from a streaming replica, which patients changed in the last ``window`` seconds (their look-ups read
from the primary until the replica has surely caught up).

The signal is PostgreSQL's ``NOTIFY ief_consent_changes, '<IHI>'``, sent by the Consent trigger when
the write commits. ``LISTEN`` needs a session of its own: the listener connects to
``database.direct_url`` when set (past a transaction-mode pooler), reconnects when the connection
drops, and treats every patient as changed while it is not listening (so nothing stale is read).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import asyncpg

from registry.log import get_logger, ihi_hash

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("CHANNEL", "ConsentSignal")

CHANNEL = "ief_consent_changes"
_RETRY_SECONDS = 1.0
_log = get_logger("registry.privacy")


class ConsentSignal:
    """Listens for consent changes and tells this process's holders of patient state."""

    def __init__(self, url: str, *, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._url = url
        self._window = window
        self._clock = clock
        self._changed: dict[str, float] = {}
        self._forgetters: list[Callable[[str], object]] = []
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def on_change(self, forget: Callable[[str], object]) -> None:
        """Call ``forget(ihi)`` whenever a patient's Consents change."""
        self._forgetters.append(forget)

    def recently_changed(self, ihi: str) -> bool:
        """Whether this patient's Consents changed within the window, or this process cannot tell (not listening)."""
        if not self.listening.is_set():
            return True
        when = self._changed.get(ihi)
        return when is not None and self._clock() - when < self._window

    async def start(self) -> None:
        """Start listening (in the background, reconnecting as needed)."""
        self._task = asyncio.create_task(self._run(), name="consent-signal")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def _close(self) -> None:
        self.listening.clear()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None

    async def _run(self) -> None:
        while True:
            if self._connection is None or self._connection.is_closed():
                await self._close()
                try:
                    self._connection = await asyncpg.connect(self._url)
                    await self._connection.add_listener(CHANNEL, self._notified)
                except (OSError, asyncpg.PostgresError) as exc:
                    _log.warning("consent_listen_failed", error=f"{type(exc).__name__}: {exc}")
                    await self._close()
                else:
                    self.listening.set()
            await asyncio.sleep(_RETRY_SECONDS)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        ihi = str(payload)
        now = self._clock()
        self._changed[ihi] = now
        if len(self._changed) > 100_000:  # keep only what is still within the window
            self._changed = {k: v for k, v in self._changed.items() if now - v < self._window}
        for forget in self._forgetters:
            forget(ihi)
        _log.info("consent_changed", ihi_hash=ihi_hash(ihi))
