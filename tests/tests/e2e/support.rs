//! What every end-to-end test needs: fresh real binaries, processes that are always cleaned up,
//! a quickstart that is up, API and dashboard clients, and throwaway PostgreSQL databases.
//!
//! Processes are owned by guards that end them by PID on drop (also when a test panics), together
//! with everything they started (the agent that quickstart spawns), so a failed test leaves nothing
//! behind that a later test's agent could detect.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often anything is polled: the agent scans every 2 s, so a quarter second costs little.
pub const POLL: Duration = Duration::from_millis(250);
/// How long quickstart may take to print `ready` (first start creates a CA and a database).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful shutdown may take after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many output lines of a process are replayed when a test fails.
const LOG_TAIL: usize = 80;

// ---------------------------------------------------------------------------------------------
// binaries

/// Paths of the real binaries under test.
#[derive(Debug)]
pub struct Binaries {
    pub collector: PathBuf,
    pub agent: PathBuf,
    pub idle: PathBuf,
}

/// Builds `shadowai-collector` and `shadowai-agent` once per test binary and returns their paths:
/// an end-to-end test must never run a stale binary left over from an earlier build.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(build_binaries)
}

fn build_binaries() -> Binaries {
    let exe = std::env::current_exe().expect("path of the test executable");
    // target/<profile>/deps/e2e-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target dir above the profile dir");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("profile dir name is UTF-8");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "build",
            "-p",
            "shadowai-collector",
            "-p",
            "shadowai-agent",
            "--bins",
        ]);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        custom => {
            build.args(["--profile", custom]);
        }
    }
    let output = build.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build of the binaries under test failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let binaries = Binaries {
        collector: profile_dir.join("shadowai-collector"),
        agent: profile_dir.join("shadowai-agent"),
        idle: PathBuf::from(env!("CARGO_BIN_EXE_shadowai-idle")),
    };
    for path in [&binaries.collector, &binaries.agent, &binaries.idle] {
        assert!(
            path.is_file(),
            "binary not found after build: {}",
            path.display()
        );
    }
    binaries
}

// ---------------------------------------------------------------------------------------------
// processes

/// A process started by a test. Dropping it ends the process and all its descendants by PID.
pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ProcessGuard {
    /// Starts `command` with stdout and stderr captured line by line (kept for failure reports).
    pub fn spawn(name: &str, command: &mut Command) -> ProcessGuard {
        ProcessGuard::try_spawn(name, command)
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Like [`ProcessGuard::spawn`], returning the error (e.g. `ETXTBSY` for a binary another
    /// thread's child still holds open for writing) so that the caller can retry.
    pub fn try_spawn(name: &str, command: &mut Command) -> std::io::Result<ProcessGuard> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            collect_lines(stdout, "out", Arc::clone(&logs));
        }
        if let Some(stderr) = child.stderr.take() {
            collect_lines(stderr, "err", Arc::clone(&logs));
        }
        Ok(ProcessGuard {
            name: name.to_owned(),
            child: Some(child),
            logs,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("process already reaped")
    }

    /// Lines printed so far, each prefixed with `out: ` or `err: `.
    pub fn lines(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Lines printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|line| line.strip_prefix("out: ").map(str::to_owned))
            .collect()
    }

    /// The last lines this process printed, for assertion messages.
    pub fn log_tail(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(LOG_TAIL);
        format!(
            "--- last output of {} ---\n{}",
            self.name,
            lines[start..].join("\n")
        )
    }

    /// Exit status if the process has already exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("wait for child")
    }

    /// PIDs of all live descendants (children, grandchildren, ...).
    pub fn descendants(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|child| descendants_of(child.id()))
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a graceful exit; panics (after killing) if it does not come.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid();
        signal(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                self.kill_all();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{tail}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL to the process and every descendant, then reap it (a crash, as tests need one).
    pub fn kill_all(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // descendants first: once the parent is gone they are re-parented and harder to find
        for pid in descendants_of(child.id()) {
            signal(pid, rustix::process::Signal::KILL);
        }
        // the error is "already exited", which is what we want
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("{}", self.log_tail());
        }
        self.kill_all();
    }
}

fn collect_lines(
    stream: impl Read + Send + 'static,
    tag: &'static str,
    logs: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if let Ok(mut logs) = logs.lock() {
                logs.push(format!("{tag}: {line}"));
            }
        }
    });
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // ESRCH means it is already gone
    let _ = rustix::process::kill_process(pid, signal);
}

