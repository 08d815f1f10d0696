"""``serve`` on the embedded cluster, as root and as an ordinary user: first run, restarts, SIGTERM and SIGKILL."""

from __future__ import annotations

import psutil
import pytest

from tests.factories import make_ihi, make_service_id
from tests.process.runner import (
    Cli,
    OsUser,
    ServeProcess,
    Workdir,
    cluster_user_for,
    embedded,
    interpreter_for,
    postmasters,
    unprivileged_user,
)
from tests.server import add_service

pytestmark = pytest.mark.slow


def _serve_user(case: str) -> OsUser:
    if case == "root":
        me = OsUser.current()
        if not me.is_root:
            pytest.skip("running the server as root needs the tests to run as root")
        return me
    return unprivileged_user()


def _services_of(server: ServeProcess, ihi: str, auth: dict[str, str]) -> list[str]:
    response = server.http.get(f"/registry/records/{ihi}", headers=auth)
    assert response.status_code == 200, response.text
    return [record["serviceId"] for record in response.json()["records"]]


@pytest.mark.parametrize("case", ["root", "ordinary"])
async def test_embedded_cluster_lifecycle(case: str, workdir: Workdir) -> None:
    """Records acknowledged with 201 survive SIGTERM and SIGKILL; PostgreSQL runs unprivileged and stops cleanly."""
    serve_user = _serve_user(case)
    cluster_user = cluster_user_for(serve_user)
    data_dir = workdir.data_dir("data", owner=serve_user, cluster_user=cluster_user)
    cli = Cli(data_dir, serve_user, interpreter_for(serve_user))
    cluster = embedded(data_dir, cluster_user)
    gateway, first, second = make_service_id(), make_ihi(), make_ihi()

    # First run: the cluster is created and migrated; it runs as the unprivileged user, never root.
    with cli.serving() as server:
        assert cluster.initialised
        assert psutil.Process(server.process.pid).username() == serve_user.name
        [postmaster] = postmasters(cluster.cluster)
        assert postmaster.username() == cluster_user.name
        assert postmaster.username() != "root"
        await add_service(cluster.url, gateway)
        auth = cli.admin_token()  # signed with keys kept in the database: valid after restarts too
        created = server.http.put(f"/registry/records/{first}/{gateway}", json={"status": "active"}, headers=auth)
        assert created.status_code == 201, created.text
        assert server.terminate() == 0
    assert "embedded_stopped" in server.log_text()
    assert postmasters(cluster.cluster) == []
    assert cluster.postmaster_pid() is None

    # Second run on the same data dir: the record is there; then the server is killed outright.
    with cli.serving() as server:
        assert _services_of(server, first, auth) == [gateway]
        created = server.http.put(f"/registry/records/{second}/{gateway}", json={"status": "active"}, headers=auth)
        assert created.status_code == 201, created.text
        [before_kill] = postmasters(cluster.cluster)
        server.kill()
    assert [process.pid for process in postmasters(cluster.cluster)] == [before_kill.pid]

    # Third run, with two worker processes, reuses the cluster that kept running; both records are there.
    with cli.serving("--workers", "2") as server:
        assert [process.pid for process in postmasters(cluster.cluster)] == [before_kill.pid]
        assert len(psutil.Process(server.process.pid).children()) >= 2
        assert _services_of(server, first, auth) == [gateway]
        assert _services_of(server, second, auth) == [gateway]
        assert server.terminate() == 0
    # A serve that found the cluster running leaves it running (it may not be the only user of it).
    assert [process.pid for process in postmasters(cluster.cluster)] == [before_kill.pid]
    cluster.stop()
    assert postmasters(cluster.cluster) == []
