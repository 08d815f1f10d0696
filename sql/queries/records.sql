-- name: put_record
-- Create, re-register or change one record; see put_record() in 0011_privacy.sql. $5..$8: the
-- actor (client, its bound service, whether it acts as the operator) and the reason; $9: the
-- record's security labels, NULL to keep the stored ones.
SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome, security_labels
FROM put_record($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: put_record_audited
-- put_record() and the request's audit row in one statement: a single statement is its own
-- transaction, so one round trip commits both, or neither (BEGIN, write, audit insert and COMMIT
-- were four). $1..$9 as put_record. $10..$31 are the audit row once for each way the write can end
-- (parallel arrays as in insert_audit_events, records left empty) and $32 names those outcomes;
-- the row whose outcome happened is inserted, with the record's id.
WITH w AS MATERIALIZED (
    SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome, security_labels
    FROM put_record($1, $2, $3, $4, $5, $6, $7, $8, $9)
), audited AS (
    INSERT INTO audit_events (recorded, request_id, peer_request_id, interaction, action, outcome, status, detail,
                              method, path, query, client_id, client_service, client_address, token_id, observer,
                              patients, records, purpose_of_use, practitioner, withheld, break_glass)
    SELECT e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status, e.detail,
           e.method, e.path, e.query, e.client_id, e.client_service, e.client_address, e.token_id, e.observer,
           string_to_array(e.patients, ','), ARRAY[w.record_id], e.purpose_of_use, e.practitioner, e.withheld,
           e.break_glass
    FROM w
    JOIN unnest($10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::smallint[],
                $16::smallint[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[],
                $23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::text[],
                $30::integer[], $31::boolean[], $32::text[])
         AS e(recorded, request_id, peer_request_id, interaction, action, outcome, status, detail, method, path, query,
              client_id, client_service, client_address, token_id, observer, patients, records, purpose_of_use,
              practitioner, withheld, break_glass, ended)
      ON e.ended = w.outcome
)
SELECT ihi, service_id, record_id, status, type, version, last_updated, outcome, security_labels FROM w;

-- name: stage_batch
-- The staging table of one batch: COPY fills it, merge_batch applies it. Temporary and dropped at
-- commit, so it lives inside the batch's transaction only (safe behind a transaction-mode pooler).
-- labels: the item's security labels, NULL to keep the stored ones.
CREATE TEMP TABLE batch_input (
    ord        integer NOT NULL,
    ihi        bpchar  NOT NULL,
    service_id text    NOT NULL,
    status     text    NOT NULL,
    type       text    NOT NULL,
    reason     text,
    labels     text[]
) ON COMMIT DROP;

-- name: merge_batch
-- Apply the staged batch in one statement, with every rule of the single write (put_record() in
-- 0011_privacy.sql); $1..$3 the actor (client, its bound service, admin). An item is written when
-- its service is routable (routable_service()) and of the kind its type names; it is inserted, or
-- updated where it re-registers an active record (change `registered`), changes status, type or
-- security labels, and the record holds no operator's decision the actor may not change. An item
-- without labels keeps the stored ones (read by key only for such items; a new record has none).
-- The same triggers as any write follow: history and versions (each entry with its labels),
-- subscription events, publications, the per-statement service check. Items are de-duplicated by
-- (ihi, service_id) by the caller and written in key order, so concurrent batches cannot deadlock.
-- Returns the rows written: version 1 is created, change `registered` a re-registration, the rest
-- updated; batch_unwritten tells the others apart. The plan needs no statistics of the staging
-- table: a scan of it, a hashed look-up of the routable services, a sort.
INSERT INTO records AS t (ihi, service_id, status, type, change, actor_client, actor_service, actor_admin, reason,
                          held, security_labels)
SELECT i.ihi, i.service_id, i.status, i.type, 'created', $1, $2, $3, i.reason, $3 AND i.status <> 'active',
       coalesce(i.labels,
                (SELECT r.security_labels FROM records r WHERE r.ihi = i.ihi AND r.service_id = i.service_id), '{}')
FROM batch_input i
WHERE (i.service_id, i.type = 'registry') IN (
    SELECT s.service_id, s.kind = 'registry' FROM services s WHERE routable_service(s.status)
)
ORDER BY i.ihi, i.service_id
ON CONFLICT ON CONSTRAINT records_pkey DO UPDATE
    SET status = excluded.status, type = excluded.type, security_labels = excluded.security_labels,
        version = t.version + 1, last_updated = now(),
        change = CASE WHEN t.status = 'active' AND excluded.status = 'active' THEN 'registered'
                      WHEN t.status <> excluded.status THEN 'status-changed' ELSE 'updated' END,
        actor_client = excluded.actor_client, actor_service = excluded.actor_service,
        actor_admin = excluded.actor_admin, reason = excluded.reason, held = excluded.held,
        previous_service = NULL
    WHERE ((t.status, t.type, t.security_labels) IS DISTINCT FROM (excluded.status, excluded.type, excluded.security_labels)
           OR excluded.status = 'active')
      AND (NOT t.held OR excluded.actor_admin)
RETURNING t.ihi::text AS ihi, t.service_id, t.record_id, t.status, t.type, t.version, t.last_updated, t.change;

-- name: batch_unwritten
-- The staged items merge_batch did not write ($1: their ords; $2: the actor is the operator), each
-- with why: unknown-service (unknown or not routable), type-mismatch (the type does not match the
-- service's kind), held (an operator's decision the actor may not change; held_reason is the
-- operator's reason) or unchanged, with the record as stored.
SELECT i.ord, r.record_id, coalesce(r.status, i.status) AS status, coalesce(r.type, i.type) AS type, r.last_updated,
       CASE WHEN s.service_id IS NULL OR NOT routable_service(s.status) THEN 'unknown-service'
            WHEN (i.type = 'registry') <> (s.kind = 'registry') THEN 'type-mismatch'
            WHEN r.held AND NOT $2 AND ((r.status, r.type, r.security_labels)
                                        IS DISTINCT FROM (i.status, i.type, coalesce(i.labels, r.security_labels))
                                        OR i.status = 'active') THEN 'held'
            ELSE 'unchanged' END AS outcome,
       r.reason AS held_reason
FROM batch_input i
LEFT JOIN services s ON s.service_id = i.service_id
LEFT JOIN records r ON r.ihi = i.ihi AND r.service_id = i.service_id
WHERE i.ord = ANY($1::int[]);

-- name: get_records
-- Records of one IHI with the given statuses, with the directory entry of each service (kind,
-- name, base URL, search style, status: what a consumer or a peer registry needs to reach a
-- service it does not know), their security labels and the patient's compact privacy policy (NULL:
-- no Consent). $3: include records of services that are not routed (the routing rule,
-- routable_service(), leaves them out otherwise).
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       s.kind AS service_kind, s.name AS service_name, s.base_url AS service_base_url,
       s.search_style AS service_search_style, s.status AS service_status, r.security_labels, p.policy
FROM records r
JOIN services s ON s.service_id = r.service_id
LEFT JOIN patient_policies p ON p.ihi = r.ihi
WHERE r.ihi = $1 AND r.status = ANY($2::text[]) AND ($3 OR routable_service(s.status))
ORDER BY r.service_id;

-- name: unrouted_services
-- The services among $1 that the directory knows and does not route to (routable_service()).
SELECT service_id FROM services WHERE service_id = ANY($1::text[]) AND NOT routable_service(status);

-- name: get_records_audited
-- get_records and the request's audit row in one statement: one round trip and one commit, where a
-- look-up and its row written by the group writer take two round trips (the read's, then the group
-- insert's). Used for a look-up that arrives while the audit trail is idle (docs/adr/0031). $1..$3
-- as get_records; $4..$25 the audit row as insert_audit_events takes it (one-element arrays, records
-- left empty); $26 the security labels that need a clearance (schemas.privacy.CLEARANCE_LABELS).
-- The row is inserted only when the privacy decision point has nothing to decide: the patient has
-- no Consent and no record found carries such a label, so every record found is disclosed and the
-- row names them all, in answer order. Otherwise nothing is inserted (`audited` false): the caller
-- decides, then audits what it disclosed and withheld as any read does.
WITH found AS MATERIALIZED (
    SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
           s.kind AS service_kind, s.name AS service_name, s.base_url AS service_base_url,
           s.search_style AS service_search_style, s.status AS service_status, r.security_labels, p.policy
    FROM records r
    JOIN services s ON s.service_id = r.service_id
    LEFT JOIN patient_policies p ON p.ihi = r.ihi
    WHERE r.ihi = $1 AND r.status = ANY($2::text[]) AND ($3 OR routable_service(s.status))
), audited AS (
    INSERT INTO audit_events (recorded, request_id, peer_request_id, interaction, action, outcome, status, detail,
                              method, path, query, client_id, client_service, client_address, token_id, observer,
                              patients, records, purpose_of_use, practitioner, withheld, break_glass)
    SELECT e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status, e.detail,
           e.method, e.path, e.query, e.client_id, e.client_service, e.client_address, e.token_id, e.observer,
           string_to_array(e.patients, ','), ARRAY(SELECT f.record_id FROM found f ORDER BY f.service_id),
           e.purpose_of_use, e.practitioner, e.withheld, e.break_glass
    FROM unnest($4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[], $9::smallint[], $10::smallint[],
                $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::integer[],
                $25::boolean[])
         AS e(recorded, request_id, peer_request_id, interaction, action, outcome, status, detail, method, path, query,
              client_id, client_service, client_address, token_id, observer, patients, records, purpose_of_use,
              practitioner, withheld, break_glass)
    WHERE NOT EXISTS (SELECT FROM found f WHERE f.policy IS NOT NULL OR f.security_labels && $26::text[])
    RETURNING id
)
SELECT f.*, EXISTS (SELECT FROM audited) AS audited FROM found f ORDER BY f.service_id;

-- name: get_history
-- Every change of every record of one IHI, oldest first, with who made it, the record's security
-- labels at that version and the patient's privacy policy.
SELECT h.service_id, h.record_id, h.version, h.status, h.type, h.change, h.previous_status, h.recorded_at,
       h.actor_client, h.actor_service, h.actor_admin, h.reason, h.previous_service, h.security_labels, p.policy
FROM record_history h
LEFT JOIN patient_policies p ON p.ihi = h.ihi
WHERE h.ihi = $1
ORDER BY h.id;

-- name: get_record_by_id
-- One record by its resource id (the FHIR Basic id), with the patient's privacy policy.
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       r.security_labels, p.policy
FROM records r
LEFT JOIN patient_policies p ON p.ihi = r.ihi
WHERE r.record_id = $1;

-- name: get_record_by_key
-- One record by its natural key.
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       r.security_labels
FROM records r
WHERE r.ihi = $1 AND r.service_id = $2;

-- name: get_record_for_update
-- One record by its natural key, locked until the transaction ends (a write that checks a version).
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       r.security_labels
FROM records r
WHERE r.ihi = $1 AND r.service_id = $2
FOR UPDATE;

-- name: lock_record_key
-- Serialise the writes of one natural key that must find it absent (a conditional create), until the
-- transaction ends; the key may have no row to lock yet.
SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 16));

-- name: search_records
-- FHIR search over records. $1 IHIs, $2 service IDs, $3 record ids: each an array, NULL for any;
-- $4 the statuses wanted; $5 include records of services that are not routed (routable_service()).
-- Paged by (ihi, service_id); `total` counts every match. With each record its security labels and
-- its patient's privacy policy.
SELECT r.ihi::text AS ihi, r.service_id, r.record_id, r.status, r.type, r.version, r.last_updated,
       r.security_labels, p.policy, count(*) OVER () AS total
FROM records r
JOIN services s ON s.service_id = r.service_id
LEFT JOIN patient_policies p ON p.ihi = r.ihi
WHERE ($5 OR routable_service(s.status))
  AND ($1::bpchar[] IS NULL OR r.ihi = ANY($1::bpchar[]))
  AND ($2::text[] IS NULL OR r.service_id = ANY($2::text[]))
  AND ($3::uuid[] IS NULL OR r.record_id = ANY($3::uuid[]))
  AND r.status = ANY($4::text[])
ORDER BY r.ihi, r.service_id
LIMIT $6 OFFSET $7;

-- name: get_record_version
-- One version of a record (FHIR vread): its history row (with the labels it had then) and the
-- patient's privacy policy. Every change that made a version wrote one. History is indexed by
-- (ihi, record_id, version) (migration 0015): the record's patient is found first (it never changes).
SELECT h.ihi::text AS ihi, h.service_id, h.record_id, h.status, h.type, h.version, h.recorded_at AS last_updated, h.change,
       h.previous_status, h.recorded_at,
       h.actor_client, h.actor_service, h.actor_admin, h.reason, h.previous_service, h.security_labels, p.policy
FROM record_history h
LEFT JOIN patient_policies p ON p.ihi = h.ihi
WHERE h.ihi = (SELECT r.ihi FROM records r WHERE r.record_id = $1) AND h.record_id = $1 AND h.version = $2;

-- name: get_record_versions
-- The versions of one record (FHIR instance history), newest first; $2 `_since` (NULL: all).
-- Paged; `total` counts every match. With each version its labels and the patient's privacy policy.
-- Found through the record's patient, as get_record_version.
SELECT h.ihi::text AS ihi, h.service_id, h.record_id, h.status, h.type, h.version, h.recorded_at AS last_updated, h.change,
       h.previous_status, h.recorded_at,
       h.actor_client, h.actor_service, h.actor_admin, h.reason, h.previous_service, h.security_labels, p.policy,
       count(*) OVER () AS total
FROM record_history h
LEFT JOIN patient_policies p ON p.ihi = h.ihi
WHERE h.ihi = (SELECT r.ihi FROM records r WHERE r.record_id = $1) AND h.record_id = $1
  AND ($2::timestamptz IS NULL OR h.recorded_at >= $2::timestamptz)
ORDER BY h.id DESC
LIMIT $3 OFFSET $4;

-- name: get_records_versions
-- The versions of every record (FHIR type history), newest first: $1 service IDs (NULL: any),
-- $2 `_since` (NULL: all). Paged; `total` counts every match. With each version its labels and the
-- patient's privacy policy.
SELECT h.ihi::text AS ihi, h.service_id, h.record_id, h.status, h.type, h.version, h.recorded_at AS last_updated, h.change,
       h.previous_status, h.recorded_at,
       h.actor_client, h.actor_service, h.actor_admin, h.reason, h.previous_service, h.security_labels, p.policy,
       count(*) OVER () AS total
FROM record_history h
LEFT JOIN patient_policies p ON p.ihi = h.ihi
WHERE ($1::text[] IS NULL OR h.service_id = ANY($1::text[]))
  AND ($2::timestamptz IS NULL OR h.recorded_at >= $2::timestamptz)
ORDER BY h.id DESC
LIMIT $3 OFFSET $4;
