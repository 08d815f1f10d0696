"""Federation hops (DESIGN §5) end to end: three registries of ours, each on its own database, and
misbehaving peers, all real HTTP servers; registry A follows referrals with ``follow=true``.

A's limits are lowered so the scenarios stay short: hop limit 2, a 3-second deadline. B and C run
with the defaults. Each test uses IHIs of its own, so the servers are shared by the module.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from registry.config import FederationSettings, Settings
from schemas.types import ServiceStatus, UnresolvedReason
from tests.factories import make_ihi, make_service_id
from tests.federation.network import Network, directory, peer_audit_rows, registries
from tests.federation.peers import GOOD_TOKEN, VALID_PARTIAL_GATEWAY, FakePeers, fake_peers
from tests.pg import TestCluster

A_LIMITS = FederationSettings(hop_limit=2, deadline=3.0, concurrency=8, negative_cache_seconds=60.0)


@pytest.fixture(scope="module")
async def peers() -> AsyncIterator[FakePeers]:
    """The misbehaving peers' server."""
    async with fake_peers() as running:
        yield running


@pytest.fixture(scope="module")
async def net(template: TestCluster, settings: Settings) -> AsyncIterator[Network]:
    """Registries A, B and C, each trusting the others both ways; A with lowered limits."""
    a_settings = msgspec.structs.replace(settings, federation=A_LIMITS)
    async with registries(template, [("A", a_settings), ("B", settings), ("C", settings)]) as network:
        yield network


@pytest.fixture
async def fed(net: Network) -> AsyncIterator[Network]:
    """The network; after the test, every patient-linked request its clients made has one audit row."""
    yield net
    await net.check_audit()


@pytest.fixture(scope="module")
def token_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Bearer token files for the fake peers: the token they take, and one they refuse."""
    folder: Path = tmp_path_factory.mktemp("tokens")
    (folder / "good").write_text(GOOD_TOKEN, encoding="utf-8")
    (folder / "wrong").write_text("a-wrong-token", encoding="utf-8")
    return {"good": str(folder / "good"), "wrong": str(folder / "wrong")}


async def fake_peer(net: Network, peers: FakePeers, behaviour: str, token_file: str, n: int = 0) -> str:
    """Add a fake peer to A's directory (a registry with a bearer token file); return its service ID."""
    service_id = make_service_id()
    await directory(net["A"]).add(
        service_id=service_id, kind="registry", name=f"Fake {behaviour} {n}", base_url=peers.url(behaviour, n),
        bearer_token_file=token_file,
    )  # fmt: skip
    return service_id


async def look_up(net: Network, ihi: str, *, follow: bool = True, request_id: str | None = None) -> dict[str, Any]:
    """A's answer to ``GET /registry/records/{ihi}?follow=…`` (200 expected)."""
    headers = {"X-Request-Id": request_id} if request_id else {}
    async with net.client("A") as http:
        response = await http.get(f"/registry/records/{ihi}", params={"follow": str(follow).lower()}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def unresolved(answer: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """The unresolved registries of an answer: service ID -> (reason, via)."""
    return {u["serviceId"]: (u["reason"], u["via"]) for u in answer["unresolved"]}


def found(answer: dict[str, Any]) -> dict[str, list[str]]:
    """The records of an answer: service ID -> via."""
    return {r["serviceId"]: r["via"] for r in answer["records"]}


async def test_a_record_held_only_at_c_is_found_from_a_with_its_chain(fed: Network) -> None:
    """A→B→C: A follows its referral to B and B's to C, and reports C's gateway as C knows it, via B and C."""
    a, b, c = fed["A"], fed["B"], fed["C"]
    ihi, gateway = make_ihi(), await fed.gateway("C", "Central")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, c.service_id, "registry")
    await fed.put("C", ihi, gateway)
    answer = await look_up(fed, ihi)
    assert answer["unresolved"] == []
    [record] = answer["records"]
    assert (record["serviceId"], record["type"], record["status"]) == (gateway, "record", "active")
    assert record["via"] == [b.service_id, c.service_id]
    assert record["service"] == {
        "kind": "gateway",
        "name": "Central imaging",
        "baseUrl": "https://central.gateway.test/fhir",
        "searchStyle": "ief",
    }
    assert a.service_id not in record["via"]


async def test_follow_false_returns_the_referrals_for_the_consumer_to_follow(fed: Network) -> None:
    """Without follow (or with follow=false) A answers its own records as stored, registry referrals included."""
    b = fed["B"]
    ihi, gateway = make_ihi(), await fed.gateway("A", "Local")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("A", ihi, gateway)
    for answer in (await look_up(fed, ihi, follow=False), await _plain(fed, ihi)):
        assert "unresolved" not in answer
        by_service = {r["serviceId"]: r for r in answer["records"]}
        assert by_service[b.service_id]["type"] == "registry"
        assert by_service[b.service_id]["service"]["kind"] == "registry"
        assert by_service[b.service_id]["service"]["baseUrl"] == b.base_url
        assert by_service[gateway]["type"] == "record"
        assert all("via" not in r for r in answer["records"])


async def _plain(net: Network, ihi: str) -> dict[str, Any]:
    async with net.client("A") as http:
        return (await http.get(f"/registry/records/{ihi}")).json()  # type: ignore[no-any-return]


async def test_a_b_a_loop_is_reported_and_not_followed(fed: Network) -> None:
    """A→B→A: B is asked once, its referral back to A is reported as a loop, B's own record is kept."""
    a, b = fed["A"], fed["B"]
    ihi, gateway, rid = make_ihi(), await fed.gateway("B", "Bay"), uuid.uuid4().hex
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, a.service_id, "registry")
    await fed.put("B", ihi, gateway)
    answer = await look_up(fed, ihi, request_id=rid)
    assert found(answer) == {gateway: [b.service_id]}
    assert unresolved(answer) == {a.service_id: ("loop", [b.service_id])}
    assert await peer_audit_rows(b, rid) == 1


