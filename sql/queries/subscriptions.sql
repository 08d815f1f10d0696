-- name: create_subscription
-- A new subscription, `requested` with its handshake pending.
INSERT INTO subscriptions (client_id, status, reason, end_at, base_url, filter_ihi, filter_services,
                           filter_statuses, filters, endpoint, payload_type, content, headers, secret,
                           heartbeat_period, timeout_seconds, max_count, filter_group, topic)
VALUES ($1, 'requested', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
RETURNING *;

-- name: count_live_subscriptions
-- How many subscriptions a client holds (not deleted).
SELECT count(*) FROM subscriptions WHERE client_id = $1 AND deleted_at IS NULL;

-- name: get_subscription
-- One subscription (not deleted).
SELECT * FROM subscriptions WHERE subscription_id = $1 AND deleted_at IS NULL;

-- name: lock_subscription
-- One subscription (not deleted), locked until the transaction ends.
SELECT * FROM subscriptions WHERE subscription_id = $1 AND deleted_at IS NULL FOR UPDATE;

-- name: update_subscription
-- A client's update. $19: a handshake is wanted (created again, reactivated, or a new endpoint):
-- the delivery state starts afresh and the error is cleared. $20: the cohort filter (a Group).
UPDATE subscriptions t SET
    status = $2, reason = $3, end_at = $4, filter_ihi = $5, filter_services = $6, filter_statuses = $7,
    filter_group = $20,
    filters = $8, endpoint = $9, payload_type = $10, content = $11, headers = $12, secret = $13,
    previous_secret = $14, previous_secret_until = $15, heartbeat_period = $16, timeout_seconds = $17,
    max_count = $18,
    handshake_pending = $19 OR (t.handshake_pending AND $2 = 'requested'),
    error_code = CASE WHEN $19 THEN NULL ELSE t.error_code END,
    error_text = CASE WHEN $19 THEN NULL ELSE t.error_text END,
    attempts = CASE WHEN $19 THEN 0 ELSE t.attempts END,
    next_attempt_at = CASE WHEN $19 THEN NULL ELSE t.next_attempt_at END,
    inflight_kind = CASE WHEN $19 THEN NULL ELSE t.inflight_kind END,
    inflight_first = CASE WHEN $19 THEN NULL ELSE t.inflight_first END,
    inflight_last = CASE WHEN $19 THEN NULL ELSE t.inflight_last END,
    inflight_body = CASE WHEN $19 THEN NULL ELSE t.inflight_body END,
    inflight_webhook_id = CASE WHEN $19 THEN NULL ELSE t.inflight_webhook_id END,
    lease_until = CASE WHEN $19 THEN NULL ELSE t.lease_until END,
    lease_owner = CASE WHEN $19 THEN NULL ELSE t.lease_owner END,
    next_heartbeat_at = CASE
        WHEN $16::integer IS NULL OR $2 <> 'active' THEN NULL
        ELSE coalesce(t.next_heartbeat_at, now() + make_interval(secs => $16::integer))
    END,
    version = t.version + 1, updated_at = now()
WHERE t.subscription_id = $1 AND t.deleted_at IS NULL
RETURNING t.*;

-- name: delete_subscription
-- Delete a subscription: it is kept (its events too) but no longer served, matched or delivered.
UPDATE subscriptions SET status = 'off', deleted_at = now(), version = version + 1, updated_at = now()
WHERE subscription_id = $1 AND deleted_at IS NULL
RETURNING *;

-- name: lock_subscription_row
-- Lock subscription $1 (FOR UPDATE, deleted or not) before a statement that reads its events and moves
-- its cursor (cancel_pending_events, withhold_events), in the same transaction: that statement's
-- snapshot then already holds every event of a registration that held the row meanwhile.
SELECT 1 FROM subscriptions WHERE subscription_id = $1 FOR UPDATE;

-- name: cancel_pending_events
-- Every event of a subscription that has no final state yet ends `cancelled`; nothing stays in flight.
-- Run after lock_subscription_row in one transaction, so every event the cursor moves past is cancelled.
WITH moved AS (
    UPDATE subscriptions t SET
        delivered_through = t.events_since_start, inflight_kind = NULL, inflight_first = NULL, inflight_last = NULL,
        inflight_body = NULL, inflight_webhook_id = NULL, attempts = 0, next_attempt_at = NULL, lease_until = NULL,
        lease_owner = NULL, handshake_pending = false
    WHERE t.subscription_id = $1
    RETURNING t.subscription_id
), cancelled AS (
    UPDATE subscription_events e SET state = 'cancelled', finished_at = now()
    FROM moved
    WHERE e.subscription_id = moved.subscription_id AND e.state = 'pending'
    RETURNING e.event_number
)
SELECT count(*) AS cancelled, min(event_number) AS first, max(event_number) AS last FROM cancelled;

-- name: search_subscriptions
-- Subscriptions of one owner ($1; NULL: every owner), by ids, statuses and endpoints (each NULL: any).
SELECT s.*, count(*) OVER () AS total
FROM subscriptions s
WHERE s.deleted_at IS NULL
  AND ($1::text IS NULL OR s.client_id = $1)
  AND ($2::uuid[] IS NULL OR s.subscription_id = ANY ($2::uuid[]))
  AND ($3::text[] IS NULL OR s.status = ANY ($3::text[]))
  AND ($4::text[] IS NULL OR s.endpoint = ANY ($4::text[]))
ORDER BY s.created_at, s.subscription_id
LIMIT $5 OFFSET $6;

-- name: events_in_range
-- The kept events of a subscription numbered $2 to $3, at most $4 of them.
SELECT * FROM subscription_events
WHERE subscription_id = $1 AND event_number BETWEEN $2 AND $3
ORDER BY event_number
LIMIT $4;

-- name: claim_due
-- Claim up to $1 subscriptions with a handshake or events to send whose wait is over, for $2 seconds
-- beyond each one's timeout, for worker $3. Rows another worker (or a registration) holds are skipped.
-- With each: its owner's state (and what it is cleared for) and its pending events: when nothing is in
-- flight, the next ones to send (up to maxCount), else those of the notification in flight; each with
-- its record's security labels now and its patient's privacy policy (the delivery worker asks the
-- privacy decision point about each before anything is sent).
-- The first claim of the next events pins their range (`inflight_last`, with no body stored) until
-- their delivery is recorded: a notification sent but not recorded (its worker killed, the database
-- failing over after the 2xx) is claimed again with the same events, so it is the same bytes and
-- webhook-id, however many events arrived meanwhile. Withholding an event unpins the range
-- (`withhold_events`): what remains is sent anew.
WITH due AS (
    SELECT s.subscription_id
    FROM subscriptions s
    WHERE s.deleted_at IS NULL
      AND ((s.status = 'requested' AND s.handshake_pending)
           OR (s.status = 'active' AND (s.inflight_kind IS NOT NULL OR s.undelivered)))  -- subscriptions_due_idx
      AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= now())
      AND (s.lease_until IS NULL OR s.lease_until < now())
      AND (s.end_at IS NULL OR s.end_at > now())
    ORDER BY s.next_attempt_at NULLS FIRST
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE subscriptions s
SET lease_until = now() + make_interval(secs => s.timeout_seconds + $2::double precision), lease_owner = $3,
    wake_sent = false,  -- the next registration wakes the workers again (0009_lifecycle.sql)
    inflight_last = CASE
        WHEN s.status <> 'active' OR s.inflight_kind IS NOT NULL THEN s.inflight_last
        WHEN s.inflight_last > s.delivered_through THEN s.inflight_last  -- pinned by an earlier claim
        ELSE (SELECT max(p.event_number)
              FROM (SELECT ev.event_number FROM subscription_events ev
                    WHERE ev.subscription_id = s.subscription_id AND ev.event_number > s.delivered_through
                      AND ev.state = 'pending'
                    ORDER BY ev.event_number
                    LIMIT s.max_count) p)
    END
FROM due, clients c
WHERE s.subscription_id = due.subscription_id AND c.client_id = s.client_id
RETURNING s.*, c.status AS client_status, c.scopes AS client_scopes, c.full_resource AS client_full_resource,
          c.service_id AS client_service, c.clearances AS client_clearances,
          (SELECT coalesce(json_agg(e ORDER BY e.event_number), '[]'::json)
           FROM (SELECT ev.*, r.security_labels AS labels, p.policy
                 FROM subscription_events ev
                 LEFT JOIN records r ON r.record_id = ev.record_id
                 LEFT JOIN patient_policies p ON p.ihi = ev.ihi
                 WHERE s.status = 'active' AND ev.subscription_id = s.subscription_id AND ev.state = 'pending'
                   AND ((s.inflight_kind IS NULL
                         AND ev.event_number > s.delivered_through AND ev.event_number <= s.inflight_last)
                        OR (s.inflight_kind = 'event-notification'
                            AND ev.event_number BETWEEN s.inflight_first AND s.inflight_last))
                 ORDER BY ev.event_number) e) AS next_events;

-- name: claim_heartbeats
-- Claim up to $1 active subscriptions whose heartbeat is due and that have nothing else to send.
WITH due AS (
    SELECT s.subscription_id
    FROM subscriptions s
    WHERE s.deleted_at IS NULL AND s.status = 'active' AND s.next_heartbeat_at IS NOT NULL
      AND s.next_heartbeat_at <= now()
      AND s.inflight_kind IS NULL AND s.delivered_through = s.events_since_start
      AND (s.lease_until IS NULL OR s.lease_until < now())
      AND (s.end_at IS NULL OR s.end_at > now())
    ORDER BY s.next_heartbeat_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE subscriptions s
SET lease_until = now() + make_interval(secs => s.timeout_seconds + $2::double precision), lease_owner = $3
FROM due, clients c
WHERE s.subscription_id = due.subscription_id AND c.client_id = s.client_id
RETURNING s.*, c.status AS client_status, c.scopes AS client_scopes, c.full_resource AS client_full_resource,
          c.service_id AS client_service, c.clearances AS client_clearances;

-- name: finish_delivered
-- The notification in flight ($3 kind, events $4..$5) got a 2xx: a handshake makes the subscription
-- active, events are delivered; the lease ends and the heartbeat clock restarts. `delivered_count`
-- counts the events the subscriber was sent: the range's pending events, not those of its numbers
-- the privacy decision point withheld (never sent) or that ended otherwise.
WITH owned AS (
    SELECT t.subscription_id FROM subscriptions t WHERE t.subscription_id = $1 AND t.lease_owner = $2 FOR UPDATE
), events AS (
    UPDATE subscription_events e SET state = 'delivered', finished_at = now()
    FROM owned
    WHERE $3 = 'event-notification' AND e.subscription_id = owned.subscription_id
      AND e.event_number BETWEEN $4::bigint AND $5::bigint AND e.state = 'pending'
    RETURNING 1
), done AS (
    UPDATE subscriptions t SET
        status = CASE WHEN $3 = 'handshake' AND t.status = 'requested' THEN 'active' ELSE t.status END,
        version = t.version + CASE WHEN $3 = 'handshake' AND t.status = 'requested' THEN 1 ELSE 0 END,
        updated_at = CASE WHEN $3 = 'handshake' AND t.status = 'requested' THEN now() ELSE t.updated_at END,
        handshake_pending = CASE WHEN $3 = 'handshake' THEN false ELSE t.handshake_pending END,
        delivered_through = CASE WHEN $3 = 'event-notification' THEN greatest(t.delivered_through, $5::bigint)
                                 ELSE t.delivered_through END,
        delivered_count = t.delivered_count + (SELECT count(*) FROM events),
        inflight_kind = NULL, inflight_first = NULL, inflight_last = NULL, inflight_body = NULL,
        inflight_webhook_id = NULL, attempts = 0, next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL,
        last_success_at = now(),
        next_heartbeat_at = CASE WHEN t.heartbeat_period IS NULL THEN NULL
                                 ELSE now() + make_interval(secs => t.heartbeat_period) END
    FROM owned
    WHERE t.subscription_id = owned.subscription_id
    RETURNING t.subscription_id, t.status
)
SELECT done.status, (SELECT count(*) FROM events) AS finished FROM done;

-- name: finish_retry
-- The notification ($5 kind, events $6..$7) failed and is tried again after $3 seconds ($4: what went
-- wrong). Its body and webhook-id ($8, $9) are kept, so every retry sends the same bytes.
UPDATE subscriptions SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $3::double precision),
                         lease_until = NULL, lease_owner = NULL, failed_attempts = failed_attempts + 1,
                         last_error = $4, last_error_at = now(),
                         inflight_kind = $5, inflight_first = $6, inflight_last = $7, inflight_body = $8,
                         inflight_webhook_id = $9
WHERE subscription_id = $1 AND lease_owner = $2
RETURNING attempts;

-- name: finish_failed
-- The notification in flight ($3 kind, events $4..$5) failed for good ($6 error code, $7 text):
-- events end `exhausted` (kept for $events) and the subscription goes to `error`. A failed
-- heartbeat only waits for the next one.
WITH done AS (
    UPDATE subscriptions t SET
        status = CASE WHEN $3 = 'heartbeat' THEN t.status ELSE 'error' END,
        version = t.version + CASE WHEN $3 = 'heartbeat' THEN 0 ELSE 1 END,
        updated_at = CASE WHEN $3 = 'heartbeat' THEN t.updated_at ELSE now() END,
        handshake_pending = false,
        error_code = CASE WHEN $3 = 'heartbeat' THEN t.error_code ELSE $6 END,
        error_text = CASE WHEN $3 = 'heartbeat' THEN t.error_text ELSE $7 END,
        delivered_through = CASE WHEN $3 = 'event-notification' THEN greatest(t.delivered_through, $5::bigint)
                                 ELSE t.delivered_through END,
        inflight_kind = NULL, inflight_first = NULL, inflight_last = NULL, inflight_body = NULL,
        inflight_webhook_id = NULL, attempts = 0, next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL,
        failed_attempts = t.failed_attempts + 1, last_error = $7, last_error_at = now(),
        next_heartbeat_at = CASE WHEN t.heartbeat_period IS NULL THEN NULL
                                 ELSE now() + make_interval(secs => t.heartbeat_period) END
    WHERE t.subscription_id = $1 AND t.lease_owner = $2
    RETURNING t.subscription_id, t.status
), events AS (
    UPDATE subscription_events e SET state = 'exhausted', finished_at = now()
    FROM done
    WHERE $3 = 'event-notification' AND e.subscription_id = done.subscription_id
      AND e.event_number BETWEEN $4::bigint AND $5::bigint AND e.state = 'pending'
    RETURNING 1
)
SELECT done.status, (SELECT count(*) FROM events) AS finished FROM done;

-- name: refuse_delivery
-- The owner may no longer receive what the subscription sends ($3 why): nothing is sent, the
-- subscription goes to `error`; its events stay pending until the owner reactivates it.
UPDATE subscriptions SET status = 'error', version = version + 1, updated_at = now(), error_code = NULL,
                         error_text = $3, inflight_kind = NULL, inflight_first = NULL, inflight_last = NULL,
                         inflight_body = NULL, inflight_webhook_id = NULL, attempts = 0, next_attempt_at = NULL,
                         lease_until = NULL, lease_owner = NULL, handshake_pending = false,
                         last_error = $3, last_error_at = now()
WHERE subscription_id = $1 AND lease_owner = $2
RETURNING subscription_id;

-- name: withhold_events
-- The privacy decision point withholds the events $3 of subscription $1 (leased by worker $2) from its
-- subscriber: they end `withheld` (final, never sent; $events shows them), a notification in flight
-- that carried any of them is dropped (the rest are sent anew), the delivery cursor moves past every
-- event with a final state, and the lease ends. Run after lock_subscription_row in one
-- transaction: on its own, a registration holding the row when it starts made it update the row as
-- that registration left it (events_since_start counting the new event) while its subquery, with the
-- statement's older snapshot, did not see that event, and the cursor moved past it unsent.
WITH marked AS (
    UPDATE subscription_events e SET state = 'withheld', finished_at = now()
    WHERE e.subscription_id = $1 AND e.event_number = ANY ($3::bigint[]) AND e.state = 'pending'
    RETURNING e.event_number
)
UPDATE subscriptions t SET
    inflight_kind = NULL, inflight_first = NULL, inflight_last = NULL, inflight_body = NULL,
    inflight_webhook_id = NULL, attempts = 0, next_attempt_at = NULL, lease_until = NULL, lease_owner = NULL,
    delivered_through = coalesce(
        (SELECT min(e.event_number) - 1 FROM subscription_events e
         WHERE e.subscription_id = $1 AND e.state = 'pending' AND e.event_number > t.delivered_through
           AND e.event_number <> ALL (ARRAY(SELECT event_number FROM marked))),
        t.events_since_start)
WHERE t.subscription_id = $1 AND t.lease_owner = $2
RETURNING (SELECT count(*) FROM marked) AS withheld;

-- name: release_lease
-- Give a claimed subscription back untouched (the worker is stopping).
UPDATE subscriptions SET lease_until = NULL, lease_owner = NULL
WHERE subscription_id = $1 AND lease_owner = $2;

-- name: end_expired
-- Subscriptions whose `end` has passed go `off`.
UPDATE subscriptions SET status = 'off', version = version + 1, updated_at = now()
WHERE end_at IS NOT NULL AND end_at <= now() AND deleted_at IS NULL AND status <> 'off'
RETURNING subscription_id;

-- name: purge_events
-- Forget final events older than $1 seconds (up to each subscription's delivery cursor); the
-- subscription remembers up to which number events are gone. Returns how many were removed.
WITH cut AS (
    SELECT e.subscription_id, max(e.event_number) AS upto
    FROM subscription_events e
    JOIN subscriptions s USING (subscription_id)
    WHERE e.state <> 'pending' AND e.finished_at < now() - make_interval(secs => $1::double precision)
      AND e.event_number <= s.delivered_through
    GROUP BY e.subscription_id
), marked AS (
    UPDATE subscriptions s SET purged_through = greatest(s.purged_through, cut.upto)
    FROM cut WHERE s.subscription_id = cut.subscription_id
    RETURNING s.subscription_id
), gone AS (
    DELETE FROM subscription_events e USING cut
    WHERE e.subscription_id = cut.subscription_id AND e.event_number <= cut.upto
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS purged, (SELECT count(*) FROM marked) AS subscriptions;

-- name: wake_workers
-- Wake every delivery worker (on commit).
SELECT pg_notify('ief_subscription_events', '');

-- name: probe_listeners
-- A notification a worker sends itself to check that its LISTEN works (a transaction-mode pooler
-- between it and PostgreSQL swallows notifications); the other workers just wake once.
SELECT pg_notify('ief_subscription_events', $1::text);

-- name: delivery_stats
-- The $1 subscriptions with the most pending events and failed attempts, with their counters.
SELECT s.subscription_id, s.status, s.delivered_count, s.events_since_start - s.delivered_through AS pending,
       s.failed_attempts, s.last_error, s.last_success_at
FROM subscriptions s
WHERE s.deleted_at IS NULL
ORDER BY s.events_since_start - s.delivered_through DESC, s.failed_attempts DESC, s.subscription_id
LIMIT $1;

-- name: delivery_totals
-- Counters summed over every subscription, per status.
SELECT s.status, count(*) AS subscriptions, coalesce(sum(s.delivered_count), 0)::bigint AS delivered,
       coalesce(sum(s.events_since_start - s.delivered_through), 0)::bigint AS pending,
       coalesce(sum(s.failed_attempts), 0)::bigint AS failed
FROM subscriptions s
WHERE s.deleted_at IS NULL
GROUP BY s.status
ORDER BY s.status;

-- name: owner_state
-- What delivery re-checks about a subscription's owner: enabled, scopes, full-resource permission.
SELECT status, scopes, full_resource, service_id AS service, clearances FROM clients WHERE client_id = $1;

-- name: set_full_resource
-- Allow (or stop allowing) a client full-resource payloads; returns the client ID when it exists.
UPDATE clients SET full_resource = $2, updated_at = now() WHERE client_id = $1 RETURNING client_id;
