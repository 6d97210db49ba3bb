//! The queries behind the leadership report (`crate::report`). Each reduces the evidence in SQL to
//! a few rows per host and product; `crate::report::data` turns those into figures.
//!
//! Every query takes the period `[since_ms, until_ms)` and an optional group, bound as parameters.
//!
//! Product use is read from the daily roll-up `report_usage_days` (migration 0008) for the whole
//! UTC days of the period, and from raw observations only for the partial days at its ends; the
//! roll-up is kept by [`add_usage_days`] inside the ingest transaction.

use std::collections::BTreeMap;

use super::{Backend, NewObservation, Store, StoreError};

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

/// One day of the roll-up `report_usage_days`: a UTC day, `[day_ms, day_ms + DAY_MS)`.
pub const DAY_MS: i64 = 24 * 3_600_000;

/// Fills `report_usage_days` from the observations stored: the backfill of migration 0008 (the
/// same text is in both backends' migration files; a unit test checks it), and what a bulk load
/// of observations outside the ingest path must run afterwards (the report benchmark does).
pub const REPORT_USAGE_BACKFILL: &str = "INSERT INTO report_usage_days (day_ms, agent_id, product, vendor, category, plan, user_name, events, first_ms, last_ms)
SELECT observed_at_ms - ((observed_at_ms % 86400000) + 86400000) % 86400000, agent_id, product, vendor, category, COALESCE(plan, ''), COALESCE(process_user, ''), CAST(SUM(count) AS BIGINT), MIN(observed_at_ms), MAX(observed_at_ms)
FROM observations WHERE product <> ''
GROUP BY 1, 2, 3, 4, 5, 6, 7;";

/// PostgreSQL memory for the usage query's grouping (`SET LOCAL`: this transaction only).
const REPORT_WORK_MEM: &str = "SET LOCAL work_mem = '256MB'";

/// Roll-up rows per multi-row upsert (10 parameters each, under SQLite's 32,766).
const USAGE_DAYS_CHUNK: usize = 500;
const _: () = assert!(USAGE_DAYS_CHUNK * 10 <= 32_766);

const INSERT_USAGE_DAYS: &str = "INSERT INTO report_usage_days (day_ms, agent_id, product, vendor, \
     category, plan, user_name, events, first_ms, last_ms) ";

const UPSERT_USAGE_DAYS: &str = " ON CONFLICT (day_ms, agent_id, product, vendor, category, plan, user_name) \
     DO UPDATE SET events = report_usage_days.events + excluded.events, \
     first_ms = CASE WHEN excluded.first_ms < report_usage_days.first_ms \
         THEN excluded.first_ms ELSE report_usage_days.first_ms END, \
     last_ms = CASE WHEN excluded.last_ms > report_usage_days.last_ms \
         THEN excluded.last_ms ELSE report_usage_days.last_ms END";

/// Product use per host, user and week of the period: from the roll-up for the whole days in
/// `[$5, $6)`, from raw observations for `[$1, $5)` and `[$6, $2)`. A roll-up row whose first and
/// last observation fall in two weeks (a day a week boundary cuts, when the period does not start
/// at midnight UTC) counts its events in the first and its host in both: it has an observation
/// on each side. $3 group, $4 `WEEK_MS`.
const USAGE_QUERY: &str = "SELECT u.agent_id, a.group_name, u.product, u.vendor, u.category, u.plan, \
     u.user_name, u.week, u.events FROM ( \
     SELECT d.agent_id, d.product, d.vendor, d.category, d.plan, NULLIF(d.user_name, '') AS user_name, \
     (d.first_ms - $1) / $4 AS week, CAST(SUM(d.events) AS BIGINT) AS events \
     FROM report_usage_days d WHERE d.day_ms >= $5 AND d.day_ms < $6 GROUP BY 1, 2, 3, 4, 5, 6, 7 \
     UNION ALL \
     SELECT d.agent_id, d.product, d.vendor, d.category, d.plan, NULLIF(d.user_name, ''), \
     (d.last_ms - $1) / $4, CAST(0 AS BIGINT) \
     FROM report_usage_days d WHERE d.day_ms >= $5 AND d.day_ms < $6 \
     AND (d.last_ms - $1) / $4 <> (d.first_ms - $1) / $4 \
     UNION ALL \
     SELECT o.agent_id, o.product, o.vendor, o.category, o.plan, NULLIF(o.process_user, ''), \
     (o.observed_at_ms - $1) / $4, CAST(SUM(o.count) AS BIGINT) \
     FROM observations o WHERE o.observed_at_ms >= $1 AND o.observed_at_ms < $5 AND o.product <> '' \
     GROUP BY 1, 2, 3, 4, 5, 6, 7 \
     UNION ALL \
     SELECT o.agent_id, o.product, o.vendor, o.category, o.plan, NULLIF(o.process_user, ''), \
     (o.observed_at_ms - $1) / $4, CAST(SUM(o.count) AS BIGINT) \
     FROM observations o WHERE o.observed_at_ms >= $6 AND o.observed_at_ms < $2 AND o.product <> '' \
     GROUP BY 1, 2, 3, 4, 5, 6, 7 \
     ) u JOIN agents a ON a.id = u.agent_id WHERE ($3 IS NULL OR a.group_name = $3)";

