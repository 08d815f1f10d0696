"""Reading another server's answer within a size limit: the one streaming reader of every outbound call.

``read_capped(chunks, limit)`` reads a body as it arrives and stops as soon as it is larger than
``limit``. With an ``Inflate`` (a ``gzip`` or ``deflate`` answer) it counts the decompressed bytes,
and never decompresses more than the limit allows at a time, so a small compressed body cannot
grow in memory past the limit. ``refuse_declared`` refuses a declared ``Content-Length`` over the
limit before any byte is read. Callers turn the errors into their own (a ``RemoteError``, a
``PeerTooLarge``, a gateway problem).

ReadError
├── TooLarge      the answer is, or says it is, over the limit
└── Corrupt       the compressed answer cannot be decompressed
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from schemas.types import ascii_int

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

__all__ = ("INFLATABLE", "Corrupt", "Inflate", "ReadError", "TooLarge", "read_capped", "refuse_declared")

INFLATABLE = frozenset({"gzip", "x-gzip", "deflate"})
"""The content codings ``Inflate`` decompresses (what httpx asks for without brotli or zstd)."""


class ReadError(Exception):
    """An answer that cannot be read."""


class TooLarge(ReadError):
    """The answer is over the limit; ``declared``: the ``Content-Length`` that said so, if that was how."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit
        self.declared = declared


class Corrupt(ReadError):
    """The compressed answer cannot be decompressed (or was cut short)."""


class Inflate:
    """Decompresses a gzip or deflate body, never producing more than it is allowed at a time."""

    def __init__(self, coding: str) -> None:
        self._raw_fallback = coding == "deflate"  # "deflate" is zlib-wrapped, but some servers send it raw
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding != "deflate" else zlib.MAX_WBITS)
        self.pending = False
        """Compressed input is left over that would have produced more than allowed."""

    def decode(self, data: bytes, allowed: int) -> bytes:
        """Up to ``allowed`` decompressed bytes of ``data`` (``pending`` says whether more would follow).

        Raises:
            Corrupt: the data is not validly compressed.
        """
        try:
            out = self._zlib.decompress(data, allowed)
        except zlib.error:
            if not self._raw_fallback:
                raise Corrupt("the compressed answer cannot be decompressed") from None
            self._raw_fallback = False
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data, allowed)
        self._raw_fallback = False
        self.pending = bool(self._zlib.unconsumed_tail)
        return out

    def finish(self) -> None:
        """Check that the compressed data ended properly.

        Raises:
            Corrupt: it was cut short.
        """
        if not self._zlib.eof:
            raise Corrupt("the compressed answer was cut short")


def refuse_declared(content_length: str | bytes | None, limit: int) -> None:
    """Refuse an answer whose declared ``Content-Length`` is over ``limit`` (before reading it).

    Raises:
        TooLarge: with ``declared`` set.
    """
    text = content_length.decode("latin-1") if isinstance(content_length, bytes) else content_length
    declared = ascii_int(text or "")
    if declared is not None and declared > limit:
        raise TooLarge(limit, declared)


async def read_capped(chunks: AsyncIterable[bytes], limit: int, *, inflate: Inflate | None = None) -> bytes:
    """The whole body of ``chunks`` (decompressed by ``inflate``), abandoned as soon as it passes ``limit``.

    Raises:
        TooLarge: the body is larger than ``limit`` bytes (decompressed).
        Corrupt: ``inflate`` could not decompress it.
    """
    parts: list[bytes] = []
    size = 0
    async for data in chunks:
        chunk = data if inflate is None else inflate.decode(data, limit + 1 - size)
        size += len(chunk)
        if size > limit or (inflate is not None and inflate.pending):
            raise TooLarge(limit)
        parts.append(chunk)
    if inflate is not None:
        inflate.finish()
    return b"".join(parts)
