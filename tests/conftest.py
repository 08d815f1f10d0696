"""Session fixtures: one throwaway PostgreSQL cluster, one real HTTP server on it, an HTTP client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
import structlog
from joserfc.jwk import RSAKey

from registry.config import Settings
from tests.audit_ledger import AuditLedger
from tests.clients import ClientFactory, client_factory
from tests.factories import make_rsa_key, make_service_id
from tests.fhir import r4_schema_state
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.settings import test_settings
from tests.subscriptions.subscriber import Subscriber


def pytest_configure(config: pytest.Config) -> None:
    """Logs of the servers the session runs: info and above, tracebacks as plain text (rendering one with rich
    costs more than a second), printed where pytest captures them."""
    del config
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


def pytest_report_header(config: pytest.Config) -> str:
    """Say whether FHIR answers are validated by the R4 JSON schema as well as the R4B models."""
    del config
    return r4_schema_state()


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
    """The cluster (without durability: ``TestCluster.without_durability``) with its migrated template database."""
    await pg.without_durability()
    await pg.make_template()
    return pg


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the session's server (``tests.settings.test_settings``)."""
    return test_settings()


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
    await notes.check(server.database)


@pytest.fixture
async def clients(server: RunningServer, ledger: AuditLedger) -> ClientFactory:
    """Makes HTTP clients for the session's server, watched by the audit ledger, with the operator's admin token
    unless ``headers`` says otherwise (``tests.clients.client_factory``)."""
    return client_factory(server.base_url, await server.headers("admin"), ledger)


@pytest.fixture
async def client(clients: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session's server with the operator's admin token (watched by the audit ledger)."""
    async with clients() as http:
        yield http


@pytest.fixture
async def anonymous(clients: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session's server with no token (watched by the audit ledger)."""
    async with clients(headers={}) as http:
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


@dataclass(frozen=True, slots=True)
class GatewayClient:
    """A client bound to its own gateway service, with a real token for it."""

    http: httpx.AsyncClient
    service_id: str
    client_id: str


@pytest.fixture(scope="session")
def client_key() -> RSAKey:
    """A private RSA key (RS384) that test clients register and sign their assertions with."""
    return make_rsa_key()


@pytest.fixture
async def gateway_client(
    server: RunningServer, client_key: RSAKey, clients: ClientFactory
) -> AsyncIterator[GatewayClient]:
    """A fresh gateway service and a client bound to it holding ``system/Basic.cu system/Basic.rs``."""
    service_id = make_service_id()
    await server.add_service(service_id)
    scopes = "system/Basic.cu system/Basic.rs"
    client_id, _ = await server.add_client(service_id, scopes, public_key_pem=client_key.as_pem(private=False).decode())
    token = await server.token(scopes, client_id=client_id, service_id=service_id)
    headers = {"Authorization": f"Bearer {token}"}
    async with clients(headers=headers) as http:
        yield GatewayClient(http, service_id, client_id)


@pytest.fixture(scope="session")
async def subscriber() -> AsyncIterator[Subscriber]:
    """A real HTTP subscriber on loopback shared by the session (each test takes hooks of its own)."""
    running = Subscriber()
    await running.up()
    try:
        yield running
    finally:
        await running.down()
