"""DESIGN §8 server-to-server trust, end to end: two real registries on two databases, set up with the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from registry.config import Settings
from registry.db.queries import load_queries
from registry.directory.repository import ServiceRepository
from registry.directory.service import DirectoryService
from registry.errors import OutboundAuthError
from registry.outbound.egress import outbound_policy
from schemas.services import Service
from tests.cli import run_cli
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

LOOKUP = ["system/Basic.rs"]


@dataclass(frozen=True, slots=True)
class Pair:
    """Instance A (the caller) and instance B (the callee); A is a client of B."""

    a: RunningServer
    b: RunningServer
    client_id: str
    """The client ID B gave A."""


async def _service_at(server: RunningServer, service_id: str) -> Service:
    return await DirectoryService(
        server.database, ServiceRepository(load_queries()), policy=outbound_policy(server.settings)
    ).get(service_id)


@pytest.fixture(scope="module")
async def pair(template: TestCluster, settings: Settings) -> AsyncIterator[Pair]:
    """A and B running; B admits A by A's JWKS URL, A adds B with the client ID B printed (both with the CLI)."""
    async with (
        running_server(settings, await template.new_database(), make_service_id()) as a,
        running_server(settings, await template.new_database(), make_service_id()) as b,
    ):
        added = await run_cli(
            b, "clients", "add", "Registry A", "--service-id", a.service_id, "--scopes", " ".join(LOOKUP),
            "--jwks-url", f"{a.base_url}/.well-known/jwks.json",
        )  # fmt: skip
        assert added.code == 0, added.err
        client_id = added.last_line
        linked = await run_cli(
            a, "services", "add", "--id", b.service_id, "--kind", "registry", "--name", "Registry B",
            "--base-url", b.base_url, "--client-id", client_id,
        )  # fmt: skip
        assert linked.code == 0, linked.err
        yield Pair(a, b, client_id)


async def test_a_gets_a_token_from_b_and_looks_up_a_record(pair: Pair) -> None:
    """A discovers B's token endpoint, signs an assertion with its outbound key, and reads B's records."""
    gateway, ihi = make_service_id(), make_ihi()
    await pair.b.add_service(gateway)
    async with httpx.AsyncClient(base_url=pair.b.base_url, headers=await pair.b.headers()) as admin:
        assert (await admin.put(f"/registry/records/{ihi}/{gateway}", json={})).status_code == 201
    b_as_seen_by_a = await _service_at(pair.a, pair.b.service_id)
    assert b_as_seen_by_a.client_id == pair.client_id
    authorization = await pair.a.auth.outbound.authorization(b_as_seen_by_a, LOOKUP)
    async with httpx.AsyncClient(base_url=pair.b.base_url) as http:
        found = await http.get(f"/registry/records/{ihi}", headers={"Authorization": authorization})
        refused = await http.put(
            f"/registry/records/{ihi}/{gateway}", json={}, headers={"Authorization": authorization}
        )
    assert found.status_code == 200, found.text
    assert [r["serviceId"] for r in found.json()["records"]] == [gateway]
    assert refused.status_code == 403


async def test_tokens_are_cached_and_refreshed_once(pair: Pair) -> None:
    """Concurrent callers share one token request per service and scope set; later calls reuse the token."""
    service = await _service_at(pair.a, pair.b.service_id)
    pair.a.auth.outbound.forget(service)
    before = await _assertions_at(pair.b, pair.client_id)
    headers = await asyncio.gather(*(pair.a.auth.outbound.authorization(service, LOOKUP) for _ in range(5)))
    again = await pair.a.auth.outbound.authorization(service, LOOKUP)
    assert len(set(headers)) == 1
    assert again == headers[0]
    assert await _assertions_at(pair.b, pair.client_id) == before + 1


async def test_a_scope_b_did_not_grant_is_a_typed_error(pair: Pair) -> None:
    """Asking B for a scope it did not register for A fails with OutboundAuthError; B's answer is logged, not in it."""
    service = await _service_at(pair.a, pair.b.service_id)
    with capture_logs() as logs, pytest.raises(OutboundAuthError, match="refused, HTTP 400") as refused:
        await pair.a.auth.outbound.authorization(service, ["admin"])
    assert "invalid_scope" not in refused.value.message
    assert any("invalid_scope" in str(log.get("reason")) for log in logs if log["event"] == "outbound_auth_failed")


async def test_bearer_token_file(pair: Pair, tmp_path: Path) -> None:
    """A service added with a bearer token file gets that token, read afresh on each call."""
    token_file = tmp_path / "gateway.token"
    token_file.write_text("first-token\n", encoding="utf-8")
    gateway = make_service_id()
    added = await run_cli(
        pair.a, "services", "add", "--id", gateway, "--kind", "gateway", "--name", "Fixed-token gateway",
        "--base-url", "https://gateway.example/fhir", "--bearer-token-file", str(token_file),
    )  # fmt: skip
    assert added.code == 0, added.err
    service = await _service_at(pair.a, gateway)
    assert await pair.a.auth.outbound.authorization(service, LOOKUP) == "Bearer first-token"
    token_file.write_text("second-token", encoding="utf-8")
    assert await pair.a.auth.outbound.authorization(service, LOOKUP) == "Bearer second-token"
    token_file.unlink()
    with pytest.raises(OutboundAuthError, match="bearer token file"):
        await pair.a.auth.outbound.authorization(service, LOOKUP)


async def test_service_without_credentials_is_a_typed_error(pair: Pair) -> None:
    """A member service with neither a client ID nor a token file cannot be called with credentials."""
    gateway = make_service_id()
    await pair.a.add_service(gateway)
    with pytest.raises(OutboundAuthError, match="no client ID"):
        await pair.a.auth.outbound.authorization(await _service_at(pair.a, gateway), LOOKUP)


async def _assertions_at(server: RunningServer, client_id: str) -> int:
    return await server.count("SELECT count(*) FROM client_assertions WHERE client_id = $1", client_id)
