//! Read-only queries behind the dashboard's pages: overview figures, hosts, products, inventory,
//! enrollment tokens and users. Each is one bounded query (a LIMIT or a GROUP BY over alerts,
//! which are few compared with observations); observation reads go through indexes by agent or
//! product.

use uuid::Uuid;

use super::model::{AgentSummary, Role, StoredObservation};
use super::rows::{self, AgentRow, ObservationRow};
use super::{Backend, Store, StoreError};

/// How many alerts exist per severity and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertTally {
    pub severity: String,
    pub status: String,
    pub count: i64,
}

/// A product first seen on the fleet in a time window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductUsage {
    pub product: String,
    pub vendor: String,
    pub category: String,
    pub hosts: i64,
    pub users: i64,
    pub alerts: i64,
    pub unresolved: i64,
    pub observations: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A host with unresolved high or critical alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskyHost {
    pub agent_id: Uuid,
    pub hostname: String,
    pub alerts: i64,
}

/// Alert counts of one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentAlertCounts {
    pub agent_id: Uuid,
    pub alerts: i64,
    pub unresolved: i64,
}

/// A plan and tenant seen for a product, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTenant {
    pub plan: Option<String>,
    pub tenant: Option<String>,
    pub observations: i64,
}

/// An enrollment token as listed to admins (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTokenSummary {
    pub token_id: String,
    pub group: String,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
}

/// A dashboard user as listed to admins (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
}

type ProductRow = (String, String, String, i64, i64, i64, i64, i64, i64, i64);

fn product_usage(row: ProductRow) -> ProductUsage {
    let (product, vendor, category, hosts, users, alerts, unresolved, observations, first, last) =
        row;
    ProductUsage {
        product,
        vendor,
        category,
        hosts,
        users,
        alerts,
        unresolved,
        observations,
        first_seen_ms: first,
        last_seen_ms: last,
    }
}

/// Per-product figures over alerts; `$1` restricts to products first seen at or after it.
/// The columns of `ObservationRow`, from observations `o` joined with their agent `a`.
macro_rules! observation_select {
    () => {
        "SELECT o.id, o.agent_id, a.hostname, o.observed_at_ms, o.received_at_ms, o.signal, o.name, \
         o.product, o.vendor, o.category, o.rule, o.reason, o.risk, o.confidence, o.plan, \
         o.catalog_version, o.count, o.process_pid, o.process_parent_pid, o.process_name, \
         o.process_exe, o.process_cmdline, o.process_user, o.details, o.tenant \
         FROM observations o JOIN agents a ON a.id = o.agent_id"
    };
}

/// Three passes, each over one covering index (migration 0009): the per-product sums, then the
/// distinct (product, host) and (product, user) pairs counted; `COUNT(DISTINCT ...)` in one GROUP
/// BY read every alert row and sorted per group.
const PRODUCT_USAGE: &str = "SELECT p.product, p.vendor, p.category, h.hosts, u.users, p.alerts, \
     p.unresolved, p.observations, p.first_seen_ms, p.last_seen_ms FROM \
     (SELECT product, MIN(vendor) AS vendor, MIN(category) AS category, COUNT(*) AS alerts, \
         SUM(CASE WHEN status <> 'resolved' THEN 1 ELSE 0 END) AS unresolved, \
         CAST(SUM(count) AS BIGINT) AS observations, MIN(first_seen_ms) AS first_seen_ms, \
         MAX(last_seen_ms) AS last_seen_ms \
      FROM alerts GROUP BY product HAVING MIN(first_seen_ms) >= $1) p \
     JOIN (SELECT product, COUNT(*) AS hosts \
         FROM (SELECT DISTINCT product, agent_id FROM alerts) d GROUP BY product) h \
         ON h.product = p.product \
     JOIN (SELECT product, COUNT(*) AS users \
         FROM (SELECT DISTINCT product, user_name FROM alerts) d GROUP BY product) u \
         ON u.product = p.product \
     ORDER BY h.hosts DESC, p.product LIMIT $2";

