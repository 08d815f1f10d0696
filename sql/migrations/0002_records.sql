-- Registry records (IHI -> service ID) and their append-only history.
--
-- History is written by statement-level triggers, so every change made by any statement (single
-- upsert, batch, or an operator's SQL) is recorded in the same transaction. Records are never
-- deleted; a status change is the only way out.

CREATE TABLE records (
    ihi          char(16)    NOT NULL CHECK (ihi ~ '^800360[0-9]{10}$'),
    service_id   text        NOT NULL REFERENCES services (service_id),
    record_id    uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    status       text        NOT NULL CHECK (status IN ('active', 'removed', 'archived')),
    type         text        NOT NULL CHECK (type IN ('record', 'registry')),
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ihi, service_id)
);

CREATE INDEX records_service_idx ON records (service_id);

CREATE TABLE record_history (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ihi             char(16)    NOT NULL,
    service_id      text        NOT NULL,
    record_id       uuid        NOT NULL,
    version         integer     NOT NULL,
    change          text        NOT NULL CHECK (change IN ('created', 'updated')),
    status          text        NOT NULL,
    type            text        NOT NULL,
    previous_status text,
    recorded_at     timestamptz NOT NULL
);

CREATE INDEX record_history_ihi_idx ON record_history (ihi, id);

CREATE FUNCTION record_history_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status, recorded_at)
    SELECT n.ihi, n.service_id, n.record_id, n.version, 'created', n.status, n.type, NULL, n.last_updated
    FROM new_rows n;
    RETURN NULL;
END $$;

CREATE FUNCTION record_history_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_history (ihi, service_id, record_id, version, change, status, type, previous_status, recorded_at)
    SELECT n.ihi, n.service_id, n.record_id, n.version, 'updated', n.status, n.type, o.status, n.last_updated
    FROM new_rows n JOIN old_rows o USING (ihi, service_id)
    WHERE (n.status, n.type) IS DISTINCT FROM (o.status, o.type);
    RETURN NULL;
END $$;

CREATE TRIGGER records_history_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION record_history_on_insert();
CREATE TRIGGER records_history_update AFTER UPDATE ON records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION record_history_on_update();

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: rows are kept for ever', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER records_no_delete BEFORE DELETE ON records
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER record_history_append_only BEFORE UPDATE OR DELETE ON record_history
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER record_history_no_truncate BEFORE TRUNCATE ON record_history
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- Write one record idempotently in one round trip.
-- Returns the stored row and what happened: 'created', 'updated' or 'unchanged'.
-- Each statement of a volatile PL/pgSQL function takes a fresh snapshot, so a row inserted by a
-- concurrent transaction (which INSERT ... ON CONFLICT waited for) is seen by the UPDATE/SELECT.
-- SQLSTATE IE001 = the service is unknown or disabled.
CREATE FUNCTION put_record(p_ihi text, p_service_id text, p_status text, p_type text)
RETURNS TABLE (ihi text, service_id text, record_id uuid, status text, type text, version integer,
               last_updated timestamptz, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
    r records%ROWTYPE;
BEGIN
    PERFORM 1 FROM services s WHERE s.service_id = p_service_id AND s.status = 'enabled';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service % is not known or not enabled', p_service_id USING ERRCODE = 'IE001';
    END IF;
    INSERT INTO records AS t (ihi, service_id, status, type)
    VALUES (p_ihi, p_service_id, p_status, p_type)
    ON CONFLICT ON CONSTRAINT records_pkey DO NOTHING
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'created';
        RETURN;
    END IF;
    UPDATE records AS t SET status = p_status, type = p_type, version = t.version + 1, last_updated = now()
    WHERE t.ihi = p_ihi AND t.service_id = p_service_id AND (t.status, t.type) IS DISTINCT FROM (p_status, p_type)
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'updated';
        RETURN;
    END IF;
    SELECT t.* INTO r FROM records t WHERE t.ihi = p_ihi AND t.service_id = p_service_id;
    RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'unchanged';
END $$;
