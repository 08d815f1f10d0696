"""The broker's small pure parts: the circuit breaker, date ranges, kept results, single flight, queries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from broker.discovery.breaker import Breakers, BreakerState
from broker.discovery.controller import prefer_wait
from broker.discovery.dates import InvalidDate, parse_criterion, parse_range, sort_instant
from broker.discovery.pages import KeptResults
from broker.discovery.query import DOCUMENT_REFERENCE, IMAGING_STUDY, DiscoveryQuery, SearchKind
from broker.discovery.singleflight import SingleFlight
from registry import errors
from registry.config import FhirSettings
from registry.fhirapi.search import SearchQuery
from schemas.types import IHI_SYSTEM, SearchStyle
from tests.factories import make_ihi


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    """A success in between restarts the count; the threshold-th consecutive failure opens the breaker."""
    breakers = Breakers(threshold=3, cooldown=10, clock=Clock())
    assert breakers.failed("g") is False
    assert breakers.failed("g") is False
    breakers.succeeded("g")
    assert [breakers.failed("g") for _ in range(3)] == [False, False, True]
    assert breakers.state("g") is BreakerState.OPEN
    assert breakers.allow("g") is False
    assert breakers.allow("other") is True


def test_breaker_half_open_lets_one_probe_through() -> None:
    """After the cool-down one probe passes and the others wait; success closes, failure re-opens at once."""
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown=10, clock=clock)
    breakers.failed("g")
    clock.now += 9.5
    assert breakers.allow("g") is False
    assert breakers.retry_in("g") == pytest.approx(0.5)
    clock.now += 1
    assert breakers.state("g") is BreakerState.HALF_OPEN
    assert breakers.allow("g") is True
    assert breakers.allow("g") is False  # the probe is out
    assert breakers.failed("g") is True  # the probe failed: open again for a full cool-down
    assert breakers.state("g") is BreakerState.OPEN
    clock.now += 10
    assert breakers.allow("g") is True
    breakers.succeeded("g")
    assert breakers.state("g") is BreakerState.CLOSED
    assert breakers.allow("g") is True


def test_breaker_a_lost_probe_frees_its_slot_after_a_cool_down() -> None:
    """A probe that never reports (its search was cancelled) does not keep the gateway skipped forever."""
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown=5, clock=clock)
    breakers.failed("g")
    clock.now += 5
    assert breakers.allow("g") is True
    clock.now += 4
    assert breakers.allow("g") is False
    clock.now += 1
    assert breakers.allow("g") is True


def test_date_ranges_follow_precision_and_zone() -> None:
    """A year, month, day, minute and second each cover their whole span; offsets are turned into UTC."""
    assert parse_range("2024") == (datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    assert parse_range("2024-12")[1] == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_range("2024-02-28")[1] == datetime(2024, 2, 29, tzinfo=UTC)
    low, high = parse_range("2024-03-01T10:30+10:00")
    assert (low, (high - low).total_seconds()) == (datetime(2024, 3, 1, 0, 30, tzinfo=UTC), 60)
    low, high = parse_range("2024-03-01T10:30:15.25Z")
    assert (high - low).total_seconds() == pytest.approx(0.01)
    for bad in ("24", "2024-13", "2024-02-30", "2024-01-01T25:00", "yesterday"):
        with pytest.raises(InvalidDate):
            parse_range(bad)


@pytest.mark.parametrize(
    ("criterion", "value", "expected"),
    [
        ("2024-03", "2024-03-15", True),
        ("eq2024-03", "2024-03", True),
        ("eq2024-03-15", "2024-03", False),
        ("ne2024", "2023-12-31", True),
        ("gt2024-03-01", "2024-03-02", True),
        ("gt2024-03-01", "2024-03-01T23:00:00Z", False),
        ("lt2024", "2023-12-31T23:59:59Z", True),
        ("ge2024-03-01", "2024-03-01", True),
        ("ge2024-03-01", "2024-02-29", False),
        ("le2024-03-01", "2024-03-01T12:00:00Z", True),
        ("sa2024", "2025-01-01", True),
        ("sa2024", "2024-12-31", False),
        ("eb2024", "2023-12-31", True),
        ("ap2024-06", "2024", True),
    ],
)
def test_date_prefixes(criterion: str, value: str, expected: bool) -> None:
    """Each FHIR date prefix compares the element's range with the value's range as FHIR defines it."""
    assert parse_criterion(criterion).matches_text(value) is expected


def test_dates_that_cannot_match_or_sort() -> None:
    """Missing or malformed element values match no criterion and sort as undated; bad prefixes are refused."""
    assert parse_criterion("ge2020").matches_text(None) is False
    assert parse_criterion("ge2020").matches_text("soon") is False
    assert sort_instant("soon") is None
    assert sort_instant("2024") == datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    with pytest.raises(InvalidDate, match="prefix"):
        parse_criterion("xx2024")


def test_kept_results_by_token_for_the_same_search_only() -> None:
    """A kept result is found by its token for the same search only, until it expires; the oldest go first."""
    clock = Clock()
    kept: KeptResults[str] = KeptResults(seconds=60, size=2, clock=clock)
    first = kept.keep("search-1", "result-1")
    assert kept.get(first, "search-1") == "result-1"
    assert kept.get(first, "search-2") is None  # a token never reveals another search's result
    assert kept.get("unknown", "search-1") is None
    second = kept.keep("search-2", "result-2")
    third = kept.keep("search-3", "result-3")
    assert (kept.get(first, "search-1"), len(kept)) == (None, 2)
    clock.now += 61
    assert kept.get(second, "search-2") is None
    assert kept.get(third, "search-3") is None


async def test_single_flight_shares_one_call_between_concurrent_callers() -> None:
    """Concurrent callers of one key share one call (the later ones say they joined); the key is free after."""
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiting = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting)
    assert results == [(1, False)] + [(1, True)] * 4
    assert len(flights) == 0
    assert await flights.run("k", work) == (2, False)


async def test_single_flight_survives_a_caller_that_gives_up() -> None:
    """One caller cancelled does not cancel the shared call; errors reach every caller."""
    flights: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    impatient = asyncio.create_task(flights.run("k", work))
    patient = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == ("done", True)

    async def broken() -> str:
        raise RuntimeError("gateway code bug")

    with pytest.raises(RuntimeError, match="gateway code bug"):
        await flights.run("k", broken)


def _query(kind: SearchKind = IMAGING_STUDY, **params: str) -> DiscoveryQuery:
    items = list(params.items())
    return DiscoveryQuery.parse(kind, SearchQuery(items, FhirSettings(default_count=50, max_count=100)))


def test_query_reads_the_patient_and_the_filters() -> None:
    """Any patient spelling gives the IHI; filters are kept as sent; _count is passed on only when given."""
    ihi = make_ihi()
    query = _query(
        IMAGING_STUDY, **{"subject:identifier": f"{IHI_SYSTEM}|{ihi}", "modality": "CT,MR", "started": "ge2024"}
    )
    assert (query.ihi, query.count, query.page_size) == (ihi, None, 50)
    assert query.gateway_params(SearchStyle.IEF) == (
        ("patient.identifier", f"{IHI_SYSTEM}|{ihi}"),
        ("modality", "CT,MR"),
        ("started", "ge2024"),
    )
    assert query.gateway_params(SearchStyle.HARMONY) == (("patient", ihi), ("modality", "CT,MR"))
    counted = _query(patient=f"Patient/{ihi}", _count="500")
    assert (counted.count, counted.page_size) == (100, 100)
    assert counted.gateway_params(SearchStyle.IEF)[-1] == ("_count", "100")


def test_identical_searches_have_one_key() -> None:
    """The key ignores paging and the order of filters, and tells resource types and _count apart."""
    ihi = make_ihi()
    key = _query(patient=ihi, modality="CT", started="2024").key
    assert _query(started="2024", modality="CT", patient=ihi, _offset="10").key == key
    assert _query(patient=ihi, modality="CT", started="2024", _count="5").key != key
    assert _query(DOCUMENT_REFERENCE, patient=ihi).key != _query(patient=ihi).key


def test_query_refusals() -> None:
    """No patient and several patients are malformed; a bad modality, date or IHI is invalid."""
    ihi = make_ihi()
    with pytest.raises(errors.MalformedRequest):
        _query(modality="CT")
    with pytest.raises(errors.MalformedRequest):
        _query(patient=f"{ihi},{make_ihi()}")
    with pytest.raises(errors.InvalidInput, match="modality"):
        _query(patient=ihi, modality="C T")
    with pytest.raises(errors.InvalidInput, match="started"):
        _query(patient=ihi, started="ge2024-13")
    with pytest.raises(errors.InvalidInput):
        _query(patient="8003608166690504")


def _prefer(header: str | bytes | None) -> Any:
    """A request scope with one ``Prefer`` header (or none)."""
    raw = header.encode() if isinstance(header, str) else header
    return {"headers": [] if raw is None else [(b"prefer", raw)]}


def test_prefer_wait() -> None:
    """The wait preference is read among others, in seconds; anything else is no preference."""
    assert prefer_wait(_prefer("wait=5")) == 5
    assert prefer_wait(_prefer("respond-async, wait=10; x=1")) == 10
    assert prefer_wait(_prefer('Wait="3"')) == 3
    assert prefer_wait(_prefer("wait=soon")) is None
    assert prefer_wait(_prefer("return=minimal")) is None
    assert prefer_wait(_prefer(None)) is None
    assert prefer_wait(_prefer(b"wait=\xb2")) is None  # a superscript two (Latin-1): not an ASCII digit
