//! The agent runtime when things go wrong, with the real `shadowai-agent` binary, real processes
//! for it to detect, and a real collector (the `shadowai-collector serve` binary, or the
//! collector's service in-process) over real mTLS gRPC:
//!
//! - an MDM-installed agent (only a config and a token file) enrolls itself, then the collector
//!   stops for 60 s while the agent keeps detecting, restarts on the same port, and the spool
//!   drains: nothing lost, nothing duplicated;
//! - the backoff envelope (run alongside the outage): for two minutes the agent's attempts are
//!   counted where the other side sees them and checked against the documented backoff (base 1 s,
//!   doubling, cap 5 min, full jitter, never shorter than a `retry-after`, started over only when
//!   the collector took data):
//!   - RESOURCE_EXHAUSTED from the real collector at capacity (`max_concurrent_ingest = 1`, its
//!     one permit held as a report in its store transaction holds it): every report shed with
//!     `retry-after: 1` while heartbeats succeed; counted by its admission counters; then the
//!     permit is released and, the agent restarted (its next attempt may be minutes away), every
//!     detection is stored once;
//!   - RESOURCE_EXHAUSTED from the real collector for an agent over its own rate (1 observation/s,
//!     batches of 10: `retry-after` ~10 s): reports alternate admitted and shed, never shed twice
//!     in a row, and the backlog drains exactly once as the budget refills;
//!   - UNAVAILABLE with the collector down: a TCP listener that accepts and closes (a load balancer
//!     with nothing behind it) counts the agent's connections.
//!
//!   No stand-in collector: the real one decides and answers RESOURCE_EXHAUSTED itself. What the
//!   test does to it is load it through its own admission API (the permit a report in flight
//!   would hold, the tokens a 1000-observation backlog would spend), because real load of that
//!   shape would take a core for the whole two minutes, or a thousand processes. UNAVAILABLE from
//!   the collector's store (a database that refuses writes) takes the same path in the agent as a
//!   collector that is down (a failed session, no retry-after); the down collector is the one
//!   counted because the network shows every attempt, even those that never reach gRPC.
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
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shadowai_collector::ingest::IngestConfig;
use shadowai_collector::ingest::limits::LimitsConfig;
use shadowai_collector::store::{ObservationQuery, Store};
use uuid::Uuid;

use crate::catalog_update::daemon_status;
use crate::channel::{Backend, start_limited, start_with};
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
             [process]\ninterval_seconds = 1\n[inventory]\nenabled = false\n[network]\nenabled = false\n",
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
        reports_shed_by_a_collector_at_capacity(),
        an_agent_over_its_rate_honours_the_retry_after(),
        attempts_while_the_collector_is_down(),
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

// The backoff envelope. Each scenario below counts the agent's attempts where the other side sees
// them, for two minutes from the first one, and checks them against the agent's documented backoff.

/// The documented backoff: base 1 s, doubling, capped at 300 s, full jitter (a delay is uniform
/// in [0, ceiling]), and never shorter than a `retry-after` the collector sent. The backoff starts
/// over only when the collector took data (or there was none to send), not because it answered a
/// heartbeat.
const BASE_SECONDS: f64 = 1.0;
const CAP_SECONDS: f64 = 300.0;
/// How long the attempts are counted, from the first one.
const WINDOW: Duration = Duration::from_secs(120);
/// How often the collector's counters are read: the precision of an attempt's time.
const SAMPLE: Duration = Duration::from_millis(20);
/// What a gap between two attempts may exceed its delay by: the session itself (TCP, TLS, a
/// heartbeat that writes the database) on a loaded machine, and the sampling.
const SESSION_SLACK_SECONDS: f64 = 2.0;
/// Most attempts in the window when none succeeds. With a retry-after of at least 1 s the floor
/// alone allows 121; the doubling is what keeps it low: for 20 attempts to fit in 120 s the ten
/// delays after the ninth, each uniform in [0, 300 s], would have to sum below 120 s (probability
/// below 1e-10), whereas an agent whose backoff never grows makes one attempt per delay floor.
const MOST_ATTEMPTS: usize = 20;

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

