-- name: add_service
-- Add a member service, or change an existing one (the operator's `services add` is idempotent).
-- $6/$7: how this instance authenticates to it (client ID it gave us, or a bearer token file); $15 the
-- token endpoint the operator chose for it (NULL: the one it announces on its own origin).
-- $8: enabled or disabled. $9..$14: the organisation (HPI-O, jurisdiction, contact email and phone,
-- capability statement URL, fallback). A retired service stays retired (the caller refuses it first).
INSERT INTO services AS s (service_id, kind, name, base_url, search_style, status, client_id, bearer_token_file,
                           hpio, jurisdiction, contact_email, contact_phone, capability_statement_url, fallback,
                           token_endpoint)
VALUES ($1, $2, $3, $4, $5, $8, $6, $7, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (service_id) DO UPDATE
    SET kind = excluded.kind, name = excluded.name, base_url = excluded.base_url,
        search_style = excluded.search_style,
        status = CASE WHEN s.status = 'retired' THEN 'retired' ELSE excluded.status END,
        client_id = excluded.client_id, bearer_token_file = excluded.bearer_token_file,
        token_endpoint = excluded.token_endpoint, hpio = excluded.hpio,
        jurisdiction = excluded.jurisdiction, contact_email = excluded.contact_email,
        contact_phone = excluded.contact_phone, capability_statement_url = excluded.capability_statement_url,
        fallback = excluded.fallback, updated_at = now()
RETURNING s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file,
          s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction, s.contact_email, s.contact_phone,
          s.capability_statement_url, s.fallback, (xmax = 0) AS created;

-- name: put_service_entry
-- Add or change a service from the FHIR API: directory_put() of 0009_lifecycle.sql, which keeps the
-- credentials only the owner sets. $1..$5 as add_service, $6 enabled or disabled, $7 the client ID (NULL:
-- kept), $8..$13 the organisation. No row: the service is retired.
SELECT * FROM directory_put($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13);

-- name: list_services
-- Every member service, optionally only those with one status.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file,
       s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction, s.contact_email, s.contact_phone,
       s.capability_statement_url, s.fallback
FROM services s
WHERE ($1::text IS NULL OR s.status = $1)
ORDER BY s.name, s.service_id;

-- name: get_service
-- One member service.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file,
       s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction, s.contact_email, s.contact_phone,
       s.capability_statement_url, s.fallback
FROM services s
WHERE s.service_id = $1;

-- name: get_services
-- The member services among the given IDs (federation: the registries a look-up is referred to).
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file,
       s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction, s.contact_email, s.contact_phone,
       s.capability_statement_url, s.fallback
FROM services s
WHERE s.service_id = ANY($1::text[]);

-- name: set_service_status
-- Enable, disable or retire a member service (a retired one stays retired: no row is answered for it).
UPDATE services SET status = $2, updated_at = now()
WHERE service_id = $1 AND (status <> 'retired' OR $2 = 'retired')
RETURNING service_id, kind, name, base_url, search_style, status, client_id, bearer_token_file, token_endpoint,
          created_at, updated_at, hpio, jurisdiction, contact_email, contact_phone, capability_statement_url, fallback;

-- name: search_services
-- FHIR Endpoint (and Organization) search. $1 service IDs, $2 statuses and $3 ILIKE patterns on the
-- name (any may match), $4 HPI-Os: arrays, NULL for any. Paged by (name, service_id); `total`
-- counts every match.
SELECT s.service_id, s.kind, s.name, s.base_url, s.search_style, s.status, s.client_id, s.bearer_token_file,
       s.token_endpoint, s.created_at, s.updated_at, s.hpio, s.jurisdiction, s.contact_email, s.contact_phone,
       s.capability_statement_url, s.fallback,
       count(*) OVER () AS total
FROM services s
WHERE ($1::text[] IS NULL OR s.service_id = ANY($1::text[]))
  AND ($2::text[] IS NULL OR s.status = ANY($2::text[]))
  AND ($3::text[] IS NULL OR s.name ILIKE ANY($3::text[]))
  AND ($4::text[] IS NULL OR s.hpio = ANY($4::text[]))
ORDER BY s.name, s.service_id
LIMIT $5 OFFSET $6;
