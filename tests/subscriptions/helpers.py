"""Subscription test helpers: bodies, creation, registrations, waiting for status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from broker.subscriptions.repository import SubscriptionRepository
from registry.db.queries import load_queries
from tests.factories import make_ihi
from tests.server import RunningServer
from tests.subscriptions.subscriber import Hook, Subscriber

__all__ = ("BACKPORT_SD", "IHI_SYSTEM", "SECRET_EXTENSION", "Subscriptions", "subscription_body")

BACKPORT_SD = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
IHI_SYSTEM = "http://ns.electronichealth.net.au/id/hi/ihi/1.0"
SECRET_EXTENSION = "https://ief-registry.org/fhir/StructureDefinition/subscription-signing-secret"  # noqa: S105 - a URL


def subscription_body(
    topic: str,
    endpoint: str,
    *,
    filters: list[str] | None = None,
    content: str | None = "id-only",
    payload: str | None = "application/fhir+json",
    headers: list[str] | None = None,
    heartbeat: int | None = None,
    timeout: int | None = None,
    max_count: int | None = None,
    secret: str | None = None,
    channel_type: str = "rest-hook",
    status: str = "requested",
    end: str | None = None,
) -> dict[str, Any]:
    """A backport Subscription body (R4) as a client posts it."""
    extensions = []
    if heartbeat is not None:
        extensions.append({"url": f"{BACKPORT_SD}/backport-heartbeat-period", "valueUnsignedInt": heartbeat})
    if timeout is not None:
        extensions.append({"url": f"{BACKPORT_SD}/backport-timeout", "valueUnsignedInt": timeout})
    if max_count is not None:
        extensions.append({"url": f"{BACKPORT_SD}/backport-max-count", "valuePositiveInt": max_count})
    if secret is not None:
        extensions.append(
            {
                "url": "https://ief-registry.org/fhir/StructureDefinition/subscription-signing-secret",
                "valueString": secret,
            }
        )
    channel: dict[str, Any] = {"type": channel_type, "endpoint": endpoint}
    if extensions:
        channel["extension"] = extensions
    if payload is not None:
        channel["payload"] = payload
    if content is not None:
        channel["_payload"] = {"extension": [{"url": f"{BACKPORT_SD}/backport-payload-content", "valueCode": content}]}
    if headers:
        channel["header"] = headers
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT_SD}/backport-subscription"]},
        "status": status,
        "reason": "Tell me when imaging is registered",
        "criteria": topic,
        "channel": channel,
    }
    if filters:
        body["_criteria"] = {
            "extension": [{"url": f"{BACKPORT_SD}/backport-filter-criteria", "valueString": f} for f in filters]
        }
    if end is not None:
        body["end"] = end
    return body


@dataclass
class Subscriptions:
    """The subscription server, an admin client, the subscriber and a gateway service of the test's own."""

    server: RunningServer
    http: httpx.AsyncClient
    subscriber: Subscriber
    service_id: str
    clients: Callable[..., httpx.AsyncClient]

    @property
    def topic(self) -> str:
        """The topic canonical of the server."""
        return f"{self.server.base_url}/fhir/SubscriptionTopic/patient-registration"

    def body(self, hook: Hook | str, ihi: str | None = None, **options: Any) -> dict[str, Any]:
        """A Subscription body to ``hook`` filtered on ``ihi`` (none: no patient filter)."""
        filters = list(options.pop("filters", []))
        if ihi is not None:
            filters.insert(0, f"patient={IHI_SYSTEM}|{ihi}")
        endpoint = hook.url if isinstance(hook, Hook) else hook
        return subscription_body(self.topic, endpoint, filters=filters, **options)

    async def create(self, body: dict[str, Any], http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """POST a Subscription; it must be created (201)."""
        response = await (http or self.http).post("/fhir/Subscription", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def active(
        self, hook: Hook, ihi: str | None = None, http: httpx.AsyncClient | None = None, **options: Any
    ) -> tuple[dict[str, Any], str]:
        """Create a subscription to ``hook`` for ``ihi`` and wait until it is active; return it and the IHI."""
        ihi = ihi or make_ihi()
        created = await self.create(self.body(hook, ihi, **options), http)
        await self.wait_status(created["id"], "active", http)
        return created, ihi

    async def read(self, subscription_id: str, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """GET a Subscription (200)."""
        response = await (http or self.http).get(f"/fhir/Subscription/{subscription_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_status(
        self, subscription_id: str, status: str, http: httpx.AsyncClient | None = None, within: float = 15.0
    ) -> dict[str, Any]:
        """Poll the subscription until it has ``status``; return it."""
        deadline = time.monotonic() + within
        while True:
            found = await self.read(subscription_id, http)
            if found["status"] == status:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"subscription {subscription_id} is {found['status']}, not {status}")
            await asyncio.sleep(0.05)

    async def register(self, ihi: str, status: str = "active", service_id: str | None = None) -> httpx.Response:
        """Register (or change) a record through the native API."""
        response = await self.http.put(
            f"/registry/records/{ihi}/{service_id or self.service_id}", json={"status": status}
        )
        assert response.status_code in (200, 201), response.text
        return response

    async def client(self, scopes: str, *, public_key_pem: str) -> tuple[str, httpx.AsyncClient]:
        """A new client of the gateway service holding ``scopes``: its ID and an audit-checked HTTP client."""
        client_id, _ = await self.server.add_client(self.service_id, scopes, public_key_pem=public_key_pem)
        token = await self.server.token(scopes, client_id=client_id, service_id=self.service_id)
        return client_id, self.clients(headers={"Authorization": f"Bearer {token}"})

    async def allow_full_resource(self, client_id: str = "operator", *, allowed: bool = True) -> None:
        """Allow a client full-resource payloads, as `ief-registry clients full-resource` does."""
        async with self.server.database.writer() as conn:
            assert await SubscriptionRepository(load_queries()).set_full_resource(conn, client_id, allowed)

    async def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run SQL on the server's database (to look at what the API does not show)."""
        conn = await asyncpg.connect(self.server.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()
