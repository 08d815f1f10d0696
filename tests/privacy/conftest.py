"""Fixtures of the privacy tests: a registry server in dev mode (loopback subscribers) with a short-bounded
broker and fast notifications, reference gateways, consumers with their own clearances and permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from tests.audit_ledger import AuditLedger
from tests.broker.conftest import BROKER_SETTINGS
from tests.clients import client_factory
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.privacy.helpers import Privacy
from tests.server import RunningServer, running_server
from tests.subscriptions.conftest import fast_settings
from tests.subscriptions.subscriber import Subscriber


@pytest.fixture(scope="package")
async def privacy_server(template: TestCluster, subscriber: Subscriber) -> AsyncIterator[RunningServer]:
    """A server with fast notifications and short broker bounds, on a database of its own (stopped before the
    session's subscriber, which it takes unused)."""
    del subscriber
    settings = msgspec.structs.replace(fast_settings(), broker=BROKER_SETTINGS)
    async with running_server(settings, await template.new_database(), make_service_id()) as running:
        yield running


@pytest.fixture
async def privacy(privacy_server: RunningServer, subscriber: Subscriber, tmp_path: Path) -> AsyncIterator[Privacy]:
    """The privacy server driven by its operator, with consumers and gateways made per test; afterwards every
    patient-linked request of the test must have exactly one audit row."""
    ledger = AuditLedger(privacy_server.audited)
    clients = client_factory(privacy_server.base_url, await privacy_server.headers("admin"), ledger)
    async with clients() as admin:
        helper = Privacy(privacy_server, admin, clients, subscriber, tmp_path)
        try:
            yield helper
        finally:
            await helper.close()
    await ledger.check(privacy_server.database)
