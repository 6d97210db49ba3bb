//! The agent runtime when things go wrong, with the real `shadowai-agent` binary, real processes
//! for it to detect, and a real collector (the `shadowai-collector serve` binary, or the
//! collector's service in-process) over real mTLS gRPC:
//!
//! - an MDM-installed agent (only a config and a token file) enrolls itself, then the collector
//!   stops for 60 s while the agent keeps detecting, restarts on the same port, and the spool
//!   drains: nothing lost, nothing duplicated;
//! - a collector shedding load (UNAVAILABLE, RESOURCE_EXHAUSTED with `retry-after`): the agent's
//!   attempts over two minutes stay inside the backoff envelope (run alongside the outage);
//! - a full spool drops the oldest, counts them per kind, and the counts reach the collector
//!   across a restart, with memory bounded;
//! - a corrupt spool file is cut, reported (status and heartbeat), and the agent keeps working;
//! - SIGTERM while detecting: the agent exits within the 5 s grace and loses nothing;
//! - a tiny resource budget makes the agent report `degraded`; a revoked agent stops sending and
//!   says so.
//!
//! Every process is owned by a guard that ends it by PID, also when a test fails. The products
//! detected here are not `ollama` (whose tests hold the machine-wide lock); each test uses its
//! own product and counts only its own process ids, since every agent sees the whole machine.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shadowai_collector::ingest::IngestConfig;
use shadowai_collector::server::{PeerInfo, agent_tls_config, tls_incoming};
use shadowai_collector::store::{ObservationQuery, Store};
use shadowai_proto::v1;
use shadowai_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use tonic::{Request, Response, Status};

use crate::catalog_update::daemon_status;
use crate::channel::{Backend, Collector, start_with};
use crate::support::{ProcessGuard, binaries, poll_until};

// ---------------------------------------------------------------------------------------------
// helpers

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent configuration: fast scans and flushes, no file inventory (it would walk every home
/// of this machine), plus `extra` TOML.
fn write_config(path: &Path, collector: &str, state: &Path, extra: &str) {
    std::fs::write(
        path,
        format!(
            "collector = \"{collector}\"\nstate_dir = \"{}\"\n{extra}\n\
             [process]\ninterval_seconds = 1\n[inventory]\nenabled = false\n",
            state.display()
        ),
    )
    .unwrap();
}

fn transport_section(extra: &str) -> String {
    format!("[transport]\nflush_interval_ms = 100\n{extra}\n")
}

fn run_agent(config: &Path, json: bool) -> ProcessGuard {
    let mut command = Command::new(&binaries().agent);
    command.arg("run").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    ProcessGuard::spawn("shadowai-agent run", &mut command)
}

/// A process the catalog knows as `name`, with a command line of about `padding` bytes. The idle
/// binary is hard-linked (copied only across filesystems), and the start retried on `ETXTBSY`:
/// a copy still open for writing in another test thread's freshly forked child cannot be run.
fn spawn_tool(dir: &Path, name: &str, padding: usize) -> ProcessGuard {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    if std::fs::hard_link(&binaries().idle, &path).is_err() {
        std::fs::copy(&binaries().idle, &path).unwrap();
    }
    let words: Vec<String> = (0..padding / 8).map(|i| format!("word{i:03}")).collect();
    let mut attempts = 0;
    loop {
        match ProcessGuard::try_spawn(name, Command::new(&path).args(&words)) {
            Ok(guard) => return guard,
            Err(error) if error.raw_os_error() == Some(26) && attempts < 10_000 => {
                attempts += 1;
                std::thread::yield_now();
            }
            Err(error) => panic!("cannot start {}: {error}", path.display()),
        }
    }
}

/// Observations stored per process id for `product`.
async fn stored_per_pid(store: &Store, product: &str) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store
            .list_observations(&ObservationQuery {
                limit: 500,
                after,
                agent_id: None,
                product: Some(product.to_owned()),
            })
            .await
            .unwrap();
        for observation in &page.items {
            if let Some(process) = &observation.process {
                *counts.entry(process.pid).or_default() += 1;
            }
        }
        match page.next {
            Some(next) if !page.items.is_empty() => after = Some(next),
            _ => break,
        }
    }
    counts
}

