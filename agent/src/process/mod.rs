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

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::sync::Arc;

use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, Uid, UpdateKind, Users};

pub use tracker::{Snapshot, Tracker};

use crate::detect::Detection;
use crate::host::events::ExecEvent;
use crate::host::lineage::{Lineage, ProcView};
use crate::host::procfs::ProcInfo;

/// Lists processes and reports AI processes that are new or changed since the previous scan.
pub struct ProcessSensor {
    system: System,
    users: Users,
    /// Names by uid; `None` for uids the user list does not know (so they are looked up once).
    user_names: HashMap<Uid, Option<String>>,
    tracker: Tracker,
    own_pid: Option<Pid>,
    health: (SensorState, String),
    lineage: Lineage,
    /// Processes of the previous listing, to run lineage checks on new ones only.
    known: HashSet<(u32, u64)>,
    /// Re-read command lines and executables only of new processes (an event source reports
    /// `exec`s); otherwise every scan re-reads them.
    incremental: bool,
    /// Processes that called `exec` since the last scan: re-read in full even when incremental.
    exec_pids: Vec<Pid>,
    boot_time_s: u64,
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
            lineage: Lineage::new(),
            known: HashSet::new(),
            incremental: false,
            exec_pids: Vec::new(),
            boot_time_s: System::boot_time(),
        }
    }

    /// With an event source reporting every `exec`, scans re-read command lines and
    /// executables of new processes only (and of those the events named): the rest is a cheap
    /// liveness pass.
    pub fn set_incremental(&mut self, incremental: bool) {
        self.incremental = incremental;
    }

    /// Handles one `exec` reported by the event source: the AI process detection (for a
    /// process that may be gone before the next scan) and the lineage detection when an AI
    /// agent started it.
    pub fn observe_exec(&mut self, event: &ExecEvent, now_ms: i64) -> Vec<Detection> {
        let mut detections = Vec::new();
        let process = &event.process;
        if Some(Pid::from_u32(process.pid)) == self.own_pid {
            return detections;
        }
        self.exec_pids.push(Pid::from_u32(process.pid));
        let start_time_s = process.start_time_s(self.boot_time_s);
        let user = process
            .uid
            .and_then(|uid| self.user_name(uid))
            .unwrap_or_default();
        let name = OsString::from(&process.name);
        let exe = std::path::PathBuf::from(&process.exe);
        let cmd: Vec<OsString> = process.args.iter().map(OsString::from).collect();
        let snapshot = Snapshot {
            pid: process.pid,
            parent_pid: process.ppid,
            start_time_s,
            name: &name,
            exe: (!process.exe.is_empty()).then_some(exe.as_path()),
            cmd: &cmd,
            uid: process.uid,
            user: Some(user.as_str()).filter(|u| !u.is_empty()),
        };
        if let Some(mut detection) = self.tracker.note(&snapshot, now_ms) {
            add_env_risks(&mut detection);
            detections.push(detection);
        }
        let boot = self.boot_time_s;
        let mut this = info_view(process, boot);
        this.user = &user;
        let ancestors: Vec<ProcView<'_>> = event
            .ancestors
            .iter()
            .map(|info| info_view(info, boot))
            .collect();
        let catalog = self.tracker.catalog().clone();
        detections.extend(self.lineage.check(&catalog, &this, &ancestors, now_ms));
        detections
    }

    fn user_name(&mut self, uid: u32) -> Option<String> {
        #[cfg(unix)]
        {
            let uid = Uid::try_from(uid as usize).ok()?;
            learn_user_names(&mut self.users, &mut self.user_names, std::iter::once(&uid));
            self.user_names.get(&uid).cloned().flatten()
        }
        #[cfg(not(unix))]
        {
            let _ = uid;
            None
        }
    }

    /// Swaps the catalog (after a validated update); see [`Tracker::set_catalog`].
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.tracker.set_catalog(catalog);
        self.lineage.clear();
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
        // `exec` keeps the pid and the start time: without an event source command line and
        // executable are re-read every scan; with one, only for new processes and those the
        // events said called `exec`. The user of a process never changes.
        let update = if self.incremental {
            UpdateKind::OnlyIfNotSet
        } else {
            UpdateKind::Always
        };
        let refresh = ProcessRefreshKind::nothing()
            .without_tasks()
            .with_cmd(update)
            .with_exe(update)
            .with_user(UpdateKind::OnlyIfNotSet);
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, refresh);
        if self.incremental && !self.exec_pids.is_empty() {
            let pids = std::mem::take(&mut self.exec_pids);
            let full = ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cmd(UpdateKind::Always)
                .with_exe(UpdateKind::Always);
            self.system
                .refresh_processes_specifics(ProcessesToUpdate::Some(&pids), false, full);
        }
        self.exec_pids.clear();

        let Self {
            system,
            users,
            user_names,
            tracker,
            own_pid,
            health,
            lineage,
            known,
            ..
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

        // Lineage of processes new since the previous scan (long-lived ones the event source
        // did not report, or all of them when there is no event source).
        let catalog = tracker.catalog().clone();
        let mut lineage_detections = Vec::new();
        let live: HashSet<(u32, u64)> = listing.iter().map(|p| (p.pid, p.start_time_s)).collect();
        let strings = |p: &Snapshot<'_>| {
            (
                p.name.to_string_lossy().into_owned(),
                p.exe
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                p.cmd
                    .iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<String>>(),
            )
        };
        let by_pid: HashMap<u32, &Snapshot<'_>> = listing.iter().map(|p| (p.pid, p)).collect();
        for process in listing
            .iter()
            .filter(|p| !known.contains(&(p.pid, p.start_time_s)))
        {
            let mut owned = vec![strings(process)];
            let mut chain = Vec::new();
            let mut parent = process.parent_pid;
            while parent > 1 && chain.len() < crate::detect::MAX_ANCESTORS {
                let Some(ancestor) = by_pid.get(&parent) else {
                    break;
                };
                if chain
                    .iter()
                    .any(|(pid, _): &(u32, &Snapshot<'_>)| *pid == parent)
                {
                    break;
                }
                chain.push((parent, *ancestor));
                owned.push(strings(ancestor));
                parent = ancestor.parent_pid;
            }
            let this = view(process, &owned[0]);
            let ancestors: Vec<ProcView<'_>> = chain
                .iter()
                .zip(owned.iter().skip(1))
                .map(|((_, p), o)| view(p, o))
                .collect();
            lineage_detections.extend(lineage.check(&catalog, &this, &ancestors, now_ms));
        }
        lineage.retain_live(&live);
        *known = live;
        let mut detections = tracker.observe(listing, now_ms);
        for detection in &mut detections {
            add_env_risks(detection);
        }
        detections.extend(lineage_detections);
        detections
    }
}

