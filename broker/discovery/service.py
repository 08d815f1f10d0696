"""The broker's rules: locate the patient's gateways, ask them all within bounds, merge. No HTTP here.

One search (``DiscoveryService.search``):

1. The patient's services come from the ``Locator`` (federation followed where it can), bounded by
   the search's deadline.
2. Each is checked against this registry's directory: a gateway that is a member and enabled is
   asked with this instance's credentials for it; one without credentials here (a member
   without ``--client-id``/``--bearer-token-file``, or one learned through federation) is
   skipped and reported, unless ``broker.anonymous_gateways`` allows asking it without a token.
3. Gateways are asked concurrently: at most ``broker.request_concurrency`` at once for this
   search and ``broker.gateway_concurrency`` in flight to any one gateway; each under
   ``broker.gateway_timeout`` and all under one deadline (``broker.deadline``, shortened by the
   consumer's ``Prefer: wait``). A gateway whose circuit is open is skipped at once.
4. Answers are merged (``merge.py``); every problem becomes an issue (``resources.py`` renders the
   page as a searchset Bundle with the issues in its outcome entry).

Identical concurrent searches (same resource type, patient, filters, ``_count`` and deadline)
share one fan-out in a process. A result of several pages is kept for its paging links
(``pages.py``). The request's audit row names the patient and every service asked, with how each
answered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.discovery.breaker import Breakers, BreakerState
from broker.discovery.gateways import Answer, Problem, Target
from broker.discovery.merge import Source, Verdicts, merge
from broker.discovery.pages import KeptResults
from broker.discovery.singleflight import SingleFlight
from registry import errors
from registry.audit.context import note_detail, note_patients
from registry.log import get_logger, ihi_hash
from schemas.discovery import GatewayProblem
from schemas.fhir.parse import InvalidResource, check_resource
from schemas.types import ServiceKind, ServiceStatus

if TYPE_CHECKING:
    from broker.discovery.gateways import GatewayClient
    from broker.discovery.locator import Located, LocatedService, Locator
    from broker.discovery.merge import Check, Found
    from broker.discovery.query import DiscoveryQuery
    from registry.auth.requester import Requester
    from registry.config import BrokerSettings
    from registry.feature import Members
    from registry.outbound.transport import ConnectionPools
    from schemas.fhir.canonical import Canonicals
    from schemas.services import Service

__all__ = ("DiscoveryService", "Issue", "Merged", "Page")

_log = get_logger("broker.discovery")

Issue = tuple[GatewayProblem, str | None, str]
"""One problem for the outcome entry: its code, the service it concerns, what happened."""


@dataclass(frozen=True, slots=True)
class Merged:
    """The result of one fan-out.

    Attributes:
        entries: the merged matches, newest first.
        issues: one per problem (gateways, skipped services, unresolved hops).
        asked: what each service located did, for the audit row (``<service ID>: <what>``).
    """

    entries: list[dict[str, Any]]
    issues: list[Issue]
    asked: list[str]
    withheld: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search's merged result.

    Attributes:
        entries: the page's matches.
        total: how many matches the whole result holds.
        issues: one per problem (on every page).
        token: the kept result later pages are read from (None: one page holds it all).
        withheld: the privacy decision point withheld services from the requester (they were not asked).
    """

    entries: list[dict[str, Any]]
    total: int
    issues: list[Issue]
    token: str | None
    withheld: bool = False


