-- Record lifecycle and registration events (DESIGN §11; ADRs 0020-0022).
--
-- * Every accepted registration is an event: a write of `active` to an active record is an UPDATE
--   that moves last_updated and the version (change `registered`), so the statement-level triggers
--   write its history entry and its subscription events like any other change.
-- * The row carries what its last change was and who made it (change, actor client, actor service,
--   admin flag, reason); the triggers copy that into history and into subscription events, so no
--   write path can skip it. `held` marks an operator's decision (removed or archived by admin) that
--   a gateway cannot undo.
-- * One rule says which services are routed: routable_service(status). Look-ups, searches and the
--   notification trigger all use it.
-- * Idempotency keys, resumable lifecycle jobs, the directory's organisation fields, cohort Groups
--   and the upstream publication outbox.

-- The directory -------------------------------------------------------------------------------

ALTER TABLE services DROP CONSTRAINT services_status_check;
ALTER TABLE services
    ADD CONSTRAINT services_status_check CHECK (status IN ('enabled', 'disabled', 'retired')),
    ADD COLUMN hpio text CHECK (hpio ~ '^800362[0-9]{10}$'),
    ADD COLUMN jurisdiction text CHECK (jurisdiction IN ('ACT', 'NSW', 'NT', 'QLD', 'SA', 'TAS', 'VIC', 'WA', 'national')),
    ADD COLUMN contact_email text CHECK (length(contact_email) BETWEEN 3 AND 254),
    ADD COLUMN contact_phone text CHECK (length(contact_phone) BETWEEN 3 AND 40),
    ADD COLUMN capability_statement_url text CHECK (capability_statement_url ~ '^https?://'),
    ADD COLUMN fallback text CHECK (length(fallback) BETWEEN 1 AND 2000);