/// Checks attempts that all failed, in order, against the envelope: the gap after the k-th
/// (k = 0 first) is the k-th delay plus a session, so it lies in [retry_after, max(retry_after,
/// min(cap, base·2^k)) + slack]; and how many fit in the window. A gap fails only when it is
/// outside whatever the readings allow it to have been.
fn assert_inside_the_envelope(what: &str, attempts: &[Seen], retry_after: f64) {
    let shown: Vec<String> = attempts
        .windows(2)
        .map(|pair| format!("{:.2}", (pair[1].by - pair[0].by).as_secs_f64()))
        .collect();
    for (k, pair) in attempts.windows(2).enumerate() {
        let ceiling = (BASE_SECONDS * 2f64.powi(k as i32))
            .min(CAP_SECONDS)
            .max(retry_after);
        let (shortest, longest) = pair[0].gap_to(pair[1]);
        assert!(
            longest >= retry_after,
            "{what}: gap {k} of at most {longest:.2} s is shorter than the retry-after {retry_after} s; gaps {shown:?}"
        );
        assert!(
            shortest <= ceiling + SESSION_SLACK_SECONDS,
            "{what}: gap {k} of at least {shortest:.2} s is beyond its ceiling {ceiling} s; gaps {shown:?}"
        );
    }
    let fewest = fewest_attempts(WINDOW.as_secs_f64(), retry_after);
    eprintln!(
        "{what}: {} attempts in {WINDOW:?}, envelope {fewest}..={MOST_ATTEMPTS}; gaps (s) {shown:?}",
        attempts.len()
    );
    assert!(
        (fewest..=MOST_ATTEMPTS).contains(&attempts.len()),
        "{what}: {} attempts in {WINDOW:?}, envelope {fewest}..={MOST_ATTEMPTS}; gaps (s) {shown:?}",
        attempts.len()
    );
}

/// When something happened, as far as readings can tell: after `after` (when the reading before
/// the one that saw it began) and by `by` (when the reading that saw it ended). A reading delayed
/// by a loaded machine widens the interval instead of moving the event.
#[derive(Debug, Clone, Copy)]
struct Seen {
    after: Instant,
    by: Instant,
}

impl Seen {
    fn exact(at: Instant) -> Seen {
        Seen { after: at, by: at }
    }

    /// The shortest and the longest the time from `self` to `later` can have been, seconds.
    fn gap_to(self, later: Seen) -> (f64, f64) {
        (
            later.after.saturating_duration_since(self.by).as_secs_f64(),
            later.by.saturating_duration_since(self.after).as_secs_f64(),
        )
    }
}

/// How a value read every [`SAMPLE`] moved: when, and by how much.
#[derive(Debug, Clone, Default)]
struct Moves {
    last: u64,
    at: Vec<(Seen, u64)>,
}

impl Moves {
    fn read(&mut self, value: u64, seen: Seen) {
        if value > self.last {
            self.at.push((seen, value - self.last));
            self.last = value;
        }
    }

    /// One entry per increment (a counter of events).
    fn events(&self) -> Vec<Seen> {
        self.at
            .iter()
            .flat_map(|(seen, by)| std::iter::repeat_n(*seen, *by as usize))
            .collect()
    }

    /// One entry per reading that found the value higher.
    fn changes(&self) -> Vec<Seen> {
        self.at.iter().map(|(seen, _)| *seen).collect()
    }
}

/// What was seen in [from, from + WINDOW].
fn in_window(seen: &[Seen], from: Instant) -> Vec<Seen> {
    seen.iter()
        .copied()
        .filter(|seen| seen.by >= from && seen.by <= from + WINDOW)
        .collect()
}

/// Reads some values of the collector every [`SAMPLE`] on a task of its own (so that nothing else
/// the test does, such as starting processes, delays a reading) until stopped.
struct Sampler {
    moves: Arc<Mutex<Vec<Moves>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    async fn start<F, Fut>(mut read: F) -> Sampler
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Vec<u64>> + Send + 'static,
    {
        let mut previous = Instant::now();
        let first = read().await;
        let moves = Arc::new(Mutex::new(
            first
                .into_iter()
                .map(|last| Moves {
                    last,
                    at: Vec::new(),
                })
                .collect::<Vec<_>>(),
        ));
        let task = tokio::spawn({
            let moves = moves.clone();
            async move {
                loop {
                    tokio::time::sleep(SAMPLE).await;
                    let started = Instant::now();
                    let values = read().await;
                    let seen = Seen {
                        after: previous,
                        by: Instant::now(),
                    };
                    for (moved, value) in moves.lock().unwrap().iter_mut().zip(values) {
                        moved.read(value, seen);
                    }
                    previous = started;
                }
            }
        });
        Sampler { moves, task }
    }

