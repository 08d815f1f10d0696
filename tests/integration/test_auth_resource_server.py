"""The resource server: protected routes need a valid bearer token; each failure is a 401 OperationOutcome."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import msgspec
import pytest

from registry.auth.guard import required_scopes
from registry.auth.keys import ISSUER
from registry.config import Settings
from registry.route import route_spec
from schemas.types import ServiceStatus
from tests.auth import bearer, claims_for, forge
from tests.conftest import GatewayClient
from tests.factories import make_ihi, make_rsa_key, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, route_handlers, running_server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assert_refused(response: httpx.Response, reason: str, *, token_sent: bool = True) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert reason in response.json()["issue"][0]["diagnostics"]
    expected = 'Bearer error="invalid_token"' if token_sent else "Bearer"
    assert response.headers["www-authenticate"] == expected


async def _get(server: RunningServer, token: str | None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        return await http.get(f"/registry/records/{make_ihi()}", headers=bearer(token) if token else {})


async def test_no_token_is_401_with_bearer_challenge(anonymous: httpx.AsyncClient) -> None:
    """A request without a token gets 401, an OperationOutcome and a bare WWW-Authenticate: Bearer."""
    _assert_refused(await anonymous.get(f"/registry/records/{make_ihi()}"), "bearer token", token_sent=False)


async def test_other_authorization_scheme_is_401(anonymous: httpx.AsyncClient) -> None:
    """Basic credentials on an API route are no bearer token: 401 with a bare Bearer challenge."""
    response = await anonymous.get(f"/registry/records/{make_ihi()}", headers={"Authorization": "Basic dTpw"})
    _assert_refused(response, "bearer token", token_sent=False)


async def test_valid_token_is_accepted(server: RunningServer) -> None:
    """A token forged exactly as the issuer signs them is accepted (the forging helper is sound)."""
    assert (await _get(server, forge(server))).status_code == 200


async def test_expired_token_is_401(server: RunningServer) -> None:
    """A token whose exp is past (beyond the leeway) is refused."""
    now = int(time.time())
    _assert_refused(await _get(server, forge(server, iat=now - 900, exp=now - 600)), "expired")


async def test_not_yet_valid_token_is_401(server: RunningServer) -> None:
    """A token whose nbf is in the future (beyond the leeway) is refused."""
    _assert_refused(await _get(server, forge(server, nbf=int(time.time()) + 600)), "not valid yet")


async def test_token_issued_in_the_future_is_401(server: RunningServer) -> None:
    """A token whose iat is in the future (beyond the leeway) is refused."""
    _assert_refused(await _get(server, forge(server, iat=int(time.time()) + 600)), "in the future")


async def test_wrong_issuer_is_401(server: RunningServer) -> None:
    """A token naming an issuer that is not trusted here is refused, even signed with a real key."""
    _assert_refused(await _get(server, forge(server, iss="https://someone-else.example")), "issuer")


async def test_wrong_audience_is_401(server: RunningServer) -> None:
    """A token meant for another audience is refused."""
    _assert_refused(await _get(server, forge(server, aud="https://another-registry.example")), "audience")


async def test_bad_signature_is_401(server: RunningServer) -> None:
    """A token signed by another key under the issuer's kid is refused."""
    impostor = make_rsa_key(alg="RS256", kid=server.auth.keys.keys.issuer.kid or "", holder="an impostor")
    _assert_refused(await _get(server, forge(server, key=impostor)), "signature does not verify")


async def test_tampered_claims_are_401(server: RunningServer) -> None:
    """A real token whose payload was changed (scope widened) no longer verifies."""
    token = await server.token("system/Basic.rs")
    head, _payload, signature = token.split(".")
    widened = _b64(msgspec.json.encode(claims_for(server, scope="admin")))
    _assert_refused(await _get(server, f"{head}.{widened}.{signature}"), "signature does not verify")


async def test_alg_none_is_401(server: RunningServer) -> None:
    """An unsigned token (alg none) is refused."""
    head = _b64(msgspec.json.encode({"alg": "none", "typ": "JWT"}))
    body = _b64(msgspec.json.encode(claims_for(server)))
    _assert_refused(await _get(server, f"{head}.{body}."), "'none' is not accepted")


