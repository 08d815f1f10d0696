-- The audit trail by month: audit_events and audit_chain become declarative partitions, one per UTC month
-- (docs/adr/0018-audit-months.md).
--
-- A month's rows are chained after every row of the month before: the sealer chains the oldest month
-- that has no checkpoint yet, and moves on only once that month is closed (a trigger on its partition
-- refuses rows from then on), every row of it is chained, and its signed checkpoint is stored. So the
-- months of the chain are consecutive stretches of it, each can be exported and verified on its own,
-- and the oldest can be dropped without breaking what remains.
--
-- A trail that already has rows keeps them where they are: its tables become the partitions of one
-- period that runs from the beginning up to the end of the month this migration runs in (named by
-- that month), and its chain goes on unchanged. An empty trail starts with plain months.
--
-- Partitions are made ahead of time by the server processes and workers (audit_ensure_months), and
-- months are closed by the sealer (audit_close_month). Both are SECURITY DEFINER functions owned by the
-- role that runs this migration, so a server role that owns nothing can call them. Dropping a month
-- (audit_drop_month) is for the owner only, and only after a verified export.

-- Months: the partitions of both tables, in order. A month's state only moves forward (see the trigger).
CREATE TABLE audit_months (
    month     date        PRIMARY KEY CHECK (month = date_trunc('month', month)::date),
    -- '-infinity' for the period that holds the trail kept from before this migration.
    starts    timestamptz NOT NULL,
    ends      timestamptz NOT NULL CHECK (ends > starts),
    -- No more rows can arrive: a trigger on the month's partition refuses them.
    closed_at timestamptz,
    -- The month's partitions were dropped, after a verified export.
    pruned_at timestamptz CHECK (pruned_at IS NULL OR closed_at IS NOT NULL)
);

CREATE FUNCTION audit_months_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE'
       OR NEW.month <> OLD.month OR NEW.starts <> OLD.starts OR NEW.ends <> OLD.ends
       OR (OLD.closed_at IS NOT NULL AND NEW.closed_at IS DISTINCT FROM OLD.closed_at)
       OR (OLD.pruned_at IS NOT NULL AND NEW.pruned_at IS DISTINCT FROM OLD.pruned_at) THEN
        RAISE EXCEPTION '% on audit_months is not allowed: a month is only ever closed, then pruned', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER audit_months_forward_only BEFORE UPDATE OR DELETE ON audit_months
    FOR EACH ROW EXECUTE FUNCTION audit_months_forward_only();
