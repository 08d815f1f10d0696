-- Hardening (issue 12).

-- A member's token endpoint chosen by the operator (`services add --token-endpoint`), for a service
-- whose tokens come from another origin than its own; NULL: the token endpoint it announces in its
-- SMART configuration, which must then be on its own origin.
ALTER TABLE services
    ADD COLUMN token_endpoint text CHECK (token_endpoint ~ '^https?://'),
    ADD CONSTRAINT services_token_endpoint_needs_client CHECK (token_endpoint IS NULL OR client_id IS NOT NULL);
