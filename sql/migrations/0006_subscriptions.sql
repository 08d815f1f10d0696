-- FHIR subscriptions (R5 Backport IG, rest-hook) and their transactional outbox.
--
-- A registration that creates a record or changes its status is matched against the live
-- subscriptions by statement-level triggers on `records`, in the registration's own transaction
-- (docs/adr/0010-subscriptions.md). Matching uses the indexed filter columns: the patient's IHI,
-- and a partial index for the few subscriptions without a patient filter. Each matched
-- subscription row is locked (in subscription_id order, so concurrent registrations cannot
-- deadlock on them), its events_since_start bumped and one subscription_events row inserted per
-- matched change: event numbers start at 1, have no gaps, and are as durable as the registration.
-- A registration that rolls back leaves nothing. Delivery state lives on the subscription row:
-- one notification in flight per subscription, its body rendered once and stored for retries.

-- Which clients may receive full-resource payloads (`ief-registry clients add --full-resource`).
ALTER TABLE clients ADD COLUMN full_resource boolean NOT NULL DEFAULT false;

CREATE TABLE subscriptions (
    subscription_id    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id          text        NOT NULL REFERENCES clients (client_id),
    status             text        NOT NULL CHECK (status IN ('requested', 'active', 'error', 'off')),
    reason             text        NOT NULL,
    end_at             timestamptz,
    base_url           text        NOT NULL,  -- the FHIR base the subscription was created at (URLs in notifications)
    -- Filters: NULL = any. One patient per subscription; services and statuses OR-ed.
    filter_ihi         char(16)    CHECK (filter_ihi ~ '^800360[0-9]{10}$'),
    filter_services    text[],
    filter_statuses    text[],
    filters            text[]      NOT NULL DEFAULT '{}',  -- canonical filter strings, as answered
    -- The channel.
    endpoint           text        NOT NULL,
    payload_type       text        NOT NULL,
    content            text        NOT NULL CHECK (content IN ('empty', 'id-only', 'full-resource')),
    headers            text[]      NOT NULL DEFAULT '{}',
    secret             text        NOT NULL CHECK (secret ~ '^whsec_'),
    previous_secret    text,
    previous_secret_until timestamptz,
    heartbeat_period   integer     CHECK (heartbeat_period > 0),
    timeout_seconds    integer     NOT NULL CHECK (timeout_seconds > 0),
    max_count          integer     NOT NULL DEFAULT 1 CHECK (max_count > 0),
    -- Numbering and delivery.
    events_since_start bigint      NOT NULL DEFAULT 0,
    delivered_through  bigint      NOT NULL DEFAULT 0,  -- every event up to this number has a final state
    purged_through     bigint      NOT NULL DEFAULT 0,  -- events up to this number are no longer kept
    handshake_pending  boolean     NOT NULL DEFAULT true,
    next_attempt_at    timestamptz,                     -- the head notification waits until then (backoff)
    lease_until        timestamptz,                     -- a worker is delivering it until then
    lease_owner        text,
    attempts           integer     NOT NULL DEFAULT 0,  -- failed attempts of the notification in flight
    inflight_kind      text        CHECK (inflight_kind IN ('handshake', 'heartbeat', 'event-notification')),
    inflight_first     bigint,
    inflight_last      bigint,
    inflight_body      bytea,
    inflight_webhook_id text,
    next_heartbeat_at  timestamptz,
    error_code         text,
    error_text         text,
    -- Counters (metrics and $status).
    delivered_count    bigint      NOT NULL DEFAULT 0,
    failed_attempts    bigint      NOT NULL DEFAULT 0,
    last_error         text,
    last_error_at      timestamptz,
    last_success_at    timestamptz,
    version            integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    CHECK (delivered_through <= events_since_start),
    CHECK ((inflight_kind IS NULL) = (inflight_body IS NULL))
);

CREATE INDEX subscriptions_owner_idx ON subscriptions (client_id) WHERE deleted_at IS NULL;

-- Matching: by patient, and the few subscriptions without a patient filter.
CREATE INDEX subscriptions_patient_idx ON subscriptions (filter_ihi)
    WHERE filter_ihi IS NOT NULL AND deleted_at IS NULL AND status <> 'off';
CREATE INDEX subscriptions_any_patient_idx ON subscriptions (subscription_id)
    WHERE filter_ihi IS NULL AND deleted_at IS NULL AND status <> 'off';

-- Delivery: subscriptions with something to send, by when it is due.
CREATE INDEX subscriptions_due_idx ON subscriptions (next_attempt_at NULLS FIRST)
    WHERE deleted_at IS NULL
      AND ((status = 'requested' AND handshake_pending)
           OR (status = 'active' AND (inflight_kind IS NOT NULL OR delivered_through < events_since_start)));
