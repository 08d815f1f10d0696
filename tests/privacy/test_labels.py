"""Security labels: written natively, by batch and through FHIR ``meta.security``, kept in the record's history,
and obeyed by every read (read by id, history)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.factories import make_ihi
from tests.fhir import record_body

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy


async def test_labels_are_written_every_way_and_kept_in_history(privacy: Privacy) -> None:
    """Native PUT sets labels, a PUT without them keeps them, ``[]`` clears them (each change in history); a
    batch item does the same; unknown labels are 422."""
    ihi = make_ihi()
    _, gateway = await privacy.gateway()
    url = f"/registry/records/{ihi}/{gateway}"
    assert (await privacy.admin.put(url, json={"securityLabels": ["PSY", "R"]})).json()["securityLabels"] == [
        "PSY",
        "R",
    ]
    assert (await privacy.admin.put(url, json={})).json()["securityLabels"] == ["PSY", "R"]
    assert "securityLabels" not in (await privacy.admin.put(url, json={"securityLabels": []})).json()
    refused = await privacy.admin.put(url, json={"securityLabels": ["SECRET"]})
    assert refused.status_code == 422
    cleared = await privacy.consumer(clearances=("HIV", "PSY", "R"))
    history = (await cleared.http.get(f"/registry/records/{ihi}/history")).json()["history"]
    # created with labels, registered again keeping them (a re-registration is a version), labels cleared
    assert [entry.get("securityLabels") for entry in history] == [["PSY", "R"], ["PSY", "R"], None]
    assert [entry["change"] for entry in history] == ["created", "registered", "registered"]
    assert len((await privacy.admin.get(f"/registry/records/{ihi}/history")).json()["history"]) == 1  # no clearance

    batched = await privacy.admin.post(
        "/registry/records:batch",
        json=[{"ihi": ihi, "serviceId": gateway, "securityLabels": ["HIV"]}, {"ihi": make_ihi(), "serviceId": gateway}],
    )
    assert (batched.json()["registered"], batched.json()["created"]) == (1, 1)  # active again: a re-registration
    kept = await privacy.admin.post("/registry/records:batch", json=[{"ihi": ihi, "serviceId": gateway}])
    assert kept.json()["registered"] == 1
    assert (await cleared.lookup(ihi)).json()["records"][0]["securityLabels"] == ["HIV"]
    history = (await cleared.http.get(f"/registry/records/{ihi}/history")).json()["history"]
    assert [entry.get("securityLabels") for entry in history[-2:]] == [["HIV"], ["HIV"]]  # set, then kept
    bad = await privacy.admin.post(
        "/registry/records:batch", json=[{"ihi": ihi, "serviceId": gateway, "securityLabels": ["X"]}]
    )
    assert bad.json()["errors"] == 1


async def test_a_labelled_record_read_by_id_or_in_history_is_withheld_without_clearance(privacy: Privacy) -> None:
    """FHIR meta.security labels the record; a client without the clearance is refused it by id (403
    ``withheld``) and sees its history withheld; a cleared client sees both."""
    ihi = make_ihi()
    _, gateway = await privacy.gateway()
    body = record_body(ihi, gateway)
    body["meta"]["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "SDV"}]
    created = await privacy.admin.post("/fhir/Basic", json=body)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["meta"]["security"] == body["meta"]["security"]
    uncleared = await privacy.consumer()
    cleared = await privacy.consumer(clearances=("SDV",))

    refused = await uncleared.http.get(f"/fhir/Basic/{record['id']}")
    assert refused.status_code == 403
    assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "withheld"
    assert (await cleared.http.get(f"/fhir/Basic/{record['id']}")).status_code == 200
    hidden = (await uncleared.http.get(f"/registry/records/{ihi}/history")).json()
    assert (hidden["history"], hidden["withheld"]) == ([], True)
    shown = (await cleared.http.get(f"/registry/records/{ihi}/history")).json()
    assert [entry["securityLabels"] for entry in shown["history"]] == [["SDV"]]