impl Store {
    /// Alerts counted by severity and status.
    pub async fn alert_tallies(&self) -> Result<Vec<AlertTally>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT severity, status, COUNT(*) FROM alerts GROUP BY severity, status")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(severity, status, count)| AlertTally {
                severity,
                status,
                count,
            })
            .collect())
    }

    /// New alerts per UTC day (days since the Unix epoch) from `since_ms` on.
    pub async fn alerts_per_day(&self, since_ms: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows: Vec<(i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT first_seen_ms / 86400000 AS day, COUNT(*) FROM alerts WHERE first_seen_ms >= $1 \
                 GROUP BY first_seen_ms / 86400000 ORDER BY day",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// Products whose first alert is at or after `since_ms`, most widespread first.
    pub async fn products_first_seen_since(
        &self,
        since_ms: i64,
        limit: u32,
    ) -> Result<Vec<ProductUsage>, StoreError> {
        let rows: Vec<ProductRow> = on_pool!(self, pool => {
            sqlx::query_as(PRODUCT_USAGE)
                .bind(since_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(product_usage).collect())
    }

    /// Every product with alerts, most widespread first.
    pub async fn product_usage(&self, limit: u32) -> Result<Vec<ProductUsage>, StoreError> {
        self.products_first_seen_since(i64::MIN, limit).await
    }

    /// Hosts with the most unresolved high or critical alerts.
    pub async fn risky_hosts(&self, limit: u32) -> Result<Vec<RiskyHost>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT a.id, a.hostname, COUNT(*) FROM alerts l JOIN agents a ON a.id = l.agent_id \
                 WHERE l.status <> 'resolved' AND l.severity IN ('high', 'critical') \
                 GROUP BY a.id, a.hostname ORDER BY COUNT(*) DESC, a.hostname LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, hostname, alerts)| {
                Ok(RiskyHost {
                    agent_id: rows::uuid(&id)?,
                    hostname,
                    alerts,
                })
            })
            .collect()
    }

    /// Alert counts of every agent that has alerts.
    pub async fn alert_counts_by_agent(&self) -> Result<Vec<AgentAlertCounts>, StoreError> {
        let rows: Vec<(String, i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT agent_id, COUNT(*), SUM(CASE WHEN status <> 'resolved' THEN 1 ELSE 0 END) \
                 FROM alerts GROUP BY agent_id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, alerts, unresolved)| {
                Ok(AgentAlertCounts {
                    agent_id: rows::uuid(&id)?,
                    alerts,
                    unresolved,
                })
            })
            .collect()
    }

    /// One agent.
    pub async fn agent_summary(&self, agent_id: Uuid) -> Result<Option<AgentSummary>, StoreError> {
        let row: Option<AgentRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, group_name, hostname, os, os_version, arch, agent_version, catalog_version, \
                 enrolled_at_ms, last_contact_ms, health, revoked_at_ms FROM agents WHERE id = $1",
            )
            .bind(agent_id.to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(AgentRow::into_summary).transpose()
    }

    /// An agent's newest inventory observations (config files, MCP servers, apps, listeners).
    pub async fn agent_inventory(
        &self,
        agent_id: Uuid,
        limit: u32,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let rows: Vec<ObservationRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT o.id, o.agent_id, a.hostname, o.observed_at_ms, o.received_at_ms, o.signal, o.name, \
                 o.product, o.vendor, o.category, o.rule, o.reason, o.risk, o.confidence, o.plan, \
                 o.catalog_version, o.count, o.process_pid, o.process_parent_pid, o.process_name, \
                 o.process_exe, o.process_cmdline, o.process_user, o.details, o.tenant \
                 FROM observations o JOIN agents a ON a.id = o.agent_id \
                 WHERE o.agent_id = $1 AND o.signal IN ('config', 'app', 'listener') \
                 ORDER BY o.observed_at_ms DESC, o.id DESC LIMIT $2",
            )
            .bind(agent_id.to_string())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(ObservationRow::into_observation)
            .collect()
    }

    /// An agent's newest observations, of one product or of all, newest first. Static conditions
    /// (no `$n IS NULL OR`) so that the (agent, product, time) and (agent, time) indexes serve them.
    pub async fn agent_observations(
        &self,
        agent_id: Uuid,
        product: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredObservation>, StoreError> {
        let agent = agent_id.to_string();
        let limit = i64::from(limit);
        let rows: Vec<ObservationRow> = on_pool!(self, pool => {
            match product {
                Some(product) => sqlx::query_as(concat!(
                    observation_select!(),
                    " WHERE o.agent_id = $1 AND o.product = $2 \
                     ORDER BY o.observed_at_ms DESC, o.id DESC LIMIT $3"
                ))
                .bind(&agent)
                .bind(product)
                .bind(limit)
                .fetch_all(pool)
                .await?,
                None => sqlx::query_as(concat!(
                    observation_select!(),
                    " WHERE o.agent_id = $1 ORDER BY o.observed_at_ms DESC, o.id DESC LIMIT $2"
                ))
                .bind(&agent)
                .bind(limit)
                .fetch_all(pool)
                .await?,
            }
        });
        rows.into_iter()
            .map(ObservationRow::into_observation)
            .collect()
    }

    /// Plans and tenants seen for `product` since `since_ms`.
    pub async fn product_plans(
        &self,
        product: &str,
        since_ms: i64,
    ) -> Result<Vec<PlanTenant>, StoreError> {
        let rows: Vec<(Option<String>, Option<String>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT plan, tenant, COUNT(*) FROM observations \
                 WHERE product = $1 AND observed_at_ms >= $2 \
                 GROUP BY plan, tenant ORDER BY COUNT(*) DESC LIMIT 100",
            )
            .bind(product)
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(plan, tenant, observations)| PlanTenant {
                plan,
                tenant,
                observations,
            })
            .collect())
    }

    /// Enrollment tokens, newest first.
    pub async fn list_enrollment_tokens(
        &self,
        limit: u32,
    ) -> Result<Vec<EnrollmentTokenSummary>, StoreError> {
        type Row = (
            String,
            String,
            Option<i64>,
            Option<i64>,
            i64,
            i64,
            String,
            Option<i64>,
        );
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, group_name, expires_at_ms, max_uses, uses, created_at_ms, created_by, revoked_at_ms \
                 FROM enrollment_tokens ORDER BY created_at_ms DESC, id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(
                    token_id,
                    group,
                    expires_at_ms,
                    max_uses,
                    uses,
                    created_at_ms,
                    created_by,
                    revoked_at_ms,
                )| {
                    EnrollmentTokenSummary {
                        token_id,
                        group,
                        expires_at_ms,
                        max_uses,
                        uses,
                        created_at_ms,
                        created_by,
                        revoked_at_ms,
                    }
                },
            )
            .collect())
    }

    /// Dashboard users by name.
    pub async fn list_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let rows: Vec<(String, String, String, i64, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, role, created_at_ms, disabled_at_ms FROM users ORDER BY name LIMIT 10000",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, name, role, created_at_ms, disabled_at_ms)| {
                Ok(UserSummary {
                    id: rows::uuid(&id)?,
                    name,
                    role: rows::role(&role)?,
                    created_at_ms,
                    disabled_at_ms,
                })
            })
            .collect()
    }

    /// Disables a user (their sessions stop working at once) or enables them again.
    pub async fn set_user_disabled(
        &self,
        user_id: Uuid,
        disabled: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let disabled_at = disabled.then_some(now_ms);
        let updated = on_write_pool!(self, pool => {
            sqlx::query("UPDATE users SET disabled_at_ms = $1 WHERE id = $2")
                .bind(disabled_at)
                .bind(user_id.to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound { entity: "user" });
        }
        Ok(())
    }
}
