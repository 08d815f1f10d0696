-- Authentication: the built-in issuer's signing keys, this instance's outbound key pair, the clients
-- allowed to get tokens, the client assertions already accepted (replay refusal), and how this
-- instance authenticates to member services.
--
-- Keys live here, not in a data directory, so that every server process and machine sharing the
-- database signs and verifies with the same keys (docs/adr/0006-authentication.md).

CREATE TABLE auth_keys (
    kid         text        PRIMARY KEY,
    purpose     text        NOT NULL CHECK (purpose IN ('issuer', 'outbound')),
    alg         text        NOT NULL,
    private_pem text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz,
    -- A retired key is published (and trusted) until every token it signed has expired.
    expires_at  timestamptz,
    CHECK ((retired_at IS NULL) = (expires_at IS NULL))
);

-- One active key per purpose: concurrent first starts create one key, not two.
CREATE UNIQUE INDEX auth_keys_one_active ON auth_keys (purpose) WHERE retired_at IS NULL;

CREATE TABLE clients (
    client_id      text        PRIMARY KEY,
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    service_id     text        NOT NULL,
    scopes         text[]      NOT NULL,
    auth_method    text        NOT NULL CHECK (auth_method IN ('private_key_jwt', 'client_secret', 'none')),
    jwks           jsonb,
    jwks_url       text        CHECK (jwks_url ~ '^https?://'),
    public_key_pem text,
    secret_hash    text,
    status         text        NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    rate_per_second double precision CHECK (rate_per_second > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK (
        (auth_method = 'private_key_jwt' AND num_nonnulls(jwks, jwks_url, public_key_pem) = 1 AND secret_hash IS NULL)
        OR (auth_method = 'client_secret' AND secret_hash IS NOT NULL AND num_nonnulls(jwks, jwks_url, public_key_pem) = 0)
        OR (auth_method = 'none' AND num_nonnulls(jwks, jwks_url, public_key_pem, secret_hash) = 0)
    )
);

-- The jti of every accepted client assertion, kept until the assertion expires: a second use of
-- the same jti fails on the primary key, whichever server process sees it.
CREATE TABLE client_assertions (
    client_id  text        NOT NULL,
    jti        text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX client_assertions_expiry_idx ON client_assertions (expires_at);

-- How this instance authenticates to a member service: the client ID that service gave us
-- (private_key_jwt with our outbound key), or a file holding a fixed bearer token.
ALTER TABLE services
    ADD COLUMN client_id text,
    ADD COLUMN bearer_token_file text,
    ADD CONSTRAINT services_one_credential CHECK (num_nonnulls(client_id, bearer_token_file) <= 1);
