"""DESIGN §6 end to end: one search, the patient's real gateways asked, one merged searchset Bundle."""

from __future__ import annotations

import asyncpg
import msgspec

from tests.broker.conftest import Broker, gateway_token
from tests.broker.results import issues, matches, new_uid, sources, uids
from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.gateway import ReferenceGateway, reference_gateway


async def test_three_overlapping_gateways_give_one_merged_bundle(broker: Broker) -> None:
    """Studies held by several gateways appear once, newest first, at absolute URLs, naming every source."""
    ihi = make_ihi()
    shared, only_a, only_c = new_uid(), new_uid(), new_uid()
    async with (
        reference_gateway(token=gateway_token()) as a,
        reference_gateway(token=gateway_token()) as b,
        reference_gateway(token=gateway_token()) as c,
    ):
        a.study(ihi, shared, started="2024-05-01T08:00:00Z")
        a.study(ihi, only_a, started="2023-01-15")
        b.study(ihi, shared, started="2024-05-01T08:00:00Z")
        c.study(ihi, shared, started="2024-05-01T08:00:00Z")
        c.study(ihi, only_c, started="2025-02-03T10:00:00+10:00")
        ids = {name: await broker.join(gw, ihi) for name, gw in (("a", a), ("b", b), ("c", c))}
        response = await broker.search(ihi)
    assert response.status_code == 200
    bundle = response.json()
    assert (bundle["type"], bundle["total"]) == ("searchset", 3)
    assert uids(bundle) == [only_c, shared, only_a]
    assert issues(bundle) == {}
    by_uid = dict(zip(uids(bundle), matches(bundle), strict=True))
    merged = by_uid[shared]
    first = min(ids.values())  # the records (and so the gateways) are asked in service ID order
    holder = {ids["a"]: a, ids["b"]: b, ids["c"]: c}[first]
    assert merged["fullUrl"] == f"{holder.base_url}/ImagingStudy/{merged['resource']['id']}"
    assert merged["resource"]["meta"]["source"] == holder.base_url
    assert sources(merged) == sorted(ids.values())
    assert sources(by_uid[only_a]) == [ids["a"]]
    assert by_uid[only_c]["fullUrl"].startswith(c.base_url + "/ImagingStudy/")
    endpoint = by_uid[only_c]["resource"]["contained"][0]
    assert endpoint["address"] == f"{c.base_url}/dicomweb/studies/{only_c}"


