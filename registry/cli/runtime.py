"""What every command runs on: the settings, read once, and the database, opened and closed in one place.

``Runtime.settings()`` reads the settings (``IEF_*`` variables and ``--config FILE``) and
configures logging (to stderr, so stdout carries only a command's result). ``Runtime.run(settings,
action)`` resolves the database as the role that owns the schema (``IEF_DATABASE_OWNER_URL``, else
``IEF_DATABASE_URL``, else the embedded cluster in the data directory: started if needed, its roles
prepared, and stopped afterwards only if this command started it), waits for it when asked (a
server process starting during a failover: ``registry.db.wait``), migrates it or checks it is at
head when asked, opens it (as the server's role for a server process: ``as_server``), starts the
authentication parts when asked, runs ``action(Session)`` and closes everything; our errors, a
newer schema and an unreachable database become a one-line ``click`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from registry import errors
from registry.config import load_settings
from registry.db.embedded import EmbeddedPostgres, EmbeddedUnavailable
from registry.db.migrate import SchemaTooNew, apply_migrations, schema_state
from registry.db.pool import connect, open_database
from registry.db.queries import load_queries
from registry.db.roles import owner_database_url, server_database_url
from registry.db.wait import wait_for_database
from registry.directory.repository import ServiceRepository
from registry.directory.service import DirectoryService
from registry.instance import instance_service_id
from registry.log import configure_logging, get_logger
from registry.outbound.egress import outbound_policy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from registry.auth.wiring import AuthParts
    from registry.config import Settings
    from registry.db.pool import Database
    from registry.db.queries import Queries

__all__ = ("Runtime", "Session", "database_url", "run_async")

T = TypeVar("T")
_log = get_logger("registry.cli")


@dataclass(slots=True)
class Session:
    """One command's open database (and authentication parts, when the command asked for them)."""

    settings: Settings
    url: str
    database: Database
    queries: Queries
    applied: list[str] = field(default_factory=list)
    """The migrations this command applied (``migrate=True``), as ``NNNN_name``."""
    started_auth: AuthParts | None = None
    """The authentication parts, when the command asked for them (``auth=True``)."""

    @property
    def service_id(self) -> str:
        """This instance's service ID (configured, else the one kept in the data directory)."""
        return instance_service_id(self.settings.data_dir, self.settings.service_id)

    @property
    def auth(self) -> AuthParts:
        """The authentication parts (keys, issuer, clients); the command must have asked for them."""
        assert self.started_auth is not None, "run(..., auth=True)"
        return self.started_auth

    def directory(self) -> DirectoryService:
        """The services directory."""
        return DirectoryService(self.database, ServiceRepository(self.queries), policy=outbound_policy(self.settings))


class Runtime:
    """The ``click`` context object: the ``--config`` file every command reads its settings from."""

    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self, **overrides: Any) -> Settings:
        """The settings, with command-line ``overrides`` (dotted keys; None: not given); logging configured.

        Raises:
            ClickException: a setting or the TOML file is invalid.
        """
        try:
            settings = load_settings(config_file=self.config, overrides=overrides)
        except (ValueError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        # Logs go to stderr, so stdout carries only a command's result (`token` prints a token alone).
        configure_logging(settings.log.level, settings.log.format)
        return settings

    def run(
        self,
        settings: Settings,
        action: Callable[[Session], Awaitable[T]],
        *,
        url: str | None = None,
        migrate: bool = False,
        at_head: bool = False,
        auth: bool = False,
        as_server: bool = False,
        wait: bool = False,
    ) -> T:
        """Run ``action`` on the database: migrated first (``migrate``), or refused unless at head (``at_head``),
        with the authentication parts started (``auth``); opened as the server's role (``as_server``: a
        server process, ``worker``), else as the schema's owner (the operator's commands). A server
        process ``wait``s first, up to ``database.startup_wait`` seconds, for a database that cannot be
        reached or refuses writes.

        ``url``: the owner's URL, already resolved (``database_url``) by a command that keeps it for longer.

        Raises:
            ClickException: what went wrong, in one line.
        """

        def on(resolved: str) -> T:
            return run_async(
                lambda: _session(
                    settings,
                    resolved,
                    action,
                    migrate=migrate,
                    at_head=at_head,
                    auth=auth,
                    wait=wait,
                    session_url=server_database_url(settings, resolved) if as_server else resolved,
                )
            )

        if url is not None:
            return on(url)
        with database_url(settings) as resolved:
            return on(resolved)


@contextlib.contextmanager
def database_url(settings: Settings, *, keep_running: bool = False) -> Iterator[str]:
    """The URL of the role that owns the schema: the configured one, else the embedded cluster's (started if
    needed, its roles prepared); server processes use ``server_database_url`` of it.

    The embedded cluster is stopped on exit when this call started it, unless ``keep_running``.
    """
    if configured := owner_database_url(settings):
        yield configured
        return
    cluster = EmbeddedPostgres(settings.data_dir, user=settings.embedded.user, bin_dir=settings.embedded.bin_dir)
    try:
        was_running = cluster.running()
        cluster.start()
        url = cluster.prepare_roles()
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


def run_async(coro: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion; our errors, a newer schema and an unreachable database become a ``click`` error.

    Raises:
        ClickException: what went wrong, in one line.
    """
    try:
        return asyncio.run(coro())  # type: ignore[arg-type]
    except errors.RegistryError as exc:
        raise click.ClickException(exc.message) from None
    except SchemaTooNew as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None


async def _session(
    settings: Settings,
    url: str,
    action: Callable[[Session], Awaitable[T]],
    *,
    migrate: bool,
    at_head: bool,
    auth: bool,
    wait: bool,
    session_url: str,
) -> T:
    if wait:
        await wait_for_database(url, settings.database)
    conn = await connect(url, statement_cache=settings.database.statement_cache)
    try:
        applied = [f"{m.version:04d}_{m.name}" for m in await apply_migrations(conn)] if migrate else []
        if at_head and not (await schema_state(conn)).at_head:
            raise click.ClickException(
                "the database schema is not at this release's head: run `ief-registry db upgrade`"
            )
    finally:
        await conn.close()
    database = await open_database(session_url, settings.database)
    session = Session(settings, session_url, database, load_queries(), applied)
    try:
        if auth:
            from registry.auth.wiring import start_auth

            session.started_auth = await start_auth(database, session.queries, settings, session.service_id)
        return await action(session)
    finally:
        if session.started_auth is not None:
            await session.started_auth.close()
        await database.close()
