"""Subscription rules: validation, ownership, lifecycle, ``$status`` and ``$events``. No HTTP in here.

Subscriptions belong to the client that created them: other clients get 404 for them; an
``admin`` caller sees every subscription, with ``channel.header`` values masked unless it owns
it. The server sets ``requested`` on create and after a client's reactivation (``PUT`` with
``status`` ``requested`` or ``active`` on an ``error`` or ``off`` subscription) and lets the
delivery worker make it ``active`` after a handshake; it never reactivates one by itself.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from broker.subscriptions import permissions
from broker.subscriptions.filters import parse_filters
from broker.subscriptions.repository import SubscriptionWrite
from broker.subscriptions.signing import check_secret, generate_secret
from registry import errors
from registry.audit.context import note_detail, note_patients
from registry.log import get_logger
from registry.outbound.egress import AddressRefused, EgressError
from schemas.audit import Action
from schemas.fhir.subscription import CONSENT_TOPIC_ID, CONTENT_CODES, TOPICS, names_topic, topic_url

if TYPE_CHECKING:
    from broker.subscriptions.groups import GroupRepository
    from broker.subscriptions.repository import StoredEvent, StoredSubscription, SubscriptionRepository
    from registry.audit.trail import AuditTrail
    from registry.auth.scopes import Principal
    from registry.config import SubscriptionSettings
    from registry.db.pool import Database
    from registry.outbound.egress import AddressPolicy
    from schemas.fhir.canonical import Canonicals
    from schemas.fhir.subscription import SubscriptionClaim

__all__ = ("EventsAnswer", "SubscriptionService", "mask_headers", "visible_headers")

_log = get_logger(__name__)
_S = "Subscription"
_MIME = re.compile(r" *(application/fhir\+json|application/json) *(?:; *fhirVersion *= *([0-9.]+) *)?")
_FHIR_VERSIONS = frozenset({"4.0", "4.0.1"})
_HEADER = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?")
_RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"}
)
_LEVELS = {code: rank for rank, code in enumerate(CONTENT_CODES)}
_MASK = "***"


def _bad(message: str, where: str, code: errors.ErrorCode | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, issues=[errors.Issue(message, where)], code=code)


def _clamp(value: int | None, low: int, high: int, default: int | None) -> int | None:
    if value is None:
        return default
    return max(low, min(high, value))


def _check_headers(headers: list[str]) -> list[str]:
    for index, header in enumerate(headers):
        where = f"{_S}.channel.header[{index}]"
        match = _HEADER.fullmatch(header)
        if not match or any(c in header for c in "\r\n\0"):
            raise _bad(
                "a channel header is 'Name: value': a token, a colon, one optional space, then printable ASCII "
                "that neither starts nor ends with a space (HTTP cannot carry it otherwise)",
                where,
            )
        name = match.group(1).lower()
        if name in _RESERVED_HEADERS or name.startswith("webhook-"):
            raise _bad(f"the header {match.group(1)!r} is set by the server and cannot be given", where)
    return headers


def mask_headers(headers: list[str]) -> list[str]:
    """Header lines with their values hidden (``Authorization: ***``)."""
    return [f"{header.split(':', 1)[0]}: {_MASK}" for header in headers]


def visible_headers(stored: StoredSubscription, actor: Principal) -> list[str]:
    """A subscription's ``channel.header`` lines as ``actor`` may see them: values only for its owner."""
    return stored.headers if stored.client_id == actor.client_id else mask_headers(stored.headers)


@dataclass(frozen=True, slots=True)
class EventsAnswer:
    """What ``$events`` returns: the subscription, the kept events asked for, and the numbers no longer kept
    (final events are kept ``retention_seconds``)."""

    subscription: StoredSubscription
    events: list[StoredEvent]
    content: str
    gone: tuple[int, int] | None
    retention_seconds: int
    not_given: str | None = None
    """A content the request asked for that is richer than the subscription's (answered at its own level)."""


def _check_consent_topic(claim: SubscriptionClaim) -> None:
    """The consent topic filters by patient only and never sends a Consent's content.

    Raises:
        InvalidInput: another filter, or full-resource payloads.
    """
    for text, where in claim.filters:
        if text.split("=", 1)[0].strip() != "patient":
            raise _bad("the patient-consent topic filters by patient only", where)
    if claim.content == "full-resource":
        message = "the patient-consent topic is id-only: a Consent's content is never sent"
        raise _bad(message, f"{_S}.channel.payload.extension")


