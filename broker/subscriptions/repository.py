"""Storage of subscriptions, their events and delivery state: named queries in, plain values out."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from registry.db.errors import translate_db_errors
from registry.db.paging import fetch_page
from schemas.privacy import PatientPolicy

if TYPE_CHECKING:
    import asyncpg

    from registry.db.pool import Connection
    from registry.db.queries import Queries

__all__ = (
    "Claimed",
    "Notification",
    "Owner",
    "StoredEvent",
    "StoredSubscription",
    "SubscriptionRepository",
    "SubscriptionWrite",
)


@dataclass(frozen=True, slots=True)
class StoredSubscription:
    """One subscription row."""

    subscription_id: UUID
    client_id: str
    status: str
    reason: str
    end_at: datetime | None
    base_url: str
    filter_ihi: str | None
    filter_services: list[str] | None
    filter_statuses: list[str] | None
    filters: list[str]
    endpoint: str
    payload_type: str
    content: str
    headers: list[str]
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    heartbeat_period: int | None
    timeout_seconds: int
    max_count: int
    events_since_start: int
    delivered_through: int
    purged_through: int
    handshake_pending: bool
    next_attempt_at: datetime | None
    lease_until: datetime | None
    lease_owner: str | None
    attempts: int
    inflight_kind: str | None
    inflight_first: int | None
    inflight_last: int | None
    inflight_body: bytes | None
    inflight_webhook_id: str | None
    next_heartbeat_at: datetime | None
    error_code: str | None
    error_text: str | None
    delivered_count: int
    failed_attempts: int
    last_error: str | None
    last_error_at: datetime | None
    last_success_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    filter_group: UUID | None = None
    topic: str = "patient-registration"

    @property
    def has_patient_filter(self) -> bool:
        """Whether it follows named patients: one (``patient``) or a cohort (``patient-group``)."""
        return self.filter_ihi is not None or self.filter_group is not None

    @property
    def id(self) -> str:
        """The resource id."""
        return str(self.subscription_id)

    @property
    def pending(self) -> int:
        """Events numbered but not yet in a final state."""
        return self.events_since_start - self.delivered_through


@dataclass(frozen=True, slots=True)
class Owner:
    """What delivery re-checks about a subscription's owner."""

    enabled: bool
    scopes: frozenset[str]
    full_resource: bool
    service_id: str = ""
    clearances: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One numbered event and the record as the change left it (a ``patient-consent`` event names the
    Consent instead). Events claimed for delivery carry the record's security labels now and the
    patient's privacy policy (what the decision point is asked about)."""

    subscription_id: UUID
    event_number: int
    occurred_at: datetime
    change: str
    ihi: str
    state: str
    finished_at: datetime | None = None
    record_id: UUID | None = None
    service_id: str | None = None
    record_status: str | None = None
    record_type: str | None = None
    record_version: int | None = None
    record_updated: datetime | None = None
    consent_id: UUID | None = None
    labels: list[str] = field(default_factory=list)
    policy: PatientPolicy = ()


@dataclass(frozen=True, slots=True)
class SubscriptionWrite:
    """The client-settable part of a subscription, as validated by the service."""

    status: str
    reason: str
    end_at: datetime | None
    base_url: str
    filter_ihi: str | None
    filter_services: list[str] | None
    filter_statuses: list[str] | None
    filters: list[str]
    endpoint: str
    payload_type: str
    content: str
    headers: list[str]
    secret: str
    heartbeat_period: int | None
    timeout_seconds: int
    max_count: int
    previous_secret: str | None = None
    previous_secret_until: datetime | None = None
    filter_group: UUID | None = None
    topic: str = "patient-registration"


_SUBSCRIPTION_FIELDS = tuple(f.name for f in fields(StoredSubscription))
_EVENT_FIELDS = tuple(f.name for f in fields(StoredEvent))


def _subscription(row: asyncpg.Record) -> StoredSubscription:
    values = {name: row[name] for name in _SUBSCRIPTION_FIELDS}
    values["filter_ihi"] = values["filter_ihi"].strip() if values["filter_ihi"] else None
    return StoredSubscription(**values)


def _owner(row: asyncpg.Record) -> Owner:
    prefix = "client_" if "client_status" in row else ""
    return Owner(
        enabled=row[f"{prefix}status"] == "enabled",
        scopes=frozenset(row[f"{prefix}scopes"]),
        full_resource=bool(row[f"{prefix}full_resource"]),
        service_id=row[f"{prefix}service"],
        clearances=frozenset(row[f"{prefix}clearances"]),
    )


