"""Asking one gateway: the search in its style, with the broker's own credentials, the answer read
within a size limit and classified.

Every outcome is an ``Answer``: the resources found (normalised; checked against the R4B models
when merged) and the problems met, each coded with ``GatewayProblem``. Nothing here raises for a gateway's
misbehaviour, and nothing here bounds time: the caller runs each search under the gateway's
timeout and the search's deadline (``asyncio.timeout``), and classifies running out of time.

- The consumer's token is never sent: the ``Authorization`` header is the broker's own, from
  ``OutboundCredentials`` (``private_key_jwt`` to the gateway's token endpoint, or its bearer
  token file); a gateway with neither is called without one only when the service allows it.
  Who the broker asks for goes beside it: ``IEF-Requester``, a JWT signed by this registry for
  that gateway alone (``registry.auth.assertions``).
- A 401 drops the cached token, so the next search gets a fresh one.
- Bodies are streamed and abandoned as soon as they pass ``max_bytes`` (a declared
  ``Content-Length`` over the limit is refused before reading; ``registry.outbound.reader``); only
  FHIR JSON is read at all.
- Connections: the broker's own stack, ``registry.outbound.transport`` (kept per gateway; ADR 0009).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from broker.discovery.merge import Found, Source, normalise
from registry.errors import OutboundAuthError
from registry.outbound.egress import EgressError
from registry.outbound.reader import INFLATABLE, Corrupt, Inflate, TooLarge, read_capped, refuse_declared
from registry.outbound.transport import TRANSPORT_ERRORS, ConnectionPools
from schemas import strictjson
from schemas.discovery import GatewayProblem
from schemas.types import IHI_SYSTEM_ALIASES, SearchStyle

if TYPE_CHECKING:
    from broker.discovery.query import DiscoveryQuery
    from registry.auth.assertions import RequesterAssertions
    from registry.auth.outbound import OutboundCredentials, OutboundTarget
    from registry.auth.requester import Requester
    from registry.config import BrokerSettings
    from registry.outbound.egress import AddressPolicy

__all__ = ("Answer", "GatewayClient", "Problem", "Target", "new_gateway_http")

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


_HEADERS = (
    (b"Accept", b"application/fhir+json"),
    (b"Accept-Encoding", b"gzip, deflate"),
    (b"User-Agent", b"ief-registry-broker"),
)


def new_gateway_http(settings: BrokerSettings, policy: AddressPolicy) -> ConnectionPools:
    """The process's connections to gateways, each checked against the outbound address ``policy`` (closed
    with ``aclose`` at the end of the server's lifespan)."""
    return ConnectionPools(policy, timeout=settings.gateway_timeout, headers=_HEADERS)


def _corrupt() -> Problem:
    return Problem(GatewayProblem.INVALID_RESPONSE, "its compressed answer cannot be decompressed", failure=True)


class _Refused(Exception):
    """The answer cannot be used (the problem says why)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text)
        self.problem = problem


class GatewayClient:
    """Searches gateways over one shared HTTP client; at most ``per_gateway`` searches in flight to each."""

    def __init__(
        self,
        http: ConnectionPools,
        outbound: OutboundCredentials,
        assertions: RequesterAssertions,
        *,
        max_bytes: int,
        per_gateway: int,
    ) -> None:
        self._http = http
        self._outbound = outbound
        self._assertions = assertions
        self._max_bytes = max_bytes
        self._per_gateway = per_gateway
        self._slots: dict[str, asyncio.Semaphore] = {}

    def slot(self, service_id: str) -> asyncio.Semaphore:
        """The semaphore bounding searches in flight to one gateway (in this process)."""
        semaphore = self._slots.get(service_id)
        if semaphore is None:
            semaphore = self._slots[service_id] = asyncio.Semaphore(self._per_gateway)
        return semaphore

    async def search(self, target: Target, query: DiscoveryQuery, *, request_id: str, requester: Requester) -> Answer:
        """Ask one gateway for ``requester`` (the caller bounds the time this takes)."""
        answer = Answer(target.source)
        try:
            bundle = await self._fetch(target, query, request_id, requester, answer)
        except _Refused as refused:
            answer.problems.append(refused.problem)
            return answer
        self._read_bundle(bundle, query, answer)
        return answer

    async def _fetch(
        self, target: Target, query: DiscoveryQuery, request_id: str, requester: Requester, answer: Answer
    ) -> dict[str, Any]:
        source = target.source
        assertion = await self._assertions.sign(audience=source.base_url, requester=requester, ihi=query.ihi or "")
        headers = [(b"IEF-Request-Id", request_id.encode("ascii")), (b"IEF-Requester", assertion.encode("ascii"))]
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
                inflate = self._check_head(response, target)
                body = await self._read_body(response, inflate)
        except httpcore.TimeoutException:
            raise _Refused(Problem(GatewayProblem.TIMEOUT, "no answer in time", failure=True)) from None
        except EgressError as exc:
            raise _Refused(Problem(GatewayProblem.UNREACHABLE, f"not called: {exc}")) from None
        except (*TRANSPORT_ERRORS, httpx.InvalidURL) as exc:
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

    def _check_head(self, response: httpcore.Response, target: Target) -> Inflate | None:
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
        try:
            refuse_declared(head.get(b"content-length"), self._max_bytes)
        except TooLarge:
            raise _Refused(self._too_large()) from None
        coding = head.get(b"content-encoding", b"identity").decode("latin-1").strip().lower()
        if coding in ("", "identity"):
            return None
        if coding not in INFLATABLE:
            text = f"its answer is compressed with {coding[:40]!r}, which was not asked for"
            raise _Refused(Problem(GatewayProblem.INVALID_RESPONSE, text, failure=True))
        return Inflate(coding)

    async def _read_body(self, response: httpcore.Response, inflate: Inflate | None) -> bytes:
        """The body (decompressed), abandoned as soon as it is larger than ``max_bytes``: compressed bodies
        are counted after decompression, which never produces more than the limit allows."""
        try:
            return await read_capped(response.aiter_stream(), self._max_bytes, inflate=inflate)
        except TooLarge:
            raise _Refused(self._too_large()) from None
        except Corrupt:
            raise _Refused(_corrupt()) from None

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
