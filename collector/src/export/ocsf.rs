//! Alerts as OCSF 1.3.0 Detection Finding events (class_uid 2004, category 2 "Findings").
//!
//! Pure: an [`ExportAlert`] and the time in, a JSON value out. Mapping:
//! - `finding_info.uid` = the alert id (stable across Create/Update/Close), `metadata.uid` = alert
//!   id + status (one per state, so a SIEM can de-duplicate a redelivered event);
//! - `activity_id` 1 Create the first time a sink gets the alert, 3 Close once resolved, else 2;
//! - `device` = the host (agent id, hostname, OS, group); `actor` = the user and the process;
//! - `evidences[]` = the process, and for network signals the destination endpoint (and the DNS
//!   query); shadowai's own fields (product, vendor, category, reason, rule, observation ids) go to
//!   `unmapped`, as OCSF asks for source fields without a schema attribute.

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

use crate::store::ExportAlert;

/// The OCSF schema version events claim (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;

/// The finding activity an export represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create = 1,
    Update = 2,
    Close = 3,
}

impl Activity {
    /// What a sink should be told about an alert in its current state.
    pub fn of(export: &ExportAlert) -> Activity {
        if is_closed(&export.alert.status) {
            Activity::Close
        } else if export.sent_status.is_none() {
            Activity::Create
        } else {
            Activity::Update
        }
    }

    fn name(self) -> &'static str {
        match self {
            Activity::Create => "Create",
            Activity::Update => "Update",
            Activity::Close => "Close",
        }
    }
}

fn is_closed(status: &str) -> bool {
    matches!(status, "resolved" | "closed")
}

