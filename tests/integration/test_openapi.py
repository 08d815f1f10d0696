"""The OpenAPI document describes the server: checked by hand where it matters, and by schemathesis over the
whole API against a live server (bounded in examples and time)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.config import SubscriptionSettings
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.settings import test_settings

_FHIR = "application/fhir+json"


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def test_public_routes_need_no_token_in_the_document(anonymous: httpx.AsyncClient) -> None:
    """Public routes (metadata, discovery, health, the token endpoint) declare no security; the rest the bearer."""
    paths = (await _document(anonymous))["paths"]
    for path, method in (
        ("/fhir/metadata", "get"),
        ("/.well-known/smart-configuration", "get"),
        ("/fhir/.well-known/smart-configuration", "get"),
        ("/health/live", "get"),
        ("/auth/token", "post"),
    ):
        assert paths[path][method]["security"] == [], path
    assert paths["/fhir/Basic"]["get"]["security"] == [{"bearer": []}]
    assert "401" in paths["/fhir/Basic"]["get"]["responses"]
    assert "401" not in paths["/fhir/metadata"]["get"]["responses"]


async def test_fhir_answers_and_bodies_are_fhir_json(anonymous: httpx.AsyncClient) -> None:
    """FHIR routes declare application/fhir+json answers (errors as OperationOutcome), resource bodies, and the
    search parameters of their declarations; creates may answer 200 or 201; the native PUT declares 201."""
    paths = (await _document(anonymous))["paths"]
    search = paths["/fhir/Basic"]["get"]
    assert set(search["responses"]["200"]["content"]) == {_FHIR}
    assert search["responses"]["422"]["content"][_FHIR]["schema"]["$ref"].endswith("/OperationOutcome")
    names = {p["name"] for p in search["parameters"]}
    assert {"patient", "patient.identifier", "subject:identifier", "service", "_summary", "_elements"} <= names
    summary = next(p for p in search["parameters"] if p["name"] == "_summary")
    assert summary["schema"]["enum"] == ["true", "text", "data", "count", "false"]
    create = paths["/fhir/Basic"]["post"]
    assert {"200", "201"} <= set(create["responses"])
    assert _FHIR in create["requestBody"]["content"]
    assert paths["/fhir/Patient/$locate"]["post"]["requestBody"]["content"][_FHIR]
    assert {"200", "201"} <= set(paths["/registry/records/{ihi}/{service_id}"]["put"]["responses"])
    token = paths["/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]


@pytest.mark.slow
async def test_schemathesis_finds_nothing_over_the_whole_api(template: TestCluster, tmp_path: Path) -> None:
    """schemathesis (unmodified, its command line) generates valid requests for every operation of the document and
    checks each answer: no 5xx, every status and media type declared, every body of its declared schema. A server
    of its own, without a delivery worker: nothing it is sent ever leaves the machine."""
    settings = test_settings(subscriptions=SubscriptionSettings(worker=False))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        await _schemathesis(server, tmp_path)


async def _schemathesis(server: RunningServer, tmp_path: Path) -> None:
    token = await server.token("admin")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run", f"{server.base_url}/schema/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--mode", "positive", "--max-examples", "3", "--seed", "16", "--max-time", "60",
        "--phases", "examples,fuzzing", "--workers", "1", "--request-timeout", "20",
        "-H", f"Authorization: Bearer {token}",
        "--exclude-path-regex", "^/fhir/(ImagingStudy|DocumentReference)$|^/schema/",  # fan-out: tests/broker
        "--report-dir", str(tmp_path), "--suppress-health-check", "all",
    ]  # fmt: skip
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=tmp_path
    )  # its cache (.schemathesis/) stays in the test's folder
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    text = output.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert process.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
