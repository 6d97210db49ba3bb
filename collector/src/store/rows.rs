//! Rows as the drivers return them, and their conversion into model records. `FromRow` derives are
//! generic over the row type, so each struct decodes from SQLite and PostgreSQL alike.

use uuid::Uuid;

use super::error::StoreError;
use super::model::{
    AgentSummary, Alert, AlertProcess, Finding, ObservedProcess, Role, Signal, StoredObservation,
};

pub(super) fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|_| StoreError::Corrupt { what: "id" })
}

pub(super) fn role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt { what: "role" })
}

fn u32_of(value: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt { what })
}

/// A list of strings as JSON text (the column format of `risk`).
pub(super) fn json_list(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    pub secret_sha256: String,
    pub revoked_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub max_uses: Option<i64>,
    pub uses: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct AgentRow {
    id: String,
    group_name: String,
    hostname: String,
    os: String,
    os_version: String,
    arch: String,
    agent_version: String,
    catalog_version: String,
    enrolled_at_ms: i64,
    last_contact_ms: i64,
    health: String,
    revoked_at_ms: Option<i64>,
}

impl AgentRow {
    pub(super) fn into_summary(self) -> Result<AgentSummary, StoreError> {
        Ok(AgentSummary {
            agent_id: uuid(&self.id)?,
            group: self.group_name,
            hostname: self.hostname,
            os: self.os,
            os_version: self.os_version,
            arch: self.arch,
            agent_version: self.agent_version,
            catalog_version: self.catalog_version,
            enrolled_at_ms: self.enrolled_at_ms,
            last_contact_ms: self.last_contact_ms,
            health: serde_json::from_str(&self.health).map_err(|_| StoreError::Corrupt {
                what: "agent health",
            })?,
            revoked: self.revoked_at_ms.is_some(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ObservationRow {
    id: String,
    agent_id: String,
    hostname: String,
    observed_at_ms: i64,
    received_at_ms: i64,
    signal: String,
    name: String,
    product: String,
    vendor: String,
    category: String,
    rule: String,
    reason: String,
    risk: String,
    confidence: String,
    plan: Option<String>,
    catalog_version: String,
    count: i64,
    process_pid: Option<i64>,
    process_parent_pid: Option<i64>,
    process_name: Option<String>,
    process_exe: Option<String>,
    process_cmdline: Option<String>,
    process_user: Option<String>,
    details: String,
    tenant: Option<String>,
}

impl ObservationRow {
    pub(super) fn into_observation(self) -> Result<StoredObservation, StoreError> {
        let process = match self.process_pid {
            Some(pid) => Some(ObservedProcess {
                pid: u32_of(pid, "process pid")?,
                parent_pid: u32_of(self.process_parent_pid.unwrap_or(0), "process parent pid")?,
                name: self.process_name.unwrap_or_default(),
                exe: self.process_exe.unwrap_or_default(),
                cmdline: self.process_cmdline.unwrap_or_default(),
                user: self.process_user.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(StoredObservation {
            id: uuid(&self.id)?,
            agent_id: uuid(&self.agent_id)?,
            hostname: self.hostname,
            observed_at_ms: self.observed_at_ms,
            received_at_ms: self.received_at_ms,
            signal: self
                .signal
                .parse::<Signal>()
                .map_err(|_| StoreError::Corrupt { what: "signal" })?,
            name: self.name,
            product: self.product,
            vendor: self.vendor,
            category: self.category,
            rule: self.rule,
            reason: self.reason,
            risk: serde_json::from_str(&self.risk)
                .map_err(|_| StoreError::Corrupt { what: "risk" })?,
            confidence: self.confidence,
            plan: self.plan,
            tenant: self.tenant,
            catalog_version: self.catalog_version,
            count: u32_of(self.count, "count")?,
            process,
            details: serde_json::from_str(&self.details)
                .map_err(|_| StoreError::Corrupt { what: "details" })?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AlertRow {
    id: String,
    agent_id: String,
    hostname: String,
    group_name: String,
    user_name: String,
    product: String,
    vendor: String,
    category: String,
    reason: String,
    severity: String,
    status: String,
    title: String,
    rule: String,
    process_pid: Option<i64>,
    process_name: Option<String>,
    process_exe: Option<String>,
    process_cmdline: Option<String>,
    first_seen_ms: i64,
    last_seen_ms: i64,
    count: i64,
    first_observation_id: Option<String>,
    last_observation_id: Option<String>,
    explanation: String,
    suppressed_by: Option<String>,
}

impl AlertRow {
    pub(super) fn into_alert(self) -> Result<Alert, StoreError> {
        let process = match self.process_pid {
            Some(pid) => Some(AlertProcess {
                pid: u32_of(pid, "process pid")?,
                name: self.process_name.unwrap_or_default(),
                exe: self.process_exe.unwrap_or_default(),
                cmdline: self.process_cmdline.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Alert {
            id: uuid(&self.id)?,
            agent_id: uuid(&self.agent_id)?,
            hostname: self.hostname,
            group: self.group_name,
            user_name: self.user_name,
            product: self.product,
            vendor: self.vendor,
            category: self.category,
            reason: self.reason,
            severity: self.severity,
            status: self.status,
            title: self.title,
            rule: self.rule,
            process,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            count: self.count,
            first_observation_id: self.first_observation_id.as_deref().map(uuid).transpose()?,
            last_observation_id: self.last_observation_id.as_deref().map(uuid).transpose()?,
            explanation: self.explanation,
            suppressed_by: self.suppressed_by.as_deref().map(uuid).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct FindingRow {
    id: String,
    agent_id: String,
    hostname: String,
    group_name: String,
    user_name: String,
    product: String,
    signal: String,
    subject: String,
    vendor: String,
    category: String,
    rule: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    count: i64,
    first_observation_id: String,
    last_observation_id: String,
    risk: String,
    plan: Option<String>,
    tenant: Option<String>,
}

impl FindingRow {
    pub(super) fn into_finding(self) -> Result<Finding, StoreError> {
        Ok(Finding {
            id: uuid(&self.id)?,
            agent_id: uuid(&self.agent_id)?,
            hostname: self.hostname,
            group: self.group_name,
            user_name: self.user_name,
            product: self.product,
            signal: self
                .signal
                .parse::<Signal>()
                .map_err(|_| StoreError::Corrupt { what: "signal" })?,
            subject: self.subject,
            vendor: self.vendor,
            category: self.category,
            rule: self.rule,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            count: self.count,
            first_observation_id: uuid(&self.first_observation_id)?,
            last_observation_id: uuid(&self.last_observation_id)?,
            risk: serde_json::from_str(&self.risk)
                .map_err(|_| StoreError::Corrupt { what: "risk" })?,
            plan: self.plan,
            tenant: self.tenant,
        })
    }
}
