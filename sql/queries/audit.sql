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

-- name: audit_ensure_months
-- Make the missing months from $1 through $2 (the function makes them consecutive; see 0008_audit_months.sql).
SELECT audit_ensure_months($1::date, $2::date);

-- name: audit_close_month
-- Close month $1 if it ended more than $2 seconds ago; whether it was closed now.
SELECT audit_close_month($1::date, $2::double precision);

-- name: audit_drop_month
-- Drop a pruned month's partitions (owner only; the function checks the export).
SELECT audit_drop_month($1::date);

-- name: audit_set_lock_timeout
-- How long the current transaction waits for a lock ($1, e.g. '5s').
SELECT set_config('lock_timeout', $1::text, true);

-- name: audit_months
-- Every month of the trail, oldest first, with its checkpoint when it has one.
SELECT m.month, m.starts, m.ends, m.closed_at, m.pruned_at,
       c.first_seq, c.last_seq, c.rows, c.prev_hash, c.head_hash, c.jws, c.created_at AS sealed_at
FROM audit_months m
LEFT JOIN audit_checkpoints c ON c.month = m.month
ORDER BY m.month;

-- name: audit_sealing_month
-- The oldest month without a checkpoint (the one being chained), and whether it may be closed now
-- (it ended more than $1 seconds ago).
SELECT m.month, m.starts, m.ends, m.closed_at IS NOT NULL AS closed,
       (m.closed_at IS NULL AND now() >= m.ends + make_interval(secs => $1::double precision)) AS closable
FROM audit_months m
WHERE NOT EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.month = m.month)
ORDER BY m.month
LIMIT 1;

-- name: audit_last_checkpoint
-- The newest checkpoint: where the chain stood when the last closed month was sealed.
SELECT month, last_seq, head_hash
FROM audit_checkpoints
ORDER BY month DESC
LIMIT 1;

-- name: audit_chain_head
-- The last chain entry, its month, and the chain position (xid, id) of its row: xid NULL when the
-- row is gone from its month. No row when the chain is empty.
SELECT c.seq, c.hash, c.month, c.audit_id, e.xid
FROM (SELECT * FROM audit_chain ORDER BY seq DESC LIMIT 1) c
JOIN audit_months m ON m.month = c.month
LEFT JOIN audit_events e ON e.id = c.audit_id AND e.recorded >= m.starts AND e.recorded < m.ends;

-- name: audit_sealable
-- Rows of the month [$1, $2) after the chain position ($3 xid, $4 id), in chain order. In a closed
-- month ($6) every one (all are committed and no more can come); in an open one only rows whose
-- transaction is older than every transaction still running: their order is final and no later row
-- can sort before them.
SELECT e.*
FROM audit_events e
WHERE e.recorded >= $1 AND e.recorded < $2
  AND (e.xid, e.id) > ($3::xid8, $4::bigint)
  AND ($6::boolean OR e.xid < pg_snapshot_xmin(pg_current_snapshot()))
ORDER BY e.xid, e.id
LIMIT $5;

-- name: audit_unsealed_exists
-- Whether any row lies after the chain position ($3 xid, $4 id) in the month [$1, $2), or in a later month.
SELECT EXISTS (SELECT 1 FROM audit_events e
               WHERE e.recorded >= $1 AND e.recorded < $2 AND (e.xid, e.id) > ($3::xid8, $4::bigint))
    OR EXISTS (SELECT 1 FROM audit_events e WHERE e.recorded >= $2);

-- name: append_audit_chain
-- Append chain entries of month $5: parallel arrays of seq, audit row id, previous hash and hash.
INSERT INTO audit_chain (seq, audit_id, prev_hash, hash, month)
SELECT u.seq, u.audit_id, u.prev_hash, u.hash, $5::date
FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS u(seq, audit_id, prev_hash, hash);

-- name: audit_month_rows
-- How many rows the month [$1, $2) holds.
SELECT count(*) FROM audit_events WHERE recorded >= $1 AND recorded < $2;

-- name: insert_audit_checkpoint
-- Store the signed checkpoint of month $1.
INSERT INTO audit_checkpoints (month, first_seq, last_seq, rows, prev_hash, head_hash, jws)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: audit_keys
-- Every audit key there has been (retired ones too: the checkpoints they signed are verified with them).
SELECT kid, private_pem FROM auth_keys WHERE purpose = 'audit' ORDER BY created_at;

-- name: audit_partitions_present
-- Which of the months $1 still have both partitions.
SELECT m.month
FROM unnest($1::date[]) AS m(month)
WHERE to_regclass(audit_partition_name('audit_events', m.month)) IS NOT NULL
  AND to_regclass(audit_partition_name('audit_chain', m.month)) IS NOT NULL;

-- name: audit_verify_walk
-- Every row of the month [$1, $2) ($3) in chain order, with its chain entry when it has one (audit verify).
SELECT e.*, c.seq, c.prev_hash, c.hash
FROM audit_events e
LEFT JOIN audit_chain c ON c.audit_id = e.id AND c.month = $3
WHERE e.recorded >= $1 AND e.recorded < $2
ORDER BY e.xid, e.id;

-- name: audit_export_walk
-- The chain entries of month $1 in order, each with its row in [$2, $3) (audit export).
SELECT e.*, c.seq, c.prev_hash, c.hash
FROM audit_chain c
JOIN audit_events e ON e.id = c.audit_id AND e.recorded >= $2 AND e.recorded < $3
WHERE c.month = $1
ORDER BY c.seq;

-- name: audit_chain_entry
-- One chain entry by sequence number, and whether its row is still in its month.
SELECT c.seq, c.audit_id,
       EXISTS (SELECT 1 FROM audit_events e JOIN audit_months m ON m.month = c.month
               WHERE e.id = c.audit_id AND e.recorded >= m.starts AND e.recorded < m.ends) AS present
FROM audit_chain c
WHERE c.seq = $1;

-- name: audit_chain_month_last_seq
-- The highest sequence number among month $1's chain entries (NULL when it has none).
SELECT max(seq) FROM audit_chain WHERE month = $1;

-- name: audit_chain_last_seq
-- The highest sequence number in the chain (0 when empty).
SELECT coalesce(max(seq), 0) FROM audit_chain;

-- name: insert_audit_export
-- Note a month's export, written and read back whole against its checkpoint.
INSERT INTO audit_exports (month, head_hash, events, location) VALUES ($1, $2, $3, $4);

-- name: audit_exports
-- Every verified export, oldest month first.
SELECT month, head_hash, events, location, verified_at FROM audit_exports ORDER BY month, id;

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
