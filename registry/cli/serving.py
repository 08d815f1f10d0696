"""``serve``, ``worker`` and ``demo``: the commands that run until a signal stops them.

``serve --workers N`` hands every worker process the whole ``Settings`` (the configuration file,
the environment and the command line already applied, the database and the service ID resolved)
as one serialized value (``registry.server.asgi``), so the workers run exactly as configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from registry.cli import listener
from registry.cli.runtime import Runtime, Session, database_url
from registry.config import TOML_ONLY, describe_settings
from registry.db.roles import owner_database_url, server_database_url
from registry.instance import log_hash_key
from registry.log import get_logger

if TYPE_CHECKING:
    import socket

    from registry.config import Settings

__all__ = ("demo", "serve", "worker")

_log = get_logger("registry.cli")


def _settings_epilog() -> str:
    lines = ["\b", "Settings (environment variable, default):"]
    for doc in describe_settings():
        lines.append(f"  {doc.key} {TOML_ONLY}={doc.default}" if doc.env == TOML_ONLY else f"  {doc.env}={doc.default}")
        lines.append(f"      {doc.description}")
    return "\n".join(lines)


def _exit_on_signal(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _stop_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGINT end the process through Python, so ``finally`` blocks run.

    uvicorn shuts down gracefully on these signals, restores the handlers it found and then raises
    the signal again; with the default SIGTERM action that would kill the process before the
    embedded cluster is stopped.
    """
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)


async def mint(session: Session, scopes: list[str], lifetime: int | None, service_id: str | None = None) -> str:
    """A token from the built-in issuer for the operator client, bound to ``service_id`` (this instance's)."""
    from registry.auth.clients import OPERATOR_CLIENT_ID

    issued = await session.auth.issuer.mint(
        client_id=OPERATOR_CLIENT_ID, service_id=service_id or session.service_id, scopes=scopes, lifetime=lifetime
    )
    return issued.access_token


@click.command(epilog=_settings_epilog())
@click.option("--host", default=None, help="Bind address (IEF_HTTP_HOST).")
@click.option("--port", type=int, default=None, help="TCP port (IEF_HTTP_PORT).")
@click.option("--workers", type=int, default=None, help="Server processes (IEF_HTTP_WORKERS).")
@click.option("--dev", is_flag=True, default=None, help="Development mode (IEF_DEV); never for production.")
@click.pass_obj
def serve(runtime: Runtime, host: str | None, port: int | None, workers: int | None, dev: bool | None) -> None:
    """Start the server (on the embedded PostgreSQL unless IEF_DATABASE_URL is set)."""
    settings = runtime.settings(**{"http.host": host, "http.port": port, "http.workers": workers, "dev": dev})
    sock = listener.bind(settings.http.host, settings.http.port, choose="--port N or IEF_HTTP_PORT=N")
    _stop_cleanly_on_signals()
    external = bool(owner_database_url(settings))
    with contextlib.closing(sock), database_url(settings) as url:
        settings = _resolved(runtime, settings, url)
        settings = _on_port(settings, sock.getsockname()[1])
        _log.info(
            "server_starting",
            address=listener.origin(sock),
            database="external" if external else "embedded",
            service_id=settings.service_id,
            dev=settings.dev,
        )
        run = _serve_in_process if settings.http.workers == 1 else _serve_in_workers
        started = run(settings, sock)
    if not started:
        raise click.ClickException("the server did not start (see the log above)")


def _on_port(settings: Settings, port: int) -> Settings:
    """``settings`` with the port actually bound (``--port 0``: the one the system chose)."""
    return msgspec.structs.replace(settings, http=msgspec.structs.replace(settings.http, port=port))


def _resolved(runtime: Runtime, settings: Settings, url: str) -> Settings:
    """Migrate (``database.auto_migrate``), print the dev token in dev mode; the settings with the database URL,
    this instance's service ID and its log-hash key filled in, as every server process runs with them."""

    async def prepare(session: Session) -> str:
        if session.applied:
            _log.info("migrations_applied", migrations=session.applied)
        if settings.dev:
            token = await mint(session, ["admin"], settings.auth.max_token_lifetime)
            hours = settings.auth.max_token_lifetime / 3600
            click.echo(f"Development admin token (scope admin, valid {hours:g} h; dev mode only):\n{token}")
        return session.service_id

    migrate = settings.database.auto_migrate
    service_id = runtime.run(settings, prepare, url=url, migrate=migrate, auth=settings.dev, wait=True)
    return _filled_in(settings, url, service_id)


