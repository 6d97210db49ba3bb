//! `shadowai-agent run`: the daemon.
//!
//! Threads: the process sensor scans on its own OS thread (sysinfo blocks), puts detections into the
//! spool and wakes the transport; the transport runs on a single-threaded tokio runtime and owns the
//! connection to the collector: heartbeat on connect and every interval, reports whenever the spool
//! has something, retries with exponential backoff and full jitter (capped) after any failure. The
//! backoff starts over only when the collector took data (or there was none to send): a collector
//! that answers heartbeats but sheds every report still sees the delays double.
//! A budget task on the same runtime samples the agent's own CPU and memory every few seconds and
//! sets the shared [`Throttle`] the sensors and the transport read (see [`crate::budget`]).
//!
//! Shutdown (SIGTERM, Ctrl-C): the batch in flight goes back to the spool, the sensors stop, one
//! last delivery is tried, and the spool is synced, all within [`SHUTDOWN_GRACE`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng;
use shadowai_catalog::Catalog;
use shadowai_proto::v1;
use tokio::sync::Notify;
use tonic::Code;
use tracing::{debug, info, warn};

use super::CommandError;
use crate::budget::{self, BudgetReport, Level, Throttle};
use crate::config::{Config, default_config_path};
use crate::host::{HostOptions, HostSensor};
use crate::identity::{self, Identity};
use crate::spool::Spool;
use crate::status::{AgentState, StatusFile};
use crate::transport;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (default: /etc/shadowai/agent.toml or the OS's equivalent).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Only validate the configuration: exit 0 when valid, 2 with what to fix.
    #[arg(long)]
    pub check: bool,
    /// Also print each detection as a JSON line on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Longest wait between two attempts to reach the collector.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// First retry delay.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Time from SIGTERM to exit: in-flight work is back in the spool and synced within it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Part of the grace kept for stopping threads and syncing the spool after the last delivery.
const SHUTDOWN_RESERVE: Duration = Duration::from_millis(1500);

/// Loads the configuration named on the command line, or the OS default (or built-in defaults when
/// no file exists there). Problems are usage errors (exit 2).
pub fn load_config(path: Option<&PathBuf>) -> Result<(Config, Option<PathBuf>), CommandError> {
    let (path, required) = match path {
        Some(path) => (path.clone(), true),
        None => (default_config_path(), false),
    };
    if !required && !path.exists() {
        return Ok((Config::default(), None));
    }
    let config = Config::load(&path).map_err(|e| CommandError::Usage(e.to_string()))?;
    Ok((config, Some(path)))
}

/// Runs `run`.
pub fn run(args: RunArgs) -> Result<(), CommandError> {
    super::init_logging();
    let (config, path) = load_config(args.config.as_ref())?;
    if args.check {
        let shown = path.map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string(),
        );
        println!("configuration ok: {shown}");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(daemon(config, args.json, shutdown_signal()))
}

/// Exponential backoff with full jitter: the n-th delay is uniform in [0, min(cap, base·2ⁿ)].
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Self {
        Self { attempt: 0 }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = BACKOFF_BASE
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(BACKOFF_CAP);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64))
    }

    /// Called after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

struct Shared {
    spool: Mutex<Spool>,
    wake: Notify,
    sensors: Mutex<Vec<v1::SensorHealth>>,
    blind_spots: Mutex<Vec<v1::BlindSpot>>,
    catalog_version: Mutex<String>,
    /// A catalog the collector offered that failed validation (version, sha256): not fetched again.
    refused_catalog: Mutex<Option<(String, String)>>,
    started: Instant,
    /// What the resource budget asks of sensors and transport.
    throttle: Arc<Throttle>,
    /// The budget's last report (none before the first sample).
    budget: Mutex<Option<BudgetReport>>,
    /// What opening the spool found damaged (truncated tails, unreadable files).
    spool_problems: Vec<String>,
    /// When the collector last acknowledged a report, Unix ms (0: never in this run).
    last_ack_ms: AtomicI64,
}