async def test_gateways_get_the_brokers_credentials_never_the_consumers(broker: Broker) -> None:
    """Each gateway receives its own bearer token and the IEF-style query; the consumer's token goes nowhere."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as a, reference_gateway(token=gateway_token()) as b:
        a.study(ihi, new_uid())
        b.study(ihi, new_uid())
        await broker.join(a, ihi)
        await broker.join(b, ihi)
        response = await broker.search(ihi, headers={"X-Request-Id": "consumer-request-1"})
    assert response.status_code == 200
    assert len(matches(response.json())) == 2
    consumer_token = broker.consumer.headers["authorization"]
    for gateway in (a, b):
        (seen,) = gateway.seen
        assert seen.authorization == f"Bearer {gateway.token}"
        assert seen.authorization != consumer_token
        assert seen.path == "/fhir/ImagingStudy"
        assert seen.query == [("patient.identifier", f"{IHI_SYSTEM}|{ihi}")]
        assert seen.request_id == "consumer-request-1"


async def test_private_key_jwt_gateway(broker: Broker) -> None:
    """A gateway that gave the broker a client ID is asked with a token from its own token endpoint
    (private_key_jwt, signed with the broker's outbound key); the token is reused on the next search."""
    ihi = make_ihi()
    uid = new_uid()
    gateway = ReferenceGateway(
        client_id="broker-at-gateway", jwks_url=f"{broker.server.base_url}/.well-known/jwks.json"
    )
    async with reference_gateway(gateway):
        gateway.study(ihi, uid)
        await broker.join(gateway, ihi)
        first = await broker.search(ihi)
        second = await broker.search(ihi)
    assert uids(first.json()) == uids(second.json()) == [uid]
    assert gateway.token_requests == 1
    assert len({seen.authorization for seen in gateway.seen}) == 1


async def test_harmony_and_ief_gateways_both_contribute(broker: Broker) -> None:
    """A Harmony-style gateway is asked with patient=<IHI>; its inline endpoints become contained Endpoints
    with absolute addresses, and a study both styles hold is merged by its Study Instance UID."""
    ihi = make_ihi()
    shared, harmony_only, ief_only = new_uid(), new_uid(), new_uid()
    async with (
        reference_gateway(style="harmony", token=gateway_token()) as harmony,
        reference_gateway(style="ief", token=gateway_token()) as ief,
    ):
        harmony.study(ihi, shared, started="2024-06-01")
        harmony.study(ihi, harmony_only, started="2024-07-01")
        ief.study(ihi, shared, started="2024-06-01")
        ief.study(ihi, ief_only, started="2024-08-01")
        harmony_id = await broker.join(harmony, ihi)
        ief_id = await broker.join(ief, ihi)
        response = await broker.search(ihi)
    bundle = response.json()
    assert uids(bundle) == [ief_only, harmony_only, shared]
    assert harmony.seen[0].query == [("patient", ihi)]
    entry = dict(zip(uids(bundle), matches(bundle), strict=True))[harmony_only]
    study = entry["resource"]
    assert entry["fullUrl"] == f"{harmony.base_url}/ImagingStudy/{harmony_only}"
    (endpoint,) = study["contained"]
    assert endpoint["resourceType"] == "Endpoint"
    assert study["endpoint"] == [{"reference": f"#{endpoint['id']}"}]
    origin = harmony.base_url.removesuffix("/fhir")
    assert endpoint["address"] == f"{origin}/api/jmix?studyInstanceUid={harmony_only}"
    merged = dict(zip(uids(bundle), matches(bundle), strict=True))[shared]
    assert sorted(sources(merged)) == sorted([harmony_id, ief_id])


async def test_filters_and_count_are_passed_on_in_each_style(broker: Broker) -> None:
    """modality, started and _count reach IEF gateways; Harmony gets modality only, and the broker applies
    started to its answer itself."""
    ihi = make_ihi()
    old, new = new_uid(), new_uid()
    async with (
        reference_gateway(style="harmony", token=gateway_token()) as harmony,
        reference_gateway(token=gateway_token()) as ief,
    ):
        harmony.study(ihi, old, started="2020-01-01", modality="MR")
        harmony.study(ihi, new, started="2024-01-01", modality="MR")
        await broker.join(harmony, ihi)
        await broker.join(ief, ihi)
        response = await broker.search(ihi, modality="MR,CT", started="ge2023-06-01", _count="5")
    assert response.status_code == 200
    assert uids(response.json()) == [new]
    sent = ief.seen[0].query
    assert ("modality", "MR,CT") in sent
    assert ("started", "ge2023-06-01") in sent
    assert ("_count", "5") in sent
    assert harmony.seen[0].query == [("patient", ihi), ("modality", "MR,CT")]


async def test_document_references_are_merged_by_master_identifier(broker: Broker) -> None:
    """DocumentReference searches fan out too: one entry per master identifier, attachment URLs absolute."""
    ihi = make_ihi()
    report, other = new_uid(), new_uid()
    async with reference_gateway(token=gateway_token()) as a, reference_gateway(token=gateway_token()) as b:
        a.document(ihi, report, date="2024-03-02T10:00:00Z")
        b.document(ihi, report, date="2024-03-02T10:00:00Z")
        b.document(ihi, other, date="2024-04-02T10:00:00+10:00")
        await broker.join(a, ihi)
        await broker.join(b, ihi)
        response = await broker.search(ihi, "DocumentReference", date="ge2024")
    bundle = response.json()
    assert bundle["total"] == 2
    masters = [e["resource"]["masterIdentifier"]["value"] for e in matches(bundle)]
    assert masters == [f"urn:oid:{other}", f"urn:oid:{report}"]
    for entry in matches(bundle):
        url = entry["resource"]["content"][0]["attachment"]["url"]
        assert url == entry["fullUrl"].replace("/DocumentReference/", "/Binary/")
    assert a.seen[0].path == "/fhir/DocumentReference"
    assert ("date", "ge2024") in a.seen[0].query


async def test_pages_come_from_one_kept_result(broker: Broker) -> None:
    """_count caps each gateway's answer (a gateway holding more is reported incomplete) and pages the merged
    result; the next link carries a token, and later pages ask no gateway again."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as a, reference_gateway(token=gateway_token()) as b:
        for year in range(2015, 2020):
            a.study(ihi, new_uid(), started=str(year))
            b.study(ihi, new_uid(), started=f"{year}-07")
        a_id = await broker.join(a, ihi)
        b_id = await broker.join(b, ihi)
        first = (await broker.search(ihi, _count="3")).json()
        pages = [first]
        while next_link := next((link["url"] for link in pages[-1]["link"] if link["relation"] == "next"), None):
            pages.append((await broker.consumer.get(next_link)).json())
        asked = (a.searches, b.searches)
    assert first["total"] == 6
    assert [len(matches(page)) for page in pages] == [3, 3]
    everything = [uid for page in pages for uid in uids(page)]
    assert len(set(everything)) == 6
    started = [e["resource"]["started"] for page in pages for e in matches(page)]
    assert started == sorted(started, reverse=True)
    assert asked == (1, 1)
    assert "_page_token=" in pages[1]["link"][0]["url"]
    assert issues(pages[1]) == {a_id: ["incomplete"], b_id: ["incomplete"]}
    previous = next(link["url"] for link in pages[1]["link"] if link["relation"] == "previous")
    assert uids((await broker.consumer.get(previous)).json()) == uids(first)


async def test_count_zero_gives_the_total_only(broker: Broker) -> None:
    """_count=0 answers the merged total without entries; gateways are asked for everything (no _count=0)."""
    ihi = make_ihi()
    shared = new_uid()
    async with reference_gateway(token=gateway_token()) as a, reference_gateway(token=gateway_token()) as b:
        a.study(ihi, shared)
        b.study(ihi, shared)
        b.study(ihi, new_uid())
        await broker.join(a, ihi)
        await broker.join(b, ihi)
        bundle = (await broker.search(ihi, _count="0")).json()
    assert (bundle["total"], bundle.get("entry")) == (2, None)
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    assert all(name != "_count" for name, _ in a.seen[0].query)


async def test_a_patient_with_no_records_has_an_empty_result(broker: Broker) -> None:
    """No registration for the patient: 200, an empty searchset, no outcome entry."""
    bundle = (await broker.search(make_ihi())).json()
    assert (bundle["total"], bundle.get("entry")) == (0, None)


async def test_search_refusals(broker: Broker) -> None:
    """No patient or two patients is 400, a bad IHI or date 422, an unknown parameter 400 when the request is strict
    (and ignored, with a warning, when it is not), a token without the discovery scope 403."""
    ihi = make_ihi()
    assert (await broker.consumer.get("/fhir/ImagingStudy", params={"modality": "CT"})).status_code == 400
    two = {"patient": [ihi, make_ihi()]}
    assert (
        await broker.consumer.get("/fhir/ImagingStudy", params={"patient": f"{ihi},{make_ihi()}"})
    ).status_code == 400
    assert (await broker.consumer.get("/fhir/ImagingStudy", params=two)).status_code == 200  # AND: nothing matches
    assert (await broker.search(ihi[:-1] + str((int(ihi[-1]) + 1) % 10))).status_code == 422
    assert (await broker.search(ihi, started="yesterday")).status_code == 422
    strict = {"Prefer": "handling=strict"}
    assert (await broker.search(ihi, "DocumentReference", modality="CT", headers=strict)).status_code == 400
    lenient = (await broker.search(ihi, "DocumentReference", modality="CT")).json()
    outcome = next(e["resource"] for e in lenient["entry"] if e["search"]["mode"] == "outcome")
    assert [i["expression"] for i in outcome["issue"] if i["severity"] == "warning"] == [["modality"]]
    basic_only = {"Authorization": f"Bearer {broker.tokens.basic_only}"}
    assert (await broker.search(ihi, headers=basic_only)).status_code == 403


async def test_unresolved_and_skipped_services_are_reported_and_disabled_ones_left_out(broker: Broker) -> None:
    """A registry referral and a member without credentials each get an issue; a disabled gateway is not
    routed, so it is neither asked nor named; the gateway that can be asked still contributes."""
    ihi = make_ihi()
    uid = new_uid()
    async with (
        reference_gateway(token=gateway_token()) as good,
        reference_gateway(token=gateway_token()) as no_credentials,
        reference_gateway(token=gateway_token()) as disabled,
    ):
        good.study(ihi, uid)
        no_credentials.study(ihi, new_uid())
        disabled.study(ihi, new_uid())
        await broker.join(good, ihi)
        bare = await broker.join(no_credentials, ihi, credentials=False)
        off = await broker.join(disabled, ihi)
        peer = make_service_id()
        await broker.server.add_service(peer, kind="registry", name="Peer registry")
        await broker.record(ihi, peer, type_="registry")
        conn = await asyncpg.connect(broker.server.database_url)
        try:
            await conn.execute("UPDATE services SET status = 'disabled' WHERE service_id = $1", off)
        finally:
            await conn.close()
        bundle = (await broker.search(ihi)).json()
    assert uids(bundle) == [uid]
    assert issues(bundle) == {bare: ["skipped"], peer: ["unresolved"]}
    assert off not in msgspec.json.encode(bundle).decode()
    assert (no_credentials.searches, disabled.searches) == (0, 0)


async def test_every_search_is_audited_with_the_services_asked(broker: Broker) -> None:
    """The search's AuditEvent names the patient and lists every service asked with how it answered."""
    ihi = make_ihi()
    async with reference_gateway(token=gateway_token()) as good, reference_gateway(token=gateway_token()) as failing:
        good.study(ihi, new_uid())
        failing.behaviour.status = 500
        good_id = await broker.join(good, ihi)
        failing_id = await broker.join(failing, ihi)
        response = await broker.search(ihi, headers={"X-Request-Id": f"audit-{ihi}"})
    assert response.status_code == 200
    conn = await asyncpg.connect(broker.server.database_url)
    try:  # the row is committed before the response starts
        row = await conn.fetchrow("SELECT * FROM audit_events WHERE request_id = $1", f"audit-{ihi}")
    finally:
        await conn.close()
    assert row is not None
    assert list(row["patients"]) == [ihi]
    assert (row["interaction"], row["status"]) == ("search-type", 200)
    assert f"{good_id}: 1 found" in row["detail"]
    assert f"{failing_id}: 0 found, error-response" in row["detail"]
