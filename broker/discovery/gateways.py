"""Asking one gateway: the search in its style, with the broker's own credentials, the answer read
within a size limit and classified.

Every outcome is an ``Answer``: the resources found (normalised; checked against the R4B models
when merged) and the problems met, each coded with ``GatewayProblem``. Nothing here raises for a gateway's
misbehaviour, and nothing here bounds time: the caller runs each search under the gateway's
timeout and the search's deadline (``asyncio.timeout``), and classifies running out of time.

- The consumer's token is never sent: the ``Authorization`` header is the broker's own, from
  ``OutboundCredentials`` (``private_key_jwt`` to the gateway's token endpoint, or its bearer
  token file); a gateway with neither is called without one only when the service allows it.
- A 401 drops the cached token, so the next search gets a fresh one.
- Bodies are streamed and abandoned as soon as they pass ``max_bytes`` (a declared
  ``Content-Length`` over the limit is refused before reading); only FHIR JSON is read at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpcore
import httpx

from broker.discovery.merge import Found, Source, normalise
from registry.egress import CheckedBackend, EgressError, new_connection, tls_context
from registry.errors import OutboundAuthError
from schemas import strictjson
from schemas.discovery import GatewayProblem
from schemas.types import IHI_SYSTEM_ALIASES, SearchStyle, ascii_int

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from broker.discovery.query import DiscoveryQuery
    from registry.auth.outbound import OutboundCredentials, OutboundTarget
    from registry.config import BrokerSettings
    from registry.egress import AddressPolicy

__all__ = ("Answer", "GatewayClient", "GatewayPools", "Problem", "Target", "new_gateway_http")

FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that went wrong with one gateway.

    Attributes:
        code: what kind of problem.
        text: what happened, for the consumer (never the gateway's body).
        failure: it counts against the gateway's circuit breaker (the gateway misbehaved).
    """

    code: GatewayProblem
    text: str
    failure: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """A gateway to ask, and this instance's credentials for it (None: it has none here)."""

    source: Source
    credentials: OutboundTarget | None


@dataclass(slots=True)
class Answer:
    """What one gateway contributed: resources found, and problems; ``reached``: it answered at all."""

    source: Source
    found: list[Found] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    reached: bool = False

    @property
    def failed(self) -> bool:
        """Whether the gateway misbehaved (its circuit breaker counts this)."""
        return any(problem.failure for problem in self.problems)


class GatewayPools:
    """The process's connections to gateways: httpcore connections, kept per gateway (scheme, host, port).

    httpx is the HTTP client everywhere else; here, where every search makes one request per gateway,
    its own transport layer (httpcore) is driven directly: each gateway's URL parts, ``Host`` and fixed
    headers are prepared once, and its idle connections kept on a stack (``_Connections``) rather than
    in httpcore's pool. Measured per ten-gateway fan-out (``docs/benchmarks.md``): httpx's request
    path (a ``Request``, its URL, merged headers and cookies on every call) about 9 ms of CPU, httpcore's
    pool used directly about 6 ms, these connections about 5 ms at one search at a time and about a
    third of the pool's CPU with 16 in flight. Kept per gateway rather than for all: httpx's one pool
    made a fan-out cost 12 ms of CPU alone and 50-70 ms with 8-32 searches in flight. Keep-alive, no
    redirects, no proxies (as before with httpx and an explicit transport), TLS 1.2 at least, verified, and
    every new connection resolved and checked against the outbound address policy (``registry.egress``).
    """

    def __init__(self, settings: BrokerSettings, policy: AddressPolicy) -> None:
        timeout = settings.gateway_timeout
        self._timeouts = {"connect": min(timeout, 5.0), "read": timeout, "write": timeout}
        self._ssl = tls_context()
        self._policy = policy
        self._backend = CheckedBackend(policy)
        self._pools: dict[tuple[bytes, bytes, int | None], _Connections] = {}
        self._routes: dict[str, _Route] = {}

    def route(self, base_url: str) -> _Route:
        """How to reach the gateway at ``base_url`` (its pool, and its URL parts and Host header, parsed once).

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
            headers = ((b"Host", host), *_HEADERS)
            route = self._routes[base_url] = _Route(pool, key, parsed.raw_path.rstrip(b"/"), headers, self._timeouts)
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


_HEADERS = (
    (b"Accept", b"application/fhir+json"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"User-Agent", b"ief-registry-broker"),
)


@dataclass(frozen=True, slots=True)
class _Route:
    """A gateway's pool, and the parts of every request to it that do not change."""

    pool: _Connections
    origin: tuple[bytes, bytes, int | None]
    path: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    timeouts: dict[str, float]

    def url(self, resource_type: str, params: tuple[tuple[str, str], ...]) -> httpcore.URL:
        """The search URL for ``resource_type`` with the query ``params``."""
        target = b"%b/%b?%b" % (self.path, resource_type.encode("ascii"), urlencode(params).encode("ascii"))
        scheme, host, port = self.origin
        return httpcore.URL(scheme=scheme, host=host, port=port, target=target)


