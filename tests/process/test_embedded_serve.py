"""``serve`` on the embedded cluster, as root and as an ordinary user: first run, restarts, SIGTERM and SIGKILL."""

from __future__ import annotations

import asyncpg
import psutil
import pytest

from registry.db.migrate import known_migrations
from registry.db.roles import OWNER_ROLE, SERVER_LOGIN
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


async def test_a_cluster_of_an_earlier_release_is_handed_to_the_owner(workdir: Workdir) -> None:
    """A cluster whose schema the bootstrap superuser created (before the roles were split) is converted at the
    next start: its objects become ``ief_owner``'s, migration 0007 applies, the server logs in as ``ief_app``
    and its data is still served."""
    serve_user = _serve_user("root")
    cluster_user = cluster_user_for(serve_user)
    data_dir = workdir.data_dir("data", owner=serve_user, cluster_user=cluster_user)
    cluster = embedded(data_dir, cluster_user)
    url = cluster.start()
    gateway, ihi = make_service_id(), make_ihi()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())")  # fmt: skip
        for migration in known_migrations()[:6]:  # what the release before the roles applied, as the superuser
            await conn.execute(migration.path.read_text(encoding="utf-8"))
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", migration.version, migration.name)
        await conn.execute(
            "INSERT INTO services (service_id, kind, name, base_url) VALUES ($1, 'gateway', 'G', 'https://g.example')",
            gateway,
        )
        await conn.execute("SELECT put_record($1, $2, 'active', 'record')", ihi, gateway)
    finally:
        await conn.close()
    cluster.stop()
    cli = Cli(data_dir, serve_user, interpreter_for(serve_user))
    with cli.serving() as server:
        assert _services_of(server, ihi, cli.admin_token()) == [gateway]
        conn = await asyncpg.connect(url)
        try:
            owners = await conn.fetch(
                "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            )
            logins = await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'postgres' AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
            applied = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        finally:
            await conn.close()
        assert server.terminate() == 0
    assert [row["owner"] for row in owners] == [OWNER_ROLE]
    assert SERVER_LOGIN in {row["usename"] for row in logins}
    assert applied == known_migrations()[-1].version