class DiscoveryService:
    """ImagingStudy and DocumentReference searches fanned out to the patient's gateways."""

    def __init__(
        self,
        *,
        locator: Locator,
        directory: Members,
        gateways: GatewayClient,
        http: ConnectionPools,
        settings: BrokerSettings,
        canon: Canonicals,
    ) -> None:
        self._locator = locator
        self._directory = directory
        self._gateways = gateways
        self._http = http
        self._settings = settings
        self._canon = canon
        self._breakers = Breakers(threshold=settings.breaker_failures, cooldown=settings.breaker_cooldown)
        self._flights: SingleFlight[Merged] = SingleFlight()
        self._kept: KeptResults[Merged] = KeptResults(seconds=settings.page_seconds, size=settings.page_cache_size)

    @property
    def deadline(self) -> float:
        """Seconds a search may take unless the consumer asks for less."""
        return self._settings.deadline

    async def close(self) -> None:
        """Close the connections to gateways (end of the server's lifespan)."""
        await self._http.aclose()

    def budget(self, wait: int | None) -> float:
        """Seconds a search may take: the deadline, or the consumer's shorter ``Prefer: wait`` (at least 1 s)."""
        return self._settings.deadline if wait is None else min(self._settings.deadline, float(max(wait, 1)))

    def forget_patient(self, ihi: str) -> int:
        """Drop the results kept for a patient's searches (their consent changed); how many were kept."""
        return self._kept.drop(lambda key: isinstance(key, tuple) and key[0][1] == ihi)

    async def search(self, query: DiscoveryQuery, *, budget: float, request_id: str, requester: Requester) -> Page:
        """One page of the merged result of a search for ``requester``: only the gateways the privacy
        decision point discloses to it are asked, each told who it is answering (``IEF-Requester``).

        Raises:
            DependencyUnavailable: the patient's services could not be located (the database is down).
        """
        if query.ihi is None:  # contradictory patient criteria: nothing can match, nobody is asked
            return Page([], 0, [], None)
        note_patients([query.ihi])
        token = query.page_token
        kept_key = (query.key, requester.key)
        merged = self._kept.get(token, kept_key) if token else None
        if merged is not None:
            note_detail(f"page of a result kept from an earlier search; services asked then: {'; '.join(merged.asked)}")
        else:
            ihi = query.ihi
            merged, joined = await self._flights.run(
                (query.key, budget, requester.key), lambda: self._fan_out(query, ihi, budget, request_id, requester)
            )
            shared = " (a fan-out shared with identical concurrent searches)" if joined else ""
            note_detail(f"services asked{shared}: {'; '.join(merged.asked) or 'none'}")
            more_pages = 0 < query.page_size < len(merged.entries)  # _count=0 asks for the total only
            token = self._kept.keep(kept_key, merged) if more_pages else None
        entries = merged.entries[query.offset : query.offset + query.page_size]
        return Page(entries, len(merged.entries), merged.issues, token, withheld=merged.withheld)

    async def _fan_out(
        self, query: DiscoveryQuery, ihi: str, budget: float, request_id: str, requester: Requester
    ) -> Merged:
        started = time.monotonic()
        deadline = started + budget
        try:
            async with asyncio.timeout(budget):
                located = await self._locator.locate(ihi, requester=requester, request_id=request_id, deadline=deadline)
        except TimeoutError:
            raise errors.DependencyUnavailable("the patient's services could not be located in time") from None
        issues: list[Issue] = [
            (GatewayProblem.UNRESOLVED, hop.service_id, f"service {hop.service_id}: {hop.reason}")
            for hop in located.unresolved
        ]
        asked = [f"{hop.service_id}: unresolved" for hop in located.unresolved]
        targets = await self._targets(located, issues, asked)
        asking = time.monotonic()
        slots = asyncio.Semaphore(self._settings.request_concurrency)
        verdicts = Verdicts(_r4_check(query.kind.resource_type))

        async def ask(index: int, target: Target) -> Answer:
            answer = await self._ask(target, query, deadline, slots, request_id, requester)
            verdicts.arrived(index, answer.found)  # checked while the other gateways are awaited
            return answer

        answers = await asyncio.gather(*(ask(index, target) for index, target in enumerate(targets)))
        answered = time.monotonic()
        merged = merge((answer.found for answer in answers), self._canon, verdicts.check)
        self._report(answers, merged.rejected, query, issues, asked)
        ended = time.monotonic()
        _log.info(
            "discovery_search",
            resource_type=query.kind.resource_type,
            ihi_hash=ihi_hash(ihi),
            services=len(targets),
            matches=len(merged.entries),
            issues=len(issues),
            duration_ms=_ms(ended - started),
            locate_ms=_ms(asking - started),
            gateways_ms=_ms(answered - asking),
            merge_ms=_ms(ended - answered),
        )
        return Merged(merged.entries, issues, asked, withheld=located.withheld)

    @staticmethod
    def _report(
        answers: list[Answer],
        rejected: list[tuple[Found, str]],
        query: DiscoveryQuery,
        issues: list[Issue],
        asked: list[str],
    ) -> None:
        """Each gateway's problems as issues (and log lines), and what it did for the audit row."""
        left_out: dict[str, list[str]] = {}
        for copy, error in rejected:
            left_out.setdefault(copy.source.service_id, []).append(error)
        for answer in answers:
            source = answer.source
            if refused := left_out.get(source.service_id):
                text = (
                    f"{len(refused)} of its {len(answer.found)} {query.kind.resource_type} resources are not "
                    f"valid FHIR R4 and were left out (first: {refused[0]})"
                )
                answer.problems.append(Problem(GatewayProblem.INVALID_RESPONSE, text[:500]))
            for problem in answer.problems:
                issues.append((problem.code, source.service_id, f"{_named(source)}: {problem.text}"))
                _log.warning(
                    "gateway_problem", service_id=source.service_id, problem=str(problem.code), detail=problem.text
                )
            codes = ", ".join(sorted({str(p.code) for p in answer.problems}))
            asked.append(f"{source.service_id}: {len(answer.found)} found" + (f", {codes}" if codes else ""))

    async def _targets(self, located: Located, issues: list[Issue], asked: list[str]) -> list[Target]:
        """The located services to ask; the others are reported as skipped."""
        members = await self._directory.get_many([s.service_id for s in located.services])
        targets: list[Target] = []
        for service in located.services:
            target, reason = self._target(service, members.get(service.service_id))
            if target is not None:
                targets.append(target)
            else:
                issues.append((GatewayProblem.SKIPPED, service.service_id, f"{_named(service)}: not asked: {reason}"))
                asked.append(f"{service.service_id}: skipped")
        return targets

    def _target(self, located: LocatedService, member: Service | None) -> tuple[Target | None, str]:
        """The gateway to ask (this directory's entry wins for members), or None and why not."""
        if (member.kind if member else located.kind) is not ServiceKind.GATEWAY:
            return None, "it is not a gateway"
        if member is not None and member.status is ServiceStatus.DISABLED:
            return None, "it is disabled in this registry's directory"
        anonymous = self._settings.anonymous_gateways
        if member is None:
            through = f" (learned through {' > '.join(located.chain)})" if located.chain else ""
            if not anonymous:
                return None, f"it is not a member of this registry{through}, so there are no credentials for it here"
            return Target(Source(located.service_id, located.name, located.base_url, located.search_style), None), ""
        has_credentials = bool(member.client_id or member.bearer_token_file)
        if not has_credentials and not anonymous:
            return (
                None,
                "no credentials for it are configured here (`services add --client-id` or `--bearer-token-file`)",
            )
        source = Source(member.service_id, member.name, member.base_url, member.search_style)
        return Target(source, member if has_credentials else None), ""

    async def _ask(
        self,
        target: Target,
        query: DiscoveryQuery,
        deadline: float,
        slots: asyncio.Semaphore,
        request_id: str,
        requester: Requester,
    ) -> Answer:
        """Ask one gateway within its timeout and the deadline, through its circuit breaker; ``slots``
        bounds how many gateways this search asks at once."""
        source = target.source
        sid = source.service_id
        if self._breakers.state(sid) is BreakerState.OPEN:
            return _skipped_open(source, self._breakers.retry_in(sid))
        limit = min(self._settings.gateway_timeout, deadline - time.monotonic())
        asking = False
        try:
            async with asyncio.timeout(max(limit, 0.0)), slots, self._gateways.slot(sid):
                if not self._breakers.allow(sid):  # half-open, and another search's probe is out
                    return _skipped_open(source, self._breakers.retry_in(sid))
                asking = True
                answer = await self._gateways.search(target, query, request_id=request_id, requester=requester)
        except TimeoutError:
            if not asking:
                text = "not asked: the search's deadline passed while it waited for a free connection slot"
                return Answer(source, problems=[Problem(GatewayProblem.SKIPPED, text)])
            cut = "the search's deadline" if limit < self._settings.gateway_timeout else "its timeout"
            timeout = Problem(GatewayProblem.TIMEOUT, f"no answer within {limit:.3g} s ({cut})", failure=True)
            answer = Answer(source, problems=[timeout])
        if answer.failed:
            if self._breakers.failed(sid):
                _log.warning("gateway_circuit_opened", service_id=sid, cooldown=self._settings.breaker_cooldown)
        elif answer.reached:
            self._breakers.succeeded(sid)
        return answer


def _r4_check(resource_type: str) -> Check:
    """The merge's validity check: the resource parses with the R4B model of ``resource_type``."""

    def check(resource: dict[str, Any]) -> str | None:
        try:
            check_resource(resource, resource_type)
        except InvalidResource as exc:
            return "; ".join(f"{message} at {where}" if where else message for message, where in exc.issues[:3])
        return None

    return check


def _skipped_open(source: Source, retry_in: float) -> Answer:
    text = f"skipped: it failed repeatedly (circuit open); it will be tried again in {retry_in:.0f} s"
    return Answer(source, problems=[Problem(GatewayProblem.CIRCUIT_OPEN, text)])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _named(service: Source | LocatedService) -> str:
    return f"service {service.service_id} ({service.name})"
