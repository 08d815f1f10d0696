"""A PostgreSQL streaming replica of a test cluster, made with ``pg_basebackup`` as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from registry.db.embedded import EmbeddedPostgres
from registry.db.migrate import apply_migrations
from tests.pg import as_owner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ("Replicated", "StreamingReplica", "replicated")


class StreamingReplica(EmbeddedPostgres):
    """A hot standby of ``primary``: its first start takes a base backup instead of running initdb.

    ``pg_basebackup -R`` writes ``standby.signal`` and the ``primary_conninfo`` that streams WAL from
    the primary's socket; every later start is an ordinary start of the standby (on its own socket).
    """

    def __init__(self, data_dir: str | Path, primary: EmbeddedPostgres, *, user: str = "postgres") -> None:
        super().__init__(data_dir, user=user)
        self.primary = primary

    def start(self) -> str:
        """Take the base backup on the first start, then start the standby; return its URL."""
        self._resolve()
        self._prepare_dirs()
        if not self.initialised:
            conninfo = f"host={self.primary.socket_dir} user=ief dbname=postgres application_name=ief-replica"
            self._run(
                "pg_basebackup", "-D", str(self.cluster), "-d", conninfo, "-R", "-X", "stream",
                "--checkpoint=fast", "--no-password",
            )  # fmt: skip
        return super().start()


@dataclass(frozen=True, slots=True)
class Replicated:
    """A primary with the schema at head and a streaming standby of it, both running."""

    primary: EmbeddedPostgres
    standby: StreamingReplica
    primary_url: str
    standby_url: str


@contextlib.asynccontextmanager
async def replicated(prefix: str) -> AsyncIterator[Replicated]:
    """A fresh primary, migrated, and a standby made from it with ``pg_basebackup``; both removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    user = os.environ.get("IEF_EMBEDDED_USER", "postgres")
    primary = EmbeddedPostgres(folder / "primary", user=user)
    standby = StreamingReplica(folder / "standby", primary, user=user)
    try:
        # PostgreSQL runs as an unprivileged user when the tests run as root: it must reach the folder.
        await asyncio.to_thread(folder.chmod, 0o755)
        primary_url = await asyncio.to_thread(primary.start)
        await asyncio.to_thread(primary.prepare_roles)  # the roles replicate to the standby with the rest
        conn = await asyncpg.connect(as_owner(primary_url))
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        standby_url = await asyncio.to_thread(standby.start)
        yield Replicated(primary, standby, primary_url, standby_url)
    finally:
        await asyncio.to_thread(standby.stop)
        await asyncio.to_thread(primary.stop)
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)
