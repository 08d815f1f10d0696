-- A registration matched by one subscription locks and bumps it by statements on its id.
--
-- Migration 0013 matched one changed row by statements on its fields, whose generic plan PostgreSQL
-- keeps, but the lock, counter and event that follow took the matched subscriptions as an array
-- (`subscription_id = ANY (v_subs)`), and for a one-element array a custom plan always looks cheaper
-- than the generic one: both statements were planned anew on every registration of a subscribed
-- patient (pg_stat_statements, 32 connections re-registering subscribed patients in the database
-- alone: 12,681 plans for 12,649 calls, 0.18 ms of planning in a 1.6 ms registration). One row matched
-- by one subscription, the common case, now takes statements on that id; several rows or several
-- subscriptions keep the set-based forms. Same lock order (one row), same numbering, same wake-up.

CREATE OR REPLACE FUNCTION enqueue_subscription_events(p_rows records[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_row records;
    v_subs uuid[];
    v_rows integer[];
    v_unannounced uuid[];
    v_sub uuid;
    v_announce boolean;
BEGIN
    IF cardinality(p_rows) = 1 THEN
        v_row := p_rows[1];
        SELECT array_agg(m.subscription_id ORDER BY m.subscription_id) INTO v_subs
        FROM (
            SELECT s.subscription_id
            FROM subscriptions s
            WHERE s.filter_ihi = v_row.ihi AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR v_row.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR v_row.status = ANY (s.filter_statuses))
            UNION ALL
            SELECT s.subscription_id
            FROM group_members gm
            JOIN subscriptions s ON s.filter_group = gm.group_id
            WHERE gm.ihi = v_row.ihi AND s.filter_group IS NOT NULL AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR v_row.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR v_row.status = ANY (s.filter_statuses))
            UNION ALL
            SELECT s.subscription_id
            FROM subscriptions s
            WHERE s.filter_ihi IS NULL AND s.filter_group IS NULL AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR v_row.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR v_row.status = ANY (s.filter_statuses))
        ) m;
    ELSE
        SELECT array_agg(m.subscription_id ORDER BY m.subscription_id, m.ord),
               array_agg(m.ord ORDER BY m.subscription_id, m.ord)
        INTO v_subs, v_rows
        FROM (
            SELECT s.subscription_id, c.ordinality::integer AS ord
            FROM unnest(p_rows) WITH ORDINALITY AS c
            JOIN subscriptions s ON s.filter_ihi = c.ihi
            WHERE s.filter_ihi IS NOT NULL AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
            UNION ALL
            SELECT s.subscription_id, c.ordinality::integer
            FROM unnest(p_rows) WITH ORDINALITY AS c
            JOIN group_members gm ON gm.ihi = c.ihi
            JOIN subscriptions s ON s.filter_group = gm.group_id
            WHERE s.filter_group IS NOT NULL AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
            UNION ALL
            SELECT s.subscription_id, c.ordinality::integer
            FROM subscriptions s
            CROSS JOIN unnest(p_rows) WITH ORDINALITY AS c
            WHERE s.filter_ihi IS NULL AND s.filter_group IS NULL AND s.deleted_at IS NULL AND s.status <> 'off'
              AND s.topic = 'patient-registration'
              AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
              AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
        ) m;
    END IF;
    IF v_subs IS NULL THEN
        RETURN;
    END IF;
    IF v_rows IS NULL AND cardinality(v_subs) = 1 THEN
        -- One row matched by one subscription (a registration of a patient one client follows): the lock,
        -- bump and event below, by statements on the one id, whose generic plan PostgreSQL keeps. The
        -- array forms were planned anew on every call (a one-element array looks cheaper to a custom plan).
        v_sub := v_subs[1];
        SELECT NOT s.wake_sent INTO v_announce FROM subscriptions s WHERE s.subscription_id = v_sub FOR UPDATE;
        WITH bumped AS (
            UPDATE subscriptions s SET events_since_start = s.events_since_start + 1, wake_sent = true
            WHERE s.subscription_id = v_sub
            RETURNING s.subscription_id, s.events_since_start AS number
        )
        INSERT INTO subscription_events (subscription_id, event_number, change, record_id, ihi, service_id,
                                         record_status, record_type, record_version, record_updated)
        SELECT b.subscription_id, b.number, v_row.change, v_row.record_id, v_row.ihi, v_row.service_id,
               v_row.status, v_row.type, v_row.version, v_row.last_updated
        FROM bumped b;
        IF v_announce THEN
            PERFORM pg_notify('ief_subscription_events', '');
        END IF;
        RETURN;
    END IF;
    -- Both: the matched subscriptions locked in id order (no deadlock between registrations), and whether
    -- any has not yet been announced since a worker last claimed it.
    SELECT array_agg(l.subscription_id) FILTER (WHERE NOT l.wake_sent) INTO v_unannounced
    FROM (SELECT subscription_id, wake_sent FROM subscriptions WHERE subscription_id = ANY (v_subs)
          ORDER BY subscription_id FOR UPDATE) l;
    IF v_rows IS NULL THEN  -- one row: one event per subscription, from the row's fields
        WITH bumped AS (
            UPDATE subscriptions s SET events_since_start = s.events_since_start + 1, wake_sent = true
            WHERE s.subscription_id = ANY (v_subs)
            RETURNING s.subscription_id, s.events_since_start AS number
        )
        INSERT INTO subscription_events (subscription_id, event_number, change, record_id, ihi, service_id,
                                         record_status, record_type, record_version, record_updated)
        SELECT b.subscription_id, b.number, v_row.change, v_row.record_id, v_row.ihi, v_row.service_id,
               v_row.status, v_row.type, v_row.version, v_row.last_updated
        FROM bumped b;
    ELSE
        WITH m AS (
            SELECT u.subscription_id, u.idx, u.ord
            FROM unnest(v_subs, v_rows) WITH ORDINALITY AS u(subscription_id, idx, ord)
        ), counts AS (
            SELECT subscription_id, count(*) AS n FROM m GROUP BY subscription_id
        ), bumped AS (
            UPDATE subscriptions s SET events_since_start = s.events_since_start + counts.n, wake_sent = true
            FROM counts WHERE s.subscription_id = counts.subscription_id
            RETURNING s.subscription_id, s.events_since_start - counts.n AS base
        )
        INSERT INTO subscription_events (subscription_id, event_number, change, record_id, ihi, service_id,
                                         record_status, record_type, record_version, record_updated)
        SELECT m.subscription_id,
               b.base + row_number() OVER (PARTITION BY m.subscription_id ORDER BY m.ord),
               (p_rows[m.idx]).change, (p_rows[m.idx]).record_id, (p_rows[m.idx]).ihi, (p_rows[m.idx]).service_id,
               (p_rows[m.idx]).status, (p_rows[m.idx]).type, (p_rows[m.idx]).version, (p_rows[m.idx]).last_updated
        FROM m JOIN bumped b USING (subscription_id);
    END IF;
    IF v_unannounced IS NOT NULL THEN
        PERFORM pg_notify('ief_subscription_events', '');
    END IF;
END $$;
