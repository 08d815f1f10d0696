"""Bearer tokens and client assertions of every malformed shape: always refused, always charged to the limiter.

A token's header and claims are checked for shape and type before any JOSE code reads them
(``registry.auth.tokens``), so an ``iss`` that is an array, an ``exp`` of ``1e400`` or a header
nested 10,000 deep is a 401 (``invalid_client`` at the token endpoint) like any bad token, and
costs the caller's address a failed-authentication token: past the burst, 429.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import pytest
from joserfc import jws

from registry.auth.issuer import ASSERTION_TYPE
from registry.auth.tokens import MalformedToken, unverified
from registry.config import AuthSettings, HttpSettings, LogSettings, Settings
from tests.factories import make_ihi, make_service_id
from tests.pg import TestCluster
from tests.server import RunningServer, running_server


def b64(data: bytes) -> str:
    """base64url without padding, as JWS writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: bytes | object, claims: bytes | object, signature: str = "eA") -> str:
    """A compact JWS from raw or JSON-encoded parts (never signed unless the signature is real)."""
    parts = [part if isinstance(part, bytes) else msgspec.json.encode(part) for part in (header, claims)]
    return f"{b64(parts[0])}.{b64(parts[1])}.{signature}"


RS = {"alg": "RS256"}
DEEP = b"[" * 10_000 + b"]" * 10_000

MALFORMED: dict[str, str] = {
    "iss an array (the reported one)": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOltdfQ.eA",
    "iss an object": compact(RS, {"iss": {"a": 1}}),
    "iss a number": compact(RS, {"iss": 5}),
    "iss true": compact(RS, {"iss": True}),
    "exp a string": compact(RS, {"iss": "x", "exp": "soon"}),
    "exp infinite": compact(RS, b'{"iss":"x","exp":1e400}'),
    "exp negative": compact(RS, {"iss": "x", "exp": -1}),
    "exp an array": compact(RS, {"iss": "x", "exp": [1]}),
    "exp true": compact(RS, {"iss": "x", "exp": True}),
    "aud an object": compact(RS, {"iss": "x", "aud": {"x": 1}}),
    "aud numbers": compact(RS, {"iss": "x", "aud": [1, 2]}),
    "nbf a string": compact(RS, {"iss": "x", "nbf": "x"}),
    "iat an object": compact(RS, {"iss": "x", "iat": {}}),
    "sub an array": compact(RS, {"iss": "x", "sub": []}),
    "jti an object": compact(RS, {"iss": "x", "jti": {}}),
    "scope an object": compact(RS, {"iss": "x", "scope": {"a": "b"}}),
    "service_id a list": compact(RS, {"iss": "x", "service_id": ["a"]}),
    "purpose_of_use a list": compact(RS, {"iss": "x", "purpose_of_use": ["TREAT"]}),
    "requesting_practitioner a number": compact(RS, {"iss": "x", "requesting_practitioner": 8003611234567893}),
    "alg an array": compact({"alg": []}, {"iss": "x"}),
    "alg a number": compact({"alg": 5}, {"iss": "x"}),
    "alg missing": compact({"typ": "JWT"}, {"iss": "x"}),
    "kid an object": compact({"alg": "RS256", "kid": {}}, {"iss": "x"}),
    "header an array": compact([1], {"iss": "x"}),
    "header a string": compact("RS256", {"iss": "x"}),
    "claims an array": compact(RS, [1]),
    "claims null": compact(RS, None),
    "header nested 10,000 deep": compact(b'{"alg":"RS256","x":' + DEEP + b"}", {"iss": "x"}),
    "claims nested 10,000 deep": compact(RS, b'{"iss":"x","x":' + DEEP + b"}"),
    "claims repeat iss": compact(RS, b'{"iss":"x","iss":"y"}'),
    "claims not JSON": compact(RS, b"{iss:x}"),
    "header not JSON": compact(b"\xff\xfe", {"iss": "x"}),
    "header not base64url": "ey*J.eyJpc3MiOiJ4In0.eA",
    "padded segments": "eyJhbGciOiJSUzI1NiJ9==.eyJpc3MiOiJ4In0=.eA",
    "standard base64 alphabet": compact(RS, {"iss": "x"}).replace("-", "+") + "+/",
    "non-ASCII": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.é",
    "two parts": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0",
    "four parts": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.eA.eA",
    "empty parts": "..",
    "impossible base64 length": "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.a",
    "20 kB": "a" * 20_000,
    "a space inside": "eyJhbGciOiJSUzI1NiJ9 .eyJpc3MiOiJ4In0.eA",
}
"""Tokens that must each be refused as malformed, by name."""


def test_every_malformed_shape_is_malformed() -> None:
    """The shape check refuses every case above before any JOSE code runs."""
    for name, token in MALFORMED.items():
        with pytest.raises(MalformedToken):
            unverified(token)
        assert name