CREATE TRIGGER audit_months_no_truncate BEFORE TRUNCATE ON audit_months
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The sealed checkpoint of each closed month: the chain's stretch for that month, signed (a compact JWS
-- with the instance's audit key). Kept for ever, also after the month is pruned.
CREATE TABLE audit_checkpoints (
    month      date        PRIMARY KEY REFERENCES audit_months (month),
    first_seq  bigint      NOT NULL CHECK (first_seq >= 1),
    last_seq   bigint      NOT NULL,
    rows       bigint      NOT NULL CHECK (rows >= 0 AND rows = last_seq - first_seq + 1),
    prev_hash  bytea       NOT NULL CHECK (length(prev_hash) = 32),
    head_hash  bytea       NOT NULL CHECK (length(head_hash) = 32),
    jws        text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Exports written and read back whole against their checkpoint (`ief-registry audit export`).
CREATE TABLE audit_exports (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    month       date        NOT NULL REFERENCES audit_months (month),
    head_hash   bytea       NOT NULL CHECK (length(head_hash) = 32),
    events      bigint      NOT NULL CHECK (events >= 0),
    location    text        NOT NULL,
    verified_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only for every role: row triggers refuse UPDATE and DELETE (on a partitioned table they are
-- cloned onto every partition, present and future), a statement trigger refuses TRUNCATE (statement
-- triggers are not cloned: audit_create_month adds one to each partition).
CREATE FUNCTION make_append_only(p_table text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION refuse_change()',
                   p_table || '_append_only', p_table);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()',
                   p_table || '_no_truncate', p_table);
END $$;

SELECT make_append_only('audit_checkpoints'), make_append_only('audit_exports');

-- Checkpoints are signed with a key of their own purpose.
ALTER TABLE auth_keys DROP CONSTRAINT auth_keys_purpose_check;
ALTER TABLE auth_keys ADD CONSTRAINT auth_keys_purpose_check CHECK (purpose IN ('issuer', 'outbound', 'audit'));

-- The trail's tables until now: renamed out of the way, then either attached as the first period or dropped.
ALTER TABLE audit_events RENAME TO audit_events_before_months;
ALTER TABLE audit_chain RENAME TO audit_chain_before_months;

-- The partitioned tables: columns, defaults, identity and CHECK constraints as before (the
-- constraint names too: attaching the old table as a partition matches them by name), and the
-- chain's month, its partition key. Unique keys are per partition (id, event_id; seq, audit_id):
-- a unique index across partitions would have to include the partition key.
CREATE TABLE audit_events (LIKE audit_events_before_months INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (recorded);
CREATE TABLE audit_chain (
    LIKE audit_chain_before_months INCLUDING CONSTRAINTS,
    -- The month (audit_months.month) of the entry's row.
    month date NOT NULL
) PARTITION BY RANGE (month);
SELECT make_append_only('audit_events'), make_append_only('audit_chain');

CREATE FUNCTION audit_partition_name(p_table text, p_month date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT p_table || to_char(p_month, '"_y"YYYY"m"MM') $$;

-- A month's two partitions, made empty and then attached: CREATE TABLE … PARTITION OF would take an
-- ACCESS EXCLUSIVE lock on the parent and wait for (and hold up) every open transaction that writes
-- audit rows; ATTACH PARTITION takes SHARE UPDATE EXCLUSIVE, which inserts and searches do not
-- conflict with. The parent's indexes and row triggers come with the attachment.
CREATE FUNCTION audit_create_month(p_month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    events text := audit_partition_name('audit_events', p_month);
    chain  text := audit_partition_name('audit_chain', p_month);
    starts timestamptz := p_month::timestamp AT TIME ZONE 'UTC';
    ends   timestamptz := (p_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', events);
    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', events, starts, ends);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (id)', events);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (event_id)', events);
    EXECUTE format('CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()', events);
    EXECUTE format('CREATE TABLE %I (LIKE audit_chain INCLUDING CONSTRAINTS)', chain);
    EXECUTE format('ALTER TABLE audit_chain ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   chain, p_month, (p_month + interval '1 month')::date);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (seq)', chain);
    EXECUTE format('CREATE UNIQUE INDEX ON %I (audit_id)', chain);
    EXECUTE format('CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()', chain);
    INSERT INTO audit_months (month, starts, ends) VALUES (p_month, starts, ends);
END $$;
REVOKE EXECUTE ON FUNCTION audit_create_month(date) FROM PUBLIC;

-- Make every month from p_from through p_through that is missing, so months stay consecutive: after
-- the last one there is, and before the first one only while nothing is chained or closed yet (the chain's
-- order is then still free). Returns how many were made. Servers call it for this month and the
-- next ones; it refuses to reach more than a year ahead.
CREATE FUNCTION audit_ensure_months(p_from date, p_through date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET lock_timeout = '2s' AS $$
DECLARE
    first_month date;
    last_month  date;
    first_start timestamptz;
    m           date;
    made        integer := 0;
BEGIN
    p_from := date_trunc('month', p_from)::date;
    p_through := date_trunc('month', p_through)::date;
    IF p_through > date_trunc('month', now() AT TIME ZONE 'UTC') + interval '12 months' THEN
        RAISE EXCEPTION 'audit months are made at most twelve months ahead (asked for %)', p_through
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(x'1EF0A0E'::bigint);
    SELECT min(month), max(month) INTO first_month, last_month FROM audit_months;
    IF first_month IS NULL THEN
        m := p_from;
    ELSE
        SELECT starts INTO first_start FROM audit_months WHERE month = first_month;
        IF p_from < first_month AND isfinite(first_start) AND NOT EXISTS (SELECT 1 FROM audit_chain)
           AND NOT EXISTS (SELECT 1 FROM audit_months WHERE closed_at IS NOT NULL) THEN
            m := p_from;
            WHILE m < first_month LOOP
                PERFORM audit_create_month(m);
                made := made + 1;
                m := (m + interval '1 month')::date;
            END LOOP;
        END IF;
        m := (last_month + interval '1 month')::date;
    END IF;
    WHILE m <= p_through LOOP
        PERFORM audit_create_month(m);
        made := made + 1;
        m := (m + interval '1 month')::date;
    END LOOP;
    RETURN made;
END $$;

CREATE FUNCTION audit_refuse_closed_month() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit month of % is closed: its rows are chained and checkpointed', NEW.recorded
        USING ERRCODE = 'IE002';
END $$;

-- Close a month once it has ended and p_grace_seconds have passed (rows are timed by the servers'
-- clocks, just before they are inserted): from then on its partition refuses rows. Creating the
-- trigger waits for every open transaction that inserted into the partition, so once this commits
-- every row of the month is committed and their order is final. Months close in order. Returns
-- whether it closed the month now.
CREATE FUNCTION audit_close_month(p_month date, p_grace_seconds double precision) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET lock_timeout = '2s' AS $$
DECLARE
    m audit_months%ROWTYPE;
BEGIN
    SELECT * INTO m FROM audit_months WHERE month = p_month FOR UPDATE;
    IF NOT FOUND OR m.closed_at IS NOT NULL OR now() < m.ends + make_interval(secs => greatest(p_grace_seconds, 0))
       OR EXISTS (SELECT 1 FROM audit_months WHERE month < p_month AND closed_at IS NULL) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TRIGGER audit_events_closed BEFORE INSERT ON %I '
                   'FOR EACH ROW EXECUTE FUNCTION audit_refuse_closed_month()',
                   audit_partition_name('audit_events', p_month));
    UPDATE audit_months SET closed_at = now() WHERE month = p_month;
    RETURN true;
END $$;

-- Drop a month's partitions: only a closed month, the oldest one kept, whose checkpoint is stored and
-- which was exported and verified against it (`ief-registry audit prune`, with the owner's connection).
CREATE FUNCTION audit_drop_month(p_month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m audit_months%ROWTYPE;
BEGIN
    SELECT * INTO m FROM audit_months WHERE month = p_month FOR UPDATE;
    IF NOT FOUND OR m.closed_at IS NULL OR m.pruned_at IS NOT NULL THEN
        RAISE EXCEPTION 'audit month % is not a closed month that is still kept', p_month
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM audit_months WHERE month < p_month AND pruned_at IS NULL) THEN
        RAISE EXCEPTION 'audit months are pruned oldest first: an earlier month than % is kept', p_month
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit_checkpoints c JOIN audit_exports x ON x.month = c.month
                   AND x.head_hash = c.head_hash WHERE c.month = p_month) THEN
        RAISE EXCEPTION 'audit month % has no verified export of its checkpoint: it is kept', p_month
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('DROP TABLE %I', audit_partition_name('audit_chain', p_month));
    EXECUTE format('DROP TABLE %I', audit_partition_name('audit_events', p_month));
    UPDATE audit_months SET pruned_at = now() WHERE month = p_month;
END $$;
REVOKE EXECUTE ON FUNCTION audit_drop_month(date) FROM PUBLIC;

-- The functions that make, close and drop partitions find the trail's tables in this schema only
-- (temporary tables last): a caller's search_path cannot point them at tables of its own.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['audit_create_month(date)', 'audit_ensure_months(date, date)',
                             'audit_close_month(date, double precision)', 'audit_drop_month(date)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END $$;

DO $$
DECLARE
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    ends       timestamptz := (this_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    last_id    bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM audit_events_before_months) AND NOT EXISTS (SELECT 1 FROM audit_chain_before_months) THEN
        DROP TABLE audit_chain_before_months;
        DROP TABLE audit_events_before_months;
        -- Last month too: rows timed just before this month began (a clock a little behind) have a place.
        PERFORM audit_ensure_months((this_month - interval '1 month')::date, (this_month + interval '2 months')::date);
        RETURN;
    END IF;
    -- The trail so far becomes one period, from the beginning to the end of this month, named by this month.
    SELECT max(id) INTO last_id FROM audit_events_before_months;
    ALTER TABLE audit_events_before_months ALTER COLUMN id DROP IDENTITY;
    -- The parent's row triggers are cloned onto it; the old table's own would clash with them.
    DROP TRIGGER audit_events_append_only ON audit_events_before_months;
    DROP TRIGGER audit_chain_append_only ON audit_chain_before_months;
    -- The hash chain, not a foreign key, ties entries to rows (a key across partitions would need the month).
    ALTER TABLE audit_chain_before_months DROP CONSTRAINT audit_chain_audit_id_fkey;
    EXECUTE format('ALTER TABLE audit_chain_before_months ADD COLUMN month date NOT NULL DEFAULT %L', this_month);
    ALTER TABLE audit_chain_before_months ALTER COLUMN month DROP DEFAULT;
    EXECUTE format('ALTER TABLE audit_events_before_months RENAME TO %I', audit_partition_name('audit_events', this_month));
    EXECUTE format('ALTER TABLE audit_chain_before_months RENAME TO %I', audit_partition_name('audit_chain', this_month));
    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                   audit_partition_name('audit_events', this_month), ends);
    EXECUTE format('ALTER TABLE audit_chain ATTACH PARTITION %I FOR VALUES FROM (MINVALUE) TO (%L)',
                   audit_partition_name('audit_chain', this_month), (this_month + interval '1 month')::date);
    INSERT INTO audit_months (month, starts, ends) VALUES (this_month, '-infinity', ends);
    PERFORM setval(pg_get_serial_sequence('audit_events', 'id'), greatest(last_id, 1), last_id IS NOT NULL);
    PERFORM audit_ensure_months(this_month, (this_month + interval '2 months')::date);
END $$;

-- Indexes on the parents reach every partition. On the period kept from before, equal indexes that
-- exist already (search, chain order) are attached rather than built again.
-- Search: newest first by recorded time (keyset on (recorded, id)), by client, by patient.
CREATE INDEX audit_events_recorded ON audit_events (recorded, id);
CREATE INDEX audit_events_client ON audit_events (client_id, recorded, id);
CREATE INDEX audit_events_patients ON audit_events USING gin (patients);
CREATE INDEX audit_events_request ON audit_events (request_id);
-- The sealer walks each month's rows in chain order.
CREATE INDEX audit_events_chain_order ON audit_events (xid, id);

-- The server's role (migration 0007; docs/deployment.md, "Database roles"): the new parents and tables
-- get the grants the old tables had, and what the sealer and GET /audit/checkpoints need. Partitions
-- are read and written through their parents, whose privileges are the ones checked, so the months
-- audit_ensure_months makes later (as the owner) need no grants of their own. The server makes and
-- closes months only through the SECURITY DEFINER functions: it may call those two, never the ones
-- that create or drop partitions directly. Without the role (one role does everything), nothing to do.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ief_server') THEN
        RETURN;
    END IF;
    GRANT SELECT, INSERT ON audit_events, audit_chain TO ief_server;
    GRANT SELECT ON audit_months, audit_exports TO ief_server;
    GRANT SELECT, INSERT ON audit_checkpoints TO ief_server;
    GRANT EXECUTE ON FUNCTION audit_ensure_months(date, date), audit_close_month(date, double precision),
        audit_partition_name(text, date) TO ief_server;
    REVOKE EXECUTE ON FUNCTION audit_create_month(date), audit_drop_month(date), make_append_only(text)
        FROM ief_server;
END $$;
