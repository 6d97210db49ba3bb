//! The daemon's edges without a collector: `run --check` on good and bad configurations,
//! `status` of an agent that is not enrolled, and a spool written by an older agent (format v1,
//! `fixtures/spool/`) read by this one.

// A failed unwrap is how a test fails; helpers outside #[test] functions count too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use shadowai_agent::spool::Spool;
use shadowai_proto::v1::observation::Kind;

const AGENT: &str = env!("CARGO_BIN_EXE_shadowai-agent");

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .env_remove("SHADOWAI_LOG")
        .output()
        .expect("the agent binary runs")
}

fn check(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    agent(&["run", "--check", "--config", path.to_str().unwrap()])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn run_check_accepts_a_valid_configuration() {
    let output = check(
        "collector = \"https://c.example:7443\"\nenrollment_token_file = \"/etc/shadowai/t\"\n\
         [budget]\ncpu_percent = 1.5\nrss_mb = 40\nwindow_seconds = 30\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration ok"));
}

#[test]
fn run_check_exits_2_naming_what_to_fix() {
    let cases = [
        ("colector = \"https://x\"", "unknown field `colector`"),
        (
            "[process]\ninterval_seconds = 0",
            "process.interval_seconds must be between 1 and 3600, got 0",
        ),
        (
            "[budget]\ncpu_percent = 500.0",
            "budget.cpu_percent must be between 0.1 and 100, got 500",
        ),
        ("[budget]\nturbo = true", "unknown field `turbo`"),
        (
            "enrollment_token = \"sa1.a.b.c\"\nenrollment_token_file = \"/t\"",
            "enrollment_token and enrollment_token_file are both set",
        ),
        ("collector = \"http://c\"", "must start with https://"),
        ("collector = [", "agent.toml"),
    ];
    for (text, expect) in cases {
        let output = check(text);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{text:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expect),
            "{text:?}: {:?} lacks {expect:?}",
            stderr(&output)
        );
    }
    let output = agent(&["run", "--check", "--config", "/nonexistent/agent.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot read /nonexistent/agent.toml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn status_of_an_agent_that_is_not_enrolled() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let output = agent(&["status", "--json", "--state-dir", state]);
    assert_eq!(output.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["enrolled"], false);
    assert!(value["daemon"].is_null());
    let output = agent(&["status", "--state-dir", state]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("enrolled: no"), "{text}");
    assert!(text.contains("no status written yet"), "{text}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "log") {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// What the fixture holds: see `fixtures/spool/README.md`.
const FIXTURE_OBSERVATIONS: usize = 5;

#[test]
fn a_version_1_spool_written_by_the_daemon_is_read_by_this_agent() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool");
    let segment = std::fs::read_dir(&fixture)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a segment in the fixture");
    let header = std::fs::read(&segment).unwrap();
    assert_eq!(
        &header[..8],
        b"SASPOOL\x01",
        "the fixture is format version 1"
    );
    // Opening may truncate or move files: work on a copy.
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    copy_dir(&fixture, &spool_dir);
    let (mut spool, recovery) = Spool::open(&spool_dir, 64 << 20).unwrap();
    assert!(recovery.problems.is_empty(), "{:?}", recovery.problems);
    assert_eq!(recovery.recovered, FIXTURE_OBSERVATIONS);
    let observations = spool.lease(100);
    assert_eq!(observations.len(), FIXTURE_OBSERVATIONS);
    let mut processes = 0;
    let mut listeners = 0;
    for observation in &observations {
        assert!(
            uuid::Uuid::parse_str(&observation.id).is_ok(),
            "{observation:?}"
        );
        let detection = observation.detection.as_ref().expect("a detection");
        assert!(detection.rule.starts_with("data/"), "{observation:?}");
        match &observation.kind {
            Some(Kind::ProcessSeen(_)) => {
                processes += 1;
                assert_eq!(detection.product, "crewai.crewai", "{observation:?}");
                let process = observation.process.as_ref().expect("a process");
                assert_eq!(process.name, "crewai");
                assert!(
                    process.cmdline.contains("crewai run --agents"),
                    "{process:?}"
                );
            }
            Some(Kind::Listener(listener)) => {
                listeners += 1;
                assert_eq!(listener.port, 2024, "{observation:?}");
            }
            other => panic!("unexpected kind {other:?}"),
        }
    }
    assert_eq!((processes, listeners), (4, 1));
    assert!(spool.dropped().is_empty());
    // This agent appends to the old spool and acknowledges across both.
    let ids: Vec<String> = observations.iter().map(|o| o.id.clone()).collect();
    spool.commit(&ids);
    drop(spool);
    let (spool, recovery) = Spool::open(&spool_dir, 64 << 20).unwrap();
    assert_eq!((spool.depth(), recovery.recovered), (0, 0));
}
