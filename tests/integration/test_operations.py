"""Operational behaviour: logs without IHIs, readiness, and failures that never leak internals."""

from __future__ import annotations

import re

import asyncpg
import httpx
import msgspec
from structlog.testing import capture_logs

from registry.config import LogSettings, Settings
from tests.factories import make_ihi, make_service_id
from tests.fhir import BASE
from tests.metrics import key, samples_of
from tests.pg import TestCluster
from tests.server import running_server


async def test_access_line_per_request_without_raw_ihi(template: TestCluster) -> None:
    """Each request logs one http_request line with the route template and request id, never the IHI."""
    settings = Settings(log=LogSettings(access=True))
    service_id = make_service_id()
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        await server.add_service(service_id)
        ihi = make_ihi()
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as client:
            with capture_logs() as logs:
                put = await client.put(f"/registry/records/{ihi}/{service_id}", json={"status": "active"})
                bad = await client.put(f"/registry/records/{ihi}/{service_id}", json={"status": "nope"})
                await client.post(
                    "/registry/records:batch", json=[{"ihi": ihi, "serviceId": service_id, "status": "archived"}]
                )
    access = [entry for entry in logs if entry["event"] == "http_request"]
    assert [entry["status"] for entry in access] == [201, 422, 200]
    assert access[0]["route"] == "/registry/records/{ihi}/{service_id}"
    assert access[0]["client_id"] == "operator"
    assert access[0]["request_id"] == put.headers["x-request-id"]
    assert access[1]["request_id"] == bad.headers["x-request-id"]
    assert ihi not in msgspec.json.encode(logs).decode()


async def test_request_ids_are_unique_and_a_safe_one_is_kept(client: httpx.AsyncClient) -> None:
    """The server gives each request its own 32-hex-digit ID, and answers with the caller's own when it is safe."""
    made = [(await client.get("/health/live")).headers["x-request-id"] for _ in range(5)]
    kept = await client.get("/health/live", headers={"X-Request-Id": "caller-123"})
    unsafe = await client.get("/health/live", headers={"X-Request-Id": "no spaces allowed"})
    assert len(set(made)) == 5
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in made)
    assert kept.headers["x-request-id"] == "caller-123"
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])


async def test_ready_turns_503_when_the_database_goes(template: TestCluster) -> None:
    """/health/ready answers 200 while the database is there and 503 OperationOutcome once it is gone."""
    database_url = await template.new_database()
    name = database_url.split("/")[3].split("?")[0]
    async with (
        running_server(Settings(), database_url, make_service_id()) as server,
        httpx.AsyncClient(base_url=server.base_url) as client,
    ):
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"
        conn = await asyncpg.connect(template.url)
        try:
            await conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
        finally:
            await conn.close()
        gone = await client.get("/health/ready")
        live = await client.get("/health/live")
    assert gone.status_code == 503
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert live.status_code == 200


async def test_unexpected_failure_is_a_bare_500_outcome(template: TestCluster) -> None:
    """A database fault the code does not expect gives a 500 OperationOutcome with no internals in it."""
    database_url = await template.new_database()
    async with running_server(Settings(), database_url, make_service_id()) as server:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ALTER TABLE record_history RENAME TO record_history_gone")
        finally:
            await conn.close()
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as client:
            with capture_logs() as logs:
                response = await client.get(f"/registry/records/{make_ihi()}/history")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "exception",
                "details": {"coding": [{"system": f"{BASE}/CodeSystem/ief-error", "code": "internal-error"}]},
                "diagnostics": "the server could not complete the request",
            }
        ],
    }
    assert any(entry["event"] == "unhandled_error" for entry in logs)


async def test_schema_is_served_as_openapi(anonymous: httpx.AsyncClient) -> None:
    """The OpenAPI document (public) lists the native routes with their msgspec body types."""
    document = (await anonymous.get("/schema/openapi.json")).json()
    assert "/registry/records/{ihi}/{service_id}" in document["paths"]
    assert "RecordWrite" in msgspec.json.encode(document).decode()


async def test_metrics_count_requests_by_route_template_never_by_path(template: TestCluster) -> None:
    """/metrics counts requests and their durations by method, route template and status; no IHI appears."""
    service_id = make_service_id()
    async with running_server(Settings(), await template.new_database(), make_service_id()) as server:
        await server.add_service(service_id)
        ihi = make_ihi()
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as client:
            for _ in range(3):
                await client.put(f"/registry/records/{ihi}/{service_id}", json={"status": "active"})
            await client.put(f"/registry/records/{ihi}/{service_id}", json={"status": "nope"})
            await client.get(f"/registry/records/{ihi}")
            await client.get("/no/such/route")
            response = await client.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = samples_of(response.text)
    route = "/registry/records/{ihi}/{service_id}"
    requests = "ief_http_requests_total"
    assert samples[key(requests, method="PUT", route=route, status="201")] == 1
    assert samples[key(requests, method="PUT", route=route, status="200")] == 2
    assert samples[key(requests, method="PUT", route=route, status="422")] == 1
    assert samples[key(requests, method="GET", route="/registry/records/{ihi}", status="200")] == 1
    assert samples[key(requests, method="GET", route="(unmatched)", status="404")] == 1
    assert samples[key("ief_http_request_duration_seconds_count", method="PUT", route=route)] == 4
    assert samples[key("ief_http_request_duration_seconds_bucket", method="PUT", route=route, le="+Inf")] == 4
    assert ihi not in response.text
