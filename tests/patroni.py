"""A highly available PostgreSQL as an operator runs one: etcd, three nodes under Patroni, HAProxy to the leader.

Everything comes from Debian's packages (``etcd-server``, ``patroni``, ``haproxy``; ``.ci/run``
installs them) and runs on loopback, on ports free at the start, in one temporary folder:

- **etcd**, one member: Patroni's distributed configuration store (the leader key, with its TTL);
- **three Patroni nodes**, each with its PostgreSQL on its own TCP port; the first to take the leader
  key runs ``initdb``, the others clone it with ``pg_basebackup``. ``synchronous_mode`` makes one
  replica synchronous, and only that one may be promoted, so a failover keeps every acknowledged
  commit;
- **HAProxy** in TCP mode, routing to the node whose Patroni REST API answers ``GET /primary``
  with 200, checked twice a second; the sessions of a node marked down are cut
  (``on-marked-down shutdown-sessions``), so no pooled connection stays on a demoted leader.

PostgreSQL refuses to run as root; when the tests are root, Patroni (and so PostgreSQL) runs as the
embedded cluster's unprivileged user (``IEF_EMBEDDED_USER``, default ``postgres``), as
``registry/db/embedded.py`` does. The timings are short (``ttl`` 10 s) so a failover fits in a test;
production keeps Patroni's defaults (``docs/deployment.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psutil
import pytest

from registry.db.embedded import EmbeddedUnavailable, find_bin_dir
from tests.bench.servers import stop_process
from tests.server import free_port

__all__ = ("PATRONI_TIMINGS", "PatroniCluster", "PatroniNode", "find_ha_tools", "patroni_cluster")


def _timings(text: str) -> dict[str, int]:
    """``ttl=30,loop_wait=10,retry_timeout=10`` as Patroni's settings."""
    return {name.strip(): int(value) for name, value in (item.split("=") for item in text.split(",") if item.strip())}


PATRONI_TIMINGS = _timings(os.environ.get("IEF_TEST_PATRONI_TIMINGS", "ttl=10,loop_wait=1,retry_timeout=4"))
"""Patroni's clock for the tests: the leader key lives 10 s (Patroni's defaults: ``ttl=30,loop_wait=10,
retry_timeout=10``, which ``IEF_TEST_PATRONI_TIMINGS`` sets to measure a failover as deployed)."""

SCOPE = "ief-ha"
_SEARCH = {
    "etcd": ("/usr/bin/etcd", "/usr/local/bin/etcd"),
    "patroni": ("/usr/bin/patroni", "/usr/local/bin/patroni"),
    "haproxy": ("/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"),
}
_INSTALL = "Debian: apt-get install etcd-server patroni haproxy; .ci/run installs them"


def find_ha_tools() -> dict[str, str]:
    """The etcd, patroni and haproxy programs (on PATH or where Debian puts them); skips when one is missing."""
    found: dict[str, str] = {}
    for name, places in _SEARCH.items():
        path = shutil.which(name) or next((p for p in places if os.access(p, os.X_OK)), None)
        if path is None:
            pytest.skip(f"{name} is not installed ({_INSTALL})")
        found[name] = path
    return found


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _wait(what: str, check: Any, timeout: float, *, interval: float = 0.2, log: Path | None = None) -> Any:
    """Poll ``check()`` until it returns something true; fail with ``what`` (and a log's tail) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
            result = check()
            if result:
                return result
        time.sleep(interval)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-30:])
    raise RuntimeError(f"{what} within {timeout:g} s{tail}")


@dataclass(frozen=True, slots=True)
class _RunAs:
    uid: int
    gid: int

    def popen_options(self) -> dict[str, object]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _run_as() -> _RunAs | None:
    """The unprivileged user PostgreSQL runs as when the tests are root; None when they are not root."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(os.environ.get("IEF_EMBEDDED_USER", "postgres"))
    return _RunAs(entry.pw_uid, entry.pw_gid)