/// OCSF `severity_id` and caption for an alert severity.
pub fn severity(severity: &str) -> (u8, &'static str) {
    match severity {
        "info" | "informational" => (1, "Informational"),
        "low" => (2, "Low"),
        "medium" => (3, "Medium"),
        "high" => (4, "High"),
        "critical" => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

/// OCSF finding `status_id` and caption for an alert status.
fn status(status: &str) -> (u8, &'static str) {
    match status {
        "open" => (1, "New"),
        "acknowledged" => (2, "In Progress"),
        "suppressed" => (3, "Suppressed"),
        "resolved" | "closed" => (4, "Resolved"),
        _ => (99, "Other"),
    }
}

/// OCSF `os.type_id` for the OS name agents report.
fn os_type(os: &str) -> (u16, &'static str) {
    match os.to_ascii_lowercase().as_str() {
        "linux" => (200, "Linux"),
        "macos" | "darwin" => (300, "macOS"),
        "windows" => (100, "Windows"),
        _ => (0, "Unknown"),
    }
}

/// The Detection Finding event of an alert. `now_ms` is the event time.
pub fn detection_finding(export: &ExportAlert, now_ms: i64) -> Value {
    let alert = &export.alert;
    let activity = Activity::of(export);
    let (severity_id, severity_name) = severity(&alert.severity);
    let (status_id, status_name) = status(&alert.status);
    let (os_type_id, os_type_name) = os_type(&export.os);

    let mut event = Map::new();
    event.insert("activity_id".into(), json!(activity as u8));
    event.insert("activity_name".into(), json!(activity.name()));
    event.insert("category_uid".into(), json!(CATEGORY_UID));
    event.insert("category_name".into(), json!("Findings"));
    event.insert("class_uid".into(), json!(CLASS_UID));
    event.insert("class_name".into(), json!("Detection Finding"));
    event.insert("type_uid".into(), json!(CLASS_UID * 100 + activity as u32));
    event.insert(
        "type_name".into(),
        json!(format!("Detection Finding: {}", activity.name())),
    );
    event.insert("severity_id".into(), json!(severity_id));
    event.insert("severity".into(), json!(severity_name));
    event.insert("status_id".into(), json!(status_id));
    event.insert("status".into(), json!(status_name));
    event.insert("time".into(), json!(now_ms));
    event.insert("start_time".into(), json!(alert.first_seen_ms));
    event.insert("end_time".into(), json!(alert.last_seen_ms));
    event.insert("count".into(), json!(alert.count));
    event.insert("message".into(), json!(alert.title));
    event.insert("is_alert".into(), json!(activity == Activity::Create));
    event.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "uid": format!("{}:{}", alert.id, alert.status),
            "log_name": "alerts",
            "product": {
                "name": "shadowai",
                "vendor_name": "shadowai",
                "version": env!("CARGO_PKG_VERSION"),
            },
        }),
    );
    event.insert(
        "finding_info".into(),
        json!({
            "uid": alert.id.to_string(),
            "title": alert.title,
            "desc": format!(
                "{} ({}, {}) on {}: {}",
                alert.product, alert.vendor, alert.category, alert.hostname, alert.reason
            ),
            "types": [alert.reason],
            "first_seen_time": alert.first_seen_ms,
            "last_seen_time": alert.last_seen_ms,
            "analytic": { "uid": alert.rule, "name": alert.rule, "type_id": 1, "type": "Rule" },
            "data_sources": export.last_signal.iter().collect::<Vec<_>>(),
        }),
    );

    let mut device = json!({
        "type_id": 0,
        "type": "Unknown",
        "uid": alert.agent_id.to_string(),
        "hostname": alert.hostname,
        "name": alert.hostname,
        "os": { "name": export.os, "version": export.os_version, "type_id": os_type_id, "type": os_type_name },
        "groups": [{ "name": alert.group }],
    });
    if !export.agent_version.is_empty() {
        device["agent_list"] = json!([{
            "name": "shadowai-agent",
            "version": export.agent_version,
            "uid": alert.agent_id.to_string(),
        }]);
    }
    event.insert("device".into(), device);

    let process = alert.process.as_ref().map(|p| {
        let mut process = json!({ "pid": p.pid, "name": p.name, "cmd_line": p.cmdline });
        if !p.exe.is_empty() {
            let file_name = p.exe.rsplit(['/', '\\']).next().unwrap_or(&p.exe);
            process["file"] = json!({ "path": p.exe, "name": file_name, "type_id": 1 });
        }
        if !alert.user_name.is_empty() {
            process["user"] = json!({ "name": alert.user_name });
        }
        process
    });
    let mut actor = Map::new();
    if !alert.user_name.is_empty() {
        actor.insert("user".into(), json!({ "name": alert.user_name }));
    }
    if let Some(process) = &process {
        actor.insert("process".into(), process.clone());
    }
    if !actor.is_empty() {
        event.insert("actor".into(), Value::Object(actor));
    }

    let mut evidence = Map::new();
    if let Some(process) = process {
        evidence.insert("process".into(), process);
    }
    if let (Some(signal), Some(name)) = (&export.last_signal, &export.last_name) {
        let details = export.last_details.as_ref();
        match signal.as_str() {
            "dns" => {
                evidence.insert(
                    "query".into(),
                    json!({ "hostname": name, "type": details.and_then(|d| d.get("qtype")).cloned().unwrap_or(Value::Null) }),
                );
                evidence.insert("dst_endpoint".into(), json!({ "hostname": name }));
            }
            "tls_sni" | "quic_sni" => {
                let mut dst = endpoint(details.and_then(|d| d.get("dst")));
                dst.insert("hostname".into(), json!(name));
                evidence.insert("dst_endpoint".into(), Value::Object(dst));
                let src = endpoint(details.and_then(|d| d.get("src")));
                if !src.is_empty() {
                    evidence.insert("src_endpoint".into(), Value::Object(src));
                }
                evidence.insert(
                    "connection_info".into(),
                    json!({ "protocol_name": if signal == "quic_sni" { "udp" } else { "tcp" } }),
                );
            }
            "listener" => {
                if let Some(d) = details {
                    let mut local = Map::new();
                    if let Some(ip) = d.get("address").and_then(Value::as_str) {
                        local.insert("ip".into(), json!(ip));
                    }
                    if let Some(port) = d.get("port").and_then(Value::as_u64) {
                        local.insert("port".into(), json!(port));
                    }
                    evidence.insert("src_endpoint".into(), Value::Object(local));
                }
            }
            _ => {}
        }
    }
    if !evidence.is_empty() {
        event.insert("evidences".into(), json!([Value::Object(evidence)]));
    }
    event.insert(
        "resources".into(),
        json!([{ "uid": alert.agent_id.to_string(), "name": alert.hostname, "type": "host" }]),
    );
    event.insert(
        "unmapped".into(),
        json!({
            "shadowai": {
                "product": alert.product,
                "vendor": alert.vendor,
                "category": alert.category,
                "reason": alert.reason,
                "rule": alert.rule,
                "alert_status": alert.status,
                "first_observation_id": alert.first_observation_id.map(|id| id.to_string()),
                "last_observation_id": alert.last_observation_id.map(|id| id.to_string()),
            }
        }),
    );
    Value::Object(event)
}

/// `ip:port` (or `[v6]:port`) as an OCSF network endpoint; empty when it does not parse.
fn endpoint(text: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(address) = text
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<SocketAddr>().ok())
    {
        out.insert("ip".into(), json!(address.ip().to_string()));
        out.insert("port".into(), json!(address.port()));
    }
    out
}

#[cfg(test)]
mod tests;
