-- Hardening (issue 12).

-- A member's token endpoint chosen by the operator (`services add --token-endpoint`), for a service
-- whose tokens come from another origin than its own; NULL: the token endpoint it announces in its
-- SMART configuration, which must then be on its own origin.
ALTER TABLE services
    ADD COLUMN token_endpoint text CHECK (token_endpoint ~ '^https?://'),
    ADD CONSTRAINT services_token_endpoint_needs_client CHECK (token_endpoint IS NULL OR client_id IS NOT NULL);

-- The server's role (docs/deployment.md, ADR 0015). Schema objects belong to the role that runs
-- migrations (the owner); server processes log in as a member of the group role ief_server, which
-- owns nothing and holds only what a server process does: it cannot delete or truncate what the
-- triggers keep, alter a table (so it cannot disable a trigger), or write a history row itself.
-- Created here when the migrating role may create roles; else an operator creates it first
-- (CREATE ROLE ief_server NOLOGIN), and without it nothing is granted (one role does everything,
-- as before this migration) and a notice says so.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ief_server') THEN
        BEGIN
            CREATE ROLE ief_server NOLOGIN;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'role ief_server does not exist and cannot be created here: no grants made '
                         '(see docs/deployment.md, "Database roles")';
            RETURN;
        END;
    END IF;

    GRANT USAGE ON SCHEMA public TO ief_server;
    GRANT SELECT ON schema_migrations, services TO ief_server;
    GRANT SELECT, INSERT, UPDATE ON records TO ief_server;
    GRANT SELECT ON record_history TO ief_server;
    GRANT SELECT, INSERT ON auth_keys, clients, audit_events, audit_chain TO ief_server;
    GRANT SELECT, INSERT, DELETE ON client_assertions TO ief_server;
    GRANT SELECT, INSERT, UPDATE ON subscriptions TO ief_server;
    GRANT SELECT, INSERT, UPDATE, DELETE ON subscription_events TO ief_server;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ief_server;

    -- Functions: the server's, and from now on every function the migrating role defines (a later
    -- migration's SECURITY DEFINER maintenance functions included), never PUBLIC's.
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO ief_server;
    ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO ief_server;
END $$;

-- History rows are written by the triggers on records alone: they run as the owner, so the server's
-- role needs no INSERT on record_history (and cannot forge an entry).
ALTER FUNCTION record_history_on_insert() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION record_history_on_update() SECURITY DEFINER SET search_path = pg_catalog, public;