-- The one routing rule: only an enabled service is a place to send anyone. Disabled and retired
-- services are left out of every default answer (look-ups, follow, $locate, Basic search, the
-- broker) and their records' routing notifications are not sent.
CREATE FUNCTION routable_service(p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT p_status = 'enabled' $$;

-- The directory written over HTTP (FHIR Endpoint create and update with the operator's token). The
-- server's role may not write services itself (migration 0007): it writes an entry through this
-- function alone, which keeps what only the owner's command line may set. The token endpoint (where
-- this registry sends its signed client assertions) and the bearer token file (a file the servers
-- read and send) stay as they are; the client ID is kept unless one is given (a new one drops a token
-- file, and the token endpoint that went with the old one); a service is never retired here, and a
-- retired one is not changed (no row is returned). Returns the entry and whether it is new.
CREATE FUNCTION directory_put(p_service_id text, p_kind text, p_name text, p_base_url text, p_search_style text,
                              p_status text, p_client_id text, p_hpio text, p_jurisdiction text,
                              p_contact_email text, p_contact_phone text, p_capability_statement_url text,
                              p_fallback text)
RETURNS TABLE (service_id text, kind text, name text, base_url text, search_style text, status text,
               client_id text, bearer_token_file text, token_endpoint text, created_at timestamptz,
               updated_at timestamptz, hpio text, jurisdiction text, contact_email text, contact_phone text,
               capability_statement_url text, fallback text, created boolean)
LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
    IF p_status NOT IN ('enabled', 'disabled') THEN
        RAISE EXCEPTION 'a service is enabled or disabled over HTTP, not %', p_status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN QUERY
    INSERT INTO services AS s (service_id, kind, name, base_url, search_style, status, client_id, hpio,
                               jurisdiction, contact_email, contact_phone, capability_statement_url, fallback)
    VALUES (p_service_id, p_kind, p_name, p_base_url, p_search_style, p_status, p_client_id, p_hpio,
            p_jurisdiction, p_contact_email, p_contact_phone, p_capability_statement_url, p_fallback)
    ON CONFLICT ON CONSTRAINT services_pkey DO UPDATE
        SET kind = excluded.kind, name = excluded.name, base_url = excluded.base_url,
            search_style = excluded.search_style, status = excluded.status,
            client_id = coalesce(excluded.client_id, s.client_id),
            bearer_token_file = CASE WHEN excluded.client_id IS NULL THEN s.bearer_token_file END,
            token_endpoint = CASE WHEN coalesce(excluded.client_id, s.client_id) IS NOT DISTINCT FROM s.client_id
                                  THEN s.token_endpoint END,
            hpio = excluded.hpio, jurisdiction = excluded.jurisdiction, contact_email = excluded.contact_email,
            contact_phone = excluded.contact_phone, capability_statement_url = excluded.capability_statement_url,
            fallback = excluded.fallback, updated_at = now()
        WHERE s.status <> 'retired'
    RETURNING s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id,
              s.bearer_token_file, s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction,
              s.contact_email, s.contact_phone, s.capability_statement_url, s.fallback, (s.xmax = 0);
END $$;
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION directory_put(text, text, text, text, text, text, text, text, text, text, text, '
                   'text, text) SET search_path = %I, pg_temp', current_schema());
END $$;

-- Records and history --------------------------------------------------------------------------

ALTER TABLE records
    ADD COLUMN change text NOT NULL DEFAULT 'created'
        CHECK (change IN ('created', 'updated', 'registered', 'status-changed', 'moved')),
    ADD COLUMN actor_client text,
    ADD COLUMN actor_service text,
    ADD COLUMN actor_admin boolean NOT NULL DEFAULT false,
    ADD COLUMN reason text CHECK (length(reason) BETWEEN 1 AND 200),
    ADD COLUMN held boolean NOT NULL DEFAULT false,
    ADD COLUMN previous_service text;

-- Keyset order of one service's records (lifecycle commands walk them in IHI order); it also
-- serves every look-up by service, so the older single-column index goes.
CREATE INDEX records_service_ihi_idx ON records (service_id, ihi);
DROP INDEX records_service_idx;

ALTER TABLE record_history DROP CONSTRAINT record_history_change_check;
ALTER TABLE record_history
    ADD CONSTRAINT record_history_change_check
        CHECK (change IN ('created', 'updated', 'registered', 'status-changed', 'moved')),
    ADD COLUMN actor_client text,
    ADD COLUMN actor_service text,
    ADD COLUMN actor_admin boolean,
    ADD COLUMN reason text,
    ADD COLUMN previous_service text;

CREATE INDEX record_history_record_idx ON record_history (record_id, version);

-- Every version of a record is a history entry. Rows are matched on record_id (a move changes
-- service_id, part of the natural key, but never the record id).
CREATE OR REPLACE FUNCTION record_history_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                recorded_at, actor_client, actor_service, actor_admin, reason, previous_service)
    SELECT n.ihi, n.service_id, n.record_id, n.version, 'created', n.status, n.type, NULL, n.last_updated,
           n.actor_client, n.actor_service, n.actor_admin, n.reason, NULL
    FROM new_rows n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION record_history_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                recorded_at, actor_client, actor_service, actor_admin, reason, previous_service)
    SELECT n.ihi, n.service_id, n.record_id, n.version, n.change, n.status, n.type, o.status, n.last_updated,
           n.actor_client, n.actor_service, n.actor_admin, n.reason,
           CASE WHEN n.service_id <> o.service_id THEN o.service_id END
    FROM new_rows n JOIN old_rows o USING (record_id)
    WHERE n.version <> o.version;
    RETURN NULL;
END $$;

ALTER FUNCTION record_history_on_insert() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION record_history_on_update() SECURITY DEFINER SET search_path = pg_catalog, public;
-- Transition tables have no statistics: the planner guesses their size and, for a large statement
-- (a batch chunk, a lifecycle chunk of thousands of rows), joined new and old rows with a nested
-- loop: 5,000 rows took 3.4 s instead of milliseconds. The update triggers join them by hash.
ALTER FUNCTION record_history_on_update() SET enable_nestloop = off;

-- Write one record in one round trip (replaces the four-argument put_record of 0002/0005; called with
-- four arguments it is a write by no named actor, as before).
-- A write of `active` to an active record is a re-registration (outcome `registered`); a write that
-- changes status or type is `updated`; a repeated non-active write changes nothing (`unchanged`).
-- SQLSTATE IE001: the service is unknown or not routable (disabled, retired).
-- SQLSTATE IE003: the record holds an operator's decision and the writer is not the operator.
-- SQLSTATE IE004: the record's type does not match the service's kind.
DROP FUNCTION put_record(text, text, text, text);
CREATE FUNCTION put_record(p_ihi text, p_service_id text, p_status text, p_type text,
                           p_client text DEFAULT NULL, p_client_service text DEFAULT NULL,
                           p_admin boolean DEFAULT false, p_reason text DEFAULT NULL)
