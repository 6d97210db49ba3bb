//! Policy records (sanctions, tenant rules, severity overrides, suppressions, settings) and their
//! audit trail.
//!
//! Architecture invariants:
//! - Every change runs in one transaction whose first statement writes, together with exactly one
//!   `policy_changes` row written by [`audit`] (who, when, from where, before and after as JSON).
//!   `audit` is the only writer of that table, so that the evidence chain can link its rows in one
//!   place.
//! - Readers get a [`PolicySnapshot`] cached in memory for [`POLICY_REFRESH`]; a change made through
//!   this `Store` drops the cache at once, changes by other collectors sharing the database are
//!   seen within `POLICY_REFRESH`.
//! - Input is validated by `policy::admin` before it gets here; the store still binds every value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::{Backend, Store, StoreError, rows};
use crate::policy::rules::{
    PolicySnapshot, Sanction, Settings, Severity, SeverityOverride, Suppression, TenantRule,
};

/// How long a policy snapshot is used before it is read again.
pub const POLICY_REFRESH: Duration = Duration::from_secs(5);

/// The cached snapshot: when it was read, and what.
#[derive(Debug, Default)]
pub(super) struct PolicyCache {
    snapshot: std::sync::Mutex<Option<(Instant, Arc<PolicySnapshot>)>>,
}

impl PolicyCache {
    fn get(&self) -> Option<Arc<PolicySnapshot>> {
        let cache = self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .as_ref()
            .filter(|(at, _)| at.elapsed() < POLICY_REFRESH)
            .map(|(_, snapshot)| snapshot.clone())
    }

    fn put(&self, snapshot: Arc<PolicySnapshot>) {
        *self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), snapshot));
    }

    pub(super) fn invalidate(&self) {
        *self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Who changes the policy, and from where (an address, `cli`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyActor {
    /// `user:NAME`, `apikey:NAME` or `cli`.
    pub who: String,
    /// The remote address of the API call, or `local` for the CLI.
    pub from: String,
}

/// One audited policy change, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyChange {
    pub id: Uuid,
    pub at_ms: i64,
    pub actor: String,
    pub source: String,
    /// `sanction.add`, `sanction.remove`, `tenant.add`, ...
    pub kind: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A new sanction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSanction {
    pub product: String,
    pub category: String,
    pub group: String,
    pub note: String,
}

/// A new tenant rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenantRule {
    pub product: String,
    pub tenant: String,
    pub group: String,
    pub note: String,
}

/// A new severity override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSeverityOverride {
    pub reason: String,
    pub product: String,
    pub group: String,
    pub severity: Severity,
    pub note: String,
}

/// A new suppression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSuppression {
    pub reason: String,
    pub product: String,
    pub group: String,
    pub agent_id: String,
    pub owner: String,
    pub note: String,
    pub expires_at_ms: i64,
}

