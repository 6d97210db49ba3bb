//! Triage: what responders do to alerts (acknowledge, assign, resolve, escalate, comment, reopen),
//! the alert queue with its filters, and the audit log of those actions.
//!
//! Every triage action is one transaction: the alert row is changed by a conditional UPDATE (the
//! transaction's first statement, so SQLite takes its write lock up front) and exactly one
//! `triage_events` row is written by [`write_triage_event`], the only code that inserts into that
//! table. The evidence chain links rows there. `triage_events` is never updated or deleted.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::model::{Alert, Page, PageCursor, UnknownName};
use super::rows::{self, AlertRow};
use super::{Backend, MAX_PAGE, Store, StoreError};

/// Longest note on a triage action, bytes.
pub const MAX_NOTE: usize = 4096;
/// Most alerts one bulk action may name.
pub const MAX_BULK: usize = 500;
/// Longest actor or source-address text, bytes.
const MAX_ACTOR: usize = 256;

/// How a resolved alert was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    TruePositive,
    FalsePositive,
    Sanctioned,
    Duplicate,
}

impl Resolution {
    /// Every resolution, in display order.
    pub const ALL: [Resolution; 4] = [
        Resolution::TruePositive,
        Resolution::FalsePositive,
        Resolution::Sanctioned,
        Resolution::Duplicate,
    ];

    /// The stable name used in the database, the API and forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::TruePositive => "true_positive",
            Resolution::FalsePositive => "false_positive",
            Resolution::Sanctioned => "sanctioned",
            Resolution::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resolution {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Resolution::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or(UnknownName { kind: "resolution" })
    }
}

/// One triage action on an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriageAction {
    /// open → acknowledged.
    Acknowledge,
    /// Sets the responder working on it (a responder or admin user name).
    Assign { assignee: String },
    /// open or acknowledged → resolved, with a judgement.
    Resolve { resolution: Resolution },
    /// Marks an unresolved alert as escalated (once).
    Escalate,
    /// A note only (the note must not be empty).
    Comment,
    /// resolved → open.
    Reopen,
}

impl TriageAction {
    /// The stable action name stored in `triage_events.action`.
    pub fn name(&self) -> &'static str {
        match self {
            TriageAction::Acknowledge => "acknowledge",
            TriageAction::Assign { .. } => "assign",
            TriageAction::Resolve { .. } => "resolve",
            TriageAction::Escalate => "escalate",
            TriageAction::Comment => "comment",
            TriageAction::Reopen => "reopen",
        }
    }

    fn detail(&self) -> &str {
        match self {
            TriageAction::Assign { assignee } => assignee,
            TriageAction::Resolve { resolution } => resolution.as_str(),
            _ => "",
        }
    }
}

/// Who acts, from where, when, and with which note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageContext {
    /// A user name, or `apikey:<name>` for an API key.
    pub actor: String,
    /// The client's address as the collector saw it.
    pub from_address: String,
    /// Free text (at most [`MAX_NOTE`] bytes, no NUL); may be empty except for comments.
    pub note: String,
    pub now_ms: i64,
}

/// One row of the triage audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageEvent {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub note: String,
    pub from_address: String,
    pub at_ms: i64,
}

/// A triage event with the alert it concerns, as the audit log lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub event: TriageEvent,
    pub alert_title: String,
    pub hostname: String,
}

/// The triage columns of an alert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriageState {
    pub assignee: Option<String>,
    pub resolution: Option<String>,
    pub acknowledged_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub escalated_at_ms: Option<i64>,
    pub updated_at_ms: Option<i64>,
}

/// An alert with its triage state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriagedAlert {
    pub alert: Alert,
    pub triage: TriageState,
}

/// What a bulk action did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Alerts changed (one triage event each).
    pub changed: usize,
    /// Alerts the action did not apply to (e.g. acknowledging an already acknowledged alert).
    pub skipped: usize,
}

