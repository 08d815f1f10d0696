"""Session fixtures: one throwaway PostgreSQL cluster, one real HTTP server on it, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from registry.config import Settings
from tests.audit_ledger import AuditLedger
from tests.factories import make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server


@pytest.fixture(scope="session")
def pg() -> Iterator[TestCluster]:
    """The session's PostgreSQL cluster (started once, removed at the end)."""
    cluster = TestCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
async def template(pg: TestCluster) -> TestCluster:
    """The cluster with its migrated template database in place."""
    await pg.make_template()
    return pg


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the session's server: defaults, with small limits where tests probe them."""
    return Settings(log=Settings().log.__class__(access=False))


@pytest.fixture(scope="session")
async def server(template: TestCluster, settings: Settings) -> AsyncIterator[RunningServer]:
    """A real ief-registry server on its own database, shared by the session's tests."""
    database_url = await template.new_database()
    async with running_server(settings, database_url, make_service_id()) as running:
        yield running


@pytest.fixture
async def ledger(server: RunningServer) -> AsyncIterator[AuditLedger]:
    """Notes the test's requests to the session's server; afterwards each patient-linked one must have one audit row."""
    notes = AuditLedger(server.audited)
    yield notes
    await notes.check(server.database_url)


@pytest.fixture
def clients(server: RunningServer, ledger: AuditLedger) -> Callable[..., httpx.AsyncClient]:
    """Makes HTTP clients for the session's server (``httpx.AsyncClient`` options), watched by the audit ledger."""

    def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout", 30)
        return httpx.AsyncClient(base_url=server.base_url, event_hooks=ledger.hooks(), **options)

    return make


@pytest.fixture
async def client(clients: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session's server (watched by the audit ledger)."""
    async with clients() as http:
        yield http


@pytest.fixture
async def gateway(server: RunningServer) -> str:
    """A fresh enabled gateway in the server's directory; returns its service ID."""
    service_id = make_service_id()
    await server.add_service(service_id)
    return service_id
