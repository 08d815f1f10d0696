"""The operator's command line: ``ief-registry serve | worker | db | services | clients | token | keys | audit``.

Every command reads the same settings (``IEF_*`` variables, ``--config FILE``). With no database
URL, commands use the embedded cluster in the data directory: started if needed, and stopped
afterwards only if this command started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import msgspec

from registry import errors
from registry.config import TOML_ONLY, Settings, describe_settings, load_settings
from registry.db.embedded import EmbeddedPostgres, EmbeddedUnavailable
from registry.db.migrate import SchemaTooNew, apply_migrations, schema_state
from registry.db.pool import connect, open_database
from registry.db.queries import load_queries
from registry.db.wait import wait_for_database
from registry.instance import instance_service_id, log_hash_key
from registry.log import configure_logging, get_logger

__all__ = ("main", "worker_listener")

if TYPE_CHECKING:
    import uvicorn

T = TypeVar("T")
_log = get_logger("registry.cli")


def _settings_epilog() -> str:
    lines = ["\b", "Settings (environment variable, default):"]
    for doc in describe_settings():
        lines.append(f"  {doc.key} {TOML_ONLY}={doc.default}" if doc.env == TOML_ONLY else f"  {doc.env}={doc.default}")
        lines.append(f"      {doc.description}")
    return "\n".join(lines)


class _Context:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        try:
            settings = load_settings(config_file=self.config, overrides=overrides)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        # Logs go to stderr, so stdout carries only a command's result (`token` prints a token alone).
        configure_logging(settings.log.level, settings.log.format)
        return settings


@contextlib.contextmanager
def database_url(settings: Settings, *, keep_running: bool = False) -> Iterator[str]:
    """The database URL to use: the configured one, else the embedded cluster's (started if needed).

    The embedded cluster is stopped on exit when this call started it, unless ``keep_running``.
    """
    if settings.database.url:
        yield settings.database.url
        return
    cluster = EmbeddedPostgres(settings.data_dir, user=settings.embedded.user, bin_dir=settings.embedded.bin_dir)
    try:
        was_running = cluster.running()
        url = cluster.start()
    except EmbeddedUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    if not was_running:
        _log.info("embedded_started", data_dir=str(cluster.root))
    try:
        yield url
    finally:
        if not was_running and not keep_running:
            cluster.stop()
            _log.info("embedded_stopped", data_dir=str(cluster.root))


def worker_listener(config: uvicorn.Config) -> socket.socket:
    """The listening socket shared by worker processes, marked as TCP so its connections get TCP_NODELAY.

    uvicorn's ``bind_socket()`` leaves the socket's ``proto`` at 0, and asyncio turns Nagle's
    algorithm off only for sockets whose ``proto`` is ``IPPROTO_TCP``: every keep-alive response
    would then wait about 40 ms for the client's delayed ACK (https://github.com/Kludex/uvicorn/issues/3149).
    """
    bound = config.bind_socket()
    if bound.family not in {socket.AF_INET, socket.AF_INET6}:
        return bound
    return socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())


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


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro())  # type: ignore[arg-type]
    except errors.RegistryError as exc:
        raise click.ClickException(exc.message) from None
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


async def _migrate(url: str, settings: Settings) -> list[str]:
    conn = await connect(url, statement_cache=settings.database.statement_cache)
    try:
        return [f"{m.version:04d}_{m.name}" for m in await apply_migrations(conn)]
    finally:
        await conn.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), envvar="IEF_CONFIG", help="TOML settings file.")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """ief-registry: the Registry and Broker of the Imaging Exchange Framework."""
    ctx.obj = _Context(config)


@main.command(epilog=_settings_epilog())
@click.option("--host", default=None, help="Bind address (IEF_HTTP_HOST).")
@click.option("--port", type=int, default=None, help="TCP port (IEF_HTTP_PORT).")
@click.option("--workers", type=int, default=None, help="Server processes (IEF_HTTP_WORKERS).")
@click.option("--dev", is_flag=True, default=None, help="Development mode (IEF_DEV); never for production.")
@click.pass_obj
def serve(obj: _Context, host: str | None, port: int | None, workers: int | None, dev: bool | None) -> None:
    """Start the server (on the embedded PostgreSQL unless IEF_DATABASE_URL is set)."""
    import uvicorn

    settings = obj.settings(**{"http.host": host, "http.port": port, "http.workers": workers, "dev": dev})
    configure_logging(settings.log.level, settings.log.format)
    service_id = instance_service_id(settings.data_dir, settings.service_id)
    hash_key = log_hash_key(settings.data_dir, settings.log.hash_key)
    _stop_cleanly_on_signals()
    failed = False
    try:
        with database_url(settings) as url:
            _run(lambda: wait_for_database(url, settings.database))
            if settings.database.auto_migrate:
                applied = _run(lambda: _migrate(url, settings))
                if applied:
                    _log.info("migrations_applied", migrations=applied)
            if settings.dev:
                token = _run(lambda: _mint(url, settings, service_id, ["admin"], settings.auth.max_token_lifetime))
                hours = settings.auth.max_token_lifetime / 3600
                click.echo(f"Development admin token (scope admin, valid {hours:g} h; dev mode only):\n{token}")
            _log.info(
                "server_starting",
                address=f"http://{settings.http.host}:{settings.http.port}",
                database="external" if settings.database.url else "embedded",
                service_id=service_id,
                dev=settings.dev,
            )
            if settings.http.workers == 1:
                failed = not _serve_in_process(settings, url, service_id, hash_key)
            else:
                from uvicorn.supervisors import Multiprocess

                os.environ["IEF_DATABASE_URL"] = url
                os.environ["IEF_SERVICE_ID"] = service_id
                if settings.dev:
                    os.environ["IEF_DEV"] = "true"  # workers read settings from the environment
                config = uvicorn.Config(
                    "registry.asgi:create", factory=True, host=settings.http.host, port=settings.http.port,
                    workers=settings.http.workers, log_config=None, access_log=False, lifespan="on",
                    server_header=False,
                )  # fmt: skip
                Multiprocess(config, sockets=[worker_listener(config)]).run()
    finally:
        _log.info("server_stopped")
    if failed:
        raise click.ClickException("the server did not start (see the log above)")


def _serve_in_process(settings: Settings, url: str, service_id: str, hash_key: bytes) -> bool:
    """Serve HTTP in this process until a signal stops it; returns whether the server started."""
    import uvicorn

    from registry.app import build_asgi

    app = build_asgi(settings, database_url=url, service_id=service_id, hash_key=hash_key)
    config = uvicorn.Config(
        app, host=settings.http.host, port=settings.http.port, log_config=None, access_log=False, lifespan="on",
        server_header=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.run()
    return server.started


@main.command()
@click.option("--port", type=int, default=8080, show_default=True, help="The registry's TCP port.")
@click.option("--gateway-port", type=int, default=None, help="The demonstration gateways' port [default: port + 1].")
@click.option("--data-dir", type=click.Path(file_okay=False), default=".ief-demo", show_default=True,
              help="The demonstration's own data directory and embedded cluster.")  # fmt: skip
@click.pass_obj
def demo(obj: _Context, port: int, gateway_port: int | None, data_dir: str) -> None:
    """Run the registry in dev mode with three demonstration gateways that register patients and answer searches."""
    import subprocess

    from registry import demo as gateways

    settings = obj.settings(**{"http.port": port, "data_dir": str(Path(data_dir).resolve()), "dev": True})
    if settings.database.url:
        raise click.ClickException("the demonstration runs on an embedded cluster of its own: unset IEF_DATABASE_URL")
    gateway_port = gateway_port or port + 1
    origin = f"http://127.0.0.1:{gateway_port}"
    registry_url = f"http://{settings.http.host}:{port}"
    service_id = instance_service_id(settings.data_dir, settings.service_id)
    hash_key = log_hash_key(settings.data_dir, settings.log.hash_key)
    _stop_cleanly_on_signals()
    with database_url(settings) as url:
        token_file = Path(settings.data_dir) / "demo-gateway-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            token_file.chmod(0o600)
        _with_directory(settings, lambda d: _add_demo_gateways(d, origin, token_file))  # migrates first
        admin = _run(lambda: _mint(url, settings, service_id, ["admin"], settings.auth.max_token_lifetime))
        env = {
            **os.environ,
            gateways.TOKEN_ENV: token_file.read_text(encoding="utf-8").strip(),
            gateways.ADMIN_TOKEN_ENV: admin,
        }
        command = [sys.executable, "-m", "registry.demo", "--port", str(gateway_port), "--registry", registry_url]
        process = subprocess.Popen(command, env=env)  # noqa: S603 - our own module, by the running interpreter
        try:
            click.echo(_demo_walkthrough(registry_url, admin))
            failed = not _serve_in_process(settings, url, service_id, hash_key)
        finally:
            process.terminate()
            process.wait(30)
    if failed:
        raise click.ClickException("the server did not start (see the log above)")


async def _add_demo_gateways(directory: Any, origin: str, token_file: Path) -> None:
    from registry.demo import GATEWAYS

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


async def _work(url: str, settings: Settings) -> None:
    from broker.subscriptions.delivery import DeliveryWorker
    from broker.subscriptions.metrics import LatencyHistogram
    from broker.subscriptions.repository import SubscriptionRepository
    from registry.app import endpoint_policy
    from schemas.fhir.canonical import Canonicals

    conn = await connect(url, statement_cache=settings.database.statement_cache)
    try:
        state = await schema_state(conn)
    finally:
        await conn.close()
    if not state.at_head:
        raise click.ClickException("the database schema is not at this release's head: run `ief-registry db upgrade`")
    database = await open_database(url, settings.database)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        worker = DeliveryWorker(
            database, SubscriptionRepository(load_queries()), settings.subscriptions,
            listen_url=settings.database.direct_url or url,
            canon=Canonicals(settings.fhir.canonical_base.rstrip("/")), policy=endpoint_policy(settings),
            latency=LatencyHistogram(),
        )  # fmt: skip
        await worker.start()
        try:
            await stop.wait()
        finally:
            await worker.stop()
    finally:
        await database.close()


@main.command()
@click.option(
    "--concurrency", type=int, default=None, help="Notifications sent at once (IEF_SUBSCRIPTIONS_WORKER_CONCURRENCY)."
)
@click.option("--dev", is_flag=True, default=None, help="Development mode (IEF_DEV): http and local endpoints.")
@click.pass_obj
def worker(obj: _Context, concurrency: int | None, dev: bool | None) -> None:
    """Run a notification delivery worker (any number may run against one database) until SIGTERM or Ctrl-C."""
    settings = obj.settings(**{"subscriptions.worker_concurrency": concurrency, "dev": dev})
    with database_url(settings) as url:
        _run(lambda: wait_for_database(url, settings.database))
        _run(lambda: _work(url, settings))


@main.group()
def db() -> None:
    """Database schema: upgrade and status."""


@db.command()
@click.pass_obj
def upgrade(obj: _Context) -> None:
    """Apply every pending migration."""
    settings = obj.settings()
    with database_url(settings) as url:
        applied = _run(lambda: _migrate(url, settings))
    click.echo("applied: " + ", ".join(applied) if applied else "already at head")


@db.command()
@click.pass_obj
def status(obj: _Context) -> None:
    """Show applied and pending migrations; exit 1 unless the schema is at head."""
    settings = obj.settings()

    async def read() -> Any:
        conn = await connect(url, statement_cache=settings.database.statement_cache)
        try:
            return await schema_state(conn)
        finally:
            await conn.close()

    with database_url(settings) as url:
        state = _run(read)
    for migration in state.known:
        mark = "applied" if migration.version in state.applied else "pending"
        click.echo(f"{migration.version:04d}_{migration.name}  {mark}")
    for version in state.unknown:
        click.echo(f"{version:04d}  unknown to this release (the database is newer)")
    sys.exit(0 if state.at_head else 1)


@main.group()
def services() -> None:
    """The services directory: gateways and registries that records may name."""


def _with_directory(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from registry.directory.repository import ServiceRepository
    from registry.directory.service import DirectoryService

    async def run() -> T:
        database = await open_database(url, settings.database)
        try:
            return await action(DirectoryService(database, ServiceRepository(load_queries())))
        finally:
            await database.close()

    with database_url(settings) as url:
        _run(lambda: _migrate(url, settings))
        return _run(run)


@services.command("add")
@click.option("--id", "service_id", required=True, help="Service ID (UUID or ULID).")
@click.option("--kind", type=click.Choice(["gateway", "registry"]), required=True)
@click.option("--name", required=True, help="Display name.")
@click.option(
    "--base-url", required=True, help="A gateway's FHIR base URL; a registry's root (its API and /fhir hang off it)."
)
@click.option("--style", type=click.Choice(["ief", "harmony"]), default="ief", show_default=True,
              help="How the broker phrases patient searches to this gateway.")  # fmt: skip
@click.option("--client-id", default=None, help="The client ID that service gave this instance (private_key_jwt).")
@click.option("--bearer-token-file", type=click.Path(dir_okay=False), default=None,
              help="File holding a fixed bearer token that service takes from this instance.")  # fmt: skip
@click.pass_obj
def services_add(
    obj: _Context,
    service_id: str,
    kind: str,
    name: str,
    base_url: str,
    style: str,
    client_id: str | None,
    bearer_token_file: str | None,
) -> None:
    """Add a member service (or change and re-enable an existing one)."""
    settings = obj.settings()
    token_file = str(Path(bearer_token_file).resolve()) if bearer_token_file else None
    service, created = _with_directory(
        settings,
        lambda d: d.add(
            service_id=service_id, kind=kind, name=name, base_url=base_url, search_style=style, client_id=client_id,
            bearer_token_file=token_file,
        ),
    )  # fmt: skip
    click.echo(f"{'added' if created else 'updated'} {service.kind} {service.service_id} {service.name}")


@services.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def services_list(obj: _Context, as_json: bool) -> None:
    """List member services."""
    found = _with_directory(obj.settings(), lambda d: d.list_all())
    for service in found:
        if as_json:
            click.echo(msgspec.json.encode(service).decode())
        else:
            credential = (
                f"client {service.client_id}" if service.client_id
                else "token file" if service.bearer_token_file else "no credentials"
            )  # fmt: skip
            click.echo(
                f"{service.service_id}  {service.kind:8}  {service.status:8}  {service.search_style:7}  "
                f"{service.name}  {service.base_url}  ({credential})"
            )


@services.command("disable")
@click.argument("service_id")
@click.pass_obj
def services_disable(obj: _Context, service_id: str) -> None:
    """Disable a member service: records can no longer name it."""
    from schemas.types import ServiceStatus

    service = _with_directory(obj.settings(), lambda d: d.set_status(service_id, ServiceStatus.DISABLED))
    click.echo(f"disabled {service.service_id} {service.name}")


@services.command("enable")
@click.argument("service_id")
@click.pass_obj
def services_enable(obj: _Context, service_id: str) -> None:
    """Enable a disabled member service again."""
    from schemas.types import ServiceStatus

    service = _with_directory(obj.settings(), lambda d: d.set_status(service_id, ServiceStatus.ENABLED))
    click.echo(f"enabled {service.service_id} {service.name}")


def _with_auth(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(AuthParts)`` against the database (migrated first), with this instance's service ID."""
    from registry.auth.wiring import start_auth

    service_id = instance_service_id(settings.data_dir, settings.service_id)

    async def run() -> T:
        database = await open_database(url, settings.database)
        try:
            auth = await start_auth(database, load_queries(), settings, service_id)
            try:
                return await action(auth)
            finally:
                await auth.close()
        finally:
            await database.close()

    with database_url(settings) as url:
        _run(lambda: _migrate(url, settings))
        return _run(run)