/// Live (non-zombie) descendants of `root`, read from /proc.
pub fn descendants_of(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses
        let Some(after_comm) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let mut fields = after_comm.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let Some(ppid) = fields.next().and_then(|ppid| ppid.parse::<u32>().ok()) else {
            continue;
        };
        if state != "Z" && state != "X" {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` is still a live (non-zombie) process.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Copies the harmless idle binary to `path` (creating parent directories) and starts it there
/// with `args`, so that the agent sees a process with that executable path and command line.
pub fn spawn_idle_as(path: &Path, args: &[&str]) -> ProcessGuard {
    spawn_idle(path, None, args)
}

/// Like [`spawn_idle_as`], with `argv0` as the first word of the command line (as a script run by
/// `node` has), while the executable path and process name stay those of `path`.
pub fn spawn_idle(path: &Path, argv0: Option<&str>, args: &[&str]) -> ProcessGuard {
    use std::os::unix::process::CommandExt;
    let parent = path.parent().expect("idle copy has a parent directory");
    std::fs::create_dir_all(parent).expect("create directory for the idle copy");
    std::fs::copy(&binaries().idle, path).expect("copy shadowai-idle");
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned());
    let mut command = Command::new(path);
    if let Some(argv0) = argv0 {
        command.arg0(argv0);
    }
    ProcessGuard::spawn(&name.unwrap_or_default(), command.args(args))
}

// ---------------------------------------------------------------------------------------------
// quickstart

/// A running `shadowai-collector quickstart` that has printed `ready`.
pub struct Quickstart {
    pub process: ProcessGuard,
    /// Base URL of the dashboard and API, without a trailing slash.
    pub dashboard: String,
    pub data_dir: PathBuf,
    pub database: Option<String>,
}

impl Quickstart {
    /// Starts quickstart on `data_dir` (and `database`, else its embedded SQLite) and waits for
    /// `ready`.
    pub async fn start(data_dir: &Path, database: Option<&str>) -> Quickstart {
        let bins = binaries();
        let mut command = Command::new(&bins.collector);
        command
            .arg("quickstart")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .arg("--agent-bin")
            .arg(&bins.agent);
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        let mut process = ProcessGuard::spawn("shadowai-collector quickstart", &mut command);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let lines = process.stdout_lines();
            if lines.iter().any(|line| line.trim() == "ready") {
                let dashboard = value_after(&lines, "dashboard: ")
                    .unwrap_or_else(|| panic!("no `dashboard:` line\n{}", process.log_tail()));
                let collector = value_after(&lines, "collector: ")
                    .unwrap_or_else(|| panic!("no `collector:` line\n{}", process.log_tail()));
                assert!(
                    dashboard.starts_with("http://127.0.0.1:"),
                    "dashboard URL {dashboard:?} is not on the requested address"
                );
                assert!(
                    collector.starts_with("https://127.0.0.1:"),
                    "collector URL {collector:?} is not on the requested address"
                );
                return Quickstart {
                    process,
                    dashboard: dashboard.trim_end_matches('/').to_owned(),
                    data_dir: data_dir.to_path_buf(),
                    database: database.map(str::to_owned),
                };
            }
            if let Some(status) = process.try_exit_status() {
                panic!(
                    "quickstart exited before `ready` with {status}\n{}",
                    process.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "quickstart did not print `ready` within {READY_TIMEOUT:?}\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops quickstart as Ctrl-C would and checks that it shut down cleanly, agent included.
    pub async fn stop(mut self) {
        let children = self.process.descendants();
        assert!(
            !children.is_empty(),
            "quickstart should have started an agent for this machine\n{}",
            self.process.log_tail()
        );
        let status = self.process.terminate().await;
        assert!(
            status.success(),
            "quickstart exited with {status} after SIGTERM\n{}",
            self.process.log_tail()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while children.iter().any(|pid| is_alive(*pid)) {
            assert!(
                Instant::now() < deadline,
                "processes started by quickstart still run after it exited: {children:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Creates an API key with `role` through the CLI.
    pub fn create_api_key(&self, role: &str) -> String {
        create_api_key(&self.data_dir, self.database.as_deref(), role)
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::read(&self.data_dir)
    }
}

/// Runs a one-shot `shadowai-collector` command on `data_dir` (and `database`, else the data
/// dir's SQLite) and returns its stdout, trimmed. It may run while a collector serves that data.
pub fn collector_command(data_dir: &Path, database: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(&binaries().collector);
    command.args(args).arg("--data-dir").arg(data_dir);
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let output = command.output().expect("run shadowai-collector");
    assert!(
        output.status.success(),
        "shadowai-collector {args:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_owned()
}

/// Creates an API key with `role` through the CLI (`apikey create`).
pub fn create_api_key(data_dir: &Path, database: Option<&str>, role: &str) -> String {
    let key = collector_command(data_dir, database, &["apikey", "create", "--role", role]);
    assert!(
        key.starts_with("sak_") && !key.contains(char::is_whitespace),
        "`apikey create` should print only the key, got {key:?}"
    );
    key
}

// ---------------------------------------------------------------------------------------------
// serve

/// A running `shadowai-collector serve` on loopback ports chosen by the system.
pub struct Serve {
    pub process: ProcessGuard,
    /// Base URL of the dashboard and API, without a trailing slash.
    pub dashboard: String,
    /// HOST:PORT of the agent (gRPC, mTLS) listener.
    pub grpc: String,
    pub data_dir: PathBuf,
    pub database: String,
}

impl Serve {
    /// Starts `serve` on `data_dir` and `database` and waits until it says where it listens.
    pub async fn start(data_dir: &Path, database: &str) -> Serve {
        Serve::start_in(None, data_dir, database).await
    }

    /// As [`Serve::start`], inside network namespace `netns` when given (`ip netns exec` execs
    /// into the collector: the guard's pid is the collector's, and its loopback is the
    /// namespace's).
    pub async fn start_in(netns: Option<&str>, data_dir: &Path, database: &str) -> Serve {
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", netns])
                    .arg(&binaries().collector);
                command
            }
            None => Command::new(&binaries().collector),
        };
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database", database])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ]);
        let mut process = ProcessGuard::spawn("shadowai-collector serve", &mut command);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            // "agents: https://127.0.0.1:PORT (mTLS); dashboard: http://127.0.0.1:PORT/"
            let line = process
                .lines()
                .into_iter()
                .find(|line| line.contains("dashboard: "));
            if let Some(line) = line {
                let grpc = line
                    .split("agents: https://")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .unwrap_or_else(|| panic!("no agent address in {line:?}"))
                    .to_owned();
                let dashboard = line
                    .split("dashboard: ")
                    .nth(1)
                    .unwrap_or_default()
                    .trim()
                    .trim_end_matches('/')
                    .to_owned();
                return Serve {
                    process,
                    dashboard,
                    grpc,
                    data_dir: data_dir.to_path_buf(),
                    database: database.to_owned(),
                };
            }
            if let Some(status) = process.try_exit_status() {
                panic!("serve exited with {status}\n{}", process.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start within {READY_TIMEOUT:?}\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A one-shot `shadowai-collector` command on this collector's data.
    pub fn command(&self, args: &[&str]) -> String {
        collector_command(&self.data_dir, Some(&self.database), args)
    }

    /// Creates an API key with `role` through the CLI.
    pub fn create_api_key(&self, role: &str) -> String {
        create_api_key(&self.data_dir, Some(&self.database), role)
    }

    /// Simulated agents that enroll through the real `Enroll` RPC with a fresh enrollment token of
    /// `group` and report `events` observations each over their own mTLS connections (`loadgen`);
    /// returns loadgen's JSON report once every observation was acknowledged.
    pub async fn report_from_simulated_agents(
        &self,
        group: &str,
        agents: usize,
        events: usize,
    ) -> Value {
        let token = self.command(&["token", "create", "--group", group, "--expires", "1d"]);
        let mut command = tokio::process::Command::new(&binaries().collector);
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--database", &self.database])
            .args([
                "loadgen",
                "--collector",
                &self.grpc,
                "--token",
                &token,
                "--json",
            ])
            .args([
                "--agents",
                &agents.to_string(),
                "--events",
                &events.to_string(),
            ])
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .expect("loadgen finishes within 2 minutes")
            .expect("run loadgen");
        assert!(
            output.status.success(),
            "loadgen failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "loadgen output is not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }
}

fn value_after(lines: &[String], label: &str) -> Option<String> {
    lines.iter().find_map(|line| {
        let at = line.find(label)?;
        line[at + label.len()..]
            .split_whitespace()
            .next()
            .map(str::to_owned)
    })
}

/// The admin login quickstart writes to `admin-credentials.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn read(data_dir: &Path) -> Credentials {
        let path = data_dir.join("admin-credentials.txt");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
                .map(|value| value.trim().to_owned())
                .unwrap_or_else(|| panic!("{} has no `{name}=` line", path.display()))
        };
        let credentials = Credentials {
            username: field("username"),
            password: field("password"),
        };
        assert!(!credentials.password.is_empty(), "empty admin password");
        credentials
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A plain-HTTP client that follows no redirects (tests look at the 303s themselves).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client")
}

/// The JSON API with a bearer key.
pub struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Api {
        Api {
            client: http_client(),
            base: base.to_owned(),
            key: key.to_owned(),
        }
    }

    /// `GET /api/v1/{resource}` and the array under `resource` (first page).
    pub async fn list(&self, resource: &str) -> Vec<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/{resource}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET /api/v1/{resource}: {e}"));
        let status = response.status();
        let body = response.text().await.expect("response body");
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "GET /api/v1/{resource}: {body}"
        );
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET /api/v1/{resource} is not JSON ({e}): {body}"));
        match json.get(resource) {
            Some(Value::Array(items)) => items.clone(),
            _ => panic!("GET /api/v1/{resource} has no `{resource}` array: {body}"),
        }
    }

    pub async fn alerts(&self) -> Vec<Value> {
        self.list("alerts").await
    }

    pub async fn observations(&self) -> Vec<Value> {
        self.list("observations").await
    }
}

