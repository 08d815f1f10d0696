"""The delivery worker: claims due subscriptions and sends one notification per subscription at a time.

Any number of workers (inside ``serve`` and as ``ief-registry worker``) share one database:

1. **Claim** (``FOR UPDATE SKIP LOCKED``): up to the free slots of this worker, subscriptions that
   are due: a pending handshake, a notification in flight whose backoff is over, events not yet
   delivered; then heartbeats. A claim is a lease for the notification's timeout plus
   ``lease_margin``: a worker killed in flight loses it, and another worker resends the same body.
2. **Re-check** the owner: still enabled, still holding the scopes and permission the payload
   needs. If not, nothing is sent and the subscription goes to ``error``. Then ask the privacy
   decision point about every event to send (the patient's Consents and the record's security
   labels as they are now, the owner's clearances): withheld events end ``withheld`` and are never
   sent; a notification in flight that carried one is dropped and the rest are sent anew.
3. **Render once**: the handshake, heartbeat or event notification (the lowest undelivered events,
   up to ``maxCount``, fetched with the claim) is rendered deterministically, so rendering it again
   after a crash gives the same bytes and ``webhook-id``; after a failed attempt the bytes are
   stored with the retry, and retries send them.
4. **Send** (``Notifier``), then **record** the outcome in one statement: delivered, a retry after
   the schedule's wait (or ``Retry-After``), or failed for good (exhausted, ``410``, refused endpoint):
   events ``exhausted`` and the subscription in ``error`` with a coded error.

One subscription is never in two workers' hands (the lease), so its events go out in order; a
slow or dead endpoint holds one slot, never another subscription. The worker wakes on the
``ief_subscription_events`` notification the registration trigger sends, and polls every
``poll_interval`` in case one is missed. Its LISTEN needs a session of its own, so it connects to
``database.direct_url`` when set (past a transaction-mode pooler, which would swallow the
notifications); it checks once per connection that a notification it sends itself arrives, and
polls only (saying so in the log) when none does. Between rounds it turns ``off`` subscriptions
whose ``end`` has passed (cancelling their events) and forgets final events past the retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from broker.subscriptions import permissions
from broker.subscriptions.bundles import notification_bundle
from broker.subscriptions.notifier import Notifier
from broker.subscriptions.repository import Notification
from broker.subscriptions.resources import event_view, status_view
from broker.subscriptions.retry import RetryPolicy, parse_schedule
from registry.auth.requester import Requester
from registry.log import get_logger
from schemas.privacy import Verdict

if TYPE_CHECKING:
    from broker.subscriptions.metrics import LatencyHistogram
    from broker.subscriptions.notifier import Attempt
    from broker.subscriptions.repository import Claimed, StoredEvent, StoredSubscription, SubscriptionRepository
    from registry.config import SubscriptionSettings
    from registry.db.pool import Connection, Database
    from registry.outbound.egress import AddressPolicy
    from registry.privacy.decision import DecisionPoint
    from schemas.fhir.canonical import Canonicals

__all__ = ("CHANNEL", "DeliveryWorker")

CHANNEL = "ief_subscription_events"
"""The PostgreSQL notification channel the registration trigger and subscription writes signal."""

_log = get_logger(__name__)
_encoder = msgspec.json.Encoder()
_STOP_SECONDS = 5.0
_PURGE_MAX_INTERVAL = 60.0
_PROBE_SECONDS = 3.0
"""How long a new LISTEN connection has to receive the worker's own probe notification."""


