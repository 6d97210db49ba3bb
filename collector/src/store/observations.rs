//! Storing a report batch: the observations, their findings and the alerts the policy raises, in
//! one transaction.
//!
//! Per batch the work is: one statement for the agent (which also takes the write lock and, on
//! PostgreSQL, the agent row's lock, so batches of one agent never interleave), one multi-row INSERT
//! per 500 observations, one upsert per distinct finding (plus one UPDATE when its risk flags grew), and one
//! statement per distinct (product, reason) alert (plus a bounded number of evidence links). The
//! alert policy itself runs in memory (`policy::rules`) against a cached policy snapshot.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::bulk::InsertObservationRows as _;
use super::{Backend, IngestOutcome, NewObservation, Store, StoreError, rows};
use crate::policy::rules::{self, AlertAction, FindingState, Firing, Reason, Severity};

/// Most observations linked to one alert in `alert_observations` (the alert row keeps the first and
/// the latest as well, however many there are).
pub const MAX_ALERT_LINKS: i64 = 32;

/// SQL giving a severity column a rank, so that the higher one can be kept.
macro_rules! rank {
    ($column:literal) => {
        concat!(
            "(CASE ", $column,
            " WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END)"
        )
    };
}

const RAISE_ALERT: &str = concat!(
    "INSERT INTO alerts (id, agent_id, product, reason, severity, status, title, vendor, category, rule, \
     user_name, process_pid, process_name, process_exe, process_cmdline, first_seen_ms, last_seen_ms, \
     count, first_observation_id, last_observation_id, explanation, suppressed_by) \
     VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19, $20, $21) \
     ON CONFLICT (agent_id, product, reason) WHERE status <> 'resolved' DO UPDATE SET \
     count = alerts.count + excluded.count, \
     severity = CASE WHEN ",
    rank!("excluded.severity"),
    " > ",
    rank!("alerts.severity"),
    " THEN excluded.severity ELSE alerts.severity END, \
     first_observation_id = CASE WHEN excluded.first_seen_ms < alerts.first_seen_ms \
         THEN excluded.first_observation_id ELSE alerts.first_observation_id END, \
     first_seen_ms = CASE WHEN excluded.first_seen_ms < alerts.first_seen_ms \
         THEN excluded.first_seen_ms ELSE alerts.first_seen_ms END, \
     last_observation_id = CASE WHEN excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.last_observation_id ELSE alerts.last_observation_id END, \
     title = CASE WHEN excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.title ELSE alerts.title END, \
     explanation = CASE WHEN excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.explanation ELSE alerts.explanation END, \
     rule = CASE WHEN excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.rule ELSE alerts.rule END, \
     user_name = CASE WHEN excluded.process_pid IS NOT NULL AND excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.user_name ELSE alerts.user_name END, \
     process_pid = CASE WHEN excluded.process_pid IS NOT NULL AND excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.process_pid ELSE alerts.process_pid END, \
     process_name = CASE WHEN excluded.process_pid IS NOT NULL AND excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.process_name ELSE alerts.process_name END, \
     process_exe = CASE WHEN excluded.process_pid IS NOT NULL AND excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.process_exe ELSE alerts.process_exe END, \
     process_cmdline = CASE WHEN excluded.process_pid IS NOT NULL AND excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.process_cmdline ELSE alerts.process_cmdline END, \
     last_seen_ms = CASE WHEN excluded.last_seen_ms >= alerts.last_seen_ms \
         THEN excluded.last_seen_ms ELSE alerts.last_seen_ms END, \
     suppressed_by = excluded.suppressed_by \
     RETURNING id, count"
);

