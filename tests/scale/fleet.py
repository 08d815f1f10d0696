"""A scaled-out deployment on one machine: N ``serve`` processes and M ``worker`` processes on one database.

Every process is the real command line (``python -m registry serve`` / ``worker``) with its own
log file (JSON lines), so a test or a benchmark can tell from the logs which process did what.
The servers share what a load balancer's pool of processes shares: the database, the service ID,
the IHI hash key and the public base URL. Used by ``tests/scale/test_scale_out.py`` and
``python -m tests.bench.scaleout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tests.bench.servers import (
    ROOT,
    Build,
    ProcessTree,
    ServerProcess,
    git_describe,
    server_environment,
    stop_process,
)
from tests.factories import make_service_id

__all__ = ("Fleet", "WorkerProcess", "deployment_settings", "dev_token", "fleet", "log_events")


def log_events(log: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of one event in a process's log (lines that are not JSON are skipped)."""
    found: list[dict[str, object]] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if f'"{event}"' not in line:
            continue
        with contextlib.suppress(msgspec.DecodeError):
            entry = msgspec.json.decode(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
    return found


def dev_token(server: ServerProcess) -> dict[str, str]:
    """An ``Authorization`` header with the admin token a ``serve`` in dev mode printed at start (in its log)."""
    lines = server.log.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines[:-1]):
        if line.startswith("Development admin token"):
            return {"Authorization": f"Bearer {lines[number + 1].strip()}"}
    raise RuntimeError(f"no development token in {server.log} (is IEF_DEV set?)")


def deployment_settings(hash_key: str, public_base: str) -> dict[str, str]:
    """The settings every process of a test deployment shares, as behind one load balancer.

    One service ID, IHI hash key and public base URL; dev mode (http subscribers on loopback); no
    access log; the per-client rate limit out of the way of the test's one client; no migration at
    start (the database is migrated by its owner beforehand, and the processes may log in as the
    server's role, which cannot migrate: docs/deployment.md).
    """
    return {
        "IEF_SERVICE_ID": make_service_id(),
        "IEF_LOG_HASH_KEY": hash_key,
        "IEF_PUBLIC_BASE_URL": public_base,
        "IEF_DEV": "true",
        "IEF_LOG_ACCESS": "false",
        "IEF_AUTH_RATE_PER_SECOND": "100000",
        "IEF_AUTH_RATE_BURST": "100000",
        "IEF_DATABASE_AUTO_MIGRATE": "false",
    }


class WorkerProcess:
    """``python -m registry worker`` on a database, logging to its own file."""

    def __init__(self, name: str, *, database_url: str, work: Path, settings: Mapping[str, str]) -> None:
        self.name = name
        self.log = work / f"{name}.log"
        env = server_environment(sys.executable, ROOT)
        env.update({"IEF_DATABASE_URL": database_url, "IEF_DATA_DIR": str(work / f"data-{name}")})
        env.update({"IEF_LOG_FORMAT": "json", **settings})
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "registry", "worker"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.tree = ProcessTree(self.process.pid)

    def wait_started(self, timeout: float = 120) -> None:
        """Wait until the worker has logged ``worker_started`` (its LISTEN is checked by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log.read_text()}")
            if log_events(self.log, "worker_started"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM (in-flight notifications finish or are left to their lease), then SIGKILL after 30 s."""
        stop_process(self.process)


@dataclass(frozen=True, slots=True)
class Fleet:
    """The running processes of one deployment."""

    servers: list[ServerProcess]
    workers: list[WorkerProcess]

    @property
    def ports(self) -> list[int]:
        """The servers' ports, as a load balancer would spread connections over them."""
        return [server.port for server in self.servers]

    def delivered(self) -> dict[str, int]:
        """Event notifications each process delivered (answered 2xx), from its log: servers by port, then workers."""
        logs = {f"serve:{s.port}": s.log for s in self.servers} | {w.name: w.log for w in self.workers}
        return {
            name: sum(
                1
                for entry in log_events(log, "notification_attempt")
                if entry.get("kind") == "event-notification" and 200 <= int(str(entry.get("http_status") or 0)) < 300
            )
            for name, log in logs.items()
        }


@contextlib.asynccontextmanager
async def fleet(
    database_url: str,
    work: Path,
    *,
    servers: int,
    workers: int,
    settings: Mapping[str, str],
    server_settings: Mapping[str, str] | None = None,
) -> AsyncIterator[Fleet]:
    """Start ``servers`` serve processes and ``workers`` worker processes on one database; stop them at the end.

    ``settings`` go to every process (``server_settings`` to the servers only). The database must be
    migrated already (the first server would migrate it, but the others would race it needlessly).
    """
    build = Build(label="checkout", source=ROOT, commit=git_describe(ROOT))
    started_servers: list[ServerProcess] = []
    started_workers: list[WorkerProcess] = []
    try:
        for _ in range(servers):
            server = ServerProcess(
                build, python=sys.executable, database_url=database_url, workers=1, work=work,
                settings={**settings, **(server_settings or {})},
            )  # fmt: skip
            started_servers.append(server)
        for number in range(workers):
            started_workers.append(
                WorkerProcess(f"worker-{number + 1}", database_url=database_url, work=work, settings=settings)
            )
        for server in started_servers:
            await asyncio.to_thread(server.wait_ready)
        for worker in started_workers:
            await asyncio.to_thread(worker.wait_started)
        yield Fleet(started_servers, started_workers)
    finally:
        for stop in [*(s.stop for s in started_servers), *(w.stop for w in started_workers)]:
            await asyncio.to_thread(stop)
