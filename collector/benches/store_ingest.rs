//! Store-level ingest throughput: `Store::insert_observations` (observations + findings + alert
//! policy, one transaction per batch) against the raw rate of the same database (the same rows
//! inserted into `observations` only, one transaction and one multi-row INSERT per batch), in the
//! same run.
//!
//! ```text
//! cargo bench -p shadowai-collector --bench store_ingest -- [AGENTS] [BATCHES_PER_AGENT] [BATCH]
//! SHADOWAI_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench ...
//! ```
//!
//! Each agent's batches mix 12 products, 3 users and 3 signals with a few risk flags, so that the
//! policy does real work (findings grow, alerts are raised then bumped). Batches run one at a time;
//! the figure is per connection, not the collector's whole capacity (see `loadgen` for that).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::time::Instant;

use serde_json::json;
use shadowai_collector::store::{
    EnrollAgent, NewEnrollmentToken, NewObservation, ObservedProcess, Signal, Store,
};
use sqlx::Connection;
use uuid::Uuid;

const PRODUCTS: [(&str, &str); 12] = [
    ("ollama.ollama", "local_model_runtime"),
    ("openai.chatgpt", "chat_app"),
    ("anthropic.claude-code", "coding_assistant"),
    ("openai.codex", "coding_assistant"),
    ("github.copilot", "coding_assistant"),
    ("cursor.cursor", "coding_assistant"),
    ("google.gemini", "chat_app"),
    ("perplexity.perplexity", "chat_app"),
    ("huggingface.hub", "model_hub"),
    ("openai.api", "model_api"),
    ("anthropic.api", "model_api"),
    ("lmstudio.lmstudio", "local_model_runtime"),
];

fn observation(i: usize, at: i64) -> NewObservation {
    let (product, category) = PRODUCTS[i % PRODUCTS.len()];
    let signal = [Signal::Process, Signal::Dns, Signal::TlsSni][i % 3];
    let risk = match i % 17 {
        0 => vec!["approval_bypass".to_owned()],
        5 => vec!["agent_shell".to_owned()],
        _ => Vec::new(),
    };
    NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: at,
        signal,
        name: format!("{product}.example"),
        product: product.to_owned(),
        vendor: "Vendor".to_owned(),
        category: category.to_owned(),
        rule: format!("data/bench.toml#{product}/domain[0]"),
        reason: "suffix matched".to_owned(),
        risk,
        confidence: "high".to_owned(),
        plan: None,
        tenant: None,
        catalog_version: "bench".to_owned(),
        count: 1,
        process: (signal == Signal::Process).then(|| ObservedProcess {
            pid: 1000 + i as u32,
            parent_pid: 1,
            name: "tool".to_owned(),
            exe: "/usr/bin/tool".to_owned(),
            cmdline: "tool --serve".to_owned(),
            user: format!("user{}", i % 3),
        }),
        details: json!({"event": "started"}),
        evidence: vec![0x0a; 160],
    }
}

