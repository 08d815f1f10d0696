"""Checklist 34-41: signatures, $status, $events, endpoint safety, privacy, permissions, observability."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from broker.subscriptions.notifier import Notifier
from broker.subscriptions.repository import SubscriptionRepository
from broker.subscriptions.signing import generate_secret
from registry.db.queries import load_queries
from registry.outbound.egress import AddressPolicy
from tests.cli import run_cli
from tests.factories import make_ihi, make_service_id
from tests.metrics import key, samples_of
from tests.pg import TestCluster
from tests.server import running_server
from tests.subscriptions.conftest import fast_settings
from tests.subscriptions.helpers import SECRET_EXTENSION, Subscriptions
from tests.subscriptions.subscriber import Subscriber

_RECEIVER = "system/Subscription.cruds system/Basic.rs"
_STATS = "https://ief-registry.org/fhir/StructureDefinition/subscription-"


def _secret(resource: dict[str, Any]) -> str | None:
    channel = resource["channel"]
    assert isinstance(channel, dict)
    return next((e["valueString"] for e in channel.get("extension", []) if e["url"] == SECRET_EXTENSION), None)


def _parameters(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    entries = bundle.get("entry", [])
    assert isinstance(entries, list)
    return [{p["name"]: p for p in entry["resource"]["parameter"]} for entry in entries]


async def test_c34_standard_webhooks_signatures_and_rotation(subs: Subscriptions) -> None:
    """Notifications are signed (verified by standardwebhooks); after a secret change both secrets sign."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    secret = _secret(created)
    assert secret is not None
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 64
    assert _secret(await subs.read(created["id"])) is None  # shown once, on create
    await subs.register(ihi)
    (event,) = await hook.wait_count("event-notification", 1)
    assert "." not in event.headers["webhook-id"]
    assert int(event.headers["webhook-timestamp"]) == pytest.approx(datetime.now(UTC).timestamp(), abs=60)
    assert event.headers["webhook-signature"].startswith("v1,")
    Webhook(secret).verify(event.body, event.headers)
    new_secret = generate_secret()
    current = await subs.read(created["id"])
    current["channel"]["extension"].append({"url": SECRET_EXTENSION, "valueString": new_secret})
    assert (await subs.http.put(f"/fhir/Subscription/{created['id']}", json=current)).status_code == 200
    await subs.register(ihi, status="removed")
    _, rotated = await hook.wait_count("event-notification", 2)
    assert len(rotated.headers["webhook-signature"].split(" ")) == 2
    Webhook(secret).verify(rotated.body, rotated.headers)
    Webhook(new_secret).verify(rotated.body, rotated.headers)
    bad = subs.body(hook, make_ihi(), secret="whsec_dG9vLXNob3J0")  # noqa: S106 - too short, refused
    assert (await subs.http.post("/fhir/Subscription", json=bad)).status_code == 422


async def test_c35_instance_status(subs: Subscriptions) -> None:
    """GET Subscription/{id}/$status is a searchset of one status Parameters: query-status, status, count."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    await subs.register(ihi)
    await hook.wait_count("event-notification", 1)
    response = await subs.http.get(f"/fhir/Subscription/{created['id']}/$status")
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "searchset"
    (parameters,) = _parameters(bundle)
    assert parameters["type"]["valueCode"] == "query-status"
    assert parameters["status"]["valueCode"] == "active"
    assert parameters["events-since-subscription-start"]["valueString"] == "1"
    assert "error" not in parameters


async def test_c36_type_status_is_or_and_per_client(subs: Subscriptions, client_key: RSAKey) -> None:
    """Subscription/$status (GET or POST) ORs ids and statuses, and never shows another client's subscriptions."""
    pem = client_key.as_pem(private=False).decode()
    _, alice = await subs.client(_RECEIVER, public_key_pem=pem)
    _, bob = await subs.client(_RECEIVER, public_key_pem=pem)
    async with alice, bob:
        first, _ = await subs.active(subs.subscriber.hook(), http=alice)
        failing = await subs.create(subs.body(subs.subscriber.hook(status=500), make_ihi()), http=alice)
        await subs.wait_status(failing["id"], "error", http=alice)
        theirs, _ = await subs.active(subs.subscriber.hook(), http=bob)
        everything = (await alice.get("/fhir/Subscription/$status")).json()
        ids = {p["subscription"]["valueReference"]["reference"].rsplit("/", 1)[1] for p in _parameters(everything)}
        assert ids == {first["id"], failing["id"]}
        either = await alice.get("/fhir/Subscription/$status", params={"id": f"{first['id']},{theirs['id']}"})
        assert len(_parameters(either.json())) == 1  # bob's is never shown
        errors = await alice.get("/fhir/Subscription/$status", params={"status": "error,off"})
        assert [p["status"]["valueCode"] for p in _parameters(errors.json())] == ["error"]
        body = {"resourceType": "Parameters", "parameter": [{"name": "id", "valueString": first["id"]}]}
        posted = await alice.post("/fhir/Subscription/$status", json=body)
        assert posted.status_code == 200
        assert len(_parameters(posted.json())) == 1
        assert (await bob.get(f"/fhir/Subscription/{first['id']}/$status")).status_code == 404
        assert (await bob.get(f"/fhir/Subscription/{first['id']}")).status_code == 404


