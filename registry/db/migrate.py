"""Forward-only migrations: ``sql/migrations/NNNN_what.sql`` applied in order, recorded in ``schema_migrations``.

Each migration runs in its own transaction, which first takes a transaction-scoped advisory lock and
reads what is applied, so several processes starting at once apply each file exactly once. The lock
is never held across transactions (no session state), so migrating through PgBouncer in
transaction mode is as safe as migrating directly. A database that has a migration this code does
not know is newer than the code: the server refuses to start against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from registry.db.queries import SQL_DIR

if TYPE_CHECKING:
    from registry.db.pool import Connection

__all__ = ("Migration", "SchemaState", "SchemaTooNew", "apply_migrations", "known_migrations", "schema_state")

_FILE = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x1EF_0001


class SchemaTooNew(RuntimeError):
    """The database has migrations this code does not know: it was upgraded by a newer release."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database stands against the code."""

    applied: list[int]
    known: list[Migration]

    @property
    def pending(self) -> list[Migration]:
        """Migrations the code has and the database has not."""
        done = set(self.applied)
        return [m for m in self.known if m.version not in done]

    @property
    def unknown(self) -> list[int]:
        """Versions the database has and the code does not."""
        known = {m.version for m in self.known}
        return [v for v in self.applied if v not in known]

    @property
    def at_head(self) -> bool:
        """Whether every known migration is applied and none unknown is."""
        return not self.pending and not self.unknown


def known_migrations(folder: Path = SQL_DIR / "migrations") -> list[Migration]:
    """Every migration file, in version order; a malformed name or a repeated number is an error."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if not match:
            raise ValueError(f"migration file name {path.name!r} is not NNNN_what.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a number")
    return found


async def _ensure_table(conn: Connection) -> None:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer     PRIMARY KEY,
               name       text        NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )


async def schema_state(conn: Connection) -> SchemaState:
    """Read which migrations a database has (an empty database has none)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied: list[int] = []
    if exists:
        applied = [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    return SchemaState(applied=applied, known=known_migrations())


async def apply_migrations(conn: Connection, *, through: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version ``through`` when given); return those applied.

    One transaction per migration: take the lock, read the schema's state, apply the first pending
    migration and record it. Whoever waited on the lock reads the state again afterwards, so a
    migration applied meanwhile by another process is not applied twice.

    Raises:
        SchemaTooNew: the database has migrations this code does not know.
    """
    applied: list[Migration] = []
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await _ensure_table(conn)
            state = await schema_state(conn)
            if state.unknown:
                raise SchemaTooNew(
                    f"the database has migrations {state.unknown} that this release does not know; "
                    "run a release at least as new as the one that upgraded it"
                )
            if not state.pending or (through is not None and state.pending[0].version > through):
                return applied
            migration = state.pending[0]
            await conn.execute(migration.path.read_text(encoding="utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version, migration.name
            )
        applied.append(migration)