/// How the alert queue is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertSort {
    /// Newest activity first.
    #[default]
    LastSeen,
    /// Newest first sighting first.
    FirstSeen,
    /// Most severe first, then newest.
    Severity,
    /// Most observations first.
    Count,
    /// Host name A–Z.
    Host,
}

impl AlertSort {
    pub const ALL: [AlertSort; 5] = [
        AlertSort::LastSeen,
        AlertSort::FirstSeen,
        AlertSort::Severity,
        AlertSort::Count,
        AlertSort::Host,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSort::LastSeen => "last_seen",
            AlertSort::FirstSeen => "first_seen",
            AlertSort::Severity => "severity",
            AlertSort::Count => "count",
            AlertSort::Host => "host",
        }
    }
}

impl FromStr for AlertSort {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        AlertSort::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or(UnknownName { kind: "sort" })
    }
}

/// The alert queue's filters. `None` means "any". Text filters are exact except `host` and `user`,
/// which match a case-insensitive substring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub severity: Option<String>,
    /// `open`, `acknowledged`, `resolved`, or `unresolved` (open or acknowledged).
    pub status: Option<String>,
    pub reason: Option<String>,
    pub product: Option<String>,
    pub category: Option<String>,
    pub group: Option<String>,
    pub host: Option<String>,
    pub user: Option<String>,
    /// A user name, or `""` for unassigned alerts.
    pub assignee: Option<String>,
    pub agent_id: Option<Uuid>,
    /// Only alerts seen at or after this time.
    pub since_ms: Option<i64>,
    pub sort: AlertSort,
    /// Zero-based page number.
    pub page: u32,
    /// Alerts per page (capped at `MAX_PAGE`).
    pub page_size: u32,
}

/// One page of the queue and how many alerts match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQueuePage {
    pub alerts: Vec<TriagedAlert>,
    pub total: i64,
}

#[derive(sqlx::FromRow)]
struct TriagedAlertRow {
    #[sqlx(flatten)]
    alert: AlertRow,
    assignee: Option<String>,
    resolution: Option<String>,
    acknowledged_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    escalated_at_ms: Option<i64>,
    updated_at_ms: Option<i64>,
}

