//! Tests of the tracker (made-up listings) and of the sensor (a real child process).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;

use super::{ProcessSensor, Snapshot, Tracker, assess};

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

/// A process as a listing holds it.
struct Fake {
    pid: u32,
    start: u64,
    name: OsString,
    exe: Option<PathBuf>,
    cmd: Vec<OsString>,
}

fn fake(pid: u32, start: u64, exe: &str, cmdline: &str) -> Fake {
    let cmd: Vec<OsString> = cmdline.split(' ').map(OsString::from).collect();
    let name = Path::new(cmd[0].as_os_str())
        .file_name()
        .unwrap()
        .to_owned();
    Fake {
        pid,
        start,
        name,
        exe: (!exe.is_empty()).then(|| PathBuf::from(exe)),
        cmd,
    }
}

fn listing(processes: &[Fake]) -> Vec<Snapshot<'_>> {
    processes
        .iter()
        .map(|process| Snapshot {
            pid: process.pid,
            parent_pid: 1,
            start_time_s: process.start,
            name: &process.name,
            exe: process.exe.as_deref(),
            cmd: &process.cmd,
            uid: Some(1000),
            user: Some("alice"),
        })
        .collect()
}

/// `pid product event` per detection, sorted.
fn summary(detections: &[crate::detect::Detection]) -> Vec<String> {
    let mut lines: Vec<String> = detections
        .iter()
        .map(|detection| {
            let pid = detection.process.as_ref().map(|p| p.pid).unwrap_or(0);
            let event = match detection.evidence {
                crate::detect::Evidence::Process {
                    event: crate::detect::ProcessEventKind::Changed,
                } => "changed",
                _ => "started",
            };
            format!("{pid} {} {event}", detection.product)
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn first_listing_reports_every_ai_process_and_nothing_else() {
    let mut tracker = Tracker::new(catalog());
    let processes = [
        fake(10, 100, "/usr/bin/ollama", "ollama serve"),
        fake(11, 100, "/usr/bin/bash", "bash"),
        fake(
            12,
            100,
            "/usr/bin/node",
            "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions",
        ),
    ];
    let detections = tracker.observe(listing(&processes), 1_000);
    assert_eq!(
        summary(&detections),
        [
            "10 ollama.ollama started",
            "12 anthropic.claude-code started"
        ]
    );
    let claude = detections
        .iter()
        .find(|d| d.product == "anthropic.claude-code")
        .unwrap();
    assert_eq!(claude.risk, ["approval_bypass"]);
    assert_eq!(claude.ts_ms, 1_000);
    let process = claude.process.as_ref().unwrap();
    assert_eq!(
        (process.user.as_str(), process.uid, process.started_at_ms),
        ("alice", Some(1000), 100_000)
    );
    assert_eq!(
        tracker.len(),
        3,
        "benign processes are remembered too, so they are not matched again"
    );
}

#[test]
fn unchanged_processes_are_not_reported_again() {
    let mut tracker = Tracker::new(catalog());
    let processes = [fake(10, 100, "/usr/bin/ollama", "ollama serve")];
    assert_eq!(tracker.observe(listing(&processes), 1).len(), 1);
    assert!(tracker.observe(listing(&processes), 2).is_empty());
    assert!(tracker.observe(listing(&processes), 3).is_empty());
}

#[test]
fn a_changed_command_line_or_exec_is_reported_as_changed() {
    let mut tracker = Tracker::new(catalog());
    let before = [fake(10, 100, "/usr/bin/ollama", "ollama run llama3")];
    assert_eq!(
        summary(&tracker.observe(listing(&before), 1)),
        ["10 ollama.ollama started"]
    );
    let after = [fake(10, 100, "/usr/bin/ollama", "ollama serve")];
    assert_eq!(
        summary(&tracker.observe(listing(&after), 2)),
        ["10 ollama.ollama changed"]
    );
    // A benign process that execs into an AI tool keeps its pid and start time.
    let shell = [fake(20, 100, "/usr/bin/bash", "bash")];
    assert!(tracker.observe(listing(&shell), 3).is_empty());
    let exec = [fake(20, 100, "/usr/local/bin/aider", "aider --yes-always")];
    let detections = tracker.observe(listing(&exec), 4);
    assert_eq!(summary(&detections), ["20 aider.aider changed"]);
    assert_eq!(detections[0].risk, ["approval_bypass"]);
}

#[test]
fn a_reused_pid_is_a_new_process() {
    let mut tracker = Tracker::new(catalog());
    let first = [fake(10, 100, "/usr/bin/ollama", "ollama serve")];
    assert_eq!(tracker.observe(listing(&first), 1).len(), 1);
    let reused = [fake(10, 200, "/usr/bin/ollama", "ollama serve")];
    assert_eq!(
        summary(&tracker.observe(listing(&reused), 2)),
        ["10 ollama.ollama started"]
    );
}

#[test]
fn processes_that_exit_are_forgotten() {
    let mut tracker = Tracker::new(catalog());
    let processes = [
        fake(10, 100, "/usr/bin/ollama", "ollama serve"),
        fake(11, 100, "/usr/bin/bash", "bash"),
    ];
    tracker.observe(listing(&processes), 1);
    assert_eq!(tracker.len(), 2);
    tracker.observe(listing(&processes[1..]), 2);
    assert_eq!(tracker.len(), 1);
    tracker.observe(Vec::new(), 3);
    assert!(tracker.is_empty());
}

#[test]
fn a_new_catalog_reports_only_changed_verdicts() {
    let mut tracker = Tracker::new(catalog());
    let processes = [
        fake(10, 100, "/usr/bin/ollama", "ollama serve"),
        fake(11, 100, "/opt/acme/acme-agent", "acme-agent --auto"),
    ];
    assert_eq!(tracker.observe(listing(&processes), 1).len(), 1);

    // The same catalog again: nothing new to say.
    tracker.set_catalog(catalog());
    assert!(tracker.observe(listing(&processes), 2).is_empty());

    // A catalog that knows acme-agent: only that process is news.
    let acme = r#"
[[product]]
id = "acme.agent"
vendor = "Acme"
name = "Acme Agent"
category = "autonomous_agent"
sources = ["https://acme.example/agent"]
verified = "2026-11-21"

[[product.process]]
id = "cli"
names = ["acme-agent"]
"#;
    let ollama = include_str!("../../../catalog/data/ollama.toml");
    let files = vec![
        ("data/acme.toml".to_owned(), acme.to_owned()),
        ("data/ollama.toml".to_owned(), ollama.to_owned()),
    ];
    tracker.set_catalog(Arc::new(Catalog::from_files("test-2", files).unwrap()));
    let detections = tracker.observe(listing(&processes), 3);
    assert_eq!(summary(&detections), ["11 acme.agent started"]);
    assert_eq!(detections[0].catalog_version, "test-2");
}

#[test]
fn unreadable_exe_still_matches_by_name_and_cmdline() {
    let mut tracker = Tracker::new(catalog());
    let processes = [fake(10, 100, "", "ollama serve")];
    let detections = tracker.observe(listing(&processes), 1);
    assert_eq!(summary(&detections), ["10 ollama.ollama started"]);
    assert_eq!(detections[0].process.as_ref().unwrap().exe, "");
}

#[cfg(unix)]
#[test]
fn non_utf8_and_hostile_names_are_survived() {
    use std::os::unix::ffi::OsStringExt;
    let mut tracker = Tracker::new(catalog());
    let mut process = fake(10, 100, "/usr/bin/ollama", "ollama serve --token abc");
    process.name = OsString::from_vec(vec![b'o', 0xff, b'\x1b']);
    process.cmd[0] = OsString::from_vec(b"/usr/bin/ollama\xff".to_vec());
    let detections = tracker.observe(listing(std::slice::from_ref(&process)), 1);
    assert_eq!(detections.len(), 1, "the exe name still says ollama");
    let evidence = detections[0].process.as_ref().unwrap();
    assert_eq!(evidence.name, "o\u{fffd}\u{1b}");
    assert_eq!(
        evidence.cmdline,
        "/usr/bin/ollama\u{fffd} serve --token [REDACTED]"
    );
}

#[test]
fn health_says_what_the_sensor_cannot_see() {
    assert_eq!(assess(0, 0, Some(1000)).0, SensorState::Blind);
    let (state, detail) = assess(300, 120, Some(1000));
    assert_eq!(state, SensorState::Degraded);
    assert!(detail.contains("120 of 300"), "{detail}");
    assert!(detail.contains("root"), "{detail}");
    assert_eq!(assess(300, 120, Some(0)).0, SensorState::Ok);
    assert_eq!(assess(300, 0, Some(1000)).0, SensorState::Ok);
}

/// A copy of `/bin/sleep` named `ollama`, running until dropped.
struct FakeOllama {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fake_ollama() -> FakeOllama {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("ollama");
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let child = spawn_retrying(&exe, &["600"]);
    FakeOllama { child, _dir: dir }
}

/// Spawns, retrying while another test's fork still holds the freshly copied file open for
/// writing (ETXTBSY), which is a race of the test harness, not of the agent.
#[allow(clippy::disallowed_methods)] // a short back-off in a test, not in a runtime thread
pub(crate) fn spawn_retrying(exe: &Path, args: &[&str]) -> std::process::Child {
    let mut attempts = 0;
    loop {
        match std::process::Command::new(exe).args(args).spawn() {
            Ok(child) => return child,
            Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("cannot start {}: {error}", exe.display()),
        }
    }
}

#[test]
fn the_sensor_finds_a_real_process_once() {
    let fake = start_fake_ollama();
    let pid = fake.child.id();
    let mut sensor = ProcessSensor::new(catalog());
    assert_eq!(sensor.health().0, SensorState::Unspecified);

    let first = sensor.scan(1_000);
    let found: Vec<_> = first
        .iter()
        .filter(|d| d.process.as_ref().is_some_and(|p| p.pid == pid))
        .collect();
    assert_eq!(found.len(), 1, "{first:#?}");
    assert_eq!(found[0].product, "ollama.ollama");
    assert_eq!(found[0].rule, "data/ollama.toml#ollama.ollama/process/cli");
    let process = found[0].process.as_ref().unwrap();
    assert_eq!(process.name, "ollama");
    assert!(process.exe.ends_with("/ollama"), "{}", process.exe);
    assert!(
        process.cmdline.ends_with("ollama 600"),
        "{}",
        process.cmdline
    );
    assert!(process.started_at_ms > 0);
    assert_ne!(sensor.health().0, SensorState::Blind);
    assert_ne!(sensor.health().0, SensorState::Unspecified);

    let second = sensor.scan(2_000);
    assert!(
        !second
            .iter()
            .any(|d| d.process.as_ref().is_some_and(|p| p.pid == pid)),
        "a process already reported is not reported again"
    );
}
