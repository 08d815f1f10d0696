"""How requests are served: the socket ``serve --workers N`` shares, nothing per request in a thread, and idle
connections kept longer than clients reuse them."""

from __future__ import annotations

import asyncio
import socket

import httpx
import uvicorn
from litestar.utils.sync import AsyncCallable

from registry.cli.serving import worker_listener
from registry.config import Settings
from registry.server.limits import uvicorn_options
from tests.server import free_port, route_handlers


async def test_worker_connections_have_nagle_off() -> None:
    """Connections accepted on the workers' listening socket get TCP_NODELAY, as single-process serving does."""
    listener = worker_listener(uvicorn.Config("registry.server.asgi:create", host="127.0.0.1", port=free_port()))
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


def test_no_route_runs_guards_or_dependencies_in_threads() -> None:
    """Every guard of every route is a coroutine and no dependency is sent to a worker thread (a hop per request)."""
    checked = 0
    for path, handler in route_handlers():
        for guard in handler.resolve_guards():
            assert not isinstance(guard, AsyncCallable), f"{path}: guard {guard.func} runs in a thread"
        for name, provider in handler.resolve_dependencies().items():
            assert not (provider.has_sync_callable and provider.sync_to_thread), f"{path}: {name}"
        assert not handler.has_sync_callable or handler.sync_to_thread is False, path
        checked += 1
    assert checked >= 8


def test_the_server_keeps_an_idle_connection_longer_than_an_httpx_client_reuses_it() -> None:
    """A server that closes an idle connection when its client may still reuse it resets the request sent in that
    moment (the client sees ReadError): the server's keep-alive outlasts httpx's idle expiry (the registry's own peers
    and the tests' clients), by default and as ``serve`` gives it to uvicorn."""
    options = uvicorn_options(Settings())
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    assert options["timeout_keep_alive"] >= 2 * client_expiry
    config = uvicorn.Config("registry.server.asgi:create", **options)
    assert config.timeout_keep_alive == Settings().http.keep_alive_timeout
