//! Dashboard page latency with a large evidence database: fills a database through the store's
//! ingest path (observations in batches of 1,000, each raising or updating its alert and findings),
//! adds triage history, then requests every page through the real router (`oneshot`, no network)
//! with a signed-in admin's session and prints p50 / p95 / max per page.
//!
//! ```sh
//! cargo bench -p shadowai-collector --bench dashboard_pages                       # SQLite (temp file)
//! cargo bench -p shadowai-collector --bench dashboard_pages -- postgres://postgres@127.0.0.1/bench
//! cargo bench -p shadowai-collector --bench dashboard_pages -- sqlite:///var/tmp/pages.db --reuse
//! SHADOWAI_BENCH_OBSERVATIONS=200000 SHADOWAI_BENCH_BATCH=200 cargo bench -p shadowai-collector --bench dashboard_pages
//! ```
//!
//! `SHADOWAI_BENCH_BATCH` (default 1,000) is the observations per ingest batch, all of one host;
//! batches go to the hosts in turn, so observations ≥ 1,000 × batch reach every host (with 200 k
//! observations in batches of 200, still 20,000 alerts and 100,000 findings).
//!
//! Defaults: 1,000,000 observations over 1,000 hosts × 20 products = 20,000 alerts and 100,000
//! findings (per host and product: two users' processes, DNS, TLS SNI, config); 2,000 triage
//! events; 40 requests per page. A PostgreSQL URL names a database that this run may fill (it is
//! not created: create it first, empty). `--reuse` keeps a database that already holds the
//! observations asked for (seeding 1 M takes many minutes) and only measures the pages; without
//! it, or when the database is empty, the run seeds it first. After seeding, PostgreSQL gets the
//! `VACUUM ANALYZE` autovacuum would run; SQLite is reopened, as after a collector restart (no
//! statistics are gathered: the queries' plans do not depend on them).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use shadowai_collector::auth;
use shadowai_collector::http::{HttpConfig, HttpState, router};
use shadowai_collector::store::{
    AlertFilter, EnrollAgent, NewEnrollmentToken, NewObservation, NewSession, ObservedProcess,
    Role, Signal, Store, TriageAction, TriageContext,
};
use tower::ServiceExt;
use uuid::Uuid;

const HOSTS: usize = 1_000;
const PRODUCTS: usize = 20;
const REQUESTS: usize = 40;
/// Distinct process users per host.
const USERS_PER_HOST: usize = 2;

fn env_number(name: &str, default: usize) -> usize {
    #[allow(clippy::disallowed_methods)] // a benchmark binary's entry point
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// `SELECT COUNT(*) FROM <table>` on the bench database (a connection of its own).
async fn count_rows(url: &str, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    if url.starts_with("postgres://") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let count = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let count = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    }
}

