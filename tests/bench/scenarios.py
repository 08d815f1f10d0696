"""What the benchmark sends: scenarios (one per phase) and the request builders they name.

A ``Scenario`` is plain data, so it crosses into the load generator process as JSON; the load
generator calls the named builder there and encodes every request before the clock starts. To add
a scenario (a federation hop, a broker fan-out, a notification round trip), write a builder that
yields ``Request`` values, add it to ``BUILDERS``, and add a ``Scenario`` to the run's phases.
Headers belong to the scenario and go on every request it sends (an ``Authorization: Bearer``
token, for instance).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = (
    "BUILDERS",
    "Request",
    "Scenario",
    "build_requests",
    "bulk_load_phase",
    "ihi",
    "reregister_phases",
    "standard_phases",
)


class Scenario(msgspec.Struct, frozen=True, kw_only=True):
    """One phase of a run: which requests, at what concurrency, for how long."""

    name: str
    """Label of the phase in the results table."""
    requests: str
    """Name of the builder in ``BUILDERS`` that makes the requests."""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    """Arguments of the builder (JSON values)."""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    """Headers sent with every request of the phase."""
    header_sets: list[dict[str, str]] = msgspec.field(default_factory=list)
    """Headers of many clients (one ``Authorization`` each): request ``n`` carries set ``n`` modulo their number
    (``headers`` win over them), so consecutive requests come from different clients."""
    concurrency: int = 32
    """Connections, each with one request in flight (HTTP/1.1 keep-alive)."""
    duration: float | None = None
    """Seconds measured, cycling through the requests; None sends each request exactly once."""
    warmup: float = 0.0
    """Seconds of load before measuring starts (timed phases only)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of a scenario; ``items`` counts the records it carries (batch requests)."""

    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"
    items: int = 1


@functools.cache
def _luhn_tables() -> tuple[int, list[int], list[int]]:
    """Luhn sums of the fixed prefix and of every three-digit group, by whether the group starts doubled.

    The 16-digit IHI is ``800360`` + a nine-digit counter + a check digit. Counting from the right,
    the check digit is position 0 and odd positions are doubled, so the counter's groups of three
    (positions 1-3, 4-6, 7-9) start doubled, undoubled and doubled.
    """

    def luhn_sum(digits: str, doubled_first: bool) -> int:
        total = 0
        for offset, char in enumerate(reversed(digits)):
            value = int(char)
            if (offset % 2 == 0) == doubled_first:
                value = value * 2 - 9 if value > 4 else value * 2
            total += value
        return total

    prefix = luhn_sum("800360", doubled_first=False)  # positions 10-15: the rightmost (10) is undoubled
    doubled = [luhn_sum(f"{n:03d}", doubled_first=True) for n in range(1000)]
    plain = [luhn_sum(f"{n:03d}", doubled_first=False) for n in range(1000)]
    return prefix, doubled, plain


def ihi(n: int) -> str:
    """The ``n``-th benchmark IHI: ``800360``, ``n`` in nine digits, and its Luhn check digit."""
    prefix, doubled, plain = _luhn_tables()
    total = prefix + doubled[n % 1000] + plain[n // 1000 % 1000] + doubled[n // 1_000_000 % 1000]
    return f"800360{n:09d}{(10 - total % 10) % 10}"


def _sample(start: int, stop: int, sample: int, seed: int) -> list[int]:
    population = range(start, stop)
    return random.Random(seed).sample(population, min(sample, len(population)))


def batch_load(*, service_id: str, start: int, stop: int, batch_size: int) -> Iterator[Request]:
    """``POST /registry/records:batch`` requests registering IHIs ``start`` to ``stop`` as active records."""
    tail = f'","serviceId":"{service_id}"}}'
    for first in range(start, stop, batch_size):
        last = min(first + batch_size, stop)
        body = "[" + ",".join(f'{{"ihi":"{ihi(n)}{tail}' for n in range(first, last)) + "]"
        yield Request("POST", "/registry/records:batch", body.encode(), items=last - first)


def put_status(*, service_id: str, start: int, stop: int, sample: int, seed: int = 1) -> Iterator[Request]:
    """``PUT`` requests that each change a loaded record: a sample archived in turn, then made active again.

    Cycling through them keeps every request a real change with a history entry, as long as a phase
    sends fewer than twice ``sample`` requests per pass and no other phase touches the sample.
    """
    keys = _sample(start, stop, sample, seed)
    for status in (b'{"status":"archived"}', b'{"status":"active"}'):
        for n in keys:
            yield Request("PUT", f"/registry/records/{ihi(n)}/{service_id}", status)


def put_active(*, service_id: str, start: int, stop: int) -> Iterator[Request]:
    """``PUT`` ``active`` to loaded, active records ``start`` to ``stop``: every request a re-registration (an
    event with a history entry since registrations are events; a no-op before)."""
    for n in range(start, stop):
        yield Request("PUT", f"/registry/records/{ihi(n)}/{service_id}", b'{"status":"active"}')


def reregister_phases(
    *, subscribed: int, service_id: str, concurrency: int, duration: float, headers: dict[str, str]
) -> list[Scenario]:
    """Re-registrations of the first half of the ``subscribed`` records (the patients with a subscription each),
    and status changes of the other half (registrations that fired events before registrations were events)."""
    warmup, half = min(2.0, duration / 5), subscribed // 2
    return [
        Scenario(
            name=f"re-register c={concurrency}", requests="put_active",
            params={"service_id": service_id, "start": 0, "stop": half}, headers=headers,
            concurrency=concurrency, duration=duration, warmup=warmup,
        ),
        Scenario(
            name=f"status change c={concurrency}", requests="put_status",
            params={"service_id": service_id, "start": half, "stop": subscribed, "sample": subscribed - half},
            headers=headers,
            concurrency=concurrency, duration=duration, warmup=warmup,
        ),
    ]  # fmt: skip


def get_records(*, start: int, stop: int, sample: int, seed: int = 2) -> Iterator[Request]:
    """``GET /registry/records/{ihi}`` for a random sample of loaded IHIs (each has one active record)."""
    for n in _sample(start, stop, sample, seed):
        yield Request("GET", f"/registry/records/{ihi(n)}")


def ping() -> Iterator[Request]:
    """A bare ``GET /``: what the load generator itself can drive against a trivial server."""
    yield Request("GET", "/")


BUILDERS: dict[str, Callable[..., Iterator[Request]]] = {
    "batch_load": batch_load,
    "put_status": put_status,
    "put_active": put_active,
    "get_records": get_records,
    "ping": ping,
}
"""Request builders by the name a ``Scenario`` gives."""


def build_requests(scenario: Scenario) -> list[Request]:
    """Every request of a scenario, in order."""
    return list(BUILDERS[scenario.requests](**scenario.params))


def bulk_load_phase(
    *,
    records: int,
    service_id: str,
    batch_size: int,
    concurrency: int,
    headers: dict[str, str],
    start: int = 0,
    grown: int | None = None,
) -> Scenario:
    """Register records ``start`` to ``records`` (their IHIs) through the batch endpoint, each request once.

    Named for how it sends (``bulk load 4x5,000``: four requests of 5,000 items in flight), and, when it
    adds to earlier records, for how many there are at its end.
    """
    name = f"bulk load {concurrency}x{batch_size:,}"
    return Scenario(
        name=name if grown is None else f"{name} to {records:,}", requests="batch_load",
        concurrency=concurrency, headers=headers,
        params={"service_id": service_id, "start": start, "stop": records, "batch_size": batch_size},
    )  # fmt: skip


def standard_phases(
    *,
    records: int,
    service_id: str,
    concurrency: int,
    duration: float,
    headers: dict[str, str],
    sample: int = 50_000,
    round_: int = 0,
    rounds: int = 1,
    first: int = 0,
) -> list[Scenario]:
    """The timed phases of a run over ``records`` loaded records, loaded and unloaded (c=1).

    Each PUT phase owns a quarter of the records and the GET phases the other half, so one phase's
    writes never turn another's into no-ops. When the phases are repeated (``rounds``), each
    round's PUT phases own their own slice of those quarters, for the same reason. With ``first``,
    the phases use only records ``first`` to ``records`` (those loaded after earlier phases ran).
    """
    quarter, half = (records - first) // 4, first + (records - first) // 2
    share = quarter // rounds
    first += round_ * share
    warmup = min(2.0, duration / 5)
    common: dict[str, Any] = {"headers": headers, "duration": duration, "warmup": warmup}
    return [
        Scenario(
            name=f"PUT c={concurrency}", requests="put_status", concurrency=concurrency,
            params={"service_id": service_id, "start": first, "stop": first + share, "sample": sample}, **common,
        ),
        Scenario(
            name=f"GET c={concurrency}", requests="get_records", concurrency=concurrency,
            params={"start": half, "stop": records, "sample": sample}, **common,
        ),
        Scenario(
            name="PUT c=1", requests="put_status", concurrency=1,
            params={"service_id": service_id, "start": quarter + first, "stop": quarter + first + share,
                    "sample": sample},
            **common,
        ),
        Scenario(
            name="GET c=1", requests="get_records", concurrency=1,
            params={"start": half, "stop": records, "sample": sample, "seed": 3}, **common,
        ),
    ]  # fmt: skip
