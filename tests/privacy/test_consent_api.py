"""``/fhir/Consent``: create, read, update (inactive withdraws), search, history kept, scopes, refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tests.factories import IHI_SYSTEM, make_ihi
from tests.privacy.test_revocation import opt_out

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy


def _restriction(ihi: str, gateway: str) -> dict[str, Any]:
    """Consent that permits everything but what ``gateway`` holds, and nothing for research."""
    body = opt_out(ihi)
    body["provision"] = {
        "type": "permit",
        "provision": [
            {
                "type": "deny",
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}
                            ]
                        },
                        "reference": {"reference": f"Endpoint/{gateway}"},
                    }
                ],
            },
            {
                "type": "deny",
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}],
            },
        ],
    }
    return body


async def test_consent_lifecycle_is_versioned_audited_and_enforced(privacy: Privacy) -> None:
    """A Consent is created (201, Location, ETag), read, searched by patient and status, updated to inactive
    (version 2, If-Match honoured); every version is kept; a restriction by custodian and purpose is enforced."""
    ihi = make_ihi()
    _, held = await privacy.gateway(ihi)
    _, other = await privacy.gateway(ihi)
    consumer = await privacy.consumer()
    created = await privacy.admin.post("/fhir/Consent", json=_restriction(ihi, held))
    assert created.status_code == 201, created.text
    consent = created.json()
    assert created.headers["location"].endswith(f"/Consent/{consent['id']}")
    assert created.headers["etag"] == 'W/"1"'
    assert (await privacy.admin.get(f"/fhir/Consent/{consent['id']}")).json()["provision"] == consent["provision"]

    shown = (await consumer.lookup(ihi)).json()
    assert [r["serviceId"] for r in shown["records"]] == [other]
    research = (await consumer.lookup(ihi, headers={"IEF-Purpose-Of-Use": "HRESCH"})).json()
    assert research["records"] == []

    found = await privacy.admin.get(
        "/fhir/Consent", params={"patient.identifier": f"{IHI_SYSTEM}|{ihi}", "status": "active"}
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [consent["id"]]
    stale = await privacy.admin.put(
        f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"}, headers={"If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    withdrawn = await privacy.admin.put(
        f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"}, headers={"If-Match": 'W/"1"'}
    )
    assert withdrawn.status_code == 200
    assert withdrawn.json()["meta"]["versionId"] == "2"
    assert len((await consumer.lookup(ihi)).json()["records"]) == 2
    kept = await privacy.server.count("SELECT count(*) FROM consent_history WHERE consent_id = $1", consent["id"])
    assert kept == 2
    gone = await privacy.admin.get("/fhir/Consent", params={"patient": ihi, "status": "active"})
    assert "entry" not in gone.json()


async def test_consent_writes_and_reads_need_their_scopes(privacy: Privacy) -> None:
    """Consent.cu writes, Consent.rs reads; a search without a patient is the operator's only."""
    ihi = make_ihi()
    reader = await privacy.consumer(scopes="system/Consent.rs")
    writer = await privacy.consumer(scopes="system/Consent.cu")
    assert (await reader.http.post("/fhir/Consent", json=opt_out(ihi))).status_code == 403
    created = await writer.http.post("/fhir/Consent", json=opt_out(ihi))
    assert created.status_code == 201
    assert (await writer.http.get(f"/fhir/Consent/{created.json()['id']}")).status_code == 403
    assert (await reader.http.get(f"/fhir/Consent/{created.json()['id']}")).status_code == 200
    listing = await reader.http.get("/fhir/Consent", params={"status": "active"})
    assert listing.status_code == 403
    assert listing.json()["issue"][0]["details"]["coding"][0]["code"] == "enumeration"
    assert (await privacy.admin.get("/fhir/Consent", params={"status": "active"})).status_code == 200


async def test_consents_that_cannot_be_enforced_are_refused(privacy: Privacy) -> None:
    """422 for an unknown purpose, a patient that is not an IHI, a change of patient; 405 for an unknown id."""
    ihi = make_ihi()
    bad_purpose = opt_out(ihi)
    bad_purpose["provision"] = {"type": "deny", "purpose": [{"code": "SHOPPING"}]}
    refused = await privacy.admin.post("/fhir/Consent", json=bad_purpose)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Consent.provision.purpose[0].code"]
    stranger = opt_out("8003601234567890")
    assert (await privacy.admin.post("/fhir/Consent", json=stranger)).status_code == 422
    created = (await privacy.admin.post("/fhir/Consent", json=opt_out(ihi))).json()
    moved = {**created, "patient": {"identifier": {"system": IHI_SYSTEM, "value": make_ihi()}}}
    assert (await privacy.admin.put(f"/fhir/Consent/{created['id']}", json=moved)).status_code == 422
    unknown = await privacy.admin.put("/fhir/Consent/00000000-0000-0000-0000-000000000000", json=opt_out(ihi))
    assert unknown.status_code == 405
    assert (await privacy.admin.delete(f"/fhir/Consent/{created['id']}")).status_code == 405