/// The same as `USAGE_QUERY` for periods of at most `MASK_WEEKS` weeks, with the weeks of each
/// host, product, user (...) as a bit set instead of a row per week: grouped in the roll-up's
/// primary key order, SQLite reads the roll-up once without sorting it, and both backends return
/// one row per host and product instead of one per week. `$weeks` is the aggregate that ORs the
/// week bits: `SUM(DISTINCT` (distinct powers of two add up to their OR) or PostgreSQL's `BIT_OR(`,
/// which it can hash. `weeks_first` has the week of each roll-up row's first observation,
/// `weeks_last` of its last (see `USAGE_QUERY`).
macro_rules! usage_weeks_query {
    ($weeks:literal) => {
        concat!(
            "SELECT u.agent_id, a.group_name, u.product, u.vendor, u.category, u.plan, u.user_name, \
             u.events, u.weeks_first, u.weeks_last FROM ( \
             SELECT d.agent_id, d.product, d.vendor, d.category, d.plan, \
             NULLIF(d.user_name, '') AS user_name, CAST(SUM(d.events) AS BIGINT) AS events, CAST(",
            $weeks,
            "CAST(1 AS BIGINT) << CAST((d.first_ms - $1) / $4 AS INTEGER)) AS BIGINT) AS weeks_first, CAST(",
            $weeks,
            "CAST(1 AS BIGINT) << CAST((d.last_ms - $1) / $4 AS INTEGER)) AS BIGINT) AS weeks_last \
             FROM report_usage_days d WHERE d.day_ms >= $5 AND d.day_ms < $6 \
             GROUP BY d.agent_id, d.product, d.vendor, d.category, d.plan, d.user_name \
             UNION ALL \
             SELECT o.agent_id, o.product, o.vendor, o.category, o.plan, NULLIF(o.process_user, ''), \
             CAST(SUM(o.count) AS BIGINT), CAST(1 AS BIGINT) << CAST((o.observed_at_ms - $1) / $4 AS INTEGER), \
             CAST(1 AS BIGINT) << CAST((o.observed_at_ms - $1) / $4 AS INTEGER) \
             FROM observations o WHERE o.observed_at_ms >= $1 AND o.observed_at_ms < $5 AND o.product <> '' \
             GROUP BY 1, 2, 3, 4, 5, 6, 8 \
             UNION ALL \
             SELECT o.agent_id, o.product, o.vendor, o.category, o.plan, NULLIF(o.process_user, ''), \
             CAST(SUM(o.count) AS BIGINT), CAST(1 AS BIGINT) << CAST((o.observed_at_ms - $1) / $4 AS INTEGER), \
             CAST(1 AS BIGINT) << CAST((o.observed_at_ms - $1) / $4 AS INTEGER) \
             FROM observations o WHERE o.observed_at_ms >= $6 AND o.observed_at_ms < $2 AND o.product <> '' \
             GROUP BY 1, 2, 3, 4, 5, 6, 8 \
             ) u JOIN agents a ON a.id = u.agent_id WHERE ($3 IS NULL OR a.group_name = $3)"
        )
    };
}
const USAGE_WEEKS_SQLITE: &str = usage_weeks_query!("SUM(DISTINCT ");
const USAGE_WEEKS_POSTGRES: &str = usage_weeks_query!("BIT_OR(");

