//! Report benchmark: a 90-day report over a generated fleet (default 10,000 hosts and 5,000,000
//! observations) on SQLite, and on PostgreSQL when an admin URL is given.
//!
//! ```sh
//! cargo bench -p shadowai-collector --bench report                       # SQLite
//! cargo bench -p shadowai-collector --bench report -- --postgres postgres://postgres@127.0.0.1:5432/postgres
//! cargo bench -p shadowai-collector --bench report -- --hosts 1000 --observations 500000
//! ```
//!
//! The data set is generated inside the database by one `INSERT ... SELECT` over a recursive
//! counter (same SQL on both backends), deterministic: each host uses three of 40 products in 8
//! categories, a quarter of the observations name a user, about 1 % carry a risk flag, some are MCP
//! configuration and exposed listeners. Then the report's daily roll-up is filled by the SQL of its
//! migration's backfill (`store::REPORT_USAGE_BACKFILL`; ingest keeps it the same way, batch by
//! batch), and the store's migrations' indexes are what the report uses.
//!
//! Two periods are timed, three builds each: 90 days ending at midnight UTC (whole days: the
//! report reads the roll-up only) and 90 days ending at 05:00 UTC (what `--since 90d` run at 05:00
//! asks for: the partial days at both ends come from raw observations, and the 12 days cut by a week
//! boundary from the roll-up's first/last times).
//! The evidence blob is the only literal spelled per backend (`X'00'`, PostgreSQL `'\x00'::bytea`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use shadowai_collector::report::pseudonym::Namer;
use shadowai_collector::report::{self, Format, ReportRequest};
use shadowai_collector::store::{REPORT_USAGE_BACKFILL, Store};
use sqlx::Connection;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
const NOW: i64 = 1_795_219_200_000;

