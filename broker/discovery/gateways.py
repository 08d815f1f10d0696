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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from broker.discovery.merge import Found, Source, normalise
from registry.errors import OutboundAuthError
from schemas.discovery import GatewayProblem
from schemas.types import IHI_SYSTEM_ALIASES, SearchStyle

if TYPE_CHECKING:
    from broker.discovery.query import DiscoveryQuery
    from registry.auth.outbound import OutboundCredentials, OutboundTarget
    from registry.config import BrokerSettings

__all__ = ("Answer", "GatewayClient", "PoolPerGateway", "Problem", "Target", "new_gateway_http")

FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_decoder = msgspec.json.Decoder()


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


class PoolPerGateway(httpx.AsyncBaseTransport):
    """One connection pool per gateway (scheme, host, port) behind the process's one client.

    httpcore's pool does work in proportion to the connections and requests it holds on every
    request it assigns; one pool for every gateway made a fan-out's CPU grow with the number of
    searches in flight (measured: 12 ms per ten-gateway fan-out alone, 50-70 ms with 8-32 at once;
    with a pool per gateway, 9-15 ms). Each pool holds at most ``limits.max_connections``, which
    is the most searches in flight to one gateway anyway.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._pools: dict[tuple[bytes, bytes, int | None], httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request through its gateway's pool (made on first use)."""
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = httpx.AsyncHTTPTransport(limits=self._limits, retries=0)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        """Close every pool."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


def new_gateway_http(settings: BrokerSettings) -> httpx.AsyncClient:
    """The process's HTTP client for gateways: explicit timeouts, a pool per gateway sized to the number
    of searches that may be in flight to it, keep-alive, no redirects."""
    per_gateway = httpx.Limits(
        max_connections=settings.gateway_concurrency,
        max_keepalive_connections=settings.gateway_concurrency,
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.gateway_timeout, connect=min(settings.gateway_timeout, 5.0)),
        transport=PoolPerGateway(per_gateway),
        follow_redirects=False,
        headers={"Accept": "application/fhir+json", "User-Agent": "ief-registry-broker"},
    )


class _Refused(Exception):
    """The answer cannot be used (the problem says why)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text)
        self.problem = problem


class GatewayClient:
    """Searches gateways over one shared HTTP client; at most ``per_gateway`` searches in flight to each."""

    def __init__(
        self, http: httpx.AsyncClient, outbound: OutboundCredentials, *, max_bytes: int, per_gateway: int
    ) -> None:
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
        headers = {"IEF-Request-Id": request_id}
        if target.credentials is not None:
            try:
                headers["Authorization"] = await self._outbound.authorization(target.credentials, [query.kind.scope])
            except OutboundAuthError as exc:
                raise _Refused(
                    Problem(GatewayProblem.UNAUTHORIZED, f"no credentials could be obtained: {exc}")
                ) from None
        url = f"{source.base_url}/{query.kind.resource_type}"
        try:
            async with self._http.stream(
                "GET", url, params=query.gateway_params(source.style), headers=headers
            ) as response:
                answer.reached = True
                self._check_head(response, target)
                body = await self._read_body(response)
        except httpx.TimeoutException:
            raise _Refused(Problem(GatewayProblem.TIMEOUT, "no answer in time", failure=True)) from None
        except httpx.HTTPError as exc:
            text = f"could not be reached ({type(exc).__name__})"
            raise _Refused(Problem(GatewayProblem.UNREACHABLE, text, failure=True)) from None
        try:
            bundle = _decoder.decode(body)
        except msgspec.DecodeError:
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, "its answer is not JSON", failure=True)) from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            text = "its answer is not a FHIR searchset Bundle"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        return bundle

    def _check_head(self, response: httpx.Response, target: Target) -> None:
        status = response.status_code
        if status in (401, 403):
            if status == 401 and target.credentials is not None:
                self._outbound.forget(target.credentials)
            refused = "refused the broker's credentials" if target.credentials is not None else "needs credentials"
            raise _Refused(Problem(GatewayProblem.UNAUTHORIZED, f"{refused} (HTTP {status})"))
        if status != 200:
            failure = status >= 500 or status == 429
            raise _Refused(Problem(GatewayProblem.ERROR_RESPONSE, f"answered HTTP {status}", failure=failure))
        media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in FHIR_JSON_TYPES:
            text = f"answered {media or 'without a content type'}, not FHIR JSON"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _Refused(self._too_large())

    async def _read_body(self, response: httpx.Response) -> bytes:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise _Refused(self._too_large())
        return bytes(body)

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
