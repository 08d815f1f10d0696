"""The embedded PostgreSQL cluster: a private server in the data directory, on a Unix socket only.

``ief-registry serve`` with no database URL creates the cluster on first run (``initdb``), starts
it (``pg_ctl``), and stops it on shutdown. It listens on no TCP port, so nothing clashes. The
binaries are the machine's own (PATH, ``IEF_EMBEDDED_BIN_DIR`` or the usual PostgreSQL folders),
else those of the ``pgserver`` wheel when it is installed.

PostgreSQL refuses to run as root. When this process is root, the cluster belongs to and runs as
an unprivileged system user (``IEF_EMBEDDED_USER``, default ``postgres``, the user Debian's
package creates); when it is not root, the cluster runs as the current user.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import shutil
import string
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from registry.db.roles import OWNER_ROLE, as_role, prepare_roles

__all__ = ("SEARCH_PATTERNS", "EmbeddedPostgres", "EmbeddedUnavailable", "find_bin_dir")

SEARCH_PATTERNS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)
_SUPERUSER = "ief"
_DATABASE = "postgres"
# Unix socket paths are limited to 107 bytes; leave room for "/.s.PGSQL.5432".
_MAX_SOCKET_DIR = 90

INSTALL_HINT = (
    "No PostgreSQL server programs (initdb, pg_ctl) were found on PATH or in the usual folders.\n"
    "Install PostgreSQL, then run the command again:\n"
    "  Debian/Ubuntu:  sudo apt-get install -y postgresql\n"
    "  Fedora/RHEL:    sudo dnf install -y postgresql-server\n"
    "  macOS:          brew install postgresql@16\n"
    "or install the bundled server wheel:  pip install 'ief-registry[embedded]'\n"
    "or point at an existing server:       IEF_DATABASE_URL=postgresql://user@host/db\n"
    "or name the folder that holds initdb: IEF_EMBEDDED_BIN_DIR=/path/to/postgresql/bin"
)


class EmbeddedUnavailable(RuntimeError):
    """The embedded cluster cannot be created or started; the message says what to do."""


def _version_key(path: str) -> tuple[int, ...]:
    digits = [int(part) for part in "".join(c if c in string.digits else " " for c in path).split()]
    return tuple(digits)


def find_bin_dir(configured: str | None = None, *, search: Iterable[str] = SEARCH_PATTERNS) -> Path:
    """Find a folder holding both ``initdb`` and ``pg_ctl``.

    Order: the configured folder, PATH, the folders matching ``search`` (the usual install folders;
    newest version first), the ``pgserver`` wheel.

    Raises:
        EmbeddedUnavailable: none found; the message says how to get one.
    """

    def usable(folder: Path) -> bool:
        return all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))

    if configured:
        folder = Path(configured)
        if usable(folder):
            return folder
        raise EmbeddedUnavailable(f"IEF_EMBEDDED_BIN_DIR={configured} does not hold initdb, pg_ctl and postgres")
    on_path = shutil.which("initdb")
    if on_path:
        folder = Path(on_path).resolve().parent
        if usable(folder):
            return folder
    for pattern in search:
        for candidate in sorted(glob.glob(pattern), key=_version_key, reverse=True):  # noqa: PTH207 - absolute patterns
            if usable(Path(candidate)):
                return Path(candidate)
    with contextlib.suppress(ImportError):
        import pgserver

        folder = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if usable(folder):
            return folder
    raise EmbeddedUnavailable(INSTALL_HINT)


@dataclass(frozen=True, slots=True)
class _RunAs:
    uid: int
    gid: int
    name: str


class EmbeddedPostgres:
    """A private PostgreSQL cluster under ``<data_dir>/pg``.

    ``start()`` initialises the cluster when it does not exist, starts it unless it is already
    running (a server killed without shutting down leaves it running, and it is reused), and
    returns the connection URL. ``stop()`` shuts it down cleanly.
    """

    def __init__(self, data_dir: str | Path, *, user: str = "postgres", bin_dir: str | None = None) -> None:
        self.root = Path(data_dir).resolve() / "pg"
        self.cluster = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self._user = user
        self._configured_bin = bin_dir
        self._bin: Path | None = None
        self._run_as: _RunAs | None = None
        self.socket_dir = self._socket_dir()

    def _socket_dir(self) -> Path:
        inside = self.root / "run"
        if len(str(inside)) <= _MAX_SOCKET_DIR:
            return inside
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"ief-registry-{digest}"

    @property
    def url(self) -> str:
        """The asyncpg/libpq URL of the cluster (Unix socket), as its bootstrap superuser."""
        return f"postgresql://{_SUPERUSER}@/{_DATABASE}?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def owner_url(self) -> str:
        """The URL as the role that owns the schema (migrations, the operator's commands)."""
        return as_role(self.url, OWNER_ROLE)

    def prepare_roles(self) -> str:
        """Create the owner and server roles, give the owner the database's objects; return ``owner_url``."""
        prepare_roles(self.url)
        return self.owner_url

    def _resolve(self) -> Path:
        if self._bin is None:
            self._bin = find_bin_dir(self._configured_bin)
            if os.geteuid() == 0:
                try:
                    entry = pwd.getpwnam(self._user)
                except KeyError:
                    raise EmbeddedUnavailable(
                        f"PostgreSQL cannot run as root and the user {self._user!r} does not exist. "
                        f"Create it (useradd --system {self._user}) or set IEF_EMBEDDED_USER to an "
                        "unprivileged user."
                    ) from None
                self._run_as = _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
        return self._bin

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        bin_dir = self._resolve()
        command = [str(bin_dir / args[0]), *args[1:]]
        kwargs: dict[str, object] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result: subprocess.CompletedProcess[str] = subprocess.run(  # noqa: PLW1510 - checked below with a useful message
            command,
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            start_new_session=True,  # Ctrl-C on the terminal must not reach PostgreSQL directly
            **kwargs,  # type: ignore[call-overload]
        )
        if check and result.returncode != 0:
            raise EmbeddedUnavailable(
                f"{args[0]} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}"
                + self._log_tail()
            )
        return result

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
        except OSError:
            return ""
        return "\nPostgreSQL log (last lines):\n  " + "\n  ".join(lines) if lines else ""

    def _prepare_dirs(self) -> None:
        for folder in (self.root, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)
            if self._run_as is not None:
                os.chown(folder, self._run_as.uid, self._run_as.gid)
        if self._run_as is not None:
            probe = subprocess.run(
                ["/bin/sh", "-c", 'test -w "$1"', "sh", str(self.root)],
                user=self._run_as.uid,
                group=self._run_as.gid,
                extra_groups=[],
                check=False,
            )
            if probe.returncode != 0:
                raise EmbeddedUnavailable(
                    f"PostgreSQL runs as {self._run_as.name!r}, which cannot reach {self.root}. Give it access "
                    "to the parent folders (chmod o+x), or set IEF_DATA_DIR to a folder it can reach, such "
                    "as /var/lib/ief-registry."
                )

    @property
    def initialised(self) -> bool:
        """Whether the cluster exists."""
        return (self.cluster / "PG_VERSION").exists()

    def running(self) -> bool:
        """Whether the cluster's server is running."""
        if not self.initialised:
            return False
        return self._run("pg_ctl", "status", "-D", str(self.cluster), check=False).returncode == 0

    def start(self) -> str:
        """Create the cluster if needed, start it if it is not running, and return its URL."""
        self._resolve()
        self._prepare_dirs()
        if not self.initialised:
            self._run(
                "initdb", "-D", str(self.cluster), "-U", _SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions",
            )  # fmt: skip
            with (self.cluster / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write("\ninclude_if_exists = 'ief-registry.conf'\n")
        settings = self.cluster / "ief-registry.conf"
        settings.write_text(
            "# Written by ief-registry at every start.\n"
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0700\n",
            encoding="utf-8",
        )
        if self._run_as is not None:
            os.chown(settings, self._run_as.uid, self._run_as.gid)
        if not self.running():
            self._run("pg_ctl", "start", "-D", str(self.cluster), "-l", str(self.log_file), "-w", "-t", "120")
        return self.url

    def stop(self) -> None:
        """Shut the server down (fast mode: running statements are rolled back, nothing committed is lost)."""
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.cluster), "-m", "fast", "-w", "-t", "60")

    def postmaster_pid(self) -> int | None:
        """The server's process ID, read from ``postmaster.pid``; None when it is not running."""
        try:
            return int((self.cluster / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
