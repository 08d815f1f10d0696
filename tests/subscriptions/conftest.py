"""Fixtures of the subscription tests: a server in dev mode with short retry schedules, real subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from registry.config import AuthSettings, LogSettings, Settings, SubscriptionSettings
from tests.audit_ledger import AuditLedger
from tests.factories import make_service_id
from tests.fhir import check_fhir_response
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.subscriptions.helpers import Subscriptions
from tests.subscriptions.subscriber import Subscriber

FAST = SubscriptionSettings(
    retry_schedule="0.2s,0.2s,0.2s",
    retry_jitter=0.0,
    poll_interval=0.05,
    lease_margin=1.0,
    timeout_default=2,
    timeout_max=5,
    heartbeat_min=1,
    handshake_attempts=2,
    max_count_max=10,
)
"""Retries every 0.2 s (four attempts in all), timeouts of seconds: what the tests wait for stays short."""


def fast_settings(**subscriptions: Any) -> Settings:
    """Dev-mode settings (http and loopback subscribers) with the fast subscription settings, changed by keyword."""
    auth = AuthSettings(
        client_cache_seconds=0, key_refresh_seconds=0, rate_per_second=10_000, rate_burst=10_000,
        failure_rate_per_second=10_000, failure_burst=10_000,
    )  # fmt: skip
    fields = {name: getattr(FAST, name) for name in FAST.__struct_fields__} | subscriptions
    return Settings(dev=True, log=LogSettings(access=False), auth=auth, subscriptions=SubscriptionSettings(**fields))


@pytest.fixture(scope="session")
async def subscriber() -> AsyncIterator[Subscriber]:
    """A real HTTP subscriber on loopback shared by the session (each test takes hooks of its own)."""
    running = Subscriber()
    await running.up()
    try:
        yield running
    finally:
        await running.down()


@pytest.fixture(scope="session")
async def sub_server(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A server in dev mode with fast retries and its delivery worker, on a database of its own."""
    async with running_server(fast_settings(), await template.new_database(), make_service_id()) as running:
        yield running


@pytest.fixture
async def sub_ledger(sub_server: RunningServer) -> AsyncIterator[AuditLedger]:
    """The audit check of the subscription server: every patient-linked request leaves one audit row."""
    notes = AuditLedger(sub_server.audited)
    yield notes
    await notes.check(sub_server.database_url)


@pytest.fixture
async def sub_clients(sub_server: RunningServer, sub_ledger: AuditLedger) -> Callable[..., httpx.AsyncClient]:
    """Makes clients of the subscription server (admin token unless ``headers`` says otherwise), audit-checked."""
    admin = await sub_server.headers("admin")

    def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout", 30)
        options.setdefault("headers", admin)
        hooks = sub_ledger.hooks()
        hooks["response"].append(check_fhir_response)
        return httpx.AsyncClient(base_url=sub_server.base_url, event_hooks=hooks, **options)

    return make


@pytest.fixture
async def subs(
    sub_server: RunningServer, sub_clients: Callable[..., httpx.AsyncClient], subscriber: Subscriber
) -> AsyncIterator[Subscriptions]:
    """The subscription server driven as the operator (admin), with a gateway service of the test's own."""
    service_id = make_service_id()
    await sub_server.add_service(service_id)
    async with sub_clients() as http:
        yield Subscriptions(sub_server, http, subscriber, service_id, sub_clients)