def test_a_well_formed_token_passes_the_shape_check() -> None:
    """An ordinary unsigned-looking token with claims of the right types is well-formed (trust comes later)."""
    parts = unverified(compact(RS, {"iss": "x", "aud": ["a", "b"], "exp": 1.5e9, "scope": "admin", "sub": "c"}))
    assert parts.claims["aud"] == ["a", "b"]


@pytest.fixture
async def strict_server(template: TestCluster) -> AsyncIterator[RunningServer]:
    """A server whose failed-authentication bucket holds exactly one token per malformed case (and refills slowly);
    its head limit lets the largest cases reach the verifier (the default refuses them with 431 first)."""
    auth = AuthSettings(failure_rate_per_second=0.01, failure_burst=len(MALFORMED) + len(_signed_cases()))
    settings = Settings(log=LogSettings(access=False), auth=auth, http=HttpSettings(max_header_bytes=262_144))
    async with running_server(settings, await template.new_database(), make_service_id()) as server:
        yield server


def _signed_cases() -> dict[str, dict[str, object]]:
    """Claims that are signed by the server's own issuer key, yet malformed."""
    return {
        "signed, exp a string": {"exp": "tomorrow"},
        "signed, iss an array": {"iss": ["x"]},
        "signed, aud an object": {"aud": {"x": 1}},
        "signed, sub a number": {"sub": 7},
        "signed, purpose_of_use an object": {"purpose_of_use": {"code": "TREAT"}},
    }


async def _signed(server: RunningServer, changes: dict[str, object]) -> str:
    keys = await server.auth.keys.fresh()
    claims = {
        "iss": server.auth.issuer.issuer, "aud": server.auth.issuer.audience, "sub": "operator",
        "exp": 4_000_000_000, "iat": 1_700_000_000, "scope": "admin", "service_id": server.service_id,
    } | changes  # fmt: skip
    header = {"alg": "RS256", "kid": keys.issuer.kid}
    return jws.serialize_compact(header, msgspec.json.encode(claims), keys.issuer)


ROUTES: dict[str, tuple[str, Callable[[], str], bytes | None]] = {
    "native look-up": ("GET", lambda: f"/registry/records/{make_ihi()}", None),
    "batch": ("POST", lambda: "/registry/records:batch", b'[{"ihi":"8003608166690503","serviceId":"x"}]'),
    "FHIR search": ("GET", lambda: f"/fhir/Basic?patient={make_ihi()}", None),
}
"""Where a token is checked: the application's hook (native routes, before a body is read) and the FHIR router's."""


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_malformed_bearer_tokens_are_401_and_each_is_charged(strict_server: RunningServer, route: str) -> None:
    """Every malformed bearer token is a 401 OperationOutcome, and each costs the address one failure: then 429."""
    tokens = dict(MALFORMED)
    for name, changes in _signed_cases().items():
        tokens[name] = await _signed(strict_server, changes)
    method, path, body = ROUTES[route]
    json: dict[bytes, bytes] = {b"content-type": b"application/json"} if body else {}
    async with httpx.AsyncClient(base_url=strict_server.base_url) as http:
        answers = {
            name: await http.request(
                method, path(), content=body, headers={b"authorization": f"Bearer {token}".encode(), **json}
            )
            for name, token in tokens.items()
        }
        after = await http.request(method, path(), content=body, headers={b"authorization": b"Bearer x.y.z", **json})
    wrong = {name: r.status_code for name, r in answers.items() if r.status_code != 401}
    assert not wrong
    for response in answers.values():
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert after.status_code == 429


async def test_malformed_client_assertions_are_invalid_client_and_each_is_charged(
    strict_server: RunningServer,
) -> None:
    """Every malformed client assertion at ``/auth/token`` is 400 ``invalid_client`` and costs a failure: then 429."""
    assertions = dict(MALFORMED)
    for name, changes in _signed_cases().items():
        assertions[name] = await _signed(strict_server, changes)
    form = {"grant_type": "client_credentials", "scope": "system/Basic.rs", "client_assertion_type": ASSERTION_TYPE}
    async with httpx.AsyncClient(base_url=strict_server.base_url) as http:
        answers = {}
        for name, assertion in assertions.items():
            answers[name] = await http.post("/auth/token", data={**form, "client_assertion": assertion})
        after = await http.post("/auth/token", data={**form, "client_assertion": "x.y.z"})
    wrong = {name: (r.status_code, r.text) for name, r in answers.items() if r.status_code != 400}
    assert not wrong
    assert {r.json()["error"] for r in answers.values()} == {"invalid_client"}
    assert after.status_code == 429
    assert after.json()["error"] == "slow_down"
