"""When a failed notification is tried again (pure): the schedule, jitter and ``Retry-After``.

The first attempt is immediate; ``schedule[i]`` is the wait before retry ``i + 1``; once every
wait is used up, the notification is exhausted. Each wait is varied at random by up to
``jitter`` (a fraction) so that a subscriber coming back is not hit by every queued retry at
the same instant. A ``Retry-After`` the subscriber sent (seconds or an HTTP date) replaces the
scheduled wait, capped at ``retry_after_max``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from schemas.types import ascii_int

__all__ = ("RetryPolicy", "parse_duration", "parse_retry_after", "parse_schedule")

_DURATION = re.compile(r" *([0-9]+(?:\.[0-9]+)?) *(ms|s|m|h|d)? *")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds of ``5``, ``5s``, ``250ms``, ``5m``, ``2h`` or ``1d``.

    Raises:
        ValueError: not a duration.
    """
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use 5s, 5m, 2h, 1d, 250ms)")
    return float(match.group(1)) * _UNIT[match.group(2)]


def parse_schedule(text: str) -> tuple[float, ...]:
    """A comma-separated retry schedule as seconds (empty: no retries).

    Raises:
        ValueError: an entry that is not a duration.
    """
    return tuple(parse_duration(part) for part in text.split(",") if part.strip())


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    text = value.strip(" \t")
    seconds = ascii_int(text)
    if seconds is not None:
        return float(seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The retry schedule of notifications (events and handshakes)."""

    schedule: tuple[float, ...]
    jitter: float = 0.2
    retry_after_max: float = 86_400.0
    handshake_attempts: int = 3

    def attempts(self, kind: str) -> int:
        """How many attempts a notification of this kind gets in all."""
        if kind == "handshake":
            return min(self.handshake_attempts, len(self.schedule) + 1)
        if kind == "heartbeat":
            return 1  # the next heartbeat is the retry
        return len(self.schedule) + 1

    def next_wait(self, kind: str, failed: int, retry_after: float | None, rng: random.Random) -> float | None:
        """Seconds until the next attempt after ``failed`` failed attempts, or None when exhausted."""
        if failed >= self.attempts(kind):
            return None
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        base = self.schedule[failed - 1]
        return max(0.0, base * (1 + self.jitter * (2 * rng.random() - 1)))
