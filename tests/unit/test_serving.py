"""How requests are served: the socket ``serve`` binds (its workers share it), nothing per request in a thread, and
idle connections kept longer than clients reuse them."""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import sys

import httpx
import msgspec
import uvicorn
from litestar.utils.sync import AsyncCallable

from registry.cli import listener as listening
from registry.config import Settings
from registry.server.heap import PRELOADED
from registry.server.limits import uvicorn_options
from tests.server import free_port, route_handlers


async def test_worker_connections_have_nagle_off() -> None:
    """Connections accepted on the socket ``serve`` binds (and its workers share) get TCP_NODELAY."""
    listener = listening.bind("127.0.0.1", free_port(), choose="--port N")
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
    """Every route is authorized by a coroutine hook, every guard is a coroutine and no dependency is sent to a worker
    thread (a hop per request)."""
    checked = 0
    for path, handler in route_handlers():
        for guard in handler.resolve_guards():
            assert not isinstance(guard, AsyncCallable), f"{path}: guard {guard.func} runs in a thread"
        hook = handler.resolve_before_request()
        assert hook is not None, f"{path}: no authorization hook"
        assert inspect.iscoroutinefunction(hook), f"{path}: its before_request hook runs in a thread"
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


def test_a_server_process_freezes_its_start_up_heap() -> None:
    """The app a server process runs is built, its FHIR models loaded and its heap frozen (``gc.freeze``) before
    the first request: a full collection then walks only what was made since, not the ~100,000 objects of the
    start-up (``registry.server.heap``). Run in a process of its own, as ``serve`` and each of its workers are."""
    script = """
import gc, msgspec, sys
from registry.config import Settings
from registry.server.asgi import application
from registry.server.heap import PRELOADED
settings = Settings()
settings = msgspec.structs.replace(
    settings, database=msgspec.structs.replace(settings.database, url="postgresql://unused/none"),
    service_id="01J00000000000000000000000", log=msgspec.structs.replace(settings.log, hash_key="k"),
)
before = gc.get_freeze_count()
application(settings)
loaded = [name for name in PRELOADED if f"fhir.resources.R4B.{name.lower()}" in sys.modules]
print(msgspec.json.encode({"before": before, "frozen": gc.get_freeze_count(), "left": len(gc.get_objects()),
                           "loaded": loaded}).decode())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    found = msgspec.json.decode(done.stdout.strip().splitlines()[-1])
    assert found["before"] == 0
    assert found["frozen"] > 50_000
    assert found["left"] * 20 < found["frozen"], found  # what a full collection still walks
    assert found["loaded"] == list(PRELOADED)
