"""A real ief-registry HTTP server (uvicorn on loopback) inside the test session's event loop.

The server runs as ``serve`` runs it: its uvicorn options (``registry.server.limits``) and the
server's database role (``tests.pg.as_server``). Each running server comes with authentication
parts and a database pool of the test side (``RunningServer.auth`` and ``.database``, as the
superuser: what an operator does behind the server's back), so tests register clients and mint
tokens with the issuer code the server uses, over the keys it uses: no mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import msgspec
import uvicorn
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from registry.auth.clients import OPERATOR_CLIENT_ID
from registry.auth.wiring import AuthParts, start_auth
from registry.config import DatabaseSettings, Settings
from registry.db.pool import Connection, Database, open_database
from registry.db.queries import load_queries
from registry.server.app import build_asgi, create_app
from registry.server.limits import uvicorn_options
from tests.audit_ledger import AuditedRoute, audited_routes
from tests.factories import make_service_id
from tests.pg import as_server

__all__ = (
    "LoopbackServer",
    "RunningServer",
    "add_service",
    "asgi_server",
    "free_port",
    "json_server",
    "raw_connection",
    "read_body",
    "running_server",
    "serving",
)


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI request, from however many ``http.request`` messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


@contextlib.asynccontextmanager
async def raw_connection(
    port: int, source: str = "127.0.0.1"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to a server on loopback from ``source`` (any 127.x.y.z address is this machine)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


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
    auth: AuthParts
    database: Database

    async def token(
        self,
        scopes: str = "admin",
        *,
        client_id: str = OPERATOR_CLIENT_ID,
        service_id: str | None = None,
        lifetime: int | None = None,
    ) -> str:
        """A real access token from the server's built-in issuer (the operator's, unless told otherwise)."""
        issued = await self.auth.issuer.mint(
            client_id=client_id, service_id=service_id or self.service_id, scopes=scopes.split(), lifetime=lifetime
        )
        return issued.access_token

    async def headers(
        self, scopes: str = "admin", *, client_id: str = OPERATOR_CLIENT_ID, service_id: str | None = None
    ) -> dict[str, str]:
        """An ``Authorization`` header carrying a token from ``token()``."""
        token = await self.token(scopes, client_id=client_id, service_id=service_id)
        return {"Authorization": f"Bearer {token}"}

    async def add_client(
        self, service_id: str, scopes: str, *, name: str = "Test client", **material: object
    ) -> tuple[str, str | None]:
        """Register a client as ``ief-registry clients add`` does; return its ID (and secret, for ``secret=True``)."""
        row, secret = await self.auth.clients.add(
            name=name,
            service_id=service_id,
            scopes=scopes.split(),
            **material,  # type: ignore[arg-type]
        )
        return row.client_id, secret

    audited: list[AuditedRoute] = field(default_factory=list)

    async def add_service(
        self, service_id: str, *, kind: str = "gateway", name: str = "Test gateway",
        base_url: str = "https://gateway.test/fhir", style: str = "ief", status: str = "enabled",
        client_id: str | None = None, bearer_token_file: str | None = None, token_endpoint: str | None = None,
    ) -> None:  # fmt: skip
        """Put a member service straight into the directory (as the operator's CLI would), with how this
        server authenticates to it (``client_id`` it gave us, or a ``bearer_token_file``), if at all."""
        async with self.database.writer() as conn:
            await _insert_service(
                conn, service_id, kind=kind, name=name, base_url=base_url, style=style, status=status,
                client_id=client_id, bearer_token_file=bearer_token_file, token_endpoint=token_endpoint,
            )  # fmt: skip

    async def count(self, sql: str, *args: object) -> int:
        """The number a ``SELECT count(*) …`` finds in the server's database (checks behind the API's back)."""
        async with self.database.writer() as conn:
            return int(await conn.fetchval(sql, *args))

    async def record_count(self, ihi: str) -> int:
        """How many records (any status) the database holds for an IHI."""
        return await self.count("SELECT count(*) FROM records WHERE ihi = $1", ihi)


async def add_service(
    database_url: str, service_id: str, *, kind: str = "gateway", name: str = "Test gateway",
    base_url: str = "https://gateway.test/fhir", style: str = "ief", status: str = "enabled",
    client_id: str | None = None, bearer_token_file: str | None = None, token_endpoint: str | None = None,
) -> None:  # fmt: skip
    """Put a member service straight into the directory of the database at ``database_url``.

    The credential columns are named only when given, so the benchmark can register a gateway in
    the database of a build from before they existed (``--ref``).
    """
    conn = await asyncpg.connect(database_url)
    try:
        await _insert_service(
            conn, service_id, kind=kind, name=name, base_url=base_url, style=style, status=status,
            client_id=client_id, bearer_token_file=bearer_token_file, token_endpoint=token_endpoint,
        )  # fmt: skip
    finally:
        await conn.close()


async def _insert_service(
    conn: Connection, service_id: str, *, kind: str, name: str, base_url: str, style: str, status: str,
    client_id: str | None, bearer_token_file: str | None, token_endpoint: str | None,
) -> None:  # fmt: skip
    values: dict[str, str | None] = {
        "service_id": service_id, "kind": kind, "name": name, "base_url": base_url, "search_style": style,
        "status": status,
    }  # fmt: skip
    optional = {"client_id": client_id, "bearer_token_file": bearer_token_file, "token_endpoint": token_endpoint}
    values |= {k: v for k, v in optional.items() if v is not None}
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO services ({', '.join(values)}) VALUES ({placeholders})", *values.values())


def route_handlers(settings: Settings | None = None) -> Iterator[tuple[str, HTTPRouteHandler]]:
    """Every route handler of an app built with ``settings`` (no database needed), with its route's path."""
    app = create_app(
        settings or Settings(), database_url="postgresql://unused", service_id=make_service_id(), hash_key=b"k"
    )
    for route in app.routes:
        assert isinstance(route, HTTPRoute)
        for handler in route.route_handlers:
            yield route.path, handler


