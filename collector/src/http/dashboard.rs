//! `GET /`: the alert queue: filters, sorting, pages, and bulk triage for responders.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tracing::warn;

use super::view::Chrome;
use super::{HttpState, access, now_ms, view};
use crate::store::{
    AgentSummary, Alert, AlertFilter, AlertSort, Resolution, TriagedAlert, UserSummary,
};

/// Alerts per page of the queue.
const PAGE_SIZE: u32 = 50;
/// Characters of a command line shown in the table; the full text is in the cell's tooltip.
const CMDLINE_SHOWN: usize = 80;
/// Longest filter value accepted (longer is a 400).
const MAX_FILTER: usize = 256;
/// Highest page number accepted.
const MAX_PAGE_NUMBER: u32 = 100_000;

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    alerts: Vec<AlertView>,
    total: i64,
    first_shown: i64,
    last_shown: i64,
    filters: FilterView,
    sorts: Vec<Link>,
    previous_page: Option<String>,
    next_page: Option<String>,
    /// The current query string, sent back by the bulk form so that the queue keeps its filters.
    back: String,
    assignees: Vec<String>,
    resolutions: Vec<&'static str>,
}

/// A link with a label; `current` marks the active choice.
pub(super) struct Link {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// One `<option>` of a filter.
struct Choice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

fn choices(options: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value,
            label,
            selected: *value == current,
        })
        .collect()
}

/// The filter form's current values (display text) and choices.
struct FilterView {
    status_choices: Vec<Choice>,
    severity_choices: Vec<Choice>,
    since_choices: Vec<Choice>,
    reason: String,
    product: String,
    category: String,
    group: String,
    host: String,
    user: String,
    assignee: String,
}

/// The queue's query parameters as sent.
#[derive(Debug, Default, Deserialize)]
pub(super) struct QueueParams {
    severity: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    product: Option<String>,
    category: Option<String>,
    group: Option<String>,
    host: Option<String>,
    user: Option<String>,
    assignee: Option<String>,
    since: Option<String>,
    sort: Option<String>,
    page: Option<String>,
}

impl QueueParams {
    fn value(text: &Option<String>) -> &str {
        text.as_deref().unwrap_or("")
    }

    /// The query string of these parameters with `sort` and `page` replaced.
    fn query(&self, sort: &str, page: u32) -> String {
        let page = if page == 0 {
            String::new()
        } else {
            page.to_string()
        };
        view::query_string(&[
            ("severity", Self::value(&self.severity)),
            ("status", Self::value(&self.status)),
            ("reason", Self::value(&self.reason)),
            ("product", Self::value(&self.product)),
            ("category", Self::value(&self.category)),
            ("group", Self::value(&self.group)),
            ("host", Self::value(&self.host)),
            ("user", Self::value(&self.user)),
            ("assignee", Self::value(&self.assignee)),
            ("since", Self::value(&self.since)),
            ("sort", sort),
            ("page", &page),
        ])
    }

    /// The store filter these parameters ask for, or what is wrong with them.
    fn filter(&self, now_ms: i64) -> Result<AlertFilter, &'static str> {
        let text = |value: &Option<String>| -> Result<Option<String>, &'static str> {
            match value.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) if v.len() > MAX_FILTER => Err("a filter value is longer than 256 bytes"),
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
        let status = match self.status.as_deref() {
            None | Some("") => Some("unresolved".to_owned()),
            Some("all") => None,
            Some(s @ ("open" | "acknowledged" | "resolved" | "unresolved")) => Some(s.to_owned()),
            Some(_) => {
                return Err("status must be unresolved, open, acknowledged, resolved or all");
            }
        };
        let since_ms = match self.since.as_deref() {
            None | Some("" | "all") => None,
            Some("24h") => Some(now_ms - 24 * 3_600_000),
            Some("7d") => Some(now_ms - 7 * 86_400_000),
            Some("30d") => Some(now_ms - 30 * 86_400_000),
            Some(_) => return Err("since must be 24h, 7d, 30d or all"),
        };
        let sort = match self.sort.as_deref() {
            None | Some("") => AlertSort::default(),
            Some(s) => s
                .parse()
                .map_err(|_| "sort is not one of the offered orders")?,
        };
        let page = match self.page.as_deref() {
            None | Some("") => 0,
            Some(p) => p
                .parse::<u32>()
                .ok()
                .filter(|p| *p <= MAX_PAGE_NUMBER)
                .ok_or("page must be a number")?,
        };
        let assignee = match self.assignee.as_deref() {
            Some("(unassigned)") => Some(String::new()),
            _ => text(&self.assignee)?,
        };
        Ok(AlertFilter {
            severity: text(&self.severity)?,
            status,
            reason: text(&self.reason)?,
            product: text(&self.product)?,
            category: text(&self.category)?,
            group: text(&self.group)?,
            host: text(&self.host)?,
            user: text(&self.user)?,
            assignee,
            agent_id: None,
            since_ms,
            sort,
            page,
            page_size: PAGE_SIZE,
        })
    }
}

