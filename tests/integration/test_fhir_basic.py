"""FHIR ``Basic`` (RegistryRecord): create, conditional update, update, read, search, over real HTTP."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import BASE, SERVICE_SYSTEM, entry_ids, extension, fixture, record_body
from tests.server import RunningServer

ALIAS_SYSTEM = "http://ns.electronichealth.net.au/id/ihi/1.0"


async def _create(fhir: httpx.AsyncClient, ihi: str, service_id: str, **changes: str) -> httpx.Response:
    response = await fhir.post("/fhir/Basic", json=record_body(ihi, service_id, **changes))
    assert response.status_code in (200, 201), response.text
    return response


async def _history(client: httpx.AsyncClient, ihi: str) -> list[tuple[str, str, str | None]]:
    entries = (await client.get(f"/registry/records/{ihi}/history")).json()["history"]
    return [(e["change"], e["status"], e.get("previousStatus")) for e in entries]


async def test_create_answers_201_with_the_record(fhir: httpx.AsyncClient, gateway: str) -> None:
    """POST creates the record: 201, Location and ETag headers, and the stored RegistryRecord as body."""
    ihi = make_ihi()
    response = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"].endswith(f"/fhir/Basic/{body['id']}")
    assert response.headers["etag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["profile"] == [f"{BASE}/StructureDefinition/RegistryRecord"]
    assert body["subject"] == {"identifier": {"system": IHI_SYSTEM, "value": ihi}}
    assert extension(body, "registry-record-service")["valueIdentifier"] == {"system": SERVICE_SYSTEM, "value": gateway}
    assert extension(body, "registry-record-status")["valueCode"] == "active"
    assert extension(body, "registry-record-type")["valueCode"] == "record"
    assert body["code"]["coding"][0]["code"] == "registry-record"


async def test_create_is_idempotent_on_the_natural_key(
    fhir: httpx.AsyncClient, client: httpx.AsyncClient, gateway: str
) -> None:
    """Creating the same record again is a re-registration: 200 with the same id and the next version; a new status
    updates it (200)."""
    ihi = make_ihi()
    first = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway))
    again = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["etag"] == 'W/"2"'
    assert "location" not in again.headers
    changed = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway, status="archived"))
    assert changed.status_code == 200
    assert changed.json()["id"] == first.json()["id"]
    assert changed.headers["etag"] == 'W/"3"'
    assert extension(changed.json(), "registry-record-status")["valueCode"] == "archived"
    assert await _history(client, ihi) == [
        ("created", "active", None),
        ("registered", "active", "active"),
        ("status-changed", "archived", "active"),
    ]


async def test_minimal_body_defaults_to_an_active_record(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Without the status and type extensions a record is active and of type record, as on the native API."""
    ihi = make_ihi()
    response = await fhir.post(
        "/fhir/Basic", json=fixture("Basic-RegistryRecord-minimal.json", ihi=ihi, service_id=gateway)
    )
    assert response.status_code == 201
    assert extension(response.json(), "registry-record-status")["valueCode"] == "active"
    assert extension(response.json(), "registry-record-type")["valueCode"] == "record"


async def test_ihi_system_alias_is_accepted_and_normalised(fhir: httpx.AsyncClient, gateway: str) -> None:
    """The IHI system spelling some tools emit is accepted on input; the official system is returned."""
    ihi = make_ihi()
    body = record_body(ihi, gateway)
    body["subject"]["identifier"]["system"] = ALIAS_SYSTEM
    created = await fhir.post("/fhir/Basic", json=body)
    assert created.status_code == 201
    assert created.json()["subject"]["identifier"]["system"] == IHI_SYSTEM
    found = await fhir.get("/fhir/Basic", params={"subject:identifier": f"{ALIAS_SYSTEM}|{ihi}"})
    assert entry_ids(found.json()) == [created.json()["id"]]


