//! What operators need from the store: the fleet counts behind the metrics, and an online backup
//! of a SQLite database.

use std::path::Path;

use super::{Backend, Store, StoreError};

/// Agents and alerts counted for the fleet gauges (one reading).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetCounts {
    /// Not revoked, with contact within the silence threshold.
    pub agents_online: i64,
    /// Not revoked, without contact for longer than the threshold.
    pub agents_silent: i64,
    /// Revoked.
    pub agents_revoked: i64,
    /// Not revoked, whose last heartbeat reported a blind spot or a blind sensor.
    pub agents_blinded: i64,
    /// (severity, status, count) of every alert group.
    pub alerts: Vec<(String, String, i64)>,
    /// Connections in the pool.
    pub pool_size: u32,
    /// Idle connections in the pool.
    pub pool_idle: u32,
}

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "online backup is for SQLite; back up PostgreSQL with pg_dump (see docs/OPERATIONS.md)"
    )]
    NotSqlite,
    #[error("{0} already exists: choose a new file (a backup never overwrites)")]
    Exists(String),
    #[error("the backup path must be valid UTF-8")]
    Path,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Counts agents (online, silent, revoked, blinded) and alerts (by severity and status).
    /// An agent is silent when its last contact is older than `silent_after_ms` before `now_ms`.
    ///
    /// "Blinded" reads the health JSON the collector itself wrote (sorted keys, compact): a blind
    /// spot list that is not empty, or a sensor in state BLIND. Values an agent sent are JSON
    /// strings there, whose quotes are escaped, so they cannot fake either pattern.
    pub async fn fleet_counts(
        &self,
        now_ms: i64,
        silent_after_ms: i64,
    ) -> Result<FleetCounts, StoreError> {
        let since = now_ms.saturating_sub(silent_after_ms);
        let (agents, alerts, pool_size, pool_idle) = on_pool!(self, pool => {
            let agents: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT \
                 SUM(CASE WHEN revoked_at_ms IS NULL AND last_contact_ms >= $1 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN revoked_at_ms IS NULL AND last_contact_ms < $1 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN revoked_at_ms IS NOT NULL THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN revoked_at_ms IS NULL AND (health LIKE '%\"blind_spots\":[{%' \
                     OR health LIKE '%\"state\":\"SENSOR_STATE_BLIND\"%') THEN 1 ELSE 0 END) \
                 FROM agents",
            )
            .bind(since)
            .fetch_one(pool)
            .await?;
            let alerts: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT severity, status, COUNT(*) FROM alerts GROUP BY severity, status",
            )
            .fetch_all(pool)
            .await?;
            (agents, alerts, pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX))
        });
        Ok(FleetCounts {
            agents_online: agents.0.unwrap_or(0),
            agents_silent: agents.1.unwrap_or(0),
            agents_revoked: agents.2.unwrap_or(0),
            agents_blinded: agents.3.unwrap_or(0),
            alerts,
            pool_size,
            pool_idle,
        })
    }

    /// Writes a consistent copy of a SQLite database to `to` while the collector keeps running
    /// (`VACUUM INTO`: one read transaction, so writers are not blocked under WAL). The file must
    /// not exist yet. PostgreSQL is backed up with `pg_dump` instead.
    pub async fn backup_sqlite(&self, to: &Path) -> Result<(), BackupError> {
        let Backend::Sqlite { reads, .. } = &self.backend else {
            return Err(BackupError::NotSqlite);
        };
        if to.exists() {
            return Err(BackupError::Exists(to.display().to_string()));
        }
        let target = to.to_str().ok_or(BackupError::Path)?;
        // A reader connection, not the writer: the copy may take minutes and ingest goes on. It
        // writes only the new file, but `query_only` refuses VACUUM INTO, so the connection drops
        // it for this statement and is closed afterwards instead of going back to the pool.
        let mut conn = reads.acquire().await.map_err(StoreError::from)?;
        conn.close_on_drop();
        sqlx::query("PRAGMA query_only = OFF")
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        // The file name is a bound parameter, never part of the SQL text.
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}