def new_gateway_http(settings: BrokerSettings, policy: AddressPolicy) -> GatewayPools:
    """The process's connections to gateways (closed with ``aclose`` at the end of the server's lifespan)."""
    return GatewayPools(settings, policy)


_UNREACHABLE = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
)
"""httpcore's errors other than timeouts: the gateway could not be reached or spoke broken HTTP."""

_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
"""The content codings asked for (``Accept-Encoding``), as httpx asks for them without brotli or zstd."""


class _Decoder:
    """Decompresses a gzip or deflate body, never producing more than it is allowed at a time."""

    def __init__(self, coding: str) -> None:
        self._raw_fallback = coding == "deflate"  # "deflate" is zlib-wrapped, but some servers send it raw
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding != "deflate" else zlib.MAX_WBITS)
        self.pending = False
        """Compressed input is left over that would have produced more than allowed."""

    def decode(self, data: bytes, allowed: int) -> bytes:
        """Up to ``allowed`` decompressed bytes of ``data`` (``pending`` says whether more would follow).

        Raises:
            _Refused: the data is not validly compressed.
        """
        try:
            out = self._zlib.decompress(data, allowed)
        except zlib.error:
            if not self._raw_fallback:
                raise _Refused(_corrupt()) from None
            self._raw_fallback = False
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.decode(data, allowed)
        self._raw_fallback = False
        self.pending = bool(self._zlib.unconsumed_tail)
        return out

    def finish(self) -> None:
        """Check that the compressed data ended properly.

        Raises:
            _Refused: it was cut short.
        """
        if not self._zlib.eof:
            raise _Refused(_corrupt())


def _corrupt() -> Problem:
    return Problem(GatewayProblem.INVALID_RESPONSE, "its compressed answer cannot be decompressed", failure=True)


