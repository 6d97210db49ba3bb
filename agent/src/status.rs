//! The daemon's status file (`status.json` in the state directory), written after every exchange
//! with the collector and read by `shadowai-agent status`, so that an MDM script can ask a running
//! agent how it is without talking to it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::commands::run::{Snapshot, now_ms};
use crate::identity::Identity;

/// The daemon's relation to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Started; no exchange with the collector yet.
    Starting,
    /// Last exchange with the collector succeeded.
    Connected,
    /// The collector could not be reached or refused for a while; retrying with backoff.
    Unreachable,
    /// The collector revoked this agent; it sends nothing.
    Revoked,
    /// The daemon stopped.
    Stopped,
}

/// One sensor's health as shown by `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensorStatus {
    /// Sensor name.
    pub sensor: String,
    /// State: OK, DEGRADED, BLIND, DISABLED.
    pub state: String,
    /// Detail.
    pub detail: String,
}

/// The content of `status.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// When this was written, Unix ms.
    pub updated_at_ms: i64,
    /// Daemon process id.
    pub pid: u32,
    /// Agent id.
    pub agent_id: String,
    /// Collector URL.
    pub collector: String,
    /// State.
    pub state: AgentState,
    /// Last successful exchange with the collector, Unix ms.
    pub last_contact_ms: Option<i64>,
    /// Last error talking to the collector.
    pub last_error: Option<String>,
    /// Observations waiting.
    pub spool_depth: u64,
    /// Age of the oldest one, ms.
    pub spool_oldest_age_ms: u64,
    /// Catalog version in use.
    pub catalog_version: String,
    /// Sensor health.
    pub sensors: Vec<SensorStatus>,
    /// Blind spots, as kind: detail.
    pub blind_spots: Vec<String>,
    /// Last report the collector acknowledged (committed), Unix ms, in this run.
    #[serde(default)]
    pub last_ack_ms: Option<i64>,
    /// Bytes the spool occupies on disk.
    #[serde(default)]
    pub spool_bytes: u64,
    /// Observations dropped and not yet reported to the collector, per reason and kind.
    #[serde(default)]
    pub dropped: Vec<DroppedStatus>,
    /// Damage the spool's recovery found at start (truncated tails, unreadable files).
    #[serde(default)]
    pub spool_problems: Vec<String>,
    /// The resource budget: level, measured CPU and memory, what is held back.
    #[serde(default)]
    pub budget: Option<crate::budget::BudgetReport>,
    /// Whether the agent holds back to stay inside its resource budget.
    #[serde(default)]
    pub degraded: bool,
}

/// Dropped observations of one reason and kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DroppedStatus {
    /// Why: `spool_full`, `spool_corrupt`, `spool_io_error`, `rejected_by_collector`.
    pub reason: String,
    /// Observation kind: `process`, `dns`, ...
    pub kind: String,
    /// How many.
    pub count: u64,
}

/// Writes the status file.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    agent_id: String,
    collector: String,
    last_contact_ms: std::sync::Mutex<Option<i64>>,
    /// The state and error last written, for [`StatusFile::refresh`].
    last_state: std::sync::Mutex<(AgentState, Option<String>)>,
}

impl StatusFile {
    /// A writer for the state directory of `identity`.
    pub fn new(state_dir: &Path, identity: &Identity) -> Self {
        Self {
            path: state_dir.join("status.json"),
            agent_id: identity.file.agent_id.clone(),
            collector: identity.collector.to_string(),
            last_contact_ms: std::sync::Mutex::new(None),
            last_state: std::sync::Mutex::new((AgentState::Starting, None)),
        }
    }

    /// Rewrites the status with fresh figures and the last state (the budget task does this every
    /// few seconds, so `status` is current even while the collector is unreachable).
    pub fn refresh(&self, snapshot: &Snapshot) {
        let (state, error) = self
            .last_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.write_file(snapshot, state, error.as_deref());
    }

    /// Writes the current status (best effort: a full disk must not stop the agent).
    pub fn write(&self, snapshot: &Snapshot, state: AgentState, error: Option<&str>) {
        *self
            .last_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (state, error.map(str::to_owned));
        if state == AgentState::Connected {
            *self
                .last_contact_ms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now_ms());
        }
        self.write_file(snapshot, state, error);
    }

    fn write_file(&self, snapshot: &Snapshot, state: AgentState, error: Option<&str>) {
        let now = now_ms();
        let last_contact = *self
            .last_contact_ms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let status = Status {
            updated_at_ms: now,
            pid: std::process::id(),
            agent_id: self.agent_id.clone(),
            collector: self.collector.clone(),
            state,
            last_contact_ms: last_contact,
            last_error: error.map(str::to_owned),
            spool_depth: snapshot.spool_depth,
            spool_oldest_age_ms: snapshot.spool_oldest_age_ms,
            catalog_version: snapshot.catalog_version.clone(),
            sensors: snapshot
                .sensors
                .iter()
                .map(|s| SensorStatus {
                    sensor: s.sensor.clone(),
                    state: shadowai_proto::v1::SensorState::try_from(s.state)
                        .map(|state| {
                            state
                                .as_str_name()
                                .trim_start_matches("SENSOR_STATE_")
                                .to_owned()
                        })
                        .unwrap_or_default(),
                    detail: s.detail.clone(),
                })
                .collect(),
            blind_spots: snapshot
                .blind_spots
                .iter()
                .map(|b| format!("{}: {}", b.kind, b.detail))
                .collect(),
            last_ack_ms: snapshot.last_ack_ms,
            spool_bytes: snapshot.spool_bytes,
            dropped: snapshot
                .dropped
                .iter()
                .map(|d| DroppedStatus {
                    reason: d.reason.clone(),
                    kind: d.kind.clone(),
                    count: d.count,
                })
                .collect(),
            spool_problems: snapshot.spool_problems.clone(),
            degraded: snapshot.budget.as_ref().is_some_and(|b| b.degraded),
            budget: snapshot.budget.clone(),
        };
        let Ok(json) = serde_json::to_vec_pretty(&status) else {
            return;
        };
        let temporary = self.path.with_extension("tmp");
        if std::fs::write(&temporary, json).is_ok() {
            let _ = std::fs::rename(&temporary, &self.path);
        }
    }
}

/// Reads `status.json` from a state directory.
pub fn read(state_dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(state_dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}
