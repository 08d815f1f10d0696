"""The operator's command line: ``ief-registry serve | db | services | audit``.

Every command reads the same settings (``IEF_*`` variables, ``--config FILE``). With no database
URL, commands use the embedded cluster in the data directory: started if needed, and stopped
afterwards only if this command started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click
import msgspec

from registry import errors
from registry.config import Settings, describe_settings, load_settings
from registry.db.embedded import EmbeddedPostgres, EmbeddedUnavailable
from registry.db.migrate import SchemaTooNew, apply_migrations, schema_state
from registry.db.pool import connect, open_database
from registry.db.queries import load_queries
from registry.instance import instance_service_id, log_hash_key
from registry.log import configure_logging, get_logger

__all__ = ("main",)

T = TypeVar("T")
_log = get_logger("registry.cli")


def _settings_epilog() -> str:
    lines = ["\b", "Settings (environment variable, default):"]
    for doc in describe_settings():
        lines.append(f"  {doc.env}={doc.default}")
        lines.append(f"      {doc.description}")
    return "\n".join(lines)


class _Context:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        try:
            return load_settings(config_file=self.config, overrides=overrides)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None


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


async def _migrate(url: str) -> list[str]:
    conn = await connect(url)
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
            if settings.database.auto_migrate:
                applied = _run(lambda: _migrate(url))
                if applied:
                    _log.info("migrations_applied", migrations=applied)
            _log.info(
                "server_starting",
                address=f"http://{settings.http.host}:{settings.http.port}",
                database="external" if settings.database.url else "embedded",
                service_id=service_id,
                dev=settings.dev,
            )
            if settings.http.workers == 1:
                from registry.app import build_asgi

                app = build_asgi(settings, database_url=url, service_id=service_id, hash_key=hash_key)
                config = uvicorn.Config(
                    app, host=settings.http.host, port=settings.http.port, log_config=None, access_log=False,
                    lifespan="on", server_header=False,
                )  # fmt: skip
                server = uvicorn.Server(config)
                server.run()
                failed = not server.started
            else:
                os.environ["IEF_DATABASE_URL"] = url
                os.environ["IEF_SERVICE_ID"] = service_id
                uvicorn.run(
                    "registry.asgi:create", factory=True, host=settings.http.host, port=settings.http.port,
                    workers=settings.http.workers, log_config=None, access_log=False, lifespan="on",
                    server_header=False,
                )  # fmt: skip
    finally:
        _log.info("server_stopped")
    if failed:
        raise click.ClickException("the server did not start (see the log above)")


@main.group()
def db() -> None:
    """Database schema: upgrade and status."""


@db.command()
@click.pass_obj
def upgrade(obj: _Context) -> None:
    """Apply every pending migration."""
    settings = obj.settings()
    with database_url(settings) as url:
        applied = _run(lambda: _migrate(url))
    click.echo("applied: " + ", ".join(applied) if applied else "already at head")


@db.command()
@click.pass_obj
def status(obj: _Context) -> None:
    """Show applied and pending migrations; exit 1 unless the schema is at head."""
    settings = obj.settings()

    async def read() -> Any:
        conn = await connect(url)
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
        _run(lambda: _migrate(url))
        return _run(run)


@services.command("add")
@click.option("--id", "service_id", required=True, help="Service ID (UUID or ULID).")
@click.option("--kind", type=click.Choice(["gateway", "registry"]), required=True)
@click.option("--name", required=True, help="Display name.")
@click.option("--base-url", required=True, help="FHIR base URL of the service.")
@click.option("--style", type=click.Choice(["ief", "harmony"]), default="ief", show_default=True,
              help="How the broker phrases patient searches to this gateway.")  # fmt: skip
@click.pass_obj
def services_add(obj: _Context, service_id: str, kind: str, name: str, base_url: str, style: str) -> None:
    """Add a member service (or change and re-enable an existing one)."""
    settings = obj.settings()
    service, created = _with_directory(
        settings,
        lambda d: d.add(service_id=service_id, kind=kind, name=name, base_url=base_url, search_style=style),
    )
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
            click.echo(
                f"{service.service_id}  {service.kind:8}  {service.status:8}  {service.search_style:7}  "
                f"{service.name}  {service.base_url}"
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
        conn = await connect(url)
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

    with database_url(obj.settings()) as url:
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
