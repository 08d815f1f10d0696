"""Checklist 10-14: handshake, activation, errors, reactivation by the client only, end and delete."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.factories import make_ihi
from tests.server import free_port
from tests.subscriptions.helpers import Subscriptions

ERROR_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscription-error"


def _status_parameters(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = bundle["entry"]
    assert isinstance(entries, list)
    assert len(entries) == 1
    return {p["name"]: p for p in entries[0]["resource"]["parameter"]}


async def test_c10_exactly_one_handshake_after_create(subs: Subscriptions) -> None:
    """Create sends one handshake: a history Bundle, type handshake, status requested, 0 events, no event part."""
    hook = subs.subscriber.hook()
    created, _ = await subs.active(hook)
    await asyncio.sleep(0.5)  # anything else would have come by now
    assert len(hook.received) == 1
    handshake = hook.received[0]
    assert handshake.bundle["type"] == "history"
    assert handshake.kind == "handshake"
    assert handshake.parameter("status") == "requested"
    assert handshake.parameter("events-since-subscription-start") == "0"
    assert handshake.parameter("notification-event") is None
    assert handshake.parameter("subscription")["reference"].endswith(f"/fhir/Subscription/{created['id']}")


async def test_c11_active_after_handshake_and_before_any_event(subs: Subscriptions) -> None:
    """A 2xx to the handshake makes the subscription active (read and $status) before any event is sent."""
    hook = subs.subscriber.hook(delay=0.5)  # the handshake takes a while to be acknowledged
    ihi = make_ihi()
    created = await subs.create(subs.body(hook, ihi))
    await subs.register(ihi)  # numbered while requested, sent once active
    found = await subs.wait_status(created["id"], "active")
    assert found["status"] == "active"
    status = await subs.http.get(f"/fhir/Subscription/{created['id']}/$status")
    assert _status_parameters(status.json())["status"]["valueCode"] == "active"
    await hook.wait_count("event-notification", 1)
    assert [r.kind for r in hook.received] == ["handshake", "event-notification"]
    assert hook.received[1].parameter("status") == "active"


async def test_c12_handshake_failure_ends_in_error_with_a_code(subs: Subscriptions) -> None:
    """A handshake answered 500 (after bounded retries), or never answered, puts the subscription in error, coded."""
    failing = subs.subscriber.hook(status=500)
    created = await subs.create(subs.body(failing, make_ihi()))
    found = await subs.wait_status(created["id"], "error")
    assert len(failing.of_kind("handshake")) == 2  # handshake_attempts of the test server
    assert found["error"] == "HTTP 500"
    status = (await subs.http.get(f"/fhir/Subscription/{created['id']}/$status")).json()
    error = _status_parameters(status)["error"]["valueCodeableConcept"]
    assert error["coding"] == [{"system": ERROR_SYSTEM, "code": "error-response"}]
    nobody = await subs.create(subs.body(f"http://127.0.0.1:{free_port()}/gone", make_ihi()))
    await subs.wait_status(nobody["id"], "error")
    status = (await subs.http.get(f"/fhir/Subscription/{nobody['id']}/$status")).json()
    assert _status_parameters(status)["error"]["valueCodeableConcept"]["coding"][0]["code"] == "no-response"


async def test_c13_only_the_client_reactivates(subs: Subscriptions) -> None:
    """An error subscription stays in error when its endpoint recovers; a client PUT requested sends a new handshake."""
    hook = subs.subscriber.hook(status=503)
    created = await subs.create(subs.body(hook, make_ihi()))
    await subs.wait_status(created["id"], "error")
    hook.status = 200
    await asyncio.sleep(1.0)
    current = await subs.read(created["id"])
    assert current["status"] == "error"  # the server never reactivates by itself
    handshakes = len(hook.of_kind("handshake"))
    current["status"] = "requested"
    response = await subs.http.put(f"/fhir/Subscription/{created['id']}", json=current)
    assert response.status_code == 200
    assert response.json()["status"] == "requested"
    found = await subs.wait_status(created["id"], "active")
    assert "error" not in found
    assert len(hook.of_kind("handshake")) == handshakes + 1


async def test_c14_end_in_the_past_turns_the_subscription_off(subs: Subscriptions) -> None:
    """A subscription whose end has passed goes off and gets no more notifications."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    current = await subs.read(created["id"])
    current["end"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    assert (await subs.http.put(f"/fhir/Subscription/{created['id']}", json=current)).status_code == 200
    await subs.wait_status(created["id"], "off")
    await subs.register(ihi)
    await asyncio.sleep(0.5)
    assert hook.of_kind("event-notification") == []


async def test_c14_delete_cancels_queued_events_at_once(subs: Subscriptions) -> None:
    """DELETE stops delivery: queued events end cancelled and nothing more is sent."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    hook.status = 503
    hook.retry_after = "30"  # the first event waits; the others queue behind it
    await subs.register(ihi)
    await hook.wait_count("event-notification", 1)
    await subs.register(ihi, status="removed")
    await subs.register(ihi, status="archived")
    response = await subs.http.delete(f"/fhir/Subscription/{created['id']}")
    assert response.status_code == 200
    assert (await subs.http.get(f"/fhir/Subscription/{created['id']}")).status_code == 404
    rows = await subs.sql(
        "SELECT event_number, state FROM subscription_events WHERE subscription_id = $1 ORDER BY 1", created["id"]
    )
    assert [(r["event_number"], r["state"]) for r in rows] == [(1, "cancelled"), (2, "cancelled"), (3, "cancelled")]
    sent = len(hook.received)
    await asyncio.sleep(0.5)
    assert len(hook.received) == sent
