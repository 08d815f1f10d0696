-- A single write (a PUT, a FHIR write, a batch of one) does less work in the database.
--
-- 1. put_record() of 0011 began with an INSERT … ON CONFLICT DO NOTHING and updated the record when
--    it existed: the usual case, a re-registration or a status change, paid for an INSERT that
--    inserted nothing, and PostgreSQL runs every statement-level trigger of records for such an
--    INSERT too (history, the service check, subscriptions, publication: each with an empty
--    transition table). put_record() now looks the record up by its key first and inserts only
--    when it is not there; a concurrent writer inserting it in between is still met by ON CONFLICT
--    DO NOTHING and the record is then updated, as before. In the database alone (one connection,
--    20,000 records, commits not waiting for the disk) a re-registration took 0.72-0.82 ms instead
--    of 0.85-0.98 ms with a subscription on the patient, 0.44-0.46 ms instead of 0.52-0.59 ms without.
--
-- 2. enqueue_subscription_events() of 0011 matches the changed rows, passed as an array, against
--    every patient-registration subscription in one statement. PL/pgSQL plans a statement with its
--    parameters' values (a custom plan) until a plan without them (the generic plan) is not
--    costlier: with an array, the custom plan knows how many rows it holds and the generic one
--    guesses, so every call planned the statement again, about 1 ms of a single PUT's database time
--    with 2,000 subscriptions (docs/benchmarks.md, "Registrations as events"). Forcing the generic
--    plan was tried and not kept: it is made once per connection with the statistics of that
--    moment, and one made before a bulk of subscriptions was analysed joined them all for every
--    registration. One changed row is now matched by statements on that row's fields, scalars:
--    each branch an equality on an indexed column (the patient, the cohort member) or the partial
--    index of subscriptions to every patient, whose plan does not depend on how many rows or
--    subscriptions there are, so the generic plan is the custom one and is kept. Several rows (a
--    batch, a lifecycle command's chunk) are matched as before, where the planning is paid once for
--    all of them. Both give the same events in the same order (tests/subscriptions/test_matching.py).

CREATE OR REPLACE FUNCTION put_record(p_ihi text, p_service_id text, p_status text, p_type text,
                           p_client text DEFAULT NULL, p_client_service text DEFAULT NULL,
                           p_admin boolean DEFAULT false, p_reason text DEFAULT NULL, p_labels text[] DEFAULT NULL)
RETURNS TABLE (ihi text, service_id text, record_id uuid, status text, type text, version integer,
               last_updated timestamptz, outcome text, security_labels text[])
LANGUAGE plpgsql AS $$
DECLARE
    r records%ROWTYPE;
    v_kind text;
    v_status text;
BEGIN
    SELECT s.kind, s.status INTO v_kind, v_status FROM services s WHERE s.service_id = p_service_id;
    IF NOT FOUND OR NOT routable_service(v_status) THEN
        RAISE EXCEPTION 'service % is not known or not enabled', p_service_id USING ERRCODE = 'IE001';
    END IF;
    IF (p_type = 'registry') <> (v_kind = 'registry') THEN
        RAISE EXCEPTION 'a record of type % names a %, but service % is a %',
            p_type, CASE WHEN p_type = 'registry' THEN 'registry' ELSE 'gateway' END, p_service_id, v_kind
            USING ERRCODE = 'IE004';
    END IF;
    -- A record that exists is updated without trying to insert it first: an INSERT that inserts nothing
    -- still runs every statement-level trigger on records (each with its empty transition table).
    PERFORM FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id;
    IF NOT FOUND THEN
        INSERT INTO records AS t (ihi, service_id, status, type, change, actor_client, actor_service, actor_admin,
                                  reason, held, security_labels)
        VALUES (p_ihi, p_service_id, p_status, p_type, 'created', p_client, p_client_service, p_admin, p_reason,
                p_admin AND p_status <> 'active', coalesce(p_labels, '{}'))
        ON CONFLICT ON CONSTRAINT records_pkey DO NOTHING  -- inserted by a concurrent writer: updated below
        RETURNING t.* INTO r;
        IF FOUND THEN
            RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
                                'created', r.security_labels;
            RETURN;
        END IF;
    END IF;
    -- The usual case in one statement: a re-registration or a change the writer may make (the row
    -- lock it takes re-checks the condition against a concurrent writer's version).
    UPDATE records AS t SET
        status = p_status, type = p_type, security_labels = coalesce(p_labels, t.security_labels),
        version = t.version + 1, last_updated = now(),
        change = CASE WHEN t.status = 'active' AND p_status = 'active' THEN 'registered'
                      WHEN t.status <> p_status THEN 'status-changed' ELSE 'updated' END,
        actor_client = p_client, actor_service = p_client_service, actor_admin = p_admin, reason = p_reason,
        held = p_admin AND p_status <> 'active', previous_service = NULL
    WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id
      AND ((t.status, t.type, t.security_labels)
           IS DISTINCT FROM (p_status, p_type, coalesce(p_labels, t.security_labels)) OR p_status = 'active')
      AND (NOT t.held OR p_admin)
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
                            CASE WHEN r.change = 'registered' THEN 'registered' ELSE 'updated' END, r.security_labels;
        RETURN;
    END IF;
    SELECT t.* INTO r FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id;
    IF r.held AND NOT p_admin AND ((r.status, r.type, r.security_labels)
                                   IS DISTINCT FROM (p_status, p_type, coalesce(p_labels, r.security_labels))
                                   OR p_status = 'active') THEN
        RAISE EXCEPTION 'the operator set this record to % (%) at %; only the operator can change it',
            r.status, coalesce(r.reason, 'no reason given'), to_char(r.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            USING ERRCODE = 'IE003';
    END IF;
    RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
                        'unchanged', r.security_labels;
END $$;

CREATE OR REPLACE FUNCTION enqueue_subscription_events(p_rows records[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_row records;
    v_subs uuid[];
    v_rows integer[];
    v_unannounced uuid[];
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