impl TriagedAlertRow {
    fn into_triaged(self) -> Result<TriagedAlert, StoreError> {
        Ok(TriagedAlert {
            alert: self.alert.into_alert()?,
            triage: TriageState {
                assignee: self.assignee,
                resolution: self.resolution,
                acknowledged_at_ms: self.acknowledged_at_ms,
                resolved_at_ms: self.resolved_at_ms,
                escalated_at_ms: self.escalated_at_ms,
                updated_at_ms: self.updated_at_ms,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct TriageEventRow {
    id: String,
    alert_id: String,
    actor: String,
    action: String,
    detail: String,
    note: String,
    from_address: String,
    at_ms: i64,
}

impl TriageEventRow {
    fn into_event(self) -> Result<TriageEvent, StoreError> {
        Ok(TriageEvent {
            id: rows::uuid(&self.id)?,
            alert_id: rows::uuid(&self.alert_id)?,
            actor: self.actor,
            action: self.action,
            detail: self.detail,
            note: self.note,
            from_address: self.from_address,
            at_ms: self.at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    #[sqlx(flatten)]
    event: TriageEventRow,
    title: String,
    hostname: String,
}

/// The columns of an alert with its host and triage state (`l` = alerts, `a` = agents).
macro_rules! triaged_alert_columns {
    () => {
        "l.id, l.agent_id, a.hostname, a.group_name, l.user_name, l.product, l.vendor, \
         l.category, l.reason, l.severity, l.status, l.title, l.rule, l.process_pid, l.process_name, \
         l.process_exe, l.process_cmdline, l.first_seen_ms, l.last_seen_ms, l.count, \
         l.first_observation_id, l.last_observation_id, l.explanation, l.suppressed_by, \
         l.assignee, l.resolution, \
         l.acknowledged_at_ms, l.resolved_at_ms, l.escalated_at_ms, l.updated_at_ms"
    };
}

/// The rank of a severity for sorting (unknown severities last).
macro_rules! severity_rank {
    () => {
        "CASE l.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 \
         WHEN 'low' THEN 1 ELSE 0 END"
    };
}

/// A value bound to a queue query.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// The queue's WHERE clause for one filter: only the conditions of the filters that are set, each a
/// fixed SQL fragment with a numbered parameter (no value of the filter is ever in the text). Each
/// combination of filters is a statement of its own, so the planner (PostgreSQL plans a prepared
/// statement once) sees which indexes apply, instead of `$n IS NULL OR ...` that none serves.
/// Host and group conditions are subqueries over `agents`, so counting needs no join.
struct QueueWhere<'a> {
    sql: String,
    args: Vec<Arg<'a>>,
}

impl<'a> QueueWhere<'a> {
    /// `host` and `user` are `LIKE` patterns, `agent` the agent id as stored.
    fn new(
        filter: &'a AlertFilter,
        host: Option<&'a str>,
        user: Option<&'a str>,
        agent: Option<&'a str>,
    ) -> Self {
        let mut clause = QueueWhere {
            sql: String::from(" WHERE 1 = 1"),
            args: Vec::new(),
        };
        if let Some(severity) = &filter.severity {
            clause.condition("l.severity = ", Arg::Text(severity), "");
        }
        match filter.status.as_deref() {
            None => {}
            // served by the partial index alerts_unresolved_by_last_seen
            Some("unresolved") => clause.sql.push_str(" AND l.status <> 'resolved'"),
            Some(status) => clause.condition("l.status = ", Arg::Text(status), ""),
        }
        if let Some(reason) = &filter.reason {
            clause.condition("l.reason = ", Arg::Text(reason), "");
        }
        if let Some(product) = &filter.product {
            clause.condition("l.product = ", Arg::Text(product), "");
        }
        if let Some(category) = &filter.category {
            clause.condition("l.category = ", Arg::Text(category), "");
        }
        if let Some(group) = &filter.group {
            clause.condition(
                "l.agent_id IN (SELECT id FROM agents WHERE group_name = ",
                Arg::Text(group),
                ")",
            );
        }
        if let Some(host) = host {
            clause.condition(
                "l.agent_id IN (SELECT id FROM agents WHERE LOWER(hostname) LIKE ",
                Arg::Text(host),
                " ESCAPE '!')",
            );
        }
        if let Some(user) = user {
            clause.condition("LOWER(l.user_name) LIKE ", Arg::Text(user), " ESCAPE '!'");
        }
        if let Some(assignee) = &filter.assignee {
            clause.condition("COALESCE(l.assignee, '') = ", Arg::Text(assignee), "");
        }
        if let Some(agent) = agent {
            clause.condition("l.agent_id = ", Arg::Text(agent), "");
        }
        if let Some(since) = filter.since_ms {
            clause.condition("l.last_seen_ms >= ", Arg::Int(since), "");
        }
        clause
    }

    /// Appends ` AND <before>$n<after>` with `arg` as parameter `$n`.
    fn condition(&mut self, before: &str, arg: Arg<'a>, after: &str) {
        self.args.push(arg);
        self.sql.push_str(" AND ");
        self.sql.push_str(before);
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self.sql.push_str(after);
    }

    /// The number the next parameter gets.
    fn next_parameter(&self) -> usize {
        self.args.len() + 1
    }
}

/// A `LIKE` pattern matching `text` anywhere, lowercase, with `!` as the escape character.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Why an action did not apply to an alert that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    NotOpen,
    Resolved,
    NotResolved,
    AlreadyEscalated,
    NotAssignable,
}

impl Skip {
    fn message(self) -> &'static str {
        match self {
            Skip::NotOpen => "only an open alert can be acknowledged",
            Skip::Resolved => "the alert is resolved; reopen it first",
            Skip::NotResolved => "only a resolved alert can be reopened",
            Skip::AlreadyEscalated => "the alert is already escalated",
            Skip::NotAssignable => "the assignee must be an enabled responder or admin user",
        }
    }
}

/// Checks a triage request before it touches the database: what [`Store::triage_alert`] and
/// [`Store::triage_alerts`] refuse as `Invalid` whatever the alert's state (the note, the
/// assignee's length, the actor, the number of alerts). The HTTP layer calls it to answer 400
/// rather than the 409 of an action that does not apply.
pub fn check_triage_request(
    action: &TriageAction,
    context: &TriageContext,
    alert_count: usize,
) -> Result<(), &'static str> {
    if alert_count == 0 || alert_count > MAX_BULK {
        return Err(BULK_COUNT);
    }
    match validate(action, context) {
        Err(StoreError::Invalid { what }) => Err(what),
        Err(_) => Err("the request is not valid"),
        Ok(()) => Ok(()),
    }
}

const BULK_COUNT: &str = "a bulk action names 1 to 500 alerts";

fn validate(action: &TriageAction, context: &TriageContext) -> Result<(), StoreError> {
    if context.note.len() > MAX_NOTE || context.note.contains('\0') {
        return Err(StoreError::Invalid {
            what: "the note must be at most 4096 bytes without NUL characters",
        });
    }
    if *action == TriageAction::Comment && context.note.trim().is_empty() {
        return Err(StoreError::Invalid {
            what: "a comment needs a note",
        });
    }
    if let TriageAction::Assign { assignee } = action
        && (assignee.is_empty()
            || assignee.len() > MAX_ACTOR
            || assignee.chars().any(char::is_control))
    {
        return Err(StoreError::Invalid {
            what: Skip::NotAssignable.message(),
        });
    }
    if context.actor.is_empty()
        || context.actor.len() > MAX_ACTOR
        || context.from_address.len() > MAX_ACTOR
        || context.actor.contains('\0')
        || context.from_address.contains('\0')
    {
        return Err(StoreError::Invalid {
            what: "the actor and address must be 1 to 256 bytes",
        });
    }
    Ok(())
}

/// Writes one triage event. This is the only code that inserts into `triage_events`.
async fn write_triage_event<DB>(
    tx: &mut sqlx::Transaction<'_, DB>,
    event: &TriageEvent,
) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB>,
    i64: sqlx::Type<DB>,
    for<'x> sqlx::Transaction<'x, DB>: super::chain::ChainTx,
{
    // The same record, canonical v1, joins the control chain in the same transaction.
    let mut canonical = super::chain::Canonical::default();
    canonical
        .text("triage_event/v1")
        .text(&event.id.to_string())
        .text(&event.alert_id.to_string())
        .text(&event.actor)
        .text(&event.action)
        .text(&event.detail)
        .text(&event.note)
        .text(&event.from_address)
        .int(event.at_ms);
    super::chain::append_control(
        tx,
        "triage_event",
        &event.id.to_string(),
        canonical.as_bytes(),
        event.at_ms,
    )
    .await?;
    sqlx::query(
        "INSERT INTO triage_events (id, alert_id, actor, action, detail, note, from_address, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.id.to_string())
    .bind(event.alert_id.to_string())
    .bind(event.actor.clone())
    .bind(event.action.clone())
    .bind(event.detail.clone())
    .bind(event.note.clone())
    .bind(event.from_address.clone())
    .bind(event.at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies `$action` to alert `$id` inside transaction `$tx`: `Ok(Ok(event))` when it changed the
/// alert (and wrote the event), `Ok(Err(skip))` when the alert exists but the action does not apply,
/// `Err(NotFound)` when there is no such alert.
macro_rules! apply_action {
    ($tx:expr, $id:expr, $action:expr, $context:expr) => {{
        let id: Uuid = $id;
        let action: &TriageAction = $action;
        let context: &TriageContext = $context;
        let alert_id = id.to_string();
        let now = context.now_ms;
        let changed = match action {
            TriageAction::Acknowledge => sqlx::query(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at_ms = $1, updated_at_ms = $1 \
                 WHERE id = $2 AND status = 'open'",
            )
            .bind(now)
            .bind(&alert_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected(),
            TriageAction::Assign { assignee } => sqlx::query(
                "UPDATE alerts SET assignee = $1, updated_at_ms = $2 \
                 WHERE id = $3 AND status <> 'resolved' AND EXISTS (SELECT 1 FROM users \
                 WHERE name = $1 AND disabled_at_ms IS NULL AND role IN ('responder', 'admin'))",
            )
            .bind(assignee.as_str())
            .bind(now)
            .bind(&alert_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected(),
            TriageAction::Resolve { resolution } => sqlx::query(
                "UPDATE alerts SET status = 'resolved', resolution = $1, resolved_at_ms = $2, \
                 updated_at_ms = $2 WHERE id = $3 AND status <> 'resolved'",
            )
            .bind(resolution.as_str())
            .bind(now)
            .bind(&alert_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected(),
            TriageAction::Escalate => sqlx::query(
                "UPDATE alerts SET escalated_at_ms = $1, updated_at_ms = $1 \
                 WHERE id = $2 AND status <> 'resolved' AND escalated_at_ms IS NULL",
            )
            .bind(now)
            .bind(&alert_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected(),
            TriageAction::Comment => {
                sqlx::query("UPDATE alerts SET updated_at_ms = $1 WHERE id = $2")
                    .bind(now)
                    .bind(&alert_id)
                    .execute(&mut *$tx)
                    .await?
                    .rows_affected()
            }
            TriageAction::Reopen => sqlx::query(
                "UPDATE alerts SET status = 'open', resolution = NULL, resolved_at_ms = NULL, \
                 updated_at_ms = $1 WHERE id = $2 AND status = 'resolved'",
            )
            .bind(now)
            .bind(&alert_id)
            .execute(&mut *$tx)
            .await?
            .rows_affected(),
        };
        if changed == 1 {
            let event = TriageEvent {
                id: Uuid::now_v7(),
                alert_id: id,
                actor: context.actor.clone(),
                action: action.name().to_owned(),
                detail: action.detail().to_owned(),
                note: context.note.clone(),
                from_address: context.from_address.clone(),
                at_ms: now,
            };
            write_triage_event(&mut $tx, &event).await?;
            Ok(Ok(event))
        } else {
            let status: Option<(String, Option<i64>)> =
                sqlx::query_as("SELECT status, escalated_at_ms FROM alerts WHERE id = $1")
                    .bind(&alert_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
            match status {
                None => Err(StoreError::NotFound { entity: "alert" }),
                Some((status, escalated)) => Ok(Err(match action {
                    TriageAction::Acknowledge if status == "resolved" => Skip::Resolved,
                    TriageAction::Acknowledge => Skip::NotOpen,
                    TriageAction::Reopen => Skip::NotResolved,
                    TriageAction::Escalate if escalated.is_some() && status != "resolved" => {
                        Skip::AlreadyEscalated
                    }
                    TriageAction::Assign { .. } if status != "resolved" => Skip::NotAssignable,
                    _ => Skip::Resolved,
                })),
            }
        }
    }};
}

impl Store {
    /// Applies one triage action to one alert and records it; returns the event written.
    /// `NotFound` for an unknown alert, `Invalid` (with the reason) when the action does not apply.
    pub async fn triage_alert(
        &self,
        alert_id: Uuid,
        action: &TriageAction,
        context: &TriageContext,
    ) -> Result<TriageEvent, StoreError> {
        validate(action, context)?;
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let applied: Result<Result<TriageEvent, Skip>, StoreError> =
                apply_action!(tx, alert_id, action, context);
            match applied {
                Ok(Ok(event)) => {
                    tx.commit().await?;
                    Ok(event)
                }
                Ok(Err(skip)) => {
                    tx.rollback().await?;
                    Err(StoreError::Invalid { what: skip.message() })
                }
                Err(error) => {
                    tx.rollback().await?;
                    Err(error)
                }
            }
        })
    }

    /// Applies one action to many alerts in one transaction: alerts it does not apply to are
    /// skipped and counted; an unknown alert id refuses the whole request (nothing is changed).
    pub async fn triage_alerts(
        &self,
        alert_ids: &[Uuid],
        action: &TriageAction,
        context: &TriageContext,
    ) -> Result<BulkOutcome, StoreError> {
        validate(action, context)?;
        if alert_ids.is_empty() || alert_ids.len() > MAX_BULK {
            return Err(StoreError::Invalid { what: BULK_COUNT });
        }
        let mut ids = alert_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut outcome = BulkOutcome::default();
        on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for id in ids {
                let applied: Result<Result<TriageEvent, Skip>, StoreError> =
                    apply_action!(tx, id, action, context);
                match applied {
                    Ok(Ok(_)) => outcome.changed += 1,
                    Ok(Err(_)) => outcome.skipped += 1,
                    Err(error) => {
                        tx.rollback().await?;
                        return Err(error);
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(outcome)
    }

    /// One alert with its host and triage state.
    pub async fn triaged_alert(&self, alert_id: Uuid) -> Result<Option<TriagedAlert>, StoreError> {
        let row: Option<TriagedAlertRow> = on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                triaged_alert_columns!(),
                " FROM alerts l JOIN agents a ON a.id = l.agent_id WHERE l.id = $1"
            ))
            .bind(alert_id.to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(TriagedAlertRow::into_triaged).transpose()
    }

    /// The alert queue: one page of the alerts matching `filter`, and how many match in all.
    pub async fn alert_queue(&self, filter: &AlertFilter) -> Result<AlertQueuePage, StoreError> {
        let page_size = filter.page_size.clamp(1, MAX_PAGE);
        let offset = i64::from(filter.page) * i64::from(page_size);
        let order = match filter.sort {
            AlertSort::LastSeen => "l.last_seen_ms DESC, l.id DESC",
            AlertSort::FirstSeen => "l.first_seen_ms DESC, l.id DESC",
            AlertSort::Severity => {
                concat!(severity_rank!(), " DESC, l.last_seen_ms DESC, l.id DESC")
            }
            AlertSort::Count => "l.count DESC, l.last_seen_ms DESC, l.id DESC",
            AlertSort::Host => "a.hostname ASC, l.last_seen_ms DESC, l.id DESC",
        };
        // With the user filter (a substring match), the page's ids come from a scan of the
        // alerts_by_user index and a sort: `+` keeps the planner from walking the whole table in
        // time order through the time index to find a few matches.
        let inner_order = match (filter.sort, filter.user.is_some()) {
            (AlertSort::LastSeen, true) => "+l.last_seen_ms DESC, l.id DESC",
            (AlertSort::FirstSeen, true) => "+l.first_seen_ms DESC, l.id DESC",
            (AlertSort::Count, true) => "+l.count DESC, l.last_seen_ms DESC, l.id DESC",
            _ => order,
        };
        let host = filter.host.as_deref().map(contains_pattern);
        let user = filter.user.as_deref().map(contains_pattern);
        let agent = filter.agent_id.map(|id| id.to_string());
        let clause = QueueWhere::new(filter, host.as_deref(), user.as_deref(), agent.as_deref());
        let limit_at = clause.next_parameter();
        // The page's ids first (only the sort keys are read and sorted), then those rows in full:
        // deep pages and orders no index serves sort narrow rows instead of whole alerts.
        let host_join = if filter.sort == AlertSort::Host {
            " JOIN agents a ON a.id = l.agent_id"
        } else {
            ""
        };
        let page_sql = format!(
            "SELECT {} FROM alerts l JOIN agents a ON a.id = l.agent_id \
             WHERE l.id IN (SELECT l.id FROM alerts l{host_join}{} ORDER BY {inner_order} \
             LIMIT ${limit_at} OFFSET ${}) ORDER BY {order}",
            triaged_alert_columns!(),
            clause.sql,
            limit_at + 1,
        );
        let count_sql = format!("SELECT COUNT(*) FROM alerts l{}", clause.sql);
        macro_rules! bind_args {
            ($query:expr) => {{
                let mut query = $query;
                for arg in &clause.args {
                    query = match arg {
                        Arg::Text(text) => query.bind(*text),
                        Arg::Int(number) => query.bind(*number),
                    };
                }
                query
            }};
        }
        let (rows, total): (Vec<TriagedAlertRow>, i64) = on_pool!(self, pool => {
            let rows = bind_args!(sqlx::query_as::<_, TriagedAlertRow>(&page_sql))
                .bind(i64::from(page_size))
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = bind_args!(sqlx::query_scalar(&count_sql)).fetch_one(pool).await?;
            (rows, total)
        });
        let alerts = rows
            .into_iter()
            .map(TriagedAlertRow::into_triaged)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AlertQueuePage { alerts, total })
    }

    /// The triage history of one alert, oldest first.
    pub async fn alert_triage_events(
        &self,
        alert_id: Uuid,
    ) -> Result<Vec<TriageEvent>, StoreError> {
        let rows: Vec<TriageEventRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, alert_id, actor, action, detail, note, from_address, at_ms \
                 FROM triage_events WHERE alert_id = $1 ORDER BY at_ms, id LIMIT 1000",
            )
            .bind(alert_id.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(TriageEventRow::into_event).collect()
    }

    /// The audit log: triage events newest first, paged by cursor.
    pub async fn list_triage_events(
        &self,
        after: Option<PageCursor>,
        limit: u32,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows: Vec<AuditRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT e.id, e.alert_id, e.actor, e.action, e.detail, e.note, e.from_address, e.at_ms, \
                 l.title, a.hostname \
                 FROM triage_events e JOIN alerts l ON l.id = e.alert_id JOIN agents a ON a.id = l.agent_id \
                 WHERE ($1 IS NULL OR e.at_ms < $1 OR (e.at_ms = $1 AND e.id < $2)) \
                 ORDER BY e.at_ms DESC, e.id DESC LIMIT $3",
            )
            .bind(after.map(|c| c.at_ms))
            .bind(after.map(|c| c.id.to_string()))
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await?
        });
        let items = rows
            .into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    event: row.event.into_event()?,
                    alert_title: row.title,
                    hostname: row.hostname,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(super::page(items, limit, |e| PageCursor {
            at_ms: e.event.at_ms,
            id: e.event.id,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("Mac"), "%mac%");
        assert_eq!(contains_pattern("a%b_c!d"), "%a!%b!_c!!d%");
        assert_eq!(contains_pattern(""), "%%");
    }

    #[test]
    fn names_round_trip() {
        for resolution in Resolution::ALL {
            assert_eq!(resolution.as_str().parse::<Resolution>(), Ok(resolution));
        }
        for sort in AlertSort::ALL {
            assert_eq!(sort.as_str().parse::<AlertSort>(), Ok(sort));
        }
        assert!("TRUE_POSITIVE".parse::<Resolution>().is_err());
    }

    #[test]
    fn notes_are_bounded() {
        let context = |note: &str| TriageContext {
            actor: "alice".into(),
            from_address: "127.0.0.1".into(),
            note: note.into(),
            now_ms: 1,
        };
        assert!(validate(&TriageAction::Acknowledge, &context("")).is_ok());
        assert!(validate(&TriageAction::Comment, &context(" ")).is_err());
        assert!(validate(&TriageAction::Comment, &context("looked")).is_ok());
        assert!(validate(&TriageAction::Comment, &context("a\0b")).is_err());
        assert!(validate(&TriageAction::Comment, &context(&"x".repeat(MAX_NOTE + 1))).is_err());
    }
}
