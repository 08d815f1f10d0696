"""Record lifecycle rules on real HTTP and a real PostgreSQL (DESIGN §11): operator decisions stick, retries are
harmless with Idempotency-Key, a record's type matches its service's kind, history names the actor, and a disabled
service is routed nowhere."""

from __future__ import annotations

import asyncpg
import httpx

from schemas.types import ServiceStatus
from tests.conftest import GatewayClient
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.federation.network import directory as members
from tests.fhir import record_body
from tests.server import RunningServer

BATCH = "/registry/records:batch"


def _code(response: httpx.Response) -> str:
    return str(response.json()["issue"][0]["details"]["coding"][0]["code"])


async def test_a_gateway_cannot_undo_the_operators_removal(
    client: httpx.AsyncClient, gateway_client: GatewayClient, server: RunningServer
) -> None:
    """After the operator's removal (with a reason), the gateway's PUT and batch item are 409 operator-decision, the
    record is unchanged and the refusal is audited; the operator lifts it."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    url = f"/registry/records/{ihi}/{gateway}"
    assert (await gateway_client.http.put(url, json={})).status_code == 201
    removed = await client.put(url, json={"status": "removed", "reason": "entered-in-error"})
    assert removed.status_code == 200
    refused = await gateway_client.http.put(url, json={"status": "active"})
    assert refused.status_code == 409
    assert _code(refused) == "operator-decision"
    assert "removed (entered-in-error)" in refused.json()["issue"][0]["diagnostics"]
    batch = await gateway_client.http.post(BATCH, json=[{"ihi": ihi, "serviceId": gateway}])
    assert batch.json()["results"][0]["code"] == "operator-decision"
    stored = (await client.get(f"/registry/records/{ihi}", params={"status": "removed"})).json()["records"]
    assert [(r["status"], r["lastUpdated"]) for r in stored] == [("removed", removed.json()["lastUpdated"])]
    audited = await server.count(
        "SELECT count(*) FROM audit_events WHERE $1 = ANY(patients) AND status = 409 AND client_id = $2",
        ihi, gateway_client.client_id,
    )  # fmt: skip
    assert audited == 1
    assert (await client.put(url, json={"status": "active"})).status_code == 200
    assert (await gateway_client.http.put(url, json={"status": "removed"})).status_code == 200
    assert (await gateway_client.http.put(url, json={"status": "active"})).status_code == 200  # its own removal


async def test_history_names_the_actor(client: httpx.AsyncClient, gateway_client: GatewayClient) -> None:
    """Each history entry names the client, its bound service and whether it acted as the operator."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    await gateway_client.http.put(f"/registry/records/{ihi}/{gateway}", json={})
    await client.put(f"/registry/records/{ihi}/{gateway}", json={"status": "archived", "reason": "legal-hold"})
    history = (await client.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert [(e["change"], e["actor"]["clientId"], e["actor"]["admin"], e.get("reason")) for e in history] == [
        ("created", gateway_client.client_id, False, None),
        ("status-changed", "operator", True, "legal-hold"),
    ]
    assert history[0]["actor"]["serviceId"] == gateway


async def test_idempotency_key_with_another_request_is_422(gateway_client: GatewayClient) -> None:
    """The same key with another body is refused (422 idempotency-key-reused); nothing is written."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    url = f"/registry/records/{ihi}/{gateway}"
    key = {"Idempotency-Key": '"k-1"'}
    assert (await gateway_client.http.put(url, json={}, headers=key)).status_code == 201
    other = await gateway_client.http.put(url, json={"status": "removed"}, headers=key)
    assert other.status_code == 422
    assert _code(other) == "idempotency-key-reused"
    history = (await gateway_client.http.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert len(history) == 1
    bad = await gateway_client.http.put(url, json={}, headers={"Idempotency-Key": ""})
    assert bad.status_code == 400


async def test_a_duplicate_in_flight_is_409(gateway_client: GatewayClient, server: RunningServer) -> None:
    """While a request with the key is in flight (its lock held), a duplicate is 409 idempotency-in-progress."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    conn = await asyncpg.connect(server.database_url)
    try:
        await conn.execute(
            "SELECT pg_advisory_lock(hashtextextended($1 || chr(31) || $2, 20960014))", gateway_client.client_id, "k"
        )
        busy = await gateway_client.http.put(
            f"/registry/records/{ihi}/{gateway}", json={}, headers={"Idempotency-Key": '"k"'}
        )
    finally:
        await conn.close()
    assert busy.status_code == 409
    assert _code(busy) == "idempotency-in-progress"


async def test_batch_items_with_idempotency_keys_replay(gateway_client: GatewayClient) -> None:
    """A batch item whose idempotencyKey was accepted answers its first result again (replayed) and writes nothing;
    an item without one is registered again; a key reused for another item is refused."""
    gateway = gateway_client.service_id
    ihis = [make_ihi(), make_ihi()]
    items = [
        {"ihi": ihis[0], "serviceId": gateway, "idempotencyKey": "a"},
        {"ihi": ihis[1], "serviceId": gateway},
    ]
    first = (await gateway_client.http.post(BATCH, json=items)).json()
    again = (await gateway_client.http.post(BATCH, json=items)).json()
    assert [r["result"] for r in first["results"]] == ["created", "created"]
    assert [(r["result"], r.get("replayed", False)) for r in again["results"]] == [
        ("created", True),
        ("registered", False),
    ]
    assert again["results"][0]["lastUpdated"] == first["results"][0]["lastUpdated"]
    reused = (
        await gateway_client.http.post(BATCH, json=[{"ihi": ihis[1], "serviceId": gateway, "idempotencyKey": "a"}])
    ).json()
    assert reused["results"][0]["code"] == "idempotency-key-reused"
    history = (await gateway_client.http.get(f"/registry/records/{ihis[0]}/history")).json()["history"]
    assert len(history) == 1


async def test_fhir_create_with_an_idempotency_key_replays(fhir: httpx.AsyncClient, gateway: str) -> None:
    """A FHIR create carrying an Idempotency-Key answers its first answer (201 and the same resource) again."""
    ihi = make_ihi()
    key = {"Idempotency-Key": '"fhir-1"'}
    first = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway), headers=key)
    again = await fhir.post("/fhir/Basic", json=record_body(ihi, gateway), headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content


async def test_type_must_match_the_services_kind(
    client: httpx.AsyncClient, gateway: str, server: RunningServer
) -> None:
    """A registry record naming a gateway, or a record naming a registry, is 422 type-mismatch (batch: per item)."""
    ihi, registry = make_ihi(), make_service_id()
    await server.add_service(registry, kind="registry", base_url="https://registry.test")
    wrong_gateway = await client.put(f"/registry/records/{ihi}/{gateway}", json={"type": "registry"})
    wrong_registry = await client.put(f"/registry/records/{ihi}/{registry}", json={"type": "record"})
    assert (wrong_gateway.status_code, wrong_registry.status_code) == (422, 422)
    assert {_code(wrong_gateway), _code(wrong_registry)} == {"type-mismatch"}
    batch = await client.post(BATCH, json=[{"ihi": ihi, "serviceId": registry}, {"ihi": ihi, "serviceId": gateway}])
    assert [(r["result"], r.get("code")) for r in batch.json()["results"]] == [
        ("error", "type-mismatch"),
        ("created", None),
    ]
    assert (await client.put(f"/registry/records/{ihi}/{registry}", json={"type": "registry"})).status_code == 201


async def test_a_disabled_service_is_routed_nowhere(
    client: httpx.AsyncClient, gateway_client: GatewayClient, server: RunningServer
) -> None:
    """After disabling X: look-ups, follow=true, $locate and Basic search leave X out; only the operator with
    `status` widened sees its record, marked serviceStatus disabled; X's Endpoint reads off, read or searched, and
    its Organization is not active (the broker: tests/broker/test_fan_out.py)."""
    ihi, kept = make_ihi(), make_service_id()
    x = gateway_client.service_id
    await server.add_service(kept)
    await client.put(f"/registry/records/{ihi}/{kept}", json={})
    await gateway_client.http.put(f"/registry/records/{ihi}/{x}", json={})
    directory = members(server)
    await directory.set_status(x, ServiceStatus.DISABLED)
    looked_up = [
        await client.get(f"/registry/records/{ihi}"),
        await client.get(f"/registry/records/{ihi}", params={"follow": "true"}),
        await client.get("/fhir/Patient/$locate", params={"identifier": f"{IHI_SYSTEM}|{ihi}"}),
        await client.get("/fhir/Basic", params={"patient": ihi}),
        await gateway_client.http.get(f"/registry/records/{ihi}", params={"status": "active"}),
    ]
    for answer in looked_up:
        assert answer.status_code == 200
        assert kept in answer.text
        assert x not in answer.text
    widened = (await client.get(f"/registry/records/{ihi}", params={"status": "active"})).json()["records"]
    assert {r["serviceId"]: r.get("serviceStatus") for r in widened} == {kept: None, x: "disabled"}
    endpoint = (await client.get(f"/fhir/Endpoint/{x}")).json()
    assert endpoint["status"] == "off"
    searched = (await client.get("/fhir/Endpoint", params={"_id": x})).json()
    organization = (await client.get(f"/fhir/Organization/{x}")).json()
    assert [e["resource"]["status"] for e in searched["entry"]] == ["off"]
    assert organization["active"] is False


async def test_history_and_audit_events_name_the_same_actors(
    client: httpx.AsyncClient, gateway_client: GatewayClient
) -> None:
    """For each write, `GET …/history` and the write's AuditEvent name the same client and bound service."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    url = f"/registry/records/{ihi}/{gateway}"
    await gateway_client.http.put(url, json={})
    await gateway_client.http.put(url, json={})
    await client.put(url, json={"status": "removed", "reason": "withdrawn"})
    history = (await client.get(f"{url.rsplit('/', 1)[0]}/history")).json()["history"]
    found = (await client.get("/fhir/AuditEvent", params={"patient": ihi, "_count": "50"})).json()
    writes = [e["resource"] for e in found.get("entry", []) if e["resource"]["action"] in ("C", "U")]
    audited = sorted((a["agent"][0]["who"]["identifier"]["value"], a["agent"][0].get("altId")) for a in writes)
    historied = sorted((e["actor"]["clientId"], e["actor"]["serviceId"]) for e in history)
    assert len(historied) == 3
    assert audited == historied


async def test_fhir_history_names_the_changes_and_actors_of_the_native_history(
    client: httpx.AsyncClient, gateway_client: GatewayClient
) -> None:
    """Basic/{id}/_history, its vreads and `GET …/history` name the same versions, changes, actors and reason."""
    ihi, gateway = make_ihi(), gateway_client.service_id
    url = f"/registry/records/{ihi}/{gateway}"
    await gateway_client.http.put(url, json={})
    await gateway_client.http.put(url, json={})  # re-registered: a version of its own
    await client.put(url, json={"status": "removed", "reason": "withdrawn"})
    native = (await client.get(f"/registry/records/{ihi}/history")).json()["history"]
    record_id = native[0]["recordId"]
    bundle = (await client.get(f"/fhir/Basic/{record_id}/_history")).json()

    def ext(element: dict[str, object], name: str) -> dict[str, object]:
        found = [e for e in element.get("extension", []) if e["url"].endswith(f"/{name}")]  # type: ignore[attr-defined]
        assert len(found) == 1, (name, element)
        return found[0]  # type: ignore[no-any-return]

    fhir_rows = []
    for entry in reversed(bundle["entry"]):
        parts = {p["url"]: p for p in ext(entry, "registration-actor")["extension"]}  # type: ignore[attr-defined]
        fhir_rows.append(
            (
                int(entry["resource"]["meta"]["versionId"]),
                ext(entry, "registration-change")["valueCode"],
                parts["client"]["valueString"],
                parts["service"]["valueIdentifier"]["value"],
                parts["admin"]["valueBoolean"],
            )
        )
    native_rows = [
        (e["version"], e["change"], e["actor"]["clientId"], e["actor"]["serviceId"], e["actor"]["admin"])
        for e in native
    ]
    assert [row[1] for row in native_rows] == ["created", "registered", "status-changed"]
    assert fhir_rows == native_rows
    removal = (await client.get(f"/fhir/Basic/{record_id}/_history/3")).json()
    assert ext(removal, "registry-record-reason")["valueString"] == "withdrawn"
    assert ext(bundle["entry"][0]["resource"], "registry-record-reason")["valueString"] == "withdrawn"
    assert not [e for e in bundle["entry"][-1]["resource"]["extension"] if e["url"].endswith("/registry-record-reason")]


async def test_batch_items_keep_the_operators_decisions_and_the_routing_rule(
    client: httpx.AsyncClient, gateway_client: GatewayClient, server: RunningServer
) -> None:
    """Through the batch path: the operator's removal (with a reason) is held, a gateway's item that would undo it
    is operator-decision beside a stored item, nothing of it is stored and its batch's audit row records the failure;
    items naming a disabled or retired service are unknown-service, even the operator's; history names the actors."""
    ihi, fresh, gateway = make_ihi(), make_ihi(), gateway_client.service_id
    disabled, retired = make_service_id(), make_service_id()
    for service_id in (disabled, retired):
        await server.add_service(service_id)
    assert (await gateway_client.http.post(BATCH, json=[{"ihi": ihi, "serviceId": gateway}])).status_code == 200
    removal = [{"ihi": ihi, "serviceId": gateway, "status": "removed", "reason": "entered-in-error"}]
    removed = (await client.post(BATCH, json=removal)).json()["results"][0]
    assert removed["result"] == "updated"
    refused = await gateway_client.http.post(
        BATCH, json=[{"ihi": ihi, "serviceId": gateway}, {"ihi": fresh, "serviceId": gateway}]
    )
    assert [(r["result"], r.get("code")) for r in refused.json()["results"]] == [
        ("error", "operator-decision"),
        ("created", None),
    ]
    assert "removed (entered-in-error)" in refused.json()["results"][0]["error"]
    stored = (await client.get(f"/registry/records/{ihi}", params={"status": "removed"})).json()["records"]
    assert [(r["status"], r["lastUpdated"]) for r in stored] == [("removed", removed["lastUpdated"])]
    failed = await server.count(
        "SELECT count(*) FROM audit_events WHERE $1 = ANY(patients) AND client_id = $2 AND path = $3 AND outcome <> 0",
        ihi, gateway_client.client_id, BATCH,
    )  # fmt: skip
    assert failed == 1
    directory = members(server)
    await directory.set_status(disabled, ServiceStatus.DISABLED)
    await directory.set_status(retired, ServiceStatus.RETIRED)
    unrouted = (await client.post(BATCH, json=[{"ihi": ihi, "serviceId": s} for s in (disabled, retired)])).json()
    assert [(r["result"], r.get("code")) for r in unrouted["results"]] == [("error", "unknown-service")] * 2
    assert (
        await server.count("SELECT count(*) FROM records WHERE service_id = ANY($1::text[])", [disabled, retired]) == 0
    )
    history = (await client.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert [(e["change"], e["actor"]["clientId"], e["actor"]["admin"], e.get("reason")) for e in history] == [
        ("created", gateway_client.client_id, False, None),
        ("status-changed", "operator", True, "entered-in-error"),
    ]
