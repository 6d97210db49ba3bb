-- Findings, the alert policy's bookkeeping and the policy tables (issue 7, items 1-3).
-- PostgreSQL flavour; ../sqlite/0004_findings_policy.sql has the same tables. Only the way `alerts`
-- loses its UNIQUE (agent_id, product, reason) differs: here the constraint is dropped (SQLite
-- rebuilds the table). Observation ids become nullable: sensor alerts have none.

-- One row per host x user x product x signal x subject (the MCP server for MCP configuration
-- observations, '' otherwise), updated inside the ingest transaction.
CREATE TABLE findings (
    id                    TEXT PRIMARY KEY,
    agent_id              TEXT NOT NULL REFERENCES agents (id),
    user_name             TEXT NOT NULL,
    product               TEXT NOT NULL,
    signal                TEXT NOT NULL,
    subject               TEXT NOT NULL,
    vendor                TEXT NOT NULL,
    category              TEXT NOT NULL,
    rule                  TEXT NOT NULL,
    first_seen_ms         BIGINT NOT NULL,
    last_seen_ms          BIGINT NOT NULL,
    count                 BIGINT NOT NULL,
    first_observation_id  TEXT NOT NULL,
    last_observation_id   TEXT NOT NULL,
    risk                  TEXT NOT NULL,
    plan                  TEXT,
    tenant                TEXT,
    UNIQUE (agent_id, user_name, product, signal, subject)
);
CREATE INDEX findings_by_last_seen ON findings (last_seen_ms, id);

ALTER TABLE alerts DROP CONSTRAINT alerts_agent_id_product_reason_key;
ALTER TABLE alerts ALTER COLUMN first_observation_id DROP NOT NULL;
ALTER TABLE alerts ALTER COLUMN last_observation_id DROP NOT NULL;

-- Why the alert fired, in words naming the catalog rule and the numbers (latest firing).
ALTER TABLE alerts ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
-- The suppression (policy_suppressions.id) in force when the alert last fired; NULL when none.
ALTER TABLE alerts ADD COLUMN suppressed_by TEXT;
-- Dedup: at most one alert per host x product x reason that is not resolved.
CREATE UNIQUE INDEX alerts_one_open ON alerts (agent_id, product, reason) WHERE status <> 'resolved';
CREATE INDEX alerts_by_agent ON alerts (agent_id, last_seen_ms);
CREATE INDEX alerts_suppressed ON alerts (suppressed_by) WHERE suppressed_by IS NOT NULL;

-- The first observations of each alert (bounded per alert by the store); the alert row keeps the
-- first and last observation ids as well. No foreign key to observations: retention expires them.
CREATE TABLE alert_observations (
    alert_id        TEXT NOT NULL REFERENCES alerts (id),
    observation_id  TEXT NOT NULL,
    PRIMARY KEY (alert_id, observation_id)
);

-- Policy. group_name, reason_id, product and agent_id use '' for "any".
CREATE TABLE policy_sanctions (
    id             TEXT PRIMARY KEY,
    product        TEXT NOT NULL,
    category       TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    note           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    UNIQUE (product, group_name)
);

CREATE TABLE policy_tenants (
    id             TEXT PRIMARY KEY,
    product        TEXT NOT NULL,
    tenant         TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    note           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    UNIQUE (product, tenant, group_name)
);

CREATE TABLE policy_overrides (
    id             TEXT PRIMARY KEY,
    reason_id      TEXT NOT NULL,
    product        TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    severity       TEXT NOT NULL,
    note           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    UNIQUE (reason_id, product, group_name)
);

CREATE TABLE policy_suppressions (
    id             TEXT PRIMARY KEY,
    reason_id      TEXT NOT NULL,
    product        TEXT NOT NULL,
    group_name     TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    owner          TEXT NOT NULL,
    note           TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    lifted_at_ms   BIGINT,
    lifted_by      TEXT
);
CREATE INDEX policy_suppressions_by_expiry ON policy_suppressions (expires_at_ms);

CREATE TABLE policy_settings (
    name           TEXT PRIMARY KEY,
    value          BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    updated_by     TEXT NOT NULL
);

-- Every policy change: who, when, from where, what, and the record before and after (JSON text).
-- Written only by store::policy::audit.
CREATE TABLE policy_changes (
    id           TEXT PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    source       TEXT NOT NULL,
    change_kind  TEXT NOT NULL,
    before_json  TEXT,
    after_json   TEXT
);
CREATE INDEX policy_changes_by_time ON policy_changes (at_ms, id);
