"""The privacy layer's promises (issue "Privacy by design", Must hold), each on a real server, real PostgreSQL,
real reference gateways (HTTP) and a real subscriber."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from joserfc import jwt
from joserfc.jwk import KeySet

from registry.auth.wiring import issuer_name
from tests.factories import IHI_SYSTEM, make_hpii, make_ihi

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy

ETREAT = {"IEF-Purpose-Of-Use": "ETREAT"}
WITHHELD = "https://ief-registry.org/fhir/StructureDefinition/notification-event-withheld"


def suppressed(bundle: dict[str, Any]) -> bool:
    """Whether a searchset says something was withheld: an outcome entry with a ``suppressed`` issue."""
    return any(
        issue["code"] == "suppressed"
        for entry in bundle.get("entry", [])
        if entry["search"]["mode"] == "outcome"
        for issue in entry["resource"]["issue"]
    )


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The match entries of a searchset."""
    return [entry for entry in bundle.get("entry", []) if entry["search"]["mode"] == "match"]


async def events_withheld(privacy: Privacy, subscription_id: str, within: float = 15.0) -> list[int]:
    """Poll ``$events`` until some event is shown withheld; the numbers shown withheld."""
    deadline = time.monotonic() + within
    while True:
        bundle = (await privacy.admin.get(f"/fhir/Subscription/{subscription_id}/$events")).json()
        parts = [p for p in bundle["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"]
        shown = [
            int(p["part"][0]["valueString"])
            for p in parts
            if any(ext["url"] == WITHHELD and ext["valueBoolean"] for ext in p.get("extension", []))
        ]
        if shown or time.monotonic() > deadline:
            return shown
        await asyncio.sleep(0.05)


async def test_opt_out_withholds_every_disclosure_and_opt_in_restores_it(privacy: Privacy) -> None:
    """After `consent opt-out`, look-up, follow, $locate, Basic and the broker answer 200 with nothing and the
    withheld marker, the gateway is never asked, a subscriber is told nothing of a new registration (which is
    kept); `consent opt-in` restores all of it on the next request."""
    ihi = make_ihi()
    gateway, gateway_id = await privacy.gateway(ihi)
    consumer = await privacy.consumer()
    hook = privacy.subscriber.hook()
    subscription = await privacy.subscribe(hook, ihi)
    assert len((await consumer.lookup(ihi)).json()["records"]) == 1

    await privacy.cli("consent", "opt-out", ihi, "--reason", "asked at reception")
    asked = gateway.searches
    for answer in (await consumer.lookup(ihi), await consumer.lookup(ihi, follow="true")):
        assert answer.status_code == 200
        assert answer.json()["records"] == []
        assert answer.json()["withheld"] is True
    for search in (consumer.locate, consumer.basic, consumer.studies):
        bundle = (await search(ihi)).json()
        assert matches(bundle) == []
        assert suppressed(bundle)
    assert gateway.searches == asked

    _, later_id = await privacy.gateway()
    await privacy.register(ihi, later_id)
    assert await privacy.server.count("SELECT count(*) FROM records WHERE ihi = $1", ihi) == 2
    assert await events_withheld(privacy, subscription["id"]) == [1]
    assert hook.event_numbers() == []

    await privacy.cli("consent", "opt-in", ihi)
    restored = (await consumer.lookup(ihi)).json()
    assert sorted(r["serviceId"] for r in restored["records"]) == sorted([gateway_id, later_id])
    assert "withheld" not in restored
    bundle = (await consumer.studies(ihi)).json()
    assert len(matches(bundle)) == 1
    assert not suppressed(bundle)
    assert gateway.searches == asked + 1
    _, third_id = await privacy.gateway()
    await privacy.register(ihi, third_id)
    await hook.wait(lambda h: h.event_numbers() == [2])


async def test_a_psy_record_is_disclosed_only_to_a_cleared_client(privacy: Privacy) -> None:
    """A record labelled PSY is withheld from a client without that clearance (its gateway not asked by the
    broker) and disclosed to one cleared for PSY."""
    ihi = make_ihi()
    sensitive, sensitive_id = await privacy.gateway(ihi, labels=["PSY"])
    plain, plain_id = await privacy.gateway(ihi)
    uncleared = await privacy.consumer()
    cleared = await privacy.consumer(clearances=("PSY",))

    seen = (await uncleared.lookup(ihi)).json()
    assert [r["serviceId"] for r in seen["records"]] == [plain_id]
    assert seen["withheld"] is True
    bundle = (await uncleared.studies(ihi)).json()
    assert suppressed(bundle)
    assert (sensitive.searches, plain.searches) == (0, 1)

    shown = (await cleared.lookup(ihi)).json()
    labelled = {r["serviceId"]: r.get("securityLabels") for r in shown["records"]}
    assert labelled == {sensitive_id: ["PSY"], plain_id: None}
    assert "withheld" not in shown
    bundle = (await cleared.studies(ihi)).json()
    assert len(matches(bundle)) == 2
    assert (sensitive.searches, plain.searches) == (1, 2)


async def test_break_glass_discloses_and_is_reported(privacy: Privacy) -> None:
    """ETREAT from a client registered with break-glass discloses an opted-out patient's records, is audited as
    such and listed by `audit break-glass`; from a client without the permission it discloses nothing."""
    ihi, hpii = make_ihi(), make_hpii()
    await privacy.gateway(ihi)
    await privacy.cli("consent", "opt-out", ihi)
    glass = await privacy.consumer(break_glass=True)
    ordinary = await privacy.consumer()
    since = datetime.now(UTC).isoformat()

    emergency = {**ETREAT, "IEF-On-Behalf-Of": hpii}
    assert (await ordinary.lookup(ihi, headers=emergency)).json()["records"] == []
    assert (await glass.lookup(ihi)).json()["records"] == []  # no purpose stated: no glass broken
    opened = (await glass.lookup(ihi, headers=emergency)).json()
    assert len(opened["records"]) == 1
    assert "withheld" not in opened

    listed = await privacy.cli("audit", "break-glass", "--since", since, "--json")
    rows = [msgspec.json.decode(line) for line in listed.out.splitlines()]
    assert [(r["client_id"], r["practitioner"], r["purpose_of_use"], r["patients"]) for r in rows] == [
        (glass.client_id, hpii, "ETREAT", [ihi])
    ]
    metrics = (await privacy.admin.get("/metrics")).text
    assert any(
        line.startswith("ief_privacy_break_glass_total ") and float(line.split()[1]) >= 1
        for line in metrics.splitlines()
    )


async def test_ief_requester_verifies_at_the_gateway_with_a_jose_library(privacy: Privacy) -> None:
    """Each gateway asked gets an IEF-Requester JWT that verifies against the registry's JWKS (joserfc) and
    carries the consumer's client and service, its purpose, the practitioner, the patient, a short life."""
    ihi, hpii = make_ihi(), make_hpii()
    first, _ = await privacy.gateway(ihi)
    second, _ = await privacy.gateway(ihi)
    consumer = await privacy.consumer(headers={"IEF-Purpose-Of-Use": "TREAT", "IEF-On-Behalf-Of": hpii})
    assert (await consumer.studies(ihi)).status_code == 200

    async with httpx.AsyncClient() as http:
        keys = KeySet.import_key_set((await http.get(f"{privacy.server.base_url}/.well-known/jwks.json")).json())
    issuer = issuer_name(privacy.server.settings, privacy.server.service_id)
    identities = set()
    for gateway in (first, second):
        (seen,) = gateway.seen
        assert seen.requester is not None
        token = jwt.decode(seen.requester, keys, algorithms=["ES256"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer}, aud={"essential": True, "value": gateway.base_url},
            exp={"essential": True}, jti={"essential": True},
        ).validate(token.claims)  # fmt: skip
        claims = token.claims
        assert claims["sub"] == consumer.client_id
        assert claims["client_service"] == consumer.service_id
        assert claims["purpose_of_use"] == "TREAT"
        assert claims["act"] == {"sub": hpii}
        assert claims["ihi"] == ihi
        assert 0 < claims["exp"] - claims["iat"] <= 60
        identities.add(claims["jti"])
    assert len(identities) == 2


async def test_listing_another_services_patients_is_refused(privacy: Privacy) -> None:
    """Basic?service=X answers a client bound to X and the operator; a client bound to Y gets 403."""
    ihi = make_ihi()
    _, gateway_id = await privacy.gateway(ihi)
    stranger = await privacy.consumer()
    holder = await privacy.consumer(service_id=gateway_id)

    refused = await stranger.http.get("/fhir/Basic", params={"service": gateway_id})
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "enumeration"
    for allowed in (holder.http, privacy.admin):
        answer = await allowed.get("/fhir/Basic", params={"service": gateway_id})
        assert answer.status_code == 200
        assert len(matches(answer.json())) == 1
    named = await stranger.http.get(
        "/fhir/Basic", params={"service": gateway_id, "patient.identifier": f"{IHI_SYSTEM}|{ihi}"}
    )
    assert named.status_code == 200


async def test_every_disclosure_and_withholding_is_audited(privacy: Privacy) -> None:
    """The audit rows of a disclosure and of a withholding name the purpose, the practitioner and how many were
    withheld (never what); the AuditEvent says the same; `audit verify` still passes."""
    ihi, hpii = make_ihi(), make_hpii()
    await privacy.gateway(ihi, labels=["HIV"])
    await privacy.gateway(ihi)
    consumer = await privacy.consumer()
    headers = {"IEF-Purpose-Of-Use": "TREAT", "IEF-On-Behalf-Of": hpii}
    answer = await consumer.lookup(ihi, headers=headers)
    request_id = answer.headers["x-request-id"]
    async with privacy.server.database.writer() as conn:
        row = await conn.fetchrow(
            "SELECT purpose_of_use, practitioner, withheld, break_glass, records FROM audit_events "
            "WHERE request_id = $1",
            request_id,
        )
    assert row is not None
    assert (row["purpose_of_use"], row["practitioner"], row["withheld"], row["break_glass"]) == (
        "TREAT", hpii, 1, False,
    )  # fmt: skip
    assert len(row["records"]) == 1
    events = (await privacy.admin.get("/fhir/AuditEvent", params={"patient": ihi})).json()
    event = next(e["resource"] for e in events["entry"] if "TREAT" in str(e["resource"].get("purposeOfEvent")))
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert any(agent["who"].get("identifier", {}).get("value") == hpii for agent in event["agent"])
    assert "1 withheld" in event["outcomeDesc"]
    verified = await privacy.cli("audit", "verify")
    assert "audit verify: ok" in verified.out
