"""Checklist 25-33: heartbeats, numbering, ordering, retries, final states, delivery-time authorization."""

from __future__ import annotations

import asyncio

import asyncpg
from joserfc.jwk import RSAKey
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from schemas.types import ServiceStatus
from tests.subscriptions.helpers import Subscriptions

_RECEIVER = "system/Subscription.cruds system/Basic.rs"


async def test_c25_heartbeats_only_when_asked(subs: Subscriptions) -> None:
    """With heartbeatPeriod a heartbeat (current status and count, no event) comes each period; without, never."""
    beating = subs.subscriber.hook()
    quiet = subs.subscriber.hook()
    created, _ = await subs.active(beating, heartbeat=1)
    await subs.active(quiet)
    beats = await beating.wait_count("heartbeat", 2, within=10)
    for beat in beats:
        assert beat.parameter("status") == "active"
        assert beat.parameter("events-since-subscription-start") == "0"
        assert beat.parameter("notification-event") is None
    gap = beats[1].at - beats[0].at
    assert 0.8 < gap < 5, gap  # one second, give or take the poll interval and a busy machine
    assert quiet.of_kind("heartbeat") == []
    assert created["channel"]["extension"][0]["valueUnsignedInt"] == 1


async def test_c26_numbers_start_at_1_and_count_registrations_and_changes(subs: Subscriptions) -> None:
    """Numbers start at 1, grow by one per registration (a re-registration too) or status change, in the database;
    a repeated removal and handshakes take none."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    await subs.register(ihi)
    await subs.register(ihi)  # the same again: a re-registration, an event
    await subs.register(ihi, status="removed")
    await subs.register(ihi, status="removed")  # no change, no event
    await hook.wait(lambda h: h.event_numbers() == [1, 2, 3])
    rows = await subs.sql(
        "SELECT event_number, change, record_status FROM subscription_events WHERE subscription_id = $1 ORDER BY 1",
        created["id"],
    )
    assert [tuple(r) for r in rows] == [
        (1, "created", "active"),
        (2, "registered", "active"),
        (3, "status-changed", "removed"),
    ]
    stored = await subs.sql("SELECT events_since_start FROM subscriptions WHERE subscription_id = $1", created["id"])
    assert stored[0]["events_since_start"] == 3


async def test_c27_a_rolled_back_registration_leaves_nothing(subs: Subscriptions) -> None:
    """A registration whose transaction rolls back produces no event and consumes no number."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    conn = await asyncpg.connect(subs.server.database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetch(
            "SELECT * FROM put_record($1, $2, 'active', 'record', 'test', $2, false, NULL)", ihi, subs.service_id
        )
        inside = await conn.fetchval(
            "SELECT count(*) FROM subscription_events WHERE subscription_id = $1", created["id"]
        )
        assert inside == 1  # written by the trigger in the registration's transaction
        await transaction.rollback()
    finally:
        await conn.close()
    assert (await subs.sql("SELECT * FROM subscription_events WHERE subscription_id = $1", created["id"])) == []
    await subs.register(ihi)
    await hook.wait(lambda h: h.event_numbers() == [1])


async def test_a_registration_commits_its_record_audit_row_and_event_together(subs: Subscriptions) -> None:
    """A PUT's write, its audit row and its subscription event are one transaction (the one-statement write)."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    # Delivery would mark the event delivered (a new row version, a new xmin): the subscriber now
    # answers after the 2 s timeout, so the event stays as inserted for four attempts (over 8 s).
    hook.delay = 30
    for status in ("active", "removed"):
        response = await subs.register(ihi, status=status)
        rows = await subs.sql(
            "SELECT (SELECT xmin::text FROM records WHERE ihi = $1 AND service_id = $2) AS record,"
            " (SELECT xmin::text FROM audit_events WHERE request_id = $3) AS audit,"
            " (SELECT xmin::text FROM subscription_events WHERE subscription_id = $4 AND record_status = $5) AS event",
            ihi,
            subs.service_id,
            response.headers["x-request-id"],
            created["id"],
            status,
        )
        assert rows[0]["record"] is not None
        assert rows[0]["record"] == rows[0]["audit"] == rows[0]["event"], dict(rows[0])


async def test_c28_one_subscription_in_order(subs: Subscriptions) -> None:
    """Event N+1 is not POSTed before event N got its 2xx: a failing first event holds back the ones behind it."""
    hook = subs.subscriber.hook()
    _, ihi = await subs.active(hook)
    hook.status = lambda number: 500 if number in (2, 3) else 200  # the first event fails twice
    await subs.register(ihi)
    await subs.register(ihi, status="removed")
    await subs.register(ihi, status="archived")
    await hook.wait(lambda h: h.event_numbers().count(3) >= 1)
    answered = [
        (r.event_numbers[0], hook.answer(index))
        for index, r in enumerate(hook.received, start=1)
        if r.kind == "event-notification"
    ]
    assert answered == [(1, 500), (1, 500), (1, 200), (2, 200), (3, 200)]


async def test_c29_retries_send_the_same_bytes_and_id_newly_signed(subs: Subscriptions) -> None:
    """Retries carry identical body bytes and webhook-id; timestamp and signature are made per attempt (and verify)."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    hook.status = lambda number: 503 if number == 2 else 200
    hook.retry_after = "1"
    await subs.register(ihi)
    first, second = await hook.wait_count("event-notification", 2)
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    secret = next(e["valueString"] for e in created["channel"]["extension"] if e["url"].endswith("signing-secret"))
    for attempt in (first, second):
        Webhook(secret).verify(attempt.body, attempt.headers)