def _filled_in(settings: Settings, url: str, service_id: str) -> Settings:
    """``settings`` as a server process runs with them: the database URL (the server's role, of the owner's
    ``url``; the owner's own URL dropped: a server process never holds it), the service ID and the log-hash
    key (kept in the data directory) set."""
    hash_key = log_hash_key(settings.data_dir, settings.log.hash_key).decode()
    return msgspec.structs.replace(
        settings,
        database=msgspec.structs.replace(settings.database, url=server_database_url(settings, url), owner_url=None),
        log=msgspec.structs.replace(settings.log, hash_key=hash_key),
        service_id=service_id,
    )


def _serve_in_process(settings: Settings, sock: socket.socket) -> bool:
    """Serve HTTP on ``sock`` in this process until a signal stops it; returns whether the server started."""
    import uvicorn

    from registry.server.asgi import application
    from registry.server.limits import uvicorn_options

    app = application(settings)
    config = uvicorn.Config(
        app, host=settings.http.host, port=settings.http.port, log_config=None, access_log=False, lifespan="on",
        **uvicorn_options(settings),
    )  # fmt: skip
    server = uvicorn.Server(config)
    try:
        with listener.Announcer(listener.origin(sock) + "/"):
            server.run(sockets=[sock])
    finally:  # also when the signal that stopped uvicorn ends this process (SystemExit)
        if server.started:
            _log.info("server_stopped")
    return server.started


def _serve_in_workers(settings: Settings, sock: socket.socket) -> bool:
    """Serve HTTP in ``http.workers`` processes sharing ``sock``, each built from these very settings."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from registry.server.asgi import hand_over
    from registry.server.limits import uvicorn_options

    hand_over(settings)
    config = uvicorn.Config(
        "registry.server.asgi:create", factory=True, host=settings.http.host, port=settings.http.port,
        workers=settings.http.workers, log_config=None, access_log=False, lifespan="on", **uvicorn_options(settings),
    )  # fmt: skip
    try:
        with listener.Announcer(listener.origin(sock) + "/"):
            Multiprocess(config, sockets=[sock]).run()
    finally:
        _log.info("server_stopped")
    return True


@click.command()
@click.option(
    "--concurrency", type=int, default=None, help="Notifications sent at once (IEF_SUBSCRIPTIONS_WORKER_CONCURRENCY)."
)
@click.option("--dev", is_flag=True, default=None, help="Development mode (IEF_DEV): http and local endpoints.")
@click.pass_obj
def worker(runtime: Runtime, concurrency: int | None, dev: bool | None) -> None:
    """Run a notification delivery worker and an upstream publisher (any number may run against one database)
    until SIGTERM or Ctrl-C."""
    from broker.subscriptions.plugin import SubscriptionsPlugin
    from federation.plugin import FederationPlugin
    from registry.audit.partitions import MonthKeeper
    from registry.audit.repository import AuditRepository
    from registry.privacy.decision import DecisionPoint
    from schemas.fhir.canonical import Canonicals

    settings = runtime.settings(**{"subscriptions.worker_concurrency": concurrency, "dev": dev})

    async def work(session: Session) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        months = MonthKeeper(session.database, AuditRepository(session.queries))  # audit partitions made ahead
        delivery = SubscriptionsPlugin(settings).delivery(
            db=session.database, queries=session.queries, canon=Canonicals.under(settings.fhir.canonical_base),
            listen_url=settings.database.direct_url or session.url, decisions=DecisionPoint(),
        )  # fmt: skip
        publishing = FederationPlugin(settings).publishing(
            db=session.database, queries=session.queries, service_id=session.service_id,
            directory=session.directory(), credentials=session.auth.outbound,
        )  # fmt: skip
        async with months.running(), delivery, publishing:
            await stop.wait()

    runtime.run(settings, work, at_head=True, as_server=True, wait=True, auth=True)


DEMO_PORT = 8080
"""The demonstration registry's port unless ``--port`` says otherwise (a free one when it is in use)."""


@click.command()
@click.option(
    "--port",
    type=int,
    default=None,
    help=f"The registry's TCP port [default: {DEMO_PORT}, or a free port when {DEMO_PORT} is in use].",
)
@click.option(
    "--gateway-port",
    type=int,
    default=None,
    help="The demonstration gateways' port [default: the registry's port + 1, or a free port].",
)
@click.option("--data-dir", type=click.Path(file_okay=False), default=".ief-demo", show_default=True,
              help="The demonstration's own data directory and embedded cluster.")  # fmt: skip
