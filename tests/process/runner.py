"""The real ``python -m registry`` CLI as a subprocess, run as a chosen OS user on a data directory.

When the tests run as root, PostgreSQL cannot; the embedded cluster then runs as an unprivileged
user, and every folder it uses must be reachable by that user. ``Workdir`` makes such folders.

The ordinary-user case runs the CLI itself as an unprivileged user. That user must be able to run
an interpreter with the project's packages: the test session's own when it can reach it, else the
system interpreter of the same version with the session's packages on ``PYTHONPATH`` (an
interpreter under ``/root`` is out of reach of other users).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import httpx
import psutil
import pytest

from registry.db.embedded import EmbeddedPostgres
from tests.server import free_port

__all__ = (
    "Cli",
    "OsUser",
    "ServeProcess",
    "Workdir",
    "cluster_user_for",
    "embedded",
    "interpreter_for",
    "postmasters",
    "unprivileged_user",
)

ROOT = Path(__file__).resolve().parents[2]


class _AsUser(TypedDict):
    user: int | None
    group: int | None
    extra_groups: list[int] | None


@dataclass(frozen=True, slots=True)
class OsUser:
    """An operating-system account to run processes as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> OsUser:
        """The account the tests run as."""
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @classmethod
    def named(cls, name: str) -> OsUser | None:
        """The account called ``name``, or None when there is none."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def is_root(self) -> bool:
        """Whether this is the superuser."""
        return self.uid == 0

    def popen_args(self) -> _AsUser:
        """``subprocess`` arguments that run a child as this user (no change when it is the current one)."""
        if self.uid == os.geteuid():
            return {"user": None, "group": None, "extra_groups": None}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def find_interpreter(user: OsUser) -> tuple[str, dict[str, str]] | None:
    """An interpreter ``user`` can run that imports the project, with the environment it needs.

    Returns None when there is none; the caller skips and says why.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = sysconfig.get_paths()
    packages = os.pathsep.join(dict.fromkeys([str(ROOT), paths["purelib"], paths["platlib"]]))
    candidates: list[tuple[str, dict[str, str]]] = [(sys.executable, {})]
    candidates += [(f"{folder}/{version}", {"PYTHONPATH": packages}) for folder in ("/usr/bin", "/usr/local/bin")]
    for executable, extra in candidates:
        if not Path(executable).exists():
            continue
        try:
            probe = subprocess.run(
                [executable, "-c", "import registry.cli"],
                env={**os.environ, **extra},
                cwd="/",
                capture_output=True,
                check=False,
                timeout=60,
                **user.popen_args(),
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return executable, extra
    return None


def interpreter_for(user: OsUser) -> tuple[str, dict[str, str]]:
    """An interpreter ``user`` can run with the project importable; skips the test when there is none."""
    found = find_interpreter(user)
    if found is None:
        pytest.skip(
            f"{user.name!r} can run no Python that imports this project: {sys.executable} and the system "
            f"python{sys.version_info.major}.{sys.version_info.minor} with {ROOT} on PYTHONPATH both failed "
            "(a folder on the way may be closed to other users)"
        )
    return found


def cluster_user_for(user: OsUser) -> OsUser:
    """Who runs PostgreSQL when ``user`` runs the CLI: the embedded user for root, else ``user`` itself."""
    if not user.is_root:
        return user
    name = os.environ.get("IEF_EMBEDDED_USER", "postgres")
    found = OsUser.named(name)
    if found is None:
        pytest.skip(f"the tests run as root and {name!r}, the user that runs PostgreSQL for root, does not exist")
    return found


def unprivileged_user() -> OsUser:
    """An ordinary account to run the CLI as: the current one, or ``nobody`` when the tests run as root."""
    me = OsUser.current()
    if not me.is_root:
        return me
    nobody = OsUser.named("nobody")
    if nobody is None:
        pytest.skip("the tests run as root and there is no 'nobody' account to run the server as an ordinary user")
    return nobody


class Workdir:
    """A temporary folder that PostgreSQL's unprivileged user can traverse, removed at the end."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ief-process-"))
        self.path.chmod(0o755)  # the postgres user (when the tests are root) must reach data dirs inside
        self._clusters: list[tuple[Path, OsUser]] = []

    def data_dir(self, name: str, owner: OsUser, cluster_user: OsUser) -> Path:
        """A fresh data directory owned by ``owner``; its cluster runs as ``cluster_user``."""
        folder = self.path / name
        folder.mkdir(mode=0o755)
        if owner.uid != os.geteuid():
            os.chown(folder, owner.uid, owner.gid)
        self._clusters.append((folder, cluster_user))
        return folder

    def cleanup(self) -> None:
        """Stop every cluster still running in here, then remove the folder."""
        try:
            for folder, cluster_user in self._clusters:
                cluster = embedded(folder, cluster_user)
                if cluster.postmaster_pid() is not None:
                    cluster.stop()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


def embedded(data_dir: Path, cluster_user: OsUser) -> EmbeddedPostgres:
    """The embedded cluster of ``data_dir`` as the test process drives it (as ``cluster_user`` when root)."""
    return EmbeddedPostgres(data_dir, user=cluster_user.name)


def postmasters(cluster_dir: Path) -> list[psutil.Process]:
    """Live PostgreSQL servers started on ``cluster_dir`` (zombies left for PID 1 do not count).

    Only the server program itself: ``pg_ctl status -D …`` (which a starting ``serve`` runs to see
    whether the cluster is up) names the folder too. And only the postmaster: a backend it has just
    forked for a new connection carries the postmaster's command line until it sets its own title.
    """
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["cmdline", "status", "ppid"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        command = process.info["cmdline"] or []
        if command and Path(command[0]).name == "postgres" and "-D" in command and str(cluster_dir) in command:
            found.append(process)
    servers = {process.pid for process in found}
    return [process for process in found if process.info["ppid"] not in servers]


@dataclass(slots=True)
class ServeProcess:
    """A running ``serve`` subprocess and where it answers."""

    process: subprocess.Popen[bytes]
    base_url: str
    log: Path
    _http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.base_url, timeout=30)

    @property
    def http(self) -> httpx.Client:
        """An HTTP client for the server."""
        return self._http

    def log_text(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until ``/health/ready`` answers 200; fail with the log if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(httpx.TransportError):
                if self._http.get("/health/ready").status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"serve was not ready within {timeout} s:\n{self.log_text()}")

    def terminate(self, timeout: float = 60) -> int:
        """Send SIGTERM and return the exit status."""
        self._http.close()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """Send SIGKILL: no shutdown code runs."""
        self._http.close()
        self.process.kill()
        self.process.wait(30)


class Cli:
    """``python -m registry`` on one data directory, run as one OS user."""

    def __init__(self, data_dir: Path, user: OsUser, interpreter: tuple[str, dict[str, str]]) -> None:
        self.data_dir = data_dir
        self.user = user
        self.python, self._extra_env = interpreter

    def env(self, **settings: str) -> dict[str, str]:
        """The environment of a CLI process: no database URL (so the embedded cluster), JSON logs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IEF_", "PG"))}
        env.update(self._extra_env)
        env.update({"IEF_DATA_DIR": str(self.data_dir), "IEF_LOG_FORMAT": "json", "IEF_LOG_ACCESS": "false"})
        env.update(settings)
        if self.user.uid != os.geteuid():
            env["HOME"] = str(self.data_dir)  # the account may have no home folder of its own
        return env

    def admin_token(self) -> dict[str, str]:
        """An ``Authorization`` header with an operator admin token from ``token``, as an operator gets one."""
        issued = self.run("token", "--scopes", "admin", "--lifetime", "3600")
        assert issued.returncode == 0, issued.stderr
        return {"Authorization": f"Bearer {issued.stdout.strip()}"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one command to completion; its output is captured."""
        return subprocess.run(
            [self.python, "-m", "registry", *args],
            env=self.env(),
            cwd=self.data_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            **self.user.popen_args(),
        )

    def start_serve(self, log_name: str = "serve.log", extra: Sequence[str] = ()) -> ServeProcess:
        """Start ``serve`` on a free port without waiting for it."""
        port = free_port()
        log = self.data_dir.parent / f"{self.data_dir.name}-{log_name}"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [self.python, "-m", "registry", "serve", "--port", str(port), *extra],
                env=self.env(),
                cwd=self.data_dir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                **self.user.popen_args(),
            )
        return ServeProcess(process, f"http://127.0.0.1:{port}", log)

    @contextlib.contextmanager
    def serving(self, *options: str) -> Iterator[ServeProcess]:
        """A ready ``serve`` process (with extra ``options``); killed at the end if the block left it running."""
        server = self.start_serve(extra=options)
        try:
            server.wait_ready()
            yield server
        finally:
            if server.process.poll() is None:
                server.kill()
