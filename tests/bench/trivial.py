"""A trivial HTTP/1.1 server that answers every request with the same small 200: ``python -m tests.bench.trivial PORT``.

It does far less per request than the load generator, so driving it shows the load generator's own
ceiling on this machine. It handles requests without bodies only (the ping scenario).
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ("serve",)

_RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'


class _Answer(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        data = self._pending + data
        complete = data.count(b"\r\n\r\n")
        self._pending = data[data.rfind(b"\r\n\r\n") + 4 :] if complete else data
        if complete and self._transport is not None:
            self._transport.write(_RESPONSE * complete)


async def serve(port: int) -> None:
    """Answer on ``127.0.0.1:port`` until killed."""
    server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
