-- The leadership report's daily roll-up (issue 9, performance). PostgreSQL flavour;
-- ../sqlite/0008_report_usage_days.sql has the same table (there a WITHOUT ROWID table).
--
-- One row per UTC day x host x product x vendor x category x plan x process user of the
-- observations that name a product: their summed count and the first and last observed_at_ms.
-- The store adds each ingest batch's newly stored observations to it inside the ingest
-- transaction (store::report::add_usage_days, one multi-row upsert per batch), so it always holds
-- exactly the observations stored. The report reads it for the whole days of a period and reads
-- raw observations only for the partial days at either end (store::Store::report_usage).
-- plan and user_name are '' where the observation had none (the report counts both as absent).
-- The primary key leads with the host and ends with the day, so that the report groups a
-- period's rows per host, product and user in key order, without sorting them.
--
-- Retention expires raw observations, not these rows (like findings and alerts): a report over
-- whole days keeps its figures after the evidence behind them has expired. No foreign key to
-- agents (agents are revoked, never deleted), so the upsert costs one index lookup per row.
CREATE TABLE report_usage_days (
    day_ms     BIGINT NOT NULL,
    agent_id   TEXT NOT NULL,
    product    TEXT NOT NULL,
    vendor     TEXT NOT NULL,
    category   TEXT NOT NULL,
    plan       TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    events     BIGINT NOT NULL,
    first_ms   BIGINT NOT NULL,
    last_ms    BIGINT NOT NULL,
    PRIMARY KEY (agent_id, product, vendor, category, plan, user_name, day_ms)
);

-- Backfill from the observations already stored (the same text as store::REPORT_USAGE_BACKFILL).
INSERT INTO report_usage_days (day_ms, agent_id, product, vendor, category, plan, user_name, events, first_ms, last_ms)
SELECT observed_at_ms - ((observed_at_ms % 86400000) + 86400000) % 86400000, agent_id, product, vendor, category, COALESCE(plan, ''), COALESCE(process_user, ''), CAST(SUM(count) AS BIGINT), MIN(observed_at_ms), MAX(observed_at_ms)
FROM observations WHERE product <> ''
GROUP BY 1, 2, 3, 4, 5, 6, 7;
