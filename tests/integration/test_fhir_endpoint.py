"""FHIR ``Endpoint``: the member services of the directory, read and searched over real HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import make_service_id
from tests.fhir import BASE, SERVICE_SYSTEM, entry_ids, extension
from tests.server import RunningServer


async def test_read_maps_a_gateway(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """An enabled gateway reads as an active hl7-fhir-rest Endpoint at its base URL, with kind and style."""
    service_id = make_service_id()
    await server.add_service(service_id, name="Imaging North", base_url="https://north.example/fhir", style="harmony")
    response = await fhir.get(f"/fhir/Endpoint/{service_id}")
    assert response.status_code == 200
    assert response.headers["last-modified"].endswith("GMT")
    endpoint = response.json()
    assert endpoint["id"] == service_id
    assert endpoint["identifier"] == [{"system": SERVICE_SYSTEM, "value": service_id}]
    assert endpoint["status"] == "active"
    assert endpoint["name"] == "Imaging North"
    assert endpoint["address"] == "https://north.example/fhir"
    assert endpoint["connectionType"]["code"] == "hl7-fhir-rest"
    assert [p["coding"][0]["code"] for p in endpoint["payloadType"]] == ["ImagingStudy", "DocumentReference"]
    assert extension(endpoint, "endpoint-service-kind")["valueCode"] == "gateway"
    assert extension(endpoint, "endpoint-search-style")["valueCode"] == "harmony"


async def test_read_maps_a_disabled_registry(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """A disabled registry reads as an Endpoint with status off, kind registry, payload Basic, and its FHIR base
    (its base URL, the root of its API, + /fhir) as the address."""
    service_id = make_service_id()
    await server.add_service(service_id, kind="registry", status="disabled", base_url="https://jurisdiction.example")
    endpoint = (await fhir.get(f"/fhir/Endpoint/{service_id}")).json()
    assert endpoint["status"] == "off"
    assert endpoint["address"] == "https://jurisdiction.example/fhir"
    assert extension(endpoint, "endpoint-service-kind")["valueCode"] == "registry"
    assert [p["coding"][0]["code"] for p in endpoint["payloadType"]] == ["Basic"]


async def test_read_accepts_an_upper_case_uuid(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A UUID id in upper case names the same service (service IDs are case-insensitive)."""
    response = await fhir.get(f"/fhir/Endpoint/{gateway.upper()}")
    assert response.json()["id"] == gateway


