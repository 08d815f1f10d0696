"""A real PgBouncer in transaction pool mode in front of a test cluster, as an operator would run one.

PgBouncer (Debian's ``pgbouncer`` package) listens on a loopback TCP port and reaches PostgreSQL on
its Unix socket. Like PostgreSQL it refuses to run as root, so when the tests are root it runs as
the cluster's user, who can also reach the socket. Tests that need it skip, saying why, when the
binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.server import free_port

if TYPE_CHECKING:
    from registry.db.embedded import EmbeddedPostgres

__all__ = ("PgBouncer", "find_pgbouncer")

_SEARCH = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer")


def find_pgbouncer() -> str | None:
    """The pgbouncer binary: on PATH or where Debian puts it (``/usr/sbin`` is not on every PATH)."""
    return shutil.which("pgbouncer") or next((path for path in _SEARCH if os.access(path, os.X_OK)), None)


class PgBouncer:
    """PgBouncer in ``pool_mode = transaction`` with ``pool_size`` server connections per database."""

    def __init__(self, cluster: EmbeddedPostgres, folder: Path, *, pool_size: int = 2) -> None:
        binary = find_pgbouncer()
        if binary is None:
            pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer); .ci/run installs it")
        self.binary = binary
        self.cluster = cluster
        self.folder = folder
        self.port = free_port()
        self.pool_size = pool_size
        self.log = folder / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, database: str) -> str:
        """The URL of one of the cluster's databases through PgBouncer."""
        return f"postgresql://ief@127.0.0.1:{self.port}/{database}"

    def _write_config(self) -> Path:
        (self.folder / "users.txt").write_text('"ief" ""\n"ief_app" ""\n"ief_owner" ""\n', encoding="utf-8")
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.cluster.socket_dir}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.folder / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log}\n"
            f"pidfile = {self.folder / 'pgbouncer.pid'}\n",
            encoding="utf-8",
        )
        return config

    def start(self) -> None:
        """Start PgBouncer (as the cluster's user when the tests are root) and wait until it accepts connections."""
        config = self._write_config()
        user: dict[str, object] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam(os.environ.get("IEF_EMBEDDED_USER", "postgres"))
            for path in (self.folder, *self.folder.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        self._process = subprocess.Popen(
            [self.binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
            start_new_session=True, **user,  # type: ignore[call-overload]
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}: {self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen within 30 s: {self.log_text()}")

    def log_text(self) -> str:
        """What PgBouncer logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Stop PgBouncer (SIGTERM: it closes every connection at once)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(30)