/// Periods of at most this many weeks use the week bit sets (bits 0 to 61 of a BIGINT).
const MASK_WEEKS: i64 = 62;

/// A row of `usage_weeks_query`.
#[derive(sqlx::FromRow)]
struct UsageWeeksRow {
    agent_id: String,
    group_name: String,
    product: String,
    vendor: String,
    category: String,
    plan: Option<String>,
    user_name: Option<String>,
    events: i64,
    weeks_first: i64,
    weeks_last: i64,
}

impl UsageWeeksRow {
    /// One `UsageRow` per week in the bit sets; the events go with the first.
    fn expand(self, rows: &mut Vec<UsageRow>) {
        let weeks = self.weeks_first | self.weeks_last;
        let mut events = self.events;
        for week in (0..MASK_WEEKS).filter(|w| weeks & (1 << w) != 0) {
            rows.push(UsageRow {
                agent_id: self.agent_id.clone(),
                group_name: self.group_name.clone(),
                product: self.product.clone(),
                vendor: self.vendor.clone(),
                category: self.category.clone(),
                plan: self.plan.clone(),
                user_name: self.user_name.clone(),
                week,
                events,
            });
            events = 0;
        }
        if events != 0 || weeks == 0 {
            // Not reachable (every row has a week in the period); keep the events in the totals.
            rows.push(UsageRow {
                week: -1,
                events,
                ..self.into_row()
            });
        }
    }

    fn into_row(self) -> UsageRow {
        UsageRow {
            agent_id: self.agent_id,
            group_name: self.group_name,
            product: self.product,
            vendor: self.vendor,
            category: self.category,
            plan: self.plan,
            user_name: self.user_name,
            week: -1,
            events: 0,
        }
    }
}

/// The whole UTC days `[first, end)` of `[since_ms, until_ms)`, read from the roll-up; `None`
/// when the period holds no whole day.
fn whole_days(since_ms: i64, until_ms: i64) -> Option<(i64, i64)> {
    let offset = since_ms.rem_euclid(DAY_MS);
    let first = if offset == 0 {
        since_ms
    } else {
        since_ms.checked_add(DAY_MS - offset)?
    };
    let end = until_ms.checked_sub(until_ms.rem_euclid(DAY_MS))?;
    (first < end).then_some((first, end))
}

/// The UTC day of an observation time (`observed_at_ms - observed_at_ms mod DAY_MS`, as
/// `REPORT_USAGE_BACKFILL` computes it).
fn day_of(observed_at_ms: i64) -> i64 {
    // Ingest refuses times <= 0 (ingest/validate.rs), so this never saturates.
    observed_at_ms.saturating_sub(observed_at_ms.rem_euclid(DAY_MS))
}

/// One roll-up row of a batch: (events, first, last observed_at_ms).
type UsageDayKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str, &'a str);

/// The roll-up upsert inside an ingest transaction, for both backends.
pub trait UsageDaysTx: Send {
    /// See [`add_usage_days`].
    fn add_usage_days<'a>(
        &'a mut self,
        agent_id: &'a str,
        stored: &'a [&'a NewObservation],
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;
}

/// Adds observations just stored for `agent_id` (text UUID) in this transaction to the report's
/// daily roll-up `report_usage_days`: grouped per day and key in memory, then one multi-row
/// upsert per `USAGE_DAYS_CHUNK` rows. Observations without a product are left out, as the report
/// leaves them out. Call it once per batch, with the observations this transaction inserted
/// (not the duplicates), so the roll-up counts each observation once.
pub async fn add_usage_days<T: UsageDaysTx>(
    tx: &mut T,
    agent_id: &str,
    stored: &[&NewObservation],
) -> Result<(), StoreError> {
    tx.add_usage_days(agent_id, stored).await
}

