//! The process sensor: lists processes with sysinfo and reports AI tools and agents.
//!
//! This module is the OS shell: it reads the process table (only name, command line, executable
//! and user; no CPU, memory, disk or thread data) and hands a listing to the [`Tracker`], which
//! decides what to report. It never kills, signals or ptraces anything.
//!
//! Without root, Linux hides other users' executable paths (`/proc/<pid>/exe`); those processes
//! are still matched by name and command line, and [`ProcessSensor::health`] says the view is
//! partial.

mod tracker;

use std::collections::HashMap;
use std::sync::Arc;

use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, Uid, UpdateKind, Users};

pub use tracker::{Snapshot, Tracker};

use crate::detect::Detection;

/// Lists processes and reports AI processes that are new or changed since the previous scan.
pub struct ProcessSensor {
    system: System,
    users: Users,
    /// Names by uid; `None` for uids the user list does not know (so they are looked up once).
    user_names: HashMap<Uid, Option<String>>,
    tracker: Tracker,
    own_pid: Option<Pid>,
    health: (SensorState, String),
}

impl std::fmt::Debug for ProcessSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSensor")
            .field("tracked", &self.tracker.len())
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl ProcessSensor {
    /// A sensor that has not scanned yet; its first scan reports every AI process running.
    pub fn new(catalog: Arc<Catalog>) -> ProcessSensor {
        ProcessSensor {
            system: System::new(),
            users: Users::new(),
            user_names: HashMap::new(),
            tracker: Tracker::new(catalog),
            own_pid: sysinfo::get_current_pid().ok(),
            health: (SensorState::Unspecified, "not scanned yet".to_owned()),
        }
    }

    /// Swaps the catalog (after a validated update); see [`Tracker::set_catalog`].
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.tracker.set_catalog(catalog);
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        self.tracker.catalog()
    }

    /// The sensor's state after the last scan and a sentence saying why.
    pub fn health(&self) -> (SensorState, String) {
        self.health.clone()
    }

    /// Reads the process table and returns detections for AI processes that are new since the
    /// previous scan, or whose executable, command line or catalog verdict changed.
    pub fn scan(&mut self, now_ms: i64) -> Vec<Detection> {
        // Command line and executable are re-read every scan, because `exec` keeps the pid and
        // the start time; the user of a process never changes.
        let refresh = ProcessRefreshKind::nothing()
            .without_tasks()
            .with_cmd(UpdateKind::Always)
            .with_exe(UpdateKind::Always)
            .with_user(UpdateKind::OnlyIfNotSet);
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, refresh);

        let Self {
            system,
            users,
            user_names,
            tracker,
            own_pid,
            health,
        } = self;
        learn_user_names(
            users,
            user_names,
            system.processes().values().filter_map(|p| p.user_id()),
        );
        let own_uid = own_pid
            .and_then(|pid| system.process(pid))
            .and_then(|process| process.effective_user_id().or(process.user_id()))
            .cloned();
        let mut visible = 0usize;
        let mut hidden_exe = 0usize;
        let mut listing = Vec::with_capacity(system.processes().len());
        for (pid, process) in system.processes() {
            // Threads and kernel threads are not programs anyone started.
            if process.thread_kind().is_some() || Some(*pid) == *own_pid {
                continue;
            }
            visible += 1;
            let uid = process.user_id();
            if process.exe().is_none() && uid.is_some() && uid != own_uid.as_ref() {
                hidden_exe += 1;
            }
            listing.push(Snapshot {
                pid: pid.as_u32(),
                parent_pid: process.parent().map(Pid::as_u32).unwrap_or(0),
                start_time_s: process.start_time(),
                name: process.name(),
                exe: process.exe(),
                cmd: process.cmd(),
                uid: uid.and_then(numeric_uid),
                user: uid
                    .and_then(|uid| user_names.get(uid))
                    .and_then(Option::as_deref),
            });
        }
        *health = assess(visible, hidden_exe, own_uid.as_ref().and_then(numeric_uid));
        tracker.observe(listing, now_ms)
    }
}

/// Makes sure every uid in `uids` has an entry, re-reading the user list once when one is new.
fn learn_user_names<'a>(
    users: &mut Users,
    names: &mut HashMap<Uid, Option<String>>,
    uids: impl Iterator<Item = &'a Uid>,
) {
    let unknown: Vec<Uid> = uids
        .filter(|uid| !names.contains_key(uid))
        .cloned()
        .collect();
    if unknown.is_empty() {
        return;
    }
    users.refresh();
    for user in users.list() {
        names.insert(user.id().clone(), Some(user.name().to_owned()));
    }
    for uid in unknown {
        names.entry(uid).or_insert(None);
    }
}

#[cfg(unix)]
fn numeric_uid(uid: &Uid) -> Option<u32> {
    Some(**uid)
}

#[cfg(not(unix))]
fn numeric_uid(_uid: &Uid) -> Option<u32> {
    None
}

/// Health from what the last scan could see.
fn assess(visible: usize, hidden_exe: usize, own_uid: Option<u32>) -> (SensorState, String) {
    if visible == 0 {
        return (
            SensorState::Blind,
            "no processes are visible: check that /proc is mounted and readable".to_owned(),
        );
    }
    if hidden_exe > 0 && own_uid != Some(0) {
        return (
            SensorState::Degraded,
            format!(
                "partial: running without root, the executable path of {hidden_exe} of {visible} \
                 processes (other users') cannot be read; they are matched by name and command \
                 line only. Run the agent as root for full visibility"
            ),
        );
    }
    (SensorState::Ok, format!("{visible} processes visible"))
}

#[cfg(test)]
mod tests;
