"""Merged results kept briefly under opaque tokens, so that the pages of one search come from one result.

A result of more than one page is kept under a random token that its paging links carry
(``_page_token``). A later page is read from it when the token is known to this process, has not
expired, and was made for the same search (same resource type, patient, filters and ``_count``):
a token never reveals another patient's result. Otherwise the search runs again. Kept in process
memory, bounded in number and age; N server processes keep N sets.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ("KeptResults",)

T = TypeVar("T")


class KeptResults(Generic[T]):
    """Results by token, at most ``size`` of them, each for ``seconds``."""

    def __init__(self, *, seconds: float, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._kept: OrderedDict[str, tuple[Hashable, T, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, key: Hashable, value: T) -> str:
        """Keep a result of the search ``key``; returns its new token."""
        now = self._clock()
        while self._kept:  # the oldest first: drop the expired, and any beyond the size
            oldest = next(iter(self._kept.values()))
            if oldest[2] > now and len(self._kept) < self._size:
                break
            self._kept.popitem(last=False)
        token = secrets.token_urlsafe(18)
        self._kept[token] = (key, value, now + self._seconds)
        return token

    def drop(self, matching: Callable[[Hashable], bool]) -> int:
        """Forget every result kept for a search ``matching`` selects (a patient's consent changed); how many."""
        gone = [token for token, (key, _, _) in self._kept.items() if matching(key)]
        for token in gone:
            del self._kept[token]
        return len(gone)

    def get(self, token: str, key: Hashable) -> T | None:
        """The result kept under ``token`` for the search ``key``; None when unknown, expired or another search's."""
        kept = self._kept.get(token)
        if kept is None or kept[0] != key:
            return None
        if kept[2] <= self._clock():
            del self._kept[token]
            return None
        return kept[1]
