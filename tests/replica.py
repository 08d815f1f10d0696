"""A PostgreSQL streaming replica of a test cluster, made with ``pg_basebackup`` as an operator would."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry.db.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("StreamingReplica",)


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
