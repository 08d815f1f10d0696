"""``db status``, ``db upgrade`` and ``serve --help`` as the operator runs them, on the embedded cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from registry.config import TOML_ONLY, describe_settings
from registry.db.migrate import known_migrations
from tests.process.runner import ROOT, Cli, OsUser, Workdir, cluster_user_for, embedded, postmasters
from tests.server import free_port

pytestmark = pytest.mark.slow


async def test_db_commands_and_a_database_newer_than_the_code(workdir: Workdir) -> None:
    """db status/upgrade report and apply migrations; serve refuses a database with a migration it does not know."""
    me = OsUser.current()
    cluster_user = cluster_user_for(me)
    data_dir = workdir.data_dir("data", owner=me, cluster_user=cluster_user)
    cli = Cli(data_dir, me, (sys.executable, {}))
    cluster = embedded(data_dir, cluster_user)
    names = [f"{m.version:04d}_{m.name}" for m in known_migrations()]

    # On a fresh data dir the command creates nothing: every migration is pending, and it says what creates it.
    fresh = cli.run("db", "status")
    assert fresh.returncode == 1, fresh.stderr
    assert fresh.stdout.splitlines() == [f"{name}  pending" for name in names]
    assert fresh.stderr.startswith(f"no database yet in {data_dir}: `ief-registry db upgrade` creates and migrates it")
    assert not cluster.initialised
    assert not (data_dir / "pg").exists()

    # With the cluster already running, commands use it and leave it running; pending migrations point to upgrade.
    cluster.start()
    empty = cli.run("db", "status")
    assert empty.returncode == 1
    assert empty.stdout.splitlines() == [f"{name}  pending" for name in names]
    assert "pending migrations: `ief-registry db upgrade` applies them" in empty.stderr
    upgraded = cli.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == "applied: " + ", ".join(names)
    at_head = cli.run("db", "status")
    assert at_head.returncode == 0, at_head.stderr
    assert at_head.stdout.splitlines() == [f"{name}  applied" for name in names]
    again = cli.run("db", "upgrade")
    assert again.stdout.strip() == "already at head"

    conn = await asyncpg.connect(cluster.url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_a_newer_release')")
    finally:
        await conn.close()
    refused = cli.run("serve", "--port", str(free_port()))
    assert refused.returncode == 1, refused.stderr
    assert "the database has migrations [9999] that this release does not know" in refused.stderr
    newer = cli.run("db", "status")
    assert newer.returncode == 1
    assert "9999  unknown to this release (the database is newer)" in newer.stdout.splitlines()
    assert len(postmasters(cluster.cluster)) == 1
    cluster.stop()


def test_serve_help_lists_every_setting() -> None:
    """``serve --help`` shows every setting with its environment variable (or TOML key), default and meaning."""
    result = subprocess.run(
        [sys.executable, "-m", "registry", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "80"},  # click wraps help text to the terminal width
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    settings = describe_settings()
    assert len(settings) > 20
    for doc in settings:
        name = f"{doc.key} {TOML_ONLY}" if doc.env == TOML_ONLY else doc.env
        assert f"{name}={doc.default}" in lines, name
        assert lines[lines.index(f"{name}={doc.default}") + 1] == doc.description
