"""The negative cache: peer registries that failed a moment ago are not asked again for a short while.

Like a DNS resolver's cache of resolution failures (RFC 9520), it spares a look-up the wait for a
peer that is down, and spares a struggling peer the traffic. It is kept per server process, in
memory (N processes learn a failure N times); ``federation.negative_cache_seconds`` sets how long
an entry lasts, 0 turns it off. Only a peer's own failures are cached (no answer, a bad answer, a
refusal), never the limits of one look-up (loop, hop limit, budget, deadline).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from schemas.types import UnresolvedReason

__all__ = ("CACHED_REASONS", "Failure", "FailureCache")

CACHED_REASONS = frozenset(
    {
        UnresolvedReason.TIMEOUT,
        UnresolvedReason.UNREACHABLE,
        UnresolvedReason.ERROR_RESPONSE,
        UnresolvedReason.INVALID_RESPONSE,
        UnresolvedReason.TOO_LARGE,
        UnresolvedReason.UNAUTHORIZED,
    }
)
"""The reasons that are a peer's own failure, and so are remembered."""


@dataclass(frozen=True, slots=True)
class Failure:
    """How a peer failed, and until when it is not asked again (monotonic seconds)."""

    reason: UnresolvedReason
    detail: str
    at: float
    until: float


class FailureCache:
    """Recent failures by peer service ID, bounded in size (the oldest entry goes first)."""

    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, Failure] = OrderedDict()

    def note(self, service_id: str, reason: UnresolvedReason, detail: str) -> None:
        """Remember that a peer failed now (reasons that are not the peer's own failure are ignored)."""
        if self._ttl <= 0 or reason not in CACHED_REASONS:
            return
        now = self._clock()
        self._entries.pop(service_id, None)
        self._entries[service_id] = Failure(reason, detail, now, now + self._ttl)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def recent(self, service_id: str) -> Failure | None:
        """The peer's failure if it is still remembered, else None (an expired entry is dropped)."""
        failure = self._entries.get(service_id)
        if failure is None:
            return None
        if self._clock() >= failure.until:
            del self._entries[service_id]
            return None
        return failure

    def describe(self, failure: Failure) -> str:
        """The detail of a ``failed-recently`` report: what happened, how long ago, for how much longer."""
        now = self._clock()
        return (
            f"it failed {now - failure.at:.1f} s ago ({failure.reason}: {failure.detail}); "
            f"not asked again for {max(0.0, failure.until - now):.1f} s"
        )