    /// When the `index`-th value first moved (the reading that saw it), waiting up to `timeout`.
    async fn first_move(
        &self,
        index: usize,
        timeout: Duration,
        log: impl Fn() -> String,
    ) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((seen, _)) = self.moves.lock().unwrap()[index].at.first() {
                return seen.by;
            }
            assert!(
                Instant::now() < deadline,
                "nothing moved within {timeout:?}\n{}",
                log()
            );
            tokio::time::sleep(SAMPLE).await;
        }
    }

    fn stop(self) -> Vec<Moves> {
        self.task.abort();
        self.moves.lock().unwrap().clone()
    }
}

/// Starts `count` processes named `name` off the test's task (starting many blocks for a while).
async fn spawn_tools(dir: PathBuf, name: &'static str, count: usize) -> Vec<ProcessGuard> {
    tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| spawn_tool(&dir.join(format!("{i}")), name, 64))
            .collect()
    })
    .await
    .unwrap()
}

/// RESOURCE_EXHAUSTED from a collector at capacity, for two minutes. The real collector with
/// `max_concurrent_ingest = 1`, whose one ingest permit is held the way a report in its store
/// transaction holds it: every report of the agent is shed (`retry-after: 1`) while heartbeats
/// are answered. The attempts are the collector's `shed_concurrency` counter moving; each is one
/// new TLS connection (`handshakes_admitted`). Then the permit is released and, after a restart of
/// the agent, everything it detected meanwhile is stored exactly once.
async fn reports_shed_by_a_collector_at_capacity() {
    let collector = start_limited(
        Backend::Sqlite,
        IngestConfig::default(),
        LimitsConfig {
            max_concurrent_ingest: 1,
            ..LimitsConfig::default()
        },
    )
    .await
    .unwrap();
    let admission = collector.admission.clone();
    // Another agent's report is being stored: the permit is taken, as the report path takes it.
    let in_flight = admission
        .admit_report(Uuid::now_v7(), 1, Instant::now())
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
    let tools = work.path().join("tools");
    let mut running = vec![spawn_tool(&tools.join("before"), "goosed", 64)];
    let sampler = Sampler::start({
        let admission = admission.clone();
        move || {
            let values = vec![
                admission.counters.shed_concurrency.load(Ordering::Relaxed),
                admission
                    .counters
                    .handshakes_admitted
                    .load(Ordering::Relaxed),
            ];
            async move { values }
        }
    })
    .await;
    let mut agent = run_agent(&config, false);
    let first = sampler
        .first_move(0, Duration::from_secs(60), || agent.log_tail())
        .await;
    // The agent keeps detecting while it is shed.
    for i in 1..=3 {
        tokio::time::sleep_until((first + Duration::from_secs(30 * i)).into()).await;
        running.push(spawn_tool(&tools.join(format!("during{i}")), "goosed", 64));
    }
    tokio::time::sleep_until((first + WINDOW + SAMPLE * 2).into()).await;
    let moves = sampler.stop();
    let attempts = in_window(&moves[0].events(), first);
    assert_inside_the_envelope(
        "RESOURCE_EXHAUSTED (at capacity, retry-after: 1)",
        &attempts,
        1.0,
    );
    // Each attempt after the first came over a new connection (the first one's was made before).
    let new_connections = in_window(&moves[1].events(), first)
        .iter()
        .filter(|seen| seen.by > first)
        .count();
    assert!(
        (attempts.len() - 1..=attempts.len()).contains(&new_connections),
        "{} attempts after the first, {new_connections} connections",
        attempts.len() - 1
    );
    let status = daemon_status(&state).unwrap();
    assert_eq!(status["state"], "unreachable", "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("at capacity")),
        "{status}"
    );

    // The report in flight ends. The agent's next attempt may be minutes away (after two minutes
    // of sheds the envelope allows a delay of 2^8 s; the running agent draining by itself is shown
    // by the scenario below and by the outage): it is restarted instead, which makes one last
    // delivery on SIGTERM and a new session at start. Everything it detected is stored, once (the
    // tools are gone first: a new agent would report them again, as new detections).
    drop(in_flight);
    agent.terminate().await;
    let pids: Vec<u32> = running.iter().map(ProcessGuard::pid).collect();
    drop(running);
    let agent = run_agent(&config, false);
    assert_each_stored_once(
        &collector.store,
        "block.goose",
        &pids,
        Duration::from_secs(60),
    )
    .await;
    drop(agent);
}