async def test_registry_type_records_are_written(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """A record of type registry (a federation hop) naming a registry service is stored as such."""
    registry = make_service_id()
    await server.add_service(registry, kind="registry", name="Peer registry")
    response = await _create(fhir, make_ihi(), registry, type_="registry")
    assert extension(response.json(), "registry-record-type")["valueCode"] == "registry"


async def test_service_id_is_normalised(fhir: httpx.AsyncClient, gateway: str) -> None:
    """An upper-case UUID in the service extension names the same service, returned in canonical form."""
    response = await _create(fhir, make_ihi(), gateway.upper())
    assert extension(response.json(), "registry-record-service")["valueIdentifier"]["value"] == gateway


async def test_read_returns_the_record_with_its_version(fhir: httpx.AsyncClient, gateway: str) -> None:
    """GET Basic/{id} returns the record, whatever its status, with its ETag."""
    created = (await _create(fhir, make_ihi(), gateway, status="removed")).json()
    read = await fhir.get(f"/fhir/Basic/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["last-modified"].endswith("GMT")


@pytest.mark.parametrize("record_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
async def test_read_of_unknown_id_is_404(fhir: httpx.AsyncClient, record_id: str) -> None:
    """Reading an id no record has (or one that could not be a record id) is a 404 OperationOutcome."""
    response = await fhir.get(f"/fhir/Basic/{record_id}")
    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_conditional_update_creates_then_updates(
    fhir: httpx.AsyncClient, client: httpx.AsyncClient, gateway: str
) -> None:
    """PUT Basic?subject:identifier=…&service=… creates the record (201), then updates it (200), keeping history."""
    ihi = make_ihi()
    params = {"subject:identifier": f"{IHI_SYSTEM}|{ihi}", "service": gateway}
    created = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway))
    assert created.status_code == 201
    assert "location" in created.headers
    updated = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway, status="removed"))
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.headers["etag"] == 'W/"2"'
    unchanged = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway, status="removed"))
    assert (unchanged.status_code, unchanged.headers["etag"]) == (200, 'W/"2"')
    assert await _history(client, ihi) == [("created", "active", None), ("status-changed", "removed", "active")]


@pytest.mark.parametrize(
    "patient", ["patient.identifier", "patient", "patient-reference", "subject"], ids=lambda p: p.replace(".", "_")
)
async def test_conditional_update_accepts_every_patient_parameter(
    fhir: httpx.AsyncClient, gateway: str, patient: str
) -> None:
    """A conditional update may name the patient by patient.identifier, patient or subject (IHI or Patient/IHI)."""
    ihi = make_ihi()
    name, value = {
        "patient.identifier": ("patient.identifier", f"{IHI_SYSTEM}|{ihi}"),
        "patient": ("patient", ihi),
        "patient-reference": ("patient", f"Patient/{ihi}"),
        "subject": ("subject", f"Patient/{ihi}"),
    }[patient]
    service = f"{SERVICE_SYSTEM}|{gateway}"
    response = await fhir.put("/fhir/Basic", params={name: value, "service": service}, json=record_body(ihi, gateway))
    assert response.status_code == 201


@pytest.mark.parametrize(
    "params",
    [{"service": "SERVICE"}, {"patient": "IHI"}, {"patient": "IHI,OTHER", "service": "SERVICE"}],
    ids=["no-patient", "no-service", "two-patients"],
)
async def test_conditional_update_must_name_one_record(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str, params: dict[str, str]
) -> None:
    """A conditional update whose criteria do not name exactly one (patient, service) is 412 and stores nothing."""
    ihi, other = make_ihi(), make_ihi()
    query = {k: v.replace("SERVICE", gateway).replace("OTHER", other).replace("IHI", ihi) for k, v in params.items()}
    response = await fhir.put("/fhir/Basic", params=query, json=record_body(ihi, gateway))
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "conflict"
    assert await server.record_count(ihi) == 0


async def test_conditional_update_body_must_match_the_criteria(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """A body naming another patient and service than the criteria is 422 with an issue for each, and stores nothing."""
    ihi, other = make_ihi(), make_service_id()
    await server.add_service(other)
    params = {"patient": make_ihi(), "service": other}
    response = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway))
    assert response.status_code == 422
    assert [issue["expression"] for issue in response.json()["issue"]] == [
        ["Basic.subject.identifier.value"],
        ["Basic.extension[0].valueIdentifier.value"],
    ]
    assert await server.record_count(ihi) == 0


async def test_conditional_update_body_id_must_be_the_records(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A body id in a conditional update must be the id of the record the criteria select (422 otherwise)."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    params = {"patient": ihi, "service": gateway}
    wrong = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway, record_id=str(uuid.uuid4())))
    assert wrong.status_code == 422
    assert wrong.json()["issue"][0]["expression"] == ["Basic.id"]
    right = await fhir.put("/fhir/Basic", params=params, json=record_body(ihi, gateway, record_id=created["id"]))
    assert right.status_code == 200