def _event(row: Any) -> StoredEvent:
    values: dict[str, Any] = {name: row[name] for name in _EVENT_FIELDS if name in row and row[name] is not None}
    values["ihi"] = values["ihi"].strip()
    return msgspec.convert(values, StoredEvent, strict=False)


_events_decoder = msgspec.json.Decoder(list[dict[str, Any]])


@dataclass(frozen=True, slots=True)
class Claimed:
    """A subscription leased to a worker, its owner's state, and the next events to send (none when in flight)."""

    subscription: StoredSubscription
    owner: Owner
    events: list[StoredEvent]


@dataclass(frozen=True, slots=True)
class Notification:
    """A rendered notification: what it carries, its exact bytes and its ``webhook-id``."""

    kind: str
    first: int | None
    last: int | None
    body: bytes
    webhook_id: str


class SubscriptionRepository:
    """The only caller of ``sql/queries/subscriptions.sql``."""

    __slots__ = ("_q",)

    def __init__(self, queries: Queries) -> None:
        self._q = queries

    async def create(self, conn: Connection, client_id: str, write: SubscriptionWrite) -> StoredSubscription:
        """Insert a new ``requested`` subscription with its handshake pending."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["create_subscription"], client_id, write.reason, write.end_at, write.base_url,
                write.filter_ihi, write.filter_services, write.filter_statuses, write.filters, write.endpoint,
                write.payload_type, write.content, write.headers, write.secret, write.heartbeat_period,
                write.timeout_seconds, write.max_count, write.filter_group, write.topic,
            )  # fmt: skip
        assert row is not None
        return _subscription(row)

    async def count_live(self, conn: Connection, client_id: str) -> int:
        """How many subscriptions a client holds."""
        with translate_db_errors():
            return int(await conn.fetchval(self._q["count_live_subscriptions"], client_id))

    async def get(self, conn: Connection, subscription_id: UUID, *, lock: bool = False) -> StoredSubscription | None:
        """One subscription (locked until the transaction ends with ``lock``), or None."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["lock_subscription" if lock else "get_subscription"], subscription_id)
        return _subscription(row) if row else None

    async def update(
        self, conn: Connection, subscription_id: UUID, write: SubscriptionWrite, *, handshake: bool
    ) -> StoredSubscription:
        """Apply a client's update; ``handshake`` starts the delivery state afresh with a handshake."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["update_subscription"], subscription_id, write.status, write.reason, write.end_at,
                write.filter_ihi, write.filter_services, write.filter_statuses, write.filters, write.endpoint,
                write.payload_type, write.content, write.headers, write.secret, write.previous_secret,
                write.previous_secret_until, write.heartbeat_period, write.timeout_seconds, write.max_count, handshake,
                write.filter_group,
            )  # fmt: skip
        assert row is not None
        return _subscription(row)

    async def delete(self, conn: Connection, subscription_id: UUID) -> StoredSubscription | None:
        """Mark a subscription deleted (``off``); None when there was none."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["delete_subscription"], subscription_id)
        return _subscription(row) if row else None

    async def cancel_pending(self, conn: Connection, subscription_id: UUID) -> tuple[int, int | None, int | None]:
        """End every event without a final state ``cancelled``; return the count and the first and last number."""
        with translate_db_errors():
            async with conn.transaction():  # the row first: the events then read include every one counted
                await conn.execute(self._q["lock_subscription_row"], subscription_id)
                row = await conn.fetchrow(self._q["cancel_pending_events"], subscription_id)
        assert row is not None
        return int(row["cancelled"]), row["first"], row["last"]

    async def wake_workers(self, conn: Connection) -> None:
        """Wake every delivery worker when the transaction commits."""
        with translate_db_errors():
            await conn.execute(self._q["wake_workers"])

    async def probe_listeners(self, conn: Connection, payload: str) -> None:
        """Send ``payload`` on the workers' channel: a worker checks that its LISTEN receives notifications."""
        with translate_db_errors():
            await conn.execute(self._q["probe_listeners"], payload)

    async def search(
        self,
        conn: Connection,
        *,
        owner: str | None,
        ids: list[UUID] | None,
        statuses: list[str] | None,
        endpoints: list[str] | None,
        limit: int,
        offset: int,
    ) -> tuple[list[StoredSubscription], int]:
        """A page of subscriptions (None: any), and the count of every match."""
        rows, total = await fetch_page(
            conn, self._q["search_subscriptions"], owner, ids, statuses, endpoints, limit=limit, offset=offset
        )
        return [_subscription(row) for row in rows], total

    async def events(
        self, conn: Connection, subscription_id: UUID, first: int, last: int, limit: int
    ) -> list[StoredEvent]:
        """Kept events numbered ``first`` to ``last``, at most ``limit``."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["events_in_range"], subscription_id, first, last, limit)
        return [_event(row) for row in rows]

    # Delivery

    async def claim(
        self, conn: Connection, *, heartbeats: bool, limit: int, margin: float, owner: str
    ) -> list[Claimed]:
        """Lease up to ``limit`` subscriptions with work due (or heartbeats due) to worker ``owner``."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["claim_heartbeats" if heartbeats else "claim_due"], limit, margin, owner)
        return [
            Claimed(
                _subscription(row),
                _owner(row),
                [_event(e) for e in _events_decoder.decode(row["next_events"])] if "next_events" in row else [],
            )
            for row in rows
        ]

    async def finish_delivered(
        self, conn: Connection, subscription_id: UUID, owner: str, kind: str, first: int | None, last: int | None
    ) -> tuple[str, int] | None:
        """Record a 2xx; return the subscription's status and the events delivered (None: lease lost)."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["finish_delivered"], subscription_id, owner, kind, first, last)
        return (row["status"], int(row["finished"])) if row else None

    async def finish_retry(
        self, conn: Connection, subscription_id: UUID, owner: str, wait: float, error: str, notification: Notification
    ) -> bool:
        """Record a failed attempt to be retried after ``wait`` seconds, keeping the notification's bytes and id;
        False when the lease was lost."""
        with translate_db_errors():
            row = await conn.fetchrow(
                self._q["finish_retry"], subscription_id, owner, wait, error, notification.kind, notification.first,
                notification.last, notification.body, notification.webhook_id,
            )  # fmt: skip
        return row is not None

    async def finish_failed(
        self,
        conn: Connection,
        subscription_id: UUID,
        owner: str,
        kind: str,
        first: int | None,
        last: int | None,
        code: str | None,
        text: str,
    ) -> tuple[str, int] | None:
        """Record a notification that failed for good; return the status and the events exhausted."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["finish_failed"], subscription_id, owner, kind, first, last, code, text)
        return (row["status"], int(row["finished"])) if row else None

    async def refuse_delivery(self, conn: Connection, subscription_id: UUID, owner: str, reason: str) -> bool:
        """Put a subscription whose owner may no longer receive its notifications in ``error``."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["refuse_delivery"], subscription_id, owner, reason)
        return row is not None

    async def withhold(self, conn: Connection, subscription_id: UUID, owner: str, numbers: list[int]) -> int:
        """Mark events withheld from the subscriber (final), drop a notification in flight, end the lease.

        The row is locked first, in the same transaction, so the statement that moves the delivery cursor
        sees every event a registration added while it waited for the row (``withhold_events``).
        """
        with translate_db_errors():
            async with conn.transaction():
                await conn.execute(self._q["lock_subscription_row"], subscription_id)
                withheld = await conn.fetchval(self._q["withhold_events"], subscription_id, owner, numbers)
        return int(withheld or 0)

    async def release(self, conn: Connection, subscription_id: UUID, owner: str) -> None:
        """Give a claimed subscription back untouched."""
        with translate_db_errors():
            await conn.execute(self._q["release_lease"], subscription_id, owner)

    async def end_expired(self, conn: Connection) -> list[UUID]:
        """Turn ``off`` the subscriptions whose end has passed; return their ids."""
        with translate_db_errors():
            rows = await conn.fetch(self._q["end_expired"])
        return [row["subscription_id"] for row in rows]

    async def purge_events(self, conn: Connection, retention_seconds: float) -> tuple[int, int]:
        """Forget final events older than the retention; return events removed and subscriptions touched."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["purge_events"], retention_seconds)
        assert row is not None
        return int(row["purged"]), int(row["subscriptions"])

    async def owner(self, conn: Connection, client_id: str) -> Owner | None:
        """The owner's state, or None when the client no longer exists."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["owner_state"], client_id)
        return _owner(row) if row else None

    async def set_full_resource(self, conn: Connection, client_id: str, allowed: bool) -> bool:
        """Allow a client full-resource payloads (or stop); False when there is no such client."""
        with translate_db_errors():
            row = await conn.fetchrow(self._q["set_full_resource"], client_id, allowed)
        return row is not None

    # Metrics

    async def stats(self, conn: Connection, limit: int) -> list[asyncpg.Record]:
        """Counters of the ``limit`` subscriptions with the most pending events and failures."""
        with translate_db_errors():
            return list(await conn.fetch(self._q["delivery_stats"], limit))

    async def totals(self, conn: Connection) -> list[asyncpg.Record]:
        """Counters summed per status."""
        with translate_db_errors():
            return list(await conn.fetch(self._q["delivery_totals"]))
