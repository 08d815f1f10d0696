"""The built-in issuer's token endpoint: SMART Backend Services client credentials, answered in RFC 6749 form."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey

from registry.auth.issuer import ASSERTION_TYPE
from registry.config import AuthSettings, Settings
from schemas.types import ServiceStatus
from tests.auth import assertion, bearer, request_token
from tests.factories import make_ihi, make_rsa_key, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server

GATEWAY_SCOPES = "system/Basic.cu system/Basic.rs"


@pytest.fixture
async def gateway(server: RunningServer, client_key: RSAKey) -> tuple[str, str]:
    """A gateway service and a private_key_jwt client bound to it (public key registered); (service, client)."""
    service_id = make_service_id()
    await server.add_service(service_id)
    client_id, _ = await server.add_client(service_id, GATEWAY_SCOPES, public_key_pem=client_key.as_pem().decode())
    return service_id, client_id


def _token_url(server: RunningServer) -> str:
    return f"{server.base_url}/auth/token"


def _assert_oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == error


async def test_private_key_jwt_gets_a_token_that_works(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """A signed client assertion gets a bound token that writes the client's own records."""
    service_id, client_id = gateway
    response = await request_token(anonymous, assertion(client_key, client_id, _token_url(server)), GATEWAY_SCOPES)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, GATEWAY_SCOPES)
    assert response.headers["cache-control"] == "no-store"
    put = await anonymous.put(
        f"/registry/records/{make_ihi()}/{service_id}", json={}, headers=bearer(body["access_token"])
    )
    assert put.status_code == 201


