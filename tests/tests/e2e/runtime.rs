//! Agent runtime against a real collector over mTLS: the durable spool survives `kill -9` with
//! every observation stored exactly once, and certificates are renewed over the live channel.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use shadowai_collector::ingest::IngestConfig;
use shadowai_collector::store::ObservationQuery;

use crate::catalog_update::{daemon_status, observed_pid};
use crate::channel::{Backend, Collector, start_with};
use crate::support::{ProcessGuard, binaries, lock_machine_wide, poll_until, spawn_idle_as};

fn write_config(path: &Path, collector: &str, state: &Path) {
    std::fs::write(
        path,
        format!(
            "collector = \"{collector}\"\nstate_dir = \"{}\"\n[process]\ninterval_seconds = 1\n\
             [network]\nenabled = false\n[transport]\nflush_interval_ms = 100\n",
            state.display()
        ),
    )
    .unwrap();
}

fn run_agent(config: &Path) -> ProcessGuard {
    ProcessGuard::spawn(
        "shadowai-agent run",
        Command::new(&binaries().agent)
            .arg("run")
            .arg("--config")
            .arg(config),
    )
}

/// Observations stored per process id for a product.
async fn stored_per_pid(collector: &Collector, product: &str) -> BTreeMap<u32, usize> {
    let page = collector
        .store
        .list_observations(&ObservationQuery {
            limit: 500,
            after: None,
            agent_id: None,
            product: Some(product.to_owned()),
        })
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for observation in page.items {
        if let Some(process) = observation.process {
            *counts.entry(process.pid).or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_observations_survive_kill_9_and_are_stored_exactly_once() {
    // Its `ollama` processes would be seen by a quickstart test's agent on this machine.
    let _only_ollama_on_this_machine = lock_machine_wide("ollama").await;
    let collector = start_with(Backend::Sqlite, IngestConfig::default())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    // First run: the collector address points at a closed port, so everything stays spooled.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    write_config(&config, &dead_url, &state);
    let mut agent = run_agent(&config);
    let mut tools: Vec<ProcessGuard> = (0..8)
        .map(|i| spawn_idle_as(&work.path().join(format!("t{i}/ollama")), &["serve"]))
        .collect();
    let pids: Vec<u32> = tools.iter().map(ProcessGuard::pid).collect();
    poll_until(
        Duration::from_secs(40),
        "all eight detections spooled",
        || {
            let status = daemon_status(&state);
            async move {
                let status = status?;
                match status["spool_depth"].as_u64() {
                    Some(depth) if depth >= 8 => Ok(()),
                    _ => Err(format!("{status}")),
                }
            }
        },
    )
    .await;
    // A crash, and the processes are gone before the agent comes back: only the spool can
    // still deliver them.
    agent.kill_all();
    for tool in &mut tools {
        tool.kill_all();
    }
    write_config(&config, &collector.url.to_string(), &state);
    let _agent = run_agent(&config);
    for pid in &pids {
        poll_until(
            Duration::from_secs(40),
            "a spooled detection reaches the collector",
            || observed_pid(&collector, "ollama.ollama", *pid),
        )
        .await;
    }
    // Give a duplicate the chance to arrive, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = stored_per_pid(&collector, "ollama.ollama").await;
    for pid in &pids {
        assert_eq!(counts.get(pid), Some(&1), "pid {pid}: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_renews_its_certificate_over_mtls_and_keeps_reporting() {
    // Certificates live 45 s; the collector asks for renewal when less than 15 s are left.
    let _only_ollama_on_this_machine = lock_machine_wide("ollama").await;
    // Build the binaries first: a certificate must not age while cargo works.
    let _ = binaries();
    let collector = start_with(
        Backend::Sqlite,
        IngestConfig {
            heartbeat_interval_seconds: 5,
            agent_certificate_lifetime: time::Duration::seconds(45),
        },
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let enrolled = collector.enroll(&state).await;
    let first_expiry = enrolled.file.certificate_expires_at_ms;
    let first_key = std::fs::read(state.join("agent.key")).unwrap();
    let config = work.path().join("agent.toml");
    write_config(&config, &collector.url.to_string(), &state);
    let agent = run_agent(&config);
    poll_until(
        Duration::from_secs(60),
        "the certificate is renewed",
        || {
            let identity = std::fs::read_to_string(state.join("identity.json"));
            async move {
                let identity: serde_json::Value =
                    serde_json::from_str(&identity.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                match identity["certificate_expires_at_ms"].as_i64() {
                    Some(expiry) if expiry > first_expiry => Ok(()),
                    other => Err(format!("expiry {other:?}")),
                }
            }
        },
    )
    .await;
    let key = std::fs::read(state.join("agent.key")).unwrap();
    assert_ne!(key, first_key, "renewal makes a new key pair on the laptop");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!state.join("agent.key.next").exists() && !state.join("agent.crt.next").exists());
    assert!(
        agent
            .lines()
            .join("\n")
            .contains("agent certificate renewed"),
        "{}",
        agent.log_tail()
    );
    // The renewed identity is the one in use: a new detection still arrives.
    let tool = spawn_idle_as(&work.path().join("after/ollama"), &["serve"]);
    poll_until(Duration::from_secs(30), "a detection after renewal", || {
        observed_pid(&collector, "ollama.ollama", tool.pid())
    })
    .await;
    let status = daemon_status(&state).unwrap();
    assert_eq!(status["state"], "connected", "{status}");
}