/// `item.field` as a string ("" when absent or not a string).
pub fn text<'a>(item: &'a Value, field: &str) -> &'a str {
    item.get(field).and_then(Value::as_str).unwrap_or("")
}

/// `item.process.field` as a string ("" when absent).
pub fn process_text<'a>(item: &'a Value, field: &str) -> &'a str {
    item.get("process")
        .map(|process| text(process, field))
        .unwrap_or("")
}

/// `item.process.pid`, whether the API sends it as a number or a string.
pub fn process_pid(item: &Value) -> Option<u64> {
    let pid = item.get("process")?.get("pid")?;
    pid.as_u64().or_else(|| pid.as_str()?.parse().ok())
}

/// Polls `probe` every [`POLL`] until it returns `Ok`, or panics after `timeout` naming `what`
/// and the last state the probe described in its `Err`.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(found) => return found,
            Err(state) => state,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last state: {last}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Value of cookie `name` in a response's `Set-Cookie` headers, with the full header line.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .find_map(|header| {
            let pair = header.split(';').next()?.trim();
            let value = pair.strip_prefix(name)?.strip_prefix('=')?;
            Some((value.to_owned(), header.to_owned()))
        })
}

/// The `value` of the hidden `<input name="csrf">` of a form.
pub fn csrf_field(html: &str) -> Option<String> {
    let name_at = html.find("name=\"csrf\"")?;
    let tag_start = html[..name_at].rfind('<')?;
    let tag_end = name_at + html[name_at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value_len = tag[value_at..].find('"')?;
    Some(tag[value_at..value_at + value_len].to_owned())
}

/// A dashboard session obtained through the login form, as a browser would.
pub struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
}

