"""The directory describes real organisations and is managed over FHIR Endpoint by the operator (DESIGN §11)."""

from __future__ import annotations

import httpx
import msgspec

from tests.cli import run_cli
from tests.conftest import GatewayClient
from tests.factories import make_service_id
from tests.fhir import HPIO, HPIO_SYSTEM, endpoint_body
from tests.server import RunningServer


async def test_the_operator_adds_and_changes_a_service_over_fhir(fhir: httpx.AsyncClient) -> None:
    """POST Endpoint adds the service with its organisation (201); PUT changes it (200); the Endpoint and its
    Organization read back what was sent."""
    service_id = make_service_id()
    created = await fhir.post("/fhir/Endpoint", json=endpoint_body(service_id))
    assert created.status_code == 201, created.text
    endpoint = (await fhir.get(f"/fhir/Endpoint/{service_id}")).json()
    assert endpoint["managingOrganization"]["reference"] == f"Organization/{service_id}"
    assert {c["system"]: c["value"] for c in endpoint["contact"]} == {
        "email": "pacs@harbour.example",
        "phone": "+61 2 5550 1234",
    }
    values = {
        e["url"].rsplit("/", 1)[1]: next(v for k, v in e.items() if k.startswith("value"))
        for e in endpoint["extension"]
    }
    assert values["endpoint-jurisdiction"] == "NSW"
    assert values["endpoint-fallback"] == "phone the practice"
    organization = (await fhir.get(f"/fhir/Organization/{service_id}")).json()
    assert organization["identifier"] == [{"system": HPIO_SYSTEM, "value": HPIO}]
    assert organization["address"] == [{"state": "NSW", "country": "AU"}]
    found = (await fhir.get("/fhir/Organization", params={"identifier": f"{HPIO_SYSTEM}|{HPIO}"})).json()
    assert service_id in [e["resource"]["id"] for e in found.get("entry", [])]
    changed = await fhir.put(f"/fhir/Endpoint/{service_id}", json=endpoint_body(service_id, status="off"))
    assert changed.status_code == 200
    assert changed.json()["status"] == "off"


async def test_endpoint_writes_have_the_clis_validation(fhir: httpx.AsyncClient) -> None:
    """An invalid HPI-O is 422 naming it; a body naming another service than the URL is 400."""
    service_id = make_service_id()
    bad = await fhir.post("/fhir/Endpoint", json=endpoint_body(service_id, hpio="8003621566684456"))
    assert bad.status_code == 422
    assert "HPI-O" in bad.json()["issue"][0]["diagnostics"]
    other = await fhir.put(f"/fhir/Endpoint/{make_service_id()}", json=endpoint_body(service_id))
    assert other.status_code == 400


async def test_only_the_operator_writes_the_directory(gateway_client: GatewayClient) -> None:
    """A gateway's token cannot add or change services (403)."""
    service_id = make_service_id()
    refused = await gateway_client.http.post("/fhir/Endpoint", json=endpoint_body(service_id))
    assert refused.status_code == 403


async def test_credentials_set_by_the_command_line_stay_through_fhir_writes(
    fhir: httpx.AsyncClient, server: RunningServer
) -> None:
    """`services add --client-id --token-endpoint` keeps both; an Endpoint PUT by the operator changes the entry but
    not where this registry gets its tokens for it; a token endpoint without a client ID is refused."""
    service_id = make_service_id()
    added = await run_cli(
        server, "services", "add", "--id", service_id, "--kind", "gateway", "--name", "Harbour Radiology",
        "--base-url", "https://pacs.example.test/fhir", "--client-id", "harbour-client",
        "--token-endpoint", "https://tokens.example.test/token",
    )  # fmt: skip
    assert added.code == 0, added.err
    changed = await fhir.put(f"/fhir/Endpoint/{service_id}", json={**endpoint_body(service_id), "id": service_id})
    assert changed.status_code == 200, changed.text
    listed = await run_cli(server, "services", "list", "--json")
    entry = next(e for e in map(msgspec.json.decode, listed.out.splitlines()) if e["serviceId"] == service_id)
    assert (entry["clientId"], entry["tokenEndpoint"], entry["organisation"]["hpio"]) == (
        "harbour-client",
        "https://tokens.example.test/token",
        HPIO,
    )
    refused = await run_cli(
        server, "services", "add", "--id", make_service_id(), "--kind", "gateway", "--name", "No client",
        "--base-url", "https://pacs.example.test/fhir", "--token-endpoint", "https://tokens.example.test/token",
    )  # fmt: skip
    assert refused.code != 0
    assert "client ID" in refused.err
