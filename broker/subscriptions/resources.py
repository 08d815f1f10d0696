"""Subscriptions as FHIR resources: the Subscription, ``$status`` and ``$events`` answers, and the views
notifications are rendered from. No HTTP here; the rules are ``SubscriptionService``'s.

``SubscriptionResources`` is built per request (the request's FHIR base is the subscriptions' base);
its methods take FHIR input (a parsed body, search criteria) and answer FHIR resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.subscriptions.bundles import EventView, StatusView, notification_bundle, status_parameters, status_searchset
from broker.subscriptions.service import visible_headers
from registry import errors
from registry.fhirapi.search import Criteria, SearchQuery, any_text, code_token
from schemas.fhir.bundle import searchset
from schemas.fhir.outcome import OutcomeIssue, operation_outcome
from schemas.fhir.subscription import (
    CONTENT_CODES,
    STATS_EXTENSIONS,
    StoredView,
    read_subscription,
    subscription_resource,
    topic_url,
)

if TYPE_CHECKING:
    from broker.subscriptions.repository import StoredEvent, StoredSubscription
    from broker.subscriptions.service import EventsAnswer, SubscriptionService
    from registry.auth.scopes import Principal
    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.subscription import SubscriptionClaim

__all__ = ("STATUSES", "SubscriptionResources", "Written", "event_view", "status_view")

STATUSES = ("requested", "active", "error", "off")
"""Every status a subscription can have (search and ``$status`` filter by them)."""

_NUMBER = re.compile(r"[0-9]{1,18}")


def event_view(event: StoredEvent) -> EventView:
    """A stored event as the bundles show it."""
    return EventView(
        number=event.event_number, occurred_at=event.occurred_at, change=event.change, record_id=event.record_id,
        ihi=event.ihi, service_id=event.service_id, status=event.record_status, type=event.record_type,
        version=event.record_version, updated=event.record_updated, consent_id=event.consent_id,
        withheld=event.state == "withheld",
    )  # fmt: skip


def status_view(stored: StoredSubscription, stats: list[dict[str, Any]] | None = None) -> StatusView:
    """A stored subscription's status as the bundles show it."""
    return StatusView(
        base=stored.base_url, subscription_id=stored.id, topic=topic_url(stored.base_url, stored.topic),
        status=stored.status,
        events_since_start=stored.events_since_start, content=stored.content, error_code=stored.error_code,
        error_text=stored.error_text, stats=stats or [],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Written:
    """A subscription as answered to a write or a read: the resource and the row it shows."""

    resource: dict[str, Any]
    stored: StoredSubscription


def _number(criteria: Criteria, name: str) -> int | None:
    values = [value for key, value in criteria.items if key == name]
    if not values:
        return None
    if len(values) > 1 or not _NUMBER.fullmatch(values[0]) or int(values[0]) < 1:
        message = f"{name} is one event number (1 or more)"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, name)])
    return int(values[0])


