"""Token buckets: requests per client, failed authentications per address. One set per server process.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; each request takes one.
An empty bucket refuses with ``RateLimited`` carrying the whole seconds until a token is back (at
least 1). N server processes keep N independent sets of buckets (documented in operations.md).
"""

from __future__ import annotations

import math
import time

from registry import errors

__all__ = ("RateLimiter",)

_MAX_BUCKETS = 10_000


class RateLimiter:
    """Token buckets by key (a client ID, or a remote address) with one default rate and burst."""

    __slots__ = ("_buckets", "_burst", "_rate", "message")

    def __init__(self, rate: float, burst: int, message: str) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, list[float]] = {}
        self.message = message

    def take(self, key: str, rate: float | None = None) -> None:
        """Take one token from ``key``'s bucket; ``rate`` overrides the default (same burst-to-rate ratio).

        Raises:
            RateLimited: the bucket is empty.
        """
        per_second = rate or self._rate
        burst = self._burst if rate is None else max(1.0, math.ceil(rate * self._burst / self._rate))
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = [burst, now]
        tokens = min(burst, bucket[0] + (now - bucket[1]) * per_second)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise errors.RateLimited(self.message, retry_after=max(1, math.ceil((1.0 - tokens) / per_second)))
        bucket[0] = tokens - 1.0

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled (idle keys): they would start full anyway."""
        for key, (tokens, last) in list(self._buckets.items()):
            if tokens + (now - last) * self._rate >= self._burst:
                del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            self._buckets.clear()
