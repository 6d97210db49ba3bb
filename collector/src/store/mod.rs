//! The evidence store: SQLite by default, PostgreSQL for `postgres://` URLs.
//!
//! Architecture invariants:
//! - Every query is written once, as static SQL text with `$n` placeholders (SQLite accepts them
//!   too), and run on either pool by the `on_pool!` macro. No SQL is ever built from input: every
//!   value an endpoint sent is bound as a parameter.
//! - Times are Unix milliseconds passed in by the caller; the store never reads a clock.
//! - Writes that must be atomic (enrollment, a report batch) run in one transaction whose first
//!   statement writes, so that SQLite takes its write lock up front and waits (busy timeout)
//!   instead of failing a read-then-write upgrade.
//! - `StoreError` never carries SQL text or database messages; the sqlx error is logged at DEBUG.

mod error;
mod model;
mod rows;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use error::StoreError;
pub use model::*;
use rows::{ObservationRow, TokenRow};

/// How long a SQLite write waits for the one writer connection before failing (ingest answers
/// UNAVAILABLE and the agent retries): the writer queue under a full fleet stays well under this.
const WRITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections for SQLite (WAL: readers do not wait for the writer or each other).
const SQLITE_READERS: u32 = 8;

/// Largest page any listing returns.
pub const MAX_PAGE: u32 = 1_000;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A handle on the database. Cloning is cheap (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// The policy snapshot the alert rules read (see `policy`).
    policy: std::sync::Arc<policy::PolicyCache>,
}

/// SQLite takes one writer at a time. Writers on separate connections wait for each other in
/// SQLite's busy handler, which sleeps and retries (up to `busy_timeout`): under ingest load that
/// made the ack latency's tail seconds long and let a waiting writer fail with "database is locked".
/// So every write goes through `writes`, a pool of ONE connection: writers queue in the pool, first
/// come first served, and never meet the busy handler (other processes, such as a `verify` or a
/// backup run beside the collector, still do). Reads use `reads`, connections with
/// `PRAGMA query_only`, which WAL lets run beside the writer; a write sent there by mistake fails
/// loudly ("attempt to write a readonly database") instead of contending. Rule for store code: a
/// write (or a transaction that writes) is `on_write_pool!`, and must not call another store method
/// while it holds its connection (it would wait for itself until the acquire timeout).
/// PostgreSQL has no such limit: both macros use its one pool.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite {
        reads: SqlitePool,
        writes: SqlitePool,
    },
    Postgres(PgPool),
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool for reads, so that
/// each query is written once and type-checked against both drivers.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { reads: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// As `on_pool!`, for statements that write: SQLite's single writer connection (see `Backend`).
macro_rules! on_write_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite { writes: $pool, .. } => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

mod catalogs;
pub use catalogs::CatalogReleaseRecord;
pub mod chain;
pub use chain::{
    BrokenRecord, ExpectedRoot, ExpiryOutcome, RetentionPolicy, RootCommit, RootInfo, VerifyReport,
};

mod alerts;
mod observations;
pub mod policy;
pub use alerts::SweepOutcome;
pub use observations::MAX_ALERT_LINKS;
pub use policy::{
    NewSanction, NewSeverityOverride, NewSuppression, NewTenantRule, POLICY_REFRESH, PolicyActor,
    PolicyChange, PolicyRuleKind,
};
mod bulk;
pub use bulk::{InsertObservationRows, ROWS_PER_STATEMENT};
mod triage;
pub use triage::*;
mod views;
pub use views::*;
mod operations;
pub use operations::{BackupError, FleetCounts};
mod export;
pub use export::{ExportAlert, ExportOutcome, ExportRecord, ExportTotals};
mod report;
pub use report::*;

