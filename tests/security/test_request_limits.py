"""Oversized request heads, clients that never finish their heads, and too many connections from one address.

The server (real uvicorn, real sockets, the options ``serve`` uses) bounds what a connection may
cost before a request reaches the application (``registry.server.limits``): a head over
``http.max_header_bytes`` is 431 with an OperationOutcome, a head not complete within
``http.header_timeout`` is 408 (a connection that sent nothing is closed), and connections past
``http.max_connections_per_address`` from one address are 429. Requests within the bounds,
large bodies and keep-alive included, are served as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from registry.config import AuthSettings, FhirSettings, HttpSettings, LogSettings, Settings
from registry.server.limits import ServingLimits, trusted_networks
from schemas.fhir.canonical import Canonicals
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, raw_connection, running_server

LIMIT = 8192
TIMEOUT = 0.6
PER_ADDRESS = 4


@pytest.fixture(scope="module")
async def bounded(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A server with small bounds: 8 kB heads, 0.6 s to send one, 4 connections per address."""
    http = HttpSettings(max_header_bytes=LIMIT, header_timeout=TIMEOUT, max_connections_per_address=PER_ADDRESS)
    auth = AuthSettings(rate_per_second=10_000, rate_burst=10_000)
    settings = Settings(log=LogSettings(access=False), http=http, auth=auth)
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        yield server


