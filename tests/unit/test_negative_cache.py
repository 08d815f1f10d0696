"""The negative cache of peers that failed (``federation.backoff``), on a clock the test moves."""

from __future__ import annotations

import pytest

from federation.backoff import FailureCache
from schemas.types import UnresolvedReason


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_peer_is_remembered_until_its_entry_expires() -> None:
    """A failure is remembered for the TTL and forgotten at its end."""
    clock = Clock()
    cache = FailureCache(30.0, clock=clock)
    cache.note("b", UnresolvedReason.TIMEOUT, "no answer within 5.00 s")
    clock.now += 29.9
    failure = cache.recent("b")
    assert failure is not None
    assert (failure.reason, failure.detail) == (UnresolvedReason.TIMEOUT, "no answer within 5.00 s")
    clock.now += 0.1
    assert cache.recent("b") is None


def test_the_description_says_what_when_and_for_how_long() -> None:
    """A failed-recently detail names the first failure, how long ago it was, and how long it still lasts."""
    clock = Clock()
    cache = FailureCache(30.0, clock=clock)
    cache.note("b", UnresolvedReason.ERROR_RESPONSE, "it answered 500")
    clock.now += 10.0
    failure = cache.recent("b")
    assert failure is not None
    assert (
        cache.describe(failure) == "it failed 10.0 s ago (error-response: it answered 500); not asked again for 20.0 s"
    )


@pytest.mark.parametrize(
    "reason",
    [
        UnresolvedReason.TIMEOUT,
        UnresolvedReason.UNREACHABLE,
        UnresolvedReason.ERROR_RESPONSE,
        UnresolvedReason.INVALID_RESPONSE,
        UnresolvedReason.TOO_LARGE,
        UnresolvedReason.UNAUTHORIZED,
    ],
)
def test_the_peers_own_failures_are_remembered(reason: UnresolvedReason) -> None:
    """No answer, no connection, an error, a bad or oversized answer and a refusal are the peer's own failures."""
    cache = FailureCache(30.0, clock=Clock())
    cache.note("b", reason, "x")
    assert cache.recent("b") is not None


@pytest.mark.parametrize(
    "reason",
    [
        UnresolvedReason.LOOP,
        UnresolvedReason.HOP_LIMIT,
        UnresolvedReason.BUDGET,
        UnresolvedReason.DEADLINE,
        UnresolvedReason.NOT_A_MEMBER,
        UnresolvedReason.FAILED_RECENTLY,
    ],
)
def test_limits_of_one_look_up_are_not_remembered(reason: UnresolvedReason) -> None:
    """Loops, hop limit, budget, deadline, not-a-member and failed-recently are not failures of the peer."""
    cache = FailureCache(30.0, clock=Clock())
    cache.note("b", reason, "x")
    assert cache.recent("b") is None


def test_a_ttl_of_zero_turns_the_cache_off() -> None:
    """With a TTL of 0 nothing is remembered."""
    cache = FailureCache(0.0, clock=Clock())
    cache.note("b", UnresolvedReason.TIMEOUT, "slow")
    assert cache.recent("b") is None


def test_a_new_failure_restarts_the_entry() -> None:
    """A peer that fails again (after its entry expired and it was asked) is remembered from the new failure."""
    clock = Clock()
    cache = FailureCache(10.0, clock=clock)
    cache.note("b", UnresolvedReason.TIMEOUT, "slow")
    clock.now += 11.0
    cache.note("b", UnresolvedReason.UNREACHABLE, "no connection")
    clock.now += 9.0
    failure = cache.recent("b")
    assert failure is not None
    assert failure.reason is UnresolvedReason.UNREACHABLE


def test_the_cache_is_bounded_and_drops_the_oldest() -> None:
    """Past its size, the oldest entry is dropped first."""
    cache = FailureCache(60.0, max_entries=2, clock=Clock())
    for peer in ("b", "c", "d"):
        cache.note(peer, UnresolvedReason.TIMEOUT, "slow")
    assert [cache.recent(peer) is not None for peer in ("b", "c", "d")] == [False, True, True]
