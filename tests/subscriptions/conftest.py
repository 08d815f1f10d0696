"""Fixtures of the subscription tests: a server in dev mode with short retry schedules, real subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from registry.config import Settings, SubscriptionSettings
from tests.audit_ledger import AuditLedger
from tests.clients import ClientFactory, client_factory
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.settings import test_settings
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
    fields = {name: getattr(FAST, name) for name in FAST.__struct_fields__} | subscriptions
    return test_settings(dev=True, subscriptions=SubscriptionSettings(**fields))


@pytest.fixture(scope="session")
async def sub_server(template: TestCluster, subscriber: Subscriber) -> AsyncIterator[RunningServer]:
    """A server in dev mode with fast retries and its delivery worker, on a database of its own.

    It stops before the session's subscriber (it takes it, unused): its worker's connections are closed by
    then, so the subscriber's shutdown waits for none of them.
    """
    del subscriber
    async with running_server(fast_settings(), await template.new_database(), make_service_id()) as running:
        yield running


@pytest.fixture
async def sub_ledger(sub_server: RunningServer) -> AsyncIterator[AuditLedger]:
    """The audit check of the subscription server: every patient-linked request leaves one audit row."""
    notes = AuditLedger(sub_server.audited)
    yield notes
    await notes.check(sub_server.database)


@pytest.fixture
async def sub_clients(sub_server: RunningServer, sub_ledger: AuditLedger) -> ClientFactory:
    """Makes clients of the subscription server (admin token unless ``headers`` says otherwise), audit-checked."""
    return client_factory(sub_server.base_url, await sub_server.headers("admin"), sub_ledger)


@pytest.fixture
async def subs(
    sub_server: RunningServer, sub_clients: ClientFactory, subscriber: Subscriber
) -> AsyncIterator[Subscriptions]:
    """The subscription server driven as the operator (admin), with a gateway service of the test's own."""
    service_id = make_service_id()
    await sub_server.add_service(service_id)
    async with sub_clients() as http:
        yield Subscriptions(sub_server, http, subscriber, service_id, sub_clients)