/// One table row; every field is display text (made visible, not yet HTML-escaped).
pub(super) struct AlertView {
    pub id: String,
    pub title: String,
    pub host: String,
    pub agent_id: String,
    pub user: String,
    pub vendor: String,
    pub product: String,
    pub pid: String,
    pub process_name: String,
    pub exe: String,
    pub cmdline_short: String,
    pub cmdline_full: String,
    pub rule: String,
    pub reason: String,
    pub severity: String,
    pub status: String,
    pub assignee: String,
    pub resolution: String,
    pub escalated: bool,
    pub count: i64,
    pub first_seen: String,
    pub last_seen: String,
}

impl AlertView {
    pub(super) fn new(found: &TriagedAlert) -> Self {
        let alert: &Alert = &found.alert;
        let process = alert.process.as_ref();
        let cmdline = process.map_or("", |p| p.cmdline.as_str());
        AlertView {
            id: alert.id.to_string(),
            title: view::visible(&alert.title),
            host: view::visible(&alert.hostname),
            agent_id: alert.agent_id.to_string(),
            user: view::visible(&alert.user_name),
            vendor: view::visible(&alert.vendor),
            product: view::visible(&alert.product),
            pid: process.map(|p| p.pid.to_string()).unwrap_or_default(),
            process_name: view::visible(process.map_or("", |p| p.name.as_str())),
            exe: view::visible(process.map_or("", |p| p.exe.as_str())),
            cmdline_short: view::visible_truncated(cmdline, CMDLINE_SHOWN),
            cmdline_full: view::visible(cmdline),
            rule: view::visible(&alert.rule),
            reason: view::visible(&alert.reason),
            severity: view::visible(&alert.severity),
            status: view::visible(&alert.status),
            assignee: view::visible(found.triage.assignee.as_deref().unwrap_or("")),
            resolution: view::visible(found.triage.resolution.as_deref().unwrap_or("")),
            escalated: found.triage.escalated_at_ms.is_some(),
            count: alert.count,
            first_seen: view::rfc3339_seconds(alert.first_seen_ms),
            last_seen: view::rfc3339_seconds(alert.last_seen_ms),
        }
    }
}

/// Names of the users an alert may be assigned to (enabled responders and admins).
pub(super) fn assignable(users: &[UserSummary]) -> Vec<String> {
    users
        .iter()
        .filter(|u| u.disabled_at_ms.is_none() && u.role >= crate::store::Role::Responder)
        .map(|u| u.name.clone())
        .collect()
}

pub(super) async fn alerts(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<QueueParams>, QueryRejection>,
) -> Response {
    let user = match access::page_user(&state, &headers).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Ok(Query(params)) = params else {
        return view::message_page(
            StatusCode::BAD_REQUEST,
            "Bad filter",
            "The queue's filters were not valid.",
        );
    };
    let filter = match params.filter(now_ms()) {
        Ok(filter) => filter,
        Err(message) => return view::message_page(StatusCode::BAD_REQUEST, "Bad filter", message),
    };
    let (queue, users) =
        match tokio::try_join!(state.store.alert_queue(&filter), state.store.list_users()) {
            Ok(found) => found,
            Err(error) => {
                warn!(error = %error, "alert queue query failed");
                return view::internal_error_page();
            }
        };
    let sort = filter.sort.as_str();
    let offset = i64::from(filter.page) * i64::from(PAGE_SIZE);
    let shown = i64::try_from(queue.alerts.len()).unwrap_or(0);
    let sorts = [
        ("Last seen", AlertSort::LastSeen),
        ("First seen", AlertSort::FirstSeen),
        ("Severity", AlertSort::Severity),
        ("Count", AlertSort::Count),
        ("Host", AlertSort::Host),
    ]
    .into_iter()
    .map(|(label, s)| Link {
        label,
        href: format!("/?{}", params.query(s.as_str(), 0)),
        current: s == filter.sort,
    })
    .collect();
    let value = |text: &Option<String>| view::visible(text.as_deref().unwrap_or(""));
    let page = AlertsPage {
        chrome: Chrome::new(&user),
        alerts: queue.alerts.iter().map(AlertView::new).collect(),
        total: queue.total,
        first_shown: if shown == 0 { 0 } else { offset + 1 },
        last_shown: offset + shown,
        filters: FilterView {
            status_choices: choices(
                &[
                    ("unresolved", "unresolved"),
                    ("open", "open"),
                    ("acknowledged", "acknowledged"),
                    ("resolved", "resolved"),
                    ("all", "all"),
                ],
                params.status.as_deref().unwrap_or("unresolved"),
            ),
            severity_choices: choices(
                &[
                    ("", "any"),
                    ("critical", "critical"),
                    ("high", "high"),
                    ("medium", "medium"),
                    ("low", "low"),
                ],
                params.severity.as_deref().unwrap_or(""),
            ),
            since_choices: choices(
                &[
                    ("", "any time"),
                    ("24h", "last 24 h"),
                    ("7d", "last 7 days"),
                    ("30d", "last 30 days"),
                ],
                params.since.as_deref().unwrap_or(""),
            ),
            reason: value(&params.reason),
            product: value(&params.product),
            category: value(&params.category),
            group: value(&params.group),
            host: value(&params.host),
            user: value(&params.user),
            assignee: value(&params.assignee),
        },
        sorts,
        previous_page: (filter.page > 0)
            .then(|| format!("/?{}", params.query(sort, filter.page - 1))),
        next_page: (offset + shown < queue.total)
            .then(|| format!("/?{}", params.query(sort, filter.page + 1))),
        back: params.query(sort, filter.page),
        assignees: assignable(&users),
        resolutions: Resolution::ALL.iter().map(|r| r.as_str()).collect(),
    };
    view::render(StatusCode::OK, &page)
}