/// Waits until every pid is stored, then checks each is stored exactly once.
async fn assert_each_stored_once(store: &Store, product: &str, pids: &[u32], timeout: Duration) {
    poll_until(timeout, "every detection stored", || async {
        let counts = stored_per_pid(store, product).await;
        let missing: Vec<&u32> = pids.iter().filter(|p| !counts.contains_key(p)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} missing: {missing:?}",
                missing.len(),
                pids.len()
            ))
        }
    })
    .await;
    // Give a duplicate the chance to arrive, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = stored_per_pid(store, product).await;
    for pid in pids {
        assert_eq!(counts.get(pid), Some(&1), "pid {pid}: {counts:?}");
    }
}

fn status_field(state: &Path, field: &str) -> Result<serde_json::Value, String> {
    let status = daemon_status(state)?;
    Ok(status[field].clone())
}

/// Peak and current resident memory of a process, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The agent's health document as the collector stored it from the last heartbeat.
async fn stored_health(store: &Store) -> serde_json::Value {
    let agents = store.list_agents().await.unwrap();
    agents.first().map(|a| a.health.clone()).unwrap_or_default()
}

/// The real `shadowai-collector serve` on fixed ports, so that it can be stopped and started
/// again where the agent expects it.
struct Served {
    process: ProcessGuard,
}

impl Served {
    fn start(data: &Path, grpc: u16, http: u16) -> Served {
        let process = ProcessGuard::spawn(
            "shadowai-collector serve",
            Command::new(&binaries().collector)
                .arg("serve")
                .arg("--data-dir")
                .arg(data)
                .arg("--grpc-listen")
                .arg(format!("127.0.0.1:{grpc}"))
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{http}")),
        );
        Served { process }
    }

    async fn ready(&self) {
        poll_until(Duration::from_secs(60), "the collector listens", || {
            let lines = self.process.lines();
            async move {
                if lines.iter().any(|l| l.contains("agents: https://")) {
                    Ok(())
                } else {
                    Err(lines.join("\n"))
                }
            }
        })
        .await;
    }
}

fn create_token(data: &Path) -> String {
    let output = Command::new(&binaries().collector)
        .args(["token", "create", "--group", "mdm", "--max-uses", "1"])
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

// ---------------------------------------------------------------------------------------------
// outage and backoff

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_outage_and_load_shedding() {
    // Independent, and each dominated by waiting: run together to keep the suite short.
    let _ = binaries();
    tokio::join!(
        mdm_agent_rides_out_a_60_second_outage(),
        attempts_stay_inside_the_backoff_envelope()
    );
}

/// An agent with nothing but a configuration and an MDM-placed token file enrolls itself and
/// reports; the collector then stops for 60 s while the agent keeps detecting, and restarts on
/// the same port: the spool drains completely, each detection stored exactly once.
async fn mdm_agent_rides_out_a_60_second_outage() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("collector");
    let (grpc, http) = (free_port(), free_port());
    let mut served = Served::start(&data, grpc, http);
    served.ready().await;
    let token_file = work.path().join("enrollment-token");
    std::fs::write(&token_file, format!("{}\n", create_token(&data))).unwrap();
    let state = work.path().join("state");
    let config = work.path().join("agent.toml");
    write_config(
        &config,
        &format!("https://127.0.0.1:{grpc}"),
        &state,
        &format!(
            "enrollment_token_file = \"{}\"\n{}",
            token_file.display(),
            transport_section("")
        ),
    );
    let agent = run_agent(&config, false);
    let store = Store::connect(&format!("sqlite://{}", data.join("shadowai.db").display()))
        .await
        .unwrap();
    let tools = work.path().join("tools");
    let mut running = vec![spawn_tool(&tools.join("before"), "crewai", 64)];
    let mut pids = vec![running[0].pid()];
    assert_each_stored_once(&store, "crewai.crewai", &pids, Duration::from_secs(60)).await;
    assert!(
        state.join("identity.json").is_file(),
        "enrolled from the token file"
    );

    // The outage: the collector is gone for 60 s; the agent keeps detecting into its spool.
    served.process.terminate().await;
    let outage = Instant::now();
    for i in 0..6 {
        let tool = spawn_tool(&tools.join(format!("during{i}")), "crewai", 64);
        pids.push(tool.pid());
        running.push(tool);
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    poll_until(
        Duration::from_secs(20),
        "the detections made during the outage are spooled",
        || {
            let depth = status_field(&state, "spool_depth");
            async move {
                match depth?.as_u64() {
                    Some(depth) if depth >= 6 => Ok(()),
                    other => Err(format!("spool depth {other:?}")),
                }
            }
        },
    )
    .await;
    let state_now = status_field(&state, "state").unwrap();
    assert_eq!(state_now, "unreachable", "{}", agent.log_tail());
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;

    // Back on the same port with the same data: everything spooled arrives, once.
    let served = Served::start(&data, grpc, http);
    served.ready().await;
    // The agent's backoff after a minute of failures may reach 64 s (full jitter, base 1 s).
    assert_each_stored_once(&store, "crewai.crewai", &pids, Duration::from_secs(150)).await;
    poll_until(Duration::from_secs(30), "the spool is empty", || {
        let depth = status_field(&state, "spool_depth");
        async move {
            match depth?.as_u64() {
                Some(0) => Ok(()),
                other => Err(format!("spool depth {other:?}")),
            }
        }
    })
    .await;
    drop(agent);
    drop(served);
}

/// Every call the stand-in collector received: when, and from which connection.
type Calls = Arc<Mutex<Vec<(Instant, Option<SocketAddr>)>>>;

/// What the stand-in collector answers, and how it counts.
#[derive(Clone)]
struct Shedding {
    code: tonic::Code,
    retry_after_seconds: Option<u64>,
    /// (time of the call, the caller's address) of every call.
    calls: Calls,
}

impl Shedding {
    fn refuse<T>(&self, request: &Request<T>) -> Status {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), peer.and_then(|p| p.remote_addr)));
        let mut status = Status::new(self.code, "shedding load");
        if let Some(seconds) = self.retry_after_seconds {
            status
                .metadata_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
        }
        status
    }
}

