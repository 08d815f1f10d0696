"""FHIR routes of subscriptions: ``Subscription`` CRUD and search, ``$status``, ``$events``, and the topic.

The routes only speak HTTP; ``SubscriptionResources`` (``resources.py``, built per request for the
request's FHIR base) turns FHIR input into service calls and answers into resources.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import PathParameter

from broker.subscriptions.resources import SubscriptionResources, Written
from registry.auth.scopes import Principal
from registry.config import FhirSettings
from registry.fhirapi.conditional import conditional_create_route, if_none_exist
from registry.fhirapi.io import etag, fhir_base, fhir_response, fhir_route, last_modified, read_resource
from registry.fhirapi.operations import fhir_operation, operation_input
from registry.fhirapi.search import Criteria, SearchQuery
from schemas.audit import Interaction
from schemas.fhir.canonical import HL7_SEARCH_PARAMETER
from schemas.fhir.capability import PAGING, Operation, ResourceCapability, SearchParam
from schemas.fhir.subscription import (
    BACKPORT_CAPABILITY,
    CONSENT_TOPIC_ID,
    EXT_TOPIC_CANONICAL,
    OP_EVENTS,
    OP_STATUS,
    PROFILE_SUBSCRIPTION,
    TOPIC_ID,
    TOPICS,
    topic_url,
)

__all__ = ("SUBSCRIPTION", "SubscriptionController", "SubscriptionTopicController")

SubscriptionId = Annotated[str, PathParameter(description="The subscription id.")]

SUBSCRIPTION = ResourceCapability(
    "Subscription",
    "Topic-based subscriptions (Subscriptions R5 Backport IG STU 1.1.0, rest-hook) to two topics: a registry "
    "record was created or changed status (patient-registration), a patient's Consent changed (patient-consent). "
    "Owned by the creating client (others get 404; admin sees all, header values masked). Payload empty, id-only "
    "(default) or full-resource; Standard Webhooks signatures.",
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
    conditional_create=True,
    operations=(
        Operation(
            "status",
            OP_STATUS,
            "`GET|POST Subscription/{id}/$status`, `GET|POST Subscription/$status?id=&status=` (POST: a Parameters "
            "body): current status, events since start, error, delivery counters.",
        ),
        Operation(
            "events",
            OP_EVENTS,
            "`GET|POST Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=` (POST: a "
            "Parameters body): kept events; the status entry's outcome names numbers no longer kept, and a content "
            "richer than the subscription's.",
        ),
    ),
    supported_profiles=(PROFILE_SUBSCRIPTION,),
    instantiates=(BACKPORT_CAPABILITY,),
    canonical_extensions=tuple((EXT_TOPIC_CANONICAL, f"SubscriptionTopic/{topic}") for topic in TOPICS),
)

_TOPIC_VERSIONS = ("5.0", "4.3")
_CREATE = ("system/Subscription.c",)
_READ = ("system/Subscription.r",)
_UPDATE = ("system/Subscription.u",)
_DELETE = ("system/Subscription.d",)
_SEARCH = ("system/Subscription.s",)
_STATUS_QUERY = ("id", "status")
_EVENTS_QUERY = ("eventsSinceNumber", "eventsUntilNumber", "content")


Resources = NamedDependency[SubscriptionResources]
Caller = NamedDependency[Principal]
Settings = NamedDependency[FhirSettings]


def _written(written: Written, base: str, *, status: int = 200) -> Response[bytes]:
    """A subscription as answered to a write or read, with its version headers (and Location when created)."""
    stored = written.stored
    headers = {"ETag": etag(stored.version), "Last-Modified": last_modified(stored.updated_at)}
    if status == 201:
        headers["Location"] = f"{base}/Subscription/{stored.id}"
    return fhir_response(written.resource, status=status, headers=headers)


class SubscriptionController(Controller):
    """Subscriptions of the registration topic, owned by the client that created them."""

    path = "/Subscription"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @post(
        "/",
        operation_id="createSubscription",
        status_code=201,
        opt=fhir_route(conditional_create_route(SUBSCRIPTION), scopes=_CREATE, audit=Interaction.CREATE, strict=True),
    )
    async def create(
        self, fhir_subscriptions: Resources, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Create a subscription (201, status requested); the signing secret is returned this once. With
        ``If-None-Exist`` (a search of the caller's subscriptions) the one that matches is answered (200) instead."""
        claim = await read_resource(request, fhir_subscriptions.parse)
        existing = await if_none_exist(request, SUBSCRIPTION, lambda c: fhir_subscriptions.matches(c, principal))
        if existing is not None:
            return _written(existing, fhir_subscriptions.base)
        return _written(await fhir_subscriptions.create(claim, principal), fhir_subscriptions.base, status=201)

    @get(
        "/{subscription_id:str}", operation_id="readSubscription", opt=fhir_route(scopes=_READ, audit=Interaction.READ)
    )
    async def read(
        self, fhir_subscriptions: Resources, principal: Caller, subscription_id: SubscriptionId
    ) -> Response[bytes]:
        """Read one subscription (headers masked unless the caller owns it)."""
        return _written(await fhir_subscriptions.read(subscription_id, principal), fhir_subscriptions.base)

    @put(
        "/{subscription_id:str}",
        operation_id="updateSubscription",
        opt=fhir_route(scopes=_UPDATE, audit=Interaction.UPDATE),
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
        written = await fhir_subscriptions.update(subscription_id, claim, principal)
        return _written(written, fhir_subscriptions.base)

    @delete(
        "/{subscription_id:str}", operation_id="deleteSubscription", status_code=200,
        opt=fhir_route(scopes=_DELETE, audit=Interaction.DELETE),
    )  # fmt: skip
    async def remove(
        self, fhir_subscriptions: Resources, principal: Caller, subscription_id: SubscriptionId
    ) -> Response[bytes]:
        """Delete a subscription: delivery stops and its queued events are cancelled."""
        return fhir_response(await fhir_subscriptions.delete(subscription_id, principal))

    @get(
        "/",
        operation_id="searchSubscription",
        opt=fhir_route(SUBSCRIPTION.query(), scopes=_SEARCH, audit=Interaction.SEARCH_TYPE),
    )
    async def search(
        self, fhir_subscriptions: Resources, fhir_settings: Settings, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """Search the caller's subscriptions by id, status and endpoint."""
        return fhir_response(await fhir_subscriptions.search(SearchQuery.paged(request, fhir_settings), principal))

    @fhir_operation(
        "/$status", name="statusSubscriptions", query=_STATUS_QUERY, scopes=_READ, audit=Interaction.OPERATION
    )
    async def status_all(
        self, fhir_subscriptions: Resources, principal: Caller, request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        """The status of the caller's subscriptions (``id`` and ``status`` OR-ed; none: all of them)."""
        given = await operation_input(request)
        ids = [value for key, value in given if key == "id"]
        statuses = [value for key, value in given if key == "status"]
        return fhir_response(await fhir_subscriptions.status(principal, ids, statuses))

    @fhir_operation(
        "/{subscription_id:str}/$status", name="statusSubscription", scopes=_READ, audit=Interaction.OPERATION
    )
    async def status_one(
        self,
        fhir_subscriptions: Resources,
        principal: Caller,
        subscription_id: SubscriptionId,
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:
        """The status of one subscription: a searchset of one status Parameters."""
        await operation_input(request)  # no parameters; unknown ones are ignored or refused like any
        return fhir_response(await fhir_subscriptions.status_of(subscription_id, principal))

    @fhir_operation(
        "/{subscription_id:str}/$events", name="eventsSubscription", query=_EVENTS_QUERY, scopes=_READ,
        audit=Interaction.OPERATION,
    )  # fmt: skip
    async def events(
        self,
        fhir_subscriptions: Resources,
        principal: Caller,
        subscription_id: SubscriptionId,
        request: Request[Any, Any, Any],
    ) -> Response[bytes]:
        """The kept events of one subscription, numbered eventsSinceNumber to eventsUntilNumber."""
        criteria = Criteria(await operation_input(request))
        return fhir_response(await fhir_subscriptions.events(subscription_id, criteria, principal))


class SubscriptionTopicController(Controller):
    """The topics at their canonical URLs (public: they describe the API)."""

    path = "/SubscriptionTopic"
    tags = ["fhir"]  # noqa: RUF012 - Litestar reads this class attribute as is

    @get(f"/{TOPIC_ID}", operation_id="readSubscriptionTopic", opt=fhir_route(public=True))
    async def read(self, fhir_topic: NamedDependency[Any], request: Request[Any, Any, Any]) -> Response[bytes]:
        """The topic of registrations: the Backport IG's R4 representation (a Basic), or the R5 SubscriptionTopic
        when ``Accept`` asks for ``fhirVersion=5.0`` (or ``4.3``, where the resource exists too)."""
        return _topic(fhir_topic, request, TOPIC_ID)

    @get(f"/{CONSENT_TOPIC_ID}", operation_id="readConsentTopic", opt=fhir_route(public=True))
    async def read_consent(self, fhir_topic: NamedDependency[Any], request: Request[Any, Any, Any]) -> Response[bytes]:
        """The topic of consent changes (id-only notifications), in the representations of the registration topic."""
        return _topic(fhir_topic, request, CONSENT_TOPIC_ID)


def _topic(render: Any, request: Request[Any, Any, Any], topic: str) -> Response[bytes]:
    """One topic at its canonical URL: R4 (a Basic) unless ``Accept`` asks for ``fhirVersion=5.0`` or ``4.3``."""
    accept = request.headers.get("accept", "").replace(" ", "")
    version = next((v for v in _TOPIC_VERSIONS if f"fhirVersion={v}" in accept), None)
    resource = render(topic_url(fhir_base(request), topic), topic, r5=version is not None)
    if version is None:
        return fhir_response(resource)
    return fhir_response(resource, media_type=f"application/fhir+json; fhirVersion={version}")
