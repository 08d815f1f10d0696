"""Checklist 15-24: what every notification looks like, by payload content."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.factories import make_ihi
from tests.fhir import parse_resource
from tests.subscriptions.helpers import Subscriptions
from tests.subscriptions.subscriber import Hook, Received

STATUS_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"


async def _one_event(subs: Subscriptions, hook: Hook, **options: Any) -> tuple[dict[str, Any], str, Received]:
    created, ihi = await subs.active(hook, **options)
    await subs.register(ihi)
    (event,) = await hook.wait_count("event-notification", 1)
    return created, ihi, event


def _event_parts(notification: Received) -> list[dict[str, Any]]:
    return [
        {part["name"]: part for part in parameter["part"]}
        for parameter in notification.parameters["parameter"]
        if parameter["name"] == "notification-event"
    ]


async def test_c15_post_with_the_payload_content_type(subs: Subscriptions) -> None:
    """Notifications are POSTed to the endpoint with Content-Type starting with channel.payload exactly."""
    hook = subs.subscriber.hook()
    await _one_event(subs, hook, payload="application/fhir+json; fhirVersion=4.0")
    for request in hook.received:
        assert request.headers["content-type"].startswith("application/fhir+json; fhirVersion=4.0")


async def test_c16_channel_headers_are_sent_verbatim(subs: Subscriptions) -> None:
    """channel.header 'Name: value' arrives as is (first colon, one space dropped); unsendable ones are refused."""
    hook = subs.subscriber.hook()
    headers = ["Authorization: Bearer abc:def", "X-Spaced: a  b", "X-None:tight", "X-Empty:"]
    await _one_event(subs, hook, headers=headers)
    for request in hook.received:
        assert request.headers["authorization"] == "Bearer abc:def"
        assert request.headers["x-spaced"] == "a  b"
        assert request.headers["x-none"] == "tight"
        assert request.headers["x-empty"] == ""
    for bad in ("X-Lead:  two spaces", "No colon", "X-Trail: value ", "Content-Type: text/plain", "webhook-id: x"):
        response = await subs.http.post("/fhir/Subscription", json=subs.body(hook, make_ihi(), headers=[bad]))
        assert response.status_code == 422, bad


async def test_c17_c18_bundle_and_status_entry_shape(subs: Subscriptions) -> None:
    """A history Bundle with a timestamp; entry[0] the status Parameters (profile, urn:uuid, $status request, 200)."""
    hook = subs.subscriber.hook()
    created, _, event = await _one_event(subs, hook)
    for notification in hook.received:
        bundle = notification.bundle
        assert bundle["type"] == "history"
        assert datetime.fromisoformat(bundle["timestamp"].replace("Z", "+00:00")).tzinfo is not None
        first = bundle["entry"][0]
        parameters = first["resource"]
        assert parameters["resourceType"] == "Parameters"
        assert STATUS_PROFILE in parameters["meta"]["profile"]
        assert first["fullUrl"] == f"urn:uuid:{parameters['id']}"
        assert first["request"] == {
            "method": "GET",
            "url": f"{subs.server.base_url}/fhir/Subscription/{created['id']}/$status",
        }
        assert first["response"]["status"] == "200"
        assert all("request" in entry and "response" in entry for entry in bundle["entry"])
    assert len(event.bundle["entry"]) == 2


async def test_c19_c20_status_parameters_of_an_event(subs: Subscriptions) -> None:
    """Subscription reference (absolute, unversioned), status active, type, events since = highest number, instants."""
    hook = subs.subscriber.hook()
    created, ihi, first = await _one_event(subs, hook)
    await subs.register(ihi, status="removed")
    notifications = await hook.wait_count("event-notification", 2)
    for expected, notification in enumerate(notifications, start=1):
        reference = notification.parameter("subscription")["reference"]
        assert reference == f"{subs.server.base_url}/fhir/Subscription/{created['id']}"
        assert notification.parameter("status") == "active"
        assert notification.parameter("type") == "event-notification"
        assert notification.parameter("events-since-subscription-start") == str(expected)
        (parts,) = _event_parts(notification)  # maxCount 1 by default
        assert parts["event-number"]["valueString"] == str(expected)
        stamp = datetime.fromisoformat(parts["timestamp"]["valueInstant"].replace("Z", "+00:00"))
        assert stamp.tzinfo is not None
    assert first.parameter("topic") == subs.topic  # id-only carries the topic


async def test_c21_empty_payload(subs: Subscriptions) -> None:
    """empty: no focus, no additional context, no topic, and no entry besides the status."""
    hook = subs.subscriber.hook()
    _, _, event = await _one_event(subs, hook, content="empty")
    (parts,) = _event_parts(event)
    assert set(parts) == {"event-number", "timestamp"}
    assert event.parameter("topic") is None
    assert len(event.bundle["entry"]) == 1


async def test_c22_id_only_payload(subs: Subscriptions) -> None:
    """id-only: focus is the RegistryRecord's absolute URL; its entry has fullUrl, request and response, no resource."""
    hook = subs.subscriber.hook()
    _, ihi, event = await _one_event(subs, hook)
    (parts,) = _event_parts(event)
    focus = parts["focus"]["valueReference"]["reference"]
    assert focus.startswith(f"{subs.server.base_url}/fhir/Basic/")
    extra = event.bundle["entry"][1]
    assert extra["fullUrl"] == focus
    assert extra["request"] == {"method": "POST", "url": "Basic"}
    assert extra["response"] == {"status": "201"}
    assert "resource" not in extra
    record = await subs.http.get(focus.removeprefix(subs.server.base_url))
    assert record.status_code == 200
    assert record.json()["subject"]["identifier"]["value"] == ihi


async def test_c23_full_resource_payload(subs: Subscriptions) -> None:
    """full-resource: the focus entry carries the RegistryRecord (valid R4) under the focus URL."""
    hook = subs.subscriber.hook()
    await subs.allow_full_resource()
    _, ihi, event = await _one_event(subs, hook, content="full-resource")
    (parts,) = _event_parts(event)
    focus = parts["focus"]["valueReference"]["reference"]
    entry = event.bundle["entry"][1]
    assert entry["fullUrl"] == focus
    record = entry["resource"]
    parse_resource(record)
    assert focus.endswith(f"/Basic/{record['id']}")
    assert record["subject"]["identifier"]["value"] == ihi
    assert event.parameter("topic") == subs.topic


async def test_c24_at_most_max_count_events_per_notification(subs: Subscriptions) -> None:
    """A notification carries at most maxCount events; a backlog goes out in bundles of up to maxCount."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook, max_count=3)
    hook.status = lambda number: 503 if number == 2 else 200  # the first event waits a second
    hook.retry_after = "1"
    await subs.register(ihi)
    await hook.wait_count("event-notification", 1)
    services = [subs.service_id]
    for _ in range(5):
        other = (await subs.sql("SELECT gen_random_uuid()::text AS id"))[0]["id"]
        await subs.server.add_service(other)
        services.append(other)
    for service_id in services[1:]:
        await subs.register(ihi, service_id=service_id)
    await hook.wait(lambda h: 6 in h.event_numbers())
    sizes = [len(r.event_numbers) for r in hook.of_kind("event-notification")]
    assert max(sizes) == 3
    assert sorted(set(hook.event_numbers())) == [1, 2, 3, 4, 5, 6]
    await asyncio.sleep(0.1)
    assert created["id"]