/// The same changes as the upsert above, for an alert that must already be open: $1 agent,
/// $2 product, $3 reason, $4 severity, $5 title, $6 rule, $7 user, $8..$11 process pid, name, exe,
/// cmdline, $12 first seen, $13 last seen, $14 count, $15 first and $16 last observation id,
/// $17 explanation, $18 suppression.
const BUMP_ALERT: &str = concat!(
    "UPDATE alerts SET \
     count = count + $14, \
     severity = CASE WHEN ",
    rank!("$4"),
    " > ",
    rank!("severity"),
    " THEN $4 ELSE severity END, \
     first_observation_id = CASE WHEN $12 < first_seen_ms THEN $15 ELSE first_observation_id END, \
     first_seen_ms = CASE WHEN $12 < first_seen_ms THEN $12 ELSE first_seen_ms END, \
     last_observation_id = CASE WHEN $13 >= last_seen_ms THEN $16 ELSE last_observation_id END, \
     title = CASE WHEN $13 >= last_seen_ms THEN $5 ELSE title END, \
     explanation = CASE WHEN $13 >= last_seen_ms THEN $17 ELSE explanation END, \
     rule = CASE WHEN $13 >= last_seen_ms THEN $6 ELSE rule END, \
     user_name = CASE WHEN $8 IS NOT NULL AND $13 >= last_seen_ms THEN $7 ELSE user_name END, \
     process_pid = CASE WHEN $8 IS NOT NULL AND $13 >= last_seen_ms THEN $8 ELSE process_pid END, \
     process_name = CASE WHEN $8 IS NOT NULL AND $13 >= last_seen_ms THEN $9 ELSE process_name END, \
     process_exe = CASE WHEN $8 IS NOT NULL AND $13 >= last_seen_ms THEN $10 ELSE process_exe END, \
     process_cmdline = CASE WHEN $8 IS NOT NULL AND $13 >= last_seen_ms THEN $11 ELSE process_cmdline END, \
     last_seen_ms = CASE WHEN $13 >= last_seen_ms THEN $13 ELSE last_seen_ms END, \
     suppressed_by = $18 \
     WHERE agent_id = $1 AND product = $2 AND reason = $3 AND status <> 'resolved' \
     RETURNING id, count"
);

/// Findings per multi-row upsert (17 parameters each).
const FINDING_CHUNK: usize = 500;

/// The multi-row finding upsert: this head, one VALUES tuple per finding, then `UPSERT_FINDING`.
const INSERT_FINDINGS: &str = "INSERT INTO findings (id, agent_id, user_name, product, signal, subject, \
     vendor, category, rule, first_seen_ms, last_seen_ms, count, first_observation_id, last_observation_id, \
     risk, plan, tenant) ";

/// Adds to an existing finding; returns each finding's key, its new count and its stored risk
/// flags (the update leaves them alone: they are merged afterwards when they grew).
const UPSERT_FINDING: &str = " ON CONFLICT (agent_id, user_name, product, signal, subject) DO UPDATE SET \
     count = findings.count + excluded.count, \
     first_observation_id = CASE WHEN excluded.first_seen_ms < findings.first_seen_ms \
         THEN excluded.first_observation_id ELSE findings.first_observation_id END, \
     first_seen_ms = CASE WHEN excluded.first_seen_ms < findings.first_seen_ms \
         THEN excluded.first_seen_ms ELSE findings.first_seen_ms END, \
     last_observation_id = CASE WHEN excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.last_observation_id ELSE findings.last_observation_id END, \
     vendor = CASE WHEN excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.vendor ELSE findings.vendor END, \
     category = CASE WHEN excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.category ELSE findings.category END, \
     rule = CASE WHEN excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.rule ELSE findings.rule END, \
     plan = CASE WHEN excluded.plan IS NOT NULL AND excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.plan ELSE findings.plan END, \
     tenant = CASE WHEN excluded.tenant IS NOT NULL AND excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.tenant ELSE findings.tenant END, \
     last_seen_ms = CASE WHEN excluded.last_seen_ms >= findings.last_seen_ms \
         THEN excluded.last_seen_ms ELSE findings.last_seen_ms END \
     RETURNING user_name, product, signal, subject, count, risk";

/// The finding key of an observation: (user, product, signal, subject).
fn finding_key(o: &NewObservation) -> (&str, &str, &'static str, &str) {
    (
        o.process.as_ref().map_or("", |p| p.user.as_str()),
        o.product.as_str(),
        o.signal.as_str(),
        rules::mcp_server(o).unwrap_or(""),
    )
}

/// The stored observations of one finding in this batch, in batch order.
struct FindingBatch<'a> {
    observations: Vec<&'a NewObservation>,
    count: i64,
    risk: BTreeSet<&'a str>,
    first: &'a NewObservation,
    last: &'a NewObservation,
    /// The latest observation that names a plan / a tenant.
    plan: Option<&'a str>,
    tenant: Option<&'a str>,
}

