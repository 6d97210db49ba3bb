//! Load, shedding and scale-out with the real binaries: `shadowai-collector serve` processes and
//! `shadowai-collector loadgen` agents over real gRPC and mTLS.
//!
//! - two collectors on one PostgreSQL database, agents enrolling through one and reporting through
//!   the other: every observation stored exactly once;
//! - 100 agents reconnecting at once stay within the collector's configured handshake rate;
//! - agents over their rate and a collector at its concurrency limit shed with RESOURCE_EXHAUSTED,
//!   and everything drains completely, with no other error.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{POLL, ProcessGuard, TestDatabase, binaries};

/// A `shadowai-collector serve` process listening on loopback ports of its choosing.
struct Serve {
    _process: ProcessGuard,
    /// HOST:PORT of the agent listener.
    grpc: String,
}

impl Serve {
    async fn start(data_dir: &Path, database: &str, config: Option<&Path>) -> Serve {
        let mut command = Command::new(&binaries().collector);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database", database]);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command.args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ]);
        let mut process = ProcessGuard::spawn("shadowai-collector serve", &mut command);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // "agents: https://127.0.0.1:PORT (mTLS); dashboard: http://..."
            let grpc = process.lines().iter().find_map(|line| {
                let rest = line.split("agents: https://").nth(1)?;
                Some(rest.split_whitespace().next()?.to_owned())
            });
            if let Some(grpc) = grpc {
                return Serve {
                    _process: process,
                    grpc,
                };
            }
            if let Some(status) = process.try_exit_status() {
                panic!("serve exited with {status}\n{}", process.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Creates the data directory (CA) and database, and an enrollment token.
fn token(data_dir: &Path, database: &str) -> String {
    let output = Command::new(&binaries().collector)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--database", database])
        .args(["token", "create", "--group", "load", "--expires", "1d"])
        .output()
        .expect("run token create");
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 token")
        .trim()
        .to_owned()
}

/// Runs loadgen to completion and returns its JSON report.
async fn loadgen(data_dir: &Path, collectors: &str, token: &str, args: &[&str]) -> Value {
    let mut command = tokio::process::Command::new(&binaries().collector);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "loadgen",
            "--collector",
            collectors,
            "--token",
            token,
            "--json",
        ])
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("loadgen finishes within 5 minutes")
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

fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number `{key}` in {report}"))
}

async fn observations_per_agent(database: &str) -> Vec<(String, i64)> {
    use sqlx::Connection;
    if database.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(database).await.unwrap();
        sqlx::query_as(
            "SELECT agent_id, COUNT(*) FROM observations GROUP BY agent_id ORDER BY agent_id",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap()
    } else {
        let mut connection = sqlx::PgConnection::connect(database).await.unwrap();
        sqlx::query_as(
            "SELECT agent_id, COUNT(*) FROM observations GROUP BY agent_id ORDER BY agent_id",
        )
        .fetch_all(&mut connection)
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_postgres_store_every_observation_exactly_once() {
    const AGENTS: usize = 40;
    const EVENTS: usize = 600;
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // one CA for both collectors: they are interchangeable for agents
    let data = tmp.path().join("data");
    let token = token(&data, &database.url);
    let first = Serve::start(&data, &database.url, None).await;
    let second = Serve::start(&data, &database.url, None).await;
    let both = format!("{},{}", first.grpc, second.grpc);

    // two fleets at once; each agent enrolls through one collector and reports through the other
    let args = [
        "--agents",
        "20",
        "--events",
        "600",
        "--batch",
        "250",
        "--concurrency",
        "8",
    ];
    let (a, b) = tokio::join!(
        loadgen(&data, &both, &token, &args),
        loadgen(&data, &both, &token, &args),
    );
    for report in [&a, &b] {
        assert_eq!(number(report, "observations_acked"), (20 * EVENTS) as f64);
        assert_eq!(number(report, "lost_batches"), 0.0, "{report}");
    }
    let per_agent = observations_per_agent(&database.url).await;
    assert_eq!(per_agent.len(), AGENTS, "{per_agent:?}");
    for (agent, count) in &per_agent {
        assert_eq!(*count, EVENTS as i64, "agent {agent}: {per_agent:?}");
    }
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_100_agents_stays_within_the_handshake_rate() {
    const RATE: f64 = 20.0;
    const BURST: f64 = 5.0;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let database = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        format!("[ingest_limits]\nhandshakes_per_second = {RATE}\nhandshake_burst = {BURST}\n"),
    )
    .unwrap();
    let token = token(&data, &database);
    let serve = Serve::start(&data, &database, Some(&config)).await;
    let report = loadgen(
        &data,
        &serve.grpc,
        &token,
        &[
            "--agents",
            "100",
            "--events",
            "10",
            "--batch",
            "10",
            "--reconnect-storm",
        ],
    )
    .await;
    eprintln!("{report}");
    let connections = number(&report, "connections");
    let seconds = number(&report, "connect_seconds");
    assert_eq!(connections, 100.0, "{report}");
    assert_eq!(number(&report, "observations_acked"), 1000.0, "{report}");
    // a token bucket admits at most BURST + RATE * t in any t seconds: the 100 connections need
    // at least (100 - BURST) / RATE seconds, and no one-second bucket holds more than BURST + RATE
    // (+2 for completions that straddle a bucket edge on the client side)
    let least = (connections - BURST) / RATE;
    assert!(
        seconds >= least * 0.95,
        "100 connections in {seconds:.2} s: faster than {RATE}/s (burst {BURST}): {report}"
    );
    let busiest = number(&report, "connections_per_second_max");
    assert!(
        busiest <= RATE + BURST + 2.0,
        "{busiest} connections in one second, over {RATE}/s + burst {BURST}: {report}"
    );
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_over_their_rate_or_capacity_are_shed_and_everything_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let database = format!("sqlite://{}", tmp.path().join("db.sqlite").display());
    let config = tmp.path().join("collector.toml");
    std::fs::write(
        &config,
        "[ingest_limits]\nagent_observations_per_second = 1000\nagent_observation_burst = 1000\n\
         max_concurrent_ingest = 1\n",
    )
    .unwrap();
    let token = token(&data, &database);
    let serve = Serve::start(&data, &database, Some(&config)).await;
    let report = loadgen(
        &data,
        &serve.grpc,
        &token,
        &[
            "--agents",
            "4",
            "--events",
            "3000",
            "--batch",
            "1000",
            "--concurrency",
            "4",
        ],
    )
    .await;
    eprintln!("{report}");
    assert!(number(&report, "shed") > 0.0, "nothing was shed: {report}");
    assert_eq!(
        number(&report, "errors"),
        0.0,
        "only RESOURCE_EXHAUSTED: {report}"
    );
    assert_eq!(number(&report, "observations_acked"), 12_000.0, "{report}");
    let per_agent = observations_per_agent(&database).await;
    assert_eq!(per_agent.len(), 4, "{per_agent:?}");
    assert!(
        per_agent.iter().all(|(_, count)| *count == 3000),
        "{per_agent:?}"
    );
    drop(serve);
}
