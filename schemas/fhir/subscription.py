"""R4 ``Subscription`` (Subscriptions R5 Backport IG, STU 1.1.0) both ways, and the topic document.

Inbound: ``read_subscription`` parses a body with the R4B model, then reads the backport
extensions into a ``SubscriptionClaim``, refusing what the server would not honour (unknown
extensions on ``_criteria`` or ``channel``, a custom channel type, a missing content code)
with one issue per problem. The rules that need the server's state (topic URL, filters,
endpoint safety, permissions, limits) are the subscription service's.

Outbound: ``subscription_resource`` renders a stored subscription; ``schemas.fhir.topic`` the
topic served at its canonical URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from schemas.fhir.parse import InvalidResource, Issues, load_resource

if TYPE_CHECKING:
    from schemas.fhir.canonical import Canonicals

__all__ = (
    "BACKPORT",
    "BACKPORT_CAPABILITY",
    "CONSENT_TOPIC_ID",
    "CONTENT_CODES",
    "EXT_CHANNEL_TYPE",
    "EXT_CONTENT",
    "EXT_FILTER",
    "EXT_HEARTBEAT",
    "EXT_MAX_COUNT",
    "EXT_SECRET",
    "EXT_TIMEOUT",
    "EXT_TOPIC_CANONICAL",
    "OP_EVENTS",
    "OP_STATUS",
    "PROFILE_NOTIFICATION",
    "PROFILE_STATUS",
    "PROFILE_SUBSCRIPTION",
    "STATS_EXTENSIONS",
    "SUBSCRIPTION_ERROR_SYSTEM",
    "TOPICS",
    "TOPIC_ID",
    "StoredView",
    "SubscriptionClaim",
    "names_topic",
    "read_subscription",
    "subscription_resource",
    "topic_url",
)

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
_SD = f"{BACKPORT}/StructureDefinition"
EXT_FILTER = f"{_SD}/backport-filter-criteria"
EXT_CHANNEL_TYPE = f"{_SD}/backport-channel-type"
EXT_CONTENT = f"{_SD}/backport-payload-content"
EXT_HEARTBEAT = f"{_SD}/backport-heartbeat-period"
EXT_TIMEOUT = f"{_SD}/backport-timeout"
EXT_MAX_COUNT = f"{_SD}/backport-max-count"
EXT_TOPIC_CANONICAL = f"{_SD}/capabilitystatement-subscriptiontopic-canonical"
PROFILE_SUBSCRIPTION = f"{_SD}/backport-subscription"
PROFILE_STATUS = f"{_SD}/backport-subscription-status-r4"
PROFILE_NOTIFICATION = f"{_SD}/backport-subscription-notification-r4"
BACKPORT_CAPABILITY = f"{BACKPORT}/CapabilityStatement/backport-subscription-server-r4"
OP_STATUS = f"{BACKPORT}/OperationDefinition/backport-subscription-status"
OP_EVENTS = f"{BACKPORT}/OperationDefinition/backport-subscription-events"
SUBSCRIPTION_ERROR_SYSTEM = "http://terminology.hl7.org/CodeSystem/subscription-error"

EXT_SECRET = "subscription-signing-secret"  # noqa: S105 - an extension id, not a secret
"""Id of the IEF extension on ``Subscription.channel`` carrying the Standard Webhooks secret (``whsec_…``)."""

STATS_EXTENSIONS = (
    "subscription-delivered-count",
    "subscription-pending-count",
    "subscription-failed-attempts",
    "subscription-last-error",
    "subscription-last-success",
)
"""Ids of the IEF extensions on the ``subscription`` parameter of ``$status`` answers (delivery counters)."""

TOPIC_ID = "patient-registration"
"""The registration topic: a registration for a patient was created or changed status."""
CONSENT_TOPIC_ID = "patient-consent"
"""The consent topic: a patient's Consent was created or changed (id-only: never its content)."""
TOPICS = (TOPIC_ID, CONSENT_TOPIC_ID)

CONTENT_CODES = ("empty", "id-only", "full-resource")

_CHANNEL_EXTENSIONS = (EXT_HEARTBEAT, EXT_TIMEOUT, EXT_MAX_COUNT)
_S = "Subscription"