@click.pass_obj
def demo(runtime: Runtime, port: int | None, gateway_port: int | None, data_dir: str) -> None:
    """Run the registry in dev mode with three demonstration gateways that register patients and answer searches."""
    import subprocess

    from registry import demo as gateways

    settings = runtime.settings(data_dir=str(Path(data_dir).resolve()), dev=True)
    if configured := [
        name
        for name, value in (
            ("IEF_DATABASE_URL", settings.database.url),
            ("IEF_DATABASE_OWNER_URL", settings.database.owner_url),
        )
        if value
    ]:
        # Its gateways, clients and patients would be written into that database.
        raise click.ClickException(
            f"the demonstration runs on an embedded cluster of its own: unset {' and '.join(configured)}"
        )
    sock, gateway_port = _demo_ports(settings.http.host, port, gateway_port)
    settings = _on_port(settings, sock.getsockname()[1])
    origin = f"http://127.0.0.1:{gateway_port}"
    registry_url = listener.origin(sock)
    _stop_cleanly_on_signals()
    with contextlib.closing(sock), database_url(settings) as url:
        token_file = Path(settings.data_dir) / "demo-gateway-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            token_file.chmod(0o600)

        async def prepare(session: Session) -> tuple[str, str]:
            await _add_demo_gateways(session, origin, token_file)
            return await mint(session, ["admin"], settings.auth.max_token_lifetime), session.service_id

        admin, service_id = runtime.run(settings, prepare, url=url, migrate=True, auth=True)
        env = {
            **os.environ,
            gateways.TOKEN_ENV: token_file.read_text(encoding="utf-8").strip(),
            gateways.ADMIN_TOKEN_ENV: admin,
        }
        command = [sys.executable, "-m", "registry.demo", "--port", str(gateway_port), "--registry", registry_url]
        process = subprocess.Popen(command, env=env)  # noqa: S603 - our own module, by the running interpreter
        try:
            click.echo(_demo_walkthrough(registry_url, admin))
            started = _serve_in_process(_filled_in(settings, url, service_id), sock)
        finally:
            process.terminate()
            process.wait(30)
    if not started:
        raise click.ClickException("the server did not start (see the log above)")


def _demo_ports(host: str, port: int | None, gateway_port: int | None) -> tuple[socket.socket, int]:
    """The registry's bound socket and a free port for the gateways: the ones asked for (refused at once when
    in use), else the defaults, else ports the system chooses (said before the walkthrough)."""
    if port is not None:
        sock = listener.bind(host, port, choose="--port N")
    else:
        sock = listener.bind_preferring(host, DEMO_PORT, choose="--port N")
        if (chosen := sock.getsockname()[1]) != DEMO_PORT:
            click.echo(f"Port {DEMO_PORT} is in use (by another server?): the demonstration registry uses {chosen}.")
    try:
        if gateway_port is not None:
            probe = listener.bind("127.0.0.1", gateway_port, choose="--gateway-port N")
        else:
            probe = listener.bind_preferring("127.0.0.1", sock.getsockname()[1] + 1, choose="--gateway-port N")
    except click.ClickException:
        sock.close()
        raise
    with probe:  # the gateways' process binds it a moment later
        return sock, probe.getsockname()[1]


async def _add_demo_gateways(session: Session, origin: str, token_file: Path) -> None:
    from registry.demo import GATEWAYS

    directory = session.directory()
    for gateway in GATEWAYS:
        await directory.add(
            service_id=gateway.service_id, kind="gateway", name=gateway.name, base_url=gateway.base_url(origin),
            search_style=gateway.style, bearer_token_file=str(token_file),
        )  # fmt: skip


def _demo_walkthrough(registry_url: str, admin: str) -> str:
    from registry.demo import IHI_SYSTEM, PATIENTS

    ihi = PATIENTS[0]
    return f"""
The demonstration: a registry at {registry_url} (dev mode, its own embedded cluster) and three
gateways that register their patients ({", ".join(PATIENTS)}) and answer ImagingStudy searches.
In another terminal:

export TOKEN={admin}

# Where is the imaging of patient {ihi}? (three gateways hold some)
curl -s {registry_url}/registry/records/{ihi} -H "Authorization: Bearer $TOKEN"

# Every imaging study of that patient, from all three gateways at once, merged (one CT is held by two):
curl -s '{registry_url}/fhir/ImagingStudy?patient.identifier={IHI_SYSTEM}|{ihi}' -H "Authorization: Bearer $TOKEN"

# The gateways to ask, as FHIR Endpoints:
curl -s '{registry_url}/fhir/Patient/$locate?identifier={IHI_SYSTEM}|{ihi}' -H "Authorization: Bearer $TOKEN"

# What was audited:
curl -s '{registry_url}/fhir/AuditEvent?patient={ihi}' -H "Authorization: Bearer $TOKEN"
"""
