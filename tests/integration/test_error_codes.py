"""Coded errors: every error issue carries its code from the published ``ief-error`` code system."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import msgspec
import pytest

from registry import errors
from schemas.errors import ERRORS, ErrorCode
from tests.auth import bearer, forge
from tests.conftest import GatewayClient
from tests.factories import make_ihi, make_service_id, with_bad_check_digit
from tests.fhir import BASE, record_body
from tests.server import RunningServer
from tests.subscriptions.helpers import subscription_body

SYSTEM = f"{BASE}/CodeSystem/ief-error"


@dataclass(frozen=True, slots=True)
class Parties:
    """Who sends the requests of one case: the operator, a stranger, a gateway, and the server itself."""

    admin: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    gateway: GatewayClient
    server: RunningServer
    service_id: str


Case = Callable[[Parties], Awaitable[httpx.Response]]


async def _bad_ihi(p: Parties) -> httpx.Response:
    ihi = with_bad_check_digit(make_ihi())
    return await p.admin.put(f"/registry/records/{ihi}/{p.service_id}", json={"status": "active"})


async def _bad_service_id(p: Parties) -> httpx.Response:
    return await p.admin.put(f"/registry/records/{make_ihi()}/gateway-1", json={"status": "active"})


async def _unknown_service(p: Parties) -> httpx.Response:
    return await p.admin.put(f"/registry/records/{make_ihi()}/{make_service_id()}", json={"status": "active"})


async def _invalid_resource(p: Parties) -> httpx.Response:
    body = record_body(make_ihi(), p.service_id, status="deleted")
    return await p.admin.post("/fhir/Basic", json=body)


async def _malformed(p: Parties) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return await p.admin.put(f"/registry/records/{make_ihi()}/{p.service_id}", content=b'{"status": ', headers=headers)


async def _too_deep(p: Parties) -> httpx.Response:
    headers = {"content-type": "application/json"}
    body = b'{"status": "active", "x": ' + b"[" * 40 + b"]" * 40 + b"}"
    return await p.admin.put(f"/registry/records/{make_ihi()}/{p.service_id}", content=body, headers=headers)


async def _duplicate_key(p: Parties) -> httpx.Response:
    body = msgspec.json.encode(record_body(make_ihi(), p.service_id))
    repeated = body.replace(b'"resourceType":"Basic"', b'"resourceType":"Basic","resourceType":"Basic"', 1)
    assert repeated != body
    return await p.admin.post("/fhir/Basic", content=repeated, headers={"content-type": "application/fhir+json"})


async def _address_refused(p: Parties) -> httpx.Response:
    topic = f"{p.server.base_url}/fhir/SubscriptionTopic/patient-registration"
    body = subscription_body(topic, "https://169.254.169.254/hook")  # link-local: a cloud's metadata service
    return await p.admin.post("/fhir/Subscription", json=body)


async def _unknown_parameter(p: Parties) -> httpx.Response:
    return await p.admin.get(f"/registry/records/{make_ihi()}", params={"colour": "blue"})


async def _too_many_parameters(p: Parties) -> httpx.Response:
    limit = p.server.settings.http.max_query_params
    return await p.admin.get(f"/registry/records/{make_ihi()}", params=[("status", "active")] * (limit + 1))


async def _too_large(p: Parties) -> httpx.Response:
    big = b'{"status": "' + b"x" * (p.server.settings.http.max_body_bytes + 1) + b'"}'
    headers = {"content-type": "application/json"}
    return await p.admin.put(f"/registry/records/{make_ihi()}/{p.service_id}", content=big, headers=headers)


async def _media_type(p: Parties) -> httpx.Response:
    headers = {"content-type": "text/plain"}
    return await p.admin.put(f"/registry/records/{make_ihi()}/{p.service_id}", content=b"{}", headers=headers)


async def _format(p: Parties) -> httpx.Response:
    return await p.admin.get("/fhir/Endpoint", params={"_format": "xml"})


async def _no_token(p: Parties) -> httpx.Response:
    return await p.anonymous.get(f"/registry/records/{make_ihi()}")


async def _bad_token(p: Parties) -> httpx.Response:
    return await p.anonymous.get(f"/registry/records/{make_ihi()}", headers=bearer("not.a.token"))


async def _missing_scope(p: Parties) -> httpx.Response:
    return await p.gateway.http.get("/fhir/AuditEvent")


async def _service_binding(p: Parties) -> httpx.Response:
    return await p.gateway.http.put(f"/registry/records/{make_ihi()}/{p.service_id}", json={"status": "active"})


async def _not_found(p: Parties) -> httpx.Response:
    return await p.admin.get("/no/such/route")


async def _method(p: Parties) -> httpx.Response:
    return await p.admin.delete(f"/registry/records/{make_ihi()}")


async def _version(p: Parties) -> httpx.Response:
    created = (await p.admin.post("/fhir/Basic", json=record_body(make_ihi(), p.service_id))).json()
    body = record_body(created["subject"]["identifier"]["value"], p.service_id, record_id=created["id"])
    return await p.admin.put(f"/fhir/Basic/{created['id']}", json=body, headers={"If-Match": 'W/"7"'})


async def _criteria(p: Parties) -> httpx.Response:
    ihi = make_ihi()
    return await p.admin.put("/fhir/Basic", params={"service": p.service_id}, json=record_body(ihi, p.service_id))


CASES: dict[str, tuple[Case, ErrorCode]] = {
    "bad-ihi": (_bad_ihi, ErrorCode.INVALID_IHI),
    "bad-service-id": (_bad_service_id, ErrorCode.INVALID_SERVICE_ID),
    "unknown-service": (_unknown_service, ErrorCode.UNKNOWN_SERVICE),
    "invalid-resource": (_invalid_resource, ErrorCode.INVALID_RESOURCE),
    "malformed": (_malformed, ErrorCode.MALFORMED_REQUEST),
    "too-deep": (_too_deep, ErrorCode.JSON_TOO_DEEP),
    "duplicate-key": (_duplicate_key, ErrorCode.JSON_DUPLICATE_KEY),
    "address-refused": (_address_refused, ErrorCode.ADDRESS_REFUSED),
    "unknown-parameter": (_unknown_parameter, ErrorCode.UNKNOWN_PARAMETER),
    "too-many-parameters": (_too_many_parameters, ErrorCode.TOO_MANY_PARAMETERS),
    "too-large": (_too_large, ErrorCode.TOO_LARGE),
    "media-type": (_media_type, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    "format": (_format, ErrorCode.UNSUPPORTED_FORMAT),
    "no-token": (_no_token, ErrorCode.UNAUTHENTICATED),
    "bad-token": (_bad_token, ErrorCode.INVALID_TOKEN),
    "missing-scope": (_missing_scope, ErrorCode.SCOPE_MISSING),
    "service-binding": (_service_binding, ErrorCode.SERVICE_BINDING),
    "not-found": (_not_found, ErrorCode.NOT_FOUND),
    "method": (_method, ErrorCode.METHOD_NOT_ALLOWED),
    "version": (_version, ErrorCode.VERSION_MISMATCH),
    "criteria": (_criteria, ErrorCode.PRECONDITION_FAILED),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_each_error_names_its_code(
    name: str,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    gateway_client: GatewayClient,
    server: RunningServer,
    gateway: str,
) -> None:
    """The error answers with its code's status, and every issue codes the error from the ief-error system."""
    case, code = CASES[name]
    response = await case(Parties(client, anonymous, gateway_client, server, gateway))
    assert response.status_code == ERRORS[code].status, response.text
    issues = response.json()["issue"]
    assert issues
    for issue in issues:
        assert issue["details"]["coding"] == [{"system": SYSTEM, "code": str(code)}], issue


