"""What the operator sees when starting the server goes wrong, or right: the real CLI as a subprocess.

A busy port stops ``serve`` before anything starts and says how to choose another; ``demo`` takes a
free port when its default is busy; ``server_ready`` names a URL that answers 200 the moment it is
logged; ``server_stopped`` is logged only for a server that started; a stale lock file naming a live
process does not stop the embedded cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest

from registry.demo import GATEWAYS, PATIENTS
from tests.pg import TestCluster
from tests.process.runner import Cli, OsUser, Workdir, cluster_user_for, embedded, interpreter_for, postmasters
from tests.server import free_port


def _environment(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("IEF_", "PG"))}
    return {**env, "IEF_LOG_FORMAT": "json", **settings}


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry", *args],
        env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def _events(output: str) -> list[str]:
    return [match[1] for match in re.finditer(r'"event":\s*"([a-z_]+)"', output)]


@contextlib.contextmanager
def _listening(port: int = 0) -> Iterator[int]:
    """Another server's socket, listening on ``port`` (any free one for 0)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("given", ["--port", "IEF_HTTP_PORT"])
def test_a_busy_port_stops_serve_before_anything_starts(tmp_path: Path, given: str) -> None:
    """With the port taken, serve exits 1 at once naming the port, --port and IEF_HTTP_PORT: no token, no cluster."""
    data_dir = tmp_path / "data"
    with _listening() as port:
        env = _environment(IEF_DATA_DIR=str(data_dir))
        args = ["serve", "--dev"]
        if given == "--port":
            args += ["--port", str(port)]
        else:
            env["IEF_HTTP_PORT"] = str(port)
        result = _cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port N or IEF_HTTP_PORT=N" in result.stderr
    assert "token" not in result.stdout.lower()
    assert _events(result.stdout + result.stderr) == []
    assert "Traceback" not in result.stderr
    assert not (data_dir / "pg").exists(), "no cluster was created"


def test_errors_before_start_do_not_log_server_stopped(tmp_path: Path) -> None:
    """An unreachable database stops serve with one line (once its start-up wait, here none, is over); nothing says a
    server stopped that never started."""
    env = _environment(
        IEF_DATA_DIR=str(tmp_path),
        IEF_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{free_port()}/x",
        IEF_DATABASE_STARTUP_WAIT="0",
    )
    result = _cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: the database could not be reached: ")
    events = _events(result.stdout + result.stderr)
    assert "server_stopped" not in events
    assert "server_starting" not in events


