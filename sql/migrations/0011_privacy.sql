-- Privacy (DESIGN §12, docs/adr/0026-privacy-decision-point.md): Consent records and the compact
-- per-patient policy they compile to, security labels on records (and in their history), what a
-- client is cleared and permitted for, what the audit row says of purpose, practitioner and
-- withholding, the outbound key that signs IEF-Requester, and the patient-consent topic.

-- Clients: the security labels they are cleared for, whether they may break the glass (purpose
-- ETREAT overriding a patient's restrictions), and the purposes of use they may state (empty: any).
ALTER TABLE clients
    ADD COLUMN clearances text[] NOT NULL DEFAULT '{}',
    ADD COLUMN break_glass boolean NOT NULL DEFAULT false,
    ADD COLUMN purposes text[] NOT NULL DEFAULT '{}';

-- IEF-Requester assertions are signed by an outbound key of their own (ES256: one per gateway asked,
-- so it must be cheap), published in /.well-known/jwks.json like the others (the audit key of 0008 is not).
ALTER TABLE auth_keys DROP CONSTRAINT auth_keys_purpose_check;
ALTER TABLE auth_keys ADD CONSTRAINT auth_keys_purpose_check
    CHECK (purpose IN ('issuer', 'outbound', 'audit', 'requester'));

-- Security labels are part of the record and of its history.
ALTER TABLE records ADD COLUMN security_labels text[] NOT NULL DEFAULT '{}';
ALTER TABLE record_history ADD COLUMN security_labels text[] NOT NULL DEFAULT '{}';

-- The history triggers of 0009 (actor, change, reason, the previous service of a move; matched on
-- record_id), each entry now with the labels the record had at that version.
CREATE OR REPLACE FUNCTION record_history_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                recorded_at, actor_client, actor_service, actor_admin, reason, previous_service,
                                security_labels)
    SELECT n.ihi, n.service_id, n.record_id, n.version, 'created', n.status, n.type, NULL, n.last_updated,
           n.actor_client, n.actor_service, n.actor_admin, n.reason, NULL, n.security_labels
    FROM new_rows n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION record_history_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status,
                                recorded_at, actor_client, actor_service, actor_admin, reason, previous_service,
                                security_labels)
    SELECT n.ihi, n.service_id, n.record_id, n.version, n.change, n.status, n.type, o.status, n.last_updated,
           n.actor_client, n.actor_service, n.actor_admin, n.reason,
           CASE WHEN n.service_id <> o.service_id THEN o.service_id END, n.security_labels
    FROM new_rows n JOIN old_rows o USING (record_id)
    WHERE n.version <> o.version;
    RETURN NULL;
END $$;

-- Replacing a function keeps what 0007 and 0009 set on these only while the settings are restated:
-- history rows are written by the owner's triggers alone (the server's role has no INSERT on
-- record_history), so they run as the owner; the update trigger joins its transition tables by hash.
ALTER FUNCTION record_history_on_insert() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION record_history_on_update() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION record_history_on_update() SET enable_nestloop = off;

