"""What a consent change does beyond the next look-up: undelivered notifications it now withholds are never
sent, the broker's kept pages for the patient are dropped, and the patient-consent topic tells subscribers."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from schemas.fhir.topic import CROSS_VERSION
from tests.factories import IHI_SYSTEM, make_ihi
from tests.privacy.test_must_hold import events_withheld, matches, suppressed
from tests.privacy.test_revocation import opt_out
from tests.subscriptions.helpers import subscription_body

if TYPE_CHECKING:
    from tests.privacy.helpers import Privacy


async def test_a_notification_waiting_for_a_retry_is_withheld_once_the_patient_opts_out(privacy: Privacy) -> None:
    """An event whose first delivery failed (retry in 2 s) is withheld when the patient opts out meanwhile: it
    is never sent again and $events shows it withheld."""
    ihi = make_ihi()
    hook = privacy.subscriber.hook(status=lambda number: 200 if number == 1 else 503, retry_after="2")
    subscription = await privacy.subscribe(hook, ihi)
    _, gateway_id = await privacy.gateway()
    await privacy.register(ihi, gateway_id)
    await hook.wait(lambda h: h.event_numbers() == [1])
    assert (await privacy.admin.post("/fhir/Consent", json=opt_out(ihi))).status_code == 201
    assert await events_withheld(privacy, subscription["id"]) == [1]
    await asyncio.sleep(2.5)  # past the retry the gateway asked for
    assert hook.event_numbers() == [1]  # the failed first attempt only


async def test_kept_broker_pages_are_dropped_when_the_patients_consent_changes(privacy: Privacy) -> None:
    """The next page of a kept result is not served once the patient has opted out (within a second)."""
    ihi = make_ihi()
    await privacy.gateway(ihi)
    await privacy.gateway(ihi)
    consumer = await privacy.consumer()
    params = {"patient.identifier": f"{IHI_SYSTEM}|{ihi}", "_count": "1"}
    first = (await consumer.http.get("/fhir/ImagingStudy", params=params)).json()
    assert len(matches(first)) == 1
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert len(matches((await consumer.http.get(following)).json())) == 1  # kept, served again
    assert (await privacy.admin.post("/fhir/Consent", json=opt_out(ihi))).status_code == 201
    deadline = time.monotonic() + 1.0
    while True:
        page = (await consumer.http.get(following)).json()
        if not matches(page) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert matches(page) == []
    assert suppressed(page)


async def test_the_patient_consent_topic_tells_subscribers_id_only(privacy: Privacy) -> None:
    """A patient-consent subscription is told of each change of the patient's Consent, by reference only;
    it filters by patient only and is never full-resource."""
    ihi = make_ihi()
    topic = f"{privacy.server.base_url}/fhir/SubscriptionTopic/patient-consent"
    r4 = (await privacy.admin.get("/fhir/SubscriptionTopic/patient-consent")).json()  # the Backport IG's Basic
    assert (r4["resourceType"], r4["id"]) == ("Basic", "patient-consent")
    assert {"url": f"{CROSS_VERSION}.url", "valueUri": topic} in r4["extension"]
    r5 = await privacy.admin.get(
        "/fhir/SubscriptionTopic/patient-consent", headers={"Accept": "application/fhir+json; fhirVersion=5.0"}
    )
    assert (r5.json()["resourceType"], r5.json()["url"]) == ("SubscriptionTopic", topic)
    hook = privacy.subscriber.hook()
    patient = f"patient={IHI_SYSTEM}|{ihi}"
    for refused in (
        subscription_body(topic, hook.url, filters=[patient, "status=active"]),
        subscription_body(topic, hook.url, filters=[patient], content="full-resource"),
    ):
        answer = await privacy.admin.post("/fhir/Subscription", json=refused)
        assert answer.status_code == 422, answer.text
    created = await privacy.admin.post("/fhir/Subscription", json=subscription_body(topic, hook.url, filters=[patient]))
    assert created.status_code == 201
    assert created.json()["criteria"] == topic
    await hook.wait(lambda h: bool(h.of_kind("handshake")))

    _, gateway_id = await privacy.gateway()
    await privacy.register(ihi, gateway_id)  # a registration is not a consent change
    consent = (await privacy.admin.post("/fhir/Consent", json=opt_out(ihi))).json()
    await privacy.admin.put(f"/fhir/Consent/{consent['id']}", json={**consent, "status": "inactive"})
    await hook.wait(lambda h: h.event_numbers() == [1, 2])
    for received in hook.of_kind("event-notification"):
        bundle = received.bundle
        focus = next(
            part["valueReference"]["reference"]
            for parameter in bundle["entry"][0]["resource"]["parameter"]
            if parameter["name"] == "notification-event"
            for part in parameter["part"]
            if part["name"] == "focus"
        )
        assert focus == f"{privacy.server.base_url}/fhir/Consent/{consent['id']}"
        assert [entry["fullUrl"] for entry in bundle["entry"][1:]] == [focus]
        assert all("resource" not in entry for entry in bundle["entry"][1:])
        assert ihi not in str(bundle)
