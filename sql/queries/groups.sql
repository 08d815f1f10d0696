-- name: create_group
-- A new cohort of client $1 (name $2) with its members ($3, IHIs); returns the group.
WITH g AS (
    INSERT INTO groups (client_id, name, member_count) VALUES ($1, $2, cardinality($3::bpchar[]))
    RETURNING *
), m AS (
    INSERT INTO group_members (group_id, ihi) SELECT g.group_id, u.ihi FROM g, unnest($3::bpchar[]) AS u(ihi)
)
SELECT * FROM g;

-- name: lock_group
-- One cohort, locked until the transaction ends (its update replaces its members).
SELECT * FROM groups WHERE group_id = $1 FOR UPDATE;

-- name: get_group
-- One cohort.
SELECT * FROM groups WHERE group_id = $1;

-- name: replace_group
-- A cohort's new name ($2) and members ($3): the next event is matched against them.
WITH gone AS (
    DELETE FROM group_members WHERE group_id = $1
), g AS (
    UPDATE groups SET name = $2, member_count = cardinality($3::bpchar[]), version = version + 1, updated_at = now()
    WHERE group_id = $1
    RETURNING *
)
SELECT * FROM g;

-- name: insert_group_members
-- Members of a cohort whose old members this transaction removed.
INSERT INTO group_members (group_id, ihi) SELECT $1, u.ihi FROM unnest($2::bpchar[]) AS u(ihi);

-- name: group_members
-- A cohort's members, in IHI order.
SELECT ihi::text AS ihi FROM group_members WHERE group_id = $1 ORDER BY ihi;

-- name: group_owner
-- The client that owns a cohort (no row: no such group).
SELECT client_id FROM groups WHERE group_id = $1;
