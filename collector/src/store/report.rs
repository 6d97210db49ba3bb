//! The queries behind the leadership report (`crate::report`). Each reduces the evidence in SQL to
//! a few rows per host and product; `crate::report::data` turns those into figures.
//!
//! Every query takes the period `[since_ms, until_ms)` and an optional group, bound as parameters.

use super::{Backend, Store, StoreError};

/// Period and scope of a report query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportScope {
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only hosts of this group.
    pub group: Option<String>,
}

/// One week bucket: `(observed_at_ms - since_ms) / WEEK_MS`.
pub const WEEK_MS: i64 = 7 * 24 * 3_600_000;

/// An enrolled host (not revoked, enrolled before the end of the period).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportAgent {
    pub id: String,
    pub hostname: String,
    pub group_name: String,
    pub catalog_version: String,
    pub last_contact_ms: i64,
    /// The last heartbeat's health (JSON text; `blind_spots` lists DoH, ECH, capture off, ...).
    pub health: String,
}

/// Use of one product by one host (and user, where a process named one) in one week.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub agent_id: String,
    pub group_name: String,
    pub product: String,
    pub vendor: String,
    pub category: String,
    pub plan: Option<String>,
    pub user_name: Option<String>,
    pub week: i64,
    pub events: i64,
}

/// An observation that matters for agentic risk (a risk flag, an MCP server, a listener), grouped
/// per host, product, name and details.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RiskRow {
    pub agent_id: String,
    pub hostname: String,
    pub product: String,
    pub signal: String,
    pub name: String,
    pub risk: String,
    pub details: String,
    pub user_name: Option<String>,
    pub last_seen_ms: i64,
    pub events: i64,
    pub last_observation_id: String,
}

/// Alerts raised in the period, by status (triage outcomes).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertStatusRow {
    pub status: String,
    pub alerts: i64,
}

/// An alert first seen in the period, as triage left it: its resolution (when resolved) and how
/// long it took until a responder first acknowledged or resolved it (`None`: not yet).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TriageOutcomeRow {
    pub resolution: Option<String>,
    pub acknowledge_after_ms: Option<i64>,
}

/// An alert of the period with its evidence ids (the report's appendix).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EvidenceRow {
    pub alert_id: String,
    pub agent_id: String,
    pub hostname: String,
    pub product: String,
    pub reason: String,
    pub first_observation_id: String,
    pub last_observation_id: String,
}

/// A stored report run (scheduled or not).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ReportRun {
    pub id: String,
    pub schedule: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub since_ms: i64,
    pub until_ms: i64,
    pub formats: String,
    pub files: String,
    pub outcome: String,
    pub error: Option<String>,
    /// E-mail delivery: `None` without `email_to`; `pending`, `sent`, `failed` or `skipped`
    /// (the report failed, so nothing was sent).
    pub delivery: Option<String>,
    /// Why the delivery failed.
    pub delivery_error: Option<String>,
}