def _port(server: RunningServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def connection(
    server: RunningServer, source: str = "127.0.0.1"
) -> contextlib.AbstractAsyncContextManager[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to the server from ``source`` (any 127.x.y.z address is this machine)."""
    return raw_connection(_port(server), source)


async def _answer(reader: asyncio.StreamReader, within: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One response, within ``within`` seconds: status, headers (lower-case names) and body (by Content-Length)."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def _code(outcome: dict[str, Any]) -> str:
    """The ``ief-error`` code of an OperationOutcome's one issue."""
    assert outcome["resourceType"] == "OperationOutcome"
    [coding] = outcome["issue"][0]["details"]["coding"]
    assert coding["system"].endswith("/CodeSystem/ief-error")
    return str(coding["code"])


def _request(path: str = "/health/live", *, extra: bytes = b"", body: bytes = b"", method: str = "GET") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n" + body


async def test_a_head_over_the_limit_is_431_with_an_outcome(bounded: RunningServer) -> None:
    """A header taking the head past the limit is answered 431 with an OperationOutcome; the connection closes."""
    async with connection(bounded) as (reader, writer):
        writer.write(_request(extra=b"X-Big: " + b"a" * LIMIT + b"\r\n"))
        status, headers, body = await _answer(reader)
        assert await reader.read() == b""  # closed
    assert status == 431
    assert headers["content-type"] == "application/fhir+json"
    assert headers["connection"] == "close"
    outcome = msgspec.json.decode(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert str(LIMIT) in outcome["issue"][0]["diagnostics"]
    assert _code(outcome) == "request-head-too-large"


async def test_a_head_within_the_limit_is_served(bounded: RunningServer) -> None:
    """A head just under the limit (a long token, say) reaches the application."""
    async with connection(bounded) as (reader, writer):
        writer.write(_request(extra=b"X-Long: " + b"a" * (LIMIT - 200) + b"\r\n"))
        status, _headers, _body = await _answer(reader)
    assert status == 200


async def test_a_huge_streamed_header_is_cut_off_near_the_limit(bounded: RunningServer) -> None:
    """A 64 MB header sent in pieces is refused once the limit is passed: the 431 arrives while almost all of it
    is unsent (the server stops reading; it never holds the header)."""
    sent = 0
    async with connection(bounded) as (reader, writer):
        answer = asyncio.create_task(_answer(reader))
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"a" * 65_536
        with contextlib.suppress(ConnectionError):
            while sent < 64 * 1024 * 1024 and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        status, _headers, _body = await answer
    assert status == 431
    assert sent < 16 * 1024 * 1024


async def test_a_head_refused_in_one_read_never_reaches_the_application(bounded: RunningServer) -> None:
    """A complete head over the limit (with a body) to a patient-linked route is 431 and leaves no audit row:
    the application was not called."""
    request_id = f"too-large-{make_ihi()}"
    extra = f"X-Request-Id: {request_id}\r\nX-Big: {'a' * LIMIT}\r\n".encode()
    async with connection(bounded) as (reader, writer):
        writer.write(_request(f"/registry/records/{make_ihi()}", extra=extra, body=b"{}", method="GET"))
        status, _headers, _body = await _answer(reader)
    assert status == 431
    conn = await asyncpg.connect(bounded.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE request_id = $1", request_id) == 0
    finally:
        await conn.close()


async def test_a_slow_head_is_408_and_a_silent_connection_is_closed(bounded: RunningServer) -> None:
    """A client that sends part of a head and stops gets 408 after the head deadline; one that sends nothing is
    closed after it; neither holds the connection longer."""
    started = time.monotonic()
    async with connection(bounded) as (reader, writer):
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        status, _headers, body = await _answer(reader, within=TIMEOUT * 20)
        assert await reader.read() == b""
    assert status == 408
    assert _code(msgspec.json.decode(body)) == "request-head-timeout"
    async with connection(bounded) as (reader, _writer):
        async with asyncio.timeout(TIMEOUT * 20):
            assert await reader.read() == b""
    assert time.monotonic() - started >= 2 * TIMEOUT


async def test_a_client_dripping_its_head_is_cut_off_at_the_deadline(bounded: RunningServer) -> None:
    """Bytes that keep arriving do not extend the head deadline (slowloris)."""
    async with connection(bounded) as (reader, writer):
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        status = None
        for _ in range(40):
            with contextlib.suppress(ConnectionError):
                writer.write(b"X: y\r\n")
                await writer.drain()
            try:
                status, _headers, _body = await _answer(reader, within=TIMEOUT / 4)
                break
            except TimeoutError:
                continue
    assert status == 408


async def test_keep_alive_requests_and_large_bodies_are_not_heads(bounded: RunningServer) -> None:
    """Many requests on one connection, a batch body of hundreds of kB among them, and a body arriving slowly after
    a complete head, are all served (only head bytes count, and only until the head is complete)."""
    headers = (await bounded.headers()) | {"Content-Type": "application/json"}
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    items = msgspec.json.encode([{"ihi": make_ihi(), "serviceId": make_service_id()} for _ in range(5_000)])
    async with connection(bounded) as (reader, writer):
        for _ in range(5):
            writer.write(_request())
            assert (await _answer(reader))[0] == 200
        writer.write(_request("/registry/records:batch", extra=extra, body=items, method="POST"))
        assert (await _answer(reader, within=60))[0] == 200
        writer.write(_request())
        assert (await _answer(reader))[0] == 200
    body = b'{"status": "active"}'
    async with connection(bounded) as (reader, writer):
        head = _request(f"/registry/records/{make_ihi()}/{make_service_id()}", extra=extra, body=body, method="PUT")
        writer.write(head[: -len(body)])
        await writer.drain()
        await asyncio.sleep(TIMEOUT * 2)  # past the head deadline, but the head was complete
        writer.write(body)
        assert (await _answer(reader))[0] == 422  # the unknown service: the application answered


async def test_connections_past_the_limit_per_address_are_429(bounded: RunningServer) -> None:
    """The connection after ``max_connections_per_address`` from one address is 429 with Retry-After; another
    address is served meanwhile, and a freed slot is usable again."""
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(connection(bounded, "127.0.0.3")) for _ in range(PER_ADDRESS)]
        for reader, writer in held:
            writer.write(_request())
            assert (await _answer(reader))[0] == 200  # served, kept alive
        async with connection(bounded, "127.0.0.3") as (reader, writer):
            status, headers, body = await _answer(reader)
        assert status == 429
        assert headers["retry-after"] == "1"
        assert _code(msgspec.json.decode(body)) == "too-many-connections"
        async with connection(bounded, "127.0.0.4") as (reader, writer):
            writer.write(_request())
            assert (await _answer(reader))[0] == 200
        held[0][1].close()
        await held[0][1].wait_closed()
        for _ in range(50):
            await asyncio.sleep(0.02)
            async with connection(bounded, "127.0.0.3") as (reader, writer):
                writer.write(_request())
                if (await _answer(reader))[0] == 200:
                    break
        else:
            pytest.fail("a freed connection slot was never usable again")


def test_trusted_proxies_are_not_limited_per_address() -> None:
    """Connections from a trusted proxy (every client behind it shares its address) are not counted."""
    limits = ServingLimits(
        max_header_bytes=LIMIT, header_timeout=1, max_connections_per_address=1,
        canon=Canonicals.under(FhirSettings().canonical_base), exempt=trusted_networks("10.0.0.0/8"),
    )  # fmt: skip
    assert limits.exempted("10.1.2.3")
    assert not limits.exempted("127.0.0.1")
    assert not limits.exempted("not an address")