pub(super) struct AgentView {
    pub agent_id: String,
    pub host: String,
    pub group: String,
    pub os: String,
    pub agent_version: String,
    pub catalog_version: String,
    pub last_contact: String,
    pub state: &'static str,
    /// Sensors that are blind or degraded, and blind spots, each with its detail (the fix).
    pub problems: Vec<String>,
}

/// An agent is silent when it has not been in contact for this long (several heartbeats).
pub(super) const SILENT_AFTER_MS: i64 = 15 * 60 * 1000;

impl AgentView {
    pub(super) fn new(agent: &AgentSummary, now_ms: i64) -> Self {
        let problems = problems(&agent.health);
        let state = agent_state(agent, !problems.is_empty(), now_ms);
        AgentView {
            agent_id: agent.agent_id.to_string(),
            host: view::visible(&agent.hostname),
            group: view::visible(&agent.group),
            os: view::visible(&format!("{} {} {}", agent.os, agent.os_version, agent.arch)),
            agent_version: view::visible(&agent.agent_version),
            catalog_version: view::visible(&agent.catalog_version),
            last_contact: view::rfc3339_seconds(agent.last_contact_ms),
            state,
            problems,
        }
    }
}

/// `revoked`, `silent`, `blinded` (its heartbeat reports `problems`) or `reporting`.
pub(super) fn agent_state(agent: &AgentSummary, has_problems: bool, now_ms: i64) -> &'static str {
    if agent.revoked {
        "revoked"
    } else if now_ms.saturating_sub(agent.last_contact_ms) > SILENT_AFTER_MS {
        "silent"
    } else if has_problems {
        "blinded"
    } else {
        "reporting"
    }
}

/// What an agent's last heartbeat says it cannot see (the health document written by ingest).
pub(super) fn problems(health: &serde_json::Value) -> Vec<String> {
    let text = |value: &serde_json::Value, key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut out = Vec::new();
    for sensor in health
        .get("sensors")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let state = text(sensor, "state");
        if state == "SENSOR_STATE_BLIND" || state == "SENSOR_STATE_DEGRADED" {
            let state = state.trim_start_matches("SENSOR_STATE_").to_lowercase();
            out.push(view::visible(&format!(
                "{} sensor {state}: {}",
                text(sensor, "sensor"),
                text(sensor, "detail")
            )));
        }
    }
    for spot in health
        .get("blind_spots")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        out.push(view::visible(&format!(
            "blind spot {}: {}",
            text(spot, "kind"),
            text(spot, "detail")
        )));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blind_sensors_and_blind_spots_are_listed() {
        let health = serde_json::json!({
            "sensors": [
                {"sensor": "process", "state": "SENSOR_STATE_OK", "detail": ""},
                {"sensor": "network", "state": "SENSOR_STATE_BLIND", "detail": "needs CAP_NET_RAW: sudo setcap cap_net_raw+ep shadowai-agent"},
            ],
            "blind_spots": [{"kind": "doh", "detail": "browser uses DNS over HTTPS", "since_ms": 1}],
        });
        assert_eq!(
            problems(&health),
            vec![
                "network sensor blind: needs CAP_NET_RAW: sudo setcap cap_net_raw+ep shadowai-agent".to_owned(),
                "blind spot doh: browser uses DNS over HTTPS".to_owned(),
            ]
        );
        assert!(problems(&serde_json::json!({})).is_empty());
        assert!(problems(&serde_json::json!({"sensors": "garbage"})).is_empty());
    }
}
