"""FHIR routes of subscriptions: ``Subscription`` CRUD and search, ``$status``, ``$events``, and the topic.

The routes only speak HTTP; ``SubscriptionResources`` (built per request from the service, the
canonicals and the request's FHIR base) turns requests into service calls and answers into
resources.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from broker.subscriptions.bundles import status_searchset
from broker.subscriptions.service import SubscriptionService, topic_url
from registry import errors
from registry.auth.scopes import Principal
from registry.config import FhirSettings
from registry.fhir.io import etag, fhir_base, fhir_response, last_modified, read_resource, route_opt
from registry.fhir.search import Criteria, SearchQuery, any_text, code_token
from schemas.audit import Interaction
from schemas.fhir.bundle import searchset
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER, Canonicals
from schemas.fhir.capability import FORMAT, PAGING, Operation, ResourceCapability, SearchParam
from schemas.fhir.subscription import (
    BACKPORT_CAPABILITY,
    CONTENT_CODES,
    EXT_TOPIC_CANONICAL,
    OP_EVENTS,
    OP_STATUS,
    PROFILE_SUBSCRIPTION,
    TOPIC_ID,
    read_status_request,
    read_subscription,
)

if TYPE_CHECKING:
    from broker.subscriptions.repository import StoredSubscription
    from schemas.fhir.subscription import SubscriptionClaim

__all__ = ("SUBSCRIPTION", "SubscriptionController", "SubscriptionResources", "SubscriptionTopicController")

SubscriptionId = Annotated[str, PathParameter(description="The subscription id.")]

_STATUSES = ("requested", "active", "error", "off")
_NUMBER = re.compile(r"[0-9]{1,18}")

SUBSCRIPTION = ResourceCapability(
    "Subscription",
    "Topic-based subscriptions (Subscriptions R5 Backport IG STU 1.1.0, rest-hook) to the one topic: a registry "
    "record was created or changed status. Owned by the creating client (others get 404; admin sees all, header "
    "values masked). Payload empty, id-only (default) or full-resource; Standard Webhooks signatures.",
    ("read", "search-type", "create", "update", "delete"),
    search=(
        SearchParam("_id", "token", "The subscription's id.", f"{HL7_SEARCH_PARAMETER}/Resource-id"),
        SearchParam(
            "status",
            "token",
            "requested, active, error or off (comma for several).",
            f"{HL7_SEARCH_PARAMETER}/Subscription-status",
        ),
        SearchParam("url", "uri", "The channel endpoint, exactly.", f"{HL7_SEARCH_PARAMETER}/Subscription-url"),
        *PAGING,
    ),
    versioning="versioned",
    operations=(
        Operation(
            "status",
            OP_STATUS,
            "`GET Subscription/{id}/$status`, `GET|POST Subscription/$status?id=&status=`: current status, "
            "events since start, error, delivery counters.",
        ),
        Operation(
            "events",
            OP_EVENTS,
            "`GET Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: kept events; "
            "the status entry's outcome names numbers no longer kept.",
        ),
    ),
    supported_profiles=(PROFILE_SUBSCRIPTION,),
    instantiates=(BACKPORT_CAPABILITY,),
    canonical_extensions=((EXT_TOPIC_CANONICAL, f"SubscriptionTopic/{TOPIC_ID}"),),
)

_CREATE = ("system/Subscription.c",)
_READ = ("system/Subscription.r",)
_UPDATE = ("system/Subscription.u",)
_DELETE = ("system/Subscription.d",)
_SEARCH = ("system/Subscription.s",)
_STATUS_QUERY = frozenset({FORMAT, "id", "status"})
_EVENTS_QUERY = frozenset({FORMAT, "eventsSinceNumber", "eventsUntilNumber", "content"})


def _number(criteria: Criteria, name: str) -> int | None:
    values = [value for key, value in criteria.items if key == name]
    if not values:
        return None
    if len(values) > 1 or not _NUMBER.fullmatch(values[0]) or int(values[0]) < 1:
        message = f"{name} is one event number (1 or more)"
        raise errors.MalformedRequest(message, issues=[errors.Issue(message, name)])
    return int(values[0])


@dataclass(frozen=True, slots=True)
class SubscriptionResources:
    """Subscriptions as FHIR resources for one request's FHIR base."""

    service: SubscriptionService
    canon: Canonicals
    base: str

    def parse(self, body: bytes) -> SubscriptionClaim:
        """A Subscription body as what it asks for."""
        return read_subscription(body, self.canon)

    def written(
        self, stored: StoredSubscription, actor: Principal, *, status: int, secret: str | None = None
    ) -> Response[bytes]:
        """A subscription as answered to a write or read, with its version headers."""
        headers = {"ETag": etag(stored.version), "Last-Modified": last_modified(stored.updated_at)}
        if status == 201:
            headers["Location"] = f"{self.base}/Subscription/{stored.id}"
        return fhir_response(self.service.resource(stored, actor, secret=secret), status=status, headers=headers)

    async def search(self, query: SearchQuery, actor: Principal) -> dict[str, Any]:
        """A searchset of the caller's subscriptions."""
        ids = query.any_of({"_id": any_text})
        statuses = query.any_of({"status": code_token({s: s for s in _STATUSES})})
        endpoints = query.any_of({"url": any_text})
        found, total = await self.service.search(
            actor=actor, ids=_sorted(ids), statuses=_sorted(statuses), endpoints=_sorted(endpoints),
            limit=query.count, offset=query.offset,
        )  # fmt: skip
        resources = [self.service.resource(s, actor) for s in found]
        return searchset(self.base, resources, total=total, links=query.links(f"{self.base}/Subscription", total))

    async def status(self, actor: Principal, ids: list[str], statuses: list[str]) -> dict[str, Any]:
        """``$status`` over the caller's subscriptions: ids OR-ed, statuses OR-ed (none: no restriction)."""
        split_ids = [part for value in ids for part in value.split(",") if part]
        split_statuses = [part for value in statuses for part in value.split(",") if part]
        unknown = sorted(set(split_statuses) - set(_STATUSES))
        if unknown:
            message = f"unknown status {unknown[0]!r}; use requested, active, error or off"
            raise errors.InvalidInput(message, issues=[errors.Issue(message, "status")])
        found, _ = await self.service.search(
            actor=actor, ids=[i.removeprefix("Subscription/") for i in split_ids] or None,
            statuses=split_statuses or None, endpoints=None, limit=10_000, offset=0,
        )  # fmt: skip
        return status_searchset([self.service.status_parameters(s) for s in found])

    async def events(self, subscription_id: str, criteria: Criteria, actor: Principal) -> dict[str, Any]:
        """``$events`` of one subscription."""
        content = criteria.any_of({"content": code_token({c: c for c in CONTENT_CODES})}, once=True)
        answer = await self.service.events(
            subscription_id, actor=actor, since=_number(criteria, "eventsSinceNumber"),
            until=_number(criteria, "eventsUntilNumber"), content=next(iter(content)) if content else None,
        )  # fmt: skip
        return self.service.events_bundle(answer)


