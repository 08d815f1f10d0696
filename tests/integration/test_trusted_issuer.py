"""An outside authority (such as HealthConnect) trusted beside the built-in issuer, its clients mapped to local ones."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from registry.auth.wiring import start_auth
from registry.config import AuthSettings, DatabaseSettings, OutboundSettings, Settings, TrustedIssuer
from registry.db.pool import open_database
from registry.db.queries import load_queries
from tests.auth import bearer
from tests.factories import LOOPBACK_NETWORKS, make_hpii, make_ihi, make_rsa_key, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, json_server, running_server

LOOPBACK = OutboundSettings(allowed_networks=LOOPBACK_NETWORKS)
"""The authority's JWKS is served on loopback."""
AUTHORITY = "https://healthconnect.example/oauth"
AUDIENCE = "https://registry.example"
EXTERNAL_CLIENT = "hc-gateway-7"


@dataclass(frozen=True, slots=True)
class Authority:
    """The outside authority's signing key and the registry that trusts it."""

    key: RSAKey
    server: RunningServer
    gateway: str


def _external_token(key: RSAKey, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": AUTHORITY,
        "aud": AUDIENCE,
        "sub": "service-account-1",
        "client_id": EXTERNAL_CLIENT,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "system/Basic.cu system/Basic.rs admin",
    }
    claims.update(overrides)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


@pytest.fixture(scope="module")
async def authority(template: TestCluster) -> AsyncIterator[Authority]:
    """A registry trusting an authority whose JWKS a real HTTP server publishes; its client maps to a local one."""
    key = make_rsa_key(alg="RS256", kid="hc-1")
    database_url = await template.new_database()
    service_id, gateway = make_service_id(), make_service_id()
    database = await open_database(database_url, DatabaseSettings(pool_min=0, pool_max=2))
    try:
        parts = await start_auth(database, load_queries(), Settings(), service_id)
        local, _ = await parts.clients.add(
            name="HealthConnect gateway",
            service_id=gateway,
            scopes=["system/Basic.cu", "system/Basic.rs"],
            external=True,
        )
        await parts.close()
    finally:
        await database.close()
    async with json_server({"/jwks": {"keys": [key.as_dict(private=False)]}}) as jwks_base:
        trusted = TrustedIssuer(
            issuer=AUTHORITY,
            audience=AUDIENCE,
            jwks_url=f"{jwks_base}/jwks",
            clients={EXTERNAL_CLIENT: local.client_id},
        )
        settings = Settings(auth=AuthSettings(trusted_issuers=[trusted], client_cache_seconds=0), outbound=LOOPBACK)
        async with running_server(settings, database_url, service_id) as server:
            await server.add_service(gateway)
            yield Authority(key, server, gateway)


async def _put(authority: Authority, service_id: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=authority.server.base_url, headers=bearer(token)) as http:
        return await http.put(f"/registry/records/{make_ihi()}/{service_id}", json={})


async def test_external_token_acts_as_the_mapped_client(authority: Authority) -> None:
    """A token of the trusted authority writes records of the service its mapped local client is bound to."""
    assert (await _put(authority, authority.gateway, _external_token(authority.key))).status_code == 201


async def test_external_scopes_are_capped_by_the_local_client(authority: Authority) -> None:
    """The admin scope the authority put in its token is not granted: the local client does not hold it."""
    other = make_service_id()
    await authority.server.add_service(other)
    assert (await _put(authority, other, _external_token(authority.key))).status_code == 403


async def test_unmapped_external_client_is_401(authority: Authority) -> None:
    """A token of the authority for a client with no local mapping is refused."""
    token = _external_token(authority.key, client_id="hc-unknown")
    assert (await _put(authority, authority.gateway, token)).status_code == 401


async def test_external_token_for_another_audience_is_401(authority: Authority) -> None:
    """A token of the authority meant for another audience is refused."""
    token = _external_token(authority.key, aud="https://other-registry.example")
    assert (await _put(authority, authority.gateway, token)).status_code == 401


async def test_external_token_signed_by_a_stranger_is_401(authority: Authority) -> None:
    """A token claiming the authority as issuer but signed by another key (same kid) is refused."""
    token = _external_token(make_rsa_key(alg="RS256", kid="hc-1", holder="a stranger"))
    assert (await _put(authority, authority.gateway, token)).status_code == 401


async def test_builtin_tokens_still_work_beside_the_authority(authority: Authority) -> None:
    """Trusting an outside authority leaves the built-in issuer's tokens valid."""
    assert (await _put(authority, authority.gateway, await authority.server.token())).status_code == 201


async def test_authority_keys_from_a_jwks_file(template: TestCluster, tmp_path: Path) -> None:
    """A trusted issuer whose keys are in a local JWKS file: its tokens verify, a rotated-in key is read on its kid."""
    first, second = make_rsa_key(alg="RS256", kid="file-1"), make_rsa_key(alg="RS256", kid="file-2")
    jwks_file = tmp_path / "authority.jwks"
    jwks_file.write_bytes(msgspec.json.encode({"keys": [first.as_dict(private=False)]}))
    database_url, service_id = await template.new_database(), make_service_id()
    async with running_server(Settings(), database_url, service_id) as probe:
        gateway = make_service_id()
        await probe.add_service(gateway)
        local, _ = await probe.add_client(gateway, "system/Basic.cu", external=True)
    trusted = TrustedIssuer(
        issuer=AUTHORITY, audience=AUDIENCE, jwks_file=str(jwks_file), clients={EXTERNAL_CLIENT: local}
    )
    settings = Settings(auth=AuthSettings(trusted_issuers=[trusted]), outbound=LOOPBACK)
    async with running_server(settings, database_url, service_id) as server:
        authority = Authority(first, server, gateway)
        assert (await _put(authority, gateway, _external_token(first))).status_code == 201
        jwks_file.write_bytes(msgspec.json.encode({"keys": [k.as_dict(private=False) for k in (first, second)]}))
        assert (await _put(authority, gateway, _external_token(second))).status_code == 201


async def test_an_authoritys_purpose_and_practitioner_claims_reach_the_audit(authority: Authority) -> None:
    """``purpose_of_use`` and ``requesting_practitioner`` in an authority's token are taken (and audited); a
    practitioner claim that is not an HPI-I makes the token unacceptable."""
    hpii = make_hpii()
    token = _external_token(authority.key, purpose_of_use="TREAT", requesting_practitioner=hpii)
    async with httpx.AsyncClient(base_url=authority.server.base_url, headers=bearer(token)) as http:
        answer = await http.get(f"/registry/records/{make_ihi()}")
    assert answer.status_code == 200
    rows = await authority.server.count(
        "SELECT count(*) FROM audit_events WHERE request_id = $1 AND purpose_of_use = 'TREAT' AND practitioner = $2",
        answer.headers["x-request-id"],
        hpii,
    )
    assert rows == 1
    wrong = _external_token(authority.key, requesting_practitioner="8003601234567891")
    assert (await _put(authority, authority.gateway, wrong)).status_code == 401