/// What happened to one login attempt.
pub enum Login {
    Ok(Session),
    Refused {
        status: reqwest::StatusCode,
        location: String,
    },
}

impl Session {
    /// `GET /login`, then `POST /login` with the CSRF cookie and field; `csrf` overrides the field
    /// (to test that a wrong one is refused).
    pub async fn login(base: &str, username: &str, password: &str, csrf: Option<&str>) -> Login {
        let client = http_client();
        let form_page = client
            .get(format!("{base}/login"))
            .send()
            .await
            .expect("GET /login");
        assert_eq!(form_page.status(), reqwest::StatusCode::OK, "GET /login");
        let (csrf_cookie, _) = set_cookie(&form_page, "shadowai_csrf")
            .expect("GET /login sets the shadowai_csrf cookie");
        let html = form_page.text().await.expect("login page");
        let csrf_value = csrf_field(&html).expect("login form has a hidden csrf field");
        let response = client
            .post(format!("{base}/login"))
            .header(
                reqwest::header::COOKIE,
                format!("shadowai_csrf={csrf_cookie}"),
            )
            .form(&[
                ("username", username),
                ("password", password),
                ("csrf", csrf.unwrap_or(&csrf_value)),
            ])
            .send()
            .await
            .expect("POST /login");
        let status = response.status();
        let location = location(&response);
        match set_cookie(&response, "shadowai_session") {
            Some((session, header))
                if !session.is_empty() && status == reqwest::StatusCode::SEE_OTHER =>
            {
                assert_eq!(
                    location, "/",
                    "a successful login redirects to the dashboard"
                );
                let lower = header.to_ascii_lowercase();
                assert!(
                    lower.contains("httponly"),
                    "session cookie must be HttpOnly: {header}"
                );
                assert!(
                    lower.contains("samesite=strict"),
                    "session cookie must be SameSite=Strict: {header}"
                );
                Login::Ok(Session {
                    client,
                    base: base.to_owned(),
                    cookie: format!("shadowai_session={session}"),
                })
            }
            _ => Login::Refused { status, location },
        }
    }

