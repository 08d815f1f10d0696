"""``db``: the database schema, upgraded and shown."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session, embedded_cluster
from registry.db.migrate import known_migrations, schema_state

if TYPE_CHECKING:
    from registry.db.migrate import SchemaState

__all__ = ("db",)


@click.group()
def db() -> None:
    """Database schema: upgrade and status."""


async def _applied(session: Session) -> list[str]:
    return session.applied


async def _schema(session: Session) -> SchemaState:
    async with session.database.writer() as conn:
        return await schema_state(conn)


@db.command()
@click.pass_obj
def upgrade(runtime: Runtime) -> None:
    """Apply every pending migration."""
    applied = runtime.run(runtime.settings(), _applied, migrate=True)
    click.echo("applied: " + ", ".join(applied) if applied else "already at head")


@db.command()
@click.pass_obj
def status(runtime: Runtime) -> None:
    """Show applied and pending migrations; exit 1 unless the schema is at head.

    On a data directory whose embedded cluster does not exist yet, nothing is created: every migration
    is pending, and the message says which command creates it.
    """
    settings = runtime.settings()
    cluster = embedded_cluster(settings)
    if cluster is not None and not cluster.initialised:
        for migration in known_migrations():
            click.echo(f"{migration.version:04d}_{migration.name}  pending")
        click.echo(
            f"no database yet in {settings.data_dir}: `ief-registry db upgrade` creates and migrates it "
            "(`ief-registry serve` does too)",
            err=True,
        )
        sys.exit(1)
    state = runtime.run(settings, _schema)
    for migration in state.known:
        mark = "applied" if migration.version in state.applied else "pending"
        click.echo(f"{migration.version:04d}_{migration.name}  {mark}")
    for version in state.unknown:
        click.echo(f"{version:04d}  unknown to this release (the database is newer)")
    if state.pending:
        click.echo("pending migrations: `ief-registry db upgrade` applies them", err=True)
    sys.exit(0 if state.at_head else 1)