#[tonic::async_trait]
impl AgentService for Shedding {
    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        Err(self.refuse(&request))
    }
    async fn renew_certificate(
        &self,
        request: Request<v1::RenewCertificateRequest>,
    ) -> Result<Response<v1::RenewCertificateResponse>, Status> {
        Err(self.refuse(&request))
    }
    async fn report(
        &self,
        request: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::ReportResponse>, Status> {
        Err(self.refuse(&request))
    }
    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        Err(self.refuse(&request))
    }
    async fn fetch_catalog(
        &self,
        request: Request<v1::FetchCatalogRequest>,
    ) -> Result<Response<v1::FetchCatalogResponse>, Status> {
        Err(self.refuse(&request))
    }
}

/// The documented backoff: base 1 s, doubling, capped at 300 s, full jitter (a delay is uniform
/// in [0, ceiling]), and never shorter than a `retry-after` the collector sent.
const BASE_SECONDS: f64 = 1.0;
const CAP_SECONDS: f64 = 300.0;
const WINDOW: Duration = Duration::from_secs(120);

/// Fewest attempts possible in `window` seconds: every delay at its ceiling.
fn fewest_attempts(window: f64, retry_after: f64) -> usize {
    let (mut at, mut attempts, mut n) = (0.0, 1, 0);
    loop {
        at += (BASE_SECONDS * 2f64.powi(n))
            .min(CAP_SECONDS)
            .max(retry_after);
        if at > window {
            return attempts;
        }
        attempts += 1;
        n += 1;
    }
}

/// The real collector does not shed load yet (another change adds that), so a stand-in tonic
/// server answers every call with the shedding status. It serves over real mutual TLS with the
/// real collector CA (the agent pins it) and counts the agent's calls and connections.
async fn attempts_stay_inside_the_backoff_envelope() {
    let collector = start_with(Backend::Sqlite, IngestConfig::default())
        .await
        .unwrap();
    let (unavailable, exhausted) = tokio::join!(
        shed_one_agent(&collector, tonic::Code::Unavailable, None),
        shed_one_agent(&collector, tonic::Code::ResourceExhausted, Some(7)),
    );
    for (code, retry_after, calls, connections) in [unavailable, exhausted] {
        let retry = retry_after.unwrap_or(0) as f64;
        let fewest = fewest_attempts(WINDOW.as_secs_f64(), retry);
        // Upper bound: with a retry-after every delay is at least that long. Without one the
        // jitter may pick short delays, but the n-th ceiling is 2^n s: for 20 attempts to fit in
        // 120 s, 12 delays drawn uniformly from [0, >= 256 s] would have to sum below 120 s
        // (probability < 1e-12), whereas a retry storm makes thousands.
        let most = match retry_after {
            Some(r) => 1 + (WINDOW.as_secs() / r) as usize,
            None => 20,
        };
        eprintln!(
            "{code:?} retry-after {retry_after:?}: {calls} attempts ({connections} connections) in {WINDOW:?}, envelope {fewest}..={most}"
        );
        assert!(
            (fewest..=most).contains(&calls),
            "{code:?} retry-after {retry_after:?}: {calls} attempts in {WINDOW:?}, envelope {fewest}..={most}"
        );
        assert_eq!(
            connections, calls,
            "{code:?}: each attempt is one new connection"
        );
    }
    assert_eq!(fewest_attempts(120.0, 0.0), 7);
    assert_eq!(fewest_attempts(120.0, 7.0), 7);
}

