-- The services directory: every gateway and registry a record may name.
CREATE TABLE services (
    service_id   text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('gateway', 'registry')),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    base_url     text        NOT NULL CHECK (base_url ~ '^https?://'),
    search_style text        NOT NULL DEFAULT 'ief' CHECK (search_style IN ('ief', 'harmony')),
    status       text        NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
