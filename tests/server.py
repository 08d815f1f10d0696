"""A real ief-registry HTTP server (uvicorn on loopback) inside the test session's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import uvicorn

from registry.app import build_asgi
from registry.config import Settings

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

    async def record_count(self, ihi: str) -> int:
        """How many records (any status) the database holds for an IHI."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM records WHERE ihi = $1", ihi))
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def running_server(settings: Settings, database_url: str, service_id: str) -> AsyncIterator[RunningServer]:
    """Serve the app on a free loopback port for the duration of the block."""
    port = free_port()
    app = build_asgi(settings, database_url=database_url, service_id=service_id, hash_key=b"test-hash-key")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
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
        yield RunningServer(f"http://127.0.0.1:{port}", database_url, service_id, settings)
    finally:
        server.should_exit = True
        await task