def _sorted(values: set[str] | None) -> list[str] | None:
    return None if values is None else sorted(values)


Resources = NamedDependency[SubscriptionResources]
Caller = NamedDependency[Principal]
Settings = NamedDependency[FhirSettings]


class SubscriptionController(Controller):
    """Subscriptions of the registration topic, owned by the client that created them."""

    path = "/Subscription"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/", operation_id="createSubscription", status_code=201, opt=route_opt(scopes=_CREATE, audit=Interaction.CREATE)
    )
    async def create(
        self, fhir_subscriptions: Resources, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Create a subscription (201, status requested); the signing secret is returned this once."""
        claim = await read_resource(request, fhir_subscriptions.parse)
        stored, secret = await fhir_subscriptions.service.create(claim, actor=principal, base=fhir_subscriptions.base)
        return fhir_subscriptions.written(stored, principal, status=201, secret=secret)

    @get("/{subscription_id:str}", operation_id="readSubscription", opt=route_opt(scopes=_READ, audit=Interaction.READ))
    async def read(
        self, fhir_subscriptions: Resources, principal: Caller, subscription_id: SubscriptionId
    ) -> Response[bytes]:
        """Read one subscription (headers masked unless the caller owns it)."""
        stored = await fhir_subscriptions.service.read(subscription_id, actor=principal)
        return fhir_subscriptions.written(stored, principal, status=200)

    @put(
        "/{subscription_id:str}",
        operation_id="updateSubscription",
        opt=route_opt(scopes=_UPDATE, audit=Interaction.UPDATE),
    )
    async def update(
        self,
        fhir_subscriptions: Resources,
        principal: Caller,
        subscription_id: SubscriptionId,
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:
        """Change a subscription; status off pauses it, requested (or active) on error/off reactivates it."""
        claim = await read_resource(request, fhir_subscriptions.parse)
        stored = await fhir_subscriptions.service.update(
            subscription_id, claim, actor=principal, base=fhir_subscriptions.base
        )
        return fhir_subscriptions.written(stored, principal, status=200)

    @delete(
        "/{subscription_id:str}", operation_id="deleteSubscription", status_code=200,
        opt=route_opt(scopes=_DELETE, audit=Interaction.DELETE),
    )  # fmt: skip
    async def remove(
        self, fhir_subscriptions: Resources, principal: Caller, subscription_id: SubscriptionId
    ) -> Response[bytes]:
        """Delete a subscription: delivery stops and its queued events are cancelled."""
        stored = await fhir_subscriptions.service.delete(subscription_id, actor=principal)
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {"severity": "information", "code": "deleted", "diagnostics": f"subscription {stored.id} deleted"}
            ],
        }
        return fhir_response(outcome)

    @get(
        "/",
        operation_id="searchSubscription",
        opt=route_opt(SUBSCRIPTION.query(), scopes=_SEARCH, audit=Interaction.SEARCH_TYPE),
    )
    async def search(
        self, fhir_subscriptions: Resources, fhir_settings: Settings, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search the caller's subscriptions by id, status and endpoint."""
        return fhir_response(await fhir_subscriptions.search(SearchQuery.paged(request, fhir_settings), principal))

    @get(
        "/$status",
        operation_id="statusSubscriptions",
        opt=route_opt(_STATUS_QUERY, scopes=_READ, audit=Interaction.OPERATION),
    )
    async def status_all(
        self, fhir_subscriptions: Resources, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """The status of the caller's subscriptions (``id`` and ``status`` OR-ed; none: all of them)."""
        query = request.query_params
        return fhir_response(
            await fhir_subscriptions.status(principal, query.getall("id", []), query.getall("status", []))
        )

    @post(
        "/$status",
        operation_id="statusSubscriptionsPost",
        status_code=200,
        opt=route_opt(scopes=_READ, audit=Interaction.OPERATION),
    )
    async def status_post(
        self, fhir_subscriptions: Resources, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """``$status`` with a Parameters body (``id`` and ``status`` parameters)."""
        ids, statuses = await read_resource(request, read_status_request)
        return fhir_response(await fhir_subscriptions.status(principal, ids, statuses))

    @get(
        "/{subscription_id:str}/$status",
        operation_id="statusSubscription",
        opt=route_opt(scopes=_READ, audit=Interaction.OPERATION),
    )
    async def status_one(
        self, fhir_subscriptions: Resources, principal: Caller, subscription_id: SubscriptionId
    ) -> Response[bytes]:
        """The status of one subscription: a searchset of one status Parameters."""
        stored = await fhir_subscriptions.service.read(subscription_id, actor=principal)
        return fhir_response(status_searchset([fhir_subscriptions.service.status_parameters(stored)]))

    @get(
        "/{subscription_id:str}/$events", operation_id="eventsSubscription",
        opt=route_opt(_EVENTS_QUERY, scopes=_READ, audit=Interaction.OPERATION),
    )  # fmt: skip
    async def events(
        self,
        fhir_subscriptions: Resources,
        principal: Caller,
        subscription_id: SubscriptionId,
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:
        """The kept events of one subscription, numbered eventsSinceNumber to eventsUntilNumber."""
        return fhir_response(await fhir_subscriptions.events(subscription_id, Criteria.of(request), principal))


class SubscriptionTopicController(Controller):
    """The registration topic at its canonical URL (public: it describes the API)."""

    path = "/SubscriptionTopic"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get(f"/{TOPIC_ID}", operation_id="readSubscriptionTopic", opt=route_opt(public=True))
    async def read(self, fhir_topic: NamedDependency[Any], request: Request[Any, Any, Any]) -> Response[bytes]:
        """The SubscriptionTopic of registrations (R5 shape, valid R4B JSON)."""
        return fhir_response(fhir_topic(topic_url(fhir_base(request))))