/// Adds the risks that the process's allowlisted environment variables raise (`GOOSE_MODE=auto`,
/// `OLLAMA_HOST=0.0.0.0`); no other variable is read.
fn add_env_risks(detection: &mut Detection) {
    let Some(pid) = detection.process.as_ref().map(|p| p.pid) else {
        return;
    };
    let vars = crate::host::procfs::Procfs::default().allowlisted_env(pid);
    for (risk, setting) in crate::host::procfs::env_risks(&vars) {
        if !detection.risk.iter().any(|r| r == risk) {
            detection.risk.push(risk.to_owned());
            detection.risk.sort();
        }
        detection
            .reason
            .push_str(&format!("; environment sets {setting}"));
    }
}

fn info_view(info: &ProcInfo, boot_time_s: u64) -> ProcView<'_> {
    ProcView {
        pid: info.pid,
        ppid: info.ppid,
        start_time_s: info.start_time_s(boot_time_s),
        name: &info.name,
        exe: &info.exe,
        args: &info.args,
        user: "",
        uid: info.uid,
    }
}

fn view<'a>(p: &Snapshot<'a>, owned: &'a (String, String, Vec<String>)) -> ProcView<'a> {
    ProcView {
        pid: p.pid,
        ppid: p.parent_pid,
        start_time_s: p.start_time_s,
        name: &owned.0,
        exe: &owned.1,
        args: &owned.2,
        user: p.user.unwrap_or_default(),
        uid: p.uid,
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