@pytest.mark.parametrize("endpoint_id", ["no-such-service", "4f1c6f0e-3b7a-4d57-9a55-3d6f7a5e6c10"])
async def test_read_of_unknown_endpoint_is_404(fhir: httpx.AsyncClient, endpoint_id: str) -> None:
    """An id that is no service (or could not be one) is a 404 OperationOutcome."""
    response = await fhir.get(f"/fhir/Endpoint/{endpoint_id}")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_search_by_id_and_identifier(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """_id and identifier (system|id or bare) select services; both together must agree."""
    one, two = make_service_id(), make_service_id()
    await server.add_service(one)
    await server.add_service(two)
    assert entry_ids((await fhir.get("/fhir/Endpoint", params={"_id": one})).json()) == [one]
    assert entry_ids((await fhir.get("/fhir/Endpoint", params={"identifier": f"{SERVICE_SYSTEM}|{two}"})).json()) == [
        two
    ]
    both = (await fhir.get("/fhir/Endpoint", params={"identifier": f"{one},{two}"})).json()
    assert sorted(entry_ids(both)) == sorted([one, two])
    disagree = (await fhir.get("/fhir/Endpoint", params={"_id": one, "identifier": two})).json()
    assert disagree["total"] == 0
    unknown_id = (await fhir.get("/fhir/Endpoint", params={"_id": "not-a-service"})).json()
    assert unknown_id["total"] == 0


@pytest.mark.parametrize(
    ("identifier", "diagnostic"),
    [
        ("urn:other|4f1c6f0e-3b7a-4d57-9a55-3d6f7a5e6c10", "service ID system"),
        ("not-a-service-id", "invalid service ID"),
    ],
)
async def test_search_by_a_foreign_or_invalid_identifier_is_422(
    fhir: httpx.AsyncClient, identifier: str, diagnostic: str
) -> None:
    """An identifier of another system, or one that is not a service ID, is 422 naming the parameter."""
    response = await fhir.get("/fhir/Endpoint", params={"identifier": identifier})
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert (issue["expression"], diagnostic in issue["diagnostics"]) == (["identifier"], True)


async def test_search_by_status(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """status=active finds enabled services, off disabled ones; other Endpoint codes match nothing; unknown is 422."""
    enabled, disabled = make_service_id(), make_service_id()
    name = f"Status probe {uuid.uuid4().hex}"
    await server.add_service(enabled, name=name)
    await server.add_service(disabled, name=name, status="disabled")

    async def found(status: str) -> list[str]:
        return entry_ids((await fhir.get("/fhir/Endpoint", params={"name": name, "status": status})).json())

    assert await found("active") == [enabled]
    assert await found("off") == [disabled]
    assert sorted(await found("active,off")) == sorted([enabled, disabled])
    assert await found("suspended") == []
    bad = await fhir.get("/fhir/Endpoint", params={"status": "enabled"})
    assert (bad.status_code, bad.json()["issue"][0]["expression"]) == (422, ["status"])


async def test_search_by_name_prefix(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """name matches the start of the name, case-insensitively; LIKE wildcards in the value are literal."""
    tag = uuid.uuid4().hex[:12]
    first, second, other = make_service_id(), make_service_id(), make_service_id()
    await server.add_service(first, name=f"{tag} Radiology North")
    await server.add_service(second, name=f"{tag} radiology South")
    await server.add_service(other, name=f"Other {tag}")
    assert sorted(
        entry_ids((await fhir.get("/fhir/Endpoint", params={"name": f"{tag.upper()} RADIOLOGY"})).json())
    ) == sorted([first, second])
    assert entry_ids((await fhir.get("/fhir/Endpoint", params={"name": f"{tag} Radiology S"})).json()) == [second]
    assert (await fhir.get("/fhir/Endpoint", params={"name": f"{tag}%"})).json()["total"] == 0
    repeated = await fhir.get("/fhir/Endpoint", params=[("name", tag), ("name", tag)])
    assert repeated.status_code == 400


async def test_search_pages_with_links(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """_count pages the Endpoint search; total, next and previous links are right."""
    name = f"Paged {uuid.uuid4().hex}"
    services = [make_service_id() for _ in range(3)]
    for service_id in services:
        await server.add_service(service_id, name=name)
    first = (await fhir.get("/fhir/Endpoint", params={"name": name, "_count": "2"})).json()
    assert (first["total"], len(first["entry"])) == (3, 2)
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = (await fhir.get(next_url)).json()
    assert {link["relation"] for link in second["link"]} == {"self", "previous"}
    assert sorted(entry_ids(first) + entry_ids(second)) == sorted(services)


async def test_every_service_is_listed_without_criteria(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A search with no criteria lists the directory (paged), this gateway included."""
    bundle = (await fhir.get("/fhir/Endpoint", params={"_count": "1000"})).json()
    assert gateway in entry_ids(bundle)
    assert all(entry["fullUrl"].endswith(f"/fhir/Endpoint/{entry['resource']['id']}") for entry in bundle["entry"])
    assert bundle["link"][0]["url"].startswith("http://127.0.0.1")
    assert BASE not in bundle["link"][0]["url"]


async def test_endpoint_is_never_deleted(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Endpoints are created and updated by the operator but never deleted (405; retire a service instead)."""
    delete = await fhir.delete(f"/fhir/Endpoint/{gateway}")
    assert delete.status_code == 405