class DeliveryWorker:
    """One worker process's (or server process's) delivery loop."""

    def __init__(
        self,
        db: Database,
        repository: SubscriptionRepository,
        settings: SubscriptionSettings,
        *,
        listen_url: str,
        canon: Canonicals,
        policy: AddressPolicy,
        latency: LatencyHistogram,
        decisions: DecisionPoint,
    ) -> None:
        self._db = db
        self._decisions = decisions
        self._repo = repository
        self._settings = settings
        self._url = listen_url
        self._canon = canon
        self._latency = latency
        self._retry = RetryPolicy(
            parse_schedule(settings.retry_schedule), jitter=settings.retry_jitter,
            retry_after_max=settings.retry_after_max, handshake_attempts=settings.handshake_attempts,
        )  # fmt: skip
        self._notifier = Notifier(policy, max_connections=settings.worker_concurrency)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._probe = f"probe {self.name}"
        self._probed = asyncio.Event()
        self._polling_only = False
        self._next_purge = 0.0

    async def start(self) -> None:
        """Listen for wake-ups and start the loop."""
        await self._listen()
        self._loop_task = asyncio.create_task(self._run(), name="subscription-delivery")
        _log.info("worker_started", worker=self.name, concurrency=self._settings.worker_concurrency)

    async def stop(self) -> None:
        """Stop claiming, give in-flight notifications a moment, then cancel them (their leases expire)."""
        self._stopping = True  # the loop ends at its next turn even if a cancellation is lost
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=_STOP_SECONDS)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
        await self._notifier.close()
        _log.info("worker_stopped", worker=self.name)

    async def _listen(self) -> None:
        """Open the LISTEN connection and check that notifications reach it; else poll only, and say why."""
        try:
            listener = await asyncpg.connect(self._url)
        except (OSError, asyncpg.PostgresError) as exc:  # polling still works
            _log.warning("worker_listen_failed", worker=self.name, error=f"{type(exc).__name__}: {exc}")
            return
        try:
            await listener.add_listener(CHANNEL, self._notified)
            self._probed.clear()
            async with self._db.writer() as conn:
                await self._repo.probe_listeners(conn, self._probe)
            async with asyncio.timeout(_PROBE_SECONDS):
                await self._probed.wait()
        except TimeoutError:
            self._polling_only = True
            _log.warning(
                "worker_listen_failed", worker=self.name,
                error=f"LISTEN received no notification within {_PROBE_SECONDS:g} s: a transaction-mode pooler "
                "(PgBouncer) between this worker and PostgreSQL? Set IEF_DATABASE_DIRECT_URL",
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - polling still works; the next round tries again
            _log.warning("worker_listen_failed", worker=self.name, error=f"{type(exc).__name__}: {exc}")
        else:
            self._listener = listener
            return
        with contextlib.suppress(Exception):
            await listener.close()

    def _notified(self, _conn: Connection, _pid: int, _channel: str, payload: object) -> None:
        if payload == self._probe:
            self._probed.set()
        self._wake.set()

    async def _run(self) -> None:
        next_chores = 0.0
        while not self._stopping:
            self._wake.clear()
            claimed = 0
            free = self._settings.worker_concurrency - len(self._tasks)
            now = time.monotonic()
            chores = now >= next_chores  # ends, retention and heartbeats: once per poll interval at most
            try:
                if chores:
                    next_chores = now + self._settings.poll_interval
                    await self._housekeeping()
                if free > 0:
                    claimed = await self._claim(free, heartbeats=chores)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database outage
                _log.error("worker_round_failed", worker=self.name, error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self._settings.poll_interval)
                continue
            if free > 0 and claimed == free:
                await self._wake.wait()  # every slot is busy: wait for one to finish
                continue
            if not self._polling_only and (self._listener is None or self._listener.is_closed()):
                await self._listen()
            # asyncio.timeout, not wait_for: on Python 3.11 a stop's cancellation arriving as wait_for times out
            # came back as TimeoutError, was suppressed here, and the loop went on polling after SIGTERM.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_chores - time.monotonic())):
                    await self._wake.wait()

    async def _claim(self, free: int, *, heartbeats: bool) -> int:
        margin = self._settings.lease_margin
        async with self._db.writer() as conn:
            claimed = await self._repo.claim(conn, heartbeats=False, limit=free, margin=margin, owner=self.name)
            if heartbeats and len(claimed) < free:
                claimed += await self._repo.claim(
                    conn, heartbeats=True, limit=free - len(claimed), margin=margin, owner=self.name
                )
        for work in claimed:
            task = asyncio.create_task(self._deliver(work))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        return len(claimed)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _housekeeping(self) -> None:
        async with self._db.writer() as conn:
            for subscription_id in await self._repo.end_expired(conn):
                count, first, last = await self._repo.cancel_pending(conn, subscription_id)
                _log.info(
                    "subscription_status", subscription_id=str(subscription_id), status="off", reason="end passed"
                )
                if count:
                    _log.info(
                        "events_cancelled", subscription_id=str(subscription_id), events=count, first_event=first,
                        last_event=last, reason="end passed",
                    )  # fmt: skip
            now = time.monotonic()
            if now >= self._next_purge:
                retention = self._settings.event_retention_seconds
                self._next_purge = now + min(_PURGE_MAX_INTERVAL, max(1.0, retention / 10))
                purged, touched = await self._repo.purge_events(conn, retention)
                if purged:
                    _log.info("events_purged", events=purged, subscriptions=touched, retention_seconds=retention)

    async def _deliver(self, work: Claimed) -> None:
        try:
            await self._deliver_one(work)
        except Exception as exc:  # noqa: BLE001 - one subscription's failure must not stop the others
            subscription = work.subscription
            _log.error(
                "delivery_failed_unexpectedly", subscription_id=subscription.id, error=f"{type(exc).__name__}: {exc}"
            )
            with contextlib.suppress(Exception):
                async with self._db.writer() as conn:
                    await self._repo.release(conn, subscription.subscription_id, self.name)

    async def _deliver_one(self, work: Claimed) -> None:
        subscription, owner = work.subscription, work.owner
        why = (
            "the owning client is disabled or gone"
            if not owner.enabled
            else permissions.refusal(
                owner.scopes, content=subscription.content, has_patient=subscription.has_patient_filter,
                full_resource_allowed=owner.full_resource,
            )
        )  # fmt: skip
        if why is not None:
            async with self._db.writer() as conn:
                await self._repo.refuse_delivery(conn, subscription.subscription_id, self.name, why)
            _log.warning(
                "delivery_refused", subscription_id=subscription.id, client_id=subscription.client_id, reason=why
            )
            return
        if await self._withheld(work):
            return
        notification = self._notification(work)
        if notification is None:
            async with self._db.writer() as conn:
                await self._repo.release(conn, subscription.subscription_id, self.name)
            return
        attempt_number = subscription.attempts + 1
        attempt = await self._notifier.send(subscription, notification.body, notification.webhook_id)
        _log.info(
            "notification_attempt", subscription_id=subscription.id, kind=notification.kind,
            event_number=notification.last, first_event=notification.first, attempt=attempt_number,
            webhook_id=notification.webhook_id, http_status=attempt.status,
            error=attempt.error_code or (attempt.error if not attempt.ok else None), latency_ms=attempt.latency_ms,
        )  # fmt: skip
        if attempt.ok:
            await self._delivered(subscription, notification, work.events, attempt_number)
        else:
            await self._failed(subscription, notification, attempt, attempt_number)

    async def _withheld(self, work: Claimed) -> bool:
        """Withhold the events the subscriber may not be told of; whether any were (then nothing is sent now:
        the lease ends and the next round sends what remains)."""
        subscription, owner = work.subscription, work.owner
        requester = Requester(
            client_id=subscription.client_id, service_id=owner.service_id, clearances=owner.clearances
        )
        withheld = [
            event.event_number
            for event in work.events
            if event.record_id is not None
            and self._decisions.verdict(requester, event.policy, custodian=event.service_id or "", labels=event.labels)
            is Verdict.WITHHOLD
        ]
        if not withheld:
            return False
        async with self._db.writer() as conn:
            count = await self._repo.withhold(conn, subscription.subscription_id, self.name, withheld)
        self._decisions.withheld_counter.inc(count)
        _log.info(
            "events_withheld", subscription_id=subscription.id, events=count, first_event=withheld[0],
            last_event=withheld[-1],
        )  # fmt: skip
        self._wake.set()
        return True

    def _notification(self, work: Claimed) -> Notification | None:
        """The notification to send: the one in flight (its stored bytes), or the next one rendered.

        Rendering is deterministic (ids and timestamp derive from the subscription and the events), so
        a notification whose first attempt was cut short by a dying worker is rendered again as the
        same bytes with the same ``webhook-id``; after a failed attempt its bytes are stored.
        """
        subscription, events = work.subscription, work.events
        if subscription.inflight_kind is not None and subscription.inflight_body is not None:
            return Notification(
                subscription.inflight_kind, subscription.inflight_first, subscription.inflight_last,
                subscription.inflight_body, subscription.inflight_webhook_id or "",
            )  # fmt: skip
        stamp = subscription.updated_at
        if subscription.status == "requested":
            kind, identity = "handshake", f"msg_{subscription.subscription_id.hex}_h{subscription.version}"
        elif subscription.delivered_through < subscription.events_since_start:
            if not events:
                return None
            kind = "event-notification"
            identity = f"msg_{subscription.subscription_id.hex}_e{events[0].event_number}_{events[-1].event_number}"
            stamp = events[-1].occurred_at
        else:
            kind, identity, stamp = "heartbeat", f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        bundle = notification_bundle(
            status_view(subscription), kind, [event_view(e) for e in events], canon=self._canon,
            events_since=events[-1].event_number if events else subscription.events_since_start,
            identity=identity, timestamp=stamp,
        )  # fmt: skip
        return Notification(
            kind,
            events[0].event_number if events else None,
            events[-1].event_number if events else None,
            _encoder.encode(bundle),
            identity,
        )

    async def _delivered(
        self, subscription: StoredSubscription, notification: Notification, events: list[StoredEvent], attempts: int
    ) -> None:
        kind, first, last = notification.kind, notification.first, notification.last
        async with self._db.writer() as conn:
            done = await self._repo.finish_delivered(conn, subscription.subscription_id, self.name, kind, first, last)
        if done is None:
            return
        status, finished = done
        now = datetime.now(UTC)
        for event in events:
            self._latency.observe((now - event.occurred_at).total_seconds() * 1000)
        if kind == "handshake" and status != subscription.status:
            _log.info(
                "subscription_status", subscription_id=subscription.id, status=status, reason="handshake accepted"
            )
        if finished:
            _log.info(
                "events_delivered", subscription_id=subscription.id, first_event=first, last_event=last,
                attempts=attempts,
            )  # fmt: skip

    async def _failed(
        self, subscription: StoredSubscription, notification: Notification, attempt: Attempt, attempts: int
    ) -> None:
        kind, first, last = notification.kind, notification.first, notification.last
        wait = None if attempt.final else self._retry.next_wait(kind, attempts, attempt.retry_after, self._rng)
        async with self._db.writer() as conn:
            if wait is not None:
                await self._repo.finish_retry(
                    conn, subscription.subscription_id, self.name, wait, attempt.error, notification
                )
                return
            done = await self._repo.finish_failed(
                conn, subscription.subscription_id, self.name, kind, first, last, attempt.error_code, attempt.error
            )
        if done is None:
            return
        status, finished = done
        if finished:
            _log.warning(
                "events_exhausted", subscription_id=subscription.id, first_event=first, last_event=last,
                attempts=attempts, error=attempt.error_code or attempt.error,
            )  # fmt: skip
        if status != subscription.status:
            _log.warning(
                "subscription_status", subscription_id=subscription.id, status=status,
                reason=f"{kind} failed: {attempt.error}",
            )  # fmt: skip