async fn shed_one_agent(
    collector: &Collector,
    code: tonic::Code,
    retry_after_seconds: Option<u64>,
) -> (tonic::Code, Option<u64>, usize, usize) {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = agent_tls_config(&collector.ca, &["127.0.0.1".to_owned()]).unwrap();
    let service = Shedding {
        code,
        retry_after_seconds,
        calls: Arc::new(Mutex::new(Vec::new())),
    };
    let calls = service.calls.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                AgentServiceServer::new(service)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming_shutdown(tls_incoming(listener, tls), async move {
                let _ = stopped.await;
            }),
    );
    let config = work.path().join("agent.toml");
    write_config(
        &config,
        &format!("https://127.0.0.1:{port}"),
        &state,
        &transport_section(""),
    );
    let agent = run_agent(&config, false);
    let first = poll_until(Duration::from_secs(30), "the agent's first attempt", || {
        let first = calls.lock().unwrap().first().map(|(at, _)| *at);
        async move { first.ok_or_else(|| "no call yet".to_owned()) }
    })
    .await;
    tokio::time::sleep(WINDOW.saturating_sub(first.elapsed())).await;
    let end = first + WINDOW;
    let seen: Vec<(Instant, Option<SocketAddr>)> = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at <= end)
        .cloned()
        .collect();
    let connections: std::collections::BTreeSet<SocketAddr> =
        seen.iter().filter_map(|(_, addr)| *addr).collect();
    let status = daemon_status(&state).unwrap();
    assert_eq!(status["state"], "unreachable", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("shedding load")),
        "{status}"
    );
    drop(agent);
    let _ = stop.send(());
    let _ = server.await;
    (code, retry_after_seconds, seen.len(), connections.len())
}

