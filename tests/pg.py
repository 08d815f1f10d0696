"""A throwaway PostgreSQL cluster for the test session, and databases made from a migrated template."""

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

__all__ = ("TestCluster",)

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
        """Start the cluster; return the URL of its maintenance database."""
        self.url = self.cluster.start()
        return self.url

    def url_for(self, database: str) -> str:
        """The URL of one database in the cluster."""
        return f"postgresql://ief@/{database}?host={quote(str(self.cluster.socket_dir), safe='/')}"

    async def empty_database(self, name: str) -> str:
        """A new database with nothing in it (dropped first if it exists); return its URL."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name}")
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
        """Create the migrated template database every test database is copied from."""
        conn = await asyncpg.connect(await self.empty_database(TEMPLATE))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()

    async def new_database(self) -> str:
        """A fresh, migrated database (a copy of the template); return its URL."""
        name = f"ief_test_{next(self._names)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
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
