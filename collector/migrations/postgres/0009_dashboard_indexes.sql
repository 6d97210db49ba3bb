-- Dashboard pages (issue 8): indexes that serve the alert queue's orders and the overview, hosts
-- and products aggregates without reading every alert row. Same text for SQLite and PostgreSQL.

-- The queue's default view (unresolved, newest activity first) in index order: a page is read
-- straight off the index (the store writes the condition as `status <> 'resolved'`).
CREATE INDEX alerts_unresolved_by_last_seen ON alerts (last_seen_ms, id) WHERE status <> 'resolved';
-- Sort by first sighting, and the overview's new alerts per day.
CREATE INDEX alerts_by_first_seen ON alerts (first_seen_ms, id);
-- Sort by count.
CREATE INDEX alerts_by_count ON alerts (count, last_seen_ms, id);
-- The overview's tallies by severity and status and its risky hosts, read from the index alone;
-- sort by severity picks the page's ids from it alone.
CREATE INDEX alerts_by_severity_status ON alerts (severity, status, last_seen_ms, id, agent_id);
-- The user filter (a substring: no index can seek it) scans this instead of the alert rows.
CREATE INDEX alerts_by_user ON alerts (user_name, status, last_seen_ms, id);
-- The hosts page's alert counts per agent, read from the index alone.
CREATE INDEX alerts_by_agent_status ON alerts (agent_id, status);
-- Sort by host and the host filter.
CREATE INDEX agents_by_hostname ON agents (hostname, id);
-- The products page and the overview's new products: per-product sums, hosts and users, each
-- read from an index alone.
CREATE INDEX alerts_product_usage ON alerts (product, first_seen_ms, last_seen_ms, status, count, vendor, category);
CREATE INDEX alerts_by_product_agent ON alerts (product, agent_id);
CREATE INDEX alerts_by_product_user ON alerts (product, user_name);
