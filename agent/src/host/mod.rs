//! The host sensor: everything the agent learns from the machine itself rather than the
//! network.
//!
//! * processes ([`crate::process::ProcessSensor`]: sysinfo polling, every 5 s by default) and,
//!   on Linux as root, process events ([`events`]: the kernel's proc connector) so that
//!   short-lived children are not missed;
//! * agentic lineage ([`lineage`]): shells, infrastructure CLIs and MCP servers that AI agents
//!   start, with the chain of ancestors;
//! * listening local model servers ([`listeners`], `/proc/net/tcp{,6}`);
//! * the file inventory ([`inventory`]): agent and MCP configs, apps, IDE extensions, model
//!   files; at start, every `inventory_interval` (1 h) and when a watched file changes.
//!
//! [`HostSensor::run`] is the daemon's loop; `scan` calls the parts once.

// The proc connector is Linux's; elsewhere the listener reports itself unavailable and the
// parser stays (tested and fuzzed on every OS).
#[cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]
pub mod events;
pub mod files;
pub mod inventory;
pub mod lineage;
pub mod listeners;
pub mod procfs;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use shadowai_catalog::Catalog;
use shadowai_proto::v1::{self, SensorState};

use crate::detect::{Detection, Evidence};
use crate::process::ProcessSensor;
use events::{EventSource, ExecEvent};
use listeners::Listening;

/// How the host sensor runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Process polling interval.
    pub process_interval: Duration,
    /// Use the kernel's process events where available (Linux, root).
    pub process_events: bool,
    /// Run the file inventory.
    pub inventory: bool,
    /// Full inventory rescan interval.
    pub inventory_interval: Duration,
    /// Rescan when a watched config file changes.
    pub inventory_watch: bool,
    /// The filesystem root of the inventory (`/` on the live system).
    pub root: PathBuf,
    /// The daemon's resource budget: scans stretch while it holds back.
    pub throttle: Option<Arc<crate::budget::Throttle>>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            process_interval: Duration::from_secs(5),
            process_events: true,
            inventory: true,
            inventory_interval: Duration::from_secs(3600),
            inventory_watch: true,
            root: PathBuf::from("/"),
            throttle: None,
        }
    }
}

/// A change to a watched directory was seen; debounced before the rescan.
const WATCH_DEBOUNCE: Duration = Duration::from_secs(2);
/// Longest the loop sleeps without looking at the stop channel.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// The running host sensor: processes, events, lineage, listeners, inventory.
pub struct HostSensor {
    options: HostOptions,
    process: ProcessSensor,
    events: Option<(EventSource, Receiver<ExecEvent>)>,
    events_problem: Option<String>,
    listeners_reported: HashSet<Listening>,
    inventory_seen: HashSet<String>,
    inventory_health: (SensorState, String),
    inventory_problems: usize,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    changes: Option<Receiver<()>>,
    change_sender: Option<mpsc::Sender<()>>,
}

impl std::fmt::Debug for HostSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSensor")
            .field("process", &self.process)
            .field("events", &self.events.as_ref().map(|(source, _)| source))
            .finish_non_exhaustive()
    }
}

impl HostSensor {
    /// Starts the event source (when asked and possible); nothing is scanned yet.
    pub fn new(catalog: Arc<Catalog>, options: HostOptions) -> HostSensor {
        let mut process = ProcessSensor::new(catalog);
        let (events, events_problem) = if options.process_events {
            match EventSource::start(procfs::Procfs::default()) {
                Ok(source) => (Some(source), None),
                Err(error) => (
                    None,
                    Some(format!(
                        "process events unavailable ({error}); short-lived processes between \
                         scans are missed. Run the agent as root on Linux to enable them"
                    )),
                ),
            }
        } else {
            (
                None,
                Some("process events disabled by configuration".to_owned()),
            )
        };
        process.set_incremental(events.is_some());
        match &events_problem {
            None => tracing::info!("process events on (proc connector)"),
            Some(problem) => tracing::warn!("{problem}"),
        }
        HostSensor {
            options,
            process,
            events,
            events_problem,
            listeners_reported: HashSet::new(),
            inventory_seen: HashSet::new(),
            inventory_health: (SensorState::Unspecified, "not scanned yet".into()),
            inventory_problems: 0,
            watcher: None,
            watched: Vec::new(),
            changes: None,
            change_sender: None,
        }
    }

