"""The broker's connection stack: keep-alive httpcore connections per origin (ADR 0009).

``ConnectionPools.route(base_url)`` gives a ``Route``: the pool of the base URL's origin, its URL
parts and the fixed headers of every request, prepared once; ``Route.pool.stream`` sends a
request on the most recently used idle connection (or a new one). Timeouts are httpcore's
(``Route.timeouts``, from the ``timeout`` given); there are no redirects and no proxies; TLS 1.2 at
least, verified; every base URL and every new connection is checked against the outbound address
policy it is given (``registry.outbound.egress``). ``TRANSPORT_ERRORS`` are the errors that mean the server
could not be reached or spoke broken HTTP (timeouts are ``httpcore.TimeoutException``).
"""

from __future__ import annotations

import contextlib
import ssl
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpcore
import httpx

from registry.outbound.egress import CheckedBackend, new_connection, tls_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from registry.outbound.egress import AddressPolicy

__all__ = ("TRANSPORT_ERRORS", "ConnectionPools", "Route")


class ConnectionPools:
    """Keep-alive connections to many origins: httpcore connections, kept per origin (scheme, host, port).

    httpx is the HTTP client everywhere else; for the broker, where every search makes one request per
    gateway, its own transport layer (httpcore) is driven directly: each base URL's parts, ``Host`` and
    fixed ``headers`` are prepared once, and its idle connections kept on a stack (``_Connections``)
    rather than in httpcore's pool. Measured per ten-gateway fan-out (``docs/benchmarks.md``): httpx's request
    path (a ``Request``, its URL, merged headers and cookies on every call) about 9 ms of CPU, httpcore's
    pool used directly about 6 ms, these connections about 5 ms at one search at a time and about a
    third of the pool's CPU with 16 in flight. Kept per gateway rather than for all: httpx's one pool
    made a fan-out cost 12 ms of CPU alone and 50-70 ms with 8-32 searches in flight. Keep-alive, no
    redirects, no proxies (as before with httpx and an explicit transport), TLS 1.2 at least, verified, and
    every new connection resolved and checked against the outbound address ``policy``.
    """

    def __init__(self, policy: AddressPolicy, *, timeout: float, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self._headers = headers
        self._timeouts = {"connect": min(timeout, 5.0), "read": timeout, "write": timeout}
        self._ssl = tls_context()
        self._policy = policy
        self._backend = CheckedBackend(policy)
        self._pools: dict[tuple[bytes, bytes, int | None], _Connections] = {}
        self._routes: dict[str, Route] = {}

    def route(self, base_url: str) -> Route:
        """How to reach the server at ``base_url`` (its pool, and its URL parts and Host header, parsed once).

        Raises:
            httpx.InvalidURL: the base URL cannot be parsed.
            AddressRefused: the outbound policy does not allow it (plain http to a host that is not loopback).
        """
        route = self._routes.get(base_url)
        if route is None:
            self._policy.check_url(base_url, "its base URL")
            parsed = httpx.URL(base_url)
            key = (parsed.raw_scheme, parsed.raw_host, parsed.port)
            pool = self._pools.get(key)
            if pool is None:
                port = parsed.port or (443 if parsed.raw_scheme == b"https" else 80)
                origin = httpcore.Origin(key[0], key[1], port)
                pool = self._pools[key] = _Connections(origin, self._ssl, self._backend)
            host = httpx.Request("GET", parsed).headers["host"].encode("ascii")
            headers = ((b"Host", host), *self._headers)
            route = self._routes[base_url] = Route(pool, key, parsed.raw_path.rstrip(b"/"), headers, self._timeouts)
        return route

    async def aclose(self) -> None:
        """Close every pool."""
        pools, self._pools, self._routes = list(self._pools.values()), {}, {}
        for pool in pools:
            await pool.aclose()


class _Connections:
    """One gateway's keep-alive connections: the idle ones on a stack, the most recently used taken first.

    httpcore's own pool looks at every connection it holds on every request it assigns and every
    response it closes (whether each is idle, expired, or was closed by the server, the last a
    system call), so with N searches in flight to a gateway each request cost O(N) such checks.
    Here a request takes the top idle connection (one check) or opens a new one, and gives it back
    when its response is closed and the connection is reusable; the oldest idle connection is
    checked too, so connections left idle after a burst are closed once they expire. There is no
    limit here: the broker's per-gateway slot (``gateway_concurrency``) bounds the requests in flight
    to a gateway, and so the connections open to it.
    """

    def __init__(self, origin: httpcore.Origin, ssl_context: ssl.SSLContext, backend: CheckedBackend) -> None:
        self._origin = origin
        self._ssl = ssl_context
        self._backend = backend
        self._idle: deque[httpcore.AsyncHTTPConnection] = deque()

    @contextlib.asynccontextmanager
    async def stream(
        self, method: bytes, url: httpcore.URL, *, headers: list[tuple[bytes, bytes]], extensions: dict[str, Any]
    ) -> AsyncIterator[httpcore.Response]:
        """Send a request on an idle connection (or a new one) and yield its response, headers read."""
        connection = await self._take()
        try:
            async with connection.stream(method, url, headers=headers, extensions=extensions) as response:
                yield response
        finally:
            if connection.is_idle() and not connection.is_closed():
                self._idle.append(connection)
            else:
                await connection.aclose()

    async def _take(self) -> httpcore.AsyncHTTPConnection:
        if len(self._idle) > 1 and self._idle[0].has_expired():
            await self._idle.popleft().aclose()
        while self._idle:
            connection = self._idle.pop()
            if not connection.has_expired():
                return connection
            await connection.aclose()
        return new_connection(self._origin, self._backend, self._ssl, keepalive_expiry=30.0)

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their response does)."""
        while self._idle:
            await self._idle.pop().aclose()


@dataclass(frozen=True, slots=True)
class Route:
    """A base URL's pool, and the parts of every request to it that do not change."""

    pool: _Connections
    origin: tuple[bytes, bytes, int | None]
    path: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    timeouts: dict[str, float]

    def url(self, path: str, params: tuple[tuple[str, str], ...]) -> httpcore.URL:
        """The URL of ``path`` under the base URL, with the query ``params``."""
        target = b"%b/%b?%b" % (self.path, path.encode("ascii"), urlencode(params).encode("ascii"))
        scheme, host, port = self.origin
        return httpcore.URL(scheme=scheme, host=host, port=port, target=target)


TRANSPORT_ERRORS = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
)
"""httpcore's errors other than timeouts: the server could not be reached or spoke broken HTTP."""
