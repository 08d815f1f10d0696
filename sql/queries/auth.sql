-- name: live_keys
-- Every key still in use: active ones, and retired ones until the last token they signed expires.
SELECT kid, purpose, alg, private_pem, created_at, retired_at, expires_at
FROM auth_keys
WHERE expires_at IS NULL OR expires_at > now()
ORDER BY purpose, created_at DESC;

-- name: add_active_key
-- Add the first active key of a purpose; a concurrent first start that won the race keeps its key.
INSERT INTO auth_keys (kid, purpose, alg, private_pem)
VALUES ($1, $2, $3, $4)
ON CONFLICT DO NOTHING;

-- name: retire_active_key
-- Retire the active key of a purpose; it stays published for $2 more seconds.
UPDATE auth_keys SET retired_at = now(), expires_at = now() + make_interval(secs => $2)
WHERE purpose = $1 AND retired_at IS NULL;

-- name: add_client
-- Register a client.
INSERT INTO clients (client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem,
                     secret_hash, rate_per_second, clearances, break_glass, purposes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
          rate_per_second, created_at, updated_at, clearances, break_glass, purposes;

-- name: add_client_if_absent
-- Register a client under a fixed ID unless it exists (the built-in operator client).
INSERT INTO clients (client_id, name, service_id, scopes, auth_method)
VALUES ($1, $2, $3, $4, 'none')
ON CONFLICT (client_id) DO NOTHING;

-- name: get_client
-- One client.
SELECT client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
       rate_per_second, created_at, updated_at, clearances, break_glass, purposes
FROM clients
WHERE client_id = $1;

-- name: list_clients
-- Every client.
SELECT client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
       rate_per_second, created_at, updated_at, clearances, break_glass, purposes
FROM clients
ORDER BY name, client_id;

-- name: set_client_status
-- Enable or disable a client.
UPDATE clients SET status = $2, updated_at = now()
WHERE client_id = $1
RETURNING client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
          rate_per_second, created_at, updated_at, clearances, break_glass, purposes;

-- name: set_client_credentials
-- Replace a client's authentication method and material (rotation).
UPDATE clients SET auth_method = $2, jwks = $3, jwks_url = $4, public_key_pem = $5, secret_hash = $6,
                   updated_at = now()
WHERE client_id = $1
RETURNING client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
          rate_per_second, created_at, updated_at, clearances, break_glass, purposes;

-- name: set_client_privacy
-- Change what a client is cleared for, its break-glass permission and the purposes it may state
-- (NULL: unchanged).
UPDATE clients SET clearances = coalesce($2, clearances), break_glass = coalesce($3, break_glass),
                   purposes = coalesce($4, purposes), updated_at = now()
WHERE client_id = $1
RETURNING client_id, name, service_id, scopes, auth_method, jwks, jwks_url, public_key_pem, secret_hash, status,
          rate_per_second, created_at, updated_at, clearances, break_glass, purposes;

-- name: client_state
-- What the resource server re-checks about a client: enabled, its binding, scopes and rate.
SELECT status, service_id, scopes, rate_per_second, clearances, break_glass, purposes
FROM clients
WHERE client_id = $1;

-- name: accept_assertion
-- Record a client assertion's jti; no row back means it was used before (a replay).
INSERT INTO client_assertions (client_id, jti, expires_at)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING jti;

-- name: purge_assertions
-- Forget assertions that have expired (they would be refused for their exp anyway).
DELETE FROM client_assertions WHERE expires_at < now();
