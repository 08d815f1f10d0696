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
--
-- The check runs as the owner (SECURITY DEFINER, as the history triggers since migration 0007): locking
-- a row FOR KEY SHARE needs UPDATE on its table, which the server's role does not hold on services, and
-- must not (the foreign key's own check ran as the table's owner too).

ALTER TABLE records DROP CONSTRAINT records_service_id_fkey;

CREATE FUNCTION records_check_services() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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
CREATE FUNCTION records_check_service_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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

-- The server's role (migration 0007; docs/deployment.md, "Database roles"): a batch stages its items in
-- a temporary table (sql/queries/records.sql, stage_batch), so the role may create temporary tables in
-- this database. PUBLIC may by default; a database set up as docs/deployment.md shows revokes that and
-- grants it to the login roles, which this repeats for the group. The functions above are executable
-- by ief_server through the default privileges of migration 0007; nothing else here is new to it.
-- Without the role (one role does everything), or where the migrating role may not grant on the
-- database, nothing to do (a notice says so).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ief_server') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO ief_server', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'TEMPORARY on database % not granted to ief_server: grant it to the server''s login role '
                 '(see docs/deployment.md, "Database roles")', current_database();
END $$;