-- put_record() of 0009 (actor, reason, re-registrations, operator decisions, the routing rule, type
-- matches kind), taking the record's security labels as well: NULL keeps the stored ones (a writer
-- that does not speak of labels never clears them), an array replaces them; a change of labels is a
-- change (outcome `updated`, or `registered` for an active record written active again).
-- SQLSTATE IE001: the service is unknown or not routable (disabled, retired).
-- SQLSTATE IE003: the record holds an operator's decision and the writer is not the operator.
-- SQLSTATE IE004: the record's type does not match the service's kind.
DROP FUNCTION put_record(text, text, text, text, text, text, boolean, text);
CREATE FUNCTION put_record(p_ihi text, p_service_id text, p_status text, p_type text,
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
    INSERT INTO records AS t (ihi, service_id, status, type, change, actor_client, actor_service, actor_admin,
                              reason, held, security_labels)
    VALUES (p_ihi, p_service_id, p_status, p_type, 'created', p_client, p_client_service, p_admin, p_reason,
            p_admin AND p_status <> 'active', coalesce(p_labels, '{}'))
    ON CONFLICT ON CONSTRAINT records_pkey DO NOTHING
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
                            'created', r.security_labels;
        RETURN;
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

-- Consent records (FHIR Consent, IHE PCF shape), kept with every version, and the compact policy of
-- each patient: the compiled rules of their active Consents, kept by trigger in the same transaction
-- as the Consent write, read by every disclosure in the same query as the records it discloses.
CREATE TABLE consents (
    consent_id   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    ihi          char(16)    NOT NULL CHECK (ihi ~ '^800360[0-9]{10}$'),
    status       text        NOT NULL CHECK (status IN ('draft', 'proposed', 'active', 'rejected', 'inactive',
                                                        'entered-in-error')),
    resource     jsonb       NOT NULL,  -- the Consent as written (without id and meta)
    rules        jsonb       NOT NULL,  -- the Consent compiled (schemas.privacy.ConsentRules)
    version      integer     NOT NULL DEFAULT 1,
    actor        text        NOT NULL,  -- the client that made this version
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_updated timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX consents_ihi_idx ON consents (ihi, last_updated);

CREATE TABLE consent_history (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consent_id   uuid        NOT NULL,
    ihi          char(16)    NOT NULL,
    version      integer     NOT NULL,
    status       text        NOT NULL,
    resource     jsonb       NOT NULL,
    actor        text        NOT NULL,
    recorded_at  timestamptz NOT NULL
);

CREATE INDEX consent_history_consent_idx ON consent_history (consent_id, version);

CREATE TABLE patient_policies (
    ihi        char(16)    PRIMARY KEY,
    policy     jsonb       NOT NULL,  -- JSON array of ConsentRules, one per active Consent
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER consents_no_delete BEFORE DELETE ON consents FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consents_no_truncate BEFORE TRUNCATE ON consents FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consent_history_append_only BEFORE UPDATE OR DELETE ON consent_history
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER consent_history_no_truncate BEFORE TRUNCATE ON consent_history
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Every version of a Consent in its history; the patient's compact policy recomputed; the change
-- announced to every server process (NOTIFY is transactional: sent when the write commits) and to
-- the subscribers of the patient-consent topic (id-only events, numbered like any other).
CREATE FUNCTION consents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_policy jsonb;
BEGIN
    INSERT INTO consent_history (consent_id, ihi, version, status, resource, actor, recorded_at)
    VALUES (NEW.consent_id, NEW.ihi, NEW.version, NEW.status, NEW.resource, NEW.actor, NEW.last_updated);
    SELECT jsonb_agg(c.rules ORDER BY c.created_at, c.consent_id) INTO v_policy
    FROM consents c WHERE c.ihi = NEW.ihi AND c.status = 'active';
    IF v_policy IS NULL THEN
        DELETE FROM patient_policies WHERE ihi = NEW.ihi;
    ELSE
        INSERT INTO patient_policies AS p (ihi, policy) VALUES (NEW.ihi, v_policy)
        ON CONFLICT (ihi) DO UPDATE SET policy = excluded.policy, updated_at = now();
    END IF;
    PERFORM pg_notify('ief_consent_changes', NEW.ihi::text);
    PERFORM enqueue_consent_event(NEW.ihi, NEW.consent_id, CASE WHEN TG_OP = 'INSERT' THEN 'created' ELSE 'updated' END);
    RETURN NULL;
END $$;

-- The audit row says why and for whom (purpose of use, the requesting practitioner's HPI-I), how
-- many records were withheld, and whether anything was disclosed by break-glass. Added on the
-- partitioned parent (0008), they reach every month kept (closed ones too: a column with a constant
-- default rewrites nothing), and the months made ahead later copy the parent (audit_create_month:
-- LIKE audit_events), as does the index. Rows from before hash as they did: the chain's canonical
-- form takes these columns only for a row that says something of them (registry/audit/chain.py).
-- The CHECK is NOT VALID so that adding it does not read every kept row (each holds the default);
-- it holds for every row written from now on, in every month. The break-glass index is built once
-- over the kept months (small: only break-glass rows are in it).
ALTER TABLE audit_events
    ADD COLUMN purpose_of_use text,
    ADD COLUMN practitioner   text,
    ADD COLUMN withheld       integer NOT NULL DEFAULT 0,
    ADD COLUMN break_glass    boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT audit_events_withheld_check CHECK (withheld >= 0) NOT VALID;

CREATE INDEX audit_events_break_glass_idx ON audit_events (recorded, id) WHERE break_glass;

-- Subscriptions have a topic: patient-registration (the records) or patient-consent (a patient's
-- Consent changed: id-only, never the content). A consent event names the Consent, not a record.
ALTER TABLE subscriptions
    ADD COLUMN topic text NOT NULL DEFAULT 'patient-registration'
        CHECK (topic IN ('patient-registration', 'patient-consent'));

ALTER TABLE subscription_events
    ADD COLUMN consent_id uuid,
    ALTER COLUMN record_id DROP NOT NULL,
    ALTER COLUMN service_id DROP NOT NULL,
    ALTER COLUMN record_status DROP NOT NULL,
    ALTER COLUMN record_type DROP NOT NULL,
    ALTER COLUMN record_version DROP NOT NULL,
    ALTER COLUMN record_updated DROP NOT NULL,
    ADD CONSTRAINT subscription_events_focus CHECK ((record_id IS NULL) <> (consent_id IS NULL));

-- `withheld`: the decision point withheld the event from the subscriber (it is final, never sent).
ALTER TABLE subscription_events DROP CONSTRAINT subscription_events_state_check;
ALTER TABLE subscription_events ADD CONSTRAINT subscription_events_state_check
    CHECK (state IN ('pending', 'delivered', 'exhausted', 'cancelled', 'withheld'));

-- Registrations match patient-registration subscriptions only: enqueue_subscription_events() of 0009
-- (by patient, by cohort, every patient; one wake-up per claim) with the topic in each match.
CREATE OR REPLACE FUNCTION enqueue_subscription_events(p_rows records[]) RETURNS void
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
    IF v_subs IS NULL THEN
        RETURN;
    END IF;
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
    IF v_wake THEN
        PERFORM pg_notify('ief_subscription_events', '');
    END IF;
END $$;

-- One event for every live patient-consent subscription on the patient (or on every patient).
CREATE FUNCTION enqueue_consent_event(p_ihi char(16), p_consent uuid, p_change text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_subs uuid[];
BEGIN
    SELECT array_agg(s.subscription_id ORDER BY s.subscription_id) INTO v_subs
    FROM subscriptions s
    WHERE s.topic = 'patient-consent' AND s.deleted_at IS NULL AND s.status <> 'off'
      AND (s.filter_ihi = p_ihi OR (s.filter_ihi IS NULL AND s.filter_group IS NULL));
    IF v_subs IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM subscriptions WHERE subscription_id = ANY (v_subs) ORDER BY subscription_id FOR UPDATE;
    WITH bumped AS (
        UPDATE subscriptions s SET events_since_start = s.events_since_start + 1, wake_sent = true
        WHERE s.subscription_id = ANY (v_subs)
        RETURNING s.subscription_id, s.events_since_start AS number
    )
    INSERT INTO subscription_events (subscription_id, event_number, change, consent_id, ihi)
    SELECT b.subscription_id, b.number, p_change, p_consent, p_ihi FROM bumped b;
    PERFORM pg_notify('ief_subscription_events', '');
END $$;

CREATE TRIGGER consents_changed AFTER INSERT OR UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_changed();

-- A Consent's history and the patient's compact policy are written by that trigger alone, as the
-- owner (like record history since 0007): the server's role reads them and cannot forge or change them.
ALTER FUNCTION consents_changed() SECURITY DEFINER SET search_path = pg_catalog, public;

-- The server's role (migration 0007; docs/deployment.md, "Database roles"): what a server process
-- does with the new tables. It writes Consents (every version; never deletes one), reads their
-- history and the patients' policies, and calls put_record (made again above) as before. Columns
-- added to tables it already had (clients, records, record_history, subscriptions,
-- subscription_events, audit_events and every month of it) come with the grants of their table.
-- Without the role (one role does everything), nothing to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ief_server') THEN
        RETURN;
    END IF;
    GRANT SELECT, INSERT, UPDATE ON consents TO ief_server;
    GRANT SELECT ON consent_history, patient_policies TO ief_server;
    GRANT EXECUTE ON FUNCTION put_record(text, text, text, text, text, text, boolean, text, text[]) TO ief_server;
END $$;