@dataclass(frozen=True, slots=True)
class SubscriptionClaim:
    """What a Subscription body asks for, read but not yet checked against the server's rules.

    ``filters`` are the filter-criteria strings with the expression each came from.
    """

    id: str | None
    status: str
    reason: str
    end: datetime | None
    criteria: str
    filters: list[tuple[str, str]]
    channel_type: str
    endpoint: str | None
    payload: str | None
    content: str | None
    headers: list[str]
    heartbeat_period: int | None = None
    timeout: int | None = None
    max_count: int | None = None
    secret: str | None = None
    secret_expression: str = f"{_S}.channel.extension"


def _value(ext: dict[str, Any], kinds: tuple[str, ...]) -> Any:
    for kind in kinds:
        if kind in ext:
            return ext[kind]
    return None


class _Reader:
    def __init__(self, canon: Canonicals) -> None:
        self.secret_url = canon.extension(EXT_SECRET)
        self.issues: Issues = []

    def problem(self, message: str, where: str) -> None:
        self.issues.append((message, where))

    def filters(self, data: dict[str, Any]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for index, ext in enumerate((data.get("_criteria") or {}).get("extension") or []):
            where = f"{_S}._criteria.extension[{index}]"
            if ext.get("url") != EXT_FILTER:
                self.problem(f"unknown extension {ext.get('url')!r} on criteria; filters use {EXT_FILTER}", where)
            elif not isinstance(ext.get("valueString"), str):
                self.problem("a filter criteria extension carries valueString", where)
            else:
                found.append((ext["valueString"], f"{where}.valueString"))
        return found

    def channel(self, channel: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if (channel.get("_type") or {}).get("extension"):
            self.problem(
                "custom channel types (backport-channel-type) are not supported; use rest-hook", f"{_S}.channel.type"
            )
        for index, ext in enumerate(channel.get("extension") or []):
            where = f"{_S}.channel.extension[{index}]"
            url = ext.get("url")
            if url in values:
                self.problem(f"the extension {url} appears more than once", where)
            elif url in _CHANNEL_EXTENSIONS:
                number = _value(ext, ("valueUnsignedInt", "valuePositiveInt", "valueInteger"))
                if not isinstance(number, int):
                    self.problem(f"{url} carries a whole number", where)
                else:
                    values[url] = number
            elif url == self.secret_url:
                values[url] = (ext.get("valueString"), where)
            else:
                self.problem(f"unknown extension {url!r} on channel", f"{where}.url")
        self.content(channel, values)
        return values

    def content(self, channel: dict[str, Any], values: dict[str, Any]) -> None:
        for index, ext in enumerate((channel.get("_payload") or {}).get("extension") or []):
            where = f"{_S}.channel._payload.extension[{index}]"
            code = ext.get("valueCode")
            if ext.get("url") != EXT_CONTENT:
                self.problem(f"unknown extension {ext.get('url')!r} on channel.payload", where)
            elif code not in CONTENT_CODES:
                self.problem(f"payload content {code!r} is not one of {', '.join(CONTENT_CODES)}", where)
            elif "content" in values:
                self.problem("give the payload content once", where)
            else:
                values["content"] = code

    def top_level(self, data: dict[str, Any]) -> None:
        for name in ("modifierExtension", "extension", "contained", "implicitRules"):
            if data.get(name):
                self.problem(f"this server does not take Subscription.{name}", f"{_S}.{name}")
        profiles = (data.get("meta") or {}).get("profile")
        if profiles and PROFILE_SUBSCRIPTION not in profiles:
            self.problem(f"meta.profile must include {PROFILE_SUBSCRIPTION}", f"{_S}.meta.profile")


def read_subscription(body: bytes, canon: Canonicals) -> SubscriptionClaim:
    """Parse a Subscription body (create or update).

    Raises:
        NotJson: the body is not JSON.
        InvalidResource: not a valid R4 Subscription, or backport extensions this server does not take.
    """
    data = load_resource(body, "Subscription")
    reader = _Reader(canon)
    reader.top_level(data)
    filters = reader.filters(data)
    channel = data.get("channel") or {}
    values = reader.channel(channel)
    if channel.get("payload") and "content" not in values:
        reader.problem(
            f"channel._payload carries the payload content extension {EXT_CONTENT} (empty, id-only or full-resource)",
            f"{_S}.channel._payload",
        )
    if reader.issues:
        raise InvalidResource("the Subscription is not one this server accepts", reader.issues)
    secret, secret_where = values.get(reader.secret_url, (None, f"{_S}.channel.extension"))
    end = data.get("end")
    return SubscriptionClaim(
        id=data.get("id"),
        status=data["status"],
        reason=data["reason"],
        end=datetime.fromisoformat(end.replace("Z", "+00:00")) if isinstance(end, str) else None,
        criteria=data["criteria"],
        filters=filters,
        channel_type=channel.get("type", ""),
        endpoint=channel.get("endpoint"),
        payload=channel.get("payload"),
        content=values.get("content"),
        headers=list(channel.get("header") or []),
        heartbeat_period=values.get(EXT_HEARTBEAT),
        timeout=values.get(EXT_TIMEOUT),
        max_count=values.get(EXT_MAX_COUNT),
        secret=secret,
        secret_expression=secret_where,
    )


@dataclass(frozen=True, slots=True)
class StoredView:
    """A stored subscription as the resource shows it (headers already masked where they must be)."""

    id: str
    version: int
    updated_at: datetime
    status: str
    reason: str
    end: datetime | None
    topic: str
    filters: list[str]
    endpoint: str
    payload: str
    content: str
    headers: list[str]
    heartbeat_period: int | None
    timeout: int
    max_count: int
    error: str | None = None
    secret: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def subscription_resource(view: StoredView, canon: Canonicals) -> dict[str, Any]:
    """A stored subscription as an R4 backport Subscription; the secret only when ``view.secret`` is set."""
    channel_ext: list[dict[str, Any]] = []
    if view.heartbeat_period is not None:
        channel_ext.append({"url": EXT_HEARTBEAT, "valueUnsignedInt": view.heartbeat_period})
    channel_ext.append({"url": EXT_TIMEOUT, "valueUnsignedInt": view.timeout})
    channel_ext.append({"url": EXT_MAX_COUNT, "valuePositiveInt": view.max_count})
    if view.secret is not None:
        channel_ext.append({"url": canon.extension(EXT_SECRET), "valueString": view.secret})
    channel: dict[str, Any] = {
        "extension": channel_ext,
        "type": "rest-hook",
        "endpoint": view.endpoint,
        "payload": view.payload,
        "_payload": {"extension": [{"url": EXT_CONTENT, "valueCode": view.content}]},
    }
    if view.headers:
        channel["header"] = view.headers
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": view.id,
        "meta": {"versionId": str(view.version), "lastUpdated": view.updated_at, "profile": [PROFILE_SUBSCRIPTION]},
        "status": view.status,
    }
    if view.end is not None:
        resource["end"] = view.end
    resource["reason"] = view.reason
    resource["criteria"] = view.topic
    if view.filters:
        resource["_criteria"] = {"extension": [{"url": EXT_FILTER, "valueString": f} for f in view.filters]}
    if view.error:
        resource["error"] = view.error
    resource["channel"] = channel
    return resource


def topic_url(base: str, topic: str = TOPIC_ID) -> str:
    """The canonical URL of a topic (the registration topic unless told) under a FHIR base."""
    return f"{base}/SubscriptionTopic/{topic}"


def names_topic(criteria: str, base: str, topic: str = TOPIC_ID) -> bool:
    """Whether a Subscription's ``criteria`` names ``topic`` (default: registrations) of the FHIR base ``base``.

    The topic is recognised by its path under the base, whatever host name the client learned it
    under: a server answers to several names (a load balancer's, a node's, ``localhost``), and
    without a configured public base URL each name gives the topic another URL.
    """
    wanted = urlsplit(topic_url(base, topic))
    given = urlsplit(criteria.split("|", 1)[0])
    return given.scheme in ("http", "https") and bool(given.netloc) and (given.path, given.query) == (wanted.path, "")
