"""The operator's auth commands as the real CLI: token, clients add/list/rotate/disable/enable, keys rotate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from joserfc.jwk import RSAKey

from registry.config import Settings
from tests.auth import bearer
from tests.cli import run_cli
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, free_port, running_server


@pytest.fixture(scope="module")
async def own(template: TestCluster, settings: Settings) -> AsyncIterator[RunningServer]:
    """A server of this module's own (its keys get rotated)."""
    async with running_server(settings, await template.new_database(), make_service_id()) as running:
        yield running


async def _get(server: RunningServer, token: str) -> int:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        return (await http.get(f"/registry/records/{make_ihi()}", headers=bearer(token))).status_code


async def test_token_prints_only_a_working_token(own: RunningServer) -> None:
    """`token --scopes` prints one line, a JWT, which the server accepts."""
    result = await run_cli(own, "token", "--scopes", "system/Basic.rs", "--lifetime", "60")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    assert result.out.strip().count(".") == 2
    assert await _get(own, result.out.strip()) == 200


@dataclass(frozen=True, slots=True)
class _Fresh:
    database_url: str
    service_id: str


async def test_token_on_a_fresh_database_prints_only_the_token(template: TestCluster) -> None:
    """On a database with no keys yet, `token` creates them and stdout still holds the token alone."""
    fresh = _Fresh(await template.empty_database("ief_cli_fresh"), make_service_id())
    result = await run_cli(fresh, "token", "--scopes", "admin", extra_env={"IEF_LOG_LEVEL": "info"})
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    assert result.out.strip().count(".") == 2
    assert "key_created" in result.err


