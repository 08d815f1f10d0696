-- Records name services in the directory: checked once per statement instead of once per row.
--
-- The foreign key records.service_id -> services ran PostgreSQL's referential-integrity trigger for
-- every inserted row (a lookup and a FOR KEY SHARE lock of the service row each): a quarter of a
-- 10,000-item batch's time (docs/benchmarks.md). The same rule as one statement-level trigger: after
-- every INSERT, and every UPDATE that sets service_id, the distinct services the new rows name are
-- locked FOR KEY SHARE (as the foreign key locked them, but once per service and statement) and any
-- row naming a service that is not in the directory fails the statement with foreign_key_violation
-- (23503), which the repositories already translate. Services are never deleted (the directory
-- disables and retires them) and their IDs never change: a trigger now refuses both, which is what
-- the foreign key's RESTRICT did for the services that had records.

ALTER TABLE records DROP CONSTRAINT records_service_id_fkey;

CREATE FUNCTION records_check_services() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named text[];
    v_found integer;
BEGIN
    -- One pass over the new rows for the services they name (a batch names one or a few).
    SELECT array_agg(DISTINCT n.service_id) INTO v_named FROM new_rows n;
    IF v_named IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO v_found
    FROM (SELECT 1 FROM services s WHERE s.service_id = ANY (v_named) ORDER BY s.service_id FOR KEY SHARE) locked;
    IF v_found < cardinality(v_named) THEN
        RAISE EXCEPTION 'records name service %, which is not in the directory',
            (SELECT n FROM unnest(v_named) n WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = n) LIMIT 1)
            USING ERRCODE = 'foreign_key_violation', TABLE = 'records', COLUMN = 'service_id';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER records_services_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION records_check_services();
-- Only an UPDATE that sets service_id can change which service a record names (a row-level trigger:
-- PostgreSQL allows no transition tables on a trigger with a column list, and such updates are rare).
CREATE FUNCTION records_check_service_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM services s WHERE s.service_id = NEW.service_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'records name service %, which is not in the directory', NEW.service_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'records', COLUMN = 'service_id';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER records_services_update AFTER UPDATE OF service_id ON records
    FOR EACH ROW WHEN (NEW.service_id IS DISTINCT FROM OLD.service_id) EXECUTE FUNCTION records_check_service_row();

CREATE FUNCTION services_keep_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.service_id IS DISTINCT FROM OLD.service_id THEN
        RAISE EXCEPTION 'services are disabled or retired, never deleted or renamed'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER services_keep_identity BEFORE UPDATE OF service_id OR DELETE ON services
    FOR EACH ROW EXECUTE FUNCTION services_keep_identity();
CREATE TRIGGER services_no_truncate BEFORE TRUNCATE ON services
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
