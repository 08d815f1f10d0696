"""Single flight: identical concurrent calls share one execution (in-process).

The first caller for a key starts the work as a task of its own; callers that arrive while it runs
wait for the same result. The task is shielded from the callers: one caller giving up (its client
went away) does not cancel the work the others wait for. Once the work ends the key is free again:
this shares work between concurrent callers, it caches nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ("SingleFlight",)

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one call per key at a time; concurrent callers of a key share its result."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The result of ``work()`` for ``key``, and whether this caller joined a flight already running.

        Raises:
            Exception: whatever ``work`` raised (to every caller of that flight).
        """
        task = self._flights.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(work())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._land(key, done))
        return await asyncio.shield(task), joined

    def _land(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a flight every caller abandoned logs no "never retrieved"