/// The batch's roll-up rows, in key order.
fn usage_days<'a>(stored: &[&'a NewObservation]) -> BTreeMap<UsageDayKey<'a>, (i64, i64, i64)> {
    let mut days: BTreeMap<UsageDayKey<'a>, (i64, i64, i64)> = BTreeMap::new();
    for o in stored.iter().filter(|o| !o.product.is_empty()) {
        let key = (
            day_of(o.observed_at_ms),
            o.product.as_str(),
            o.vendor.as_str(),
            o.category.as_str(),
            o.plan.as_deref().unwrap_or(""),
            o.process.as_ref().map_or("", |p| p.user.as_str()),
        );
        let entry = days
            .entry(key)
            .or_insert((0, o.observed_at_ms, o.observed_at_ms));
        entry.0 += i64::from(o.count);
        entry.1 = entry.1.min(o.observed_at_ms);
        entry.2 = entry.2.max(o.observed_at_ms);
    }
    days
}

macro_rules! usage_days_tx {
    ($db:ty) => {
        impl UsageDaysTx for sqlx::Transaction<'_, $db> {
            fn add_usage_days<'a>(
                &'a mut self,
                agent_id: &'a str,
                stored: &'a [&'a NewObservation],
            ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a {
                async move {
                    let days: Vec<_> = usage_days(stored).into_iter().collect();
                    for chunk in days.chunks(USAGE_DAYS_CHUNK) {
                        let mut upsert = sqlx::QueryBuilder::<$db>::new(INSERT_USAGE_DAYS);
                        upsert.push_values(
                            chunk,
                            |mut row,
                             (
                                (day, product, vendor, category, plan, user),
                                (events, first, last),
                            )| {
                                row.push_bind(*day)
                                    .push_bind(agent_id)
                                    .push_bind(*product)
                                    .push_bind(*vendor)
                                    .push_bind(*category)
                                    .push_bind(*plan)
                                    .push_bind(*user)
                                    .push_bind(*events)
                                    .push_bind(*first)
                                    .push_bind(*last);
                            },
                        );
                        upsert.push(UPSERT_USAGE_DAYS);
                        upsert
                            .build()
                            .execute(&mut **self)
                            .await
                            .map_err(StoreError::entity("report usage day"))?;
                    }
                    Ok(())
                }
            }
        }
    };
}