/// What PostgreSQL's autovacuum does after a bulk load that updated every alert many times:
/// vacuum (dead row versions, the visibility map that index-only scans need) and analyze.
async fn analyze_postgres(url: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let observations = env_number("SHADOWAI_BENCH_OBSERVATIONS", 1_000_000);
    let batch = env_number("SHADOWAI_BENCH_BATCH", 1_000);
    let reuse = std::env::args().any(|a| a == "--reuse");
    let url = std::env::args()
        .skip(1)
        .find(|a| a.starts_with("postgres://") || a.starts_with("sqlite://"));
    let dir = tempfile::tempdir().unwrap();
    let url = url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("bench.db").display()));
    let mut store = Store::connect(&url).await.unwrap();
    println!(
        "backend {} · {observations} observations · {HOSTS} hosts · {PRODUCTS} products",
        store.backend_name()
    );

    let now = now_ms();
    let stored = count_rows(&url, "observations").await;
    let agents = if reuse && stored >= i64::try_from(observations).unwrap() {
        println!("reusing the database ({stored} observations)");
        store
            .list_agents()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.agent_id)
            .collect::<Vec<_>>()
    } else {
        assert_eq!(stored, 0, "the database must be empty to be seeded");
        let started = Instant::now();
        let agents = seed(&store, observations, batch, now).await;
        println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
        if url.starts_with("postgres://") {
            analyze_postgres(&url).await;
        } else {
            store.close().await;
            store = Store::connect(&url).await.unwrap();
        }
        agents
    };
    for table in [
        "observations",
        "findings",
        "alerts",
        "triage_events",
        "agents",
    ] {
        println!("{table}: {}", count_rows(&url, table).await);
    }

    let token = auth::random_token();
    let user_id = store.user_by_name("bench-admin").await.unwrap().unwrap().id;
    store
        .create_session(&NewSession {
            token_sha256: auth::sha256_hex(&token),
            user_id,
            csrf_token: auth::random_token(),
            created_at_ms: now,
            expires_at_ms: now + 3_600_000,
        })
        .await
        .unwrap();
    let alerts = store
        .alert_queue(&AlertFilter {
            page_size: 1_000,
            status: None,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    let alert_id = alerts.alerts[500].alert.id;
    let host_id = agents[HOSTS / 2];

    let app = router(HttpState::new(
        store.clone(),
        HttpConfig {
            secure_cookies: false,
        },
    ));
    let cookie = format!("shadowai_session={token}");
    let pages = [
        "/overview".to_owned(),
        "/".to_owned(),
        "/?status=all&sort=severity".to_owned(),
        "/?status=all&sort=count&page=200".to_owned(),
        "/?host=host-0500&status=all".to_owned(),
        "/?product=vendor.product-07&since=7d".to_owned(),
        "/?user=user-0042&status=all".to_owned(),
        "/?severity=high".to_owned(),
        "/?status=acknowledged&sort=first_seen".to_owned(),
        "/?reason=new_product&category=coding_agent&status=all&page=20".to_owned(),
        "/?group=fleet&since=24h&sort=host".to_owned(),
        "/?page=300".to_owned(),
        format!("/alerts/{alert_id}"),
        "/hosts".to_owned(),
        format!("/hosts/{host_id}"),
        "/products".to_owned(),
        "/products/vendor.product-07".to_owned(),
        "/policy".to_owned(),
        "/audit".to_owned(),
        "/tokens".to_owned(),
        "/users".to_owned(),
        "/api/v1/alerts?limit=100".to_owned(),
        "/api/v1/findings?limit=100".to_owned(),
        format!("/api/v1/alerts/{alert_id}"),
    ];
    println!(
        "{:<40} {:>9} {:>9} {:>9}",
        "page", "p50 ms", "p95 ms", "max ms"
    );
    for page in &pages {
        let mut times = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let request = Request::get(page.as_str())
                .header("cookie", &cookie)
                .body(Body::empty())
                .unwrap();
            let started = Instant::now();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let _ = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            times.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{page}");
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let p95 = times[(times.len() * 95).div_ceil(100) - 1];
        println!(
            "{page:<40} {:>9.1} {:>9.1} {:>9.1}",
            ms(times[times.len() / 2]),
            ms(p95),
            ms(*times.last().unwrap())
        );
    }
    store.close().await;
}

/// Enrolls the hosts, stores `count` observations spread evenly over hosts × products × signals
/// (and two process users per host), adds the bench users and triage history; returns the agent
/// ids.
async fn seed(store: &Store, count: usize, batch_size: usize, now: i64) -> Vec<Uuid> {
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: "bench".into(),
            secret_sha256: "s".into(),
            group: "fleet".into(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: now,
            created_by: "bench".into(),
        })
        .await
        .unwrap();
    let mut agents = Vec::with_capacity(HOSTS);
    for host in 0..HOSTS {
        let agent_id = Uuid::now_v7();
        store
            .enroll_agent(&EnrollAgent {
                token_id: "bench".into(),
                secret_sha256: "s".into(),
                agent_id,
                cert_fingerprint: agent_id.simple().to_string(),
                cert_expires_at_ms: now + 86_400_000,
                hostname: format!("host-{host:04}"),
                os: "linux".into(),
                os_version: "6.1".into(),
                arch: "x86_64".into(),
                agent_version: "0.1.0".into(),
                remote_addr: "10.0.0.1".into(),
                now_ms: now,
            })
            .await
            .unwrap();
        agents.push(agent_id);
    }
    let span_ms: i64 = 30 * 86_400_000;
    let mut batch: Vec<NewObservation> = Vec::with_capacity(batch_size);
    let mut batch_agent = agents[0];
    for index in 0..count {
        // one agent per batch: consecutive observations belong to the same host
        let host = (index / batch_size) % HOSTS;
        let product = index % PRODUCTS;
        let at =
            now - span_ms + i64::try_from(index).unwrap() * span_ms / i64::try_from(count).unwrap();
        // every product gets every signal (not `index % 4`, which would tie a signal to a product)
        let signal =
            [Signal::Process, Signal::Dns, Signal::TlsSni, Signal::Config][(index / PRODUCTS) % 4];
        let user = USERS_PER_HOST * host + (index / (4 * PRODUCTS)) % USERS_PER_HOST;
        batch_agent = agents[host];
        batch.push(NewObservation {
            id: Uuid::now_v7(),
            observed_at_ms: at,
            signal,
            name: format!("product-{product:02}.example.com"),
            product: format!("vendor.product-{product:02}"),
            vendor: "vendor".into(),
            category: if product.is_multiple_of(3) {
                "coding_agent"
            } else {
                "assistant"
            }
            .into(),
            rule: format!("data/bench.toml#vendor.product-{product:02}/{signal}/rule"),
            reason: "matched the benchmark catalog".into(),
            risk: if product.is_multiple_of(5) {
                vec!["no_human_approval".into()]
            } else {
                vec![]
            },
            confidence: "high".into(),
            plan: Some(
                if product.is_multiple_of(2) {
                    "personal"
                } else {
                    "enterprise"
                }
                .into(),
            ),
            tenant: None,
            catalog_version: "bench".into(),
            count: 1,
            process: (signal == Signal::Process).then(|| ObservedProcess {
                pid: 1000 + u32::try_from(index % 30_000).unwrap(),
                parent_pid: 1,
                name: "tool".into(),
                exe: "/usr/bin/tool".into(),
                cmdline: "tool --flag value".into(),
                user: format!("user-{:04}", user % 1_000),
            }),
            details: json!({"event": "started"}),
            evidence: vec![0; 64],
        });
        if batch.len() == batch_size {
            store
                .insert_observations(batch_agent, &batch, now)
                .await
                .unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store
            .insert_observations(batch_agent, &batch, now)
            .await
            .unwrap();
    }
    store
        .create_user("bench-admin", Role::Admin, "x", now)
        .await
        .unwrap();
    store
        .create_user("bench-responder", Role::Responder, "x", now)
        .await
        .unwrap();
    let alerts = store
        .alert_queue(&AlertFilter {
            page_size: 1_000,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    // triage history: 2 events on each of 1,000 alerts
    for queued in &alerts.alerts {
        let context = |note: &str| TriageContext {
            actor: "bench-responder".into(),
            from_address: "192.0.2.1".into(),
            note: note.into(),
            now_ms: now,
        };
        store
            .triage_alert(queued.alert.id, &TriageAction::Acknowledge, &context(""))
            .await
            .unwrap();
        store
            .triage_alert(
                queued.alert.id,
                &TriageAction::Comment,
                &context("looked at it"),
            )
            .await
            .unwrap();
    }
    agents
}
