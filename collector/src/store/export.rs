//! The SIEM export cursor: which alert state each sink has been sent (migration 0007).
//!
//! An alert is pending for a sink while it has no `export_deliveries` row for that sink, or while
//! the row holds another status than the alert has now (triage changed it: the SIEM gets an Update
//! or Close). Rows are written only after the receiver acknowledged, in one transaction per batch.

use super::{Backend, Store, StoreError, rows};

/// An alert to export, with what the OCSF event needs from its agent and latest observation.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportAlert {
    pub alert: super::Alert,
    /// The status this sink was last sent, `None` when the alert was never sent.
    pub sent_status: Option<String>,
    pub os: String,
    pub os_version: String,
    pub agent_version: String,
    /// Signal, name (domain or tool) and details of the alert's latest observation, if still stored.
    pub last_signal: Option<String>,
    pub last_name: Option<String>,
    pub last_details: Option<serde_json::Value>,
}

/// How an export attempt ended for one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportOutcome {
    /// The receiver acknowledged it.
    Delivered,
    /// The receiver refused it for good; it is counted and not retried.
    DeadLetter,
}

impl ExportOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ExportOutcome::Delivered => "delivered",
            ExportOutcome::DeadLetter => "dead_letter",
        }
    }
}

/// One alert state to record as sent (or given up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRecord {
    pub alert_id: uuid::Uuid,
    pub status: String,
    pub outcome: ExportOutcome,
    pub attempts: u32,
    pub error: Option<String>,
}

/// What a sink has done so far, from the database (shared by every collector on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ExportTotals {
    pub delivered: i64,
    pub dead_letters: i64,
    pub pending: i64,
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    #[sqlx(flatten)]
    alert: rows::AlertRow,
    sent_status: Option<String>,
    os: String,
    os_version: String,
    agent_version: String,
    last_signal: Option<String>,
    last_name: Option<String>,
    last_details: Option<String>,
}

impl Store {
    /// Up to `limit` alerts not yet sent to `sink` in their current status, oldest first.
    pub async fn pending_exports(
        &self,
        sink: &str,
        limit: u32,
    ) -> Result<Vec<ExportAlert>, StoreError> {
        let limit = i64::from(limit.clamp(1, super::MAX_PAGE));
        let rows: Vec<ExportRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT l.id, l.agent_id, a.hostname, a.group_name, l.user_name, l.product, l.vendor, \
                 l.category, l.reason, l.severity, l.status, l.title, l.rule, l.process_pid, l.process_name, \
                 l.process_exe, l.process_cmdline, l.first_seen_ms, l.last_seen_ms, l.count, \
                 l.first_observation_id, l.last_observation_id, l.explanation, l.suppressed_by, \
                 d.status AS sent_status, a.os, a.os_version, a.agent_version, \
                 o.signal AS last_signal, o.name AS last_name, o.details AS last_details \
                 FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 LEFT JOIN export_deliveries d ON d.sink = $1 AND d.alert_id = l.id \
                 LEFT JOIN observations o ON o.id = l.last_observation_id \
                 WHERE d.alert_id IS NULL OR (d.outcome = 'delivered' AND d.status <> l.status) \
                 ORDER BY l.first_seen_ms, l.id \
                 LIMIT $2",
            )
            .bind(sink)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(ExportAlert {
                    alert: row.alert.into_alert()?,
                    sent_status: row.sent_status,
                    os: row.os,
                    os_version: row.os_version,
                    agent_version: row.agent_version,
                    last_signal: row.last_signal,
                    last_name: row.last_name,
                    last_details: match row.last_details {
                        Some(text) => Some(
                            serde_json::from_str(&text)
                                .map_err(|_| StoreError::Corrupt { what: "details" })?,
                        ),
                        None => None,
                    },
                })
            })
            .collect()
    }

    /// Records what the receiver acknowledged (or refused for good), in one transaction.
    pub async fn record_exports(
        &self,
        sink: &str,
        records: &[ExportRecord],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for record in records {
                sqlx::query(
                    "INSERT INTO export_deliveries (sink, alert_id, status, outcome, attempts, delivered_at_ms, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (sink, alert_id) DO UPDATE SET status = excluded.status, \
                     outcome = excluded.outcome, attempts = excluded.attempts, \
                     delivered_at_ms = excluded.delivered_at_ms, error = excluded.error",
                )
                .bind(sink)
                .bind(record.alert_id.to_string())
                .bind(&record.status)
                .bind(record.outcome.as_str())
                .bind(i64::from(record.attempts))
                .bind(now_ms)
                .bind(record.error.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Delivered, dead-lettered and pending alert counts of a sink.
    pub async fn export_totals(&self, sink: &str) -> Result<ExportTotals, StoreError> {
        let (delivered, dead_letters): (i64, i64) = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN outcome = 'delivered' THEN 1 ELSE 0 END), 0), \
                 COALESCE(SUM(CASE WHEN outcome = 'dead_letter' THEN 1 ELSE 0 END), 0) \
                 FROM export_deliveries WHERE sink = $1",
            )
            .bind(sink)
            .fetch_one(pool)
            .await?
        });
        let pending: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM alerts l \
                 LEFT JOIN export_deliveries d ON d.sink = $1 AND d.alert_id = l.id \
                 WHERE d.alert_id IS NULL OR (d.outcome = 'delivered' AND d.status <> l.status)",
            )
            .bind(sink)
            .fetch_one(pool)
            .await?
        });
        Ok(ExportTotals {
            delivered,
            dead_letters,
            pending,
        })
    }
}
