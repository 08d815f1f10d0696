-- name: put_record
-- Create or change one record idempotently; see put_record() in 0002_records.sql.
SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome
FROM put_record($1, $2, $3, $4);

-- name: put_record_audited
-- put_record() and the request's audit row in one statement: a single statement is its own
-- transaction, so one round trip commits both, or neither (BEGIN, write, audit insert and COMMIT
-- were four). $1..$4 as put_record. $5..$22 are the audit row once for each way the write can end
-- (parallel arrays as in insert_audit_events, records left empty) and $23 names those outcomes;
-- the row whose outcome happened is inserted, with the record's id.
WITH w AS MATERIALIZED (
    SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome
    FROM put_record($1, $2, $3, $4)
), audited AS (
    INSERT INTO audit_events (recorded, request_id, peer_request_id, interaction, action, outcome, status, detail,
                              method, path, query, client_id, client_service, client_address, token_id, observer,
                              patients, records)
    SELECT e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status, e.detail,
           e.method, e.path, e.query, e.client_id, e.client_service, e.client_address, e.token_id, e.observer,
           string_to_array(e.patients, ','), ARRAY[w.record_id]
    FROM w
    JOIN unnest($5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], $10::smallint[], $11::smallint[],
                $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[],
                $20::text[], $21::text[], $22::text[], $23::text[])
         AS e(recorded, request_id, peer_request_id, interaction, action, outcome, status, detail, method, path, query,
              client_id, client_service, client_address, token_id, observer, patients, records, ended)
      ON e.ended = w.outcome
)
SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome FROM w;

-- name: stage_batch
-- The staging table of one batch: COPY fills it, merge_batch applies it. Temporary and dropped at
-- commit, so it lives inside the batch's transaction only (safe behind a transaction-mode pooler).
CREATE TEMP TABLE batch_input (
    ord        integer NOT NULL,
    ihi        bpchar  NOT NULL,
    service_id text    NOT NULL,
    status     text    NOT NULL,
    type       text    NOT NULL
) ON COMMIT DROP;

-- name: merge_batch
-- Apply the staged batch in one statement: every item whose service is enabled is inserted, or
-- updated where its status or type differs (the same triggers as any write: history, subscription
-- events, the per-statement service check). Items are de-duplicated by (ihi, service_id) by the
-- caller and written in key order, so concurrent batches cannot deadlock. Returns the rows written:
-- version 1 is created, above 1 updated. Items not returned were unchanged or name a service that is
-- not enabled (batch_unwritten tells which). The plan needs no statistics of the staging table: a
-- scan of it, a hashed look-up of the enabled services, a sort.
INSERT INTO records AS t (ihi, service_id, status, type)
SELECT i.ihi, i.service_id, i.status, i.type
FROM batch_input i
WHERE i.service_id IN (SELECT s.service_id FROM services s WHERE s.status = 'enabled')
ORDER BY i.ihi, i.service_id
ON CONFLICT ON CONSTRAINT records_pkey DO UPDATE
    SET status = excluded.status, type = excluded.type, version = t.version + 1, last_updated = now()
    WHERE (t.status, t.type) IS DISTINCT FROM (excluded.status, excluded.type)
RETURNING t.ihi::text AS ihi, t.service_id, t.record_id, t.status, t.type, t.version, t.last_updated;

-- name: batch_unwritten
-- The stored records of staged items merge_batch did not write ($1: their ords), where the service is
-- enabled: those items were unchanged. An item with no row here named a service that is not enabled.
SELECT i.ord, r.record_id, r.status, r.type, r.last_updated
FROM batch_input i
JOIN records r ON r.ihi = i.ihi AND r.service_id = i.service_id
JOIN services s ON s.service_id = r.service_id AND s.status = 'enabled'
WHERE i.ord = ANY($1::int[]);

-- name: get_records
-- Records of one IHI with the given statuses, with the directory entry of each service (kind,
-- name, base URL, search style: what a consumer or a peer registry needs to reach a service it
-- does not know).
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       s.kind AS service_kind, s.name AS service_name, s.base_url AS service_base_url,
       s.search_style AS service_search_style
FROM records r
JOIN services s ON s.service_id = r.service_id
WHERE r.ihi = $1 AND r.status = ANY($2::text[])
ORDER BY r.service_id;

-- name: get_records_audited
-- get_records and the request's audit row in one statement: one round trip and one commit, where a
-- look-up and its row written by the group writer take two round trips (the read's, then the group
-- insert's). Used for a look-up that arrives while the audit trail is idle (docs/adr/0030). $1, $2
-- as get_records; $3..$20 the audit row as insert_audit_events takes it (one-element arrays, records
-- left empty): the row gets the ids of the records the look-up returns, in answer order.
WITH found AS MATERIALIZED (
    SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
           s.kind AS service_kind, s.name AS service_name, s.base_url AS service_base_url,
           s.search_style AS service_search_style
    FROM records r
    JOIN services s ON s.service_id = r.service_id
    WHERE r.ihi = $1 AND r.status = ANY($2::text[])
), audited AS (
    INSERT INTO audit_events (recorded, request_id, peer_request_id, interaction, action, outcome, status, detail,
                              method, path, query, client_id, client_service, client_address, token_id, observer,
                              patients, records)
    SELECT e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status, e.detail,
           e.method, e.path, e.query, e.client_id, e.client_service, e.client_address, e.token_id, e.observer,
           string_to_array(e.patients, ','), ARRAY(SELECT f.record_id FROM found f ORDER BY f.service_id)
    FROM unnest($3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::smallint[], $9::smallint[],
                $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                $17::text[], $18::text[], $19::text[], $20::text[])
         AS e(recorded, request_id, peer_request_id, interaction, action, outcome, status, detail, method, path, query,
              client_id, client_service, client_address, token_id, observer, patients, records)
)
SELECT * FROM found ORDER BY service_id;

-- name: get_history
-- Every change of every record of one IHI, oldest first.
SELECT h.service_id, h.status, h.type, h.change, h.previous_status, h.recorded_at
FROM record_history h
WHERE h.ihi = $1
ORDER BY h.id;

-- name: get_record_by_id
-- One record by its resource id (the FHIR Basic id).
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated
FROM records r
WHERE r.record_id = $1;

-- name: get_record_by_key
-- One record by its natural key.
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated
FROM records r
WHERE r.ihi = $1 AND r.service_id = $2;

-- name: get_record_for_update
-- One record by its natural key, locked until the transaction ends (a write that checks a version).
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated
FROM records r
WHERE r.ihi = $1 AND r.service_id = $2
FOR UPDATE;

-- name: search_records
-- FHIR search over records. $1 IHIs, $2 service IDs, $3 record ids: each an array, NULL for any;
-- $4 the statuses wanted. Paged by (ihi, service_id); `total` counts every match.
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       count(*) OVER () AS total
FROM records r
WHERE ($1::bpchar[] IS NULL OR r.ihi = ANY($1::bpchar[]))
  AND ($2::text[] IS NULL OR r.service_id = ANY($2::text[]))
  AND ($3::uuid[] IS NULL OR r.record_id = ANY($3::uuid[]))
  AND r.status = ANY($4::text[])
ORDER BY r.ihi, r.service_id
LIMIT $5 OFFSET $6;