async def test_hs256_signed_with_the_public_key_is_401(server: RunningServer) -> None:
    """An HS256 token whose HMAC key is the issuer's public key bytes (key confusion) is refused."""
    public_pem = server.auth.keys.keys.issuer.as_pem(private=False)
    head = _b64(msgspec.json.encode({"alg": "HS256", "typ": "JWT", "kid": server.auth.keys.keys.issuer.kid}))
    body = _b64(msgspec.json.encode(claims_for(server)))
    signature = _b64(hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    _assert_refused(await _get(server, f"{head}.{body}.{signature}"), "'HS256' is not accepted")


async def test_garbage_token_is_401(server: RunningServer) -> None:
    """A bearer value that is not a JWT at all is refused."""
    _assert_refused(await _get(server, "not-a-jwt"), "not a signed JWT")


async def test_token_of_a_disabled_client_is_401(server: RunningServer, gateway_client: GatewayClient) -> None:
    """Once its client is disabled, a still-valid token is refused; enabling it again restores it."""
    url = f"/registry/records/{make_ihi()}"
    assert (await gateway_client.http.get(url)).status_code == 200
    await server.auth.clients.set_status(gateway_client.client_id, ServiceStatus.DISABLED)
    _assert_refused(await gateway_client.http.get(url), "unknown or disabled")
    await server.auth.clients.set_status(gateway_client.client_id, ServiceStatus.ENABLED)
    assert (await gateway_client.http.get(url)).status_code == 200


async def test_token_of_an_unknown_client_is_401(server: RunningServer) -> None:
    """A token naming a client this registry does not have is refused."""
    _assert_refused(await _get(server, forge(server, sub="no-such-client")), "unknown or disabled")


async def test_missing_scope_is_403_naming_it(server: RunningServer, gateway_client: GatewayClient) -> None:
    """A token without the route's scope gets 403 with an OperationOutcome naming the scope."""
    reader = await server.headers("system/Basic.rs")
    async with httpx.AsyncClient(base_url=server.base_url, headers=reader) as http:
        response = await http.put(f"/registry/records/{make_ihi()}/{gateway_client.service_id}", json={})
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "system/Basic.cu" in response.json()["issue"][0]["diagnostics"]


async def test_v1_scope_spelling_is_accepted(server: RunningServer) -> None:
    """A token with the SMART v1 spelling system/Basic.read may read records."""
    assert (await _get(server, forge(server, scope="system/Basic.read"))).status_code == 200


async def test_gateway_writing_another_services_record_is_403(
    server: RunningServer, gateway_client: GatewayClient
) -> None:
    """A gateway's write of a record of another service is 403 and nothing is stored."""
    other = make_service_id()
    await server.add_service(other)
    ihi = make_ihi()
    response = await gateway_client.http.put(f"/registry/records/{ihi}/{other}", json={"status": "active"})
    assert response.status_code == 403
    assert gateway_client.service_id in response.json()["issue"][0]["diagnostics"]
    async with httpx.AsyncClient(base_url=server.base_url, headers=await server.headers()) as admin:
        listed = await admin.get(f"/registry/records/{ihi}", params={"status": "active,removed,archived"})
    assert listed.json()["records"] == []


async def test_gateway_writes_its_own_records(gateway_client: GatewayClient) -> None:
    """A gateway writes and reads records of the service it is bound to."""
    ihi = make_ihi()
    put = await gateway_client.http.put(f"/registry/records/{ihi}/{gateway_client.service_id}", json={})
    assert put.status_code == 201
    listed = await gateway_client.http.get(f"/registry/records/{ihi}")
    assert [r["serviceId"] for r in listed.json()["records"]] == [gateway_client.service_id]


async def test_batch_items_of_another_service_are_refused_one_by_one(
    server: RunningServer, gateway_client: GatewayClient, client: httpx.AsyncClient
) -> None:
    """In a gateway's batch, items of another service are item errors and not stored; its own are applied."""
    other = make_service_id()
    await server.add_service(other)
    mine, theirs = make_ihi(), make_ihi()
    items = [
        {"ihi": mine, "serviceId": gateway_client.service_id, "status": "active"},
        {"ihi": theirs, "serviceId": other, "status": "active"},
    ]
    response = await gateway_client.http.post("/registry/records:batch", json=items)
    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["errors"]) == (1, 1)
    assert body["results"][1]["error"].startswith("forbidden:")
    assert (await client.get(f"/registry/records/{theirs}")).json()["records"] == []


