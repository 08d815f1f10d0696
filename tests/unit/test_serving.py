"""The socket ``serve --workers N`` shares between worker processes."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

from registry.cli import worker_listener
from tests.server import free_port


async def test_worker_connections_have_nagle_off() -> None:
    """Connections accepted on the workers' listening socket get TCP_NODELAY, as single-process serving does."""
    listener = worker_listener(uvicorn.Config("registry.asgi:create", host="127.0.0.1", port=free_port()))
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
    try:
        host, port = listener.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
