"""The processes a benchmark run drives and watches: server builds, their CPU and memory.

A ``Build`` is a source tree to run the server from: this checkout, or another git revision
checked out into a temporary worktree (optionally with a patch applied, never committed). Each is
started as ``python -m registry serve`` with the same interpreter (or another one of the same
version, given this one's packages). The bare reference app (``tests.bench.bare``) is a build too,
started from this checkout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.server import free_port

__all__ = (
    "BARE_LABEL",
    "LIFTED_LABEL",
    "ROOT",
    "Build",
    "ProcessTree",
    "ServerProcess",
    "checkout",
    "git_describe",
    "stop_process",
)

ROOT = Path(__file__).resolve().parents[2]


def git_describe(folder: Path) -> str:
    """The short commit of a checkout, with ``+changes`` when its files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty.stdout.strip() else "")


@dataclass(frozen=True, slots=True)
class Build:
    """A source tree to run the server from."""

    label: str
    source: Path
    commit: str
    bare: bool = False
    """The bare reference app (``tests.bench.bare``) rather than the registry."""
    lifted: bool = False
    """Run as the earlier benchmark did: one operator admin token for every request, the rate limit lifted."""
    records: int | None = None
    """Records its database holds when not ``--records`` (``--against-records``: the same code at another size)."""


BARE_LABEL = "bare"
LIFTED_LABEL = "lifted"


@contextlib.contextmanager
def checkout(ref: str, patch: Path | None = None) -> Iterator[Build]:
    """Check ``ref`` out into a temporary git worktree for the block (with ``patch`` applied), then remove it.

    The patch is applied to the files only: nothing is committed, and the worktree is removed with it.
    """
    folder = Path(tempfile.mkdtemp(prefix="ief-bench-ref-"))
    folder.rmdir()
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=ROOT, capture_output=True, check=True)
    try:
        label = ref
        if patch is not None:
            subprocess.run(["git", "apply", str(patch.resolve())], cwd=folder, capture_output=True, check=True)
            label = f"{ref}+{patch.stem}"
        yield Build(label=label, source=folder, commit=git_describe(folder))
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True, check=False
        )
        shutil.rmtree(folder, ignore_errors=True)


class ProcessTree:
    """A process and all its descendants: CPU time used and resident memory, summed."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._cpu_gone = 0.0
        self._cpu_seen: dict[int, float] = {}

    def _members(self) -> list[psutil.Process]:
        try:
            return [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of the tree so far (including members that have exited)."""
        current: dict[int, float] = {}
        for process in self._members():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                times = process.cpu_times()
                current[process.pid] = times.user + times.system
        self._cpu_gone += sum(v for pid, v in self._cpu_seen.items() if pid not in current)
        self._cpu_seen = current
        return self._cpu_gone + sum(current.values())

    def rss_bytes(self) -> int:
        """Resident memory of the tree now (shared pages are counted in each process)."""
        total = 0
        for process in self._members():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                total += process.memory_info().rss
        return total


@dataclass(slots=True)
class _PeakSampler:
    trees: Mapping[str, ProcessTree]
    interval: float = 0.1
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, tree in self.trees.items():
                self.peaks[name] = max(self.peaks.get(name, 0), tree.rss_bytes())
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peaks


@contextlib.contextmanager
def peak_rss(trees: Mapping[str, ProcessTree]) -> Iterator[dict[str, int]]:
    """Sample the resident memory of each tree every 0.1 s during the block; yields the peaks (filled as it runs)."""
    sampler = _PeakSampler(trees)
    sampler.start()
    try:
        yield sampler.peaks
    finally:
        sampler.stop()


def server_environment(python: str, source: Path) -> dict[str, str]:
    """Environment for running ``python -m registry`` from ``source``.

    The source folder comes first on ``PYTHONPATH`` so that it, not the installed checkout, is
    imported; an interpreter other than this one also gets this one's installed packages.
    """
    paths = [str(source)]
    if Path(python).resolve() != Path(sys.executable).resolve():
        scheme = sysconfig.get_paths()
        paths += list(dict.fromkeys([scheme["purelib"], scheme["platlib"]]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IEF_", "PG"))}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class ServerProcess:
    """``python -m registry serve`` of one build, on its own database and a free port."""

    def __init__(
        self, build: Build, *, python: str, database_url: str, workers: int, work: Path, settings: Mapping[str, str]
    ) -> None:
        self.build = build
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log = work / f"server-{self.port}.log"
        self.python = python
        self.env = server_environment(python, build.source)
        self.env.update({"IEF_DATABASE_URL": database_url, "IEF_DATA_DIR": str(work / f"data-{self.port}")})
        self.env.update({"IEF_LOG_FORMAT": "json", **settings})
        command = [python, "-m", "registry", "serve", "--port", str(self.port), "--workers", str(workers)]
        if build.bare:
            command = [python, "-m", "tests.bench.bare", "--port", str(self.port), "--database-url", database_url]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=build.source, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.tree = ProcessTree(self.process.pid)

    def authorization(self, lifetime: int = 43_200) -> dict[str, str]:
        """An ``Authorization`` header with an operator admin token (``ief-registry token``) for the run.

        A build from before authentication has no ``token`` command and needs no header; nor does the bare app.
        """
        if self.build.bare:
            return {}
        issued = subprocess.run(
            [self.python, "-m", "registry", "token", "--scopes", "admin", "--lifetime", str(lifetime)],
            cwd=self.build.source, env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if issued.returncode == 0:
            return {"Authorization": f"Bearer {issued.stdout.strip()}"}
        if "No such command 'token'" in issued.stderr:
            return {}
        raise RuntimeError(f"ief-registry token failed for {self.build.label}:\n{issued.stderr}")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until ``/health/ready`` answers 200."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server of {self.build.label} exited:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/health/ready").status_code == 200:
                        return
                time.sleep(0.1)
        raise RuntimeError(f"the server of {self.build.label} was not ready in {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 30 s."""
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process does not stop within 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
