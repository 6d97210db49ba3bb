//! Alert and finding listings, the sensor alerts (silent, blinded) and the periodic sweep.

use uuid::Uuid;

use super::{
    AlertFilters, AlertQuery, Backend, Finding, FindingQuery, Heartbeat, MAX_PAGE, Page,
    PageCursor, Store, StoreError, SuppressedFilter, page, rows,
};
use crate::policy::rules::{self, AlertAction, SENSOR_PRODUCT};

/// Most silent agents alerted by one sweep (the next sweep takes the rest).
const MAX_SILENT_PER_SWEEP: i64 = 10_000;

/// Opens a sensor alert, or adds a new episode to the open one ($7 is the episode's time: an
/// episode already counted, or an older one, changes nothing and returns no row).
const SENSOR_ALERT: &str = "INSERT INTO alerts (id, agent_id, product, reason, severity, status, title, \
     vendor, category, rule, user_name, first_seen_ms, last_seen_ms, count, explanation, suppressed_by) \
     VALUES ($1, $2, $3, $4, $5, 'open', $6, 'shadowai', 'sensor', $9, '', $7, $7, 1, $8, $10) \
     ON CONFLICT (agent_id, product, reason) WHERE status <> 'resolved' DO UPDATE SET \
     count = alerts.count + 1, \
     severity = CASE WHEN (CASE excluded.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 \
         WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END) > (CASE alerts.severity WHEN 'critical' \
         THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END) \
         THEN excluded.severity ELSE alerts.severity END, \
     title = excluded.title, explanation = excluded.explanation, \
     last_seen_ms = excluded.last_seen_ms, suppressed_by = excluded.suppressed_by \
     WHERE excluded.last_seen_ms > alerts.last_seen_ms \
     RETURNING id, count";

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// `sensor_silent` alerts opened.
    pub silent_alerts_raised: usize,
    /// Silent agents whose open alert got a new episode.
    pub silent_alerts_bumped: usize,
    /// Alerts released from suppressions that expired or were lifted.
    pub alerts_unsuppressed: u64,
}

/// The rule id sensor alerts name.
fn sensor_rule(action: &AlertAction) -> String {
    format!("policy:{}", action.reason.as_str())
}

