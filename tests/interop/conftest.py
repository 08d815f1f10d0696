"""Fixtures of the interop tests: a live server in dev mode (loopback subscribers), a gateway and a subscriber."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.subscriptions.conftest import fast_settings
from tests.subscriptions.subscriber import Subscriber


@dataclass(frozen=True, slots=True)
class Live:
    """The live server the vendors' clients talk to, its FHIR base, a gateway of its directory, an admin token."""

    server: RunningServer
    fhir_base: str
    gateway: str
    token: str


@pytest.fixture(scope="module")
async def live(template: TestCluster, subscriber: Subscriber) -> AsyncIterator[Live]:
    """A server of the module's own (dev mode: the session's loopback subscriber may be notified)."""
    del subscriber
    async with running_server(fast_settings(), await template.new_database(), make_service_id()) as server:
        gateway = make_service_id()
        await server.add_service(gateway)
        yield Live(server, f"{server.base_url}/fhir", gateway, await server.token("admin"))
