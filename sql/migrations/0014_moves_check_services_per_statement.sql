-- An UPDATE that re-points records to another service checks that service once per statement.
--
-- Migration 0012 replaced the foreign key records.service_id -> services by a statement-level check
-- on inserts and a row-level trigger on UPDATE OF service_id (PostgreSQL allows no transition table
-- on a trigger with a column list). `services move` re-points every record of a service, so that
-- trigger ran once per record, each a PL/pgSQL call locking the same service row FOR KEY SHARE:
-- about a third of the move's time (docs/benchmarks.md, "Lifecycle commands"). A statement-level
-- trigger of its own would join the update's transition tables a second time on every update of
-- records, single re-registrations included. The history trigger already joins them, for every
-- update: it now also collects the services that changed rows were re-pointed to, and locks and
-- checks those once (FOR KEY SHARE, as the foreign key did; foreign_key_violation when one is not
-- in the directory, which the repositories translate). Rows re-pointed without a new version are
-- checked too: the check is over every changed row, not only those the history records.

-- The check itself, once, for both triggers that make it: 0012's on inserts (its body until now) and
-- the history trigger below on updates. It runs as the owner its SECURITY DEFINER callers run as.
CREATE FUNCTION lock_named_services(p_named text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    v_found integer;
BEGIN
    SELECT count(*) INTO v_found
    FROM (SELECT 1 FROM services s WHERE s.service_id = ANY (p_named) ORDER BY s.service_id FOR KEY SHARE) locked;
    IF v_found < cardinality(p_named) THEN
        RAISE EXCEPTION 'records name service %, which is not in the directory',
            (SELECT n FROM unnest(p_named) n WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = n) LIMIT 1)
            USING ERRCODE = 'foreign_key_violation', TABLE = 'records', COLUMN = 'service_id';
    END IF;
END $$;
REVOKE EXECUTE ON FUNCTION lock_named_services(text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION records_check_services() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    v_named text[];
BEGIN
    -- One pass over the new rows for the services they name (a batch names one or a few).
    SELECT array_agg(DISTINCT n.service_id) INTO v_named FROM new_rows n;
    IF v_named IS NOT NULL THEN
        PERFORM lock_named_services(v_named);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION record_history_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_named text[];
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.ihi, n.service_id, n.record_id, n.version, n.change, n.status, n.type, n.last_updated,
               n.actor_client, n.actor_service, n.actor_admin, n.reason, n.security_labels,
               o.status AS old_status, o.service_id AS old_service, o.version AS old_version
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
    )
    SELECT array_agg(DISTINCT c.service_id) FILTER (WHERE c.service_id <> c.old_service) INTO v_named FROM changed c;
    IF v_named IS NOT NULL THEN
        PERFORM lock_named_services(v_named);
    END IF;
    RETURN NULL;
END $$;

-- Restated, as 0011 does: history rows are written by the owner's trigger alone (the server's role has
-- no INSERT on record_history, and locking a service FOR KEY SHARE needs UPDATE on services, which it
-- must not hold), and the transition tables are joined by hash.
ALTER FUNCTION record_history_on_update() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION record_history_on_update() SET enable_nestloop = off;

DROP TRIGGER records_services_update ON records;
DROP FUNCTION records_check_service_row();
