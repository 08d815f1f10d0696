-- name: insert_consent
-- A new Consent ($1 id, $2 IHI, $3 status, $4 resource, $5 compiled rules, $6 actor); the trigger of
-- 0011_privacy.sql keeps its history and the patient's compact policy, and announces the change.
INSERT INTO consents (consent_id, ihi, status, resource, rules, actor)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)
RETURNING consent_id, ihi::text AS ihi, status, resource::text AS resource, version, last_updated;

-- name: update_consent
-- A new version of a Consent ($1), unless $7 names another version than the stored one (then no row).
UPDATE consents SET status = $2, resource = $3::jsonb, rules = $4::jsonb, actor = $5, version = version + 1,
                    last_updated = now()
WHERE consent_id = $1 AND ($6::integer IS NULL OR version = $6)
RETURNING consent_id, ihi::text AS ihi, status, resource::text AS resource, version, last_updated;

-- name: lock_consent
-- One Consent, locked until the transaction ends (an update checks it first).
SELECT consent_id, ihi::text AS ihi, status, resource::text AS resource, version, last_updated
FROM consents WHERE consent_id = $1 FOR UPDATE;

-- name: get_consent
-- One Consent by id.
SELECT consent_id, ihi::text AS ihi, status, resource::text AS resource, version, last_updated
FROM consents WHERE consent_id = $1;

-- name: search_consents
-- Consents of the patients $1 (NULL: any), with the statuses $2 (NULL: any), oldest first; `total` counts all.
SELECT consent_id, ihi::text AS ihi, status, resource::text AS resource, version, last_updated,
       count(*) OVER () AS total
FROM consents
WHERE ($1::bpchar[] IS NULL OR ihi = ANY ($1::bpchar[]))
  AND ($2::text[] IS NULL OR status = ANY ($2::text[]))
ORDER BY ihi, created_at, consent_id
LIMIT $3 OFFSET $4;

-- name: patient_policy
-- A patient's compact privacy policy (no row: no active Consent).
SELECT policy::text AS policy FROM patient_policies WHERE ihi = $1::bpchar;

-- name: get_consent_version
-- One version of a Consent (FHIR vread): its history row, as that version was written.
SELECT consent_id, ihi::text AS ihi, status, resource::text AS resource, version, recorded_at AS last_updated
FROM consent_history WHERE consent_id = $1 AND version = $2;

-- name: get_consent_versions
-- The versions of one Consent (FHIR instance history), newest first; $2 `_since` (NULL: all). Paged;
-- `total` counts every match.
SELECT consent_id, ihi::text AS ihi, status, resource::text AS resource, version, recorded_at AS last_updated,
       count(*) OVER () AS total
FROM consent_history
WHERE consent_id = $1 AND ($2::timestamptz IS NULL OR recorded_at >= $2::timestamptz)
ORDER BY version DESC
LIMIT $3 OFFSET $4;