fn group_findings<'a>(stored: &[&'a NewObservation]) -> Vec<FindingBatch<'a>> {
    let mut index: HashMap<(&str, &str, &str, &str), usize> = HashMap::new();
    let mut groups: Vec<FindingBatch<'a>> = Vec::new();
    for &o in stored {
        let position = *index.entry(finding_key(o)).or_insert_with(|| {
            groups.push(FindingBatch {
                observations: Vec::new(),
                count: 0,
                risk: BTreeSet::new(),
                first: o,
                last: o,
                plan: None,
                tenant: None,
            });
            groups.len() - 1
        });
        let group = &mut groups[position];
        group.observations.push(o);
        group.count += i64::from(o.count);
        group.risk.extend(o.risk.iter().map(String::as_str));
        if o.observed_at_ms < group.first.observed_at_ms {
            group.first = o;
        }
        if o.observed_at_ms >= group.last.observed_at_ms {
            group.last = o;
        }
        let latest_plan = group.plan.is_none() || o.observed_at_ms >= group.last.observed_at_ms;
        if let Some(plan) = o.plan.as_deref().filter(|_| latest_plan) {
            group.plan = Some(plan);
        }
        if let Some(tenant) = o.tenant.as_deref().filter(|_| latest_plan) {
            group.tenant = Some(tenant);
        }
    }
    groups
}

/// The firings of one (product, reason) in this batch, merged.
struct AlertBatch<'a> {
    reason: Reason,
    product: &'a str,
    firing: Firing,
    severity: Severity,
    count: i64,
    first: &'a NewObservation,
    last: &'a NewObservation,
    /// The latest action's title and explanation.
    title: String,
    explanation: String,
    /// The latest observation attributed to a process.
    with_process: Option<&'a NewObservation>,
    /// Up to `MAX_ALERT_LINKS` observation ids, in batch order.
    linked: Vec<Uuid>,
    suppressed_by: Option<String>,
}

#[derive(Default)]
struct AlertBatches<'a> {
    index: HashMap<(&'a str, Reason), usize>,
    list: Vec<AlertBatch<'a>>,
}

impl<'a> AlertBatches<'a> {
    fn add(&mut self, o: &'a NewObservation, action: AlertAction, suppressed_by: Option<String>) {
        let key = (o.product.as_str(), action.reason);
        let Some(&position) = self.index.get(&key) else {
            self.index.insert(key, self.list.len());
            self.list.push(AlertBatch {
                reason: action.reason,
                product: o.product.as_str(),
                firing: action.firing,
                severity: action.severity,
                count: 1,
                first: o,
                last: o,
                title: action.title,
                explanation: action.explanation,
                with_process: o.process.is_some().then_some(o),
                linked: vec![o.id],
                suppressed_by,
            });
            return;
        };
        let batch = &mut self.list[position];
        batch.count += 1;
        if action.firing == Firing::Raise {
            batch.firing = Firing::Raise;
        }
        batch.severity = batch.severity.max(action.severity);
        if o.observed_at_ms < batch.first.observed_at_ms {
            batch.first = o;
        }
        if o.observed_at_ms >= batch.last.observed_at_ms {
            batch.last = o;
            batch.title = action.title;
            batch.explanation = action.explanation;
            batch.suppressed_by = suppressed_by;
        }
        if o.process.is_some()
            && batch
                .with_process
                .is_none_or(|p| o.observed_at_ms >= p.observed_at_ms)
        {
            batch.with_process = Some(o);
        }
        if (batch.linked.len() as i64) < MAX_ALERT_LINKS {
            batch.linked.push(o.id);
        }
    }
}