def _sorted(values: set[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


class SubscriptionResources:
    """Subscriptions as FHIR resources for one request's FHIR base (``base``)."""

    __slots__ = ("base", "canon", "service")

    def __init__(self, service: SubscriptionService, canon: Canonicals, base: str) -> None:
        self.service = service
        self.canon = canon
        self.base = base

    def parse(self, body: bytes) -> SubscriptionClaim:
        """A Subscription body as what it asks for (``schemas.fhir.subscription``)."""
        return read_subscription(body, self.canon)

    def resource(self, stored: StoredSubscription, actor: Principal, *, secret: str | None = None) -> dict[str, Any]:
        """A stored subscription as the caller may see it (header values masked unless it owns it)."""
        view = StoredView(
            id=stored.id, version=stored.version, updated_at=stored.updated_at, status=stored.status,
            reason=stored.reason, end=stored.end_at, topic=topic_url(stored.base_url, stored.topic),
            filters=stored.filters,
            endpoint=stored.endpoint, payload=stored.payload_type, content=stored.content,
            headers=visible_headers(stored, actor), heartbeat_period=stored.heartbeat_period,
            timeout=stored.timeout_seconds, max_count=stored.max_count, error=stored.error_text or stored.error_code,
            secret=secret,
        )  # fmt: skip
        return subscription_resource(view, self.canon)

    async def create(self, claim: SubscriptionClaim, actor: Principal) -> Written:
        """Create a subscription; the resource carries its signing secret this once."""
        stored, secret = await self.service.create(claim, actor=actor, base=self.base)
        return Written(self.resource(stored, actor, secret=secret), stored)

    async def read(self, subscription_id: str, actor: Principal) -> Written:
        """One subscription the caller may see."""
        stored = await self.service.read(subscription_id, actor=actor)
        return Written(self.resource(stored, actor), stored)

    async def update(self, subscription_id: str, claim: SubscriptionClaim, actor: Principal) -> Written:
        """A client's change to its subscription."""
        stored = await self.service.update(subscription_id, claim, actor=actor, base=self.base)
        return Written(self.resource(stored, actor), stored)

    async def delete(self, subscription_id: str, actor: Principal) -> dict[str, Any]:
        """Delete a subscription; the answer is an OperationOutcome saying so."""
        stored = await self.service.delete(subscription_id, actor=actor)
        issue = OutcomeIssue(f"subscription {stored.id} deleted", "deleted", severity="information")
        return operation_outcome([issue])

    async def search(self, query: SearchQuery, actor: Principal) -> dict[str, Any]:
        """A searchset of the caller's subscriptions (every one, for ``admin``)."""
        found, total = await self._find(query, actor, limit=query.count, offset=query.offset)
        resources = [self.resource(s, actor) for s in found]
        return searchset(self.base, resources, total=total, links=query.links(f"{self.base}/Subscription", total))

    async def matches(self, criteria: Criteria, actor: Principal) -> list[Written]:
        """At most two of the caller's subscriptions that ``criteria`` select (a conditional create's question)."""
        found, _total = await self._find(criteria, actor, limit=2, offset=0)
        return [Written(self.resource(s, actor), s) for s in found]

    async def _find(
        self, criteria: Criteria, actor: Principal, *, limit: int, offset: int
    ) -> tuple[list[StoredSubscription], int]:
        ids = criteria.any_of({"_id": any_text})
        statuses = criteria.any_of({"status": code_token({s: s for s in STATUSES})})
        endpoints = criteria.any_of({"url": any_text})
        return await self.service.search(
            actor=actor, ids=_sorted(ids), statuses=_sorted(statuses), endpoints=_sorted(endpoints),
            limit=limit, offset=offset,
        )  # fmt: skip

    async def status(self, actor: Principal, ids: list[str], statuses: list[str]) -> dict[str, Any]:
        """``$status`` over the caller's subscriptions: ids OR-ed, statuses OR-ed (none: no restriction)."""
        split_ids = [part for value in ids for part in value.split(",") if part]
        split_statuses = [part for value in statuses for part in value.split(",") if part]
        unknown = sorted(set(split_statuses) - set(STATUSES))
        if unknown:
            message = f"unknown status {unknown[0]!r}; use requested, active, error or off"
            raise errors.InvalidInput(message, issues=[errors.Issue(message, "status")])
        found, _ = await self.service.search(
            actor=actor, ids=[i.removeprefix("Subscription/") for i in split_ids] or None,
            statuses=split_statuses or None, endpoints=None, limit=10_000, offset=0,
        )  # fmt: skip
        return status_searchset([self.status_parameters(s) for s in found])

    async def status_of(self, subscription_id: str, actor: Principal) -> dict[str, Any]:
        """``Subscription/{id}/$status``: a searchset of one status Parameters."""
        stored = await self.service.read(subscription_id, actor=actor)
        return status_searchset([self.status_parameters(stored)])

    def status_parameters(self, stored: StoredSubscription) -> dict[str, Any]:
        """The ``query-status`` Parameters of one subscription, with its delivery counters."""
        return status_parameters(status_view(stored, self._stats(stored)), "query-status")

    def _stats(self, stored: StoredSubscription) -> list[dict[str, Any]]:
        """The delivery counters of a subscription as extensions (on ``$status``'s subscription parameter)."""
        delivered, pending, failed, last_error, last_success = (self.canon.extension(i) for i in STATS_EXTENSIONS)
        found: list[dict[str, Any]] = [
            {"url": delivered, "valueDecimal": stored.delivered_count},
            {"url": pending, "valueDecimal": stored.pending},
            {"url": failed, "valueDecimal": stored.failed_attempts},
        ]
        if stored.last_error:
            found.append({"url": last_error, "valueString": stored.last_error})
        if stored.last_success_at:
            found.append({"url": last_success, "valueInstant": stored.last_success_at})
        return found

    async def events(self, subscription_id: str, criteria: Criteria, actor: Principal) -> dict[str, Any]:
        """``$events`` of one subscription: a ``query-event`` history Bundle of the kept events asked for."""
        content = criteria.any_of({"content": code_token({c: c for c in CONTENT_CODES})}, once=True)
        answer = await self.service.events(
            subscription_id, actor=actor, since=_number(criteria, "eventsSinceNumber"),
            until=_number(criteria, "eventsUntilNumber"), content=next(iter(content)) if content else None,
        )  # fmt: skip
        return self._events_bundle(answer)

    def _events_bundle(self, answer: EventsAnswer) -> dict[str, Any]:
        """The ``$events`` answer; the status entry's outcome names the numbers no longer kept."""
        issues = []
        if answer.gone is not None:
            low, high = answer.gone
            numbers = str(low) if low == high else f"{low} to {high}"
            text = (
                f"events {numbers} are no longer kept (retention {answer.retention_seconds} s); the oldest kept is "
                f"{answer.subscription.purged_through + 1}"
            )
            issues.append(OutcomeIssue(text, "not-found", severity="warning"))
        if answer.not_given is not None:
            text = (
                f"content {answer.not_given} was asked for; events are given as {answer.content}, the content this "
                "subscription was created with (a request may ask for less detail, never more)"
            )
            issues.append(OutcomeIssue(text, "not-supported", severity="warning", expression="content"))
        outcome = operation_outcome(issues) if issues else None
        return notification_bundle(
            status_view(answer.subscription), "query-event", [event_view(e) for e in answer.events],
            canon=self.canon, content=answer.content, outcome=outcome,
        )  # fmt: skip