class PatroniNode:
    """One Patroni process and the PostgreSQL it runs."""

    def __init__(self, name: str, folder: Path, *, pg_port: int, api_port: int) -> None:
        self.name = name
        self.folder = folder
        self.pg_port = pg_port
        self.api_port = api_port
        self.data_dir = folder / "data"
        self.log = folder / "patroni.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        """The node's Patroni REST API."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def url(self) -> str:
        """The node's PostgreSQL, directly (not through HAProxy)."""
        return f"postgresql://ief@127.0.0.1:{self.pg_port}/postgres"

    def config(self, etcd_port: int, bin_dir: Path) -> dict[str, Any]:
        """Patroni's configuration of this node (JSON is YAML, so Patroni reads it as it is)."""
        return {
            "scope": SCOPE,
            "namespace": "/ief/",
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.api_port}", "connect_address": f"127.0.0.1:{self.api_port}"},
            "etcd3": {"hosts": [f"127.0.0.1:{etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    **PATRONI_TIMINGS,
                    "maximum_lag_on_failover": 1_048_576,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "remove_data_directory_on_rewind_failure": True,
                        "parameters": {
                            "max_connections": 100,
                            "shared_buffers": "32MB",
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_keep_size": "128MB",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(bin_dir),
                "pgpass": str(self.folder / "pgpass"),
                "authentication": {
                    "superuser": {"username": "ief"},
                    "replication": {"username": "replicator"},
                    "rewind": {"username": "ief"},
                },
                "parameters": {"unix_socket_directories": str(self.folder)},
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication replicator 127.0.0.1/32 trust",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    def start(self, patroni: str, etcd_port: int, bin_dir: Path, run_as: _RunAs | None) -> None:
        """Start Patroni on this node (it starts PostgreSQL: initdb, or a clone of the leader)."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        config = self.folder / "patroni.yml"
        config.write_bytes(msgspec.json.encode(self.config(etcd_port, bin_dir)))
        options: dict[str, object] = {}
        if run_as is not None:
            for path in (self.folder, config):
                os.chown(path, run_as.uid, run_as.gid)
            options = run_as.popen_options()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(self.folder)}
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [patroni, str(config)], cwd=self.folder, env=env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True, **options,  # type: ignore[call-overload]
            )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """What the node's REST API says of it (role, state, timeline)."""
        answer = httpx.get(f"{self.api}/patroni", timeout=2)
        document: dict[str, Any] = answer.json()
        return document

    def postgres_processes(self) -> list[psutil.Process]:
        """The node's PostgreSQL: its postmaster and every child (none when it is not running)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
            postmaster = psutil.Process(pid)
            if "postgres" not in postmaster.name():
                return []
            return [postmaster, *postmaster.children(recursive=True)]
        except (OSError, ValueError, IndexError, psutil.Error):
            return []

    def kill(self) -> None:
        """SIGKILL the node: Patroni and its PostgreSQL at once, as when the machine dies."""
        victims = self.postgres_processes()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)
        psutil.wait_procs(victims, timeout=30)

    def stop(self) -> None:
        """SIGTERM Patroni (it stops PostgreSQL first), then SIGKILL whatever is left."""
        if self.process is not None:
            stop_process(self.process)
        self.kill()


class PatroniCluster:
    """etcd, three Patroni nodes and HAProxy; ``url`` reaches the leader's PostgreSQL through HAProxy."""

    def __init__(self, folder: Path, *, nodes: int = 3) -> None:
        self.tools = find_ha_tools()
        try:
            self.bin_dir = find_bin_dir(os.environ.get("IEF_EMBEDDED_BIN_DIR"))
        except EmbeddedUnavailable as exc:
            pytest.skip(str(exc))
        self.folder = folder
        self.run_as = _run_as()
        ports = _free_ports(3 + 2 * nodes)
        self.etcd_port, self.etcd_peer_port, self.proxy_port = ports[:3]
        self.nodes = [
            PatroniNode(f"node{n + 1}", folder / f"node{n + 1}", pg_port=ports[3 + 2 * n], api_port=ports[4 + 2 * n])
            for n in range(nodes)
        ]
        self._etcd: subprocess.Popen[bytes] | None = None
        self._haproxy: subprocess.Popen[bytes] | None = None
        self._stats_socket = folder / "haproxy.sock"

    @property
    def url(self) -> str:
        """The leader's PostgreSQL through HAProxy: what every ``serve`` and ``worker`` is given."""
        return f"postgresql://ief@127.0.0.1:{self.proxy_port}/postgres"

    @property
    def multi_host_url(self) -> str:
        """Every node in one URL, the session kept on the one that takes writes (no proxy in between)."""
        hosts = ",".join(f"127.0.0.1:{node.pg_port}" for node in self.nodes)
        return f"postgresql://ief@{hosts}/postgres?target_session_attrs=read-write"

    def _popen(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            return subprocess.Popen(
                command, cwd=self.folder, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start(self, timeout: float = 150) -> None:
        """Start etcd, the nodes and HAProxy; return once a leader, a synchronous standby and HAProxy's route are up."""
        started = time.monotonic()
        self._start_etcd()
        for node in self.nodes:
            node.start(self.tools["patroni"], self.etcd_port, self.bin_dir, self.run_as)
        self.wait_healthy(timeout - (time.monotonic() - started))
        self._start_haproxy()
        leader = self.leader()
        _wait(
            "HAProxy did not route to the leader",
            lambda: self.routed() == [leader.name],
            max(10.0, timeout - (time.monotonic() - started)),
            log=self.folder / "haproxy.log",
        )

    def _start_etcd(self) -> None:
        data = self.folder / "etcd"
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        log = self.folder / "etcd.log"
        self._etcd = self._popen(
            [
                self.tools["etcd"], "--name", "ief", "--data-dir", str(data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"ief={peer}", "--initial-cluster-state", "new",
                "--initial-cluster-token", f"ief-{self.etcd_port}",
            ],
            log,
        )  # fmt: skip
        healthy = lambda: httpx.get(f"{client}/health", timeout=2).json()["health"] == "true"  # noqa: E731
        _wait("etcd did not become healthy", healthy, 60, log=log)

    def _start_haproxy(self) -> None:
        servers = "\n".join(f"    server {n.name} 127.0.0.1:{n.pg_port} check port {n.api_port}" for n in self.nodes)
        config = self.folder / "haproxy.cfg"
        config.write_text(
            "global\n"
            "    maxconn 1000\n"
            f"    stats socket {self._stats_socket} mode 600 level user\n"
            "defaults\n"
            "    mode tcp\n"
            "    retries 2\n"
            "    timeout connect 2s\n"
            "    timeout client 30m\n"
            "    timeout server 30m\n"
            "    timeout check 2s\n"
            "listen postgres_primary\n"
            f"    bind 127.0.0.1:{self.proxy_port}\n"
            "    option httpchk GET /primary\n"
            "    http-check expect status 200\n"
            "    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions\n"
            f"{servers}\n",
            encoding="utf-8",
        )
        log = self.folder / "haproxy.log"
        self._haproxy = self._popen([self.tools["haproxy"], "-db", "-f", str(config)], log)

    def routed(self) -> list[str]:
        """The nodes HAProxy would send a new connection to now (its servers that are UP), from its stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stats:
            stats.settimeout(5)
            stats.connect(str(self._stats_socket))
            stats.sendall(b"show stat\n")
            answer = b""
            while chunk := stats.recv(65536):
                answer += chunk
        header, *rows = answer.decode().splitlines()
        columns = header.lstrip("# ").split(",")
        up = []
        for row in rows:
            fields = dict(zip(columns, row.split(","), strict=False))
            if fields.get("svname") in {n.name for n in self.nodes} and fields.get("status", "").startswith(
                "UP"
            ):  # "UP 1/2": going down, still routed
                up.append(fields["svname"])
        return up

    def members(self) -> list[dict[str, Any]]:
        """The cluster as Patroni sees it (``GET /cluster`` of the first node that answers)."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError):
                members: list[dict[str, Any]] = httpx.get(f"{node.api}/cluster", timeout=2).json()["members"]
                return members
        return []

    def _healthy(self) -> bool:
        members = self.members()
        roles = sorted(m.get("role", "") for m in members)
        running = all(m.get("state") in {"running", "streaming"} for m in members)
        return len(members) == len(self.nodes) and running and roles.count("leader") == 1 and "sync_standby" in roles

    def wait_healthy(self, timeout: float) -> None:
        """Wait for one leader, a synchronous standby, and every node running."""
        _wait("the Patroni cluster did not come up (a leader, a synchronous standby, all running)", self._healthy,
              timeout, log=self.nodes[0].log)  # fmt: skip

    def leader(self) -> PatroniNode:
        """The node that holds the leader key now."""
        names = [m["name"] for m in self.members() if m.get("role") == "leader"]
        if len(names) != 1:
            raise RuntimeError(f"no single leader: {self.members()}")
        return next(n for n in self.nodes if n.name == names[0])

    def wait_new_leader(self, old: PatroniNode, timeout: float) -> PatroniNode:
        """Wait until another node than ``old`` leads and HAProxy routes to it; return it."""

        def promoted() -> PatroniNode | None:
            leaders = [m["name"] for m in self.members() if m.get("role") == "leader" and m.get("state") == "running"]
            if len(leaders) != 1 or leaders[0] == old.name:
                return None
            node = next(n for n in self.nodes if n.name == leaders[0])
            return node if self.routed() == [node.name] else None

        found: PatroniNode = _wait(f"no node took over from {old.name}", promoted, timeout, interval=0.5)
        return found

    def stop(self) -> None:
        """Stop HAProxy, every node and etcd; whatever fails to stop is killed."""
        with contextlib.ExitStack() as stack:  # every step runs, whatever an earlier one raised; last first
            if self._etcd is not None:
                stack.callback(stop_process, self._etcd)
            for node in self.nodes:
                stack.callback(node.stop)
            if self._haproxy is not None:
                stack.callback(stop_process, self._haproxy)


@contextlib.asynccontextmanager
async def patroni_cluster(prefix: str = "ief-test-patroni-") -> AsyncIterator[PatroniCluster]:
    """A started ``PatroniCluster`` in a temporary folder; all stopped and removed afterwards, whatever happens.

    Starting and stopping run in a thread, so the event loop (servers and subscribers of the test) goes on.
    """
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=prefix))
    await asyncio.to_thread(folder.chmod, 0o755)  # PostgreSQL runs as an unprivileged user when the tests are root
    try:
        cluster = PatroniCluster(folder)
        try:
            await asyncio.to_thread(cluster.start)
            yield cluster
        finally:
            await asyncio.to_thread(cluster.stop)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
