-- Triage: who acknowledged, assigned, resolved, escalated or commented on an alert, when and from
-- where. Same text for SQLite and PostgreSQL. `triage_events` is append-only: the store never
-- updates or deletes a row of it, and writes every row through one function (store/triage.rs) so
-- that the evidence chain can link each row as it is written.
ALTER TABLE alerts ADD COLUMN assignee TEXT;
ALTER TABLE alerts ADD COLUMN resolution TEXT;
ALTER TABLE alerts ADD COLUMN acknowledged_at_ms BIGINT;
ALTER TABLE alerts ADD COLUMN resolved_at_ms BIGINT;
ALTER TABLE alerts ADD COLUMN escalated_at_ms BIGINT;
ALTER TABLE alerts ADD COLUMN updated_at_ms BIGINT;

CREATE TABLE triage_events (
    id            TEXT PRIMARY KEY,
    alert_id      TEXT NOT NULL REFERENCES alerts (id),
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    -- What the action set: the assignee of `assign`, the resolution of `resolve`; '' otherwise.
    detail        TEXT NOT NULL DEFAULT '',
    note          TEXT NOT NULL DEFAULT '',
    from_address  TEXT NOT NULL,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX triage_events_by_alert ON triage_events (alert_id, at_ms);
CREATE INDEX triage_events_by_time ON triage_events (at_ms, id);

-- The alert queue's filters and the detail pages' lookups.
CREATE INDEX alerts_by_status_last_seen ON alerts (status, last_seen_ms);
CREATE INDEX alerts_by_agent_last_seen ON alerts (agent_id, last_seen_ms);
CREATE INDEX alerts_by_product_last_seen ON alerts (product, last_seen_ms);
CREATE INDEX observations_by_agent_product_time ON observations (agent_id, product, observed_at_ms);
-- covering: a product's plans and tenants are read from the index alone
CREATE INDEX observations_by_product_time ON observations (product, observed_at_ms, plan, tenant);