async def test_a_b_c_a_loop_is_reported_and_not_followed(fed: Network) -> None:
    """A→B→C→A: B and C are each asked once and C's referral back to A is a loop; both gateways are kept."""
    a, b, c = fed["A"], fed["B"], fed["C"]
    ihi, rid = make_ihi(), uuid.uuid4().hex
    at_b, at_c = await fed.gateway("B", "Bay"), await fed.gateway("C", "Coast")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, c.service_id, "registry")
    await fed.put("B", ihi, at_b)
    await fed.put("C", ihi, a.service_id, "registry")
    await fed.put("C", ihi, at_c)
    answer = await look_up(fed, ihi, request_id=rid)
    assert found(answer) == {at_b: [b.service_id], at_c: [b.service_id, c.service_id]}
    assert unresolved(answer) == {a.service_id: ("loop", [b.service_id, c.service_id])}
    assert (await peer_audit_rows(b, rid), await peer_audit_rows(c, rid)) == (1, 1)


async def test_a_chain_longer_than_the_hop_limit_stops_at_the_limit(
    fed: Network, peers: FakePeers, token_files: dict[str, str]
) -> None:
    """A→B→C→D with a hop limit of 2: B and C are asked, D (a registry A could ask) is reported as beyond the
    limit and never asked."""
    b, c = fed["B"], fed["C"]
    ihi = make_ihi()
    d = await fake_peer(fed, peers, "empty", token_files["good"])
    await c.add_service(d, kind="registry", name="Registry D", base_url=peers.url("empty"))
    at_c = await fed.gateway("C", "Coast")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, c.service_id, "registry")
    await fed.put("C", ihi, d, "registry")
    await fed.put("C", ihi, at_c)
    answer = await look_up(fed, ihi)
    assert found(answer) == {at_c: [b.service_id, c.service_id]}
    assert unresolved(answer) == {d: ("hop-limit", [b.service_id, c.service_id])}
    assert "hop limit of 2" in answer["unresolved"][0]["detail"]
    assert peers.asked(ihi) == []


async def test_a_hanging_peer_costs_the_deadline_and_no_more(
    fed: Network, peers: FakePeers, token_files: dict[str, str]
) -> None:
    """A peer that never answers: the look-up returns soon after the deadline with the healthy peers' records and
    a timeout for it; the next look-up does not wait for it again (failed-recently)."""
    b = fed["B"]
    hang = await fake_peer(fed, peers, "hang", token_files["good"])
    ihi, gateway = make_ihi(), await fed.gateway("B", "Bay")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("A", ihi, hang, "registry")
    await fed.put("B", ihi, gateway)
    started = time.monotonic()
    answer = await look_up(fed, ihi)
    elapsed = time.monotonic() - started
    assert elapsed < A_LIMITS.deadline + 2.0
    assert found(answer) == {gateway: [b.service_id]}
    assert unresolved(answer) == {hang: ("timeout", [])}
    started = time.monotonic()
    again = await look_up(fed, ihi)
    assert time.monotonic() - started < A_LIMITS.deadline
    assert found(again) == {gateway: [b.service_id]}
    assert unresolved(again) == {hang: ("failed-recently", [])}
    assert "timeout" in again["unresolved"][0]["detail"]
    assert len(peers.asked(ihi)) == 1


