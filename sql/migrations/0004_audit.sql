-- The audit trail: one row per patient-linked request (an AuditEvent), and the hash chain over it.
--
-- Both tables are insert-only for everyone, the owner included: triggers refuse UPDATE, DELETE and
-- TRUNCATE (refuse_change() from 0002). Rows are inserted freely by concurrent transactions; the
-- sealer appends them to audit_chain later, in (xid, id) order, once every transaction that could
-- still insert a row before them has ended (see docs/adr/0007-audit.md).

CREATE TABLE audit_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    -- The inserting transaction: fixes the row's place in the chain (rows are sealed in (xid, id) order).
    xid             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded        timestamptz NOT NULL,
    request_id      text        NOT NULL,
    peer_request_id text,
    interaction     text        NOT NULL,
    action          text        NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    outcome         smallint    NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    status          smallint    NOT NULL CHECK (status BETWEEN 100 AND 599),
    detail          text,
    method          text        NOT NULL,
    path            text        NOT NULL,
    query           text        NOT NULL DEFAULT '',
    client_id       text,
    client_service  text,
    client_address  text,
    token_id        text,
    observer        text        NOT NULL,
    patients        text[]      NOT NULL DEFAULT '{}',
    records         uuid[]      NOT NULL DEFAULT '{}'
);

-- Search: newest first by recorded time (keyset on (recorded, id)), by client, by patient.
CREATE INDEX audit_events_recorded_idx ON audit_events (recorded, id);
CREATE INDEX audit_events_client_idx ON audit_events (client_id, recorded, id);
CREATE INDEX audit_events_patients_idx ON audit_events USING gin (patients);
CREATE INDEX audit_events_request_idx ON audit_events (request_id);
-- The sealer walks rows in chain order.
CREATE INDEX audit_events_chain_order_idx ON audit_events (xid, id);

CREATE TABLE audit_chain (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    audit_id  bigint NOT NULL UNIQUE REFERENCES audit_events (id),
    prev_hash bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea  NOT NULL CHECK (length(hash) = 32)
);

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
