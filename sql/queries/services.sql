-- name: add_service
-- Add a member service, or change an existing one (the operator's `services add` is idempotent).
-- $6/$7: how this instance authenticates to it (client ID it gave us, or a bearer token file); $8 the
-- token endpoint the operator chose for it (NULL: the one it announces on its own origin).
INSERT INTO services AS s (service_id, kind, name, base_url, search_style, status, client_id, bearer_token_file,
                           token_endpoint)
VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $7, $8)
ON CONFLICT (service_id) DO UPDATE
    SET kind = excluded.kind, name = excluded.name, base_url = excluded.base_url,
        search_style = excluded.search_style, status = 'enabled', client_id = excluded.client_id,
        bearer_token_file = excluded.bearer_token_file, token_endpoint = excluded.token_endpoint, updated_at = now()
RETURNING s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file, s.token_endpoint,
          s.created_at, s.updated_at, (xmax = 0) AS created;

-- name: list_services
-- Every member service, optionally only those with one status.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file, s.token_endpoint,
       s.created_at, s.updated_at
FROM services s
WHERE ($1::text IS NULL OR s.status = $1)
ORDER BY s.name, s.service_id;

-- name: get_service
-- One member service.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file, s.token_endpoint,
       s.created_at, s.updated_at
FROM services s
WHERE s.service_id = $1;

-- name: get_services
-- The member services among the given IDs (federation: the registries a look-up is referred to).
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file, s.token_endpoint,
       s.created_at, s.updated_at
FROM services s
WHERE s.service_id = ANY($1::text[]);

-- name: set_service_status
-- Enable or disable a member service.
UPDATE services SET status = $2, updated_at = now()
WHERE service_id = $1
RETURNING service_id, kind, name, base_url, search_style, status, client_id, bearer_token_file, token_endpoint,
          created_at, updated_at;

-- name: search_services
-- FHIR Endpoint search. $1 service IDs, $2 statuses and $3 ILIKE patterns on the name (any may
-- match): arrays, NULL for any. Paged by (name, service_id); `total` counts every match.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file, s.token_endpoint,
       s.created_at, s.updated_at,
       count(*) OVER () AS total
FROM services s
WHERE ($1::text[] IS NULL OR s.service_id = ANY($1::text[]))
  AND ($2::text[] IS NULL OR s.status = ANY($2::text[]))
  AND ($3::text[] IS NULL OR s.name ILIKE ANY($3::text[]))
ORDER BY s.name, s.service_id
LIMIT $4 OFFSET $5;