async def test_misbehaving_peers_are_reported_never_a_crash(
    fed: Network, peers: FakePeers, token_files: dict[str, str]
) -> None:
    """A 500, a body that is not JSON, a 50 MB body, a refused token, an answer for another IHI: each is an
    unresolved entry with its reason, the healthy peer's record is kept, and A answers 200."""
    b = fed["B"]
    ihi, gateway = make_ihi(), await fed.gateway("B", "Bay")
    expected = {
        await fake_peer(fed, peers, "error", token_files["good"]): "error-response",
        await fake_peer(fed, peers, "garbage", token_files["good"]): "invalid-response",
        await fake_peer(fed, peers, "deep", token_files["good"]): "invalid-response",
        await fake_peer(fed, peers, "huge", token_files["good"]): "too-large",
        await fake_peer(fed, peers, "empty", token_files["wrong"]): "unauthorized",
        await fake_peer(fed, peers, "other-ihi", token_files["good"]): "invalid-response",
    }
    for peer in [b.service_id, *expected]:
        await fed.put("A", ihi, peer, "registry")
    await fed.put("B", ihi, gateway)
    answer = await look_up(fed, ihi)
    assert found(answer) == {gateway: [b.service_id]}
    assert {sid: reason for sid, (reason, _) in unresolved(answer).items()} == expected
    details = {expected[u["serviceId"]]: u["detail"] for u in answer["unresolved"]}
    assert details["error-response"] == "it answered 500"
    assert details["too-large"] == "its answer is over the limit of 1048576 bytes"
    assert details["unauthorized"] == "it refused this registry's token (401)"
    assert "its answer is nested too deep" in [u["detail"] for u in answer["unresolved"]]


async def test_a_peer_that_does_not_admit_us_is_unauthorized(fed: Network) -> None:
    """A registry of ours that has no such client refuses A's token request: reported as unauthorized, without
    echoing the peer's token URL or its answer to the consumer."""
    c = fed["C"]
    stranger = make_service_id()  # C again, under a directory entry with a client ID C never gave out
    await directory(fed["A"]).add(
        service_id=stranger, kind="registry", name="C as a stranger", base_url=c.base_url, client_id="no-such-client"
    )
    ihi = make_ihi()
    await fed.put("A", ihi, stranger, "registry")
    answer = await look_up(fed, ihi)
    [entry] = answer["unresolved"]
    assert (entry["serviceId"], entry["reason"]) == (stranger, "unauthorized")
    assert "refused, HTTP 400" in entry["detail"]
    assert "invalid_client" not in entry["detail"]
    assert "/auth/token" not in entry["detail"]


async def test_invalid_records_of_a_peer_are_dropped_and_reported(
    fed: Network, peers: FakePeers, token_files: dict[str, str]
) -> None:
    """A peer's valid record is kept (unknown fields tolerated); its invalid records are dropped and counted."""
    partial = await fake_peer(fed, peers, "partial", token_files["good"])
    ihi = make_ihi()
    await fed.put("A", ihi, partial, "registry")
    answer = await look_up(fed, ihi)
    assert found(answer) == {VALID_PARTIAL_GATEWAY: [partial]}
    [entry] = answer["unresolved"]
    assert (entry["serviceId"], entry["reason"]) == (partial, "invalid-response")
    assert entry["detail"].startswith("4 of its records were dropped")


async def test_a_fan_of_50_referrals_is_held_to_the_budget(
    fed: Network, peers: FakePeers, token_files: dict[str, str]
) -> None:
    """50 referrals: exactly the budget (32) are asked, never more than the concurrency at once, the rest reported."""
    fan = [await fake_peer(fed, peers, "empty", token_files["good"], n) for n in range(50)]
    ihi, rid = make_ihi(), uuid.uuid4().hex
    async with fed.client("A") as http:
        batch = [{"ihi": ihi, "serviceId": sid, "type": "registry"} for sid in fan]
        assert (await http.post("/registry/records:batch", json=batch)).json()["errors"] == 0
    answer = await look_up(fed, ihi, request_id=rid)
    asked = peers.asked(ihi)
    assert len(asked) == 32
    assert {seen.request_id for seen in asked} == {rid}
    assert 1 < peers.most_in_flight[ihi] <= A_LIMITS.concurrency
    assert [u["reason"] for u in answer["unresolved"]] == ["budget"] * 18
    assert len({u["serviceId"] for u in answer["unresolved"]} & set(fan)) == 18