impl Store {
    /// Stores a batch in one transaction: each observation once by id (an id already stored, by
    /// this agent or another, is a duplicate and left untouched), the agent's last contact, the
    /// findings of the newly stored observations, and the alerts the policy raises or bumps for
    /// them (`policy::rules::evaluate`; one open alert per host × product × reason).
    pub async fn insert_observations(
        &self,
        agent_id: Uuid,
        batch: &[NewObservation],
        now_ms: i64,
    ) -> Result<IngestOutcome, StoreError> {
        let policy = self.policy_snapshot(now_ms).await?;
        let agent = agent_id.to_string();
        let mut outcome = IngestOutcome::default();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let group: Option<String> = sqlx::query_scalar(
                "UPDATE agents SET last_contact_ms = CASE WHEN $1 > last_contact_ms THEN $1 ELSE last_contact_ms END \
                 WHERE id = $2 RETURNING group_name",
            )
            .bind(now_ms)
            .bind(&agent)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(group) = group else {
                tx.rollback().await?;
                return Err(StoreError::NotFound { entity: "agent" });
            };
            // Multi-row INSERTs (store/bulk.rs): RETURNING names the rows this call stored (an id
            // already stored, by this agent or another, is left untouched and not returned).
            let mut inserted_ids: HashSet<Uuid> = tx
                .insert_observation_rows(&agent, batch, now_ms)
                .await?
                .into_iter()
                .collect();
            let mut stored: Vec<&NewObservation> = Vec::with_capacity(batch.len());
            let mut chained: Vec<Uuid> = Vec::with_capacity(batch.len());
            for observation in batch {
                // `remove`: an id twice in one batch is stored once, the second is a duplicate.
                if !inserted_ids.remove(&observation.id) {
                    outcome.duplicates += 1;
                    continue;
                }
                outcome.inserted += 1;
                chained.push(observation.id);
                if !observation.product.is_empty() {
                    stored.push(observation);
                }
            }

            let mut alerts = AlertBatches::default();
            let findings = group_findings(&stored);
            let mut upserted: HashMap<(String, String, String, String), (i64, String)> =
                HashMap::with_capacity(findings.len());
            for chunk in findings.chunks(FINDING_CHUNK) {
                let texts: Vec<(String, String, String, String)> = chunk
                    .iter()
                    .map(|f| {
                        let risk: Vec<String> = f.risk.iter().map(|r| (*r).to_owned()).collect();
                        (
                            Uuid::now_v7().to_string(),
                            f.first.id.to_string(),
                            f.last.id.to_string(),
                            rows::json_list(&risk),
                        )
                    })
                    .collect();
                let mut upsert = sqlx::QueryBuilder::new(INSERT_FINDINGS);
                upsert.push_values(chunk.iter().zip(&texts), |mut row, (f, (id, first, last, risk))| {
                    let (user, product, signal, subject) = finding_key(f.first);
                    row.push_bind(id)
                        .push_bind(&agent)
                        .push_bind(user)
                        .push_bind(product)
                        .push_bind(signal)
                        .push_bind(subject)
                        .push_bind(&f.last.vendor)
                        .push_bind(&f.last.category)
                        .push_bind(&f.last.rule)
                        .push_bind(f.first.observed_at_ms)
                        .push_bind(f.last.observed_at_ms)
                        .push_bind(f.count)
                        .push_bind(first)
                        .push_bind(last)
                        .push_bind(risk)
                        .push_bind(f.plan)
                        .push_bind(f.tenant);
                });
                upsert.push(UPSERT_FINDING);
                let rows: Vec<(String, String, String, String, i64, String)> =
                    upsert.build_query_as().fetch_all(&mut *tx).await?;
                for (user, product, signal, subject, count, risk) in rows {
                    upserted.insert((user, product, signal, subject), (count, risk));
                }
            }
            for finding in findings {
                let (user, product, signal, subject) = finding_key(finding.first);
                let risk: Vec<String> = finding.risk.iter().map(|r| (*r).to_owned()).collect();
                let key = (user.to_owned(), product.to_owned(), signal.to_owned(), subject.to_owned());
                let Some((count, stored_risk)) = upserted.remove(&key) else {
                    return Err(StoreError::Corrupt { what: "finding upsert" });
                };
                let count_before = count - finding.count;
                let is_new = count_before == 0;
                let mut known_risk: BTreeSet<String> = if is_new {
                    BTreeSet::new()
                } else {
                    serde_json::from_str(&stored_risk)
                        .map_err(|_| StoreError::Corrupt { what: "finding risk" })?
                };
                if !is_new && !finding.risk.iter().all(|r| known_risk.contains(*r)) {
                    let merged: Vec<String> = known_risk
                        .iter()
                        .cloned()
                        .chain(risk.iter().cloned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    sqlx::query(
                        "UPDATE findings SET risk = $1 WHERE agent_id = $2 AND user_name = $3 \
                         AND product = $4 AND signal = $5 AND subject = $6",
                    )
                    .bind(rows::json_list(&merged))
                    .bind(&agent)
                    .bind(user)
                    .bind(product)
                    .bind(signal)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await?;
                }
                let mut running = count_before;
                for (position, &o) in finding.observations.iter().enumerate() {
                    let new_risk: Vec<String> = o
                        .risk
                        .iter()
                        .filter(|r| !known_risk.contains(*r))
                        .cloned()
                        .collect();
                    let state = FindingState {
                        is_new: is_new && position == 0,
                        count_before: running,
                        count_after: running + i64::from(o.count),
                        new_risk,
                    };
                    running = state.count_after;
                    known_risk.extend(o.risk.iter().cloned());
                    for action in rules::evaluate(o, &group, &state, &policy) {
                        let suppressed_by = policy
                            .suppression(action.reason, &o.product, &group, &agent, now_ms)
                            .map(|s| s.id.to_string());
                        alerts.add(o, action, suppressed_by);
                    }
                }
            }

            for alert in &alerts.list {
                let process = alert.with_process.and_then(|o| o.process.as_ref());
                let row: Option<(String, i64)> = match alert.firing {
                    Firing::Raise => Some(
                        sqlx::query_as(RAISE_ALERT)
                            .bind(Uuid::now_v7().to_string())
                            .bind(&agent)
                            .bind(alert.product)
                            .bind(alert.reason.as_str())
                            .bind(alert.severity.as_str())
                            .bind(&alert.title)
                            .bind(&alert.last.vendor)
                            .bind(&alert.last.category)
                            .bind(&alert.last.rule)
                            .bind(process.map_or("", |p| p.user.as_str()))
                            .bind(process.map(|p| i64::from(p.pid)))
                            .bind(process.map(|p| p.name.as_str()))
                            .bind(process.map(|p| p.exe.as_str()))
                            .bind(process.map(|p| p.cmdline.as_str()))
                            .bind(alert.first.observed_at_ms)
                            .bind(alert.last.observed_at_ms)
                            .bind(alert.count)
                            .bind(alert.first.id.to_string())
                            .bind(alert.last.id.to_string())
                            .bind(&alert.explanation)
                            .bind(alert.suppressed_by.as_deref())
                            .fetch_one(&mut *tx)
                            .await?,
                    ),
                    Firing::Bump => sqlx::query_as(BUMP_ALERT)
                        .bind(&agent)
                        .bind(alert.product)
                        .bind(alert.reason.as_str())
                        .bind(alert.severity.as_str())
                        .bind(&alert.title)
                        .bind(&alert.last.rule)
                        .bind(process.map_or("", |p| p.user.as_str()))
                        .bind(process.map(|p| i64::from(p.pid)))
                        .bind(process.map(|p| p.name.as_str()))
                        .bind(process.map(|p| p.exe.as_str()))
                        .bind(process.map(|p| p.cmdline.as_str()))
                        .bind(alert.first.observed_at_ms)
                        .bind(alert.last.observed_at_ms)
                        .bind(alert.count)
                        .bind(alert.first.id.to_string())
                        .bind(alert.last.id.to_string())
                        .bind(&alert.explanation)
                        .bind(alert.suppressed_by.as_deref())
                        .fetch_optional(&mut *tx)
                        .await?,
                };
                let Some((alert_id, count)) = row else {
                    continue;
                };
                let count_before = count - alert.count;
                if alert.firing == Firing::Raise && count_before == 0 {
                    outcome.alerts_raised += 1;
                }
                let room = (MAX_ALERT_LINKS - count_before).max(0) as usize;
                let links: Vec<String> =
                    alert.linked.iter().take(room).map(Uuid::to_string).collect();
                if !links.is_empty() {
                    // One statement for all links; the SQL text holds only placeholders.
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO alert_observations (alert_id, observation_id) ",
                    );
                    insert.push_values(&links, |mut row, observation_id| {
                        row.push_bind(&alert_id).push_bind(observation_id);
                    });
                    insert.push(" ON CONFLICT DO NOTHING");
                    insert.build().execute(&mut *tx).await?;
                }
            }
            // The leadership report's daily roll-up (store/report.rs), in the same transaction.
            super::report::add_usage_days(&mut tx, &agent, &stored).await?;
            // The stored observations join the agent's evidence chain in the same transaction.
            super::chain::link_observations(&mut tx, agent_id, now_ms, &chained).await?;
            tx.commit().await?;
        });
        Ok(outcome)
    }
}
