"""A reference gateway: a real HTTP server answering ImagingStudy and DocumentReference searches.

It stands for a member gateway in the broker's tests, the benchmark and demonstrations. It serves
the fixture shapes in ``tests/data/gateway/`` in either search style:

- ``ief``: ``GET {base}/ImagingStudy?patient.identifier=<IHI system>|<IHI>`` with ``modality``,
  ``started`` (``date`` for DocumentReference) and ``_count`` (with ``total`` and a ``next`` link
  when it holds more); contained Endpoints with relative addresses;
- ``harmony``: ``GET {base}/ImagingStudy?patient=<id>`` as today's Harmony gateways answer it:
  ``id`` = Study Instance UID, inline endpoint objects with relative JMIX addresses, no paging, no
  date filter.

It records every search it gets (path, query, ``Authorization``, ``IEF-Request-Id`` and ``IEF-Requester``), and its
``behaviour`` can be switched while it runs: a delay, an error status, an HTML page, garbage,
a huge body, a hang (until the caller gives up). It takes a fixed bearer token, or issues its own
tokens to a client that authenticates with ``private_key_jwt`` (SMART Backend Services) signed by
a key in a JWKS URL it trusts, as a real gateway's token endpoint would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec
from joserfc import jwt
from joserfc.jwk import KeySet

from broker.discovery.dates import parse_criterion
from tests.clients import SHARED_TLS
from tests.server import read_body, serving

__all__ = ("Behaviour", "ReferenceGateway", "Seen", "reference_gateway")

DATA = Path(__file__).resolve().parent / "data" / "gateway"
IHI_SYSTEMS = ("http://ns.electronichealth.net.au/id/hi/ihi/1.0", "http://ns.electronichealth.net.au/id/ihi/1.0")
FHIR_JSON = b"application/fhir+json"
_CHUNK = b" " * 65_536
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
_numbers = itertools.count(1)


@dataclass
class Behaviour:
    """How the gateway misbehaves (everything off: it answers searches correctly at once)."""

    delay: float = 0.0
    """Seconds to wait before answering."""
    status: int | None = None
    """Answer every search with this HTTP status (and an OperationOutcome)."""
    html: bool = False
    """Answer 200 with an HTML page."""
    garbage: bool = False
    """Answer 200 ``application/fhir+json`` with bytes that are not JSON."""
    deep: bool = False
    """Answer 200 with a Bundle whose extension nests 100,000 arrays."""
    not_bundle: bool = False
    """Answer 200 with an OperationOutcome instead of a Bundle."""
    huge: int = 0
    """Answer 200 with a body of this many bytes, streamed without a ``Content-Length``."""
    hang: bool = False
    """Never answer (until the caller disconnects)."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One search the gateway received."""

    path: str
    query: list[tuple[str, str]]
    authorization: str | None
    request_id: str | None
    requester: str | None = None
    """The ``IEF-Requester`` assertion the broker sent (who it asked for)."""