async def test_an_expired_token_says_so(anonymous: httpx.AsyncClient, server: RunningServer) -> None:
    """A token past its expiry (and the leeway) is refused 401 with ``token-expired``."""
    expired = forge(server, exp=1_000_000_000, iat=999_999_000)
    response = await anonymous.get(f"/registry/records/{make_ihi()}", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["issue"][0]["details"]["coding"] == [{"system": SYSTEM, "code": "token-expired"}]


async def test_the_code_system_publishes_every_code(anonymous: httpx.AsyncClient) -> None:
    """``CodeSystem/ief-error`` is public and lists every code the server answers with, and nothing else."""
    published = (await anonymous.get("/fhir/CodeSystem/ief-error")).json()
    assert published["url"] == SYSTEM
    assert [concept["code"] for concept in published["concept"]] == [str(code) for code in ErrorCode]
    value_set = (await anonymous.get("/fhir/ValueSet/ief-error")).json()
    assert value_set["compose"]["include"] == [{"system": SYSTEM}]


@pytest.mark.parametrize("kind", [kind.__name__ for kind in (errors.InvalidInput, errors.Forbidden, errors.Conflict)])
def test_a_raise_names_only_a_code_of_its_status(kind: str) -> None:
    """An error may name a more precise code of its own status; one of another status is a programming error."""
    error_class: type[errors.RegistryError] = getattr(errors, kind)
    own_status = ERRORS[error_class.code].status
    fitting = [code for code, found in ERRORS.items() if found.status == own_status]
    for code in fitting:
        assert error_class("x", code=code).code is code
    other = next(code for code, found in ERRORS.items() if found.status != own_status)
    with pytest.raises(AssertionError):
        error_class("x", code=other)
