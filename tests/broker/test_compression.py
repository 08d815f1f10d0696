"""Compressed answers: gzip and deflate are read, and the size limit counts decompressed bytes."""

from __future__ import annotations

import contextlib
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.broker.conftest import BROKER_SETTINGS, Broker, gateway_token
from tests.broker.results import issues, new_uid, uids
from tests.factories import make_ihi
from tests.gateway import ReferenceGateway
from tests.server import serving

Compress = Callable[[bytes], tuple[bytes, bytes]]
"""A gateway's answer body made into its ``Content-Encoding`` and the bytes sent."""


def _raw_deflate(body: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


@contextlib.asynccontextmanager
async def compressing_gateway(compress: Compress) -> AsyncIterator[ReferenceGateway]:
    """A reference gateway whose answers are sent through ``compress`` (with their compressed length)."""
    gateway = ReferenceGateway(token=gateway_token())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started: dict[str, Any] = {}
        body = bytearray()

        async def collect(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            else:
                body.extend(message.get("body", b""))

        await gateway(scope, receive, collect)
        coding, sent = compress(bytes(body))
        headers = [(k, v) for k, v in started["headers"] if k.lower() != b"content-length"]
        headers += [(b"content-encoding", coding), (b"content-length", str(len(sent)).encode())]
        await send({"type": "http.response.start", "status": started["status"], "headers": headers})
        await send({"type": "http.response.body", "body": sent})

    async with serving(app, port=None, lifespan="off") as origin:
        gateway.base_url = f"{origin}/fhir"
        yield gateway


async def test_gzip_and_deflate_answers_are_read(broker: Broker) -> None:
    """Studies from gateways answering with gzip, zlib-wrapped deflate and raw deflate bodies are all merged."""
    ihi = make_ihi()
    expected = []
    async with (
        compressing_gateway(lambda body: (b"gzip", gzip.compress(body))) as gzipped,
        compressing_gateway(lambda body: (b"deflate", zlib.compress(body))) as deflated,
        compressing_gateway(lambda body: (b"deflate", _raw_deflate(body))) as raw,
    ):
        for gateway in (gzipped, deflated, raw):
            expected.append(new_uid())
            gateway.study(ihi, expected[-1])
            await broker.join(gateway, ihi)
        response = await broker.search(ihi)
    assert response.status_code == 200
    assert sorted(uids(response.json())) == sorted(expected)
    assert issues(response.json()) == {}


async def test_a_compression_bomb_is_too_large_and_a_corrupt_body_invalid(broker: Broker) -> None:
    """A small gzip body that decompresses past the size limit is refused as too large; a body that is not
    the gzip it claims is an invalid response; the good gateway's study still arrives."""
    ihi = make_ihi()
    uid = new_uid()
    bomb = gzip.compress(b'{"resourceType": "Bundle", "x": "' + b" " * (BROKER_SETTINGS.max_response_bytes * 4))
    async with (
        compressing_gateway(lambda body: (b"gzip", gzip.compress(body))) as good,
        compressing_gateway(lambda _body: (b"gzip", bomb)) as bombing,
        compressing_gateway(lambda body: (b"gzip", body)) as corrupt,
    ):
        good.study(ihi, uid)
        await broker.join(good, ihi)
        bomb_id = await broker.join(bombing, ihi)
        corrupt_id = await broker.join(corrupt, ihi)
        response = await broker.search(ihi)
    assert len(bomb) < BROKER_SETTINGS.max_response_bytes // 100
    assert response.status_code == 200
    bundle = response.json()
    assert uids(bundle) == [uid]
    assert issues(bundle) == {bomb_id: ["too-large"], corrupt_id: ["invalid-response"]}
