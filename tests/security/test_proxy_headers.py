"""Forged ``X-Forwarded-*`` and ``Host`` headers steering the client address, the limiter or the token audience.

Proxy headers are believed only from ``trusted_proxies`` (none by default), so a client cannot give
itself another address to dodge the failed-authentication limiter or to forge the audit row's
caller. Outside dev mode the public base URL (and so the ``aud`` a client assertion must name, and
every URL in an answer) comes from configuration alone: ``public_base_url``, else the configured
host and port; in dev mode it follows the request.
"""

from __future__ import annotations

import asyncpg
import httpx
import msgspec
import pytest

from registry.config import AuthSettings, HttpSettings, LogSettings, Settings
from registry.http import public_base_url
from tests.auth import assertion, request_token
from tests.factories import make_ihi, make_rsa_key, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

FORGED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


async def _audit_address(server: RunningServer, request_id: str) -> str | None:
    conn = await asyncpg.connect(server.database_url)
    try:
        return await conn.fetchval("SELECT client_address FROM audit_events WHERE request_id = $1", request_id)  # type: ignore[no-any-return]
    finally:
        await conn.close()


async def test_forwarded_for_from_an_untrusted_address_is_ignored(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    """``X-Forwarded-For`` from loopback (not a trusted proxy) does not change the audit row's client address."""
    request_id = f"forged-{make_ihi()}"
    response = await client.get(f"/registry/records/{make_ihi()}", headers={**FORGED, "X-Request-Id": request_id})
    assert response.status_code == 200
    assert await _audit_address(server, request_id) == "127.0.0.1"


async def test_forwarded_for_does_not_dodge_the_failed_authentication_limiter(template: TestCluster) -> None:
    """Bad tokens with a new ``X-Forwarded-For`` each time still share the one bucket of the real address."""
    settings = Settings(auth=AuthSettings(failure_rate_per_second=0.01, failure_burst=2), log=LogSettings(access=False))
    async with (
        running_server(settings, await template.new_database(), make_service_id()) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        statuses = [
            (
                await http.get(
                    f"/registry/records/{make_ihi()}",
                    headers={"Authorization": "Bearer x.y.z", "X-Forwarded-For": f"198.51.100.{n}"},
                )
            ).status_code
            for n in range(4)
        ]
    assert statuses == [401, 401, 429, 429]


async def test_a_trusted_proxy_is_believed(template: TestCluster) -> None:
    """With the proxy's address in ``trusted_proxies``, the address it forwards is the caller's (audit, limiter)."""
    settings = Settings(trusted_proxies="127.0.0.1/32", log=LogSettings(access=False))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        request_id = f"proxied-{make_ihi()}"
        async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as http:
            response = await http.get(f"/registry/records/{make_ihi()}", headers={**FORGED, "X-Request-Id": request_id})
        assert response.status_code == 200
        assert await _audit_address(server, request_id) == "203.0.113.7"


async def test_the_token_audience_never_follows_the_host_header(server: RunningServer) -> None:
    """Outside dev mode the token URL clients must name in ``aud`` comes from configuration: a client assertion
    naming the ``Host`` it sent (or a forwarded one) is refused, one naming the configured URL is accepted."""
    key = make_rsa_key()
    client_id, _ = await server.add_client(
        make_service_id(), "system/Basic.rs", public_key_pem=key.as_pem(private=False).decode()
    )
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Host": "evil.example", **FORGED}) as http:
        discovery = (await http.get("/.well-known/smart-configuration")).json()
        assert discovery["token_endpoint"] == f"{server.base_url}/auth/token"
        forged = await request_token(
            http, assertion(key, client_id, "http://evil.example/auth/token"), "system/Basic.rs"
        )
        also_forged = await request_token(
            http, assertion(key, client_id, "https://evil.example/auth/token"), "system/Basic.rs"
        )
        honest = await request_token(
            http, assertion(key, client_id, f"{server.base_url}/auth/token"), "system/Basic.rs"
        )
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid_client")
    assert (also_forged.status_code, also_forged.json()["error"]) == (400, "invalid_client")
    assert honest.status_code == 200


async def test_urls_in_answers_never_follow_the_host_header(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A FHIR answer's ``fullUrl`` and links name the configured base, whatever ``Host`` the request sent."""
    response = await client.get("/fhir/Endpoint", params={"_count": "1"}, headers={"Host": "evil.example", **FORGED})
    assert response.status_code == 200
    assert "evil.example" not in response.text
    assert msgspec.json.decode(response.content)["link"][0]["url"].startswith(f"{server.base_url}/fhir/")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(public_base_url="https://registry.example/ief/"), "https://registry.example/ief"),
        (Settings(), "http://127.0.0.1:8080"),
        (Settings(http=HttpSettings(host="registry.internal", port=9000)), "http://registry.internal:9000"),
        (Settings(http=HttpSettings(host="::1", port=9000)), "http://[::1]:9000"),
        (Settings(dev=True), None),
        (Settings(dev=True, public_base_url="https://registry.example"), "https://registry.example"),
    ],
)
def test_the_public_base_url_comes_from_configuration(settings: Settings, expected: str | None) -> None:
    """``public_base_url``, else the configured host and port; only dev mode without one follows the request."""
    assert public_base_url(settings) == expected


def test_a_wildcard_bind_is_named_by_the_machine() -> None:
    """``--host 0.0.0.0`` (the README's first command on a server) derives a URL naming this machine, not 0.0.0.0."""
    wildcard = "0.0.0.0"  # noqa: S104 - a bind address, as an operator gives it
    derived = public_base_url(Settings(http=HttpSettings(host=wildcard, port=8080)))
    assert derived is not None
    assert wildcard not in derived
    assert derived.endswith(":8080")


def test_a_trusted_proxy_that_is_not_an_address_is_refused() -> None:
    """``IEF_TRUSTED_PROXIES`` must hold addresses or CIDR ranges (a typo is refused at start, not ignored)."""
    from registry.config import load_settings

    with pytest.raises(ValueError, match="trusted_proxies"):
        load_settings({"IEF_TRUSTED_PROXIES": "proxy.internal"})
    assert load_settings({"IEF_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1"}).trusted_proxies
