"""The broker under test: a registry server with short bounds, reference gateways, and a consumer client."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.config import AuthSettings, BrokerSettings, LogSettings, OutboundSettings, Settings
from tests.audit_ledger import AuditLedger
from tests.factories import IHI_SYSTEM, LOOPBACK_NETWORKS, make_service_id
from tests.fhir import check_fhir_response
from tests.gateway import ReferenceGateway
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

DISCOVERY_SCOPES = "system/ImagingStudy.rs system/DocumentReference.rs"

BROKER_SETTINGS = BrokerSettings(
    gateway_timeout=1.5,
    deadline=2.5,
    breaker_failures=3,
    breaker_cooldown=1.0,
    max_response_bytes=1_000_000,
)
"""Bounds small enough for a quick suite: a hung gateway costs 1.5 s, a search at most 2.5 s."""


@pytest.fixture(scope="package")
async def broker_server(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A registry server whose broker has short timeouts, on its own database."""
    auth = AuthSettings(
        client_cache_seconds=0, key_refresh_seconds=0, rate_per_second=10_000, rate_burst=10_000,
        failure_rate_per_second=10_000, failure_burst=10_000,
    )  # fmt: skip
    loopback = OutboundSettings(allowed_networks=LOOPBACK_NETWORKS)
    settings = Settings(log=LogSettings(access=False), auth=auth, broker=BROKER_SETTINGS, outbound=loopback)
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        yield server


@dataclass(frozen=True, slots=True)
class Tokens:
    """Access tokens minted once for the package (minting reads and imports the issuer key each time)."""

    consumer: str
    admin: str
    basic_only: str


@pytest.fixture(scope="package")
async def tokens(broker_server: RunningServer) -> Tokens:
    """A consumer token (discovery scopes only), the operator's admin token, and one with system/Basic.rs only."""
    return Tokens(
        consumer=await broker_server.token(DISCOVERY_SCOPES, lifetime=3600),
        admin=await broker_server.token("admin", lifetime=3600),
        basic_only=await broker_server.token("system/Basic.rs", lifetime=3600),
    )


@dataclass
class Broker:
    """The broker under test, seen by a consumer (discovery scopes only) and by the operator (admin)."""

    server: RunningServer
    consumer: httpx.AsyncClient
    admin: httpx.AsyncClient
    folder: Path
    tokens: Tokens

    async def join(self, gateway: ReferenceGateway, ihi: str | None = None, *, credentials: bool = True) -> str:
        """Add a running gateway to the directory (with the credentials it takes) and, given an IHI, a record
        that it holds data for that patient; returns its service ID."""
        service_id = make_service_id()
        token_file = None
        if credentials and gateway.token is not None:
            token_file = self.folder / f"{service_id}.token"
            token_file.write_text(gateway.token + "\n", encoding="utf-8")
        await self.server.add_service(
            service_id,
            name=f"Gateway {service_id[:8]}",
            base_url=gateway.base_url,
            style=gateway.style,
            client_id=gateway.client_id if credentials else None,
            bearer_token_file=str(token_file) if token_file else None,
        )
        if ihi is not None:
            await self.record(ihi, service_id)
        return service_id

    async def record(self, ihi: str, service_id: str, *, type_: str = "record") -> None:
        """Register that ``service_id`` holds (or, for ``registry``, knows of) data for the patient."""
        response = await self.admin.put(f"/registry/records/{ihi}/{service_id}", json={"type": type_})
        assert response.status_code in (200, 201), response.text

    async def search(
        self, ihi: str, resource: str = "ImagingStudy", *, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        """The consumer's search for the patient (``patient.identifier=<IHI system>|<IHI>`` and ``params``)."""
        query = {"patient.identifier": f"{IHI_SYSTEM}|{ihi}", **params}
        return await self.consumer.get(f"/fhir/{resource}", params=query, headers=headers)


@pytest.fixture
async def broker(broker_server: RunningServer, tokens: Tokens, tmp_path: Path) -> AsyncIterator[Broker]:
    """The broker with a consumer and an operator client; afterwards every patient-linked request must
    have exactly one audit row."""
    ledger = AuditLedger(broker_server.audited)
    options: dict[str, Any] = {"base_url": broker_server.base_url, "timeout": 30}

    def hooks() -> dict[str, list[Any]]:
        found = ledger.hooks()
        found["response"].append(check_fhir_response)
        return found

    async with (
        httpx.AsyncClient(headers=_bearer(tokens.consumer), event_hooks=hooks(), **options) as consumer,
        httpx.AsyncClient(headers=_bearer(tokens.admin), event_hooks=hooks(), **options) as admin,
    ):
        yield Broker(broker_server, consumer, admin, tmp_path, tokens)
    await ledger.check(broker_server.database_url)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def gateway_token() -> str:
    """A fresh bearer token for a reference gateway."""
    return secrets.token_urlsafe(16)
