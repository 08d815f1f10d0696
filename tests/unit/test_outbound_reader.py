"""The one bounded reader of outbound answers: limits, declared lengths, decompression that cannot explode."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import pytest

from registry.outbound.reader import Corrupt, Inflate, TooLarge, read_capped, refuse_declared


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_body_within_the_limit_is_read_whole() -> None:
    """Every chunk is read, in order, up to exactly the limit."""
    body = bytes(range(256)) * 40
    assert await read_capped(_chunks(body), len(body)) == body


async def test_a_body_over_the_limit_is_abandoned() -> None:
    """One byte over the limit is ``TooLarge`` (without a declared length)."""
    with pytest.raises(TooLarge) as refused:
        await read_capped(_chunks(b"x" * 10_001), 10_000)
    assert refused.value.declared is None


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    """A Content-Length over the limit is refused (as text or bytes); at the limit, or absent, it is not."""
    with pytest.raises(TooLarge) as refused:
        refuse_declared(b"10001", 10_000)
    assert refused.value.declared == 10_001
    refuse_declared("10000", 10_000)
    refuse_declared(None, 10_000)
    refuse_declared("not-a-number", 10_000)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_counted_decompressed(coding: str) -> None:
    """gzip, zlib-wrapped deflate and raw deflate decompress; the limit applies to what they decompress to."""
    body = b'{"resourceType": "Bundle"}' * 200
    if coding == "gzip":
        packed = gzip.compress(body)
    elif coding == "deflate":
        packed = zlib.compress(body)
    else:
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeezer.compress(body) + squeezer.flush()
    header = "gzip" if coding == "gzip" else "deflate"
    assert await read_capped(_chunks(packed, 100), len(body), inflate=Inflate(header)) == body
    with pytest.raises(TooLarge):
        await read_capped(_chunks(packed, 100), len(body) - 1, inflate=Inflate(header))


async def test_a_small_compressed_body_cannot_grow_past_the_limit() -> None:
    """Ten megabytes of zeros in about ten kilobytes are refused after at most the limit is decompressed."""
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(bomb) < 20_000
    with pytest.raises(TooLarge):
        await read_capped(_chunks(bomb, len(bomb)), 100_000, inflate=Inflate("gzip"))


async def test_corrupt_and_truncated_compression_are_said() -> None:
    """Bytes that are not gzip, and gzip cut short, are ``Corrupt``."""
    with pytest.raises(Corrupt):
        await read_capped(_chunks(b"not gzip at all"), 1000, inflate=Inflate("gzip"))
    with pytest.raises(Corrupt):
        await read_capped(_chunks(gzip.compress(b"x" * 1000)[:-12]), 10_000, inflate=Inflate("gzip"))
