"""``db``: the database schema, upgraded and shown."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from registry.cli.runtime import Runtime, Session
from registry.db.migrate import schema_state

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
    """Show applied and pending migrations; exit 1 unless the schema is at head."""
    state = runtime.run(runtime.settings(), _schema)
    for migration in state.known:
        mark = "applied" if migration.version in state.applied else "pending"
        click.echo(f"{migration.version:04d}_{migration.name}  {mark}")
    for version in state.unknown:
        click.echo(f"{version:04d}  unknown to this release (the database is newer)")
    sys.exit(0 if state.at_head else 1)