async fn enroll(store: &Store, agents: usize, now: i64) -> Vec<Uuid> {
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: "bench".into(),
            secret_sha256: "s".into(),
            group: "laptops".into(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: now,
            created_by: "bench".into(),
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..agents {
        let agent_id = Uuid::now_v7();
        store
            .enroll_agent(&EnrollAgent {
                token_id: "bench".into(),
                secret_sha256: "s".into(),
                agent_id,
                cert_fingerprint: format!("fp{n}"),
                cert_expires_at_ms: now + 1_000_000,
                hostname: format!("host{n}"),
                os: "linux".into(),
                os_version: "6".into(),
                arch: "x86_64".into(),
                agent_version: "1".into(),
                remote_addr: "192.0.2.1".into(),
                now_ms: now,
            })
            .await
            .unwrap();
        ids.push(agent_id);
    }
    ids
}

/// The batches every run uses: `batches` per agent of `size` observations.
fn batches(
    agents: &[Uuid],
    per_agent: usize,
    size: usize,
    now: i64,
) -> Vec<(Uuid, Vec<NewObservation>)> {
    let mut out = Vec::new();
    for round in 0..per_agent {
        for (n, agent) in agents.iter().enumerate() {
            let batch = (0..size)
                .map(|i| observation(n + round * size + i, now + (round * size + i) as i64))
                .collect();
            out.push((*agent, batch));
        }
    }
    out
}

/// Inserts the same rows into `observations` only, one transaction and one multi-row INSERT per
/// batch: the database's raw rate for this row shape.
async fn raw_rate(url: &str, work: &[(Uuid, Vec<NewObservation>)], now: i64) -> f64 {
    macro_rules! run {
        ($connection:expr) => {{
            let mut connection = $connection;
            let started = Instant::now();
            for (agent, batch) in work {
                let agent = agent.to_string();
                let mut tx = connection.begin().await.unwrap();
                // The same multi-row INSERT shape as the store (500 rows per statement at most).
                for chunk in batch.chunks(500) {
                    let texts: Vec<(String, String, String)> = chunk
                        .iter()
                        .map(|o| {
                            (
                                Uuid::now_v7().to_string(),
                                serde_json::Value::from(o.risk.clone()).to_string(),
                                o.details.to_string(),
                            )
                        })
                        .collect();
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
                         product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
                         process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
                         details, evidence, tenant) ",
                    );
                    insert.push_values(chunk.iter().zip(&texts), |mut row, (o, (id, risk, details))| {
                        let p = o.process.as_ref();
                        row.push_bind(id)
                            .push_bind(&agent)
                            .push_bind(o.observed_at_ms)
                            .push_bind(now)
                            .push_bind(o.signal.as_str())
                            .push_bind(&o.name)
                            .push_bind(&o.product)
                            .push_bind(&o.vendor)
                            .push_bind(&o.category)
                            .push_bind(&o.rule)
                            .push_bind(&o.reason)
                            .push_bind(risk)
                            .push_bind(&o.confidence)
                            .push_bind(o.plan.as_deref())
                            .push_bind(&o.catalog_version)
                            .push_bind(i64::from(o.count))
                            .push_bind(p.map(|p| i64::from(p.pid)))
                            .push_bind(p.map(|p| i64::from(p.parent_pid)))
                            .push_bind(p.map(|p| p.name.as_str()))
                            .push_bind(p.map(|p| p.exe.as_str()))
                            .push_bind(p.map(|p| p.cmdline.as_str()))
                            .push_bind(p.map(|p| p.user.as_str()))
                            .push_bind(details)
                            .push_bind(o.evidence.as_slice())
                            .push_bind(o.tenant.as_deref());
                    });
                    insert.push(" ON CONFLICT (id) DO NOTHING");
                    insert.build().execute(&mut *tx).await.unwrap();
                }
                tx.commit().await.unwrap();
            }
            started.elapsed().as_secs_f64()
        }};
    }
    let observations: usize = work.iter().map(|(_, b)| b.len()).sum();
    let seconds = if url.starts_with("sqlite:") {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        run!(
            sqlx::SqliteConnection::connect_with(&options)
                .await
                .unwrap()
        )
    } else {
        run!(sqlx::PgConnection::connect(url).await.unwrap())
    };
    observations as f64 / seconds
}

async fn bench(name: &str, url: &str, agents: usize, per_agent: usize, size: usize) {
    let now = 1_750_000_000_000;
    let store = Store::connect(url).await.unwrap();
    let ids = enroll(&store, agents, now).await;
    let work = batches(&ids, per_agent, size, now);
    let observations: usize = work.iter().map(|(_, b)| b.len()).sum();
    // Raw first, into the then empty table, so that the ratio is not flattered.
    let raw = raw_rate(url, &work, now).await;
    let started = Instant::now();
    let mut alerts = 0;
    for (agent, batch) in &work {
        alerts += store
            .insert_observations(*agent, batch, now)
            .await
            .unwrap()
            .alerts_raised;
    }
    let seconds = started.elapsed().as_secs_f64();
    let with_policy = observations as f64 / seconds;
    println!(
        "{name}: {agents} agents x {per_agent} batches x {size} obs = {observations} obs; \
         insert_observations {with_policy:.0} obs/s ({:.2} ms/batch, {alerts} alerts raised); \
         raw insert {raw:.0} obs/s; ratio {:.2}",
        seconds * 1000.0 / work.len() as f64,
        with_policy / raw
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let agents = args.first().copied().unwrap_or(1000);
    let per_agent = args.get(1).copied().unwrap_or(4);
    let size = args.get(2).copied().unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    bench("sqlite", &url, agents, per_agent, size).await;
    if let Some(admin) = std::env::var("SHADOWAI_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        let name = format!("shadowai_bench_{}", Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut connection)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        bench(
            "postgres",
            &format!("{base}/{name}"),
            agents,
            per_agent,
            size,
        )
        .await;
        sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut connection)
            .await
            .unwrap();
    }
}
