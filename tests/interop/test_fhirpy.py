"""fhirpy (Python; sync and async clients), unmodified: capabilities, search, paging, count, read, vread, history,
conditional create, $locate by POST and GET, Subscription create, $status and $events by POST, notifications
verified with standardwebhooks."""

from __future__ import annotations

import asyncio
from typing import Any

from fhirpy import AsyncFHIRClient, SyncFHIRClient
from standardwebhooks.webhooks import Webhook

from tests.factories import IHI_SYSTEM, make_ihi, make_service_id
from tests.fhir import parse_resource, record_body
from tests.interop.conftest import Live
from tests.subscriptions.helpers import SECRET_EXTENSION, subscription_body
from tests.subscriptions.subscriber import Subscriber

_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _locate(ihi: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "identifier", "valueIdentifier": {"system": IHI_SYSTEM, "value": ihi}}],
    }


def _ids(bundle: dict[str, Any]) -> list[str]:
    parse_resource(bundle)
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def _services(live: Live, count: int) -> list[str]:
    services = [make_service_id() for _ in range(count)]
    for service in services:
        await live.server.add_service(service)
    return services


def _sync_scenario(live: Live, ihi: str, services: list[str]) -> None:
    """The records scenario with the sync client (requests), run in a thread beside the live server."""
    client = SyncFHIRClient(live.fhir_base, authorization=f"Bearer {live.token}")
    statement = client.execute("metadata", method="get")
    assert parse_resource(statement).fhirVersion == "4.0.1"
    basic = client.resources("Basic")
    created, was_created = basic.search(patient=ihi, service=services[0]).get_or_create(
        client.resource("Basic", **record_body(ihi, services[0]))
    )
    again, again_created = basic.search(patient=ihi, service=services[0]).get_or_create(
        client.resource("Basic", **record_body(ihi, services[0], status="removed"))
    )
    assert (was_created, again_created, again.id) == (True, False, created.id)
    for service in services[1:]:
        client.resource("Basic", **record_body(ihi, service)).save()
    assert basic.search(patient=ihi).count() == len(services)
    assert sorted(r.id for r in basic.search(patient=ihi).limit(1).fetch_all()) == sorted(
        r.id for r in basic.search(patient=ihi).fetch()
    )
    read = client.reference("Basic", created.id).to_resource()
    assert read["subject"]["identifier"]["value"] == ihi
    updated = client.resource("Basic", **record_body(ihi, services[0], status="archived", record_id=created.id))
    updated.save()
    history = client.execute(f"Basic/{created.id}/_history", method="get")
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    first = client.execute(f"Basic/{created.id}/_history/1", method="get")
    parse_resource(first)
    assert first["meta"]["versionId"] == "1"
    posted = client.execute("Patient/$locate", data=_locate(ihi))
    got = client.execute("Patient/$locate", method="get", params={"identifier": f"{IHI_SYSTEM}|{ihi}"})
    assert sorted(_ids(posted)) == sorted(_ids(got)) == sorted(services[1:])  # the first is archived now


async def test_fhirpy_sync_client(live: Live) -> None:
    """SyncFHIRClient: capabilities, conditional create, search, count, paging, read, update, history, vread,
    $locate by POST and GET."""
    services = await _services(live, 3)
    await asyncio.to_thread(_sync_scenario, live, make_ihi(), services)


async def test_fhirpy_async_client(live: Live) -> None:
    """AsyncFHIRClient: the same scenario, and refresh (a conditional read answered 304)."""
    client = AsyncFHIRClient(live.fhir_base, authorization=f"Bearer {live.token}")
    ihi = make_ihi()
    services = await _services(live, 3)
    statement = await client.execute("metadata", method="get")
    parse_resource(statement)
    basic = client.resources("Basic")
    created, was_created = await basic.search(patient=ihi, service=services[0]).get_or_create(
        client.resource("Basic", **record_body(ihi, services[0]))
    )
    assert was_created
    for service in services[1:]:
        await client.resource("Basic", **record_body(ihi, service)).save()
    assert await basic.search(patient=ihi).count() == 3
    every = await basic.search(patient=ihi).limit(2).fetch_all()
    assert len({r.id for r in every}) == 3
    fetched = await client.reference("Basic", created.id).to_resource()
    await fetched.refresh()  # If-None-Match with its version: 304, kept as it is
    assert fetched["meta"]["versionId"] == "1"
    history = await client.execute(f"Basic/{created.id}/_history", method="get")
    parse_resource(history)
    assert history["total"] == 1
    posted = await client.execute("Patient/$locate", data=_locate(ihi))
    assert sorted(_ids(posted)) == sorted(services)


async def test_fhirpy_subscription_and_signed_notifications(live: Live, subscriber: Subscriber) -> None:
    """A Subscription created with fhirpy becomes active; $status and $events answer POST; the notification of a
    registration verifies with standardwebhooks and the subscription's secret."""
    client = AsyncFHIRClient(live.fhir_base, authorization=f"Bearer {live.token}")
    hook = subscriber.hook()
    ihi = make_ihi()
    body = subscription_body(
        f"{live.fhir_base}/SubscriptionTopic/patient-registration", hook.url, filters=[f"patient={ihi}"],
        secret=_SECRET,
    )  # fmt: skip
    created = await client.resource("Subscription", **body).save()
    assert SECRET_EXTENSION in {e["url"] for e in created["channel"]["extension"]}
    status: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    for _ in range(100):
        status = await client.execute(f"Subscription/{created.id}/$status")
        parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        if parameters["status"]["valueCode"] == "active":
            break
        await asyncio.sleep(0.1)
    parse_resource(status)
    assert parameters["status"]["valueCode"] == "active"
    await client.resource("Basic", **record_body(ihi, live.gateway)).save()
    (notification,) = await hook.wait_count("event-notification", 1)
    Webhook(_SECRET).verify(notification.body, notification.headers)
    parse_resource(notification.bundle)
    events = await client.execute(
        f"Subscription/{created.id}/$events",
        data={"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueString": "1"}]},
    )
    parse_resource(events)
    assert events["type"] == "history"