/// Writes the one `policy_changes` row of a change, inside the change's transaction. The only
/// writer of that table.
pub(crate) async fn audit<'t, DB>(
    tx: &mut sqlx::Transaction<'t, DB>,
    actor: &PolicyActor,
    kind: &str,
    before: Option<&serde_json::Value>,
    after: Option<&serde_json::Value>,
    now_ms: i64,
) -> Result<Uuid, StoreError>
where
    DB: sqlx::Database,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'x> sqlx::Transaction<'x, DB>: super::chain::ChainTx,
{
    let id = Uuid::now_v7();
    let before = before.map(serde_json::Value::to_string);
    let after = after.map(serde_json::Value::to_string);
    sqlx::query::<DB>(
        "INSERT INTO policy_changes (id, at_ms, actor, source, change_kind, before_json, after_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id.to_string())
    .bind(now_ms)
    .bind(actor.who.clone())
    .bind(actor.from.clone())
    .bind(kind.to_owned())
    .bind(before.clone())
    .bind(after.clone())
    .execute(&mut **tx)
    .await?;
    // The same record, canonical v1, joins the control chain in the same transaction.
    let mut canonical = super::chain::Canonical::default();
    canonical
        .text("policy_change/v1")
        .text(&id.to_string())
        .int(now_ms)
        .text(&actor.who)
        .text(&actor.from)
        .text(kind)
        .opt_text(before.as_deref())
        .opt_text(after.as_deref());
    super::chain::append_control(
        tx,
        "policy_change",
        &id.to_string(),
        canonical.as_bytes(),
        now_ms,
    )
    .await?;
    Ok(id)
}

fn json_of<T: Serialize>(record: &T) -> serde_json::Value {
    serde_json::to_value(record).unwrap_or(serde_json::Value::Null)
}

#[derive(sqlx::FromRow)]
struct SanctionRow {
    id: String,
    product: String,
    category: String,
    group_name: String,
    note: String,
    created_at_ms: i64,
    created_by: String,
}

impl SanctionRow {
    fn into_record(self) -> Result<Sanction, StoreError> {
        Ok(Sanction {
            id: rows::uuid(&self.id)?,
            product: self.product,
            category: self.category,
            group: self.group_name,
            note: self.note,
            created_at_ms: self.created_at_ms,
            created_by: self.created_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    product: String,
    tenant: String,
    group_name: String,
    note: String,
    created_at_ms: i64,
    created_by: String,
}

impl TenantRow {
    fn into_record(self) -> Result<TenantRule, StoreError> {
        Ok(TenantRule {
            id: rows::uuid(&self.id)?,
            product: self.product,
            tenant: self.tenant,
            group: self.group_name,
            note: self.note,
            created_at_ms: self.created_at_ms,
            created_by: self.created_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OverrideRow {
    id: String,
    reason_id: String,
    product: String,
    group_name: String,
    severity: String,
    note: String,
    created_at_ms: i64,
    created_by: String,
}

impl OverrideRow {
    fn into_record(self) -> Result<SeverityOverride, StoreError> {
        Ok(SeverityOverride {
            id: rows::uuid(&self.id)?,
            reason: self.reason_id,
            product: self.product,
            group: self.group_name,
            severity: self
                .severity
                .parse()
                .map_err(|_| StoreError::Corrupt { what: "severity" })?,
            note: self.note,
            created_at_ms: self.created_at_ms,
            created_by: self.created_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SuppressionRow {
    id: String,
    reason_id: String,
    product: String,
    group_name: String,
    agent_id: String,
    owner: String,
    note: String,
    expires_at_ms: i64,
    created_at_ms: i64,
    created_by: String,
    lifted_at_ms: Option<i64>,
}

impl SuppressionRow {
    fn into_record(self) -> Result<Suppression, StoreError> {
        Ok(Suppression {
            id: rows::uuid(&self.id)?,
            reason: self.reason_id,
            product: self.product,
            group: self.group_name,
            agent_id: self.agent_id,
            owner: self.owner,
            note: self.note,
            expires_at_ms: self.expires_at_ms,
            created_at_ms: self.created_at_ms,
            created_by: self.created_by,
            lifted_at_ms: self.lifted_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ChangeRow {
    id: String,
    at_ms: i64,
    actor: String,
    source: String,
    change_kind: String,
    before_json: Option<String>,
    after_json: Option<String>,
}

fn parse_json(text: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|_| StoreError::Corrupt {
            what: "policy change",
        })
    })
    .transpose()
}

impl Store {
    /// The policy as the rules read it: cached for `POLICY_REFRESH`, read again after a change
    /// made through this store. Suppressions that were lifted or expired before `now_ms` are left
    /// out.
    pub async fn policy_snapshot(&self, now_ms: i64) -> Result<Arc<PolicySnapshot>, StoreError> {
        if let Some(snapshot) = self.policy.get() {
            return Ok(snapshot);
        }
        let snapshot = Arc::new(self.read_policy(now_ms).await?);
        self.policy.put(snapshot.clone());
        Ok(snapshot)
    }

    /// The policy, read from the database now (no cache).
    pub async fn read_policy(&self, now_ms: i64) -> Result<PolicySnapshot, StoreError> {
        let (sanctions, tenants, overrides, suppressions, settings) = on_pool!(self, pool => {
            let sanctions: Vec<SanctionRow> = sqlx::query_as(
                "SELECT id, product, category, group_name, note, created_at_ms, created_by \
                 FROM policy_sanctions ORDER BY product, group_name",
            )
            .fetch_all(pool)
            .await?;
            let tenants: Vec<TenantRow> = sqlx::query_as(
                "SELECT id, product, tenant, group_name, note, created_at_ms, created_by \
                 FROM policy_tenants ORDER BY product, tenant, group_name",
            )
            .fetch_all(pool)
            .await?;
            let overrides: Vec<OverrideRow> = sqlx::query_as(
                "SELECT id, reason_id, product, group_name, severity, note, created_at_ms, created_by \
                 FROM policy_overrides ORDER BY reason_id, product, group_name",
            )
            .fetch_all(pool)
            .await?;
            let suppressions: Vec<SuppressionRow> = sqlx::query_as(
                "SELECT id, reason_id, product, group_name, agent_id, owner, note, expires_at_ms, \
                 created_at_ms, created_by, lifted_at_ms \
                 FROM policy_suppressions WHERE lifted_at_ms IS NULL AND expires_at_ms > $1 \
                 ORDER BY expires_at_ms, id",
            )
            .bind(now_ms)
            .fetch_all(pool)
            .await?;
            let settings: Vec<(String, i64)> =
                sqlx::query_as("SELECT name, value FROM policy_settings ORDER BY name")
                    .fetch_all(pool)
                    .await?;
            (sanctions, tenants, overrides, suppressions, settings)
        });
        let mut parsed = Settings::default();
        for (name, value) in &settings {
            parsed.apply(name, *value);
        }
        Ok(PolicySnapshot {
            sanctions: sanctions
                .into_iter()
                .map(SanctionRow::into_record)
                .collect::<Result<_, _>>()?,
            tenants: tenants
                .into_iter()
                .map(TenantRow::into_record)
                .collect::<Result<_, _>>()?,
            overrides: overrides
                .into_iter()
                .map(OverrideRow::into_record)
                .collect::<Result<_, _>>()?,
            suppressions: suppressions
                .into_iter()
                .map(SuppressionRow::into_record)
                .collect::<Result<_, _>>()?,
            settings: parsed,
        })
    }

    /// Sanctions `product` for a group (`""`: every group). `Conflict` when it already is.
    pub async fn add_sanction(
        &self,
        new: &NewSanction,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<Sanction, StoreError> {
        let record = Sanction {
            id: Uuid::now_v7(),
            product: new.product.clone(),
            category: new.category.clone(),
            group: new.group.clone(),
            note: new.note.clone(),
            created_at_ms: now_ms,
            created_by: actor.who.clone(),
        };
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO policy_sanctions (id, product, category, group_name, note, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(record.id.to_string())
            .bind(&record.product)
            .bind(&record.category)
            .bind(&record.group)
            .bind(&record.note)
            .bind(now_ms)
            .bind(&record.created_by)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("sanction"))?;
            audit(&mut tx, actor, "sanction.add", None, Some(&json_of(&record)), now_ms).await?;
            tx.commit().await?;
        });
        self.policy.invalidate();
        Ok(record)
    }

    /// Withdraws the sanction of `product` for `group`. `NotFound` when there is none.
    pub async fn remove_sanction(
        &self,
        product: &str,
        group: &str,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<Sanction, StoreError> {
        let removed = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<SanctionRow> = sqlx::query_as(
                "DELETE FROM policy_sanctions WHERE product = $1 AND group_name = $2 \
                 RETURNING id, product, category, group_name, note, created_at_ms, created_by",
            )
            .bind(product)
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: "sanction" });
            };
            let removed = row.into_record()?;
            audit(&mut tx, actor, "sanction.remove", Some(&json_of(&removed)), None, now_ms).await?;
            tx.commit().await?;
            removed
        });
        self.policy.invalidate();
        Ok(removed)
    }

    /// Adds a tenant rule. `Conflict` when the same one exists.
    pub async fn add_tenant_rule(
        &self,
        new: &NewTenantRule,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<TenantRule, StoreError> {
        let record = TenantRule {
            id: Uuid::now_v7(),
            product: new.product.clone(),
            tenant: new.tenant.clone(),
            group: new.group.clone(),
            note: new.note.clone(),
            created_at_ms: now_ms,
            created_by: actor.who.clone(),
        };
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO policy_tenants (id, product, tenant, group_name, note, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(record.id.to_string())
            .bind(&record.product)
            .bind(&record.tenant)
            .bind(&record.group)
            .bind(&record.note)
            .bind(now_ms)
            .bind(&record.created_by)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("tenant rule"))?;
            audit(&mut tx, actor, "tenant.add", None, Some(&json_of(&record)), now_ms).await?;
            tx.commit().await?;
        });
        self.policy.invalidate();
        Ok(record)
    }

    /// Adds a severity override. `Conflict` when one exists for the same reason, product and group.
    pub async fn add_severity_override(
        &self,
        new: &NewSeverityOverride,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<SeverityOverride, StoreError> {
        let record = SeverityOverride {
            id: Uuid::now_v7(),
            reason: new.reason.clone(),
            product: new.product.clone(),
            group: new.group.clone(),
            severity: new.severity,
            note: new.note.clone(),
            created_at_ms: now_ms,
            created_by: actor.who.clone(),
        };
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO policy_overrides (id, reason_id, product, group_name, severity, note, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(record.id.to_string())
            .bind(&record.reason)
            .bind(&record.product)
            .bind(&record.group)
            .bind(record.severity.as_str())
            .bind(&record.note)
            .bind(now_ms)
            .bind(&record.created_by)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("severity override"))?;
            audit(&mut tx, actor, "override.add", None, Some(&json_of(&record)), now_ms).await?;
            tx.commit().await?;
        });
        self.policy.invalidate();
        Ok(record)
    }

    /// Removes a tenant rule or a severity override by id. `NotFound` when it does not exist.
    pub async fn remove_policy_rule(
        &self,
        kind: PolicyRuleKind,
        id: Uuid,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<serde_json::Value, StoreError> {
        let removed = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let removed = match kind {
                PolicyRuleKind::Tenant => {
                    let row: Option<TenantRow> = sqlx::query_as(
                        "DELETE FROM policy_tenants WHERE id = $1 \
                         RETURNING id, product, tenant, group_name, note, created_at_ms, created_by",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    row.map(TenantRow::into_record).transpose()?.map(|r| json_of(&r))
                }
                PolicyRuleKind::Override => {
                    let row: Option<OverrideRow> = sqlx::query_as(
                        "DELETE FROM policy_overrides WHERE id = $1 \
                         RETURNING id, reason_id, product, group_name, severity, note, created_at_ms, created_by",
                    )
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                    row.map(OverrideRow::into_record).transpose()?.map(|r| json_of(&r))
                }
            };
            let Some(removed) = removed else {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: kind.entity() });
            };
            audit(&mut tx, actor, kind.remove_kind(), Some(&removed), None, now_ms).await?;
            tx.commit().await?;
            removed
        });
        self.policy.invalidate();
        Ok(removed)
    }

    /// Adds a suppression and applies it to the matching alerts that are not resolved.
    pub async fn add_suppression(
        &self,
        new: &NewSuppression,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<Suppression, StoreError> {
        let record = Suppression {
            id: Uuid::now_v7(),
            reason: new.reason.clone(),
            product: new.product.clone(),
            group: new.group.clone(),
            agent_id: new.agent_id.clone(),
            owner: new.owner.clone(),
            note: new.note.clone(),
            expires_at_ms: new.expires_at_ms,
            created_at_ms: now_ms,
            created_by: actor.who.clone(),
            lifted_at_ms: None,
        };
        let id = record.id.to_string();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO policy_suppressions (id, reason_id, product, group_name, agent_id, owner, note, \
                 expires_at_ms, created_at_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&id)
            .bind(&record.reason)
            .bind(&record.product)
            .bind(&record.group)
            .bind(&record.agent_id)
            .bind(&record.owner)
            .bind(&record.note)
            .bind(record.expires_at_ms)
            .bind(now_ms)
            .bind(&record.created_by)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::entity("suppression"))?;
            sqlx::query(
                "UPDATE alerts SET suppressed_by = $1 \
                 WHERE status <> 'resolved' \
                 AND ($2 = '' OR reason = $2) AND ($3 = '' OR product = $3) \
                 AND ($4 = '' OR agent_id = $4) \
                 AND ($5 = '' OR agent_id IN (SELECT id FROM agents WHERE group_name = $5))",
            )
            .bind(&id)
            .bind(&record.reason)
            .bind(&record.product)
            .bind(&record.agent_id)
            .bind(&record.group)
            .execute(&mut *tx)
            .await?;
            audit(&mut tx, actor, "suppression.add", None, Some(&json_of(&record)), now_ms).await?;
            tx.commit().await?;
        });
        self.policy.invalidate();
        Ok(record)
    }

    /// Lifts a suppression before its expiry; the alerts it covered come back into the open
    /// queue. `NotFound` when there is no such suppression still in force.
    pub async fn lift_suppression(
        &self,
        id: Uuid,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<Suppression, StoreError> {
        let id_text = id.to_string();
        let lifted = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<SuppressionRow> = sqlx::query_as(
                "UPDATE policy_suppressions SET lifted_at_ms = $1, lifted_by = $2 \
                 WHERE id = $3 AND lifted_at_ms IS NULL AND expires_at_ms > $1 \
                 RETURNING id, reason_id, product, group_name, agent_id, owner, note, expires_at_ms, \
                 created_at_ms, created_by, lifted_at_ms",
            )
            .bind(now_ms)
            .bind(&actor.who)
            .bind(&id_text)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: "suppression" });
            };
            let lifted = row.into_record()?;
            sqlx::query("UPDATE alerts SET suppressed_by = NULL WHERE suppressed_by = $1")
                .bind(&id_text)
                .execute(&mut *tx)
                .await?;
            let before = Suppression { lifted_at_ms: None, ..lifted.clone() };
            audit(
                &mut tx,
                actor,
                "suppression.lift",
                Some(&json_of(&before)),
                Some(&json_of(&lifted)),
                now_ms,
            )
            .await?;
            tx.commit().await?;
            lifted
        });
        self.policy.invalidate();
        Ok(lifted)
    }

    /// Sets a numeric policy setting (validated by the caller against `SETTING_SPECS`).
    pub async fn set_policy_setting(
        &self,
        name: &str,
        value: i64,
        actor: &PolicyActor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // A write first (it takes SQLite's lock, even when no row matches); it returns the
            // value before the change.
            let before: Option<i64> = sqlx::query_scalar(
                "UPDATE policy_settings SET updated_at_ms = updated_at_ms WHERE name = $1 RETURNING value",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO policy_settings (name, value, updated_at_ms, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, \
                 updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
            )
            .bind(name)
            .bind(value)
            .bind(now_ms)
            .bind(&actor.who)
            .execute(&mut *tx)
            .await?;
            let before = before.map(|v| serde_json::json!({ "name": name, "value": v }));
            let after = serde_json::json!({ "name": name, "value": value });
            audit(&mut tx, actor, "setting.set", before.as_ref(), Some(&after), now_ms).await?;
            tx.commit().await?;
        });
        self.policy.invalidate();
        Ok(())
    }

    /// Policy changes, newest first, at most `limit` (capped at `MAX_PAGE`), before `before_ms`
    /// when given.
    pub async fn list_policy_changes(
        &self,
        limit: u32,
        before_ms: Option<i64>,
    ) -> Result<Vec<PolicyChange>, StoreError> {
        let limit = limit.clamp(1, super::MAX_PAGE);
        let rows: Vec<ChangeRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, at_ms, actor, source, change_kind, before_json, after_json \
                 FROM policy_changes WHERE ($1 IS NULL OR at_ms < $1) \
                 ORDER BY at_ms DESC, id DESC LIMIT $2",
            )
            .bind(before_ms)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                Ok(PolicyChange {
                    id: rows::uuid(&row.id)?,
                    at_ms: row.at_ms,
                    actor: row.actor,
                    source: row.source,
                    kind: row.change_kind,
                    before: parse_json(row.before_json)?,
                    after: parse_json(row.after_json)?,
                })
            })
            .collect()
    }

    /// Every suppression ever made (lifted and expired ones included), newest first.
    pub async fn list_suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let rows: Vec<SuppressionRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, reason_id, product, group_name, agent_id, owner, note, expires_at_ms, \
                 created_at_ms, created_by, lifted_at_ms FROM policy_suppressions \
                 ORDER BY created_at_ms DESC, id DESC",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(SuppressionRow::into_record).collect()
    }
}

/// Policy rules removed by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRuleKind {
    Tenant,
    Override,
}

impl PolicyRuleKind {
    fn entity(self) -> &'static str {
        match self {
            PolicyRuleKind::Tenant => "tenant rule",
            PolicyRuleKind::Override => "severity override",
        }
    }

    fn remove_kind(self) -> &'static str {
        match self {
            PolicyRuleKind::Tenant => "tenant.remove",
            PolicyRuleKind::Override => "override.remove",
        }
    }
}