impl Store {
    /// Hosts in scope: enrolled before the period ended, not revoked, in the group if one is given.
    pub async fn report_agents(&self, scope: &ReportScope) -> Result<Vec<ReportAgent>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, hostname, group_name, catalog_version, last_contact_ms, health FROM agents \
                 WHERE revoked_at_ms IS NULL AND enrolled_at_ms < $1 AND ($2 IS NULL OR group_name = $2) \
                 ORDER BY id",
            )
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Product use per host, user and week of the period.
    pub async fn report_usage(&self, scope: &ReportScope) -> Result<Vec<UsageRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT o.agent_id, a.group_name, o.product, o.vendor, o.category, o.plan, \
                 NULLIF(o.process_user, '') AS user_name, \
                 (o.observed_at_ms - $1) / $4 AS week, CAST(SUM(o.count) AS BIGINT) AS events \
                 FROM observations o JOIN agents a ON a.id = o.agent_id \
                 WHERE o.observed_at_ms >= $1 AND o.observed_at_ms < $2 AND o.product <> '' \
                 AND ($3 IS NULL OR a.group_name = $3) \
                 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .bind(WEEK_MS)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Observations with risk flags, MCP configuration or local listeners in the period.
    pub async fn report_risks(&self, scope: &ReportScope) -> Result<Vec<RiskRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT o.agent_id, a.hostname, o.product, o.signal, o.name, o.risk, o.details, \
                 NULLIF(o.process_user, '') AS user_name, MAX(o.observed_at_ms) AS last_seen_ms, \
                 CAST(SUM(o.count) AS BIGINT) AS events, MAX(o.id) AS last_observation_id \
                 FROM observations o JOIN agents a ON a.id = o.agent_id \
                 WHERE (o.risk <> '[]' OR o.signal IN ('config', 'listener')) \
                 AND o.observed_at_ms >= $1 AND o.observed_at_ms < $2 \
                 AND ($3 IS NULL OR a.group_name = $3) \
                 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Alerts first seen in the period, counted by status.
    pub async fn report_alert_statuses(
        &self,
        scope: &ReportScope,
    ) -> Result<Vec<AlertStatusRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT l.status, COUNT(*) AS alerts FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 WHERE l.first_seen_ms >= $1 AND l.first_seen_ms < $2 AND ($3 IS NULL OR a.group_name = $3) \
                 GROUP BY l.status ORDER BY l.status",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Triage outcomes of the alerts first seen in the period (one row per alert).
    pub async fn report_triage(
        &self,
        scope: &ReportScope,
    ) -> Result<Vec<TriageOutcomeRow>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT l.resolution,                  (SELECT MIN(t.at_ms) FROM triage_events t WHERE t.alert_id = l.id                      AND t.action IN ('acknowledge', 'resolve')) - l.first_seen_ms AS acknowledge_after_ms                  FROM alerts l JOIN agents a ON a.id = l.agent_id                  WHERE l.first_seen_ms >= $1 AND l.first_seen_ms < $2 AND ($3 IS NULL OR a.group_name = $3)",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Alerts seen in the period with their first and last observation ids, oldest first, at most
    /// `limit`; and how many there are in all.
    pub async fn report_evidence(
        &self,
        scope: &ReportScope,
        limit: u32,
    ) -> Result<(Vec<EvidenceRow>, i64), StoreError> {
        let (rows, total) = on_pool!(self, pool => {
            let rows: Vec<EvidenceRow> = sqlx::query_as(
                "SELECT l.id AS alert_id, l.agent_id, a.hostname, l.product, l.reason, \
                 COALESCE(l.first_observation_id, '') AS first_observation_id, \
                 COALESCE(l.last_observation_id, '') AS last_observation_id \
                 FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 WHERE l.last_seen_ms >= $1 AND l.first_seen_ms < $2 AND ($3 IS NULL OR a.group_name = $3) \
                 ORDER BY l.first_seen_ms, l.id LIMIT $4",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 WHERE l.last_seen_ms >= $1 AND l.first_seen_ms < $2 AND ($3 IS NULL OR a.group_name = $3)",
            )
            .bind(scope.since_ms)
            .bind(scope.until_ms)
            .bind(scope.group.as_deref())
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok((rows, total))
    }

    /// Records a report run.
    pub async fn record_report_run(&self, run: &ReportRun) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO report_runs (id, schedule, started_at_ms, finished_at_ms, since_ms, until_ms, \
                 formats, files, outcome, error, delivery, delivery_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&run.id)
            .bind(&run.schedule)
            .bind(run.started_at_ms)
            .bind(run.finished_at_ms)
            .bind(run.since_ms)
            .bind(run.until_ms)
            .bind(&run.formats)
            .bind(&run.files)
            .bind(&run.outcome)
            .bind(run.error.as_deref())
            .bind(run.delivery.as_deref())
            .bind(run.delivery_error.as_deref())
            .execute(pool)
            .await
            .map_err(StoreError::entity("report run"))?;
        });
        Ok(())
    }

    /// Claims the run of `schedule` at `slot_ms` for `claimant`: true for the one caller (across
    /// every collector on this database) whose insert made the row, false for the others.
    pub async fn claim_report_slot(
        &self,
        schedule: &str,
        slot_ms: i64,
        claimant: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO report_slots (schedule, slot_ms, claimed_by, claimed_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (schedule, slot_ms) DO NOTHING",
            )
            .bind(schedule)
            .bind(slot_ms)
            .bind(claimant)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(StoreError::entity("report slot"))?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Records how a run's e-mail delivery ended.
    pub async fn record_report_delivery(
        &self,
        id: &str,
        delivery: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE report_runs SET delivery = $1, delivery_error = $2 WHERE id = $3")
                .bind(delivery)
                .bind(error)
                .bind(id)
                .execute(pool)
                .await
                .map_err(StoreError::entity("report run"))?;
        });
        Ok(())
    }

    /// The newest report runs, at most `limit`.
    pub async fn list_report_runs(&self, limit: u32) -> Result<Vec<ReportRun>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, schedule, started_at_ms, finished_at_ms, since_ms, until_ms, formats, files, \
                 outcome, error, delivery, delivery_error FROM report_runs ORDER BY started_at_ms DESC, id DESC LIMIT $1",
            )
            .bind(i64::from(limit.clamp(1, super::MAX_PAGE)))
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }
}