/// RESOURCE_EXHAUSTED for an agent over its own rate, with a retry-after of several seconds. The
/// real collector with `agent_observations_per_second = 1` (and the smallest burst, one full
/// batch of 1000), the agent sending batches of 10: the collector answers `retry-after: 10`
/// (or 9: the refill time rounded up, less what refilled meanwhile). The agent's burst is spent
/// at the start, as by the 1000-observation backlog of a laptop back from a trip (spent through
/// the collector's admission, for this agent id); then it detects 140 real processes. For two
/// minutes its reports alternate: one admitted, the next shed. An agent back before the
/// retry-after would be shed twice in a row; one whose backoff grew although every session
/// delivered would come back late. Admitted reports are the stored count moving, sheds the
/// `shed_agent_rate` counter. As the budget refills, everything drains, each stored once.
async fn an_agent_over_its_rate_honours_the_retry_after() {
    const BATCH: u64 = 10;
    const RATE: u64 = 1;
    const BACKLOG: usize = 140;
    let collector = start_limited(
        Backend::Sqlite,
        IngestConfig::default(),
        LimitsConfig {
            agent_observations_per_second: RATE as u32,
            agent_observation_burst: 1000,
            ..LimitsConfig::default()
        },
    )
    .await
    .unwrap();
    let admission = collector.admission.clone();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let identity = collector.enroll(&state).await;
    let agent_id: Uuid = identity.file.agent_id.parse().unwrap();
    drop(
        admission
            .admit_report(agent_id, 1000, Instant::now())
            .unwrap(),
    );
    let backlog = spawn_tools(work.path().join("tools"), "openhands", BACKLOG).await;
    let pids: Vec<u32> = backlog.iter().map(ProcessGuard::pid).collect();
    let config = work.path().join("agent.toml");
    // A fixed batch size: no budget that would shrink it.
    write_config(
        &config,
        &collector.url.to_string(),
        &state,
        &format!(
            "[budget]\nenabled = false\n{}",
            transport_section(&format!("batch_max_observations = {BATCH}"))
        ),
    );
    let sampler = Sampler::start({
        let admission = admission.clone();
        let store = collector.store.clone();
        move || {
            let shed = admission.counters.shed_agent_rate.load(Ordering::Relaxed);
            let store = store.clone();
            async move { vec![shed, store.count_observations().await.unwrap() as u64] }
        }
    })
    .await;
    let agent = run_agent(&config, true);
    poll_until(
        Duration::from_secs(30),
        "the agent detects the backlog",
        || {
            let printed = agent
                .stdout_lines()
                .iter()
                .filter(|line| line.contains("all-hands.openhands"))
                .count();
            async move {
                if printed >= BACKLOG {
                    Ok(())
                } else {
                    Err(format!("{printed} of {BACKLOG} detected"))
                }
            }
        },
    )
    .await;
    tokio::task::spawn_blocking(move || drop(backlog))
        .await
        .unwrap();
    let first = sampler
        .first_move(0, Duration::from_secs(60), || agent.log_tail())
        .await;
    tokio::time::sleep_until((first + WINDOW + SAMPLE * 2).into()).await;
    let moves = sampler.stop();
    let shed = in_window(&moves[0].events(), first);
    let mut events: Vec<(Seen, bool)> = shed.iter().map(|seen| (*seen, true)).collect();
    events.extend(
        in_window(&moves[1].changes(), first)
            .into_iter()
            .map(|seen| (seen, false)),
    );
    // An admitted report and the shed one right after it can fall in one reading: admitted first.
    events.sort_by_key(|(seen, is_shed)| (seen.by, *is_shed));
    let shown: Vec<String> = events
        .iter()
        .map(|(seen, is_shed)| {
            format!(
                "{:.2}{}",
                (seen.by - first).as_secs_f64(),
                if *is_shed { "S" } else { "A" }
            )
        })
        .collect();
    // After a shed, the next report comes when the batch has refilled: no sooner (it would be shed
    // again) and no later than that plus a delay after progress (base 1 s) and a session. A shed
    // right after an admitted report found the bucket empty: its retry-after is the whole refill,
    // less what refilled while that session ran (up to 2 s on a loaded machine), rounded up.
    let refill = (BATCH / RATE) as f64;
    let (soonest, latest) = (refill - 3.0, refill + BASE_SECONDS + SESSION_SLACK_SECONDS);
    for (i, pair) in events.windows(2).enumerate() {
        let ((shed_seen, is_shed), (next_seen, next_is_shed)) = (pair[0], pair[1]);
        if !is_shed {
            continue;
        }
        assert!(
            !next_is_shed,
            "shed twice in a row: back before the retry-after; events (s) {shown:?}"
        );
        let (shortest, longest) = shed_seen.gap_to(next_seen);
        let after_admitted = i > 0 && !events[i - 1].1;
        assert!(
            shortest <= latest && (!after_admitted || longest >= soonest),
            "{shortest:.2}..{longest:.2} s from a shed to the next report, expected {soonest}..={latest}; events (s) {shown:?}"
        );
    }
    let (fewest, most) = (
        (WINDOW.as_secs_f64() / latest) as usize,
        1 + (WINDOW.as_secs_f64() / soonest) as usize,
    );
    eprintln!(
        "RESOURCE_EXHAUSTED (agent rate, retry-after ~{refill} s): {} shed and {} admitted reports in {WINDOW:?}, sheds envelope {fewest}..={most}; events (s) {shown:?}",
        shed.len(),
        events.len() - shed.len()
    );
    assert!(
        (fewest..=most).contains(&shed.len()),
        "{} sheds in {WINDOW:?}, envelope {fewest}..={most}; events (s) {shown:?}",
        shed.len()
    );
    assert!(
        agent
            .lines()
            .iter()
            .any(|line| line.contains("over its report rate")),
        "{}",
        agent.log_tail()
    );
    // The budget refills at 1 observation/s: the rest drains, each stored once. Ten or so are
    // left; the time allowed covers other tests' tools detected in the same first scan (they take
    // the same budget).
    assert_each_stored_once(
        &collector.store,
        "all-hands.openhands",
        &pids,
        Duration::from_secs(240),
    )
    .await;
    drop(agent);
}