    /// Logs in and panics if that fails.
    pub async fn login_ok(base: &str, credentials: &Credentials) -> Session {
        match Session::login(base, &credentials.username, &credentials.password, None).await {
            Login::Ok(session) => session,
            Login::Refused { status, location } => {
                panic!("login with the admin credentials refused: {status} -> {location:?}")
            }
        }
    }

    /// `GET path` with the session cookie; the body of a 200.
    pub async fn page(&self, path: &str) -> String {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body = response.text().await.expect("page body");
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "GET {path} with a session: {body}"
        );
        body
    }
}

/// Up to `radius` bytes either side of the first `needle` in `text` (all of a short text), for
/// assertion messages about large pages.
pub fn excerpt<'a>(text: &'a str, needle: &str, radius: usize) -> &'a str {
    let at = text.find(needle).unwrap_or(0);
    let mut start = at.saturating_sub(radius);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + radius).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    &text[start..end]
}

/// `html` with character references decoded (`&lt;`, `&#60;`, `&#x3c;`, ...), i.e. the text a
/// browser shows. Escaping may use named or numeric references; tests assert on what is shown and,
/// separately, that no raw markup got through.
pub fn decode_entities(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let reference = &rest[1..end];
            let c = match reference {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let number = reference.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, end + 1))
        });
        match decoded {
            Some((c, consumed)) => {
                out.push(c);
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn decode_entities_reads_named_and_numeric_references() {
    assert_eq!(
        decode_entities("&lt;b&gt; &#60;i&#62; &#x3C;u&#x3e; &amp;amp; &#39;"),
        "<b> <i> <u> &amp; '"
    );
    assert_eq!(
        decode_entities("a & b &unknown; &#xZZ;"),
        "a & b &unknown; &#xZZ;"
    );
}

/// The `Location` header of a response ("" when absent).
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// shared machine state

/// Every quickstart's agent scans the whole machine, so two tests that each start an `ollama` and
/// expect "the" ollama alert to name their own pid must not overlap. A file lock (not a mutex)
/// because test runners such as nextest run each test in its own process.
pub async fn lock_machine_wide(name: &str) -> File {
    let path = std::env::temp_dir().join(format!("shadowai-e2e-{name}.lock"));
    tokio::task::spawn_blocking(move || {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        file
    })
    .await
    .expect("lock task")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A database created for one test on the server at `SHADOWAI_TEST_POSTGRES_URL`, dropped on drop.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDatabase {
    /// `None` (after saying so) when no server is configured and none is required.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url = std::env::var_os("SHADOWAI_TEST_POSTGRES_URL").map(|url| {
            url.into_string()
                .expect("SHADOWAI_TEST_POSTGRES_URL is UTF-8")
        });
        let Some(admin_url) = admin_url.filter(|url| !url.is_empty()) else {
            let required = std::env::var_os("SHADOWAI_REQUIRE_POSTGRES").is_some_and(|v| v == "1");
            assert!(
                !required,
                "SHADOWAI_REQUIRE_POSTGRES=1 but SHADOWAI_TEST_POSTGRES_URL is not set"
            );
            eprintln!("skipped: SHADOWAI_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)");
            return None;
        };
        // our own name, never from outside: safe to put in the statement text
        let name = format!("shadowai_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut admin = connect(&admin_url).await;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop cannot await and may run inside the test's runtime: use a runtime of its own
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = connect(&admin_url).await;
                sqlx::query(&statement)
                    .execute(&mut admin)
                    .await
                    .map(drop)
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

async fn connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("cannot connect to PostgreSQL at SHADOWAI_TEST_POSTGRES_URL: {e}")
    })
}

/// `url` with its database path replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut result = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h:1", "x"),
        "postgres://u:p@h:1/x"
    );
    assert_eq!(
        with_database("postgres://h/db?sslmode=disable", "x"),
        "postgres://h/x?sslmode=disable"
    );
}

#[test]
fn csrf_field_reads_the_hidden_input_whatever_the_attribute_order() {
    let html =
        r#"<form><input type="hidden" value="abc" name="csrf"><input name="x" value="y"></form>"#;
    assert_eq!(csrf_field(html).as_deref(), Some("abc"));
    let html = r#"<input type="hidden" name="csrf" value="d&amp;e">"#;
    assert_eq!(csrf_field(html).as_deref(), Some("d&amp;e"));
    assert_eq!(csrf_field("<input name=\"other\" value=\"z\">"), None);
}