async def test_token_bound_to_another_service_is_accepted_and_bound_to_it(own: RunningServer) -> None:
    """`token --service-id X` prints a token of this instance's issuer that the server accepts, bound to X."""
    bound, other = make_service_id(), make_service_id()
    for service_id in (bound, other):
        await own.add_service(service_id)
    result = await run_cli(own, "token", "--scopes", "system/Basic.cu system/Basic.rs", "--service-id", bound)
    assert result.code == 0, result.err
    token = result.out.strip()
    claims = msgspec.json.decode(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (claims["iss"], claims["service_id"]) == (own.auth.issuer.issuer, bound)
    async with httpx.AsyncClient(base_url=own.base_url, headers=bearer(token)) as http:
        ihi = make_ihi()
        assert (await http.put(f"/registry/records/{ihi}/{bound}", json={})).status_code == 201
        assert (await http.put(f"/registry/records/{ihi}/{other}", json={})).status_code == 403
        assert (await http.put(f"/registry/records/{ihi}/{own.service_id}", json={})).status_code == 403


async def test_token_refuses_unknown_scopes(own: RunningServer) -> None:
    """`token` with a scope this server does not know exits non-zero and prints no token."""
    result = await run_cli(own, "token", "--scopes", "everything")
    assert result.code != 0
    assert result.out == ""
    assert "unknown scope" in result.err


async def test_client_lifecycle(own: RunningServer, client_key: RSAKey, tmp_path: Path) -> None:
    """clients add prints the ID last; list shows it; disable makes its tokens 401; enable restores them."""
    pem = tmp_path / "gateway.pem"
    pem.write_bytes(client_key.as_pem(private=False))
    service_id = make_service_id()
    added = await run_cli(
        own, "clients", "add", "Gateway X", "--service-id", service_id, "--scopes", "system/Basic.rs",
        "--public-key", str(pem), "--rate", "50",
    )  # fmt: skip
    assert added.code == 0, added.err
    client_id = added.last_line
    listed = await run_cli(own, "clients", "list", "--json")
    rows = {row["client_id"]: row for row in map(msgspec.json.decode, listed.out.splitlines())}
    assert rows[client_id]["service_id"] == service_id
    assert (rows[client_id]["auth_method"], rows[client_id]["key_source"]) == ("private_key_jwt", "public key")
    assert "operator" in rows
    token = await own.token("system/Basic.rs", client_id=client_id, service_id=service_id)
    assert await _get(own, token) == 200
    assert (await run_cli(own, "clients", "disable", client_id)).code == 0
    assert await _get(own, token) == 401
    assert (await run_cli(own, "clients", "enable", client_id)).code == 0
    assert await _get(own, token) == 200


async def test_secret_is_printed_once_and_stored_hashed(own: RunningServer) -> None:
    """clients add --secret prints the secret before the ID; rotate prints a new one; only hashes are stored."""
    added = await run_cli(
        own, "clients", "add", "Dev tool", "--service-id", make_service_id(), "--scopes", "admin", "--secret"
    )
    assert added.code == 0, added.err
    first_secret = added.out.splitlines()[0].rsplit(" ", 1)[1]
    client_id = added.last_line
    rotated = await run_cli(own, "clients", "rotate", client_id)
    assert rotated.code == 0, rotated.err
    second_secret = rotated.out.splitlines()[0].rsplit(" ", 1)[1]
    assert first_secret != second_secret
    conn = await asyncpg.connect(own.database_url)
    try:
        stored = await conn.fetchval("SELECT secret_hash FROM clients WHERE client_id = $1", client_id)
    finally:
        await conn.close()
    assert stored.startswith("scrypt$")
    assert second_secret not in stored


async def test_clients_add_refuses_bad_input(own: RunningServer) -> None:
    """An unknown scope or two kinds of key material are refused with a message, and nothing is added."""
    bad_scope = await run_cli(
        own, "clients", "add", "X", "--service-id", make_service_id(), "--scopes", "root", "--secret"
    )
    both = await run_cli(
        own, "clients", "add", "Y", "--service-id", make_service_id(), "--scopes", "admin", "--secret",
        "--jwks-url", "https://keys.example/jwks.json",
    )  # fmt: skip
    plain_http = await run_cli(
        own, "clients", "add", "Z", "--service-id", make_service_id(), "--scopes", "admin",
        "--jwks-url", "http://keys.example/jwks.json",
    )  # fmt: skip
    assert (bad_scope.code, both.code, plain_http.code) == (1, 1, 1)
    assert "unknown scope" in bad_scope.err
    assert "exactly one" in both.err
    assert "https" in plain_http.err


async def test_keys_rotate_publishes_the_new_key(own: RunningServer) -> None:
    """keys rotate makes a new active issuer key; the JWKS then holds it beside the old one."""
    old_kid = (await own.auth.keys.fresh()).issuer.kid
    rotated = await run_cli(own, "keys", "rotate")
    assert rotated.code == 0, rotated.err
    new_kid = rotated.out.split()[-1]
    async with httpx.AsyncClient(base_url=own.base_url) as http:
        kids = {key["kid"] for key in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= kids
    assert new_kid != old_kid


async def test_keys_rotate_each_purpose_and_the_audit_key_is_never_published(own: RunningServer) -> None:
    """`keys rotate --requester` makes a new ES256 key the JWKS publishes beside the old one (gateways verify
    IEF-Requester with it); the audit key, rotated or not, is never in the JWKS; one purpose at a time."""
    keys = await own.auth.keys.fresh()
    old_requester, old_audit = keys.requester.kid, keys.audit.kid
    requester = await run_cli(own, "keys", "rotate", "--requester")
    audit = await run_cli(own, "keys", "rotate", "--audit")
    both = await run_cli(own, "keys", "rotate", "--requester", "--audit")
    assert (requester.code, audit.code, both.code) == (0, 0, 1), (requester.err, audit.err)
    assert requester.out.startswith("new active requester key ")
    assert audit.out.startswith("new active audit key ")
    assert "one key at a time" in both.err
    new_requester, new_audit = requester.out.split()[-1], audit.out.split()[-1]
    async with httpx.AsyncClient(base_url=own.base_url) as http:
        published = {key["kid"]: key for key in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_requester, new_requester} <= set(published)
    assert published[new_requester]["alg"] == "ES256"
    assert not {old_audit, new_audit} & set(published)


async def test_serve_dev_prints_a_ready_admin_token(template: TestCluster, tmp_path: Path) -> None:
    """`serve --dev` prints a labelled admin token on stdout that works at once, and accepts client secrets."""
    fresh = _Fresh(await template.new_database(), make_service_id())
    port = free_port()
    env = {
        **os.environ, "IEF_DATABASE_URL": fresh.database_url, "IEF_SERVICE_ID": fresh.service_id,
        "IEF_DATA_DIR": str(tmp_path), "IEF_LOG_LEVEL": "warning",
    }  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry", "serve", "--dev", "--port", str(port), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        label = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        token = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode().strip()
        assert label.startswith(b"Development admin token")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health/live")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            listed = await http.get(f"/registry/records/{make_ihi()}", headers=bearer(token))
            config = (await http.get("/.well-known/smart-configuration")).json()
        assert listed.status_code == 200
        assert "client_secret_basic" in config["token_endpoint_auth_methods_supported"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
