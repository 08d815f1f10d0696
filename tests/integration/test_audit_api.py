"""``GET /fhir/AuditEvent``: search by patient, agent and date, paging, read, and the audit of reading it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from registry.config import LogSettings, Settings
from schemas.fhir.audit import check_r4b
from tests.audit_ledger import AuditLedger
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server


@dataclass(frozen=True, slots=True)
class Trail:
    """A server with a known history: who asked what about which patient, and when it was recorded."""

    server: RunningServer
    http: httpx.AsyncClient
    ihi: str
    other_ihi: str
    gateway: str
    recorded: dict[str, datetime]
    """Recorded time of each scripted request, by its request ID."""
    order: list[str]
    """Request IDs of the scripted requests, oldest first."""
    agents: dict[str, str]
    """Client IDs of alice, bob and the auditor."""
    headers: dict[str, dict[str, str]]
    """Each client's Authorization header (a real token from the server's issuer)."""
    token_ids: dict[str, str]
    """The jti of each client's token."""

    @property
    def auditor(self) -> dict[str, str]:
        """The auditor's Authorization header."""
        return self.headers["auditor"]


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims: dict[str, Any] = msgspec.json.decode(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
async def trail(template: TestCluster) -> AsyncIterator[Trail]:
    """Two clients write and read two patients' records on a server of their own, then the auditor searches."""
    database_url = await template.new_database()
    settings = Settings(log=LogSettings(access=False))
    async with running_server(settings, database_url, make_service_id()) as server:
        gateway, elsewhere = make_service_id(), make_service_id()
        await server.add_service(gateway)
        await server.add_service(elsewhere)
        ledger = AuditLedger(server.audited)
        ihi, other = make_ihi(), make_ihi()
        agents: dict[str, str] = {}
        headers: dict[str, dict[str, str]] = {}
        token_ids: dict[str, str] = {}
        for name, service, scopes in [
            ("alice", gateway, "system/Basic.cu system/Basic.rs"),
            ("bob", elsewhere, "system/Basic.rs"),
            ("auditor", elsewhere, "system/AuditEvent.rs"),
        ]:
            agents[name], _ = await server.add_client(service, scopes, name=name, external=True)
            token = await server.token(scopes, client_id=agents[name], service_id=service)
            headers[name], token_ids[name] = {"Authorization": f"Bearer {token}"}, _jti(token)
        alice, bob = headers["alice"], headers["bob"]
        async with httpx.AsyncClient(base_url=server.base_url, event_hooks=ledger.hooks(), timeout=30) as http:
            script = [
                await http.put(f"/registry/records/{ihi}/{gateway}", json={}, headers=alice),
                await http.get(f"/registry/records/{ihi}", headers=alice),
                await http.get(f"/registry/records/{other}", headers=alice),
                await http.get(f"/registry/records/{ihi}/history", headers=bob),
                await http.get(f"/registry/records/{ihi}"),
            ]
            order = [r.headers["x-request-id"] for r in script]
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch(
                    "SELECT request_id, recorded FROM audit_events WHERE request_id = ANY($1::text[])", order
                )
            finally:
                await conn.close()
            recorded = {r["request_id"]: r["recorded"] for r in rows}
            yield Trail(server, http, ihi, other, gateway, recorded, order, agents, headers, token_ids)
        await ledger.check(database_url)


async def _search(trail: Trail, **params: Any) -> dict[str, Any]:
    """Search as the auditor, limited to the scripted requests (searches are audited too, and come later)."""
    up_to = _iso(max(trail.recorded.values()))
    dates = params.pop("date", [])
    query = [*params.items(), *(("date", d) for d in [*dates, f"le{up_to}"])]
    response = await trail.http.get("/fhir/AuditEvent", params=query, headers=trail.auditor)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    bundle: dict[str, Any] = response.json()
    check_r4b(bundle)
    return bundle


def _request_ids(bundle: dict[str, Any]) -> list[str]:
    return [
        entity["what"]["identifier"]["value"]
        for entry in bundle["entry"]
        for entity in entry["resource"]["entity"]
        if entity.get("description") == "X-Request-Id of this request"
    ]


async def test_search_by_patient_newest_first(trail: Trail) -> None:
    """patient= (bare IHI or system|value) finds every event about that patient, newest first."""
    put, read, _other, history, anonymous = trail.order
    bare = await _search(trail, patient=trail.ihi)
    token = await _search(trail, patient=f"{IHI_SYSTEM}|{trail.ihi}")
    assert _request_ids(bare) == _request_ids(token) == [anonymous, history, read, put]
    assert _request_ids(await _search(trail, patient=trail.other_ihi)) == [_other]


async def test_search_by_agent(trail: Trail) -> None:
    """agent= finds the events of one client, alone or with a patient; unknown clients find none."""
    put, read, other, history, _anonymous = trail.order
    assert _request_ids(await _search(trail, agent=trail.agents["alice"])) == [other, read, put]
    assert _request_ids(await _search(trail, agent=trail.agents["alice"], patient=trail.ihi)) == [read, put]
    assert _request_ids(await _search(trail, agent=trail.agents["bob"])) == [history]
    assert (await _search(trail, agent="nobody")).get("entry") in (None, [])


async def test_search_by_date(trail: Trail) -> None:
    """date=ge/gt/le/lt bound the recorded time; together they give a window."""
    put, read, other, history, anonymous = trail.order
    middle = trail.recorded[other]
    assert _request_ids(await _search(trail, date=[f"ge{_iso(middle)}"])) == [anonymous, history, other]
    assert _request_ids(await _search(trail, date=[f"gt{_iso(middle)}"])) == [anonymous, history]
    assert _request_ids(await _search(trail, date=[f"lt{_iso(middle)}"])) == [read, put]
    window = [f"ge{_iso(trail.recorded[read])}", f"le{_iso(trail.recorded[history])}"]
    assert _request_ids(await _search(trail, date=window)) == [history, other, read]
    day_before = (trail.recorded[put] - timedelta(days=1)).date().isoformat()
    assert (await _search(trail, date=[day_before], patient=trail.ihi)).get("entry") in (None, [])


async def test_paging_follows_next_links(trail: Trail) -> None:
    """_count pages the results; following `next` links yields every event once, in order, and then stops."""
    first = await _search(trail, _count=2)
    seen = _request_ids(first)
    links = {link["relation"]: link["url"] for link in first["link"]}
    while "next" in links:
        assert links["next"].startswith(trail.server.base_url + "/fhir/AuditEvent?")
        page = (await trail.http.get(links["next"], headers=trail.auditor)).json()
        check_r4b(page)
        assert len(page.get("entry", [])) <= 2
        seen += _request_ids(page)
        links = {link["relation"]: link["url"] for link in page["link"]}
    assert seen == list(reversed(trail.order))


async def test_read_returns_the_event_with_its_agents(trail: Trail) -> None:
    """AuditEvent/{id} returns the resource the search found: alice as requesting client, this server as observer."""
    found = await _search(trail, agent=trail.agents["alice"], patient=trail.other_ihi)
    entry = found["entry"][0]
    response = await trail.http.get(entry["fullUrl"], headers=trail.auditor)
    assert response.status_code == 200
    resource = response.json()
    check_r4b(resource)
    assert resource == entry["resource"]
    client, server = resource["agent"]
    assert (client["who"]["identifier"]["value"], client["altId"], client["policy"]) == (
        trail.agents["alice"],
        trail.gateway,
        [trail.token_ids["alice"]],
    )
    assert server["who"]["identifier"]["value"] == trail.server.service_id
    assert (resource["subtype"][0]["code"], resource["action"], resource["outcome"]) == ("search-type", "E", "0")


async def test_reading_the_audit_is_audited(trail: Trail) -> None:
    """A search by patient leaves its own event: the auditor as agent and the patient searched for as entity."""
    response = await trail.http.get("/fhir/AuditEvent", params={"patient": trail.other_ihi}, headers=trail.auditor)
    rid = response.headers["x-request-id"]
    later = await trail.http.get(
        "/fhir/AuditEvent", params={"agent": trail.agents["auditor"], "patient": trail.other_ihi}, headers=trail.auditor
    )
    assert rid in _request_ids(later.json())
    event = next(e["resource"] for e in later.json()["entry"] if rid in _request_ids({"entry": [e]}))
    patients = [e["what"]["identifier"]["value"] for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    assert patients == [trail.other_ihi]
    query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
    assert query["query"]  # the search as sent, base64


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"patient": "8003600000000000"}, 422),
        ({"patient": "urn:other|8003608166690503"}, 422),
        ({"date": "sa2024"}, 422),
        ({"_count": "0"}, 422),
        ({"_count": "many"}, 422),
        ({"_cursor": "forged"}, 400),
        ({"agent": ["a", "b"]}, 422),
        ({"subject": "x"}, 400),
    ],
)
async def test_bad_search_parameters_are_refused(
    client: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    """Bad IHIs, dates, page sizes, cursors, repeated agents and (strict) unknown parameters get an OperationOutcome."""
    response = await client.get("/fhir/AuditEvent", params=params, headers={"Prefer": "handling=strict"})
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    """An id that is not an AuditEvent (or not a UUID at all) is 404."""
    assert (await client.get("/fhir/AuditEvent/not-a-uuid")).status_code == 404


async def test_a_batch_is_found_by_any_of_its_patients(server: RunningServer, client: httpx.AsyncClient) -> None:
    """A batch's one AuditEvent is found by searching for any patient in it, and lists every patient and record once."""
    gateway, ihis = make_service_id(), sorted(make_ihi() for _ in range(30))
    await server.add_service(gateway)
    batch = await client.post("/registry/records:batch", json=[{"ihi": i, "serviceId": gateway} for i in ihis])
    assert batch.status_code == 200
    found = await client.get("/fhir/AuditEvent", params={"patient": f"{IHI_SYSTEM}|{ihis[17]}", "_count": 1})
    event = found.json()["entry"][0]["resource"]
    check_r4b(event)
    assert event["subtype"][0]["code"] == "batch"
    listed = {e["role"]["code"]: e["detail"][0]["valueString"].split() for e in event["entity"] if "detail" in e}
    assert listed["1"] == ihis  # patients (object-role 1), in the batch's key order
    assert len(set(listed["4"])) == 30  # records (object-role 4): the Basic ids of the batch's records