class SubscriptionService:
    """Everything the FHIR Subscription routes do."""

    def __init__(
        self,
        db: Database,
        repository: SubscriptionRepository,
        settings: SubscriptionSettings,
        audit: AuditTrail,
        *,
        canon: Canonicals,
        policy: AddressPolicy,
        groups: GroupRepository,
    ) -> None:
        self._db = db
        self._repo = repository
        self._groups = groups
        self._settings = settings
        self._audit = audit
        self._canon = canon
        self._policy = policy

    # Validation

    async def _check(
        self, claim: SubscriptionClaim, actor: Principal, base: str, current: StoredSubscription | None
    ) -> SubscriptionWrite:
        """Every rule a Subscription body must meet; the validated, clamped write."""
        topic = next((t for t in TOPICS if names_topic(claim.criteria, base, t)), None)
        if topic is None:
            named = " or ".join(topic_url(base, t) for t in TOPICS)
            raise _bad(f"this server's topics are {named}; criteria names another", f"{_S}.criteria")
        if current is not None and current.topic != topic:
            raise _bad("a subscription's topic cannot change: create another subscription", f"{_S}.criteria")
        if topic == CONSENT_TOPIC_ID:
            _check_consent_topic(claim)
        if claim.channel_type != "rest-hook":
            raise _bad(f"channel type {claim.channel_type!r} is not supported; use rest-hook", f"{_S}.channel.type")
        filters = parse_filters(claim.filters, service_system=self._canon.service_id_system)
        payload = self._payload(claim)
        content = claim.content or "id-only"
        async with self._db.reader() as conn:
            owner = await self._repo.owner(conn, actor.client_id)
        why = permissions.refusal(
            actor.scopes, content=content, has_patient=filters.ihi is not None or filters.group is not None,
            full_resource_allowed=bool(owner and owner.full_resource),
        )  # fmt: skip
        if why:
            raise errors.Forbidden(why)
        if not claim.endpoint:
            raise _bad("a rest-hook subscription names its endpoint", f"{_S}.channel.endpoint")
        try:
            await self._policy.check(claim.endpoint, "the endpoint")
        except EgressError as exc:
            refused = errors.ErrorCode.ADDRESS_REFUSED if isinstance(exc, AddressRefused) else None
            raise _bad(str(exc), f"{_S}.channel.endpoint", refused) from None
        secret, previous, previous_until = self._secret(claim, current)
        settings = self._settings
        return SubscriptionWrite(
            status=claim.status, reason=claim.reason, end_at=claim.end, base_url=base, filter_ihi=filters.ihi,
            filter_services=list(filters.services) if filters.services else None,
            filter_statuses=list(filters.statuses) if filters.statuses else None, filters=filters.canonical(),
            filter_group=await self._group(filters.group, actor),
            endpoint=claim.endpoint, payload_type=payload, content=content, headers=_check_headers(claim.headers),
            secret=secret, previous_secret=previous, previous_secret_until=previous_until,
            heartbeat_period=_clamp(claim.heartbeat_period, settings.heartbeat_min, settings.heartbeat_max, None),
            timeout_seconds=_clamp(claim.timeout, 1, settings.timeout_max, settings.timeout_default) or 1,
            max_count=_clamp(claim.max_count, 1, settings.max_count_max, 1) or 1, topic=topic,
        )  # fmt: skip

    async def _group(self, group_id: uuid.UUID | None, actor: Principal) -> uuid.UUID | None:
        """The cohort a ``patient-group`` filter names: a Group of the subscribing client (or any, for admin).

        Raises:
            InvalidInput: no such Group, or another client's.
        """
        if group_id is None:
            return None
        async with self._db.reader() as conn:
            owner = await self._groups.owner(conn, group_id)
        if owner is None or (owner != actor.client_id and not actor.is_admin):
            raise _bad(f"no Group/{group_id} of this client: create the cohort first", f"{_S}.criteria")
        return group_id

    @staticmethod
    def _payload(claim: SubscriptionClaim) -> str:
        where = f"{_S}.channel.payload"
        if not claim.payload:
            raise _bad("channel.payload is required (application/fhir+json)", where)
        match = _MIME.fullmatch(claim.payload)
        if not match:
            raise _bad(f"payload type {claim.payload!r} is not served; use application/fhir+json", where)
        if match.group(2) is not None and match.group(2) not in _FHIR_VERSIONS:
            raise _bad(f"this server sends FHIR 4.0 only, not fhirVersion {match.group(2)}", where)
        if claim.content is None:
            raise _bad(
                "the payload content extension (empty, id-only, full-resource) is required", f"{where}.extension"
            )
        return claim.payload

    def _secret(
        self, claim: SubscriptionClaim, current: StoredSubscription | None
    ) -> tuple[str, str | None, datetime | None]:
        """The signing secret to store, and the previous one while a rotation lasts."""
        if claim.secret is not None:
            try:
                check_secret(claim.secret)
            except ValueError as exc:
                raise _bad(str(exc), claim.secret_expression) from None
        if current is None:
            return claim.secret or generate_secret(), None, None
        if claim.secret is None or claim.secret == current.secret:
            return current.secret, current.previous_secret, current.previous_secret_until
        until = datetime.now(UTC) + timedelta(seconds=self._settings.secret_rotation_seconds)
        return claim.secret, current.secret, until

    # Interactions

    async def create(self, claim: SubscriptionClaim, *, actor: Principal, base: str) -> tuple[StoredSubscription, str]:
        """Create a subscription (``requested``, handshake pending); return it and its secret (shown once).

        Raises:
            InvalidInput: the body breaks a rule (topic, filters, channel, payload, endpoint, headers, secret).
            Forbidden: the caller may not receive what it asks for, or holds too many subscriptions.
        """
        write = await self._check(claim, actor, base, None)
        note_patients([write.filter_ihi] if write.filter_ihi else [])
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            if (
                not actor.is_admin
                and await self._repo.count_live(conn, actor.client_id) >= self._settings.max_per_client
            ):
                raise errors.Forbidden(f"a client holds at most {self._settings.max_per_client} subscriptions")
            stored = await self._repo.create(conn, actor.client_id, write)
            await self._repo.wake_workers(conn)
            audit.done(status=201, action=Action.CREATE, detail=f"subscription {stored.id} created")
        _log.info(
            "subscription_created", subscription_id=stored.id, client_id=actor.client_id, content=stored.content,
            patient_filter=stored.has_patient_filter,
        )  # fmt: skip
        return stored, write.secret

    async def _visible(
        self, subscription_id: str, actor: Principal, *, conn: Any = None, lock: bool = False
    ) -> StoredSubscription:
        try:
            key = uuid.UUID(subscription_id)
        except ValueError:
            raise errors.NotFound("no such subscription") from None
        if conn is None:
            async with self._db.reader() as reader:
                stored = await self._repo.get(reader, key)
        else:
            stored = await self._repo.get(conn, key, lock=lock)
        if stored is None or not (actor.is_admin or stored.client_id == actor.client_id):
            raise errors.NotFound("no such subscription")
        if stored.filter_ihi:
            note_patients([stored.filter_ihi])
        return stored

    async def read(self, subscription_id: str, *, actor: Principal) -> StoredSubscription:
        """One subscription the caller owns (or any, for ``admin``).

        Raises:
            NotFound: no such subscription, or another client's.
        """
        return await self._visible(subscription_id, actor)

    async def update(
        self, subscription_id: str, claim: SubscriptionClaim, *, actor: Principal, base: str
    ) -> StoredSubscription:
        """A client's update: settings, status ``off``, or reactivation (``requested``/``active``).

        Raises:
            MalformedRequest: the body's id is missing or not the URL's.
            NotFound: no such subscription, or another client's.
            InvalidInput: the body breaks a rule, or asks for status ``error``.
            Forbidden: the caller may not receive what it asks for.
        """
        if claim.id != subscription_id:
            message = "the resource's id must equal the id in the URL" if claim.id else "the resource has no id"
            raise errors.MalformedRequest(message, issues=[errors.Issue(message, f"{_S}.id")])
        if claim.status == "error":
            raise _bad("only the server sets status error", f"{_S}.status")
        current = await self.read(subscription_id, actor=actor)
        write = await self._check(claim, actor, base, current)
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            current = await self._visible(subscription_id, actor, conn=conn, lock=True)
            status, handshake = self._next_status(current, write)
            write = SubscriptionWrite(**{**_fields(write), "status": status})
            stored = await self._repo.update(conn, current.subscription_id, write, handshake=handshake)
            cancelled: tuple[int, int | None, int | None] = (0, None, None)
            if status == "off" and current.status != "off":
                cancelled = await self._repo.cancel_pending(conn, current.subscription_id)
            if handshake:
                await self._repo.wake_workers(conn)
            audit.done(status=200, action=Action.UPDATE, detail=f"subscription {stored.id} updated")
        if stored.filter_ihi:
            note_patients([stored.filter_ihi])
        _log.info(
            "subscription_updated", subscription_id=stored.id, client_id=actor.client_id, status=stored.status,
            previous_status=current.status, handshake=handshake,
        )  # fmt: skip
        self._log_cancelled(stored, cancelled, "off")
        return stored

    @staticmethod
    def _next_status(current: StoredSubscription, write: SubscriptionWrite) -> tuple[str, bool]:
        """The status an update leads to, and whether it needs a new handshake."""
        if write.status == "off":
            return "off", False
        if current.status in ("error", "off"):
            return "requested", True  # the client asks for reactivation; the handshake decides
        if write.endpoint != current.endpoint:
            return "requested", True
        return current.status, False

    async def delete(self, subscription_id: str, *, actor: Principal) -> StoredSubscription:
        """Delete a subscription: delivery stops at once and its queued events end ``cancelled``.

        Raises:
            NotFound: no such subscription, or another client's.
        """
        async with self._db.writer() as conn, self._audit.transaction(conn) as audit:
            current = await self._visible(subscription_id, actor, conn=conn, lock=True)
            cancelled = await self._repo.cancel_pending(conn, current.subscription_id)
            stored = await self._repo.delete(conn, current.subscription_id)
            assert stored is not None
            audit.done(status=200, action=Action.DELETE, detail=f"subscription {stored.id} deleted")
        _log.info("subscription_deleted", subscription_id=stored.id, client_id=actor.client_id)
        self._log_cancelled(stored, cancelled, "deleted")
        return stored

    @staticmethod
    def _log_cancelled(stored: StoredSubscription, cancelled: tuple[int, int | None, int | None], why: str) -> None:
        count, first, last = cancelled
        if count:
            _log.info(
                "events_cancelled", subscription_id=stored.id, events=count, first_event=first, last_event=last,
                reason=why,
            )  # fmt: skip

    async def search(
        self,
        *,
        actor: Principal,
        ids: list[str] | None,
        statuses: list[str] | None,
        endpoints: list[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[StoredSubscription], int]:
        """The caller's subscriptions (every one, for ``admin``) matching the filters (None: any)."""
        keys = None if ids is None else [key for key in map(_uuid_or_none, ids) if key is not None]
        async with self._db.reader() as conn:
            found, total = await self._repo.search(
                conn, owner=None if actor.is_admin else actor.client_id, ids=keys, statuses=statuses,
                endpoints=endpoints, limit=limit, offset=offset,
            )  # fmt: skip
        note_patients(s.filter_ihi for s in found if s.filter_ihi)
        return found, total

    async def events(
        self, subscription_id: str, *, actor: Principal, since: int | None, until: int | None, content: str | None
    ) -> EventsAnswer:
        """``$events``: the kept events numbered ``since`` to ``until`` (at most ``events_page_max``).

        Raises:
            NotFound: no such subscription, or another client's.
        """
        stored = await self._visible(subscription_id, actor)
        first = since if since is not None else stored.purged_through + 1
        last = until if until is not None else stored.events_since_start
        level = stored.content
        not_given = content if content is not None and _LEVELS[content] > _LEVELS[level] else None
        if content is not None and _LEVELS[content] < _LEVELS[level]:
            level = content  # a hint may ask for less, never for more
        gone = (first, min(last, stored.purged_through)) if first <= stored.purged_through and first <= last else None
        async with self._db.reader() as conn:
            found = await self._repo.events(
                conn,
                stored.subscription_id,
                max(first, stored.purged_through + 1),
                last,
                self._settings.events_page_max,
            )
        note_detail(f"subscription {stored.id}: events {first}-{last}, {len(found)} returned")
        return EventsAnswer(
            subscription=stored, events=found, content=level, gone=gone,
            retention_seconds=self._settings.event_retention_seconds, not_given=not_given,
        )  # fmt: skip


def _fields(write: SubscriptionWrite) -> dict[str, Any]:
    return {name: getattr(write, name) for name in write.__dataclass_fields__}


def _uuid_or_none(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
