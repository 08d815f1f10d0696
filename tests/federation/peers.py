"""Misbehaving peer registries: one real HTTP server that stands for many, one per path prefix.

A peer's base URL is ``{server}/{behaviour}/{n}``; asked ``GET …/registry/records/{ihi}``, it
behaves as named:

| behaviour | answers |
|---|---|
| ``empty`` | 200 and no records, after ``delay`` seconds (a healthy, slowish registry) |
| ``hang`` | nothing, until the server stops |
| ``error`` | 500 with an HTML page |
| ``garbage`` | 200 with a body that is not JSON |
| ``deep`` | 200 with a record list whose unknown field nests 100,000 arrays |
| ``huge`` | 200 with a 50 MB body, streamed without a length |
| ``other-ihi`` | 200, a record list of another IHI |
| ``partial`` | 200, one valid record among invalid ones |

Every peer takes only the bearer token ``GOOD_TOKEN`` (401 otherwise). The server notes each
request (behaviour, IHI, ``IEF-Request-Id``) and, per IHI, the most requests it had in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tests.factories import make_ihi, make_service_id
from tests.server import asgi_server

__all__ = ("GOOD_TOKEN", "FakePeers", "Seen", "fake_peers")

GOOD_TOKEN = "the-right-token"  # noqa: S105 - the fake peers' test token, not a secret
_HUGE_BYTES = 50 * 1024 * 1024
_CHUNK = b"x" * 65_536


@dataclass(frozen=True, slots=True)
class Seen:
    """One request a fake peer received."""

    behaviour: str
    ihi: str
    request_id: str | None


@dataclass
class FakePeers:
    """The state of the fake peers' server."""

    base_url: str = ""
    delay: float = 0.05
    seen: list[Seen] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    """Requests in flight at once, by IHI: now, and the most seen."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, behaviour: str, n: int = 0) -> str:
        """The base URL of one fake peer."""
        return f"{self.base_url}/{behaviour}/{n}"

    def asked(self, ihi: str) -> list[Seen]:
        """The requests received for one IHI."""
        return [s for s in self.seen if s.ihi == ihi]

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app."""
        if scope["type"] != "http":
            return
        parts = scope["path"].strip("/").split("/")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if len(parts) != 5 or parts[2:4] != ["registry", "records"]:
            await _send(send, 404, b"{}")
            return
        behaviour, ihi = parts[0], parts[4]
        self.seen.append(Seen(behaviour, ihi, headers.get("ief-request-id")))
        if headers.get("authorization") != f"Bearer {GOOD_TOKEN}":
            await _send(send, 401, b'{"resourceType": "OperationOutcome"}')
            return
        self.in_flight[ihi] = self.in_flight.get(ihi, 0) + 1
        self.most_in_flight[ihi] = max(self.most_in_flight.get(ihi, 0), self.in_flight[ihi])
        try:
            await self._behave(behaviour, ihi, send)
        finally:
            self.in_flight[ihi] -= 1

    async def _behave(self, behaviour: str, ihi: str, send: Any) -> None:
        if behaviour == "empty":
            await asyncio.sleep(self.delay)
            await _send(send, 200, msgspec.json.encode({"ihi": ihi, "records": []}))
        elif behaviour == "hang":
            await self.stopping.wait()
        elif behaviour == "error":
            await _send(send, 500, b"<html><body>Internal Server Error</body></html>", b"text/html")
        elif behaviour == "garbage":
            await _send(send, 200, b"\x00\xffthis is not JSON{[")
        elif behaviour == "deep":
            body = b'{"ihi":"' + ihi.encode() + b'","records":[],"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            await _send(send, 200, body)
        elif behaviour == "huge":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            for _ in range(_HUGE_BYTES // len(_CHUNK)):
                await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif behaviour == "other-ihi":
            await _send(send, 200, msgspec.json.encode({"ihi": make_ihi(), "records": []}))
        elif behaviour == "partial":
            await _send(send, 200, msgspec.json.encode({"ihi": ihi, "records": partial_records(ihi)}))
        else:
            await _send(send, 404, b"{}")


VALID_PARTIAL_GATEWAY = make_service_id()
"""The one valid record of the ``partial`` peer names this gateway."""


def partial_records(ihi: str) -> list[dict[str, Any]]:
    """One valid record (with a field from a newer release) and four the client must drop."""
    service = {"kind": "gateway", "name": "Partial imaging", "baseUrl": "https://partial.test/fhir"}
    record = {"ihi": ihi, "status": "active", "type": "record", "lastUpdated": "2025-03-01T00:00:00Z"}
    return [
        {**record, "serviceId": VALID_PARTIAL_GATEWAY, "service": {**service, "futureField": 1}, "futureField": True},
        {**record, "serviceId": "not-a-service-id", "service": service},
        {**record, "serviceId": make_service_id(), "status": "deleted", "service": service},
        {**record, "serviceId": make_service_id(), "ihi": make_ihi(), "service": service},
        {**record, "serviceId": make_service_id()},
    ]


async def _send(send: Any, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def fake_peers() -> AsyncIterator[FakePeers]:
    """Serve the fake peers on loopback for the block; hanging requests end when it ends."""
    peers = FakePeers()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:  # a function: uvicorn takes it as ASGI 3
        await peers.app(scope, receive, send)

    async with asgi_server(app) as base_url:
        peers.base_url = base_url
        try:
            yield peers
        finally:
            peers.stopping.set()