def _litestar_in(app: Any) -> Litestar:
    """The Litestar app inside the server's ASGI middlewares."""
    while not isinstance(app, Litestar):
        app = app.app
    return app


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, database_url: str, service_id: str, *, port: int | None = None
) -> AsyncIterator[RunningServer]:
    """Serve the app on a free loopback port (or ``port``) for the duration of the block, as ``serve`` does:
    its uvicorn options; ``http.host`` and ``http.port`` set to where it listens (the public base URL is
    derived from them); the server's database role (``tests.pg.as_server``). ``database_url`` (the
    superuser's) stays the tests' own, in ``RunningServer.database_url``."""
    port = port or free_port()
    http = msgspec.structs.replace(settings.http, host="127.0.0.1", port=port)
    urls = settings.database
    urls = msgspec.structs.replace(
        urls,
        direct_url=as_server(urls.direct_url) if urls.direct_url else None,
        read_url=as_server(urls.read_url) if urls.read_url else None,
    )
    settings = msgspec.structs.replace(settings, http=http, database=urls)
    app = build_asgi(settings, database_url=as_server(database_url), service_id=service_id, hash_key=b"test-hash-key")
    routes = audited_routes(_litestar_in(app))
    async with serving(app, port=port, lifespan="on", options=uvicorn_options(settings)) as base_url:
        # The test side acts as the operator does, behind the server's back: as the superuser, not the server's role.
        own = DatabaseSettings(pool_min=0, pool_max=4, statement_cache=settings.database.statement_cache)
        database = await open_database(database_url, own)
        auth = await start_auth(database, load_queries(), settings, service_id)
        try:
            yield RunningServer(base_url, database_url, service_id, settings, auth, database, routes)
        finally:
            await auth.close()
            await database.close()


class LoopbackServer(uvicorn.Server):
    """uvicorn in the test's event loop, which stops as soon as it is told to.

    uvicorn looks for its exit flag every 0.1 s, waits a fixed 0.1 s after asking connections to
    close and then polls them every 0.1 s: about 0.2 s per stop, for every server of every test.
    This one wakes on ``stop()`` and polls every 5 ms; the shutdown is otherwise uvicorn's (stop
    listening, let running requests finish within ``timeout_graceful_shutdown``, cancel what is
    left, then the lifespan's shutdown).
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    async def start(self) -> asyncio.Task[None]:
        """Serve in a task of this loop; return it once the server listens."""
        task = asyncio.create_task(self.serve())
        for _ in range(1000):
            if self.started or task.done():
                break
            await asyncio.sleep(0.005)
        if not self.started:
            task.cancel()
            raise RuntimeError("the test server did not start")
        return task

    def stop(self) -> None:
        """Begin the shutdown now (``await`` the task from ``start()`` for its end)."""
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # refreshes the Date header when the counter is a multiple of 10
            counter += 10
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), timeout=1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110 - uvicorn has no event for it
                    await asyncio.sleep(0.005)
                for server in self.servers:
                    await server.wait_closed()
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def serving(
    app: Any, *, port: int | None, lifespan: Literal["on", "off"], options: dict[str, Any] | None = None
) -> AsyncIterator[str]:
    """Run an ASGI app with uvicorn on loopback in this event loop (and uvicorn ``options``); yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan=lifespan, **(options or {})
    )
    server = LoopbackServer(config)
    task = await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await task


@contextlib.asynccontextmanager
async def asgi_server(app: Any) -> AsyncIterator[str]:
    """A real HTTP server on loopback running ``app`` (an outside party: a gateway, a misbehaving peer).

    Yields its base URL. The app must let its requests end when the block ends (uvicorn waits for them).
    """
    async with serving(app, port=None, lifespan="off") as base_url:
        yield base_url


@contextlib.asynccontextmanager
async def json_server(documents: dict[str, object]) -> AsyncIterator[str]:
    """A real HTTP server on loopback answering GET ``path`` with ``documents[path]`` as JSON (404 else).

    It stands for an outside party (an external token issuer publishing its JWKS). Yields its base URL;
    ``documents`` may be changed while it runs.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        found = documents.get(scope["path"])
        body = msgspec.json.encode(found) if found is not None else b"{}"
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200 if found is not None else 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async with serving(app, port=None, lifespan="off") as base_url:
        yield base_url
