-- name: insert_audit_events
-- Insert many audit rows in one statement (a group commit, or a write's own row). $1..$18 are
-- parallel arrays; $17 and $18 hold each row's patients and record ids joined by commas; $19..$22
-- purpose of use, practitioner, withheld count and break-glass.
INSERT INTO audit_events (recorded, request_id, peer_request_id, interaction, action, outcome, status, detail,
                          method, path, query, client_id, client_service, client_address, token_id, observer,
                          patients, records, purpose_of_use, practitioner, withheld, break_glass)
SELECT e.recorded, e.request_id, e.peer_request_id, e.interaction, e.action, e.outcome, e.status, e.detail,
       e.method, e.path, e.query, e.client_id, e.client_service, e.client_address, e.token_id, e.observer,
       string_to_array(e.patients, ','), string_to_array(e.records, ',')::uuid[], e.purpose_of_use, e.practitioner,
       e.withheld, e.break_glass
FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::smallint[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
            $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::integer[], $22::boolean[])
     AS e(recorded, request_id, peer_request_id, interaction, action, outcome, status, detail, method, path, query,
          client_id, client_service, client_address, token_id, observer, patients, records, purpose_of_use,
          practitioner, withheld, break_glass);

-- name: audit_seal_try_lock
-- One sealer at a time across processes; released when the sealing transaction ends.
SELECT pg_try_advisory_xact_lock($1::bigint);

-- name: audit_seal_lock
-- Wait for the sealer lock (the operator's `audit verify`).
SELECT pg_advisory_xact_lock($1::bigint);

-- name: audit_chain_head
-- The last chain entry and the chain position of its row (xid, id); no row when the chain is empty.
SELECT c.seq, c.hash, c.audit_id, e.xid
FROM audit_chain c
LEFT JOIN audit_events e ON e.id = c.audit_id
ORDER BY c.seq DESC
LIMIT 1;

-- name: audit_sealable
-- Rows after the chain position ($1 xid, $2 id) whose transaction is older than every transaction
-- still running: their order is final and no later row can sort before them. In chain order.
SELECT e.*
FROM audit_events e
WHERE (e.xid, e.id) > ($1::xid8, $2::bigint)
  AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.xid, e.id
LIMIT $3;

-- name: audit_unsealed_exists
-- Whether any row lies after the chain position ($1 xid, $2 id): sealable now or once its transaction ends.
SELECT EXISTS (SELECT 1 FROM audit_events e WHERE (e.xid, e.id) > ($1::xid8, $2::bigint));

-- name: append_audit_chain
-- Append chain entries: parallel arrays of seq, audit row id, previous hash and hash.
INSERT INTO audit_chain (seq, audit_id, prev_hash, hash)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]);

-- name: audit_verify_walk
-- Every row in chain order, with its chain entry when it has one (audit verify).
SELECT e.*, c.seq, c.prev_hash, c.hash
FROM audit_events e
LEFT JOIN audit_chain c ON c.audit_id = e.id
ORDER BY e.xid, e.id;

-- name: audit_chain_entry
-- One chain entry by sequence number, and whether its row is still in the table.
SELECT c.seq, c.audit_id, (e.id IS NOT NULL) AS present
FROM audit_chain c
LEFT JOIN audit_events e ON e.id = c.audit_id
WHERE c.seq = $1;

-- name: audit_chain_last_seq
-- The highest sequence number in the chain (0 when empty).
SELECT coalesce(max(seq), 0) FROM audit_chain;

-- name: search_audit_events
-- AuditEvent search without patient or agent: recorded in [$1, $2), before the keyset ($3, $4), newest first.
SELECT e.*
FROM audit_events e
WHERE e.recorded >= $1 AND e.recorded < $2
  AND (e.recorded, e.id) < ($3, $4)
ORDER BY e.recorded DESC, e.id DESC
LIMIT $5;

-- name: search_audit_events_by_agent
-- AuditEvent search by client ID ($6); otherwise as search_audit_events.
SELECT e.*
FROM audit_events e
WHERE e.client_id = $6
  AND e.recorded >= $1 AND e.recorded < $2
  AND (e.recorded, e.id) < ($3, $4)
ORDER BY e.recorded DESC, e.id DESC
LIMIT $5;

-- name: search_audit_events_by_patient
-- AuditEvent search by patient IHI ($6, through the GIN index) and optionally client ID ($7).
SELECT e.*
FROM audit_events e
WHERE e.patients @> ARRAY[$6::text]
  AND ($7::text IS NULL OR e.client_id = $7)
  AND e.recorded >= $1 AND e.recorded < $2
  AND (e.recorded, e.id) < ($3, $4)
ORDER BY e.recorded DESC, e.id DESC
LIMIT $5;

-- name: search_break_glass
-- Break-glass disclosures recorded since $1, oldest first (the privacy officer's review).
SELECT e.*
FROM audit_events e
WHERE e.break_glass AND e.recorded >= $1
ORDER BY e.recorded, e.id;

-- name: get_audit_event
-- One audit row by its AuditEvent id.
SELECT e.*
FROM audit_events e
WHERE e.event_id = $1;
