"""The iterative resolver (DESIGN §5): this registry follows ``registry`` records itself, like a DNS resolver.

For one look-up, ``Resolver.follow`` starts from this registry's own records. Every active
``registry`` record is a referral: the registry it names is asked with ``follow=false`` (so it
answers with its own records only and nothing amplifies), and its ``registry`` records are
followed in turn. Referrals are asked shallowest first, at most ``federation.concurrency`` at a
time, within the limits ``federation.hops.Lookup`` keeps (loops, hop limit, budget, deadline).

Before a registry is asked, this registry must be able to ask it: it is in the services
directory, enabled, of kind registry and has credentials (else ``not-a-member``), and it has not
failed a moment ago (else ``failed-recently``, from the negative cache).

The answer lists every ``record``-type record learned, de-duplicated by service ID (the shortest
chain wins; this registry's own records have an empty chain), each with ``via``; and every
registry that could not be followed, with the reason. A look-up never fails because a peer did.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from federation.client import PeerError
from federation.hops import HopLimits, Lookup
from registry.audit.context import note_detail
from registry.log import get_logger, ihi_hash
from schemas.records import RecordList
from schemas.types import RecordStatus, RecordType, ServiceKind, ServiceStatus, UnresolvedReason

if TYPE_CHECKING:
    from federation.backoff import FailureCache
    from federation.client import PeerAnswer, PeerClient
    from registry.auth.requester import Requester
    from registry.config import FederationSettings
    from registry.feature import Members
    from schemas.records import Record
    from schemas.services import Service

__all__ = ("Resolver",)

_log = get_logger(__name__)


class Resolver:
    """Follows referrals for the records layer (``registry.records.service.Referrals``); one per process."""

    def __init__(
        self,
        *,
        origin: str,
        directory: Members,
        client: PeerClient,
        settings: FederationSettings,
        failures: FailureCache,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.origin = origin
        self.directory = directory
        self.client = client
        self.limits = HopLimits.of(settings)
        self.concurrency = settings.concurrency
        self.failures = failures
        self.clock = clock

    async def follow(
        self,
        ihi: str,
        found: list[Record],
        statuses: list[str],
        *,
        request_id: str,
        deadline: float | None = None,
        requester: Requester | None = None,
    ) -> RecordList:
        """Resolve the ``registry`` records among ``found`` (this registry's records of ``ihi``), by ``deadline``
        (a ``time.monotonic()`` instant) if that is sooner than ``federation.deadline`` from now."""
        started = self.clock()
        lookup = Lookup(self.origin, self.limits, started=started, until=deadline)
        run = _Run(self, ihi, statuses, request_id, lookup, requester)
        answer = await run.resolve(found)
        unresolved = answer.unresolved or []
        note_detail(f"referrals followed: {run.lookup.sent} registries asked, {len(unresolved)} unresolved")
        _log.info(
            "federation_lookup",
            ihi_hash=ihi_hash(ihi),
            asked=run.lookup.sent,
            records=len(answer.records),
            unresolved=len(unresolved),
            duration_ms=round((self.clock() - started) * 1000, 1),
        )
        return answer


class _Run:
    """One look-up in progress."""

    def __init__(
        self,
        resolver: Resolver,
        ihi: str,
        statuses: list[str],
        request_id: str,
        lookup: Lookup,
        requester: Requester | None,
    ) -> None:
        self.r = resolver
        self.ihi = ihi
        self.statuses = statuses
        self.request_id = request_id
        self.lookup = lookup
        self.results: dict[str, tuple[Record, str | None]] = {}
        """Each service's record, and the registry it was learned from (None: this one)."""
        self.pending: list[tuple[int, int, str]] = []
        """Registries to ask: (hop, order found, service ID), shallowest first."""
        self.peers: dict[str, Service] = {}
        self._order = itertools.count()
        self.requester = requester
        self.withheld = False
        """A peer's own decision point withheld something."""

    async def resolve(self, found: list[Record]) -> RecordList:
        in_flight: dict[asyncio.Task[PeerAnswer], str] = {}
        try:
            await self._take(None, found)
            while self.pending or in_flight:
                while self.pending and len(in_flight) < self.r.concurrency:
                    _, _, target = heapq.heappop(self.pending)
                    timeout = self.lookup.dispatch(target, self.r.clock())
                    if timeout is not None:
                        ask = self.r.client.records(
                            self.peers[target],
                            self.ihi,
                            self.statuses,
                            within=timeout,
                            request_id=self.request_id,
                            requester=self.requester,
                        )
                        in_flight[asyncio.create_task(ask)] = target
                if not in_flight:
                    break
                # Each request ends by the deadline on its own (its timeout is what was left of it).
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    await self._answered(in_flight.pop(task), task)
        finally:
            for task in in_flight:
                task.cancel()
        return self._answer()

    async def _answered(self, peer: str, task: asyncio.Task[PeerAnswer]) -> None:
        try:
            answer = task.result()
        except PeerError as exc:
            self._failed(peer, exc.reason, exc.detail)
            return
        except Exception:  # noqa: BLE001 - one peer's answer must not fail the look-up, even through a bug here
            _log.exception("unhandled_error", route="federation peer answer", service_id=peer)
            self._failed(peer, UnresolvedReason.INVALID_RESPONSE, "its answer could not be handled (see the log)")
            return
        if answer.dropped:
            shown = "; ".join(answer.dropped[:3]) + ("; …" if len(answer.dropped) > 3 else "")
            detail = f"{len(answer.dropped)} of its records were dropped: {shown}"
            self.lookup.report(peer, UnresolvedReason.INVALID_RESPONSE, detail)
            _log.warning("federation_peer_failed", service_id=peer, reason="invalid-response", detail=detail)
        self.withheld = self.withheld or answer.withheld
        await self._take(peer, answer.records)

    def _failed(self, peer: str, reason: UnresolvedReason, detail: str) -> None:
        self.lookup.report(peer, reason, detail)
        self.r.failures.note(peer, reason, detail)
        _log.warning("federation_peer_failed", service_id=peer, reason=str(reason), detail=detail)

    async def _take(self, holder: str | None, records: list[Record]) -> None:
        """Keep the records ``holder`` answered (None: this registry's own) and queue its referrals."""
        hop = len(self.lookup.chain(holder))
        referred: list[str] = []
        for record in records:
            if record.type is RecordType.REGISTRY:
                if record.status is RecordStatus.ACTIVE and self.lookup.refer(holder, record.service_id):
                    referred.append(record.service_id)
                continue
            kept = self.results.get(record.service_id)
            if kept is None or hop < len(self.lookup.chain(kept[1])):
                self.results[record.service_id] = (record, holder)
        if not referred:
            return
        known = await self.r.directory.get_many(referred)
        for target in referred:
            refusal = _refusal(known.get(target))
            failure = self.r.failures.recent(target)
            if refusal is not None:
                self.lookup.report(target, UnresolvedReason.NOT_A_MEMBER, refusal)
            elif failure is not None:
                self.lookup.report(target, UnresolvedReason.FAILED_RECENTLY, self.r.failures.describe(failure))
            else:
                self.peers[target] = known[target]
                heapq.heappush(self.pending, (self.lookup.hop(target), next(self._order), target))

    def _answer(self) -> RecordList:
        records = [
            msgspec.structs.replace(record, via=list(self.lookup.chain(holder)))
            for record, holder in self.results.values()
        ]
        records.sort(key=lambda r: (len(r.via or ()), r.service_id))
        return RecordList(ihi=self.ihi, records=records, unresolved=self.lookup.unresolved(), withheld=self.withheld)


def _refusal(service: Service | None) -> str | None:
    """Why this registry cannot ask ``service``, or None when it can."""
    if service is None:
        return "it is not in this registry's services directory"
    if service.status is not ServiceStatus.ENABLED:
        return "it is disabled in this registry's services directory"
    if service.kind is not ServiceKind.REGISTRY:
        return f"it is a {service.kind} in this registry's services directory, not a registry"
    if not service.client_id and not service.bearer_token_file:
        return "this registry has no credentials for it (services add --client-id or --bearer-token-file)"
    return None