async def test_referrals_this_registry_cannot_follow_are_not_members(fed: Network) -> None:
    """A referral to a registry A does not know, or to a service A knows as a gateway (its kind changed after the
    record was written), is reported as not-a-member; one to a disabled registry is not routed, so it is not named."""
    a, b = fed["A"], fed["B"]
    ihi = make_ihi()
    unknown_to_a = make_service_id()
    await b.add_service(unknown_to_a, kind="registry", name="Known to B only", base_url="https://elsewhere.test")
    disabled, now_gateway = make_service_id(), make_service_id()
    await a.add_service(disabled, kind="registry", name="Disabled", base_url="https://disabled.test")
    await a.add_service(now_gateway, kind="registry", name="Local", base_url="https://local.test")
    await fed.put("A", ihi, disabled, "registry")
    await directory(a).set_status(disabled, ServiceStatus.DISABLED)
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("A", ihi, now_gateway, "registry")
    await directory(a).add(service_id=now_gateway, kind="gateway", name="Local", base_url="https://local.test")
    await fed.put("B", ihi, unknown_to_a, "registry")
    answer = await look_up(fed, ihi)
    assert unresolved(answer) == {
        now_gateway: ("not-a-member", []),
        unknown_to_a: ("not-a-member", [b.service_id]),
    }
    details = {u["serviceId"]: u["detail"] for u in answer["unresolved"]}
    assert "not in this registry's services directory" in details[unknown_to_a]
    assert "gateway" in details[now_gateway]
    assert disabled not in str(answer)


async def test_results_are_deduplicated_by_service_keeping_the_shortest_chain(fed: Network) -> None:
    """A gateway known at A, B and C is reported once, as A's own; one known at B and C, once, through B."""
    b, c = fed["B"], fed["C"]
    ihi, rid = make_ihi(), uuid.uuid4().hex
    everywhere, shared = make_service_id(), make_service_id()
    for name in ("A", "B", "C"):
        await fed[name].add_service(everywhere, name=f"Everywhere at {name}")
    for name in ("B", "C"):
        await fed[name].add_service(shared, name=f"Shared at {name}")
        await fed.put(name, ihi, shared)
    for name in ("A", "B", "C"):
        await fed.put(name, ihi, everywhere)
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("A", ihi, c.service_id, "registry")
    await fed.put("B", ihi, c.service_id, "registry")  # a diamond: C is reached from A directly too
    answer = await look_up(fed, ihi, request_id=rid)
    assert answer["unresolved"] == []
    assert found(answer)[everywhere] == []
    assert [r["service"]["name"] for r in answer["records"] if r["serviceId"] == everywhere] == ["Everywhere at A"]
    assert found(answer)[shared] in ([b.service_id], [c.service_id])
    assert await peer_audit_rows(c, rid) == 1


async def test_both_audit_trails_show_the_same_request_id(fed: Network) -> None:
    """One look-up: A's AuditEvent carries its request ID, and B's and C's carry it as the IEF-Request-Id."""
    b, c = fed["B"], fed["C"]
    ihi, rid = make_ihi(), uuid.uuid4().hex
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, c.service_id, "registry")
    await look_up(fed, ihi, request_id=rid)
    ids_at: dict[str, list[list[str]]] = {}
    for name in ("A", "B", "C"):
        async with fed.client(name) as http:
            bundle = (await http.get("/fhir/AuditEvent", params={"patient": ihi})).json()
        ids_at[name] = [_request_ids(entry["resource"]) for entry in bundle.get("entry", [])]
    assert [rid] in ids_at["A"]
    for name in ("B", "C"):
        asked_by_a = [ids for ids in ids_at[name] if len(ids) == 2]
        assert [ids[1] for ids in asked_by_a] == [rid], name


def _request_ids(event: dict[str, Any]) -> list[str]:
    """The request IDs an AuditEvent names: its own X-Request-Id, then a calling peer's IEF-Request-Id."""
    return [
        entity["what"]["identifier"]["value"]
        for entity in event.get("entity", [])
        if entity.get("type", {}).get("code") == "XrequestId"
    ]


