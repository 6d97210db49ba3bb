-- SIEM export and scheduled reports (issue 9). Same text on SQLite and PostgreSQL.

-- The durable export cursor: for each sink, the state of each alert it has been sent (or has given
-- up on). An alert whose status changed since is sent again (OCSF activity Update or Close); an
-- alert with no row here has not been sent yet. Rows are written in the transaction that follows
-- the receiver's acknowledgement, so a restart neither resends delivered events nor skips any.
CREATE TABLE export_deliveries (
    sink             TEXT NOT NULL,
    alert_id         TEXT NOT NULL,
    status           TEXT NOT NULL,
    -- 'delivered' or 'dead_letter' (refused by the receiver for good; never retried)
    outcome          TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    delivered_at_ms  BIGINT NOT NULL,
    error            TEXT,
    PRIMARY KEY (sink, alert_id)
);
CREATE INDEX export_deliveries_by_outcome ON export_deliveries (sink, outcome);

-- Scheduled (and command-line) report runs, newest listed in the dashboard.
CREATE TABLE report_runs (
    id              TEXT PRIMARY KEY,
    schedule        TEXT NOT NULL,
    started_at_ms   BIGINT NOT NULL,
    finished_at_ms  BIGINT NOT NULL,
    since_ms        BIGINT NOT NULL,
    until_ms        BIGINT NOT NULL,
    formats         TEXT NOT NULL,
    files           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    error           TEXT
);
CREATE INDEX report_runs_by_start ON report_runs (started_at_ms);

-- The report's agentic-risk query reads only observations with risk flags, MCP configuration or
-- listeners: a partial index keeps it from scanning every observation of the period.
CREATE INDEX observations_report_risk ON observations (observed_at_ms)
    WHERE risk <> '[]' OR signal IN ('config', 'listener');