async def test_requested_scopes_are_narrowed_not_widened(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """A client may ask for fewer scopes than registered (v1 spelling too); the token grants only those."""
    _service_id, client_id = gateway
    response = await request_token(anonymous, assertion(client_key, client_id, _token_url(server)), "system/Basic.read")
    assert response.json()["scope"] == "system/Basic.read"
    put = await anonymous.put(
        f"/registry/records/{make_ihi()}/{_service_id}", json={}, headers=bearer(response.json()["access_token"])
    )
    assert put.status_code == 403


async def test_unregistered_scope_is_invalid_scope(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """Asking for a scope the client is not registered for is invalid_scope, not a narrower token."""
    _service_id, client_id = gateway
    response = await request_token(anonymous, assertion(client_key, client_id, _token_url(server)), "admin")
    _assert_oauth_error(response, 400, "invalid_scope")


async def test_replayed_assertion_is_refused(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """A client assertion whose jti was accepted before is refused the second time."""
    _service_id, client_id = gateway
    signed = assertion(client_key, client_id, _token_url(server))
    assert (await request_token(anonymous, signed, GATEWAY_SCOPES)).status_code == 200
    _assert_oauth_error(await request_token(anonymous, signed, GATEWAY_SCOPES), 400, "invalid_client")


async def test_assertion_expiring_more_than_five_minutes_ahead_is_refused(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """SMART Backend Services: an assertion's exp may be at most five minutes in the future."""
    _service_id, client_id = gateway
    signed = assertion(client_key, client_id, _token_url(server), exp=int(time.time()) + 900)
    _assert_oauth_error(await request_token(anonymous, signed, GATEWAY_SCOPES), 400, "invalid_client")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://elsewhere.example/auth/token"},
        {"iss": "someone-else"},
        {"exp": 1_000_000},
        {"jti": None},
    ],
    ids=["wrong-aud", "iss-not-sub", "expired", "no-jti"],
)
async def test_bad_assertion_claims_are_refused(
    server: RunningServer,
    anonymous: httpx.AsyncClient,
    client_key: RSAKey,
    gateway: tuple[str, str],
    overrides: dict[str, object],
) -> None:
    """An assertion with the wrong audience, iss other than sub, past exp or no jti is invalid_client."""
    _service_id, client_id = gateway
    signed = assertion(client_key, client_id, _token_url(server), **overrides)
    _assert_oauth_error(await request_token(anonymous, signed, GATEWAY_SCOPES), 400, "invalid_client")


async def test_assertion_signed_by_another_key_is_refused(
    server: RunningServer, anonymous: httpx.AsyncClient, gateway: tuple[str, str]
) -> None:
    """An assertion signed by a key the client did not register is invalid_client."""
    _service_id, client_id = gateway
    signed = assertion(make_rsa_key(holder="a stranger"), client_id, _token_url(server))
    _assert_oauth_error(await request_token(anonymous, signed, GATEWAY_SCOPES), 400, "invalid_client")


async def test_es384_client_with_inline_jwks(server: RunningServer, anonymous: httpx.AsyncClient) -> None:
    """A client registered with an inline JWKS of an EC P-384 key authenticates with ES384."""
    service_id = make_service_id()
    key = ECKey.generate_key("P-384", parameters={"kid": "ec-1", "alg": "ES384"}, private=True)
    client_id, _ = await server.add_client(service_id, "system/Basic.rs", jwks={"keys": [key.as_dict(private=False)]})
    response = await request_token(anonymous, assertion(key, client_id, _token_url(server)), "system/Basic.rs")
    assert response.status_code == 200, response.text


async def test_disabled_client_gets_no_token(
    server: RunningServer, anonymous: httpx.AsyncClient, client_key: RSAKey, gateway: tuple[str, str]
) -> None:
    """A disabled client cannot get a token."""
    _service_id, client_id = gateway
    await server.auth.clients.set_status(client_id, ServiceStatus.DISABLED)
    response = await request_token(anonymous, assertion(client_key, client_id, _token_url(server)), GATEWAY_SCOPES)
    _assert_oauth_error(response, 400, "invalid_client")


async def test_client_secret_is_refused_unless_allowed(server: RunningServer, anonymous: httpx.AsyncClient) -> None:
    """With production defaults, client_secret_basic is invalid_client (401) even for a secret client."""
    client_id, secret = await server.add_client(make_service_id(), "system/Basic.rs", secret=True)
    assert secret
    response = await anonymous.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/Basic.rs"},
        auth=(client_id, secret),
    )
    _assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.fixture(scope="module")
async def secrets_server(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A server that accepts client secrets (as dev mode does)."""
    settings = Settings(auth=AuthSettings(allow_client_secrets=True, client_cache_seconds=0))
    async with running_server(settings, await template.new_database(), make_service_id()) as running:
        yield running


async def test_client_secret_basic_and_post_when_allowed(secrets_server: RunningServer) -> None:
    """Where allowed, a secret client authenticates with Basic credentials or in the form; a wrong secret fails."""
    client_id, secret = await secrets_server.add_client(make_service_id(), "system/Basic.rs", secret=True)
    assert secret
    form = {"grant_type": "client_credentials", "scope": "system/Basic.rs"}
    async with httpx.AsyncClient(base_url=secrets_server.base_url) as http:
        basic = await http.post("/auth/token", data=form, auth=(client_id, secret))
        posted = await http.post("/auth/token", data={**form, "client_id": client_id, "client_secret": secret})
        wrong = await http.post("/auth/token", data=form, auth=(client_id, secret + "x"))
        config = (await http.get("/.well-known/smart-configuration")).json()
    assert basic.status_code == 200, basic.text
    assert posted.status_code == 200, posted.text
    _assert_oauth_error(wrong, 401, "invalid_client")
    assert "client_secret_basic" in config["token_endpoint_auth_methods_supported"]


async def test_form_encoding_only(anonymous: httpx.AsyncClient) -> None:
    """A JSON body is refused with an RFC 6749 invalid_request, not an OperationOutcome."""
    response = await anonymous.post("/auth/token", json={"grant_type": "client_credentials"})
    _assert_oauth_error(response, 400, "invalid_request")


async def test_unsupported_grant_type(anonymous: httpx.AsyncClient) -> None:
    """Any grant but client_credentials is unsupported_grant_type."""
    response = await anonymous.post("/auth/token", data={"grant_type": "password", "username": "u", "password": "p"})
    _assert_oauth_error(response, 400, "unsupported_grant_type")


async def test_no_client_authentication_is_invalid_client(anonymous: httpx.AsyncClient) -> None:
    """A token request with no client authentication at all is invalid_client."""
    response = await anonymous.post("/auth/token", data={"grant_type": "client_credentials", "scope": "admin"})
    _assert_oauth_error(response, 400, "invalid_client")


async def test_wrong_assertion_type_is_invalid_client(anonymous: httpx.AsyncClient) -> None:
    """A client assertion of another type is invalid_client."""
    response = await anonymous.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "admin",
            "client_assertion_type": ASSERTION_TYPE.replace("jwt-bearer", "saml2-bearer"),
            "client_assertion": "x.y.z",
        },
    )
    _assert_oauth_error(response, 400, "invalid_client")


async def test_discovery_documents(server: RunningServer, anonymous: httpx.AsyncClient) -> None:
    """SMART configuration names the token endpoint and JWKS; the JWKS holds the issuer and outbound keys."""
    config = (await anonymous.get("/.well-known/smart-configuration")).json()
    assert config["token_endpoint"] == _token_url(server)
    assert config["jwks_uri"] == f"{server.base_url}/.well-known/jwks.json"
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert config["grant_types_supported"] == ["client_credentials"]
    keys = (await anonymous.get("/.well-known/jwks.json")).json()["keys"]
    kids = {key["kid"] for key in keys}
    assert {server.auth.keys.keys.issuer.kid, server.auth.keys.keys.outbound.kid} <= kids
    assert all("d" not in key for key in keys)


async def test_failed_client_authentications_are_rate_limited(template: TestCluster, client_key: RSAKey) -> None:
    """After the failure burst, further failed client authentications from an address get 429 with Retry-After."""
    settings = Settings(auth=AuthSettings(failure_rate_per_second=0.05, failure_burst=3))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        client_id, _ = await server.add_client(
            make_service_id(), "system/Basic.rs", public_key_pem=client_key.as_pem().decode()
        )
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            answers = []
            for _ in range(5):
                bad = assertion(make_rsa_key(holder="a stranger"), client_id, _token_url(server))
                answers.append(await request_token(http, bad, "system/Basic.rs"))
    assert [a.status_code for a in answers] == [400, 400, 400, 429, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert answers[-1].json()["error"] == "slow_down"