impl Store {
    /// Opens (creating a SQLite file if missing) and migrates the database at `url`:
    /// `sqlite://PATH` or `postgres://...` (`postgresql://` too).
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|_| StoreError::InvalidUrl)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if url.contains(":memory:") || url.contains("mode=memory") {
                // An in-memory database lives as long as one of its connections and is seen only
                // by that connection: one connection, kept open, does both reads and writes.
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(StoreError::connect)?;
                SQLITE_MIGRATIONS
                    .run(&pool)
                    .await
                    .map_err(StoreError::migrate)?;
                Backend::Sqlite {
                    reads: pool.clone(),
                    writes: pool,
                }
            } else {
                let writes = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(WRITE_ACQUIRE_TIMEOUT)
                    .connect_with(options.clone())
                    .await
                    .map_err(StoreError::connect)?;
                // Migrations first, on the writer: the readers open a database that has its schema.
                SQLITE_MIGRATIONS
                    .run(&writes)
                    .await
                    .map_err(StoreError::migrate)?;
                let reads = SqlitePoolOptions::new()
                    .max_connections(SQLITE_READERS)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options.pragma("query_only", "ON"))
                    .await
                    .map_err(StoreError::connect)?;
                Backend::Sqlite { reads, writes }
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(StoreError::connect)?;
            POSTGRES_MIGRATIONS
                .run(&pool)
                .await
                .map_err(StoreError::migrate)?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::InvalidUrl);
        };
        Ok(Store {
            backend,
            policy: std::sync::Arc::default(),
        })
    }

    /// "sqlite" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Backend::Sqlite { reads, .. } = &self.backend {
            reads.close().await;
        }
        on_write_pool!(self, pool => pool.close().await)
    }

    // ---------------------------------------------------------------- enrollment and agents

    /// Stores a new enrollment token.
    pub async fn create_enrollment_token(
        &self,
        token: &NewEnrollmentToken,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO enrollment_tokens \
                 (id, secret_sha256, group_name, expires_at_ms, max_uses, uses, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, $7)",
            )
            .bind(&token.token_id)
            .bind(&token.secret_sha256)
            .bind(&token.group)
            .bind(token.expires_at_ms)
            .bind(token.max_uses.map(i64::from))
            .bind(token.created_at_ms)
            .bind(&token.created_by)
            .execute(pool)
            .await
            .map_err(StoreError::entity("enrollment token"))?;
        });
        Ok(())
    }

    /// Revokes an enrollment token so that it enrolls no more agents.
    pub async fn revoke_enrollment_token(
        &self,
        token_id: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let updated = on_write_pool!(self, pool => {
            sqlx::query(
                "UPDATE enrollment_tokens \
                 SET revoked_at_ms = COALESCE(revoked_at_ms, $1), revoked_by = COALESCE(revoked_by, $2) \
                 WHERE id = $3",
            )
            .bind(now_ms)
            .bind(by)
            .bind(token_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound {
                entity: "enrollment token",
            });
        }
        Ok(())
    }

    /// Spends one use of a token and records the new agent and its certificate, all in one
    /// transaction. A wrong secret is reported as an unknown token (it says nothing about which
    /// token ids exist) and spends nothing. Concurrent enrollments never exceed `max_uses`: the use
    /// is taken by a conditional UPDATE, which the database serialises per token row.
    pub async fn enroll_agent(&self, request: &EnrollAgent) -> Result<EnrolledAgent, StoreError> {
        let agent_id = request.agent_id.to_string();
        let group = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let spent: Option<(String, String)> = sqlx::query_as(
                "UPDATE enrollment_tokens SET uses = uses + 1 \
                 WHERE id = $1 AND revoked_at_ms IS NULL \
                 AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
                 AND (max_uses IS NULL OR uses < max_uses) \
                 RETURNING secret_sha256, group_name",
            )
            .bind(&request.token_id)
            .bind(request.now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let group = match spent {
                Some((secret, group)) if is_same_secret(&secret, &request.secret_sha256) => group,
                Some(_) => {
                    tx.rollback().await?;
                    return Err(StoreError::TokenUnknown);
                }
                None => {
                    let token: Option<TokenRow> = sqlx::query_as(
                        "SELECT secret_sha256, revoked_at_ms, expires_at_ms, max_uses, uses \
                         FROM enrollment_tokens WHERE id = $1",
                    )
                    .bind(&request.token_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Err(refusal(token.as_ref(), &request.secret_sha256, request.now_ms));
                }
            };
            sqlx::query(
                "INSERT INTO agents (id, group_name, hostname, os, os_version, arch, agent_version, \
                 catalog_version, enrolled_at_ms, enrolled_from, enrollment_token_id, last_contact_ms, health) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, '', $8, $9, $10, $8, '{}')",
            )
            .bind(&agent_id)
            .bind(&group)
            .bind(&request.hostname)
            .bind(&request.os)
            .bind(&request.os_version)
            .bind(&request.arch)
            .bind(&request.agent_version)
            .bind(request.now_ms)
            .bind(&request.remote_addr)
            .bind(&request.token_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("agent"))?;
            sqlx::query(
                "INSERT INTO agent_certificates (fingerprint, agent_id, expires_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&request.cert_fingerprint)
            .bind(&agent_id)
            .bind(request.cert_expires_at_ms)
            .bind(request.now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("certificate"))?;
            tx.commit().await?;
            group
        });
        Ok(EnrolledAgent {
            agent_id: request.agent_id,
            group,
        })
    }

    /// The agent a client certificate (SHA-256 of its DER, hex) was issued to.
    pub async fn agent_by_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<AgentIdentity>, StoreError> {
        let row: Option<(String, String, String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.id, a.group_name, a.hostname, a.revoked_at_ms \
                 FROM agent_certificates c JOIN agents a ON a.id = c.agent_id \
                 WHERE c.fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, group, hostname, revoked_at_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(AgentIdentity {
            agent_id: rows::uuid(&id)?,
            group,
            hostname,
            revoked: revoked_at_ms.is_some(),
        }))
    }

    /// Records a renewed certificate for an existing agent.
    pub async fn add_agent_certificate(
        &self,
        agent_id: Uuid,
        fingerprint: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let agent_id = agent_id.to_string();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Touching the agent row first takes the write lock and proves the agent exists.
            let known = sqlx::query("UPDATE agents SET last_contact_ms = last_contact_ms WHERE id = $1")
                .bind(&agent_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if known == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: "agent" });
            }
            sqlx::query(
                "INSERT INTO agent_certificates (fingerprint, agent_id, expires_at_ms, created_at_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(fingerprint)
            .bind(&agent_id)
            .bind(expires_at_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("certificate"))?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes an agent: every later call with any of its certificates is refused. Revoking twice
    /// keeps the first time and author.
    pub async fn revoke_agent(
        &self,
        agent_id: Uuid,
        by: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let updated = on_write_pool!(self, pool => {
            sqlx::query(
                "UPDATE agents \
                 SET revoked_at_ms = COALESCE(revoked_at_ms, $1), revoked_by = COALESCE(revoked_by, $2) \
                 WHERE id = $3",
            )
            .bind(now_ms)
            .bind(by)
            .bind(agent_id.to_string())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound { entity: "agent" });
        }
        Ok(())
    }

    /// Every agent, by hostname then id.
    pub async fn list_agents(&self) -> Result<Vec<AgentSummary>, StoreError> {
        self.list_agents_page(i64::MAX, 0).await
    }

    /// At most `limit` agents from the `offset`-th on, by hostname then id (the order of
    /// [`Store::list_agents`]; one query serves both).
    pub async fn list_agents_page(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AgentSummary>, StoreError> {
        let rows: Vec<rows::AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, group_name, hostname, os, os_version, arch, agent_version, catalog_version, \
                 enrolled_at_ms, last_contact_ms, health, revoked_at_ms \
                 FROM agents ORDER BY hostname, id LIMIT $1 OFFSET $2",
            )
            .bind(limit.max(0))
            .bind(offset.max(0))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(rows::AgentRow::into_summary).collect()
    }

    /// Records a heartbeat: facts, versions, health and last contact; raises `sensor_blinded` when
    /// it reports a blind spot the previous heartbeat did not.
    pub async fn record_heartbeat(
        &self,
        agent_id: Uuid,
        heartbeat: &Heartbeat,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if !crate::policy::rules::blind_spots(&heartbeat.health).is_empty() {
            return self
                .record_blind_heartbeat(agent_id, heartbeat, now_ms)
                .await;
        }
        let health = heartbeat.health.to_string();
        let updated = on_write_pool!(self, pool => {
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
            .bind(agent_id.to_string())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound { entity: "agent" });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- observations and alerts

    /// How many observations are stored.
    pub async fn count_observations(&self) -> Result<i64, StoreError> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM observations").fetch_one(pool).await?
        });
        Ok(count)
    }

    /// The protobuf evidence an observation was stored with.
    pub async fn observation_evidence(&self, id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        let evidence: Option<Vec<u8>> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT evidence FROM observations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(evidence)
    }

    /// Observations, newest `observed_at` first, filtered and paged.
    pub async fn list_observations(
        &self,
        query: &ObservationQuery,
    ) -> Result<Page<StoredObservation>, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let rows: Vec<ObservationRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT o.id, o.agent_id, a.hostname, o.observed_at_ms, o.received_at_ms, o.signal, o.name, \
                 o.product, o.vendor, o.category, o.rule, o.reason, o.risk, o.confidence, o.plan, \
                 o.catalog_version, o.count, o.process_pid, o.process_parent_pid, o.process_name, \
                 o.process_exe, o.process_cmdline, o.process_user, o.details, o.tenant \
                 FROM observations o JOIN agents a ON a.id = o.agent_id \
                 WHERE ($1 IS NULL OR o.observed_at_ms < $1 OR (o.observed_at_ms = $1 AND o.id < $2)) \
                 AND ($3 IS NULL OR o.agent_id = $3) \
                 AND ($4 IS NULL OR o.product = $4) \
                 ORDER BY o.observed_at_ms DESC, o.id DESC \
                 LIMIT $5",
            )
            .bind(query.after.map(|c| c.at_ms))
            .bind(query.after.map(|c| c.id.to_string()))
            .bind(query.agent_id.map(|id| id.to_string()))
            .bind(query.product.as_deref())
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let items = rows
            .into_iter()
            .map(ObservationRow::into_observation)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page(items, limit, |o| PageCursor {
            at_ms: o.observed_at_ms,
            id: o.id,
        }))
    }

    /// Alerts, newest `last_seen` first, filtered by status and product, paged; suppressed alerts
    /// are left out (`list_alerts_filtered` has every filter).
    pub async fn list_alerts(&self, query: &AlertQuery) -> Result<Page<Alert>, StoreError> {
        self.list_alerts_filtered(query, &AlertFilters::default())
            .await
    }

    // ---------------------------------------------------------------- users, sessions, API keys

    /// Adds a dashboard user. `Conflict` when the name is taken.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<Uuid, StoreError> {
        if name.is_empty() || name.len() > MAX_USER_NAME || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                what: "user name must be 1 to 128 bytes without control characters",
            });
        }
        let id = Uuid::now_v7();
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO users (id, name, role, password_hash, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(name)
            .bind(role.as_str())
            .bind(password_hash)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(StoreError::entity("user"))?;
        });
        Ok(id)
    }

    /// How many users exist.
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?
        });
        Ok(count)
    }

    /// A user by login name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        if name.len() > MAX_USER_NAME {
            return Ok(None);
        }
        let row: Option<(String, String, String, String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, name, role, password_hash, disabled_at_ms FROM users WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        let Some((id, name, role, password_hash, disabled_at_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(User {
            id: rows::uuid(&id)?,
            name,
            role: rows::role(&role)?,
            password_hash,
            disabled: disabled_at_ms.is_some(),
        }))
    }

    /// Stores a login session.
    pub async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (token_sha256, user_id, csrf_token, created_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&session.token_sha256)
            .bind(session.user_id.to_string())
            .bind(&session.csrf_token)
            .bind(session.created_at_ms)
            .bind(session.expires_at_ms)
            .execute(pool)
            .await
            .map_err(StoreError::entity("session"))?;
        });
        Ok(())
    }

    /// The live session with this token hash: not expired, user not disabled.
    pub async fn session(
        &self,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<SessionUser>, StoreError> {
        let row: Option<(String, String, String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT u.id, u.name, u.role, s.csrf_token, s.expires_at_ms \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_sha256 = $1 AND s.expires_at_ms > $2 AND u.disabled_at_ms IS NULL",
            )
            .bind(token_sha256)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
        });
        let Some((user_id, user_name, role, csrf_token, expires_at_ms)) = row else {
            return Ok(None);
        };
        Ok(Some(SessionUser {
            user_id: rows::uuid(&user_id)?,
            user_name,
            role: rows::role(&role)?,
            csrf_token,
            expires_at_ms,
        }))
    }

    /// Ends a session (logout). Ending an unknown session is not an error.
    pub async fn delete_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1").bind(token_sha256).execute(pool).await?;
        });
        Ok(())
    }

    /// Forgets expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self, now_ms: i64) -> Result<u64, StoreError> {
        let deleted = on_write_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }

    /// Stores an API key (only its SHA-256, hex, of the whole token text).
    pub async fn create_api_key(
        &self,
        name: &str,
        role: Role,
        key_sha256: &str,
        now_ms: i64,
    ) -> Result<Uuid, StoreError> {
        if name.len() > MAX_USER_NAME || name.chars().any(char::is_control) {
            return Err(StoreError::Invalid {
                what: "key name must be at most 128 bytes without control characters",
            });
        }
        let id = Uuid::now_v7();
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, name, role, key_sha256, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.to_string())
            .bind(name)
            .bind(role.as_str())
            .bind(key_sha256)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(StoreError::entity("api key"))?;
        });
        Ok(id)
    }

    /// The unrevoked API key with this hash; notes its use (at most once a minute, to keep reads
    /// from turning into a write per request).
    pub async fn use_api_key(
        &self,
        key_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<ApiKeyIdentity>, StoreError> {
        let row: Option<(String, String, String, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, role, last_used_ms FROM api_keys WHERE key_sha256 = $1 AND revoked_at_ms IS NULL",
            )
            .bind(key_sha256)
            .fetch_optional(pool)
            .await?
        });
        let Some((id, name, role, last_used_ms)) = row else {
            return Ok(None);
        };
        if last_used_ms.is_none_or(|last| now_ms - last >= 60_000) {
            on_write_pool!(self, pool => {
                sqlx::query("UPDATE api_keys SET last_used_ms = $1 WHERE id = $2")
                    .bind(now_ms)
                    .bind(&id)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(Some(ApiKeyIdentity {
            id: rows::uuid(&id)?,
            name,
            role: rows::role(&role)?,
        }))
    }

    /// Revokes an API key.
    pub async fn revoke_api_key(&self, id: Uuid, now_ms: i64) -> Result<(), StoreError> {
        let updated = on_write_pool!(self, pool => {
            sqlx::query("UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $1) WHERE id = $2")
                .bind(now_ms)
                .bind(id.to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound { entity: "api key" });
        }
        Ok(())
    }
}

/// Longest user or API key name.
const MAX_USER_NAME: usize = 128;

/// Compares two hex digests without an early exit on the first difference.
fn is_same_secret(stored: &str, presented: &str) -> bool {
    stored.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Why an enrollment token that could not be spent was refused. Anyone without the right secret
/// learns only "unknown".
fn refusal(token: Option<&TokenRow>, presented_secret: &str, now_ms: i64) -> StoreError {
    let Some(token) = token else {
        return StoreError::TokenUnknown;
    };
    if !is_same_secret(&token.secret_sha256, presented_secret) {
        StoreError::TokenUnknown
    } else if token.revoked_at_ms.is_some() {
        StoreError::TokenRevoked
    } else if token.expires_at_ms.is_some_and(|expires| now_ms >= expires) {
        StoreError::TokenExpired
    } else if token.max_uses.is_some_and(|max| token.uses >= max) {
        StoreError::TokenUsedUp
    } else {
        // The UPDATE refused a token that now looks spendable: only a concurrent change explains it.
        StoreError::TokenUsedUp
    }
}

/// Cuts one extra fetched row off and turns it into the next page's cursor.
fn page<T>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> PageCursor) -> Page<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}