    /// Whether kernel process events are being received.
    pub fn has_events(&self) -> bool {
        self.events.is_some()
    }

    /// Swaps the catalog; the inventory reports again what the new catalog says differently.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.process.set_catalog(catalog);
    }

    /// One process scan plus the listeners; new detections only.
    pub fn scan_processes(&mut self, now_ms: i64) -> Vec<Detection> {
        let mut detections = self.process.scan(now_ms);
        let listening = listeners::read_live();
        // Forget listeners that closed, so a reopened one is reported again.
        self.listeners_reported
            .retain(|known| listening.contains(known));
        detections.extend(listeners::detect(
            self.process.catalog(),
            &listening,
            &mut self.listeners_reported,
            now_ms,
        ));
        detections
    }

    /// Drains waiting process events.
    pub fn drain_events(&mut self, now_ms: i64) -> Vec<Detection> {
        let mut events = Vec::new();
        if let Some((_, receiver)) = &self.events {
            while let Ok(event) = receiver.try_recv() {
                events.push(event);
            }
        }
        events
            .iter()
            .flat_map(|event| self.process.observe_exec(event, now_ms))
            .collect()
    }

    /// One inventory pass: detections not reported by the previous pass.
    pub fn scan_inventory(&mut self, now_ms: i64) -> Vec<Detection> {
        let found = inventory::scan(self.process.catalog(), &self.options.root, now_ms);
        for problem in &found.problems {
            tracing::warn!(path = %problem.path, problem = %problem.problem, "inventory problem");
        }
        self.inventory_problems = found.problems.len();
        let models: Vec<String> = found
            .models
            .iter()
            .map(|m| format!("{} {} files {} bytes", m.kind, m.files, m.bytes))
            .collect();
        self.inventory_health = (
            if found.problems.is_empty() {
                SensorState::Ok
            } else {
                SensorState::Degraded
            },
            format!(
                "{} homes, {} config files read, {} problems{}{}",
                found.homes,
                found.files_read,
                found.problems.len(),
                if models.is_empty() { "" } else { "; models: " },
                models.join(", ")
            ),
        );
        if self.options.inventory_watch && self.watched != found.watch {
            self.watch(&found.watch);
        }
        let mut seen = HashSet::new();
        let mut fresh = Vec::new();
        for detection in found.detections {
            let key = inventory_key(&detection);
            if !self.inventory_seen.contains(&key) {
                fresh.push(detection);
            }
            seen.insert(key);
        }
        self.inventory_seen = seen;
        fresh
    }

    fn watch(&mut self, dirs: &[PathBuf]) {
        use notify::Watcher as _;
        let sender = self
            .change_sender
            .get_or_insert_with(|| {
                let (sender, receiver) = mpsc::channel();
                self.changes = Some(receiver);
                sender
            })
            .clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(%error, "cannot watch config files; rescanning on the interval only");
                return;
            }
        };
        for dir in dirs.iter().take(1024) {
            let _ = watcher.watch(dir, notify::RecursiveMode::NonRecursive);
        }
        self.watcher = Some(watcher);
        self.watched = dirs.to_vec();
    }

    /// The process sensor's own health (without the event source's).
    pub fn process_health(&self) -> (SensorState, String) {
        self.process.health()
    }

    /// Sensor health: `process` and `inventory`.
    pub fn health(&self) -> Vec<v1::SensorHealth> {
        let (mut state, mut detail) = self.process.health();
        if let Some(problem) = &self.events_problem
            && state == SensorState::Ok
        {
            state = SensorState::Degraded;
            detail = format!("{detail}; {problem}");
        }
        let mut health = vec![v1::SensorHealth {
            sensor: "process".into(),
            state: state as i32,
            detail: crate::redact::cap(&detail, 1024).0.to_owned(),
        }];
        if self.options.inventory {
            health.push(v1::SensorHealth {
                sensor: "inventory".into(),
                state: self.inventory_health.0 as i32,
                detail: crate::redact::cap(&self.inventory_health.1, 1024)
                    .0
                    .to_owned(),
            });
        }
        health
    }

    /// What the host sensor cannot see now: `process_partial` without root or events.
    pub fn blind_spots(&self, since_ms: i64) -> Vec<v1::BlindSpot> {
        let (state, detail) = self.process.health();
        let mut details = Vec::new();
        if state != SensorState::Ok {
            details.push(detail);
        }
        if let Some(problem) = &self.events_problem {
            details.push(problem.clone());
        }
        if details.is_empty() {
            return Vec::new();
        }
        vec![v1::BlindSpot {
            kind: "process_partial".into(),
            detail: crate::redact::cap(&details.join("; "), 1024).0.to_owned(),
            since_ms,
        }]
    }

    /// Factor on the scan intervals the resource budget asks for (1 when it holds nothing back).
    fn scan_factor(&self) -> u32 {
        self.options
            .throttle
            .as_ref()
            .map_or(1, |throttle| throttle.level().scan_factor())
    }

    /// The daemon loop: process scans every interval, events as they come, inventory at
    /// start, every inventory interval and after watched changes. `emit` gets every batch of
    /// detections with the current health; returns when `stop` is signalled or dropped.
    pub fn run(
        &mut self,
        stop: &Receiver<()>,
        catalogs: &Receiver<Arc<Catalog>>,
        now_ms: &dyn Fn() -> i64,
        emit: &mut dyn FnMut(&[Detection], &HostSensor),
    ) {
        let mut next_scan = Instant::now();
        let mut next_inventory = Instant::now();
        let mut change_seen: Option<Instant> = None;
        loop {
            while let Ok(newer) = catalogs.try_recv() {
                self.set_catalog(newer);
                next_inventory = Instant::now();
            }
            let now = Instant::now();
            let mut detections = self.drain_events(now_ms());
            let mut scanned = now >= next_scan;
            if scanned {
                detections.extend(self.scan_processes(now_ms()));
                next_scan = now + self.options.process_interval * self.scan_factor();
            }
            if let Some(changes) = &self.changes {
                while changes.try_recv().is_ok() {
                    change_seen.get_or_insert(now);
                }
            }
            let changed = change_seen.is_some_and(|at| now.duration_since(at) >= WATCH_DEBOUNCE);
            if self.options.inventory && (now >= next_inventory || changed) {
                detections.extend(self.scan_inventory(now_ms()));
                scanned = true;
                next_inventory =
                    Instant::now() + self.options.inventory_interval * self.scan_factor();
                change_seen = None;
                // The rescan itself may touch watched directories (atime): drop those.
                if let Some(changes) = &self.changes {
                    while changes.try_recv().is_ok() {}
                }
            }
            // Health changes only with a scan; between scans only detections are news.
            if scanned || !detections.is_empty() {
                emit(&detections, self);
            }
            let wait = next_scan
                .saturating_duration_since(Instant::now())
                .min(MAX_WAIT);
            let stopped = match &self.events {
                Some((_, receiver)) => match receiver.recv_timeout(wait) {
                    Ok(event) => {
                        let detections = self.process.observe_exec(&event, now_ms());
                        if !detections.is_empty() {
                            emit(&detections, self);
                        }
                        !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty))
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        !matches!(stop.try_recv(), Err(mpsc::TryRecvError::Empty))
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        self.events = None;
                        self.events_problem =
                            Some("process events stopped; polling only".to_owned());
                        self.process.set_incremental(false);
                        false
                    }
                },
                None => !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout)),
            };
            if stopped {
                return;
            }
        }
    }
}

/// What makes an inventory detection the same as one reported before.
fn inventory_key(detection: &Detection) -> String {
    match &detection.evidence {
        Evidence::Config {
            path,
            setting,
            value,
            ..
        } => format!("{}\0{path}\0{setting}\0{value}", detection.rule),
        Evidence::App {
            app_id,
            path,
            version,
        } => {
            format!("{}\0{app_id}\0{path}\0{version}", detection.rule)
        }
        _ => format!("{}\0{}", detection.rule, detection.name),
    }
}