fn main() {
    let mut hosts: i64 = 10_000;
    let mut observations: i64 = 5_000_000;
    let mut postgres: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--hosts" => hosts = args.next().unwrap().parse().unwrap(),
            "--observations" => observations = args.next().unwrap().parse().unwrap(),
            "--postgres" => postgres = args.next(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (url, cleanup) = match &postgres {
            None => (format!("sqlite://{}", dir.path().join("bench.db").display()), None),
            Some(admin) => {
                let name = format!("shadowai_bench_{}", std::process::id());
                let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
                sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                let base = admin.rsplit_once('/').unwrap().0;
                (format!("{base}/{name}"), Some((admin.clone(), name)))
            }
        };
        let store = Store::connect(&url).await.unwrap();
        let started = Instant::now();
        generate(&url, hosts, observations).await;
        println!(
            "{}: generated {hosts} hosts and {observations} observations in {:.1} s",
            store.backend_name(),
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        run(&url, REPORT_USAGE_BACKFILL).await;
        println!(
            "{}: filled the daily roll-up (migration 0008's backfill) in {:.1} s",
            store.backend_name(),
            started.elapsed().as_secs_f64()
        );
        let mut built = None;
        for (label, until_ms) in [("ending at midnight UTC", NOW), ("ending at 05:00 UTC", NOW - 19 * HOUR)] {
            let request = ReportRequest {
                since_ms: until_ms - 90 * DAY,
                until_ms,
                group: None,
                namer: Namer::plain(),
            };
            let mut timings: Vec<Duration> = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                built = Some(report::data::build(&store, &request, NOW).await.unwrap());
                timings.push(started.elapsed());
            }
            timings.sort();
            println!(
                "{}: 90-day report (figures) {label}: min {:.2} s, median {:.2} s, max {:.2} s; hosts with AI {}",
                store.backend_name(),
                timings[0].as_secs_f64(),
                timings[1].as_secs_f64(),
                timings[2].as_secs_f64(),
                built.as_ref().unwrap().summary.hosts_with_unsanctioned_ai.value
            );
        }
        let built = built.unwrap();
        for format in [Format::Json, Format::Html, Format::Csv, Format::Pdf] {
            let started = Instant::now();
            match report::render(&built, format) {
                Ok(_) => println!("  render {}: {:.2} s", format.as_str(), started.elapsed().as_secs_f64()),
                Err(error) => println!("  render {}: {error}", format.as_str()),
            }
        }
        store.close().await;
        if let Some((admin, name)) = cleanup {
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)")).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    });
}

async fn generate(url: &str, hosts: i64, observations: i64) {
    let statements = [
        "INSERT INTO enrollment_tokens (id, secret_sha256, group_name, created_at_ms, created_by) \
         VALUES ('bench', 'x', 'bench', 0, 'bench')"
            .to_owned(),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
             INSERT INTO agents (id, group_name, hostname, os, os_version, arch, agent_version, catalog_version, \
             enrolled_at_ms, enrolled_from, enrollment_token_id, last_contact_ms, health) \
             SELECT 'agent-' || CAST(i AS TEXT), 'group-' || CAST(i % 20 AS TEXT), 'host-' || CAST(i AS TEXT), \
             'linux', '6.1', 'x86_64', '0.1.0', '2026.11.21-1', {enrolled}, '192.0.2.1', 'bench', \
             {NOW} - (i % 50) * 3600000, CASE WHEN i % 100 = 0 THEN '{{\"blind_spots\":[{{\"kind\":\"doh\"}}]}}' ELSE '{{}}' END \
             FROM n",
            last = hosts - 1,
            enrolled = NOW - 200 * DAY,
        ),
        // host h = i % hosts; its three products; a time spread over 90 days
        format!(
            "WITH RECURSIVE n(i) AS (SELECT CAST(0 AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i < {last}), \
             g(i, h, p) AS (SELECT i, i % {hosts}, ((i % {hosts}) * 7 + ((i / {hosts}) % 3) * 11) % 40 FROM n) \
             INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, product, vendor, \
             category, rule, reason, risk, confidence, plan, catalog_version, count, process_pid, process_user, \
             details, evidence) \
             SELECT 'obs-' || CAST(i AS TEXT), 'agent-' || CAST(h AS TEXT), {since} + (i * 7919) % {span}, {NOW}, \
             CASE WHEN i % 1009 = 0 THEN 'config' WHEN i % 2003 = 0 THEN 'listener' WHEN i % 4 = 0 THEN 'process' ELSE 'dns' END, \
             'name-' || CAST(p AS TEXT), 'vendor' || CAST(p % 13 AS TEXT) || '.product' || CAST(p AS TEXT), \
             'vendor' || CAST(p % 13 AS TEXT), 'category' || CAST(p % 8 AS TEXT), 'bench#rule', 'bench', \
             CASE WHEN i % 97 = 0 THEN '[\"approval_bypass\"]' WHEN i % 101 = 0 THEN '[\"agent_infra_cli\"]' ELSE '[]' END, \
             'high', CASE WHEN p % 5 = 0 THEN 'personal' ELSE NULL END, '2026.11.21-1', 1, \
             CASE WHEN i % 4 = 0 THEN 1000 ELSE NULL END, \
             CASE WHEN i % 4 = 0 THEN 'user-' || CAST(h AS TEXT) ELSE NULL END, \
             CASE WHEN i % 1009 = 0 THEN '{{\"mcp_server\":\"server-' || CAST(i % 7 AS TEXT) || '\",\"mcp_transport\":\"sse\",\"mcp_target\":\"https://mcp.example/\"}}' \
                  WHEN i % 2003 = 0 THEN '{{\"address\":\"0.0.0.0\",\"port\":11434,\"exposed\":true}}' ELSE '{{}}' END, \
             {blob} FROM g",
            last = observations - 1,
            blob = if url.starts_with("sqlite:") { "X'00'" } else { "'\\x00'::bytea" },
            since = NOW - 90 * DAY,
            span = 90 * DAY,
        ),
            "INSERT INTO alerts (id, agent_id, product, reason, severity, status, title, vendor, category, rule, \
             user_name, first_seen_ms, last_seen_ms, count, first_observation_id, last_observation_id) \
             SELECT 'alert-' || agent_id || '-' || product, agent_id, product, 'new_product', 'medium', 'open', 't', \
             MIN(vendor), MIN(category), 'bench#rule', '', MIN(observed_at_ms), MAX(observed_at_ms), COUNT(*), \
             MIN(id), MAX(id) FROM observations GROUP BY agent_id, product"
            .to_owned(),
    ];
    for statement in &statements {
        run(url, statement).await;
    }
}

/// Runs one statement on its own connection, then ANALYZE.
async fn run(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        sqlx::raw_sql("ANALYZE").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}