impl Shared {
    fn lock_spool(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The daemon: runs until `stop` resolves (SIGTERM or Ctrl-C for `run`, the Service Control
/// Manager's Stop for `service`) or the agent is revoked, then shuts down within `SHUTDOWN_GRACE`.
pub(crate) async fn daemon(
    config: Config,
    json: bool,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CommandError> {
    let Some(collector) = config.collector.clone() else {
        return Err(CommandError::Usage(
            "no collector configured: set `collector = \"https://HOST:PORT\"` in the configuration file"
                .into(),
        ));
    };
    let mut identity =
        match Identity::load(&config.state_dir).context("cannot load the agent identity")? {
            Some(identity) => identity,
            None => enroll_at_first_start(&config, &collector).await?,
        };
    // The configured address wins over the one used at enrollment: a collector may move (new
    // port, new name) while the CA and the agent's identity stay the same.
    identity.collector = collector;
    info!(agent_id = %identity.file.agent_id, "agent starting");
    let catalog = Arc::new(Catalog::embedded().context("the built-in catalog is invalid")?);
    let (spool, spool_problems, spool_health) = open_spool(&config);
    let throttle = Arc::new(Throttle::default());
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        wake: Notify::new(),
        sensors: Mutex::new(Vec::new()),
        blind_spots: Mutex::new(Vec::new()),
        catalog_version: Mutex::new(catalog.version().to_owned()),
        refused_catalog: Mutex::new(None),
        started: Instant::now(),
        throttle: throttle.clone(),
        budget: Mutex::new(None),
        spool_problems,
        last_ack_ms: AtomicI64::new(0),
    });
    if let Some(health) = spool_health {
        set_sensor_health(&shared, health);
    }
    let status = StatusFile::new(&config.state_dir, &identity);
    status.write(&shared_snapshot(&shared), AgentState::Starting, None);

    let (stop_sender, stop_receiver) = mpsc::channel::<()>();
    let (catalog_sender, catalog_receiver) = mpsc::channel::<Arc<Catalog>>();
    let mut fanout = CatalogFanout {
        senders: vec![catalog_sender],
    };
    let (network_stop, network_thread) =
        start_network(&config, &catalog, json, &shared, &mut fanout);
    let sensor_thread = if config.process_enabled {
        let shared = shared.clone();
        let mut options = config.host_options();
        options.throttle = Some(throttle.clone());
        Some(
            std::thread::Builder::new()
                .name("process-sensor".into())
                .spawn(move || {
                    process_sensor_loop(
                        catalog,
                        options,
                        json,
                        &shared,
                        &stop_receiver,
                        &catalog_receiver,
                    )
                })
                .context("cannot start the process sensor")?,
        )
    } else {
        set_sensor_health(
            &shared,
            v1::SensorHealth {
                sensor: "process".into(),
                state: v1::SensorState::Disabled as i32,
                detail: "disabled by configuration".into(),
            },
        );
        None
    };

    let transport = transport_loop(&config, &identity, &shared, &status, &fanout);
    let budget = budget_loop(&config.budget, &shared, &status);
    tokio::select! {
        () = transport => {}
        () = budget => {}
        () = stop => info!("shutting down"),
    }
    let stopping = Instant::now();
    let deadline = stopping + SHUTDOWN_GRACE;
    // The batch that was on its way goes back to the spool: it is either delivered below or
    // resent by the next run.
    shared.lock_spool().release();
    let _ = stop_sender.send(());
    if let Some(network_stop) = network_stop {
        let _ = network_stop.send(());
    }
    if let Some(thread) = network_thread {
        // Stopping closes the windows: pending counts reach the spool before the last flush.
        join_until(
            thread,
            deadline.checked_sub(SHUTDOWN_RESERVE).unwrap_or(deadline),
        )
        .await;
    }
    // Give in-flight detections one last chance to be delivered, inside the grace.
    let flush_budget = deadline
        .checked_sub(SHUTDOWN_RESERVE)
        .map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        });
    let _ = tokio::time::timeout(flush_budget, flush_once(&config, &identity, &shared)).await;
    shared.lock_spool().release();
    if let Some(thread) = sensor_thread {
        // A scan in progress may outlast the grace: its detections are written one record at a
        // time under the spool lock, so leaving it behind loses nothing already written.
        join_until(
            thread,
            deadline
                .checked_sub(Duration::from_millis(500))
                .unwrap_or(deadline),
        )
        .await;
    }
    let mut spool = shared.lock_spool();
    spool.flush();
    let depth = spool.depth();
    drop(spool);
    status.write(&shared_snapshot(&shared), AgentState::Stopped, None);
    info!(
        spooled = depth,
        elapsed_ms = stopping.elapsed().as_millis() as u64,
        "stopped"
    );
    Ok(())
}