impl Store {
    /// Alerts, newest `last_seen` first, filtered and paged. Suppressed alerts are left out unless
    /// `filters.suppressed` asks for them.
    pub async fn list_alerts_filtered(
        &self,
        query: &AlertQuery,
        filters: &AlertFilters,
    ) -> Result<Page<super::Alert>, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let suppressed = match filters.suppressed {
            SuppressedFilter::Hide => "hide",
            SuppressedFilter::Only => "only",
            SuppressedFilter::Include => "include",
        };
        let rows: Vec<rows::AlertRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT l.id, l.agent_id, a.hostname, a.group_name, l.user_name, l.product, l.vendor, \
                 l.category, l.reason, l.severity, l.status, l.title, l.rule, l.process_pid, l.process_name, \
                 l.process_exe, l.process_cmdline, l.first_seen_ms, l.last_seen_ms, l.count, \
                 l.first_observation_id, l.last_observation_id, l.explanation, l.suppressed_by \
                 FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 WHERE ($1 IS NULL OR l.last_seen_ms < $1 OR (l.last_seen_ms = $1 AND l.id < $2)) \
                 AND ($3 IS NULL OR l.status = $3) \
                 AND ($4 IS NULL OR l.product = $4) \
                 AND ($5 IS NULL OR l.severity = $5) \
                 AND ($6 IS NULL OR l.reason = $6) \
                 AND ($7 IS NULL OR l.category = $7) \
                 AND ($8 IS NULL OR a.group_name = $8) \
                 AND ($9 IS NULL OR l.agent_id = $9) \
                 AND ($10 IS NULL OR l.user_name = $10) \
                 AND ($11 IS NULL OR l.last_seen_ms >= $11) \
                 AND ($12 IS NULL OR l.last_seen_ms < $12) \
                 AND ($13 = 'include' OR ($13 = 'hide' AND l.suppressed_by IS NULL) \
                      OR ($13 = 'only' AND l.suppressed_by IS NOT NULL)) \
                 ORDER BY l.last_seen_ms DESC, l.id DESC \
                 LIMIT $14",
            )
            .bind(query.after.map(|c| c.at_ms))
            .bind(query.after.map(|c| c.id.to_string()))
            .bind(query.status.as_deref())
            .bind(query.product.as_deref())
            .bind(filters.severity.as_deref())
            .bind(filters.reason.as_deref())
            .bind(filters.category.as_deref())
            .bind(filters.group.as_deref())
            .bind(filters.agent_id.map(|id| id.to_string()))
            .bind(filters.user.as_deref())
            .bind(filters.since_ms)
            .bind(filters.until_ms)
            .bind(suppressed)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let items = rows
            .into_iter()
            .map(rows::AlertRow::into_alert)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |a| PageCursor {
            at_ms: a.last_seen_ms,
            id: a.id,
        }))
    }

    /// The observation ids linked to an alert (at most `MAX_ALERT_LINKS`), oldest first.
    pub async fn alert_observation_ids(&self, alert_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let ids: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT observation_id FROM alert_observations WHERE alert_id = $1 ORDER BY observation_id",
            )
            .bind(alert_id.to_string())
            .fetch_all(pool)
            .await?
        });
        ids.iter().map(|id| rows::uuid(id)).collect()
    }

    /// Findings, newest `last_seen` first, filtered and paged.
    pub async fn list_findings(&self, query: &FindingQuery) -> Result<Page<Finding>, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        // The risk column is a JSON list of snake_case flags; the API admits only [a-z0-9_] flags,
        // so the pattern has no wildcard of the client's.
        let risk_pattern = query.risk.as_deref().map(|flag| format!("%\"{flag}\"%"));
        let rows: Vec<rows::FindingRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT f.id, f.agent_id, a.hostname, a.group_name, f.user_name, f.product, f.signal, \
                 f.subject, f.vendor, f.category, f.rule, f.first_seen_ms, f.last_seen_ms, f.count, \
                 f.first_observation_id, f.last_observation_id, f.risk, f.plan, f.tenant \
                 FROM findings f JOIN agents a ON a.id = f.agent_id \
                 WHERE ($1 IS NULL OR f.last_seen_ms < $1 OR (f.last_seen_ms = $1 AND f.id < $2)) \
                 AND ($3 IS NULL OR f.agent_id = $3) \
                 AND ($4 IS NULL OR f.product = $4) \
                 AND ($5 IS NULL OR f.category = $5) \
                 AND ($6 IS NULL OR f.user_name = $6) \
                 AND ($7 IS NULL OR a.group_name = $7) \
                 AND ($8 IS NULL OR f.signal = $8) \
                 AND ($9 IS NULL OR f.risk LIKE $9) \
                 AND ($10 IS NULL OR f.last_seen_ms >= $10) \
                 AND ($11 IS NULL OR f.last_seen_ms < $11) \
                 ORDER BY f.last_seen_ms DESC, f.id DESC \
                 LIMIT $12",
            )
            .bind(query.after.map(|c| c.at_ms))
            .bind(query.after.map(|c| c.id.to_string()))
            .bind(query.agent_id.map(|id| id.to_string()))
            .bind(query.product.as_deref())
            .bind(query.category.as_deref())
            .bind(query.user.as_deref())
            .bind(query.group.as_deref())
            .bind(query.signal.map(|s| s.as_str()))
            .bind(risk_pattern.as_deref())
            .bind(query.since_ms)
            .bind(query.until_ms)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let items = rows
            .into_iter()
            .map(rows::FindingRow::into_finding)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |f| PageCursor {
            at_ms: f.last_seen_ms,
            id: f.id,
        }))
    }

    /// The periodic sweep (every collector runs it each minute; running it twice at once is
    /// harmless): raises `sensor_silent` for agents not heard from for longer than the policy's
    /// `silent_after_ms` (once per silence: an episode already alerted is not alerted again), and
    /// releases alerts whose suppression expired or was lifted.
    pub async fn sweep_silent(&self, now_ms: i64) -> Result<SweepOutcome, StoreError> {
        let policy = self.policy_snapshot(now_ms).await?;
        let cutoff = now_ms.saturating_sub(policy.settings.silent_after_ms);
        let mut outcome = SweepOutcome::default();
        let silent: Vec<(String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.id, a.group_name, a.last_contact_ms FROM agents a \
                 WHERE a.revoked_at_ms IS NULL AND a.last_contact_ms <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM alerts l WHERE l.agent_id = a.id AND l.product = $2 \
                     AND l.reason = 'sensor_silent' AND l.last_seen_ms >= a.last_contact_ms) \
                 ORDER BY a.last_contact_ms, a.id LIMIT $3",
            )
            .bind(cutoff)
            .bind(SENSOR_PRODUCT)
            .bind(MAX_SILENT_PER_SWEEP)
            .fetch_all(pool)
            .await?
        });
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            outcome.alerts_unsuppressed = sqlx::query(
                "UPDATE alerts SET suppressed_by = NULL WHERE suppressed_by IN \
                 (SELECT id FROM policy_suppressions WHERE expires_at_ms <= $1 OR lifted_at_ms IS NOT NULL)",
            )
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            for (agent_id, group, last_contact_ms) in &silent {
                let Some(action) = rules::evaluate_silent(*last_contact_ms, now_ms, group, &policy) else {
                    continue;
                };
                let suppressed_by = policy
                    .suppression(action.reason, SENSOR_PRODUCT, group, agent_id, now_ms)
                    .map(|s| s.id.to_string());
                let row: Option<(String, i64)> = sqlx::query_as(SENSOR_ALERT)
                    .bind(Uuid::now_v7().to_string())
                    .bind(agent_id)
                    .bind(SENSOR_PRODUCT)
                    .bind(action.reason.as_str())
                    .bind(action.severity.as_str())
                    .bind(&action.title)
                    .bind(*last_contact_ms)
                    .bind(&action.explanation)
                    .bind(sensor_rule(&action))
                    .bind(suppressed_by.as_deref())
                    .fetch_optional(&mut *tx)
                    .await?;
                match row {
                    Some((_, 1)) => outcome.silent_alerts_raised += 1,
                    Some(_) => outcome.silent_alerts_bumped += 1,
                    None => {}
                }
            }
            tx.commit().await?;
        });
        Ok(outcome)
    }

    /// `record_heartbeat` for a heartbeat that reports blind spots: stores it like any other and
    /// raises `sensor_blinded` when it shows a blind spot the previous heartbeat did not.
    pub(super) async fn record_blind_heartbeat(
        &self,
        agent_id: Uuid,
        heartbeat: &Heartbeat,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let policy = self.policy_snapshot(now_ms).await?;
        let agent = agent_id.to_string();
        let blind_now = rules::blind_spots(&heartbeat.health);
        let health = heartbeat.health.to_string();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // A write first (SQLite's lock); it returns the health stored before this heartbeat.
            let before: Option<(String, String)> = sqlx::query_as(
                "UPDATE agents SET last_contact_ms = last_contact_ms WHERE id = $1 RETURNING health, group_name",
            )
            .bind(&agent)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((old_health, group)) = before else {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: "agent" });
            };
            sqlx::query(
                "UPDATE agents SET hostname = $1, os = $2, os_version = $3, arch = $4, agent_version = $5, \
                 catalog_version = $6, health = $7, \
                 last_contact_ms = CASE WHEN $8 > last_contact_ms THEN $8 ELSE last_contact_ms END \
                 WHERE id = $9",
            )
            .bind(&heartbeat.hostname)
            .bind(&heartbeat.os)
            .bind(&heartbeat.os_version)
            .bind(&heartbeat.arch)
            .bind(&heartbeat.agent_version)
            .bind(&heartbeat.catalog_version)
            .bind(&health)
            .bind(now_ms)
            .bind(&agent)
            .execute(&mut *tx)
            .await?;
            let old: serde_json::Value = serde_json::from_str(&old_health).unwrap_or_default();
            let blind_before = rules::blind_spots(&old);
            if let Some(action) = rules::evaluate_blinded(&blind_before, &blind_now, &group, &policy) {
                let suppressed_by = policy
                    .suppression(action.reason, SENSOR_PRODUCT, &group, &agent, now_ms)
                    .map(|s| s.id.to_string());
                sqlx::query_as::<_, (String, i64)>(SENSOR_ALERT)
                    .bind(Uuid::now_v7().to_string())
                    .bind(&agent)
                    .bind(SENSOR_PRODUCT)
                    .bind(action.reason.as_str())
                    .bind(action.severity.as_str())
                    .bind(&action.title)
                    .bind(now_ms)
                    .bind(&action.explanation)
                    .bind(sensor_rule(&action))
                    .bind(suppressed_by.as_deref())
                    .fetch_optional(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

impl SuppressedFilter {
    /// Parses `hide`, `only` or `include`.
    pub fn parse(text: &str) -> Option<SuppressedFilter> {
        match text {
            "hide" | "false" => Some(SuppressedFilter::Hide),
            "only" | "true" => Some(SuppressedFilter::Only),
            "include" | "any" => Some(SuppressedFilter::Include),
            _ => None,
        }
    }
}
