"""A database that refuses writes under a running server: 503 with Retry-After, and not ready.

The failover itself (the leader killed mid-burst, a standby promoted, nothing acknowledged lost)
is tested with real Patroni in ``tests/scale/test_patroni.py``, through HAProxy and through a
multi-host URL.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from registry.config import LogSettings, Settings
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import running_server

pytestmark = pytest.mark.slow


async def test_a_read_only_database_is_503_and_not_ready(template: TestCluster) -> None:
    """When the pools reach a server that refuses writes (a standby behind a stale route, a primary being
    demoted), writes and reads are 503 OperationOutcomes with Retry-After, never an unexpected error, and
    /health/ready says not ready."""
    database_url = await template.new_database()
    name = database_url.split("/")[3].split("?")[0]
    async with running_server(Settings(log=LogSettings(access=False)), database_url, make_service_id()) as server:
        gateway = make_service_id()
        await server.add_service(gateway)
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers(), timeout=30) as http:
            assert (await http.get("/health/ready")).status_code == 200
            conn = await asyncpg.connect(database_url)
            try:  # every new session is read-only, and the pools' sessions are ended: they reconnect into it
                await conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
            with capture_logs() as logs:
                answers = [
                    await http.put(f"/registry/records/{make_ihi()}/{gateway}", json={}),
                    await http.post("/registry/records:batch", json=[{"ihi": make_ihi(), "serviceId": gateway}]),
                    await http.get(f"/registry/records/{make_ihi()}"),
                ]
                ready = await http.get("/health/ready")
    assert [a.status_code for a in answers] == [503, 503, 503], [a.text for a in answers]
    assert [a.headers.get("retry-after") for a in answers] == ["2", "2", "2"]
    assert [a.json()["resourceType"] for a in answers] == ["OperationOutcome"] * 3
    assert ready.status_code == 503
    assert "read-only" in ready.text
    assert [e for e in logs if e["event"] == "unhandled_error"] == []