async def test_update_by_id_changes_status(fhir: httpx.AsyncClient, client: httpx.AsyncClient, gateway: str) -> None:
    """PUT Basic/{id} with the record's id changes its status (200) and the change is in the history."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    body = record_body(ihi, gateway, status="archived", record_id=created["id"])
    response = await fhir.put(f"/fhir/Basic/{created['id']}", json=body)
    assert response.status_code == 200
    assert extension(response.json(), "registry-record-status")["valueCode"] == "archived"
    assert response.json()["meta"]["versionId"] == "2"
    assert await _history(client, ihi) == [("created", "active", None), ("status-changed", "archived", "active")]


@pytest.mark.parametrize("body_id", [None, "00000000-0000-4000-8000-000000000000"], ids=["missing", "different"])
async def test_update_body_id_must_equal_the_url_id(fhir: httpx.AsyncClient, gateway: str, body_id: str | None) -> None:
    """PUT Basic/{id} with no id in the body, or another id, is 400 naming Basic.id (as FHIR requires)."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    response = await fhir.put(
        f"/fhir/Basic/{created['id']}", json=record_body(ihi, gateway, status="removed", record_id=body_id)
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Basic.id"]


async def test_update_of_unknown_id_is_405(fhir: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """PUT to an id no record has is 405 (ids are the server's: no update-as-create), and nothing is stored."""
    ihi = make_ihi()
    record_id = str(uuid.uuid4())
    response = await fhir.put(f"/fhir/Basic/{record_id}", json=record_body(ihi, gateway, record_id=record_id))
    assert response.status_code == 405
    assert await server.record_count(ihi) == 0


async def test_update_cannot_move_a_record(fhir: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """PUT Basic/{id} naming another IHI or another service is 422 with an issue for each, and changes nothing."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    other_service, other_ihi = make_service_id(), make_ihi()
    await server.add_service(other_service)
    body = record_body(other_ihi, other_service, status="removed", record_id=created["id"])
    response = await fhir.put(f"/fhir/Basic/{created['id']}", json=body)
    assert response.status_code == 422
    assert [issue["expression"] for issue in response.json()["issue"]] == [
        ["Basic.subject.identifier.value"],
        ["Basic.extension[0].valueIdentifier.value"],
    ]
    assert (await fhir.get(f"/fhir/Basic/{created['id']}")).json() == created
    assert await server.record_count(other_ihi) == 0


async def test_if_match_guards_updates(fhir: httpx.AsyncClient, gateway: str) -> None:
    """If-Match with the stored version lets an update through; a stale version is 412 and changes nothing."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    url = f"/fhir/Basic/{created['id']}"
    ok = await fhir.put(
        url, json=record_body(ihi, gateway, status="removed", record_id=created["id"]), headers={"If-Match": 'W/"1"'}
    )
    assert (ok.status_code, ok.headers["etag"]) == (200, 'W/"2"')
    stale = await fhir.put(
        url, json=record_body(ihi, gateway, status="active", record_id=created["id"]), headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert extension((await fhir.get(url)).json(), "registry-record-status")["valueCode"] == "removed"
    params = {"patient": ihi, "service": gateway}
    conditional = await fhir.put(
        "/fhir/Basic", params=params, json=record_body(ihi, gateway), headers={"If-Match": '"2"'}
    )
    assert (conditional.status_code, conditional.headers["etag"]) == (200, 'W/"3"')


async def test_if_match_on_a_missing_record_is_412(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """A conditional update with If-Match for a record that does not exist is 412 and creates nothing."""
    ihi = make_ihi()
    response = await fhir.put(
        "/fhir/Basic",
        params={"patient": ihi, "service": gateway},
        json=record_body(ihi, gateway),
        headers={"If-Match": 'W/"1"'},
    )
    assert response.status_code == 412
    assert await server.record_count(ihi) == 0


async def test_malformed_if_match_is_400(fhir: httpx.AsyncClient, gateway: str) -> None:
    """An If-Match that is not a version ETag is 400 naming the header."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    body = record_body(ihi, gateway, record_id=created["id"])
    response = await fhir.put(f"/fhir/Basic/{created['id']}", json=body, headers={"If-Match": "*"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["If-Match"]


async def test_concurrent_if_match_updates_let_exactly_one_through(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Of many concurrent updates expecting the same version, exactly one succeeds; the others are 412."""
    ihi = make_ihi()
    created = (await _create(fhir, ihi, gateway)).json()
    url = f"/fhir/Basic/{created['id']}"
    statuses = ["removed", "archived"] * 5
    responses = await asyncio.gather(
        *(
            fhir.put(
                url, json=record_body(ihi, gateway, status=s, record_id=created["id"]), headers={"If-Match": 'W/"1"'}
            )
            for s in statuses
        )
    )
    assert sorted(r.status_code for r in responses) == [200] + [412] * 9


async def test_delete_is_405(fhir: httpx.AsyncClient, gateway: str) -> None:
    """DELETE of a record (or conditional delete) is 405: records are never deleted."""
    created = (await _create(fhir, make_ihi(), gateway)).json()
    by_id = await fhir.delete(f"/fhir/Basic/{created['id']}")
    conditional = await fhir.delete("/fhir/Basic", params={"patient": created["subject"]["identifier"]["value"]})
    assert (by_id.status_code, conditional.status_code) == (405, 405)
    assert "DELETE" not in by_id.headers["allow"]
    assert (await fhir.get(f"/fhir/Basic/{created['id']}")).status_code == 200


async def test_search_by_every_patient_parameter(fhir: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """subject:identifier, patient.identifier, patient (IHI or Patient/IHI) and subject find the patient's records."""
    ihi = make_ihi()
    second = make_service_id()
    await server.add_service(second)
    ids = sorted([(await _create(fhir, ihi, gateway)).json()["id"], (await _create(fhir, ihi, second)).json()["id"]])
    await _create(fhir, make_ihi(), gateway)
    for name, value in [
        ("subject:identifier", f"{IHI_SYSTEM}|{ihi}"),
        ("subject:identifier", ihi),
        ("patient.identifier", f"{IHI_SYSTEM}|{ihi}"),
        ("patient", ihi),
        ("patient", f"Patient/{ihi}"),
        ("subject", f"Patient/{ihi}"),
    ]:
        bundle = (await fhir.get("/fhir/Basic", params={name: value})).json()
        assert bundle["type"] == "searchset"
        assert bundle["total"] == 2, (name, value)
        assert sorted(entry_ids(bundle)) == ids, (name, value)
        assert all(entry["search"]["mode"] == "match" for entry in bundle["entry"])
        assert all(entry["fullUrl"].endswith(f"/fhir/Basic/{entry['resource']['id']}") for entry in bundle["entry"])


async def test_search_returns_active_records_unless_asked(
    fhir: httpx.AsyncClient, server: RunningServer, gateway: str
) -> None:
    """A search returns only active records by default; status widens it (comma for several)."""
    ihi = make_ihi()
    removed, archived = make_service_id(), make_service_id()
    await server.add_service(removed)
    await server.add_service(archived)
    await _create(fhir, ihi, gateway)
    await _create(fhir, ihi, removed, status="removed")
    await _create(fhir, ihi, archived, status="archived")

    async def services(**params: str) -> list[str]:
        bundle = (await fhir.get("/fhir/Basic", params={"patient": ihi, **params})).json()
        return sorted(
            extension(e["resource"], "registry-record-service")["valueIdentifier"]["value"]
            for e in bundle.get("entry", [])
        )

    assert await services() == [gateway]
    assert await services(status="removed") == [removed]
    assert await services(status="active,removed,archived") == sorted([gateway, removed, archived])
    assert await services(status=f"{BASE}/CodeSystem/registry-record-status|archived") == [archived]


async def test_search_by_service_and_id(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """service (bare or system|id) narrows to one service's records; _id finds one record."""
    service = make_service_id()
    await server.add_service(service)
    first, second = make_ihi(), make_ihi()
    one = (await _create(fhir, first, service)).json()["id"]
    two = (await _create(fhir, second, service)).json()["id"]
    by_service = (await fhir.get("/fhir/Basic", params={"service": service})).json()
    assert sorted(entry_ids(by_service)) == sorted([one, two])
    both = (await fhir.get("/fhir/Basic", params={"patient": first, "service": f"{SERVICE_SYSTEM}|{service}"})).json()
    assert entry_ids(both) == [one]
    by_id = (await fhir.get("/fhir/Basic", params={"_id": two})).json()
    assert entry_ids(by_id) == [two]
    not_an_id = (await fhir.get("/fhir/Basic", params={"_id": "not-a-record"})).json()
    assert (not_an_id["total"], "entry" in not_an_id) == (0, False)


async def test_contradictory_criteria_match_nothing(fhir: httpx.AsyncClient, gateway: str) -> None:
    """Two patient parameters naming different patients must both hold (AND), so nothing matches."""
    ihi = make_ihi()
    await _create(fhir, ihi, gateway)
    bundle = (await fhir.get("/fhir/Basic", params={"patient": ihi, "subject:identifier": make_ihi()})).json()
    assert bundle["total"] == 0
    alternatives = (await fhir.get("/fhir/Basic", params={"patient": f"{ihi},{make_ihi()}"})).json()
    assert alternatives["total"] == 1


async def test_search_pages_with_links(fhir: httpx.AsyncClient, server: RunningServer) -> None:
    """_count pages a search: total counts every match; next and previous links walk the pages."""
    service = make_service_id()
    await server.add_service(service)
    created = [(await _create(fhir, make_ihi(), service)).json()["id"] for _ in range(5)]
    first = (await fhir.get("/fhir/Basic", params={"service": service, "_count": "2"})).json()
    assert (first["total"], len(first["entry"])) == (5, 2)
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert set(links) == {"self", "next"}
    seen = entry_ids(first)
    page = first
    while "next" in {link["relation"] for link in page["link"]}:
        next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        page = (await fhir.get(next_url)).json()
        seen += entry_ids(page)
    assert sorted(seen) == sorted(created)
    assert {link["relation"] for link in page["link"]} == {"self", "previous"}
    past_end = (await fhir.get("/fhir/Basic", params={"service": service, "_offset": "10"})).json()
    assert (past_end["total"], "entry" in past_end) == (5, False)
    only_total = (await fhir.get("/fhir/Basic", params={"service": service, "_count": "0"})).json()
    assert (only_total["total"], "entry" in only_total) == (5, False)


async def test_count_over_the_maximum_is_capped(fhir: httpx.AsyncClient, server: RunningServer, gateway: str) -> None:
    """A _count above the configured maximum returns at most the maximum (links say which _count was used)."""
    await _create(fhir, make_ihi(), gateway)
    bundle = (await fhir.get("/fhir/Basic", params={"service": gateway, "_count": "999999"})).json()
    assert f"_count={server.settings.fhir.max_count}" in bundle["link"][0]["url"]


async def test_search_must_name_a_patient_service_or_id(fhir: httpx.AsyncClient) -> None:
    """A Basic search with no patient, service or _id is refused (400) rather than scanning every record."""
    response = await fhir.get("/fhir/Basic", params={"status": "active"})
    assert response.status_code == 400
    assert "names a patient" in response.json()["issue"][0]["diagnostics"]


async def test_a_gateway_writes_only_its_own_records_through_fhir(
    gateway_client: GatewayClient, server: RunningServer, anonymous: httpx.AsyncClient
) -> None:
    """A gateway's token creates its own service's record (201); another service's is 403 and nothing is stored."""
    other = make_service_id()
    await server.add_service(other)
    own_ihi, other_ihi = make_ihi(), make_ihi()
    own = await gateway_client.http.post("/fhir/Basic", json=record_body(own_ihi, gateway_client.service_id))
    assert own.status_code == 201
    refused = await gateway_client.http.post("/fhir/Basic", json=record_body(other_ihi, other))
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    conditional = await gateway_client.http.put(
        "/fhir/Basic",
        params={"subject:identifier": f"{IHI_SYSTEM}|{other_ihi}", "service": other},
        json=record_body(other_ihi, other),
    )
    assert conditional.status_code == 403
    no_token = await anonymous.post("/fhir/Basic", json=record_body(other_ihi, other))
    assert no_token.status_code == 401
    conn = await asyncpg.connect(server.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM records WHERE ihi = $1", other_ihi) == 0
    finally:
        await conn.close()