@pytest.mark.parametrize(
    ("environ", "args", "message"),
    [
        ({"IEF_HTTP_PORT": "abc"}, ["serve"], "Error: invalid setting IEF_HTTP_PORT='abc' (http.port): expected `int`"),
        (
            {},
            ["--config", "missing.toml", "db", "status"],
            "Error: the settings file missing.toml (--config) does not exist",
        ),
        (
            {"IEF_CONFIG": "missing.toml"},
            ["token", "--scopes", "admin"],
            "Error: the settings file missing.toml (IEF_CONFIG)",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, environ: dict[str, str], args: list[str], message: str
) -> None:
    """A bad value or a missing settings file is one line that names the variable, key or file; nothing starts."""
    result = _cli(*args, env=_environment(IEF_DATA_DIR=str(tmp_path / "data"), **environ), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]]
    assert result.stderr.startswith(message), result.stderr
    assert "Errno" not in result.stderr
    assert "$." not in result.stderr
    assert not (tmp_path / "data").exists()


def test_version_is_the_installed_release(tmp_path: Path) -> None:
    """``ief-registry --version`` prints the name and the installed version, and nothing starts."""
    from importlib import metadata

    result = _cli("--version", env=_environment(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ief-registry {metadata.version('ief-registry')}\n"


@pytest.fixture
async def database_url(template: TestCluster) -> str:
    """A fresh migrated database of the session's cluster."""
    return await template.new_database()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_server_ready_names_a_url_that_answers(database_url: str, tmp_path: Path, workers: int) -> None:
    """On port 0, server_ready names the port chosen and its URL answers 200 at once; SIGTERM logs server_stopped."""
    env = _environment(IEF_DATA_DIR=str(tmp_path), IEF_DATABASE_URL=database_url)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "registry", "serve", "--port", "0", "--workers", str(workers)],
            env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "server_ready" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        ready = next(line for line in log.read_text().splitlines() if '"server_ready"' in line)
        url = msgspec.json.decode(ready)["url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        assert not url.endswith(":0/")
        answer = httpx.get(url, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["links"]["fhirMetadata"] == "/fhir/metadata"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    events = _events(log.read_text())
    assert events.index("server_starting") < events.index("server_ready") < events.index("server_stopped")
    assert events.count("server_stopped") == 1


def _wait(predicate: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _fresh(workdir: Workdir, name: str) -> tuple[Cli, OsUser]:
    """The CLI, as the tests' own user, on a fresh data directory; and the user its cluster runs as."""
    me = OsUser.current()
    cluster_user = cluster_user_for(me)
    return Cli(workdir.data_dir(name, owner=me, cluster_user=cluster_user), me, interpreter_for(me)), cluster_user


@pytest.mark.slow
def test_demo_with_its_default_port_busy_takes_a_free_one(workdir: Workdir) -> None:
    """With 8080 taken, demo says so and runs on a free port; its gateways register there, not at the other server."""
    cli, _ = _fresh(workdir, "demo")
    data_dir = cli.data_dir
    output = data_dir.parent / "demo.out"
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # already taken by someone else: as good for this test
            stack.enter_context(_listening(8080))
        with output.open("w") as sink:
            process = subprocess.Popen(
                [cli.python, "-m", "registry", "demo", "--data-dir", str(data_dir)],
                env=cli.env(), cwd=data_dir, stdout=sink, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        try:
            _wait(lambda: process.poll() is not None or "export TOKEN=" in output.read_text(), "no token printed")
            printed = output.read_text()
            assert process.poll() is None, printed
            moved = re.search(r"^Port 8080 is in use \(by another server\?\): the demonstration registry uses (\d+)\.$",
                              printed, re.MULTILINE)  # fmt: skip
            assert moved is not None, printed
            base = f"http://127.0.0.1:{moved[1]}"
            assert f"curl -s {base}/registry/records/" in printed
            token = re.search(r"^export TOKEN=(\S+)$", printed, re.MULTILINE)
            assert token is not None
            ihi = PATIENTS[0]
            holders = {gateway.service_id for gateway in GATEWAYS if any(s.ihi == ihi for s in gateway.studies)}
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token[1]}"}, timeout=10) as http:

                def registered() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        answer = http.get(f"/registry/records/{ihi}")
                        return (
                            answer.status_code == 200 and {r["serviceId"] for r in answer.json()["records"]} == holders
                        )
                    return False

                _wait(registered, "the gateways did not register their records with the demonstration registry")
        finally:
            process.send_signal(signal.SIGTERM)
            status = process.wait(60)
    assert status == 0


def test_demo_with_a_busy_port_asked_for_stops_at_once(tmp_path: Path) -> None:
    """``demo --port P`` with P taken exits 1 before its banner, token or gateways, naming --port."""
    with _listening() as port:
        result = _cli(
            "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo"), env=_environment(), cwd=tmp_path
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: port {port} on 127.0.0.1 is already in use")
    assert result.stderr.strip().endswith("choose another with --port N")
    assert result.stdout == ""
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("setting", ["IEF_DATABASE_URL", "IEF_DATABASE_OWNER_URL"])
def test_demo_refuses_a_configured_database(tmp_path: Path, setting: str) -> None:
    """``demo`` never writes its gateways, clients and patients into a configured database, owner's or server's."""
    url = f"postgresql://nobody@127.0.0.1:{free_port()}/registry"
    result = _cli("demo", "--data-dir", str(tmp_path / "demo"), env=_environment(**{setting: url}), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: the demonstration runs on an embedded cluster of its own: unset {setting}"
    assert result.stdout == ""
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_a_stale_lock_naming_a_live_process_does_not_stop_start_up(workdir: Workdir) -> None:
    """After a crash, lock files naming a PID now used by another live process of PostgreSQL's user are set aside."""
    cli, cluster_user = _fresh(workdir, "data")
    cluster = embedded(cli.data_dir, cluster_user)
    assert cli.run("db", "upgrade").returncode == 0

    # A crash: the server is killed and leaves its lock files; the system gives its PID to another process.
    cluster.start()
    [postmaster] = postmasters(cluster.cluster)
    postmaster.kill()
    _wait(lambda: not any(_runs_in(p, cluster.cluster) for p in psutil.process_iter()), "the server's processes ended")
    other = subprocess.Popen(["sleep", "600"], **cluster_user.popen_args())
    try:
        locks = [cluster.cluster / "postmaster.pid", cluster.socket_dir / ".s.PGSQL.5432.lock"]
        for lock in locks:
            lines = lock.read_text().splitlines(keepends=True)
            lock.write_text("".join([f"{other.pid}\n", *lines[1:]]))
        status = cli.run("db", "status")
        assert status.returncode == 0, status.stderr
        assert _events(status.stderr).count("embedded_stale_lock") == 2
        assert all(lock.with_name(lock.name + ".stale").exists() for lock in locks)
        with cli.serving() as server:
            assert server.http.get("/health/ready").status_code == 200
            assert server.terminate() == 0
        assert other.poll() is None, "the process the lock named was left alone"
    finally:
        other.kill()
        other.wait()


def _runs_in(process: psutil.Process, folder: Path) -> bool:
    with contextlib.suppress(psutil.Error):
        return Path(process.cwd()).resolve() == folder.resolve()
    return False
