-- One statement trigger per write on records: history, publication, the service check and
-- subscription events read the changed rows once.
--
-- Until now an UPDATE of records fired three statement-level triggers (history, publication,
-- subscription events) and an INSERT four (the service check as well), each a PL/pgSQL function of
-- its own that read the statement's transition tables again: a subscribed re-registration ran about
-- ten statements in them (the history insert; the publication's "is anyone publishing?"; the
-- subscriptions' "is anyone subscribed?", two set_config() calls around the join of the transition
-- tables, the join itself and the call of enqueue_subscription_events()), each paying for a plan
-- look-up and an executor start-up, and PostgreSQL spent 47 % of its time in those three functions
-- (`perf`, docs/benchmarks.md, "Registrations as events"). Now one function per kind of write reads
-- the changed rows once, in one statement that writes the history entries and the publication
-- outbox and collects what the rest needs: the services re-pointed to (locked and checked as
-- before), and the rows that are subscription events, only when a live subscription exists (its
-- test evaluated once per statement). The rows' order, the history entries, the outbox entries,
-- the events and their numbering are those of the four functions it replaces; a failed service check
-- still undoes the statement.
--
-- The functions run as the owner (history is written by the owner alone, as before), with the
-- transition tables joined by hash (enable_nestloop off, as the history trigger had it), while
-- enqueue_subscription_events() plans its matching with nested loops on, whoever calls it: its
-- generic plans are made once per connection and must look subscriptions up by index (before, the
-- subscription trigger switched the setting back by hand around its own join).
--
-- put_record() finds the service and whether the record exists in one statement (two before), and
-- answers through its output columns instead of a query.

-- enqueue_subscription_events() of 0017, unchanged, matches by index (nested loops) whoever calls it:
-- the triggers below join their transition tables with nested loops off.
ALTER FUNCTION enqueue_subscription_events(records[]) SET enable_nestloop = on;

DROP TRIGGER records_history_insert ON records;
DROP TRIGGER records_publication_insert ON records;
DROP TRIGGER records_services_insert ON records;
DROP TRIGGER records_subscription_events_insert ON records;
DROP TRIGGER records_history_update ON records;
DROP TRIGGER records_publication_update ON records;
DROP TRIGGER records_subscription_events_update ON records;
DROP FUNCTION record_history_on_insert();
DROP FUNCTION publication_on_insert();
DROP FUNCTION records_check_services();
DROP FUNCTION subscription_events_on_insert();
DROP FUNCTION record_history_on_update();
DROP FUNCTION publication_on_update();
DROP FUNCTION subscription_events_on_update();

-- New records: each a history entry (`created`), each active record an IHI to publish, the services
-- they name locked and checked (FOR KEY SHARE, as a foreign key would), and, when a live subscription
-- exists, each an event unless its service is not routed and it is active.
CREATE FUNCTION records_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named text[];
    v_rows records[];
BEGIN
    WITH written AS (
        INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                    recorded_at, actor_client, actor_service, actor_admin, reason, previous_service,
                                    security_labels)
        SELECT n.ihi, n.service_id, n.record_id, n.version, 'created', n.status, n.type, NULL, n.last_updated,
               n.actor_client, n.actor_service, n.actor_admin, n.reason, NULL, n.security_labels
        FROM new_rows n
    ), published AS (
        INSERT INTO publication_outbox (target, ihi)
        SELECT p.target, d.ihi
        FROM publications p
        CROSS JOIN (SELECT DISTINCT n.ihi FROM new_rows n WHERE n.status = 'active' AND n.type = 'record') d
        WHERE p.enabled
        ORDER BY d.ihi
    )
    SELECT array_agg(DISTINCT n.service_id),
           array_agg(n ORDER BY n.ihi, n.service_id)
               FILTER (WHERE (SELECT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off'))
                         AND (n.status <> 'active'
                              OR (SELECT routable_service(s.status) FROM services s WHERE s.service_id = n.service_id)))
    INTO v_named, v_rows
    FROM new_rows n;
    IF v_named IS NOT NULL THEN
        PERFORM lock_named_services(v_named);
    END IF;
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows);
    END IF;
    RETURN NULL;
END $$;

