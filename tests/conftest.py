"""Session fixtures: one throwaway PostgreSQL cluster, one real HTTP server on it, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from registry.config import Settings
from tests.factories import make_service_id
from tests.fhir import check_fhir_response
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
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session's server; every FHIR JSON answer (errors included) must parse as R4B."""
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=30, event_hooks={"response": [check_fhir_response]}
    ) as http:
        yield http


@pytest.fixture
async def fhir(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, named for FHIR tests: its response hook parses every FHIR response with the R4B models."""
    return client


@pytest.fixture
async def gateway(server: RunningServer) -> str:
    """A fresh enabled gateway in the server's directory; returns its service ID."""
    service_id = make_service_id()
    await server.add_service(service_id)
    return service_id