async def test_c30_3xx_fails_retry_after_waits_410_stops(subs: Subscriptions) -> None:
    """A 3xx is a failure (not followed); 429 with Retry-After delays the next attempt; 410 stops at once with error."""
    redirect = subs.subscriber.hook()
    created, ihi = await subs.active(redirect)
    redirect.status = 302
    await subs.register(ihi)
    await subs.wait_status(created["id"], "error")
    assert len(redirect.of_kind("event-notification")) == 4  # every attempt of the schedule, none redirected

    throttled = subs.subscriber.hook()
    _, ihi = await subs.active(throttled)
    throttled.status = lambda number: 429 if number == 2 else 200
    throttled.retry_after = "1"
    await subs.register(ihi)
    first, second = await throttled.wait_count("event-notification", 2)
    assert second.at - first.at >= 0.9  # the schedule alone would have retried after 0.2 s

    gone = subs.subscriber.hook()
    created, ihi = await subs.active(gone)
    gone.status = 410
    await subs.register(ihi)
    found = await subs.wait_status(created["id"], "error")
    assert found["error"] == "HTTP 410"
    await asyncio.sleep(0.5)
    assert len(gone.of_kind("event-notification")) == 1


async def test_c31_exhaustion_sets_error_and_numbering_goes_on(subs: Subscriptions) -> None:
    """After the last retry the subscription is in error (coded), its event exhausted; new events are still numbered."""
    hook = subs.subscriber.hook()
    created, ihi = await subs.active(hook)
    hook.status = 500
    await subs.register(ihi)
    await subs.wait_status(created["id"], "error")
    await subs.register(ihi, status="removed")
    status = (await subs.http.get(f"/fhir/Subscription/{created['id']}/$status")).json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["events-since-subscription-start"]["valueString"] == "2"
    assert parameters["error"]["valueCodeableConcept"]["coding"][0]["code"] == "error-response"
    rows = await subs.sql(
        "SELECT event_number, state FROM subscription_events WHERE subscription_id = $1 ORDER BY 1", created["id"]
    )
    assert [tuple(r) for r in rows] == [(1, "exhausted"), (2, "pending")]  # 2 waits for reactivation
    assert len(hook.of_kind("event-notification")) == 4


async def test_c32_every_event_ends_in_a_final_state_with_a_log_line(subs: Subscriptions) -> None:
    """Events end delivered, exhausted or cancelled, and each final state is logged."""
    delivered, exhausted, cancelled = (subs.subscriber.hook() for _ in range(3))
    with capture_logs() as logs:
        ok, ok_ihi = await subs.active(delivered)
        bad, bad_ihi = await subs.active(exhausted)
        held, held_ihi = await subs.active(cancelled)
        exhausted.status = 500
        cancelled.status = 503
        cancelled.retry_after = "30"
        for ihi in (ok_ihi, bad_ihi, held_ihi):
            await subs.register(ihi)
        await delivered.wait(lambda h: h.event_numbers() == [1])
        await subs.wait_status(bad["id"], "error")
        await cancelled.wait_count("event-notification", 1)
        assert (await subs.http.delete(f"/fhir/Subscription/{held['id']}")).status_code == 200
        await asyncio.sleep(0.3)
    states = {
        row["subscription_id"]: row["state"]
        for row in await subs.sql(
            "SELECT subscription_id::text, state FROM subscription_events WHERE subscription_id = ANY($1::uuid[])",
            [ok["id"], bad["id"], held["id"]],
        )
    }
    assert states == {ok["id"]: "delivered", bad["id"]: "exhausted", held["id"]: "cancelled"}
    finals = {(e["event"], e.get("subscription_id")) for e in logs}
    assert ("events_delivered", ok["id"]) in finals
    assert ("events_exhausted", bad["id"]) in finals
    assert ("events_cancelled", held["id"]) in finals


async def test_c33_authorization_is_checked_again_before_delivery(subs: Subscriptions, client_key: RSAKey) -> None:
    """When the owner is disabled, nothing is sent: the subscription goes to error with the reason."""
    pem = client_key.as_pem(private=False).decode()
    client_id, http = await subs.client(_RECEIVER, public_key_pem=pem)
    hook = subs.subscriber.hook()
    async with http:
        created, ihi = await subs.active(hook, http=http)
        await subs.server.auth.clients.set_status(client_id, ServiceStatus.DISABLED)
        await subs.register(ihi)
        found = await subs.wait_status(created["id"], "error")
    assert "disabled" in found["error"]
    assert hook.of_kind("event-notification") == []
    pending = await subs.sql("SELECT state FROM subscription_events WHERE subscription_id = $1", created["id"])
    assert [r["state"] for r in pending] == ["pending"]  # kept for when the owner may receive again
