"""A real ief-registry HTTP server (uvicorn on loopback) inside the test session's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import uvicorn
from litestar import Litestar

from registry.app import build_asgi
from registry.config import Settings
from tests.audit_ledger import AuditedRoute, audited_routes

__all__ = ("RunningServer", "free_port", "running_server")


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server under test: where it answers and which database it uses."""

    base_url: str
    database_url: str
    service_id: str
    settings: Settings
    audited: list[AuditedRoute] = field(default_factory=list)

    async def add_service(
        self, service_id: str, *, kind: str = "gateway", name: str = "Test gateway",
        base_url: str = "https://gateway.test/fhir", style: str = "ief", status: str = "enabled",
    ) -> None:  # fmt: skip
        """Put a member service straight into the directory (as the operator's CLI would)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                "INSERT INTO services (service_id, kind, name, base_url, search_style, status) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                service_id, kind, name, base_url, style, status,
            )  # fmt: skip
        finally:
            await conn.close()


def _litestar_in(app: Any) -> Litestar:
    """The Litestar app inside the server's ASGI middlewares."""
    while not isinstance(app, Litestar):
        app = app.app
    return app


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, database_url: str, service_id: str, *, wrap: Callable[[Any], Any] | None = None
) -> AsyncIterator[RunningServer]:
    """Serve the app on a free loopback port for the duration of the block (``wrap`` adds an outer ASGI layer)."""
    port = free_port()
    app = build_asgi(settings, database_url=database_url, service_id=service_id, hash_key=b"test-hash-key")
    routes = audited_routes(_litestar_in(app))
    served = wrap(app) if wrap else app
    config = uvicorn.Config(served, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        task.cancel()
        raise RuntimeError("the test server did not start")
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", database_url, service_id, settings, routes)
    finally:
        server.should_exit = True
        await task