async def _mint(url: str, settings: Settings, service_id: str, scopes: list[str], lifetime: int | None) -> str:
    from registry.auth.clients import OPERATOR_CLIENT_ID
    from registry.auth.wiring import start_auth

    database = await open_database(url, settings.database)
    try:
        auth = await start_auth(database, load_queries(), settings, service_id)
        try:
            issued = await auth.issuer.mint(
                client_id=OPERATOR_CLIENT_ID, service_id=service_id, scopes=scopes, lifetime=lifetime
            )
        finally:
            await auth.close()
    finally:
        await database.close()
    return issued.access_token


@main.command()
@click.option("--scopes", required=True, help='Space-separated scopes, e.g. "admin" or "system/Basic.rs".')
@click.option("--service-id", default=None, help="Service the token is bound to (default: this instance's).")
@click.option(
    "--lifetime", type=int, default=None, help="Seconds the token is valid (default IEF_AUTH_TOKEN_LIFETIME)."
)
@click.pass_obj
def token(obj: _Context, scopes: str, service_id: str | None, lifetime: int | None) -> None:
    """Print a token from the built-in issuer for the local operator (alone on stdout)."""
    from registry.auth.clients import check_bound_service
    from registry.auth.scopes import is_scope

    settings = obj.settings()
    wanted = scopes.split()
    unknown = [scope for scope in wanted if not is_scope(scope)]
    if not wanted or unknown:
        raise click.ClickException(f"unknown scope(s): {' '.join(unknown) or '(none given)'}")
    if lifetime is not None and not 10 <= lifetime <= settings.auth.max_token_lifetime:
        raise click.ClickException(f"--lifetime is 10 to {settings.auth.max_token_lifetime} seconds")
    try:
        bound = (
            check_bound_service(service_id)
            if service_id
            else instance_service_id(settings.data_dir, settings.service_id)
        )
    except errors.InvalidInput as exc:
        raise click.ClickException(exc.message) from None
    with database_url(settings) as url:
        _run(lambda: _migrate(url, settings))
        click.echo(_run(lambda: _mint(url, settings, bound, wanted, lifetime)))