async def test_c37_events_in_a_range_with_a_content_hint(subs: Subscriptions) -> None:
    """$events returns a query-event history Bundle of the events in range; content may lower, never raise, detail."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    for status in ("active", "removed", "archived", "active"):
        await subs.register(ihi, status=status)
    await hook.wait(lambda h: 4 in h.event_numbers())
    url = f"/fhir/Subscription/{created['id']}/$events"
    bundle = (await subs.http.get(url, params={"eventsSinceNumber": "2", "eventsUntilNumber": "3"})).json()
    assert bundle["type"] == "history"
    first = {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}
    assert first["type"]["valueCode"] == "query-event"
    events = [p for p in bundle["entry"][0]["resource"]["parameter"] if p["name"] == "notification-event"]
    assert [e["part"][0]["valueString"] for e in events] == ["2", "3"]
    assert all(any(part["name"] == "focus" for part in e["part"]) for e in events)
    assert "outcome" not in bundle["entry"][0]["response"]
    lower = (await subs.http.get(url, params={"eventsSinceNumber": "1", "content": "empty"})).json()
    assert len(lower["entry"]) == 1  # no record entries, no focus
    higher = (await subs.http.get(url, params={"eventsSinceNumber": "4", "content": "full-resource"})).json()
    assert "resource" not in higher["entry"][1]  # still id-only
    bad = await subs.http.get(url, params={"eventsSinceNumber": "zero"})
    assert bad.status_code == 400


@pytest.mark.slow
async def test_c37_events_no_longer_kept_are_named(template: TestCluster, subscriber: Subscriber) -> None:
    """When retention has removed events, $events says which numbers are gone in its outcome."""
    settings = fast_settings(event_retention_seconds=0)
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        service_id = make_service_id()
        await server.add_service(service_id)
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers("admin")) as http:
            subs = Subscriptions(server, http, subscriber, service_id, lambda **_: http)
            hook = subscriber.hook()
            created, ihi = await subs.active(hook)
            await subs.register(ihi)
            await subs.register(ihi, status="removed")
            await hook.wait(lambda h: h.event_numbers() == [1, 2])
            for _ in range(100):
                kept = await subs.sql(
                    "SELECT count(*) AS n FROM subscription_events WHERE subscription_id = $1", created["id"]
                )
                if kept[0]["n"] == 0:
                    break
                await asyncio.sleep(0.1)
            bundle = (
                await http.get(f"/fhir/Subscription/{created['id']}/$events", params={"eventsSinceNumber": "1"})
            ).json()
    outcome = bundle["entry"][0]["response"]["outcome"]
    assert "events 1 to 2 are no longer kept" in outcome["issue"][0]["diagnostics"]
    assert len(bundle["entry"]) == 1


async def test_c39_no_header_values_or_ihis_in_logs_and_masked_for_others(
    subs: Subscriptions, client_key: RSAKey
) -> None:
    """Header values and IHIs never reach the logs; anyone but the owner (admin included) sees headers masked."""
    pem = client_key.as_pem(private=False).decode()
    _, owner = await subs.client(_RECEIVER, public_key_pem=pem)
    hook = subs.subscriber.hook()
    token = "Bearer very-secret-token-4711"  # noqa: S105 - must not reach the logs
    async with owner:
        with capture_logs() as logs:
            created, ihi = await subs.active(hook, http=owner, headers=[f"Authorization: {token}"])
            await subs.register(ihi)
            await hook.wait_count("event-notification", 1)
        assert (await subs.read(created["id"], owner))["channel"]["header"] == [f"Authorization: {token}"]
    assert (await subs.read(created["id"]))["channel"]["header"] == ["Authorization: ***"]
    searched = (await subs.http.get("/fhir/Subscription", params={"_id": created["id"]})).json()
    assert searched["entry"][0]["resource"]["channel"]["header"] == ["Authorization: ***"]
    text = repr(logs)
    assert "very-secret-token" not in text
    assert ihi not in text
    assert any(entry["event"] == "notification_attempt" for entry in logs)


async def test_c40_full_resource_only_for_allowed_clients(subs: Subscriptions, client_key: RSAKey) -> None:
    """full-resource is refused (403) unless the client is allowed it (clients full-resource), then accepted."""
    pem = client_key.as_pem(private=False).decode()
    client_id, http = await subs.client(_RECEIVER, public_key_pem=pem)
    body = subs.body(subs.subscriber.hook(), make_ihi(), content="full-resource")
    async with http:
        refused = await http.post("/fhir/Subscription", json=body)
        assert refused.status_code == 403
        result = await run_cli(subs.server, "clients", "full-resource", client_id)
        assert result.code == 0, result.err
        assert (await http.post("/fhir/Subscription", json=body)).status_code == 201


async def test_c40_no_patient_filter_needs_admin(subs: Subscriptions, client_key: RSAKey) -> None:
    """A subscription without a patient filter is refused (403) to a client without the admin scope."""
    pem = client_key.as_pem(private=False).decode()
    _, http = await subs.client(_RECEIVER, public_key_pem=pem)
    async with http:
        response = await http.post("/fhir/Subscription", json=subs.body(subs.subscriber.hook()))
    assert response.status_code == 403
    assert (await subs.http.post("/fhir/Subscription", json=subs.body(subs.subscriber.hook()))).status_code == 201


async def test_c41_attempt_log_fields_and_counters(subs: Subscriptions) -> None:
    """Each attempt logs its fields; $status and /metrics show delivered, pending, failed and the last error."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    hook.status = lambda number: 500 if number == 2 else 200
    with capture_logs() as logs:
        await subs.register(ihi)
        await hook.wait(lambda h: h.event_numbers() == [1, 1])
        await asyncio.sleep(0.2)
    attempts = [e for e in logs if e["event"] == "notification_attempt" and e["subscription_id"] == created["id"]]
    assert [(a["attempt"], a["http_status"]) for a in attempts] == [(1, 500), (2, 200)]
    for attempt in attempts:
        assert {"event_number", "webhook_id", "latency_ms", "error"} <= set(attempt)
    (parameters,) = _parameters((await subs.http.get(f"/fhir/Subscription/{created['id']}/$status")).json())
    counters = {e["url"].removeprefix(_STATS): e for e in parameters["subscription"]["extension"]}
    assert counters["delivered-count"]["valueDecimal"] == 1
    assert counters["pending-count"]["valueDecimal"] == 0
    assert counters["failed-attempts"]["valueDecimal"] == 1
    assert counters["last-error"]["valueString"] == "HTTP 500"
    assert "last-success" in counters
    metrics = await subs.http.get("/metrics")
    assert metrics.status_code == 200
    samples = samples_of(metrics.text)
    assert samples[key("ief_subscription_delivered_total", subscription=created["id"])] == 1
    assert samples[key("ief_subscription_failed_attempts_total", subscription=created["id"])] == 1
    assert samples[key("ief_subscription_delivery_latency_seconds_count")] >= 1
    assert ihi not in metrics.text
    async with subs.clients(headers={}) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401


async def test_c38_every_attempt_checks_the_endpoint_again(subs: Subscriptions) -> None:
    """Each attempt resolves and checks the endpoint before connecting: under a stricter policy nothing is sent."""
    hook = subs.subscriber.hook()
    created = await subs.create(subs.body(hook, make_ihi()))
    await hook.wait_count("handshake", 1)
    async with subs.server.database.reader() as conn:
        stored = await SubscriptionRepository(load_queries()).get(conn, uuid.UUID(created["id"]))
    assert stored is not None
    strict = Notifier(AddressPolicy(dev=False, allowed_networks="10.0.0.0/8"), max_connections=1)
    lenient = Notifier(AddressPolicy(dev=True), max_connections=1)
    try:
        refused = await strict.send(stored, b"{}", "msg_strict")
        assert not refused.ok
        assert refused.final
        assert len(hook.received) == 1  # the handshake only: no connection was made
        sent = await lenient.send(stored, b"{}", "msg_lenient")
        assert sent.ok
        assert hook.received[-1].headers["webhook-id"] == "msg_lenient"
        assert hook.received[-1].headers["host"] == hook.url.split("/")[2]
    finally:
        await strict.close()
        await lenient.close()
