//! What the evidence chain costs at ingest: the same observations stored three ways, per backend.
//!
//! - `raw`: the observation INSERTs of `insert_observations` (same statement) in one transaction
//!   per batch, nothing else;
//! - `raw+chain`: the same plus `store::chain::link_observations` in that transaction;
//! - `store`: `Store::insert_observations` as ingest calls it (agent contact, alerts, chain).
//!
//! ```sh
//! cargo bench -p shadowai-collector --bench chain_ingest -- [OBSERVATIONS] [BATCH]
//! SHADOWAI_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench ...
//! ```
//! SQLite runs on a temporary file; PostgreSQL (when the URL names an admin connection) on a fresh
//! database that is dropped afterwards. Each mode writes into its own agent, in a fresh database
//! per backend; the modes are interleaved batch by batch (order rotating), so that a noisy machine
//! weighs on all three alike.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use serde_json::json;
use shadowai_collector::store::{
    EnrollAgent, NewEnrollmentToken, NewObservation, ObservedProcess, Signal, Store, chain,
};
use sqlx::Connection;
use uuid::Uuid;

const NOW: i64 = 1_750_000_000_000;

fn observation(i: usize) -> NewObservation {
    NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: NOW + i as i64,
        signal: Signal::TlsSni,
        name: "api.openai.com".to_owned(),
        product: format!("openai.product{}", i % 20),
        vendor: "OpenAI".to_owned(),
        category: "chat_assistant".to_owned(),
        rule: "data/openai.toml#openai.chatgpt/domain[3]".to_owned(),
        reason: "SNI api.openai.com matches *.openai.com".to_owned(),
        risk: vec!["consumer_plan".to_owned()],
        confidence: "high".to_owned(),
        plan: Some("personal".to_owned()),
        tenant: None,
        catalog_version: "2026.11.21-1".to_owned(),
        count: 3,
        process: Some(ObservedProcess {
            pid: 4242,
            parent_pid: 1,
            name: "chrome".to_owned(),
            exe: "/opt/google/chrome/chrome".to_owned(),
            cmdline: "/opt/google/chrome/chrome --type=renderer".to_owned(),
            user: "alice".to_owned(),
        }),
        details: json!({"src": "10.0.0.5:51234", "dst": "104.18.33.45:443", "alpn": ["h2"]}),
        evidence: vec![0x5a; 300],
    }
}

async fn agent(store: &Store) -> Uuid {
    let token_id = format!("t-{}", Uuid::now_v7().simple());
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: token_id.clone(),
            secret_sha256: "s".to_owned(),
            group: "bench".to_owned(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: NOW,
            created_by: "bench".to_owned(),
        })
        .await
        .unwrap();
    let agent_id = Uuid::now_v7();
    store
        .enroll_agent(&EnrollAgent {
            token_id,
            secret_sha256: "s".to_owned(),
            agent_id,
            cert_fingerprint: format!("fp-{}", agent_id.simple()),
            cert_expires_at_ms: NOW + 1,
            hostname: "bench".to_owned(),
            os: "linux".to_owned(),
            os_version: "6".to_owned(),
            arch: "x86_64".to_owned(),
            agent_version: "0".to_owned(),
            remote_addr: "192.0.2.1".to_owned(),
            now_ms: NOW,
        })
        .await
        .unwrap();
    agent_id
}

/// Stores one batch through a pool of the backend, with or without the chain; returns the time.
macro_rules! raw_insert {
    ($pool:expr, $agent:expr, $batch:expr, $with_chain:expr) => {{
        let started = Instant::now();
        let agent = $agent.to_string();
        let mut tx = $pool.begin().await.unwrap();
        let mut ids = Vec::with_capacity($batch.len());
        for observation in $batch.iter() {
            let process = observation.process.as_ref();
            sqlx::query(
                "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
                 product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
                 process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
                 details, evidence, tenant) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19, $20, $21, $22, $23, $24, $25) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(observation.id.to_string())
            .bind(&agent)
            .bind(observation.observed_at_ms)
            .bind(NOW)
            .bind(observation.signal.as_str())
            .bind(&observation.name)
            .bind(&observation.product)
            .bind(&observation.vendor)
            .bind(&observation.category)
            .bind(&observation.rule)
            .bind(&observation.reason)
            .bind(serde_json::Value::from(observation.risk.clone()).to_string())
            .bind(&observation.confidence)
            .bind(observation.plan.as_deref())
            .bind(&observation.catalog_version)
            .bind(i64::from(observation.count))
            .bind(process.map(|p| i64::from(p.pid)))
            .bind(process.map(|p| i64::from(p.parent_pid)))
            .bind(process.map(|p| p.name.as_str()))
            .bind(process.map(|p| p.exe.as_str()))
            .bind(process.map(|p| p.cmdline.as_str()))
            .bind(process.map(|p| p.user.as_str()))
            .bind(observation.details.to_string())
            .bind(observation.evidence.as_slice())
            .bind(observation.tenant.as_deref())
            .execute(&mut *tx)
            .await
            .unwrap();
            ids.push(observation.id);
        }
        if $with_chain {
            chain::link_observations(&mut tx, $agent, NOW, &ids).await.unwrap();
        }
        tx.commit().await.unwrap();
        started.elapsed()
    }};
}