@main.group()
def keys() -> None:
    """This instance's signing keys (kept in the database)."""


@keys.command("rotate")
@click.option("--outbound", is_flag=True, help="Rotate the outbound key (client assertions to peers) instead.")
@click.pass_obj
def keys_rotate(obj: _Context, outbound: bool) -> None:
    """Make a new active signing key; the old one stays published until its tokens have expired."""
    from registry.auth.keys import ISSUER, OUTBOUND

    purpose = OUTBOUND if outbound else ISSUER
    kid = _with_auth(obj.settings(), lambda auth: auth.keys.rotate(purpose))
    click.echo(f"new active {purpose} key {kid}")


@main.group()
def clients() -> None:
    """Clients: who may get tokens, bound to which service, with which scopes and keys."""


def _key_material(jwks: str | None, jwks_url: str | None, public_key: str | None) -> dict[str, Any]:
    material: dict[str, Any] = {}
    try:
        if jwks:
            material["jwks"] = msgspec.json.decode(Path(jwks).read_bytes())
        if public_key:
            material["public_key_pem"] = Path(public_key).read_text(encoding="utf-8")
    except (OSError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the key material: {exc}") from None
    if jwks_url:
        material["jwks_url"] = jwks_url
    return material


_jwks_option = click.option("--jwks", type=click.Path(dir_okay=False), help="File holding the client's JWKS.")
_jwks_url_option = click.option("--jwks-url", help="URL of the client's JWKS (https; http on loopback or in dev).")
_public_key_option = click.option(
    "--public-key", type=click.Path(dir_okay=False), help="File holding its PEM public key."
)


@clients.command("add")
@click.argument("name")
@click.option("--service-id", required=True, help="The service this client is bound to (its writes name it).")
@click.option(
    "--scopes", required=True, help='Space-separated scopes it may hold, e.g. "system/Basic.cu system/Basic.rs".'
)
@_jwks_option
@_jwks_url_option
@_public_key_option
@click.option("--secret", is_flag=True, help="Authenticate with a generated client secret (dev, or when allowed).")
@click.option("--external", is_flag=True, help="No credentials here: a trusted issuer's client maps to it.")
@click.option(
    "--rate", type=float, default=None, help="Requests per second for this client (default IEF_AUTH_RATE_PER_SECOND)."
)
@click.option("--full-resource", is_flag=True, help="Allow it subscriptions with full-resource payloads.")
@click.pass_obj
def clients_add(
    obj: _Context,
    name: str,
    service_id: str,
    scopes: str,
    jwks: str | None,
    jwks_url: str | None,
    public_key: str | None,
    secret: bool,
    external: bool,
    rate: float | None,
    full_resource: bool,
) -> None:
    """Register a client; prints its ID alone on the last line (and a secret once, before it)."""
    settings = obj.settings()
    material = _key_material(jwks, jwks_url, public_key)
    row, plain = _with_auth(
        settings,
        lambda auth: auth.clients.add(
            name=name,
            service_id=service_id,
            scopes=scopes.split(),
            secret=secret,
            external=external,
            rate_per_second=rate,
            **material,
        ),
    )
    if full_resource:
        _allow_full_resource(settings, row.client_id, allowed=True)
    if plain is not None:
        click.echo(f"client secret (shown once, store it now): {plain}")
        if not (settings.auth.allow_client_secrets or settings.dev):
            click.echo("note: client secrets are refused until IEF_AUTH_ALLOW_CLIENT_SECRETS=true or --dev", err=True)
    click.echo(f"added client {row.name} bound to {row.service_id}: {' '.join(row.scopes)}", err=True)
    click.echo(row.client_id)


def _allow_full_resource(settings: Settings, client_id: str, *, allowed: bool) -> None:
    from broker.subscriptions.repository import SubscriptionRepository

    async def run() -> None:
        database = await open_database(url, settings.database)
        try:
            async with database.writer() as conn:
                if not await SubscriptionRepository(load_queries()).set_full_resource(conn, client_id, allowed):
                    raise click.ClickException(f"no client {client_id}")
        finally:
            await database.close()

    with database_url(settings) as url:
        _run(run)


@clients.command("full-resource")
@click.argument("client_id")
@click.option("--off", is_flag=True, help="Stop allowing it (its full-resource subscriptions go to error).")
@click.pass_obj
def clients_full_resource(obj: _Context, client_id: str, off: bool) -> None:
    """Allow a client subscriptions with full-resource payloads (or stop, with --off)."""
    _allow_full_resource(obj.settings(), client_id, allowed=not off)
    click.echo(f"{'not allowed' if off else 'allowed'} full-resource payloads: {client_id}")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.pass_obj
def clients_list(obj: _Context, as_json: bool) -> None:
    """List clients (never their secrets)."""
    from registry.auth.clients import client_info

    for row in _with_auth(obj.settings(), lambda auth: auth.clients.list_all()):
        if as_json:
            click.echo(msgspec.json.encode(client_info(row)).decode())
        else:
            click.echo(
                f"{row.client_id}  {row.status:8}  {row.auth_method:15}  {row.service_id}  {row.name}  "
                f"{' '.join(row.scopes)}"
            )


@clients.command("rotate")
@click.argument("client_id")
@_jwks_option
@_jwks_url_option
@_public_key_option
@click.pass_obj
def clients_rotate(
    obj: _Context, client_id: str, jwks: str | None, jwks_url: str | None, public_key: str | None
) -> None:
    """Replace a client's credentials: new key material when given, else a new secret."""
    material = _key_material(jwks, jwks_url, public_key)
    row, plain = _with_auth(obj.settings(), lambda auth: auth.clients.rotate(client_id, **material))
    if plain is not None:
        click.echo(f"client secret (shown once, store it now): {plain}")
    click.echo(f"rotated {row.client_id} ({row.auth_method})")


def _set_client_status(obj: _Context, client_id: str, status: str) -> None:
    from schemas.types import ServiceStatus

    wanted = ServiceStatus(status)
    row = _with_auth(obj.settings(), lambda auth: auth.clients.set_status(client_id, wanted))
    click.echo(f"{status} {row.client_id} {row.name}")


@clients.command("disable")
@click.argument("client_id")
@click.pass_obj
def clients_disable(obj: _Context, client_id: str) -> None:
    """Disable a client: its tokens are refused (within IEF_AUTH_CLIENT_CACHE_SECONDS) and it gets no new ones."""
    _set_client_status(obj, client_id, "disabled")


@clients.command("enable")
@click.argument("client_id")
@click.pass_obj
def clients_enable(obj: _Context, client_id: str) -> None:
    """Enable a disabled client again."""
    _set_client_status(obj, client_id, "enabled")


@main.group()
def audit() -> None:
    """The audit trail: verify its hash chain."""


@audit.command("verify")
@click.pass_obj
def audit_verify(obj: _Context) -> None:
    """Seal pending audit rows, then check every row against the hash chain; exit 1 naming the first bad row."""
    import asyncpg

    from registry.audit.chain import ChainBroken, seal, verify
    from registry.audit.repository import AuditRepository

    repository = AuditRepository(load_queries())
    sealing_failed: list[str] = []

    async def run() -> Any:
        conn = await connect(url, statement_cache=settings.database.statement_cache)
        try:
            if not (await schema_state(conn)).at_head:
                raise click.ClickException(
                    "the database schema is not at this release's head: run `ief-registry db upgrade`"
                )
            try:
                while (result := await seal(conn, repository, wait=True)).more and result.sealed:
                    pass  # more than one run's worth; rows that wait for open transactions stay pending
            except (ChainBroken, asyncpg.PostgresError) as exc:
                sealing_failed.append(str(exc))
            return await verify(conn, repository)
        finally:
            await conn.close()

    settings = obj.settings()
    with database_url(settings) as url:
        verdict = _run(run)
    if not verdict.ok:
        click.echo(f"audit verify: FAILED after {verdict.rows} good rows: {verdict.problem}", err=True)
        sys.exit(1)
    if sealing_failed:
        click.echo(f"audit verify: FAILED: new rows could not be sealed: {sealing_failed[0]}", err=True)
        sys.exit(1)
    click.echo(f"audit verify: ok: {verdict.rows} rows chained, head hash {verdict.head_hash}")
    if verdict.pending:
        click.echo(f"audit verify: {verdict.pending} newer rows wait for open transactions to end before sealing")