/// UNAVAILABLE: the collector is down. Where the agent reports, the network accepts TCP and
/// closes at once (what a load balancer does with no collector behind it); it only counts the
/// connections, the agent's attempts. No retry-after: the envelope is the bare backoff.
async fn attempts_while_the_collector_is_down() {
    let collector = start_with(Backend::Sqlite, IngestConfig::default())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let counting = tokio::spawn({
        let accepted = accepted.clone();
        async move {
            while let Ok((connection, _)) = listener.accept().await {
                accepted.lock().unwrap().push(Instant::now());
                drop(connection);
            }
        }
    });
    let config = work.path().join("agent.toml");
    write_config(
        &config,
        &format!("https://127.0.0.1:{port}"),
        &state,
        &transport_section(""),
    );
    let agent = run_agent(&config, false);
    let first = poll_until(Duration::from_secs(30), "the agent's first attempt", || {
        let first = accepted.lock().unwrap().first().copied();
        async move { first.ok_or_else(|| "no connection yet".to_owned()) }
    })
    .await;
    tokio::time::sleep(WINDOW.saturating_sub(first.elapsed())).await;
    let attempts: Vec<Seen> = accepted
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|at| *at <= first + WINDOW)
        .map(Seen::exact)
        .collect();
    assert_inside_the_envelope("UNAVAILABLE (collector down)", &attempts, 0.0);
    let status = daemon_status(&state).unwrap();
    assert_eq!(status["state"], "unreachable", "{status}");
    drop(agent);
    counting.abort();
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
