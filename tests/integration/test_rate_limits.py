"""Rate limits: a token bucket per client, a per-client override, and a bucket per address for failed logins."""

from __future__ import annotations

import httpx

from registry.config import AuthSettings, Settings
from tests.auth import bearer
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

# Refill so slow (one request per 20 s) that a noisy machine cannot refill a bucket mid-test.
SLOW = 0.05


async def _statuses(server: RunningServer, token: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=bearer(token)) as http:
        return [await http.get(f"/registry/records/{make_ihi()}") for _ in range(count)]


async def test_burst_past_the_limit_gets_429_and_other_clients_are_unaffected(template: TestCluster) -> None:
    """A client's burst past its bucket gets 429 OperationOutcomes with Retry-After; another client still gets 200."""
    settings = Settings(auth=AuthSettings(rate_per_second=SLOW, rate_burst=3, client_cache_seconds=0))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        noisy, _ = await server.add_client(make_service_id(), "system/Basic.rs", external=True)
        quiet, _ = await server.add_client(make_service_id(), "system/Basic.rs", external=True)
        burst = await _statuses(server, await server.token("system/Basic.rs", client_id=noisy), 5)
        other = await _statuses(server, await server.token("system/Basic.rs", client_id=quiet), 1)
    assert [r.status_code for r in burst] == [200, 200, 200, 429, 429]
    refused = burst[-1]
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert int(refused.headers["retry-after"]) >= 1
    assert [r.status_code for r in other] == [200]


async def test_per_client_rate_overrides_the_default(template: TestCluster) -> None:
    """A client registered with its own rate is limited by it (same burst-to-rate ratio as the default)."""
    settings = Settings(auth=AuthSettings(rate_per_second=1000, rate_burst=2000, client_cache_seconds=0))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        slow, _ = await server.add_client(make_service_id(), "system/Basic.rs", external=True, rate_per_second=SLOW)
        limited = await _statuses(server, await server.token("system/Basic.rs", client_id=slow), 3)
        default = await _statuses(server, await server.token("system/Basic.rs"), 3)
    assert [r.status_code for r in limited] == [200, 429, 429]
    assert [r.status_code for r in default] == [200, 200, 200]


async def test_failed_authentications_from_an_address_get_429(template: TestCluster) -> None:
    """Past the failure burst, bad tokens from one address get 429; valid tokens from it still pass."""
    settings = Settings(auth=AuthSettings(failure_rate_per_second=SLOW, failure_burst=2))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        bad = await _statuses(server, "not-a-token", 4)
        good = await _statuses(server, await server.token("system/Basic.rs"), 1)
    assert [r.status_code for r in bad] == [401, 401, 429, 429]
    assert [r.status_code for r in good] == [200]
