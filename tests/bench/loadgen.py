"""A lean HTTP/1.1 keep-alive load generator, run in its own process: ``python -m tests.bench.loadgen``.

It reads one ``LoadSpec`` (JSON) on stdin and writes one ``LoadResult`` (JSON) on stdout. Every
request is encoded to bytes before the clock starts; each connection is an ``asyncio.Protocol``
with one request in flight, parsing just enough of the response (status, ``Content-Length`` or
chunked framing) to know where it ends. General HTTP clients spend more CPU per request than the
server under test on a small machine; this one reaches several times the server's rate (the run
measures it against a trivial server and prints it).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time

import msgspec

from tests.bench.scenarios import Request, Scenario, build_requests

__all__ = ("LoadResult", "LoadSpec", "encode_request", "response_end", "run_load")


class LoadSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where to send a scenario."""

    host: str
    port: int
    scenario: Scenario
    more_ports: list[int] = msgspec.field(default_factory=list)
    """Ports of further server processes on the same host: connections are spread over every port in turn."""


class LoadResult(msgspec.Struct, kw_only=True):
    """What one scenario measured (only requests started after the warm-up count)."""

    scenario: str
    concurrency: int
    requests: int
    items: int
    """Records carried by the successful requests (batch items; 1 per ordinary request)."""
    errors: int
    """Responses other than 2xx, and requests that failed (connection lost)."""
    statuses: dict[str, int]
    seconds: float
    rate: float
    """Requests per second."""
    item_rate: float
    """Items per second (records per second for a bulk load)."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float
    """Cores the load generator itself used on average (user + system CPU / wall time)."""
    completed: int = 0
    """Every request answered, the warm-up's included (what the server did in the phase, for per-request costs)."""
    completed_items: int = 0
    """Items carried by every successful request, the warm-up's included."""


class _ConnectionLost(Exception):
    """The server closed the connection or it failed before a full response arrived."""


def encode_request(request: Request, host: str, headers: dict[str, str]) -> bytes:
    """The request as bytes on the wire, with the scenario's headers."""
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if request.body or request.method in {"POST", "PUT", "PATCH"}:
        lines += [f"Content-Type: {request.content_type}", f"Content-Length: {len(request.body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body


def _chunked_end(buffer: bytearray, start: int) -> int | None:
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            return None if trailer_end < 0 else trailer_end + 4
        position += size + 2
        if position > len(buffer):
            return None


def response_end(buffer: bytearray) -> tuple[int, int] | None:
    """(status, end of the response) once a full response is buffered; None while it is incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    status = int(head[9:12])
    length_at = head.find(b"\r\ncontent-length:")
    if length_at >= 0:
        value_end = head.find(b"\r\n", length_at + 2)
        length = int(head[length_at + 17 : value_end if value_end >= 0 else len(head)])
        end = head_end + 4 + length
        return (status, end) if len(buffer) >= end else None
    if b"\r\ntransfer-encoding: chunked" in head:
        chunked = _chunked_end(buffer, head_end + 4)
        return None if chunked is None else (status, chunked)
    return status, head_end + 4  # no body (204, 304)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        found = response_end(self._buffer)
        if found is not None:
            status, end = found
            del self._buffer[:end]
            self._waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(_ConnectionLost(str(exc or "closed by the server")))

    async def send(self, raw: bytes) -> int:
        """Send one request and return the response status."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        """Close the connection."""
        if self._transport is not None:
            self._transport.close()


class _Recorder:
    """Shared state of one run: the next request, and what was measured."""

    def __init__(self, requests: list[tuple[bytes, int]], *, cycle: bool) -> None:
        self._requests = requests
        self._cycle = cycle
        self._next = 0
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.items = 0
        self.errors = 0
        self.completed = 0
        self.completed_items = 0

    def take(self) -> tuple[bytes, int] | None:
        if self._next >= len(self._requests):
            if not self._cycle:
                return None
            self._next = 0
        request = self._requests[self._next]
        self._next += 1
        return request

    def record(self, status: int | None, latency: float, items: int) -> None:
        key = str(status) if status is not None else "failed"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        self.latencies.append(latency)
        if status is not None and 200 <= status < 300:
            self.items += items
        else:
            self.errors += 1


async def _open(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


async def _worker(spec: LoadSpec, port: int, recorder: _Recorder, measure_from: float, until: float | None) -> None:
    connection = await _open(spec.host, port)
    clock = time.perf_counter
    try:
        while True:
            started = clock()
            if until is not None and started >= until:
                return
            taken = recorder.take()
            if taken is None:
                return
            raw, items = taken
            status: int | None
            try:
                status = await connection.send(raw)
            except _ConnectionLost:
                status = None
            finished = clock()
            recorder.completed += 1
            if status is not None and 200 <= status < 300:
                recorder.completed_items += items
            if started >= measure_from:
                recorder.record(status, finished - started, items)
            if connection.closed:
                connection = await _open(spec.host, port)
    finally:
        connection.close()


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(spec: LoadSpec) -> LoadResult:
    """Run one scenario against ``spec.host:spec.port`` and measure it."""
    scenario = spec.scenario
    host = f"{spec.host}:{spec.port}"
    sets = [extra | scenario.headers for extra in scenario.header_sets] or [scenario.headers]
    requests = [
        (encode_request(r, host, sets[number % len(sets)]), r.items)
        for number, r in enumerate(build_requests(scenario))
    ]
    if not requests:
        raise ValueError(f"scenario {scenario.name!r} has no requests")
    recorder = _Recorder(requests, cycle=scenario.duration is not None)
    cpu_before = _cpu_seconds()
    begin = time.perf_counter()
    measure_from = begin + (scenario.warmup if scenario.duration is not None else 0.0)
    until = None if scenario.duration is None else measure_from + scenario.duration
    ports = [spec.port, *spec.more_ports]
    await asyncio.gather(
        *(_worker(spec, ports[n % len(ports)], recorder, measure_from, until) for n in range(scenario.concurrency))
    )
    end = time.perf_counter()
    seconds = end - measure_from
    ordered = sorted(recorder.latencies)
    return LoadResult(
        scenario=scenario.name,
        concurrency=scenario.concurrency,
        requests=len(ordered),
        items=recorder.items,
        errors=recorder.errors,
        statuses=dict(sorted(recorder.statuses.items())),
        seconds=round(seconds, 3),
        rate=round(len(ordered) / seconds, 1),
        item_rate=round(recorder.items / seconds, 1),
        p50_ms=round(_percentile(ordered, 0.50), 3),
        p90_ms=round(_percentile(ordered, 0.90), 3),
        p99_ms=round(_percentile(ordered, 0.99), 3),
        max_ms=round(_percentile(ordered, 1.0), 3),
        client_cpu=round((_cpu_seconds() - cpu_before) / (end - begin), 2),
        completed=recorder.completed,
        completed_items=recorder.completed_items,
    )


def main() -> None:
    """Read a ``LoadSpec`` on stdin, run it, write the ``LoadResult`` on stdout."""
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=LoadSpec)
    result = asyncio.run(run_load(spec))
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")


if __name__ == "__main__":
    main()