async def test_authentication_comes_before_parameter_checks(anonymous: httpx.AsyncClient) -> None:
    """Without a token, an unknown query parameter is answered 401, not 400: strangers learn nothing."""
    response = await anonymous.get(f"/registry/records/{make_ihi()}", params={"colour": "blue"})
    _assert_refused(response, "bearer token", token_sent=False)


@pytest.mark.parametrize(
    "path",
    [
        "/health/live",
        "/health/ready",
        "/.well-known/jwks.json",
        "/.well-known/smart-configuration",
        "/schema/openapi.json",
    ],
)
async def test_public_routes_need_no_token(anonymous: httpx.AsyncClient, path: str) -> None:
    """Health, discovery documents and the OpenAPI description answer without a token."""
    assert (await anonymous.get(path)).status_code == 200


def test_every_route_declares_public_or_scopes() -> None:
    """Each route handler declares opt public or scopes; Litestar's own OPTIONS handlers inherit or fail closed."""
    checked = 0
    for path, handler in route_handlers():
        if handler.http_methods == {"OPTIONS"} and not handler.include_in_schema:
            # Public only where the whole controller is (health); elsewhere admin.
            assert required_scopes(handler) in (None, ("admin",)), path
            continue
        declared = route_spec(handler).public or bool(route_spec(handler).scopes)
        assert declared, f"{path} {sorted(handler.http_methods)} declares neither public nor scopes"
        checked += 1
    assert checked >= 8


async def test_admin_routes_refuse_every_other_scope(server: RunningServer) -> None:
    """Each route that declares only admin (metrics, the audit checkpoints) refuses a token with every other scope."""
    admin_only = sorted(
        path
        for path, handler in route_handlers()
        if "GET" in handler.http_methods and required_scopes(handler) == ("admin",) and "{" not in path
    )
    assert {"/metrics", "/audit/checkpoints"} <= set(admin_only)
    others = "system/Basic.cu system/Basic.rs system/Endpoint.rs system/ImagingStudy.rs " \
             "system/DocumentReference.rs system/Subscription.cruds system/AuditEvent.rs"  # fmt: skip
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for path in admin_only:
            refused = await http.get(path, headers=await server.headers(others))
            allowed = await http.get(path, headers=await server.headers("admin"))
            assert (path, refused.status_code, allowed.status_code) == (path, 403, 200)
            assert refused.json()["resourceType"] == "OperationOutcome"


async def test_rotated_key_keeps_old_tokens_valid(template: TestCluster, settings: Settings) -> None:
    """After keys rotate, tokens of the old key still verify, both keys are published, new tokens use the new key."""
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        old_token = await server.token()
        old_kid = server.auth.keys.keys.issuer.kid
        new_kid = await server.auth.keys.rotate(ISSUER)
        new_token = await server.token()
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            published = {key["kid"] for key in (await http.get("/.well-known/jwks.json")).json()["keys"]}
            for token in (old_token, new_token):
                assert (await http.get(f"/registry/records/{make_ihi()}", headers=bearer(token))).status_code == 200
    assert {old_kid, new_kid} <= published
    assert new_kid != old_kid
    assert msgspec.json.decode(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == new_kid


async def test_reading_the_keys_again_imports_none_again(server: RunningServer) -> None:
    """Keys re-read on every use (refresh 0) come from the database each time, but no key is imported twice."""
    first = await server.auth.keys.fresh()
    await server.token()
    again = await server.auth.keys.fresh()
    assert again is not first  # read again
    assert again.issuer is first.issuer
    assert again.outbound is first.outbound
    assert [key.kid for key in again.issuer_keys] == [key.kid for key in first.issuer_keys]