class _Refused(Exception):
    """The answer cannot be used (the problem says why)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text)
        self.problem = problem


class GatewayClient:
    """Searches gateways over one shared HTTP client; at most ``per_gateway`` searches in flight to each."""

    def __init__(self, http: GatewayPools, outbound: OutboundCredentials, *, max_bytes: int, per_gateway: int) -> None:
        self._http = http
        self._outbound = outbound
        self._max_bytes = max_bytes
        self._per_gateway = per_gateway
        self._slots: dict[str, asyncio.Semaphore] = {}

    def slot(self, service_id: str) -> asyncio.Semaphore:
        """The semaphore bounding searches in flight to one gateway (in this process)."""
        semaphore = self._slots.get(service_id)
        if semaphore is None:
            semaphore = self._slots[service_id] = asyncio.Semaphore(self._per_gateway)
        return semaphore

    async def search(self, target: Target, query: DiscoveryQuery, *, request_id: str) -> Answer:
        """Ask one gateway (the caller bounds the time this takes)."""
        answer = Answer(target.source)
        try:
            bundle = await self._fetch(target, query, request_id, answer)
        except _Refused as refused:
            answer.problems.append(refused.problem)
            return answer
        self._read_bundle(bundle, query, answer)
        return answer

    async def _fetch(self, target: Target, query: DiscoveryQuery, request_id: str, answer: Answer) -> dict[str, Any]:
        source = target.source
        headers = [(b"IEF-Request-Id", request_id.encode("ascii"))]
        if target.credentials is not None:
            try:
                authorization = await self._outbound.authorization(target.credentials, [query.kind.scope])
            except OutboundAuthError as exc:  # its message is fit for consumers (registry.auth.outbound)
                raise _Refused(
                    Problem(GatewayProblem.UNAUTHORIZED, f"no credentials could be obtained: {exc}")
                ) from None
            headers.append((b"Authorization", authorization.encode("ascii")))
        try:
            route = self._http.route(source.base_url)
            url = route.url(query.kind.resource_type, query.gateway_params(source.style))
            async with route.pool.stream(
                b"GET", url, headers=[*route.headers, *headers], extensions={"timeout": route.timeouts}
            ) as response:
                answer.reached = True
                decoder = self._check_head(response, target)
                body = await self._read_body(response, decoder)
        except httpcore.TimeoutException:
            raise _Refused(Problem(GatewayProblem.TIMEOUT, "no answer in time", failure=True)) from None
        except EgressError as exc:
            raise _Refused(Problem(GatewayProblem.UNREACHABLE, f"not called: {exc}")) from None
        except (*_UNREACHABLE, httpx.InvalidURL) as exc:
            text = f"could not be reached ({type(exc).__name__})"
            raise _Refused(Problem(GatewayProblem.UNREACHABLE, text, failure=True)) from None
        try:
            bundle = strictjson.decode(body, max_depth=strictjson.REMOTE_MAX_DEPTH, duplicate_keys=True)
        except strictjson.TooDeep:
            text = "its answer is nested too deep"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True)) from None
        except strictjson.JsonError:
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, "its answer is not JSON", failure=True)) from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            text = "its answer is not a FHIR searchset Bundle"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        return bundle

    def _check_head(self, response: httpcore.Response, target: Target) -> _Decoder | None:
        """Refuse what cannot be used from the status and headers alone; the body's decompressor, if any."""
        status = response.status
        if status in (401, 403):
            if status == 401 and target.credentials is not None:
                self._outbound.forget(target.credentials)
            refused = "refused the broker's credentials" if target.credentials is not None else "needs credentials"
            raise _Refused(Problem(GatewayProblem.UNAUTHORIZED, f"{refused} (HTTP {status})"))
        if status != 200:
            failure = status >= 500 or status == 429
            raise _Refused(Problem(GatewayProblem.ERROR_RESPONSE, f"answered HTTP {status}", failure=failure))
        head = {name.lower(): value for name, value in response.headers}
        media = head.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()
        if media not in FHIR_JSON_TYPES:
            text = f"answered {media or 'without a content type'}, not FHIR JSON"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        declared = ascii_int(head.get(b"content-length", b"").decode("latin-1"))
        if declared is not None and declared > self._max_bytes:
            raise _Refused(self._too_large())
        coding = head.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if coding in ("", "identity"):
            return None
        if coding not in _CODINGS:
            text = f"its answer is compressed with {coding[:40]!r}, which was not asked for"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        return _Decoder(coding)

    async def _read_body(self, response: httpcore.Response, decoder: _Decoder | None) -> bytes:
        """The body (decompressed), abandoned as soon as it is larger than ``max_bytes``: compressed bodies
        are counted after decompression, which never produces more than the limit allows."""
        chunks: list[bytes] = []
        size = 0
        async for data in response.aiter_stream():
            chunk = data if decoder is None else decoder.decode(data, self._max_bytes + 1 - size)
            size += len(chunk)
            if size > self._max_bytes or (decoder is not None and decoder.pending):
                raise _Refused(self._too_large())
            chunks.append(chunk)
        if decoder is not None:
            decoder.finish()
        return b"".join(chunks)

    def _too_large(self) -> Problem:
        return Problem(GatewayProblem.TOO_LARGE, f"its answer is larger than {self._max_bytes} bytes", failure=True)

    def _read_bundle(self, bundle: dict[str, Any], query: DiscoveryQuery, answer: Answer) -> None:
        """Take the matches of a searchset: normalised, date-filtered where the gateway cannot, and only
        the patient's (whether each is valid R4 is checked when merging, for the copies that are kept)."""
        kind = query.kind
        entries = bundle.get("entry")
        entries = entries if isinstance(entries, list) else []
        matches = strangers = 0
        for entry in entries:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != kind.resource_type:
                continue  # outcome and included resources, or junk: not matches
            matches += 1
            if _other_patient(resource, query.ihi):
                strangers += 1
                continue
            found = normalise(resource, answer.source, kind)
            if answer.source.style is SearchStyle.HARMONY and not query.dates_match(found.resource):
                continue
            answer.found.append(found)
        if strangers:
            text = f"{strangers} of its {matches} {kind.resource_type} resources name another patient and were left out"
            answer.problems.append(Problem(GatewayProblem.INVALID_RESPONSE, text))
        total = bundle.get("total")
        links = bundle.get("link")
        has_next = isinstance(links, list) and any(
            isinstance(link, dict) and link.get("relation") == "next" for link in links
        )
        if has_next or (isinstance(total, int) and total > matches):
            held = f"{total} matches" if isinstance(total, int) else "more matches"
            text = f"holds {held} but returned {matches}; the rest were not fetched (its next page is not followed)"
            answer.problems.append(Problem(GatewayProblem.INCOMPLETE, text))


def _other_patient(resource: dict[str, Any], ihi: str | None) -> bool:
    """Whether a resource's subject is identified by an IHI other than the one searched for (a gateway's
    mistake that must not reach the consumer). A subject given only as a local reference cannot be checked."""
    subject = resource.get("subject")
    identifier = subject.get("identifier") if isinstance(subject, dict) else None
    if not isinstance(identifier, dict) or identifier.get("system") not in IHI_SYSTEM_ALIASES:
        return False
    return identifier.get("value") != ihi