@dataclass
class ReferenceGateway:
    """The gateway's data, behaviour and what it saw; ``base_url`` (its FHIR base) is set while it runs."""

    style: str = "ief"
    token: str | None = None
    """A fixed bearer token every search must carry (None: see ``client_id``, else no check)."""
    client_id: str | None = None
    """The client this gateway gave the broker: tokens from ``/auth/token`` for ``private_key_jwt`` assertions."""
    jwks_url: str | None = None
    """Where the keys of ``client_id`` are published (the broker's ``/.well-known/jwks.json``)."""
    announced_token_endpoint: str | None = None
    """The token endpoint its SMART configuration names (None: its own ``/auth/token``)."""
    behaviour: Behaviour = field(default_factory=Behaviour)
    seen: list[Seen] = field(default_factory=list)
    token_requests: int = 0
    base_url: str = ""
    _resources: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    _issued: set[str] = field(default_factory=set)

    @property
    def searches(self) -> int:
        """How many searches reached the gateway."""
        return len(self.seen)

    def study(
        self,
        ihi: str,
        uid: str,
        *,
        started: str = "2024-03-01T09:30:00+10:00",
        modality: str = "CT",
        description: str = "CT chest",
    ) -> dict[str, Any]:
        """Hold an imaging study for a patient (in this gateway's style); returns it as the gateway serves it."""
        resource = _fixture(
            f"ImagingStudy-{self.style}.json",
            id=f"is-{next(_numbers)}", uid=uid, ihi=ihi, started=started, modality=modality,
            description=description, accession=f"ACC{next(_numbers)}",
        )  # fmt: skip
        self._resources.setdefault(("ImagingStudy", ihi), []).append(resource)
        return resource

    def document(
        self, ihi: str, uid: str, *, date: str = "2024-03-01T12:00:00+10:00", description: str = "CT chest report"
    ) -> dict[str, Any]:
        """Hold a report (DocumentReference) for a patient; returns it as the gateway serves it."""
        resource = _fixture(
            "DocumentReference-ief.json", id=f"dr-{next(_numbers)}", uid=uid, ihi=ihi, started=date,
            description=description,
        )  # fmt: skip
        self._resources.setdefault(("DocumentReference", ihi), []).append(resource)
        return resource

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application."""
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if path == "/fhir/.well-known/smart-configuration":
            endpoint = self.announced_token_endpoint or f"{self._origin}/auth/token"
            await _send_json(send, 200, {"token_endpoint": endpoint}, b"application/json")
            return
        if path == "/auth/token" and scope["method"] == "POST":
            await self._token(receive, send)
            return
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        self.seen.append(
            Seen(path, query, headers.get("authorization"), headers.get("ief-request-id"), headers.get("ief-requester"))
        )
        await self._answer(path, query, headers.get("authorization"), receive, send)

    @property
    def _origin(self) -> str:
        return self.base_url.removesuffix("/fhir")

    async def _answer(
        self, path: str, query: list[tuple[str, str]], authorization: str | None, receive: Any, send: Any
    ) -> None:
        behaviour = self.behaviour
        if behaviour.hang:
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay)
        if not self._authorized(authorization):
            await _send_json(send, 401, _outcome("login", "a valid bearer token is needed"))
        elif behaviour.status is not None:
            await _send_json(send, behaviour.status, _outcome("exception", "the gateway is failing on purpose"))
        elif behaviour.html:
            await _send(send, 200, b"<!doctype html><html><body>Gateway maintenance</body></html>", b"text/html")
        elif behaviour.garbage:
            await _send(send, 200, b"\x00\x01 this is { not JSON", FHIR_JSON)
        elif behaviour.deep:
            deep = b"[" * 100_000 + b"]" * 100_000
            await _send(send, 200, b'{"resourceType":"Bundle","type":"searchset","x":' + deep + b"}", FHIR_JSON)
        elif behaviour.not_bundle:
            await _send_json(send, 200, _outcome("informational", "not a Bundle"))
        elif behaviour.huge:
            await _send_huge(send, behaviour.huge)
        else:
            await _send_json(send, 200, self._search(path, query))

    def _authorized(self, authorization: str | None) -> bool:
        if self.token is not None:
            return authorization == f"Bearer {self.token}"
        if self.client_id is not None:
            return authorization is not None and authorization.removeprefix("Bearer ") in self._issued
        return True

    def _search(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        kind = path.removeprefix("/fhir/")
        params: dict[str, list[str]] = {}
        for name, value in query:
            params.setdefault(name, []).append(value)
        ihi = self._patient(params)
        found = list(self._resources.get((kind, ihi), [])) if ihi else []
        for value in params.get("modality", []):
            codes = {code.rpartition("|")[2] for code in value.split(",")}
            found = [r for r in found if any(m.get("code") in codes for m in r.get("modality", []))]
        if self.style == "ief":
            element = "started" if kind == "ImagingStudy" else "date"
            for value in params.get(element, []):
                criteria = [parse_criterion(part) for part in value.split(",")]
                found = [r for r in found if any(c.matches_text(r.get(element)) for c in criteria)]
        total = len(found)
        count = params.get("_count")
        if self.style == "ief" and count and count[0].isdigit() and int(count[0]) < total:
            return self.searchset(kind, found[: int(count[0])], total=total, more=True)
        return self.searchset(kind, found, total=total)

    def searchset(
        self, kind: str, resources: list[dict[str, Any]], *, total: int | None = None, more: bool = False
    ) -> dict[str, Any]:
        """The searchset Bundle this gateway answers with for these resources (``more``: with a next link)."""
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
        if total is not None:
            bundle["total"] = total
        if more:
            bundle["link"] = [{"relation": "next", "url": f"{self.base_url}/{kind}?page=2"}]
        if resources:
            bundle["entry"] = [
                {"fullUrl": f"{self.base_url}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                for r in resources
            ]
        return bundle

    def _patient(self, params: dict[str, list[str]]) -> str | None:
        """The patient asked for, read the way this style reads it (a literal local ID for Harmony)."""
        if self.style == "harmony":
            return params.get("patient", [None])[0]
        token = params.get("patient.identifier", [""])[0]
        system, _bar, value = token.rpartition("|")
        return value if system in IHI_SYSTEMS else None

    async def _token(self, receive: Any, send: Any) -> None:
        """``private_key_jwt``: the assertion must be signed by a key of ``jwks_url`` and name our client."""
        self.token_requests += 1
        body = await read_body(receive)
        form = dict(parse_qsl(body.decode()))
        try:
            async with httpx.AsyncClient(timeout=5, verify=SHARED_TLS) as http:
                keys = KeySet.import_key_set((await http.get(str(self.jwks_url))).json())
            claims = jwt.decode(form.get("client_assertion", ""), keys, algorithms=_ALGORITHMS).claims
        except Exception:  # noqa: BLE001 - any failure to verify is an invalid client, as a real gateway says
            await _send_json(send, 400, {"error": "invalid_client"}, b"application/json")
            return
        expected = (self.client_id, self.client_id, f"{self._origin}/auth/token")
        if (claims.get("iss"), claims.get("sub"), claims.get("aud")) != expected:
            await _send_json(send, 400, {"error": "invalid_client"}, b"application/json")
            return
        token = secrets.token_urlsafe(24)
        self._issued.add(token)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": 300, "scope": form.get("scope", "")}
        await _send_json(send, 200, answer, b"application/json")


def _fixture(name: str, **values: str) -> dict[str, Any]:
    text = (DATA / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return msgspec.json.decode(text)  # type: ignore[no-any-return]


def _outcome(code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


async def _send(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Any, status: int, value: object, content_type: bytes = FHIR_JSON) -> None:
    await _send(send, status, msgspec.json.encode(value), content_type)


async def _send_huge(send: Any, size: int) -> None:
    """A FHIR JSON body of ``size`` bytes, streamed in chunks without a declared length."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", FHIR_JSON)]})
    await send(
        {
            "type": "http.response.body",
            "body": b'{"resourceType": "Bundle", "type": "searchset", "x": "',
            "more_body": True,
        }
    )
    sent = 0
    while sent < size:
        await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
        sent += len(_CHUNK)
    await send({"type": "http.response.body", "body": b'"}', "more_body": False})


@contextlib.asynccontextmanager
async def reference_gateway(gateway: ReferenceGateway | None = None, **options: Any) -> AsyncIterator[ReferenceGateway]:
    """Run a reference gateway (given, or built from ``options``) on a free loopback port for the block."""
    gateway = gateway or ReferenceGateway(**options)
    async with serving(gateway, port=None, lifespan="off") as origin:
        gateway.base_url = f"{origin}/fhir"
        yield gateway
