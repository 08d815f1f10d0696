"""The load generator's wire handling and the benchmark's IHIs (pure code, no server)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from schemas.types import parse_ihi
from tests.bench.loadgen import LoadSpec, encode_request, response_end, run_load
from tests.bench.scenarios import Request, Scenario, ihi


def test_requests_carry_the_scenario_headers_and_their_body_length() -> None:
    """An encoded request has the Host, every scenario header, and Content-Type/Length for its body."""
    raw = encode_request(Request("PUT", "/registry/records/1/2", b'{"status":"active"}'), "127.0.0.1:8080",
                         {"Authorization": "Bearer abc"})  # fmt: skip
    head, body = raw.split(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"PUT /registry/records/1/2 HTTP/1.1",
        b"Host: 127.0.0.1:8080",
        b"Authorization: Bearer abc",
        b"Content-Type: application/json",
        b"Content-Length: 19",
    ]
    assert body == b'{"status":"active"}'


def test_a_get_has_no_body_headers() -> None:
    """A GET without a body sends no Content-Type or Content-Length."""
    raw = encode_request(Request("GET", "/x"), "h", {})
    assert raw == b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 200),
        (b"HTTP/1.1 201 Created\r\nserver: x\r\ncontent-length: 2\r\n\r\n{}", 201),
        (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", 204),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1;x=y\r\n.\r\n0\r\n\r\n", 200),
    ],
)
def test_response_framing(response: bytes, status: int) -> None:
    """A response ends where its Content-Length or chunked body ends: never before, and not at what follows."""
    for cut in range(len(response)):
        assert response_end(bytearray(response[:cut])) is None, cut
    assert response_end(bytearray(response + b"HTTP/1.1 200 OK\r\n")) == (status, len(response))


def test_benchmark_ihis_are_valid_and_distinct() -> None:
    """Every benchmark IHI passes the IHI check (Luhn), across the three-digit group boundaries."""
    numbers = [0, 1, 9, 10, 999, 1000, 999_999, 1_000_000, 123_456_789, 999_999_999, *range(0, 3_000_000, 7919)]
    made = [ihi(n) for n in numbers]
    assert [parse_ihi(value) for value in made] == made
    assert len(set(made)) == len(set(numbers))


async def test_connections_are_spread_over_every_port() -> None:
    """With ``more_ports`` the connections go to each port in turn, and every answer counts."""
    connections: Counter[int] = Counter()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

    class Counting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            connections[transport.get_extra_info("sockname")[1]] += 1

        def data_received(self, data: bytes) -> None:
            self.transport.write(answer * data.count(b"\r\n\r\n"))

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Counting, "127.0.0.1", 0) for _ in range(2)]
    ports = [server.sockets[0].getsockname()[1] for server in servers]
    try:
        scenario = Scenario(name="ping", requests="ping", concurrency=6, duration=0.2)
        result = await run_load(LoadSpec(host="127.0.0.1", port=ports[0], more_ports=ports[1:], scenario=scenario))
    finally:
        for server in servers:
            server.close()
    assert connections == Counter(dict.fromkeys(ports, 3))
    assert result.requests > 0
    assert result.errors == 0