// ---------------------------------------------------------------------------------------------
// spool full, corrupt spool

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_the_oldest_and_the_counts_reach_the_collector_after_a_restart() {
    let collector = start_with(Backend::Sqlite, IngestConfig::default())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    let dead = format!("https://127.0.0.1:{}", free_port());
    let transport = transport_section("spool_max_mb = 1");
    write_config(&config, &dead, &state, &transport);
    let mut agent = run_agent(&config, false);
    // Process observations of ~7 KiB (long command lines): a 1 MiB spool holds ~140.
    let tools = work.path().join("tools");
    let mut spawned = Vec::new();
    for round in 0..6 {
        let batch: Vec<ProcessGuard> = (0..40)
            .map(|i| spawn_tool(&tools.join(format!("r{round}-{i}")), "llamactl", 7000))
            .collect();
        spawned.extend(batch.iter().map(ProcessGuard::pid));
        let wanted = spawned.len() as u64;
        poll_until(Duration::from_secs(30), "the round is detected", || {
            let status = daemon_status(&state);
            async move {
                let status = status?;
                let depth = status["spool_depth"].as_u64().unwrap_or(0);
                let dropped: u64 = status["dropped"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|d| d["count"].as_u64()).sum())
                    .unwrap_or(0);
                if depth + dropped >= wanted {
                    Ok(())
                } else {
                    Err(format!("depth {depth} + dropped {dropped} < {wanted}"))
                }
            }
        })
        .await;
        drop(batch);
    }
    let status = daemon_status(&state).unwrap();
    let dropped: Vec<serde_json::Value> = status["dropped"].as_array().unwrap().clone();
    let full = dropped
        .iter()
        .find(|d| d["reason"] == "spool_full" && d["kind"] == "process")
        .unwrap_or_else(|| panic!("no spool_full/process count in {status}"));
    let dropped_count = full["count"].as_u64().unwrap();
    assert!(dropped_count > 0);
    let spool_bytes: u64 = std::fs::read_dir(state.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        spool_bytes <= 1024 * 1024 + 64 * 1024,
        "spool on disk {spool_bytes} bytes, bound 1 MiB"
    );
    let (peak_kib, _) = memory_kib(agent.pid());
    assert!(
        peak_kib < 64 * 1024,
        "agent peak RSS {peak_kib} KiB with a full spool"
    );
    // A crash before any heartbeat: the counts must still reach the collector.
    agent.kill_all();
    write_config(&config, &collector.url.to_string(), &state, &transport);
    let _agent = run_agent(&config, false);
    let stored = poll_until(
        Duration::from_secs(60),
        "the dropped counts reach the collector",
        || async {
            let health = stored_health(&collector.store).await;
            let count = health["dropped"].as_array().and_then(|counts| {
                counts
                    .iter()
                    .find(|d| d["reason"] == "spool_full" && d["kind"] == "process")
                    .and_then(|d| d["count"].as_u64())
            });
            count.ok_or_else(|| format!("{health}"))
        },
    )
    .await;
    assert!(
        stored >= dropped_count,
        "collector has {stored}, agent counted {dropped_count}"
    );
    // The newest were kept: the last round is delivered.
    let last_round: Vec<u32> = spawned[spawned.len() - 40..].to_vec();
    assert_each_stored_once(
        &collector.store,
        "llamaindex.llama-index",
        &last_round,
        Duration::from_secs(60),
    )
    .await;
    poll_until(
        Duration::from_secs(20),
        "the acknowledged counts are forgotten",
        || {
            let dropped = status_field(&state, "dropped");
            async move {
                match dropped?.as_array() {
                    Some(d) if d.is_empty() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_spool_is_cut_reported_and_the_agent_keeps_working() {
    let collector = start_with(
        Backend::Sqlite,
        IngestConfig {
            heartbeat_interval_seconds: 5,
            ..IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    let dead = format!("https://127.0.0.1:{}", free_port());
    write_config(&config, &dead, &state, &transport_section(""));
    let mut agent = run_agent(&config, false);
    let tools = work.path().join("tools");
    let before: Vec<ProcessGuard> = (0..6)
        .map(|i| spawn_tool(&tools.join(format!("b{i}")), "aider", 64))
        .collect();
    poll_until(Duration::from_secs(30), "six detections spooled", || {
        let depth = status_field(&state, "spool_depth");
        async move {
            match depth?.as_u64() {
                Some(d) if d >= 6 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    agent.terminate().await;
    drop(before);
    // Flip bytes in the middle of the newest segment and cut its last record in half.
    let segment = newest_segment(&state.join("spool"));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 4] {
        *byte ^= 0xa5;
    }
    let cut = bytes.len() - 10;
    bytes.truncate(cut);
    std::fs::write(&segment, &bytes).unwrap();

    write_config(
        &config,
        &collector.url.to_string(),
        &state,
        &transport_section(""),
    );
    let agent = run_agent(&config, false);
    let status = poll_until(Duration::from_secs(30), "status after start", || {
        let status = daemon_status(&state);
        async move {
            let status = status?;
            if status["state"] == "connected" {
                Ok(status)
            } else {
                Err(format!("{status}"))
            }
        }
    })
    .await;
    let problems = status["spool_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{status}");
    assert!(
        problems[0].as_str().unwrap().contains("damaged record"),
        "{status}"
    );
    assert!(
        agent
            .lines()
            .iter()
            .any(|l| l.contains("spool:") && l.contains("truncated")),
        "{}",
        agent.log_tail()
    );
    // The collector learns it from the heartbeat: the spool sensor and the count.
    poll_until(
        Duration::from_secs(30),
        "the heartbeat reports the damage",
        || async {
            let health = stored_health(&collector.store).await;
            let spool_degraded = health["sensors"].as_array().is_some_and(|sensors| {
                sensors.iter().any(|s| {
                    s["sensor"] == "spool"
                        && s["state"] == "SENSOR_STATE_DEGRADED"
                        && s["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("truncated"))
                })
            });
            let counted = health["dropped"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["reason"] == "spool_corrupt"));
            if spool_degraded && counted {
                Ok(())
            } else {
                Err(format!("{health}"))
            }
        },
    )
    .await;
    // It keeps working: a new detection arrives.
    let after = spawn_tool(&tools.join("after"), "aider", 64);
    assert_each_stored_once(
        &collector.store,
        "aider.aider",
        &[after.pid()],
        Duration::from_secs(30),
    )
    .await;
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seg-"))
        })
        .collect();
    segments.sort();
    segments.pop().expect("a spool segment")
}

// ---------------------------------------------------------------------------------------------
// shutdown, budget, revocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_detecting_exits_within_the_grace_and_loses_nothing() {
    let collector = start_with(Backend::Sqlite, IngestConfig::default())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    write_config(
        &config,
        &collector.url.to_string(),
        &state,
        &transport_section(""),
    );
    let mut agent = run_agent(&config, true);
    let tools = work.path().join("tools");
    let mut running = Vec::new();
    // Detections keep coming while the signal arrives.
    for i in 0..12 {
        running.push(spawn_tool(&tools.join(format!("t{i}")), "n8n", 64));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let signalled = Instant::now();
    agent.terminate().await;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit: {} ms", took.as_millis());
    assert!(
        took <= Duration::from_secs(5),
        "exit took {took:?}\n{}",
        agent.log_tail()
    );
    // Every detection the agent printed before it exited must reach the collector.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let printed: Vec<u32> = agent
        .stdout_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|d| d["product"] == "n8n.n8n")
        .filter_map(|d| d["process"]["pid"].as_u64())
        .map(|pid| pid as u32)
        .collect();
    assert!(!printed.is_empty(), "{}", agent.log_tail());
    drop(running);
    let _again = run_agent(&config, false);
    assert_each_stored_once(
        &collector.store,
        "n8n.n8n",
        &printed,
        Duration::from_secs(30),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_budget_is_reported_degraded_and_a_revoked_agent_stops() {
    let collector = start_with(
        Backend::Sqlite,
        IngestConfig {
            heartbeat_interval_seconds: 5,
            ..IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let enrolled = collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    // 1 MiB of memory cannot be met: after one 10 s window the agent holds back.
    write_config(
        &config,
        &collector.url.to_string(),
        &state,
        &format!(
            "[budget]\nrss_mb = 1\nwindow_seconds = 10\n{}",
            transport_section("")
        ),
    );
    let mut agent = run_agent(&config, false);
    let status = poll_until(Duration::from_secs(40), "status says degraded", || {
        let status = daemon_status(&state);
        async move {
            let status = status?;
            if status["degraded"] == true {
                Ok(status)
            } else {
                Err(format!("{status}"))
            }
        }
    })
    .await;
    assert_eq!(status["budget"]["level"], "reduced", "{status}");
    assert!(
        status["budget"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("memory over budget")),
        "{status}"
    );
    poll_until(
        Duration::from_secs(30),
        "the heartbeat says degraded",
        || async {
            let health = stored_health(&collector.store).await;
            let budget_sensor = health["sensors"].as_array().is_some_and(|sensors| {
                sensors
                    .iter()
                    .any(|s| s["sensor"] == "budget" && s["state"] == "SENSOR_STATE_DEGRADED")
            });
            let blind = health["blind_spots"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["kind"] == "budget_degraded"));
            if health["degraded"] == true && budget_sensor && blind {
                Ok(())
            } else {
                Err(format!("{health}"))
            }
        },
    )
    .await;
    let text = Command::new(&binaries().agent)
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("budget: reduced") || text.contains("budget: minimal"),
        "{text}"
    );
    assert!(text.contains("memory over budget"), "{text}");

    // Revocation: the agent stops sending and says so.
    let tools = work.path().join("tools");
    let before = spawn_tool(&tools.join("before"), "autogenstudio", 64);
    assert_each_stored_once(
        &collector.store,
        "microsoft.autogen-studio",
        &[before.pid()],
        Duration::from_secs(30),
    )
    .await;
    let agent_id = enrolled.file.agent_id.parse().unwrap();
    collector
        .store
        .revoke_agent(agent_id, "test", 0)
        .await
        .unwrap();
    let after = spawn_tool(&tools.join("after"), "autogenstudio", 64);
    poll_until(Duration::from_secs(30), "status says revoked", || {
        let state_now = status_field(&state, "state");
        async move {
            match state_now?.as_str() {
                Some("revoked") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert!(
        agent
            .lines()
            .iter()
            .any(|l| l.contains("the collector revoked this agent")),
        "{}",
        agent.log_tail()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = stored_per_pid(&collector.store, "microsoft.autogen-studio").await;
    assert!(!counts.contains_key(&after.pid()), "{counts:?}");
    assert!(agent.try_exit_status().is_none(), "stays up, silent");
    let text = Command::new(&binaries().agent)
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Revoked"), "{text}");
}