/// CPU time of this process (all threads) in clock ticks of 10 ms, from `/proc/self/stat`. Summed
/// over hundreds of batches the tick rounding averages out; unlike wall time it does not count
/// other processes' load. For SQLite it is the whole cost (the database runs in-process).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command (in parentheses, may hold spaces): utime is the 12th field, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    utime + stime
}

fn batches_of(batch: usize) -> Vec<NewObservation> {
    (0..batch).map(observation).collect()
}

fn rate(total: usize, elapsed: Duration) -> f64 {
    total as f64 / elapsed.as_secs_f64()
}

/// Interleaves the modes batch by batch (the order rotates each batch), so that neighbours' load
/// and the growing tables weigh on every mode alike; returns the total time per mode.
macro_rules! measure {
    ($pool:expr, $store:expr, $agents:expr, $total:expr, $batch:expr) => {{
        let pool = $pool;
        let (mut raw, mut chained, mut full) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut cpu = [0u64; 3];
        let batches = $total.div_ceil($batch);
        for round in 0..batches {
            for step in 0..3 {
                let observations = batches_of($batch);
                let mode = (round + step) % 3;
                let ticks = cpu_ticks();
                match mode {
                    0 => raw += raw_insert!(pool, $agents[0], observations, false),
                    1 => chained += raw_insert!(pool, $agents[1], observations, true),
                    _ => {
                        let started = Instant::now();
                        $store
                            .insert_observations($agents[2], &observations, NOW)
                            .await
                            .unwrap();
                        full += started.elapsed();
                    }
                }
                cpu[mode] += cpu_ticks() - ticks;
            }
        }
        // The unchained rows would (rightly) fail verify: only the chained ones stay.
        sqlx::query("DELETE FROM observations WHERE agent_id = $1")
            .bind($agents[0].to_string())
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        (batches * $batch, raw, chained, full, cpu)
    }};
}

async fn run(backend: &str, url: &str, total: usize, batch: usize) {
    let store = Store::connect(url).await.unwrap();
    let agents = [
        agent(&store).await,
        agent(&store).await,
        agent(&store).await,
    ];
    let (total, raw, chained, full, cpu) = if url.starts_with("sqlite:") {
        measure!(
            sqlx::SqlitePool::connect(url).await.unwrap(),
            store,
            agents,
            total,
            batch
        )
    } else {
        measure!(
            sqlx::PgPool::connect(url).await.unwrap(),
            store,
            agents,
            total,
            batch
        )
    };
    let verify_started = Instant::now();
    let report = store.verify(None).await.unwrap();
    let verify = verify_started.elapsed();
    assert!(report.is_intact(), "{report:?}");
    store.close().await;
    let links = report.records.values().sum::<u64>();
    let cpu_us = |ticks: u64| ticks as f64 * 10_000.0 / total as f64;
    println!(
        "{backend:8} n={total} per mode, batch={batch}: wall: raw {:.0}/s, raw+chain {:.0}/s \
         (chain adds {:.0}% time), store {:.0}/s; collector CPU per observation: raw {:.0} us, \
         raw+chain {:.0} us, store {:.0} us; verify of {links} links: {:.2} s ({:.0} links/s)",
        rate(total, raw),
        rate(total, chained),
        (chained.as_secs_f64() / raw.as_secs_f64() - 1.0) * 100.0,
        rate(total, full),
        cpu_us(cpu[0]),
        cpu_us(cpu[1]),
        cpu_us(cpu[2]),
        verify.as_secs_f64(),
        links as f64 / verify.as_secs_f64()
    );
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let total = numbers.first().copied().unwrap_or(20_000);
    let batch = numbers.get(1).copied().unwrap_or(100).max(1);
    #[allow(clippy::disallowed_methods)] // a bench binary is its own main
    let postgres = std::env::var("SHADOWAI_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        run("sqlite", &url, total, batch).await;
        if let Some(admin) = postgres {
            let name = format!("shadowai_bench_{}", Uuid::new_v4().simple());
            let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut connection)
                .await
                .unwrap();
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _)| base);
            run("postgres", &format!("{base}/{name}"), total, batch).await;
            sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
                .execute(&mut connection)
                .await
                .unwrap();
        } else {
            println!("postgres: skipped (set SHADOWAI_BENCH_POSTGRES_URL to an admin URL)");
        }
    });
}
