"""Session fixtures: one throwaway PostgreSQL cluster, one real HTTP server on it, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from registry.config import AuthSettings, LogSettings, OutboundSettings, Settings
from tests.audit_ledger import AuditLedger
from tests.factories import LOOPBACK_NETWORKS, make_rsa_key, make_service_id
from tests.fhir import check_fhir_response
from tests.pg import TestCluster
from tests.server import RunningServer, running_server
from tests.subscriptions.subscriber import Subscriber


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
    """Settings of the session's server: client state and keys re-read on every use, rates out of the way.

    Rate limits have tests of their own, on servers of their own; here every test shares one
    operator client and one address (loopback).
    """
    auth = AuthSettings(
        client_cache_seconds=0, key_refresh_seconds=0, rate_per_second=10_000, rate_burst=10_000,
        failure_rate_per_second=10_000, failure_burst=10_000,
    )  # fmt: skip
    return Settings(
        log=LogSettings(access=False), auth=auth, outbound=OutboundSettings(allowed_networks=LOOPBACK_NETWORKS)
    )


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
async def clients(server: RunningServer, ledger: AuditLedger) -> Callable[..., httpx.AsyncClient]:
    """Makes HTTP clients for the session's server (``httpx.AsyncClient`` options), watched by the audit ledger.

    They carry the operator's admin token unless ``headers`` says otherwise (``headers={}``: no token),
    and every FHIR JSON answer they get (errors included) must parse with the R4B models.
    """
    admin = await server.headers("admin")

    def make(**options: Any) -> httpx.AsyncClient:
        options.setdefault("timeout", 30)
        options.setdefault("headers", admin)
        hooks = ledger.hooks()
        hooks["response"].append(check_fhir_response)
        return httpx.AsyncClient(base_url=server.base_url, event_hooks=hooks, **options)

    return make


@pytest.fixture
async def client(clients: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the session's server with the operator's admin token (watched by the audit ledger)."""
    async with clients() as http:
        yield http


@pytest.fixture
async def anonymous(clients: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
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
    server: RunningServer, client_key: RSAKey, clients: Callable[..., httpx.AsyncClient]
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