RETURNS TABLE (ihi text, service_id text, record_id uuid, status text, type text, version integer,
               last_updated timestamptz, outcome text)
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
    INSERT INTO records AS t (ihi, service_id, status, type, change, actor_client, actor_service, actor_admin,
                              reason, held)
    VALUES (p_ihi, p_service_id, p_status, p_type, 'created', p_client, p_client_service, p_admin, p_reason,
            p_admin AND p_status <> 'active')
    ON CONFLICT ON CONSTRAINT records_pkey DO NOTHING
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'created';
        RETURN;
    END IF;
    -- The usual case in one statement: a re-registration or a change the writer may make (the row
    -- lock it takes re-checks the condition against a concurrent writer's version).
    UPDATE records AS t SET
        status = p_status, type = p_type, version = t.version + 1, last_updated = now(),
        change = CASE WHEN t.status = 'active' AND p_status = 'active' THEN 'registered'
                      WHEN t.status <> p_status THEN 'status-changed' ELSE 'updated' END,
        actor_client = p_client, actor_service = p_client_service, actor_admin = p_admin, reason = p_reason,
        held = p_admin AND p_status <> 'active', previous_service = NULL
    WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id
      AND ((t.status, t.type) IS DISTINCT FROM (p_status, p_type) OR p_status = 'active')
      AND (NOT t.held OR p_admin)
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
                            CASE WHEN r.change = 'registered' THEN 'registered' ELSE 'updated' END;
        RETURN;
    END IF;
    SELECT t.* INTO r FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id;
    IF r.held AND NOT p_admin AND ((r.status, r.type) IS DISTINCT FROM (p_status, p_type) OR p_status = 'active') THEN
        RAISE EXCEPTION 'the operator set this record to % (%) at %; only the operator can change it',
            r.status, coalesce(r.reason, 'no reason given'), to_char(r.last_updated AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            USING ERRCODE = 'IE003';
    END IF;
    RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'unchanged';
END $$;

-- Idempotency keys (IETF httpapi Idempotency-Key) --------------------------------------------

-- The first answer to a write carrying a key, kept 24 hours: the same key from the same client
-- answers it again. Written in the write's own transaction, so an answer is kept exactly when the
-- write committed.
CREATE TABLE idempotency_keys (
    client_id   text        NOT NULL,
    key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,
    status      smallint    NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Resumable lifecycle jobs --------------------------------------------------------------------

-- One row per lifecycle command run (services retire, services move, records stale --archive,
-- federation publish backfill): its parameters and how far it got. A chunk's writes and its
-- progress commit together, so a run killed at any point resumes where the last chunk ended.
CREATE TABLE lifecycle_jobs (
    job_key     text        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('retire', 'move', 'stale', 'publish')),
    params      jsonb       NOT NULL DEFAULT '{}',
    cursor_ihi  char(16),
    processed   bigint      NOT NULL DEFAULT 0,
    total       bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL CHECK (state IN ('running', 'done')),
    runs        integer     NOT NULL DEFAULT 1,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Cohorts: FHIR Group of patients as a subscription filter ------------------------------------

CREATE TABLE groups (
    group_id     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id    text        NOT NULL REFERENCES clients (client_id),
    name         text,
    member_count integer     NOT NULL DEFAULT 0,
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX groups_owner_idx ON groups (client_id);

CREATE TABLE group_members (
    group_id uuid     NOT NULL REFERENCES groups (group_id),
    ihi      char(16) NOT NULL CHECK (ihi ~ '^800360[0-9]{10}$'),
    PRIMARY KEY (group_id, ihi)
);
-- Matching a registration to the groups that hold its patient.
CREATE INDEX group_members_ihi_idx ON group_members (ihi, group_id);

ALTER TABLE subscriptions ADD COLUMN filter_group uuid REFERENCES groups (group_id);
CREATE INDEX subscriptions_group_idx ON subscriptions (filter_group)
    WHERE filter_group IS NOT NULL AND deleted_at IS NULL AND status <> 'off';
-- A group subscription has no single patient, but it is not an every-patient subscription either.
DROP INDEX subscriptions_any_patient_idx;
CREATE INDEX subscriptions_any_patient_idx ON subscriptions (subscription_id)
    WHERE filter_ihi IS NULL AND filter_group IS NULL AND deleted_at IS NULL AND status <> 'off';

-- Subscription events: the change the record carries, cohorts, and the routing rule --------

-- A wake-up (NOTIFY) was sent for the subscription's work and no worker has claimed it since: the
-- registrations that follow need not send another (ADR 0020).
ALTER TABLE subscriptions ADD COLUMN wake_sent boolean NOT NULL DEFAULT false;

ALTER TABLE subscription_events DROP CONSTRAINT subscription_events_change_check;
ALTER TABLE subscription_events
    ADD CONSTRAINT subscription_events_change_check
        CHECK (change IN ('created', 'updated', 'registered', 'status-changed', 'moved'));

DROP TRIGGER records_subscription_events_insert ON records;
DROP TRIGGER records_subscription_events_update ON records;
DROP FUNCTION subscription_events_on_insert();
DROP FUNCTION subscription_events_on_update();
DROP FUNCTION enqueue_subscription_events(records[], text);

-- Match changed records (each carrying its change) against the live subscriptions: by patient, by
-- cohort (the groups holding the patient) and those without a patient filter; number and insert
-- their events. p_rows is sorted by (ihi, service_id), so numbering is deterministic.
-- The delivery workers are woken (NOTIFY) once per claim: a registration notifies only when one
-- of its subscriptions has had no wake-up since a worker last claimed it (`wake_sent`, cleared by
-- the claim). PostgreSQL serialises the commits of notifying transactions (a global lock from
-- pre-commit to the end of the commit), so a NOTIFY per event capped the rate of registrations of
-- subscribed patients at one commit at a time (ADR 0020).
CREATE FUNCTION enqueue_subscription_events(p_rows records[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_subs uuid[];
    v_rows integer[];
    v_wake boolean;
    v_unannounced uuid[];
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
        FROM unnest(p_rows) WITH ORDINALITY AS c
        JOIN group_members gm ON gm.ihi = c.ihi
        JOIN subscriptions s ON s.filter_group = gm.group_id
        WHERE s.filter_group IS NOT NULL AND s.deleted_at IS NULL AND s.status <> 'off'
          AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
          AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
        UNION ALL
        SELECT s.subscription_id, c.ordinality::integer
        FROM subscriptions s
        CROSS JOIN unnest(p_rows) WITH ORDINALITY AS c
        WHERE s.filter_ihi IS NULL AND s.filter_group IS NULL AND s.deleted_at IS NULL AND s.status <> 'off'
          AND (s.filter_services IS NULL OR c.service_id = ANY (s.filter_services))
          AND (s.filter_statuses IS NULL OR c.status = ANY (s.filter_statuses))
    ) m;
    IF v_subs IS NULL THEN
        RETURN;
    END IF;
    -- Lock in one order (concurrent registrations queue here instead of deadlocking); note the
    -- subscriptions whose work no wake-up has announced since their last claim.
    SELECT array_agg(l.subscription_id) FILTER (WHERE NOT l.wake_sent) INTO v_unannounced
    FROM (SELECT subscription_id, wake_sent FROM subscriptions WHERE subscription_id = ANY (v_subs)
          ORDER BY subscription_id FOR UPDATE) l;
    v_wake := v_unannounced IS NOT NULL;
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
    -- Wake the delivery workers once the registration commits (NOTIFY is transactional).
    IF v_wake THEN
        PERFORM pg_notify('ief_subscription_events', '');
    END IF;
END $$;

-- New records, and every new version of a record, are events; a record of a service that is not
-- routed is notified only when the change takes it out of routing (archived or removed).
CREATE FUNCTION subscription_events_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows records[];
BEGIN
    -- With no live subscription, a registration pays for this one index probe only.
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off') THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(n ORDER BY n.ihi, n.service_id) INTO v_rows
    FROM new_rows n JOIN services s ON s.service_id = n.service_id
    WHERE routable_service(s.status) OR n.status <> 'active';
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION subscription_events_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_rows records[];
    v_nestloop text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscriptions WHERE deleted_at IS NULL AND status <> 'off') THEN
        RETURN NULL;
    END IF;
    -- The transition tables joined by hash (see record_history_on_update), for this statement only:
    -- the matching that follows plans with the session's settings.
    v_nestloop := current_setting('enable_nestloop');
    PERFORM set_config('enable_nestloop', 'off', true);
    SELECT array_agg(n ORDER BY n.ihi, n.service_id) INTO v_rows
    FROM new_rows n JOIN old_rows o USING (record_id) JOIN services s ON s.service_id = n.service_id
    WHERE n.version <> o.version AND (routable_service(s.status) OR n.status <> 'active');
    PERFORM set_config('enable_nestloop', v_nestloop, true);
    IF v_rows IS NOT NULL THEN
        PERFORM enqueue_subscription_events(v_rows);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER records_subscription_events_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscription_events_on_insert();
CREATE TRIGGER records_subscription_events_update AFTER UPDATE ON records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION subscription_events_on_update();

-- Upstream publication (federation without hand-written referrals) ---------------------------

-- A registry this one publishes to: it keeps there a `registry` record naming this registry for
-- every IHI that has an active `record` here. The publisher polls (no NOTIFY: it would serialise
-- the commits of registrations). The outbox holds the IHIs whose state may have
-- changed; the publisher sends each one's current state, in order, and remembers what it sent.
CREATE TABLE publications (
    target          text        PRIMARY KEY REFERENCES services (service_id),
    enabled         boolean     NOT NULL DEFAULT true,
    lease_owner     text,
    lease_until     timestamptz,
    next_attempt_at timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    sent            bigint      NOT NULL DEFAULT 0,
    last_error      text,
    last_error_at   timestamptz,
    last_success_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE publication_outbox (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target      text        NOT NULL REFERENCES publications (target),
    ihi         char(16)    NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publication_outbox_target_idx ON publication_outbox (target, seq);

CREATE TABLE published (
    target text     NOT NULL REFERENCES publications (target),
    ihi    char(16) NOT NULL,
    status text     NOT NULL CHECK (status IN ('active', 'archived')),
    PRIMARY KEY (target, ihi)
);

CREATE FUNCTION publication_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM publications WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO publication_outbox (target, ihi)
    SELECT p.target, d.ihi
    FROM publications p
    CROSS JOIN (SELECT DISTINCT n.ihi FROM new_rows n WHERE n.status = 'active' AND n.type = 'record') d
    WHERE p.enabled
    ORDER BY d.ihi;
    RETURN NULL;
END $$;

CREATE FUNCTION publication_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM publications WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO publication_outbox (target, ihi)
    SELECT p.target, d.ihi
    FROM publications p
    CROSS JOIN (
        SELECT DISTINCT n.ihi FROM new_rows n JOIN old_rows o USING (record_id)
        WHERE (n.status = 'active' AND n.type = 'record') IS DISTINCT FROM (o.status = 'active' AND o.type = 'record')
    ) d
    WHERE p.enabled
    ORDER BY d.ihi;
    RETURN NULL;
END $$;

ALTER FUNCTION publication_on_update() SET enable_nestloop = off;

CREATE TRIGGER records_publication_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION publication_on_insert();
CREATE TRIGGER records_publication_update AFTER UPDATE ON records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION publication_on_update();

-- The server's role (migrations 0007 and 0008, docs/deployment.md), when there is one: what a server
-- process does with the new tables, and the functions it calls (the triggers' functions run as the
-- writer and call enqueue_subscription_events and routable_service). It writes the directory through
-- directory_put() only. Functions are granted by name, as 0008 does: a grant on every function of the
-- schema would give back what 0008 took away (making and dropping audit partitions). Without the role
-- (one role does everything), nothing to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ief_server') THEN
        RETURN;
    END IF;
    GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO ief_server;
    GRANT SELECT, INSERT, UPDATE ON lifecycle_jobs, groups, publications, published TO ief_server;
    GRANT SELECT, INSERT, DELETE ON group_members, publication_outbox TO ief_server;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ief_server;
    GRANT EXECUTE ON FUNCTION routable_service(text), put_record(text, text, text, text, text, text, boolean, text),
        directory_put(text, text, text, text, text, text, text, text, text, text, text, text, text),
        enqueue_subscription_events(records[]) TO ief_server;
END $$;
