//! `GET /`: the alerts table, and the agents with what they cannot see.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tracing::warn;

use super::{HttpState, now_ms, session, view};
use crate::store::{AgentSummary, Alert, AlertQuery};

/// Alerts shown on the page; the API pages through the rest.
const ALERTS_SHOWN: u32 = 500;
/// Characters of a command line shown in the table; the full text is in the cell's tooltip.
const CMDLINE_SHOWN: usize = 80;

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    user_name: String,
    role: &'static str,
    csrf: String,
    alerts: Vec<AlertView>,
    has_more_alerts: bool,
    agents: Vec<AgentView>,
}

/// One table row; every field is display text (made visible, not yet HTML-escaped).
struct AlertView {
    title: String,
    host: String,
    user: String,
    vendor: String,
    product: String,
    pid: String,
    process_name: String,
    exe: String,
    cmdline_short: String,
    cmdline_full: String,
    rule: String,
    severity: String,
    status: String,
    count: i64,
    first_seen: String,
    last_seen: String,
}

impl AlertView {
    fn new(alert: &Alert) -> Self {
        let process = alert.process.as_ref();
        let cmdline = process.map_or("", |p| p.cmdline.as_str());
        AlertView {
            title: view::visible(&alert.title),
            host: view::visible(&alert.hostname),
            user: view::visible(&alert.user_name),
            vendor: view::visible(&alert.vendor),
            product: view::visible(&alert.product),
            pid: process.map(|p| p.pid.to_string()).unwrap_or_default(),
            process_name: view::visible(process.map_or("", |p| p.name.as_str())),
            exe: view::visible(process.map_or("", |p| p.exe.as_str())),
            cmdline_short: view::visible_truncated(cmdline, CMDLINE_SHOWN),
            cmdline_full: view::visible(cmdline),
            rule: view::visible(&alert.rule),
            severity: view::visible(&alert.severity),
            status: view::visible(&alert.status),
            count: alert.count,
            first_seen: view::rfc3339_seconds(alert.first_seen_ms),
            last_seen: view::rfc3339_seconds(alert.last_seen_ms),
        }
    }
}

struct AgentView {
    host: String,
    group: String,
    os: String,
    agent_version: String,
    last_contact: String,
    state: &'static str,
    /// Sensors that are blind or degraded, and blind spots, each with its detail (the fix).
    problems: Vec<String>,
}

impl AgentView {
    fn new(agent: &AgentSummary) -> Self {
        AgentView {
            host: view::visible(&agent.hostname),
            group: view::visible(&agent.group),
            os: view::visible(&format!("{} {} {}", agent.os, agent.os_version, agent.arch)),
            agent_version: view::visible(&agent.agent_version),
            last_contact: view::rfc3339_seconds(agent.last_contact_ms),
            state: if agent.revoked { "revoked" } else { "active" },
            problems: problems(&agent.health),
        }
    }
}

/// What an agent's last heartbeat says it cannot see (the health document written by ingest).
fn problems(health: &serde_json::Value) -> Vec<String> {
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

pub(super) async fn alerts(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let now = now_ms();
    let user = match session::current(&state, &headers, now).await {
        Ok(Some((user, _))) => user,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => {
            warn!(error = %error, "session lookup failed");
            return view::internal_error_page();
        }
    };
    let query = AlertQuery {
        limit: ALERTS_SHOWN,
        after: None,
        status: None,
        product: None,
    };
    let (page, agents) =
        match tokio::try_join!(state.store.list_alerts(&query), state.store.list_agents()) {
            Ok(found) => found,
            Err(error) => {
                warn!(error = %error, "dashboard query failed");
                return view::internal_error_page();
            }
        };
    let page = AlertsPage {
        user_name: view::visible(&user.user_name),
        role: user.role.as_str(),
        csrf: user.csrf_token,
        alerts: page.items.iter().map(AlertView::new).collect(),
        has_more_alerts: page.next.is_some(),
        agents: agents.iter().map(AgentView::new).collect(),
    };
    view::render(StatusCode::OK, &page)
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