usage_days_tx!(sqlx::Sqlite);
usage_days_tx!(sqlx::Postgres);

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

    /// Product use per host, user and week of the period (`usage_weeks_query`, or `USAGE_QUERY`
    /// for periods longer than `MASK_WEEKS` weeks). A host, product, user and week may come in
    /// more than one row (roll-up and raw days): the report adds events and counts hosts and users
    /// as sets, so that changes nothing.
    pub async fn report_usage(&self, scope: &ReportScope) -> Result<Vec<UsageRow>, StoreError> {
        // No whole day: everything from raw observations, [since, until) + [until, until).
        let (days_from, days_until) =
            whole_days(scope.since_ms, scope.until_ms).unwrap_or((scope.until_ms, scope.until_ms));
        let weeks = (scope.until_ms.saturating_sub(scope.since_ms) + WEEK_MS - 1) / WEEK_MS;
        let masks = weeks <= MASK_WEEKS;
        macro_rules! usage {
            ($sql:expr, $row:ty, $conn:expr) => {
                sqlx::query_as::<_, $row>($sql)
                    .bind(scope.since_ms)
                    .bind(scope.until_ms)
                    .bind(scope.group.as_deref())
                    .bind(WEEK_MS)
                    .bind(days_from)
                    .bind(days_until)
                    .fetch_all($conn)
                    .await?
            };
        }
        let (weekly, by_week) = match &self.backend {
            Backend::Sqlite { reads: pool, .. } if masks => {
                (usage!(USAGE_WEEKS_SQLITE, UsageWeeksRow, pool), Vec::new())
            }
            Backend::Sqlite { reads: pool, .. } => {
                (Vec::new(), usage!(USAGE_QUERY, UsageRow, pool))
            }
            Backend::Postgres(pool) => {
                // With the default 4 MB PostgreSQL may sort the rows on disk to group them; with
                // room for a hash table it groups them in one pass (docs/BENCHMARKS.md). A limit,
                // not an allocation, and for this transaction only.
                let mut tx = pool.begin().await?;
                sqlx::query(REPORT_WORK_MEM).execute(&mut *tx).await?;
                let rows = if masks {
                    (
                        usage!(USAGE_WEEKS_POSTGRES, UsageWeeksRow, &mut *tx),
                        Vec::new(),
                    )
                } else {
                    (Vec::new(), usage!(USAGE_QUERY, UsageRow, &mut *tx))
                };
                tx.commit().await?;
                rows
            }
        };
        let mut rows = by_week;
        for row in weekly {
            row.expand(&mut rows);
        }
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
        on_write_pool!(self, pool => {
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
        let inserted = on_write_pool!(self, pool => {
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
        on_write_pool!(self, pool => {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{ObservedProcess, Signal};

    const NOW: i64 = 1_795_219_200_000; // a midnight UTC

    #[test]
    fn both_migrations_backfill_with_the_same_sql() {
        for migration in [
            include_str!("../../migrations/sqlite/0008_report_usage_days.sql"),
            include_str!("../../migrations/postgres/0008_report_usage_days.sql"),
        ] {
            assert!(migration.contains(REPORT_USAGE_BACKFILL));
        }
    }

    #[test]
    fn whole_days_are_the_midnights_inside_the_period() {
        assert_eq!(
            whole_days(NOW - 90 * DAY_MS, NOW),
            Some((NOW - 90 * DAY_MS, NOW))
        );
        assert_eq!(
            whole_days(NOW - 90 * DAY_MS + 1, NOW - 1),
            Some((NOW - 89 * DAY_MS, NOW - DAY_MS))
        );
        // one whole day
        assert_eq!(
            whole_days(NOW - 1, NOW + DAY_MS + 1),
            Some((NOW, NOW + DAY_MS))
        );
        // none: inside one day, or across one midnight
        assert_eq!(whole_days(NOW + 1, NOW + DAY_MS - 1), None);
        assert_eq!(whole_days(NOW - 5, NOW + 5), None);
        assert_eq!(whole_days(NOW, NOW + DAY_MS - 1), None);
        assert_eq!(whole_days(i64::MAX - 5, i64::MAX), None);
        assert_eq!(day_of(NOW + DAY_MS - 1), NOW);
        assert_eq!(day_of(NOW), NOW);
        assert_eq!(day_of(-1), -DAY_MS);
    }

    fn observation(
        at: i64,
        product: &str,
        plan: Option<&str>,
        user: Option<&str>,
    ) -> NewObservation {
        NewObservation {
            id: uuid::Uuid::now_v7(),
            observed_at_ms: at,
            signal: Signal::Dns,
            name: "chatgpt.com".into(),
            product: product.into(),
            vendor: "openai".into(),
            category: "chat".into(),
            rule: "r".into(),
            reason: "r".into(),
            risk: Vec::new(),
            confidence: "high".into(),
            plan: plan.map(str::to_owned),
            tenant: None,
            catalog_version: "1".into(),
            count: 3,
            process: user.map(|user| ObservedProcess {
                pid: 1,
                parent_pid: 0,
                name: "p".into(),
                exe: "/p".into(),
                cmdline: "p".into(),
                user: user.into(),
            }),
            details: serde_json::json!({}),
            evidence: Vec::new(),
        }
    }

    #[test]
    fn a_batch_becomes_one_row_per_day_and_key() {
        let batch = [
            observation(NOW + 10, "openai.chatgpt", None, None),
            observation(NOW + 5, "openai.chatgpt", Some(""), None),
            observation(NOW + DAY_MS - 1, "openai.chatgpt", None, Some("")),
            observation(NOW + DAY_MS, "openai.chatgpt", None, None),
            observation(NOW + 7, "openai.chatgpt", Some("personal"), Some("alice")),
            observation(NOW + 8, "", None, None),
        ];
        let stored: Vec<&NewObservation> = batch.iter().collect();
        let days = usage_days(&stored);
        let rows: Vec<_> = days.into_iter().collect();
        assert_eq!(
            rows,
            vec![
                (
                    (NOW, "openai.chatgpt", "openai", "chat", "", ""),
                    (9, NOW + 5, NOW + DAY_MS - 1)
                ),
                (
                    (NOW, "openai.chatgpt", "openai", "chat", "personal", "alice"),
                    (3, NOW + 7, NOW + 7)
                ),
                (
                    (NOW + DAY_MS, "openai.chatgpt", "openai", "chat", "", ""),
                    (3, NOW + DAY_MS, NOW + DAY_MS)
                ),
            ]
        );
    }
}