CREATE INDEX subscriptions_heartbeat_idx ON subscriptions (next_heartbeat_at)
    WHERE deleted_at IS NULL AND status = 'active' AND next_heartbeat_at IS NOT NULL;
CREATE INDEX subscriptions_end_idx ON subscriptions (end_at)
    WHERE end_at IS NOT NULL AND deleted_at IS NULL AND status <> 'off';

CREATE TABLE subscription_events (
    subscription_id uuid        NOT NULL REFERENCES subscriptions (subscription_id),
    event_number    bigint      NOT NULL CHECK (event_number > 0),
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    change          text        NOT NULL CHECK (change IN ('created', 'updated')),
    -- The record as the change left it (full-resource payloads show it as it was then).
    record_id       uuid        NOT NULL,
    ihi             char(16)    NOT NULL,
    service_id      text        NOT NULL,
    record_status   text        NOT NULL,
    record_type     text        NOT NULL,
    record_version  integer     NOT NULL,
    record_updated  timestamptz NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'exhausted', 'cancelled')),
    finished_at     timestamptz,
    PRIMARY KEY (subscription_id, event_number)
);

CREATE INDEX subscription_events_purge_idx ON subscription_events (finished_at) WHERE state <> 'pending';

-- Match changed records against the live subscriptions, number and insert their events.
-- p_rows: the changed records, sorted by (ihi, service_id) so numbering is deterministic.
CREATE FUNCTION enqueue_subscription_events(p_rows records[], p_change text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_subs uuid[];
    v_rows integer[];
BEGIN
    SELECT array_agg(m.subscription_id ORDER BY m.subscription_id, m.ord),
           array_agg(m.ord ORDER BY m.subscription_id, m.ord)
    INTO v_subs, v_rows
    FROM (
        SELECT s.subscription_id, c.ordinality::integer AS ord
        FROM unnest(p_rows) WITH ORDINALITY AS c
        JOIN subscriptions s ON s.filter_ihi = c.ihi
        WHERE s.filter_ihi IS NOT NULL AND s.deleted_at IS NULL AND s.status <> 'off'
          AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
          AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
        UNION ALL
        SELECT s.subscription_id, c.ordinality::integer
        FROM subscriptions s
        CROSS JOIN unnest(p_rows) WITH ORDINALITY AS c
        WHERE s.filter_ihi IS NULL AND s.deleted_at IS NULL AND s.status <> 'off'
          AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
          AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
    ) m;
    IF v_subs IS NULL THEN
        RETURN;
    END IF;
    -- Lock in one order (concurrent registrations queue here instead of deadlocking).
    PERFORM 1 FROM subscriptions WHERE subscription_id = ANY (v_subs) ORDER BY subscription_id FOR UPDATE;
    WITH m AS (
        SELECT u.subscription_id, u.idx, u.ord
        FROM unnest(v_subs, v_rows) WITH ORDINALITY AS u(subscription_id, idx, ord)
    ), counts AS (
        SELECT subscription_id, count(*) AS n FROM m GROUP BY subscription_id
    ), bumped AS (
        UPDATE subscriptions s SET events_since_start = s.events_since_start + counts.n
        FROM counts WHERE s.subscription_id = counts.subscription_id
        RETURNING s.subscription_id, s.events_since_start - counts.n AS base
    )
    INSERT INTO subscription_events (subscription_id, event_number, change, record_id, ihi, service_id,
                                     record_status, record_type, record_version, record_updated)
    SELECT m.subscription_id,
           b.base + row_number() OVER (PARTITION BY m.subscription_id ORDER BY m.ord),
           p_change, (p_rows[m.idx]).record_id, (p_rows[m.idx]).ihi, (p_rows[m.idx]).service_id,
           (p_rows[m.idx]).status, (p_rows[m.idx]).type, (p_rows[m.idx]).version, (p_rows[m.idx]).last_updated
    FROM m JOIN bumped b USING (subscription_id);
    -- Wake the delivery workers once the registration commits (NOTIFY is transactional).
    PERFORM pg_notify('ief_subscription_events', '');
END $$;

CREATE FUNCTION subscription_events_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows records[];
BEGIN
    -- With no live subscription, a registration pays for this one index probe only.
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off') THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(n ORDER BY n.ihi, n.service_id) INTO v_rows FROM new_rows n;
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows, 'created');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION subscription_events_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows records[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off') THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(n ORDER BY n.ihi, n.service_id) INTO v_rows
    FROM new_rows n JOIN old_rows o USING (ihi, service_id)
    WHERE n.status IS DISTINCT FROM o.status;
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows, 'updated');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER records_subscription_events_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscription_events_on_insert();
CREATE TRIGGER records_subscription_events_update AFTER UPDATE ON records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION subscription_events_on_update();
