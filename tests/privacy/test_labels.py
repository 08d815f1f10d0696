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


async def test_labels_through_the_staged_batch_are_changes_kept_in_history_and_in_the_fingerprint(
    privacy: Privacy,
) -> None:
    """Through the staged merge: a change of labels alone is ``updated`` and the same labels again ``unchanged``
    (every history entry with the labels of its version); a gateway's label change to a record the operator
    removed is refused as held; an idempotency key sent again with other labels is refused; an item naming
    ``securityLabels`` twice makes the body 400 (the typed decode counts the key)."""
    ihi, other = make_ihi(), make_ihi()
    _, gateway = await privacy.gateway()
    removed = [{"ihi": ihi, "serviceId": gateway, "status": "removed", "securityLabels": ["R", "PSY"]}]
    first = (await privacy.admin.post("/registry/records:batch", json=removed)).json()
    assert first["created"] == 1
    relabelled = [{**removed[0], "securityLabels": ["HIV"]}]
    assert (await privacy.admin.post("/registry/records:batch", json=relabelled)).json()["updated"] == 1
    assert (await privacy.admin.post("/registry/records:batch", json=relabelled)).json()["unchanged"] == 1
    kept = [{"ihi": ihi, "serviceId": gateway, "status": "removed"}]
    assert (await privacy.admin.post("/registry/records:batch", json=kept)).json()["unchanged"] == 1
    cleared = await privacy.consumer(clearances=("HIV", "PSY", "R"))
    history = (await cleared.http.get(f"/registry/records/{ihi}/history")).json()
    assert [entry.get("securityLabels") for entry in history["history"]] == [["PSY", "R"], ["HIV"]]

    own = await privacy.consumer(scopes="system/Basic.cu system/Basic.rs", service_id=gateway)
    held = (await own.http.post("/registry/records:batch", json=[{**kept[0], "securityLabels": []}])).json()
    assert (held["errors"], held["results"][0]["code"]) == (1, "operator-decision")

    keyed = {"ihi": other, "serviceId": gateway, "securityLabels": ["SDV"], "idempotencyKey": "k-1"}
    assert (await own.http.post("/registry/records:batch", json=[keyed])).json()["created"] == 1
    again = (await own.http.post("/registry/records:batch", json=[{**keyed, "securityLabels": ["ETH"]}])).json()
    assert (again["errors"], again["results"][0]["code"]) == (1, "idempotency-key-reused")

    twice = (
        b'[{"ihi": "' + other.encode() + b'", "serviceId": "' + gateway.encode() + b'", "securityLabels": ["ETH"], '
        b'"securityLabels": ["SDV"]}]'
    )
    repeated = await own.http.post(
        "/registry/records:batch", content=twice, headers={"Content-Type": "application/json"}
    )
    assert repeated.status_code == 400, repeated.text