async def test_locate_answers_endpoints_with_chains_and_an_outcome(fed: Network) -> None:
    """$locate: a searchset of the gateways' Endpoints (local with a fullUrl, remote with the chain) and one
    OperationOutcome entry naming the loop it did not follow; with follow=false, this registry's gateways and the
    registries it refers to, as Endpoints."""
    a, b = fed["A"], fed["B"]
    ihi = make_ihi()
    local, remote = await fed.gateway("A", "Local"), await fed.gateway("B", "Bay")
    await fed.put("A", ihi, local)
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, remote)
    await fed.put("B", ihi, a.service_id, "registry")
    async with fed.client("A") as http:
        response = await http.get(
            "/fhir/Patient/$locate", params={"identifier": f"http://ns.electronichealth.net.au/id/hi/ihi/1.0|{ihi}"}
        )
        local_only = (await http.get("/fhir/Patient/$locate", params={"identifier": ihi, "follow": "false"})).json()
    assert response.status_code == 200
    bundle = response.json()
    assert (bundle["type"], bundle["total"]) == ("searchset", 2)
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    outcomes = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    endpoints = {e["resource"]["id"]: e for e in matches}
    assert endpoints[local]["fullUrl"] == f"{a.base_url}/fhir/Endpoint/{local}"
    assert endpoints[local]["resource"]["address"] == "https://local.gateway.test/fhir"
    assert "fullUrl" not in endpoints[remote]
    chain = next(x for x in endpoints[remote]["resource"]["extension"] if x["url"].endswith("/locate-chain"))
    assert [part["valueIdentifier"]["value"] for part in chain["extension"]] == [b.service_id]
    [outcome] = outcomes
    [issue] = outcome["resource"]["issue"]
    assert (issue["severity"], issue["code"]) == ("warning", "business-rule")
    assert issue["details"]["coding"][0]["code"] == str(UnresolvedReason.LOOP)
    assert issue["details"]["text"] == a.service_id
    assert a.service_id in issue["diagnostics"]
    referred = {e["resource"]["id"]: e["resource"] for e in local_only["entry"]}
    assert sorted(referred) == sorted([local, b.service_id])  # follow=false: the referral as a registry Endpoint
    assert referred[b.service_id]["address"] == f"{b.base_url}/fhir"
    assert referred[b.service_id]["payloadType"][0]["coding"][0]["code"] == "Basic"


async def test_locate_refuses_what_it_cannot_answer(fed: Network) -> None:
    """$locate without a patient is 400, with a bad IHI 422, with a follow that is not a boolean 422."""
    ihi = make_ihi()
    async with fed.client("A") as http:
        missing = await http.get("/fhir/Patient/$locate")
        bad_ihi = await http.get("/fhir/Patient/$locate", params={"identifier": ihi[:-1] + "x"})
        bad_follow = await http.get("/fhir/Patient/$locate", params={"identifier": ihi, "follow": "maybe"})
    assert (missing.status_code, bad_ihi.status_code, bad_follow.status_code) == (400, 422, 422)
    assert missing.json()["issue"][0]["expression"] == ["identifier"]


async def test_a_peer_withholds_what_its_patient_opted_out_of_and_the_answer_says_so(fed: Network) -> None:
    """B withholds from A what the patient opted out of at B (deciding on the consumer's purpose, which A sends
    on); A answers with nothing and ``withheld`` rather than a plain empty list."""
    b = fed["B"]
    ihi, gateway = make_ihi(), await fed.gateway("B", "Bayside")
    await fed.put("A", ihi, b.service_id, "registry")
    await fed.put("B", ihi, gateway)
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": "http://ns.electronichealth.net.au/id/hi/ihi/1.0", "value": ihi}},
        "policyRule": {"text": "opt-out"},
        "provision": {"type": "deny"},
    }
    async with fed.client("B") as http:
        assert (await http.post("/fhir/Consent", json=consent)).status_code == 201
    async with fed.client("A") as http:
        answer = await http.get(
            f"/registry/records/{ihi}", params={"follow": "true"}, headers={"IEF-Purpose-Of-Use": "TREAT"}
        )
    assert (answer.json()["records"], answer.json()["withheld"]) == ([], True)
    rows = await b.count(
        "SELECT count(*) FROM audit_events WHERE peer_request_id = $1 AND purpose_of_use = 'TREAT' AND withheld = 1",
        answer.headers["x-request-id"],
    )
    assert rows == 1
