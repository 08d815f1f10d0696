-- put_record() looked records up with `t.ihi = p_ihi`, comparing the char(16) column with a text
-- argument. PostgreSQL resolves that as text = text, casting the column, so the primary key could
-- not be used: every single write that was not an insert scanned the whole table. Comparing as
-- bpchar keeps the index in play (IHIs are exactly 16 digits, so the comparison means the same).
CREATE OR REPLACE FUNCTION put_record(p_ihi text, p_service_id text, p_status text, p_type text)
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
    WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id
      AND (t.status, t.type) IS DISTINCT FROM (p_status, p_type)
    RETURNING t.* INTO r;
    IF FOUND THEN
        RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'updated';
        RETURN;
    END IF;
    SELECT t.* INTO r FROM records t WHERE t.ihi = p_ihi::bpchar AND t.service_id = p_service_id;
    RETURN QUERY SELECT r.ihi::text, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated, 'unchanged';
END $$;