/// Waits for a thread to finish, but not beyond `deadline`.
async fn join_until(thread: std::thread::JoinHandle<()>, deadline: Instant) {
    while !thread.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if thread.is_finished() {
        let _ = thread.join();
    } else {
        warn!("a sensor thread did not stop within the shutdown grace; leaving it");
    }
}

/// Samples the agent's CPU and memory every few seconds, feeds the budget controller and
/// publishes its level to the sensors and the transport; also keeps `status.json` fresh.
async fn budget_loop(config: &budget::BudgetConfig, shared: &Shared, status: &StatusFile) {
    let mut controller = budget::Controller::new(config.clone());
    let mut ticker = tokio::time::interval(config.sample_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(usage) = budget::measure() else {
            set_sensor_health(
                shared,
                v1::SensorHealth {
                    sensor: "budget".into(),
                    state: v1::SensorState::Blind as i32,
                    detail: "cannot measure the agent's own CPU and memory on this platform; \
                             nothing is held back"
                        .into(),
                },
            );
            std::future::pending::<()>().await;
            return;
        };
        // Monotonic time: a wall-clock step must not look like a burst of CPU.
        let now = i64::try_from(shared.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        if let Some(level) = controller.handle_sample(now, usage) {
            shared.throttle.set(level);
            let summary = controller.report().summary();
            if level == Level::Normal {
                info!(%summary, "resource budget: back to normal");
            } else {
                warn!(%summary, "resource budget exceeded: holding back");
            }
        }
        let report = controller.report();
        let summary = report.summary();
        set_sensor_health(
            shared,
            v1::SensorHealth {
                sensor: "budget".into(),
                state: if report.degraded {
                    v1::SensorState::Degraded
                } else {
                    v1::SensorState::Ok
                } as i32,
                detail: crate::redact::cap(&summary, 1024).0.to_owned(),
            },
        );
        set_blind_spots(
            shared,
            &["budget_degraded"],
            if report.degraded {
                vec![v1::BlindSpot {
                    kind: "budget_degraded".into(),
                    detail: crate::redact::cap(&summary, 1024).0.to_owned(),
                    since_ms: now_ms(),
                }]
            } else {
                Vec::new()
            },
        );
        *shared
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
        status.refresh(&shared_snapshot(shared));
    }
}

/// Opens the durable spool under the state directory. A spool that cannot be opened (read-only
/// disk, permissions) leaves the agent running on a memory spool of the same bound: evidence then
/// survives collector outages but not a restart, and the agent says so loudly (log, `status`, and
/// the `spool` sensor in heartbeats). Returns the spool, the problems recovery found, and the
/// `spool` sensor's health when there is something to say.
fn open_spool(config: &Config) -> (Spool, Vec<String>, Option<v1::SensorHealth>) {
    let dir = config.state_dir.join("spool");
    let degraded = |detail: String| v1::SensorHealth {
        sensor: "spool".into(),
        state: v1::SensorState::Degraded as i32,
        detail: crate::redact::cap(&detail, 1024).0.to_owned(),
    };
    match Spool::open(&dir, config.spool_max_bytes) {
        Ok((spool, recovery)) => {
            if recovery.recovered > 0 {
                info!(
                    observations = recovery.recovered,
                    "spool: resending what the last run did not deliver"
                );
            }
            for problem in &recovery.problems {
                warn!("spool: {problem}");
            }
            let health = (!recovery.problems.is_empty()).then(|| {
                degraded(format!(
                    "damage found and cut at start (counted as dropped `spool_corrupt`): {}",
                    recovery.problems.join("; ")
                ))
            });
            (spool, recovery.problems, health)
        }
        Err(error) => {
            let problem = format!(
                "cannot open the spool in {}: {error}; keeping observations in memory only",
                dir.display()
            );
            warn!("{problem}");
            (
                Spool::in_memory(config.spool_max_bytes),
                vec![problem.clone()],
                Some(degraded(problem)),
            )
        }
    }
}

/// Enrolls at the first start of an MDM-installed agent, from the token file or the token in the
/// configuration. A refused token stops the agent (retrying would only hammer the collector); a
/// collector that cannot be reached or is busy is retried with backoff.
async fn enroll_at_first_start(
    config: &Config,
    collector: &crate::config::CollectorUrl,
) -> Result<Identity, CommandError> {
    let token = match (&config.enrollment_token, &config.enrollment_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(token_file)) => std::fs::read_to_string(token_file).map_err(|e| {
            CommandError::Usage(format!(
                "cannot read enrollment token file {}: {e}",
                token_file.display()
            ))
        })?,
        (None, None) => {
            return Err(CommandError::Usage(format!(
                "not enrolled: run `shadowai-agent enroll --collector URL --token TOKEN` or set \
                 `enrollment_token_file` (or `enrollment_token`) in the configuration (state \
                 directory {})",
                config.state_dir.display()
            )));
        }
    };
    info!(collector = %collector, "not enrolled yet: enrolling with the configured token");
    let mut backoff = Backoff::new();
    loop {
        match identity::enroll(collector, &token, &config.state_dir, now_ms()).await {
            Ok(identity) => {
                info!(agent_id = %identity.file.agent_id, "enrolled");
                return Ok(identity);
            }
            Err(
                error @ (identity::IdentityError::BadToken | identity::IdentityError::Refused(_)),
            ) => {
                return Err(CommandError::Runtime(anyhow::anyhow!(
                    "enrollment failed: {error}"
                )));
            }
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "enrollment failed");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn process_sensor_loop(
    catalog: Arc<Catalog>,
    options: HostOptions,
    json: bool,
    shared: &Shared,
    stop: &mpsc::Receiver<()>,
    catalogs: &mpsc::Receiver<Arc<Catalog>>,
) {
    let mut sensor = HostSensor::new(catalog, options);
    let since = now_ms();
    sensor.run(stop, catalogs, &now_ms, &mut |detections, sensor| {
        for health in sensor.health() {
            set_sensor_health(shared, health);
        }
        set_blind_spots(shared, &["process_partial"], sensor.blind_spots(since));
        if !detections.is_empty() {
            let now = now_ms();
            let mut spool = shared.lock_spool();
            for detection in detections {
                if json {
                    println!("{}", detection.to_json_line());
                }
                spool.enqueue(detection.to_observation(), now);
            }
            drop(spool);
            shared.wake.notify_one();
        }
    });
}

/// Every sensor that must learn of a new catalog.
pub struct CatalogFanout {
    senders: Vec<mpsc::Sender<Arc<Catalog>>>,
}

impl CatalogFanout {
    fn send(&self, catalog: &Arc<Catalog>) {
        for sender in &self.senders {
            let _ = sender.send(catalog.clone());
        }
    }
}

/// Replaces the health entry of `health.sensor`, keeping the other sensors'.
fn set_sensor_health(shared: &Shared, health: v1::SensorHealth) {
    let mut sensors = shared
        .sensors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    sensors.retain(|s| s.sensor != health.sensor);
    sensors.push(health);
    sensors.sort_by(|a, b| a.sensor.cmp(&b.sensor));
}

/// Replaces the blind spots of the given kinds, keeping the others.
fn set_blind_spots(shared: &Shared, kinds: &[&str], spots: Vec<v1::BlindSpot>) {
    let mut blind_spots = shared
        .blind_spots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    blind_spots.retain(|b| !kinds.contains(&b.kind.as_str()));
    blind_spots.extend(spots);
}

/// Most blind spots in one heartbeat (the collector's limit).
const MAX_HEARTBEAT_BLIND_SPOTS: usize = 32;

/// Most network blind spots (DoH, DoT, ECH) kept for the heartbeat; the first ones stay.
const MAX_NETWORK_BLIND_SPOTS: usize = 32;

/// Starts the network sensor when configured. A failure (no privilege, no platform support)
/// makes it a blind spot and never stops the daemon. Returns the stop channel and the thread
/// that owns the sensor (it refreshes its health every few seconds and stops it on request).
fn start_network(
    config: &Config,
    catalog: &Arc<Catalog>,
    json: bool,
    shared: &Arc<Shared>,
    fanout: &mut CatalogFanout,
) -> (
    Option<mpsc::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
) {
    use crate::net::{NetConfig, NetSensor, Output};
    if !config.network_enabled {
        set_sensor_health(
            shared,
            v1::SensorHealth {
                sensor: "network".into(),
                state: v1::SensorState::Disabled as i32,
                detail: "disabled by configuration ([network] enabled = false)".into(),
            },
        );
        return (None, None);
    }
    let net_config = NetConfig {
        interfaces: config.network_interfaces.clone(),
        throttle: Some(shared.throttle.clone()),
        detector: crate::net::DetectorConfig {
            window_ms: i64::try_from(config.network_window.as_millis()).unwrap_or(600_000),
            ..crate::net::DetectorConfig::default()
        },
        ..NetConfig::default()
    };
    let sink = {
        let shared = shared.clone();
        move |output: Output| {
            if json {
                println!("{}", output.to_json_line());
            }
            match output {
                Output::Detection(detection) => {
                    shared
                        .lock_spool()
                        .enqueue(detection.to_observation(), now_ms());
                    shared.wake.notify_one();
                }
                Output::BlindSpot(blind) => {
                    let spot = blind.to_blind_spot();
                    let mut spots = shared
                        .blind_spots
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let is_network =
                        |b: &v1::BlindSpot| matches!(b.kind.as_str(), "doh" | "dot" | "ech");
                    let known = spots
                        .iter()
                        .any(|b| b.kind == spot.kind && b.detail == spot.detail);
                    if !known
                        && spots.iter().filter(|b| is_network(b)).count() < MAX_NETWORK_BLIND_SPOTS
                    {
                        spots.push(spot);
                    }
                }
            }
        }
    };
    let sensor = match NetSensor::start(net_config, catalog.clone(), sink) {
        Ok(sensor) => sensor,
        Err(error) => {
            let kind = match error {
                crate::net::CaptureError::NoPrivilege => "capture_no_privilege",
                _ => "capture_unavailable",
            };
            warn!(error = %error, "network sensor blind");
            set_sensor_health(
                shared,
                v1::SensorHealth {
                    sensor: "network".into(),
                    state: v1::SensorState::Blind as i32,
                    detail: error.to_string(),
                },
            );
            set_blind_spots(
                shared,
                &[kind],
                vec![v1::BlindSpot {
                    kind: kind.into(),
                    detail: error.to_string(),
                    since_ms: now_ms(),
                }],
            );
            return (None, None);
        }
    };
    fanout.senders.push(sensor.catalog_sender());
    let (stop_sender, stop) = mpsc::channel::<()>();
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("network-sensor".into())
        .spawn(move || {
            loop {
                let (state, detail) = sensor.health();
                set_sensor_health(
                    &shared,
                    v1::SensorHealth {
                        sensor: "network".into(),
                        state: state as i32,
                        detail,
                    },
                );
                match stop.recv_timeout(Duration::from_secs(5)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
            let stats = sensor.stop();
            info!(
                frames = stats.frames,
                dropped = stats.overflow,
                detections = stats.detector.detections,
                "network sensor stopped"
            );
        });
    match spawned {
        Ok(thread) => (Some(stop_sender), Some(thread)),
        Err(error) => {
            warn!(error = %error, "cannot start the network sensor thread");
            (None, None)
        }
    }
}

/// Why a session with the collector ended.
enum SessionEnd {
    /// Try again after a backoff delay (at least `retry_after` when the collector said so).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The collector revoked this agent: stop sending.
    Revoked,
    /// The certificate was renewed: reconnect with the new identity at once.
    Renewed(Box<Identity>),
}

async fn transport_loop(
    config: &Config,
    identity: &Identity,
    shared: &Shared,
    status: &StatusFile,
    catalogs: &CatalogFanout,
) {
    let mut backoff = Backoff::new();
    let mut identity = identity.clone();
    loop {
        match session(config, &identity, shared, status, catalogs, &mut backoff).await {
            SessionEnd::Renewed(renewed) => {
                info!(
                    expires_at_ms = renewed.file.certificate_expires_at_ms,
                    "agent certificate renewed"
                );
                identity = *renewed;
            }
            SessionEnd::Revoked => {
                tracing::error!("the collector revoked this agent; nothing more will be sent");
                status.write(&shared_snapshot(shared), AgentState::Revoked, None);
                // Stay alive (a service manager would only restart us) but silent.
                std::future::pending::<()>().await;
            }
            SessionEnd::Retry { error, retry_after } => {
                let delay = backoff.next_delay().max(retry_after.unwrap_or_default());
                warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "collector unreachable");
                status.write(
                    &shared_snapshot(shared),
                    AgentState::Unreachable,
                    Some(&error),
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn retry_after(status: &tonic::Status) -> Option<Duration> {
    let value = status.metadata().get("retry-after")?.to_str().ok()?;
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|seconds| Duration::from_secs(seconds.min(3600)))
}

fn end_of(status: tonic::Status) -> SessionEnd {
    if status.code() == Code::PermissionDenied {
        return SessionEnd::Revoked;
    }
    SessionEnd::Retry {
        retry_after: retry_after(&status),
        error: format!("{}: {}", status.code(), status.message()),
    }
}

async fn session(
    config: &Config,
    identity: &Identity,
    shared: &Shared,
    status: &StatusFile,
    catalogs: &CatalogFanout,
    backoff: &mut Backoff,
) -> SessionEnd {
    let mut client = match transport::connect(&identity.collector, identity.tls.clone()).await {
        Ok(client) => client,
        Err(error) => {
            return SessionEnd::Retry {
                error: error.to_string(),
                retry_after: None,
            };
        }
    };
    let mut heartbeat_interval = config.heartbeat_interval;
    let mut next_heartbeat = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_heartbeat {
            match heartbeat(&mut client, shared, catalogs).await {
                Ok(reply) => {
                    // Not a reason to start the backoff over: `deliver` does, when the collector
                    // takes data. A collector at capacity answers heartbeats and sheds reports.
                    if let Some(asked) = reply.interval {
                        heartbeat_interval = asked;
                    }
                    status.write(&shared_snapshot(shared), AgentState::Connected, None);
                    if reply.renew_certificate {
                        match identity::renew(&mut client, identity, &config.state_dir).await {
                            Ok(renewed) => return SessionEnd::Renewed(Box::new(renewed)),
                            // The old certificate still works: try again at the next heartbeat.
                            Err(error) => warn!(%error, "certificate renewal failed"),
                        }
                    }
                }
                Err(status) => return end_of(status),
            }
            next_heartbeat = tokio::time::Instant::now() + heartbeat_interval;
        }
        if let Err(status_error) = deliver(&mut client, config, shared, backoff).await {
            return end_of(status_error);
        }
        status.write(&shared_snapshot(shared), AgentState::Connected, None);
        tokio::select! {
            () = shared.wake.notified() => {
                // Let a burst of detections collect into one batch.
                tokio::time::sleep(config.flush_interval).await;
            }
            () = tokio::time::sleep_until(next_heartbeat) => {}
        }
    }
}

/// Sends everything in the spool, batch by batch; commits what the collector acknowledged. The
/// backoff starts over when the collector acknowledged a batch or the spool is empty: only then is
/// the collector known to take data (a shed after progress is paced by its `retry-after`).
async fn deliver(
    client: &mut shadowai_proto::v1::agent_service_client::AgentServiceClient<
        tonic::transport::Channel,
    >,
    config: &Config,
    shared: &Shared,
    backoff: &mut Backoff,
) -> Result<(), tonic::Status> {
    loop {
        let batch_size = shared
            .throttle
            .level()
            .batch_size(config.batch_max_observations);
        let batch = shared.lock_spool().lease(batch_size);
        if batch.is_empty() {
            backoff.reset();
            return Ok(());
        }
        let count = batch.len();
        match client
            .report(v1::ReportRequest {
                observations: batch,
            })
            .await
        {
            Ok(response) => {
                let committed = response.into_inner().committed_ids;
                debug!(
                    sent = count,
                    committed = committed.len(),
                    "report acknowledged"
                );
                shared.lock_spool().commit(&committed);
                shared.last_ack_ms.store(now_ms(), Ordering::Relaxed);
                if committed.is_empty() {
                    // Nothing acknowledged: do not spin on the same batch.
                    return Err(tonic::Status::unavailable("collector acknowledged nothing"));
                }
                backoff.reset();
            }
            Err(status) if status.code() == Code::InvalidArgument => {
                // The collector will never accept this batch; keeping it would retry forever.
                warn!(error = %status.message(), dropped = count, "collector refused a batch");
                shared.lock_spool().drop_leased("rejected_by_collector");
            }
            Err(status) => {
                shared.lock_spool().release();
                return Err(status);
            }
        }
    }
}

async fn heartbeat(
    client: &mut shadowai_proto::v1::agent_service_client::AgentServiceClient<
        tonic::transport::Channel,
    >,
    shared: &Shared,
    catalogs: &CatalogFanout,
) -> Result<HeartbeatReply, tonic::Status> {
    let snapshot = shared_snapshot(shared);
    let dropped = snapshot.dropped.clone();
    // The collector refuses a heartbeat with more than 32 blind spots: the agent's own (process,
    // capture, budget) first, then as many network ones as fit.
    let mut blind_spots = snapshot.blind_spots.clone();
    blind_spots.sort_by_key(|b| matches!(b.kind.as_str(), "doh" | "dot" | "ech"));
    blind_spots.truncate(MAX_HEARTBEAT_BLIND_SPOTS);
    let request = v1::HeartbeatRequest {
        host: Some(identity::host_facts()),
        catalog_version: snapshot.catalog_version.clone(),
        sensors: snapshot.sensors.clone(),
        spool_depth: snapshot.spool_depth,
        spool_oldest_age_ms: snapshot.spool_oldest_age_ms,
        dropped: dropped.clone(),
        blind_spots,
        uptime_seconds: shared.started.elapsed().as_secs(),
        degraded: shared.throttle.level() != Level::Normal,
    };
    let response = client.heartbeat(request).await?.into_inner();
    // The collector has the counts now; counted meanwhile stay for the next heartbeat (and on
    // disk until then).
    shared.lock_spool().forget_dropped(&dropped);
    let offered = (
        response.catalog_version.clone(),
        response.catalog_sha256.clone(),
    );
    let is_refused = shared
        .refused_catalog
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        == Some(&offered);
    if !offered.0.is_empty() && offered.0 != snapshot.catalog_version && !is_refused {
        update_catalog(client, shared, catalogs, &snapshot.catalog_version).await;
    }
    let asked = response.heartbeat_interval_seconds;
    Ok(HeartbeatReply {
        interval: (asked > 0).then(|| Duration::from_secs(u64::from(asked).clamp(5, 3600))),
        renew_certificate: response.renew_certificate,
    })
}

/// What a heartbeat reply asks of the agent.
struct HeartbeatReply {
    /// Another heartbeat interval, within bounds.
    interval: Option<Duration>,
    /// Renew the certificate now.
    renew_certificate: bool,
}

/// Fetches the collector's catalog and swaps it in only when it validates; otherwise keeps the
/// current one (and says so in the log).
async fn update_catalog(
    client: &mut shadowai_proto::v1::agent_service_client::AgentServiceClient<
        tonic::transport::Channel,
    >,
    shared: &Shared,
    catalogs: &CatalogFanout,
    known_version: &str,
) {
    let response = match client
        .fetch_catalog(v1::FetchCatalogRequest {
            known_version: known_version.to_owned(),
        })
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            warn!(error = %status.message(), "catalog fetch failed; keeping the current catalog");
            return;
        }
    };
    if response.content.is_empty() {
        return;
    }
    let refuse = |why: &str| {
        warn!(version = %response.version, error = why, "invalid catalog from collector; keeping the current one");
        *shared
            .refused_catalog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((response.version.clone(), response.sha256.clone()));
    };
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&response.content));
    if digest != response.sha256 {
        refuse("digest mismatch");
        return;
    }
    match Catalog::from_bundle(&response.content) {
        Ok(catalog) => {
            info!(version = %catalog.version(), "catalog updated");
            *shared
                .catalog_version
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = catalog.version().to_owned();
            catalogs.send(&Arc::new(catalog));
        }
        Err(error) => refuse(&error.to_string()),
    }
}

/// One best-effort delivery attempt, used at shutdown.
async fn flush_once(config: &Config, identity: &Identity, shared: &Shared) {
    if shared.lock_spool().depth() == 0 {
        return;
    }
    if let Ok(mut client) = transport::connect(&identity.collector, identity.tls.clone()).await {
        let _ = deliver(&mut client, config, shared, &mut Backoff::new()).await;
    }
}

/// What the status file and heartbeats report.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Catalog version in use.
    pub catalog_version: String,
    /// Sensor health.
    pub sensors: Vec<v1::SensorHealth>,
    /// Blind spots.
    pub blind_spots: Vec<v1::BlindSpot>,
    /// Spool depth.
    pub spool_depth: u64,
    /// Age of the oldest spooled observation.
    pub spool_oldest_age_ms: u64,
    /// Bytes the spool occupies.
    pub spool_bytes: u64,
    /// Dropped counts not yet acknowledged by the collector.
    pub dropped: Vec<v1::DroppedCount>,
    /// What opening the spool found damaged.
    pub spool_problems: Vec<String>,
    /// The resource budget (none before its first sample).
    pub budget: Option<BudgetReport>,
    /// Last acknowledged report, Unix ms.
    pub last_ack_ms: Option<i64>,
}

fn shared_snapshot(shared: &Shared) -> Snapshot {
    let spool = shared.lock_spool();
    Snapshot {
        catalog_version: shared
            .catalog_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        sensors: shared
            .sensors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        blind_spots: shared
            .blind_spots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        spool_depth: spool.depth() as u64,
        spool_oldest_age_ms: spool.oldest_age_ms(now_ms()),
        spool_bytes: spool.bytes(),
        dropped: spool.dropped(),
        spool_problems: shared.spool_problems.clone(),
        budget: shared
            .budget
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        last_ack_ms: Some(shared.last_ack_ms.load(Ordering::Relaxed)).filter(|at| *at > 0),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The shell's clock, Unix ms.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_inside_its_envelope() {
        let mut backoff = Backoff::new();
        for attempt in 0..40u32 {
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32 << attempt.min(16))
                .min(BACKOFF_CAP);
            let delay = backoff.next_delay();
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} > {ceiling:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_BASE);
    }
}
