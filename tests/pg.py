"""A throwaway PostgreSQL cluster for the test session, and databases made from a migrated template.

The cluster has the roles of a deployment (``registry.db.roles``): databases belong to ``ief_owner``,
which migrates the template; the session's servers log in as ``ief_app`` (``as_server``), so every
test runs the server with only the grants it has in production. Tests read and write behind the
server's back as the bootstrap superuser (``url_for``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import asyncpg

from registry.db.embedded import EmbeddedPostgres
from registry.db.migrate import apply_migrations
from registry.db.roles import OWNER_ROLE, SERVER_LOGIN, as_role

__all__ = ("SUPERUSER", "TestCluster", "as_owner", "as_server", "table_activity")

SUPERUSER = "ief"
"""The test cluster's bootstrap superuser (the tests' own connections)."""


def as_server(url: str) -> str:
    """A superuser URL of the test cluster (direct or through PgBouncer) as the server's login role."""
    return as_role(url, SERVER_LOGIN) if url.startswith(f"postgresql://{SUPERUSER}@") else url


def as_owner(url: str) -> str:
    """A superuser URL of the test cluster as the schema owner's role."""
    return as_role(url, OWNER_ROLE) if url.startswith(f"postgresql://{SUPERUSER}@") else url


async def table_activity(conn: asyncpg.Connection, table: str) -> asyncpg.Record:
    """``table``'s row of ``pg_stat_user_tables`` (scans, tuples read, updates and HOT updates), with this
    session's own counters flushed first (PostgreSQL flushes them once the session is idle)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    row = await conn.fetchrow(
        "SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch,"
        " n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
        table,
    )
    assert row is not None, f"no statistics for {table}"
    return row


TEMPLATE = "ief_template"


class TestCluster:
    """One cluster per test session (the project's own embedded cluster, in a temp folder)."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ief-test-pg-"))
        # When the tests run as root, PostgreSQL runs as an unprivileged user who must reach it.
        self.folder.chmod(0o755)
        self.cluster = EmbeddedPostgres(self.folder, user=os.environ.get("IEF_EMBEDDED_USER", "postgres"))
        self._names = itertools.count(1)
        self.url = ""

    def start(self) -> str:
        """Start the cluster and create the deployment's roles; return the URL of its maintenance database."""
        self.url = self.cluster.start()
        self.cluster.prepare_roles()
        return self.url

    def url_for(self, database: str) -> str:
        """The URL of one database in the cluster."""
        return f"postgresql://ief@/{database}?host={quote(str(self.cluster.socket_dir), safe='/')}"

    async def empty_database(self, name: str) -> str:
        """A new database with nothing in it (dropped first if it exists); return its URL."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name} OWNER {OWNER_ROLE}")
        finally:
            await conn.close()
        return self.url_for(name)

    async def without_durability(self) -> None:
        """Stop syncing to disk: a throwaway cluster need not survive a power cut, only its server's crashes.

        Commits then return without waiting for ``fsync`` (and ``CREATE DATABASE`` without its
        checkpoint's), so a test waits for its own work, not for a disk shared with other suites. A
        server process that crashes loses nothing even so (the operating system holds what it wrote);
        the tests of crashes and failovers start clusters of their own, as production runs them.
        """
        conn = await asyncpg.connect(self.url)
        try:
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                await conn.execute(f"ALTER SYSTEM SET {name} = off")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    async def make_template(self) -> None:
        """Create the migrated template database every test database is copied from (migrated by the owner)."""
        conn = await asyncpg.connect(as_owner(await self.empty_database(TEMPLATE)))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def new_database(self) -> str:
        """A fresh, migrated database (a copy of the template); return its URL."""
        name = f"ief_test_{next(self._names)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} OWNER {OWNER_ROLE}")
        finally:
            await conn.close()
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the cluster and remove its folder: in the background, which the session need not wait for (tens of
        databases are tens of thousands of files, seconds to unlink), or at once when that cannot start."""
        try:
            self.cluster.stop()
        finally:
            # The shell puts rm in the background and ends at once: nothing is left for this process to reap.
            started = subprocess.run(
                ["sh", "-c", 'rm -rf -- "$1" >/dev/null 2>&1 &', "sh", str(self.folder)], check=False
            )
            if started.returncode != 0:
                shutil.rmtree(self.folder, ignore_errors=True)