-- Changed records: each new version a history entry (with the previous status, and the previous
-- service of a move), each IHI whose "has an active record here" may have changed one to publish,
-- the services records were re-pointed to locked and checked, and, when a live subscription exists,
-- each new version an event unless its service is not routed and it is active.
CREATE FUNCTION records_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named text[];
    v_rows records[];
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n AS new_row, n.ihi, n.service_id, n.record_id, n.version, n.change, n.status, n.type, n.last_updated,
               n.actor_client, n.actor_service, n.actor_admin, n.reason, n.security_labels,
               o.status AS old_status, o.type AS old_type, o.service_id AS old_service, o.version AS old_version
        FROM new_rows n JOIN old_rows o USING (record_id)
    ), written AS (
        INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                    recorded_at, actor_client, actor_service, actor_admin, reason, previous_service,
                                    security_labels)
        SELECT c.ihi, c.service_id, c.record_id, c.version, c.change, c.status, c.type, c.old_status, c.last_updated,
               c.actor_client, c.actor_service, c.actor_admin, c.reason,
               CASE WHEN c.service_id <> c.old_service THEN c.old_service END, c.security_labels
        FROM changed c
        WHERE c.version <> c.old_version
    ), published AS (
        INSERT INTO publication_outbox (target, ihi)
        SELECT p.target, d.ihi
        FROM publications p
        CROSS JOIN (
            SELECT DISTINCT c.ihi FROM changed c
            WHERE (c.status = 'active' AND c.type = 'record') IS DISTINCT FROM (c.old_status = 'active' AND c.old_type = 'record')
        ) d
        WHERE p.enabled
        ORDER BY d.ihi
    )
    SELECT array_agg(DISTINCT c.service_id) FILTER (WHERE c.service_id <> c.old_service),
           array_agg(c.new_row ORDER BY c.ihi, c.service_id)
               FILTER (WHERE c.version <> c.old_version
                         AND (SELECT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off'))
                         AND (c.status <> 'active'
                              OR (SELECT routable_service(s.status) FROM services s WHERE s.service_id = c.service_id)))
    INTO v_named, v_rows
    FROM changed c;
    IF v_named IS NOT NULL THEN
        PERFORM lock_named_services(v_named);
    END IF;
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows);
    END IF;
    RETURN NULL;
END $$;

-- History rows are written by the owner alone (the server's role has no INSERT on record_history),
-- and locking a service FOR KEY SHARE needs UPDATE on services, which that role must not hold.
-- With nested loops off, the publication's cross join (a nested loop or nothing) costs more than
-- jit_above_cost, and PostgreSQL would compile the statement on every write: JIT is off for these
-- statements, which touch a handful of rows per record written.
ALTER FUNCTION records_inserted()
    SECURITY DEFINER SET search_path = pg_catalog, public SET enable_nestloop = off SET jit = off;
ALTER FUNCTION records_changed()
    SECURITY DEFINER SET search_path = pg_catalog, public SET enable_nestloop = off SET jit = off;

CREATE TRIGGER records_inserted AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION records_inserted();
CREATE TRIGGER records_changed AFTER UPDATE ON records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION records_changed();

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
    v_exists boolean;
BEGIN
    SELECT s.kind, s.status,
           EXISTS (SELECT FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id)
    INTO v_kind, v_status, v_exists
    FROM services s WHERE s.service_id = p_service_id;
    IF NOT FOUND OR NOT routable_service(v_status) THEN
        RAISE EXCEPTION 'service % is not known or not enabled', p_service_id USING ERRCODE = 'IE001';
    END IF;
    IF (p_type = 'registry') <> (v_kind = 'registry') THEN
        RAISE EXCEPTION 'a record of type % names a %, but service % is a %',
            p_type, CASE WHEN p_type = 'registry' THEN 'registry' ELSE 'gateway' END, p_service_id, v_kind
            USING ERRCODE = 'IE004';
    END IF;
    -- A record that exists is updated without trying to insert it first: an INSERT that inserts nothing
    -- still runs the statement trigger on records.
    IF NOT v_exists THEN
        INSERT INTO records AS t (ihi, service_id, status, type, change, actor_client, actor_service, actor_admin,
                                  reason, held, security_labels)
        VALUES (p_ihi, p_service_id, p_status, p_type, 'created', p_client, p_client_service, p_admin, p_reason,
                p_admin AND p_status <> 'active', coalesce(p_labels, '{}'))
        ON CONFLICT ON CONSTRAINT records_pkey DO NOTHING  -- inserted by a concurrent writer: updated below
        RETURNING t.* INTO r;
        IF FOUND THEN
            outcome := 'created';
        END IF;
    END IF;
    IF outcome IS NULL THEN
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
            outcome := CASE WHEN r.change = 'registered' THEN 'registered' ELSE 'updated' END;
        END IF;
    END IF;
    IF outcome IS NULL THEN
        SELECT t.* INTO r FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id;
        IF r.held AND NOT p_admin AND ((r.status, r.type, r.security_labels)
                                       IS DISTINCT FROM (p_status, p_type, coalesce(p_labels, r.security_labels))
                                       OR p_status = 'active') THEN
            RAISE EXCEPTION 'the operator set this record to % (%) at %; only the operator can change it',
                r.status, coalesce(r.reason, 'no reason given'),
                to_char(r.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                USING ERRCODE = 'IE003';
        END IF;
        outcome := 'unchanged';
    END IF;
    ihi := r.ihi;
    service_id := r.service_id;
    record_id := r.record_id;
    status := r.status;
    type := r.type;
    version := r.version;
    last_updated := r.last_updated;
    security_labels := r.security_labels;
    RETURN NEXT;
END $$;
