-- shadowai evidence store, PostgreSQL flavour. Keep in step with ../sqlite/0001_foundation.sql:
-- the store runs the same SQL text on both, so names and types must match.
-- Times are Unix milliseconds (BIGINT); ids are UUID text; JSON is TEXT.

CREATE TABLE enrollment_tokens (
    id             TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    expires_at_ms  BIGINT,
    max_uses       BIGINT,
    uses           BIGINT NOT NULL DEFAULT 0,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    revoked_at_ms  BIGINT,
    revoked_by     TEXT
);

CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    group_name          TEXT NOT NULL,
    hostname            TEXT NOT NULL,
    os                  TEXT NOT NULL,
    os_version          TEXT NOT NULL,
    arch                TEXT NOT NULL,
    agent_version       TEXT NOT NULL,
    catalog_version     TEXT NOT NULL DEFAULT '',
    enrolled_at_ms      BIGINT NOT NULL,
    enrolled_from       TEXT NOT NULL,
    enrollment_token_id TEXT NOT NULL REFERENCES enrollment_tokens (id),
    last_contact_ms     BIGINT NOT NULL,
    health              TEXT NOT NULL DEFAULT '{}',
    revoked_at_ms       BIGINT,
    revoked_by          TEXT
);

CREATE TABLE agent_certificates (
    fingerprint    TEXT PRIMARY KEY,
    agent_id       TEXT NOT NULL REFERENCES agents (id),
    expires_at_ms  BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
CREATE INDEX agent_certificates_by_agent ON agent_certificates (agent_id);

CREATE TABLE observations (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL REFERENCES agents (id),
    observed_at_ms      BIGINT NOT NULL,
    received_at_ms      BIGINT NOT NULL,
    signal              TEXT NOT NULL,
    name                TEXT NOT NULL,
    product             TEXT NOT NULL,
    vendor              TEXT NOT NULL,
    category            TEXT NOT NULL,
    rule                TEXT NOT NULL,
    reason              TEXT NOT NULL,
    risk                TEXT NOT NULL,
    confidence          TEXT NOT NULL,
    plan                TEXT,
    catalog_version     TEXT NOT NULL,
    count               BIGINT NOT NULL,
    process_pid         BIGINT,
    process_parent_pid  BIGINT,
    process_name        TEXT,
    process_exe         TEXT,
    process_cmdline     TEXT,
    process_user        TEXT,
    details             TEXT NOT NULL,
    evidence            BYTEA NOT NULL
);
CREATE INDEX observations_by_agent_time ON observations (agent_id, observed_at_ms);
CREATE INDEX observations_by_time ON observations (observed_at_ms, id);

CREATE TABLE alerts (
    id                    TEXT PRIMARY KEY,
    agent_id              TEXT NOT NULL REFERENCES agents (id),
    product               TEXT NOT NULL,
    reason                TEXT NOT NULL,
    severity              TEXT NOT NULL,
    status                TEXT NOT NULL,
    title                 TEXT NOT NULL,
    vendor                TEXT NOT NULL,
    category              TEXT NOT NULL,
    rule                  TEXT NOT NULL,
    user_name             TEXT NOT NULL,
    process_pid           BIGINT,
    process_name          TEXT,
    process_exe           TEXT,
    process_cmdline       TEXT,
    first_seen_ms         BIGINT NOT NULL,
    last_seen_ms          BIGINT NOT NULL,
    count                 BIGINT NOT NULL,
    first_observation_id  TEXT NOT NULL,
    last_observation_id   TEXT NOT NULL,
    UNIQUE (agent_id, product, reason)
);
CREATE INDEX alerts_by_last_seen ON alerts (last_seen_ms, id);

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    disabled_at_ms  BIGINT
);

CREATE TABLE sessions (
    token_sha256   TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token     TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    role           TEXT NOT NULL,
    key_sha256     TEXT NOT NULL UNIQUE,
    created_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT,
    last_used_ms   BIGINT
);
