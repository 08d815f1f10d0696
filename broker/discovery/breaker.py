"""Per-gateway circuit breakers (in-process): a gateway that keeps failing is skipped, not waited on.

Each gateway's breaker is *closed* (calls go through) until ``threshold`` consecutive calls fail;
then it is *open*: calls are refused at once for ``cooldown`` seconds. After that it is
*half-open*: one call (the probe) goes through while the others are still refused; the probe's
success closes the breaker, its failure opens it for another ``cooldown``. A probe that never
reports (its search was cancelled) frees the half-open slot after another ``cooldown``.

State is per server process: N processes learn about a failing gateway N times. The clock is
injectable so the state machine is tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("BreakerState", "Breakers")


class BreakerState(enum.StrEnum):
    """Where one gateway's breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing_since: float | None = None


class Breakers:
    """The circuit breakers of every gateway, keyed by service ID."""

    def __init__(self, *, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def state(self, key: str) -> BreakerState:
        """The breaker's state now (an open breaker whose cool-down has passed is half-open)."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - breaker.opened_at < self._cooldown:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, key: str) -> bool:
        """Whether a call may go through now; a half-open breaker lets one probe through at a time."""
        state = self.state(key)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        breaker = self._breakers[key]
        now = self._clock()
        if breaker.probing_since is not None and now - breaker.probing_since < self._cooldown:
            return False  # a probe is out
        breaker.probing_since = now
        return True

    def retry_in(self, key: str) -> float:
        """Seconds until an open breaker lets a probe through (0 when it is not open)."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.opened_at is None:
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - breaker.opened_at))

    def succeeded(self, key: str) -> None:
        """A call went well: the breaker closes and its failure count restarts."""
        self._breakers.pop(key, None)

    def failed(self, key: str) -> bool:
        """A call failed; returns True when this failure opened (or re-opened) the breaker."""
        breaker = self._breakers.setdefault(key, _Breaker())
        breaker.failures += 1
        probing = breaker.probing_since is not None
        breaker.probing_since = None
        if probing or (breaker.opened_at is None and breaker.failures >= self._threshold):
            breaker.opened_at = self._clock()
            return True
        return False
