//! Databases for tests (a temporary SQLite file, or a fresh PostgreSQL database dropped afterwards),
//! a seeded fleet with known figures, and independent SQL for checking figures.

use serde_json::json;
use shadowai_collector::store::{
    EnrollAgent, Heartbeat, NewEnrollmentToken, NewObservation, ObservedProcess, Signal, Store,
};
use sqlx::Connection;
use uuid::Uuid;

pub const DAY: i64 = 86_400_000;
/// "Now" of the seeded fleet: 2026-11-21T00:00:00Z.
pub const NOW: i64 = 1_795_219_200_000;

pub struct TestDb {
    pub url: String,
    pub store: Store,
    _sqlite_dir: Option<tempfile::TempDir>,
    postgres: Option<PostgresDatabase>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(&statement).execute(&mut admin).await?;
                admin.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::connect(&url).await.unwrap();
        TestDb {
            url,
            store,
            _sqlite_dir: Some(dir),
            postgres: None,
        }
    }

    /// `None` (after saying so) when PostgreSQL is not configured and not required.
    pub async fn postgres() -> Option<TestDb> {
        #[allow(clippy::disallowed_methods)]
        let admin_url = std::env::var("SHADOWAI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        #[allow(clippy::disallowed_methods)]
        let required = std::env::var("SHADOWAI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Some(admin_url) = admin_url else {
            assert!(
                !required,
                "SHADOWAI_REQUIRE_POSTGRES=1 but SHADOWAI_TEST_POSTGRES_URL is not set"
            );
            println!("skipping postgres: SHADOWAI_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("shadowai_t_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let database = PostgresDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = database_url(&admin_url, &name);
        let store = Store::connect(&url).await.unwrap();
        Some(TestDb {
            url,
            store,
            _sqlite_dir: None,
            postgres: Some(database),
        })
    }

    pub async fn finish(self) {
        self.store.close().await;
        drop(self.postgres);
    }
}

fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Instantiates each listed async test for SQLite and for PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::harness::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::harness::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// A value bound to an independent query.
#[derive(Debug, Clone)]
pub enum Bind {
    I(i64),
    S(String),
}

/// Runs `sql` (one BIGINT result, `$n` placeholders) on its own connection, outside the store.
pub async fn scalar(url: &str, sql: &str, binds: &[Bind]) -> i64 {
    macro_rules! run {
        ($conn:expr) => {{
            let mut query = sqlx::query_scalar::<_, i64>(sql);
            for bind in binds {
                query = match bind {
                    Bind::I(v) => query.bind(*v),
                    Bind::S(v) => query.bind(v.clone()),
                };
            }
            let value = query
                .fetch_one(&mut $conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            value
        }};
    }
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        let value = run!(conn);
        conn.close().await.unwrap();
        value
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let value = run!(conn);
        conn.close().await.unwrap();
        value
    }
}

/// Runs a statement (tests change alert statuses the way triage will).
pub async fn execute(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// Enrolls an agent in `group` at `enrolled_at_ms`.
pub async fn enroll(store: &Store, hostname: &str, group: &str, enrolled_at_ms: i64) -> Uuid {
    let token_id = format!("t-{}", Uuid::now_v7().simple());
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: token_id.clone(),
            secret_sha256: "s".repeat(64),
            group: group.to_owned(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: enrolled_at_ms - 1,
            created_by: "test".to_owned(),
        })
        .await
        .unwrap();
    let agent_id = Uuid::now_v7();
    store
        .enroll_agent(&EnrollAgent {
            token_id,
            secret_sha256: "s".repeat(64),
            agent_id,
            cert_fingerprint: format!("fp-{}", agent_id.simple()),
            cert_expires_at_ms: enrolled_at_ms + 365 * DAY,
            hostname: hostname.to_owned(),
            os: "linux".to_owned(),
            os_version: "6.1".to_owned(),
            arch: "x86_64".to_owned(),
            agent_version: "0.1.0".to_owned(),
            remote_addr: "192.0.2.1".to_owned(),
            now_ms: enrolled_at_ms,
        })
        .await
        .unwrap();
    agent_id
}

/// An observation of `product` (vendor and category derived) at `at_ms`.
pub fn observation(product: &str, category: &str, at_ms: i64) -> NewObservation {
    NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: at_ms,
        signal: Signal::Dns,
        name: format!("{}.example", product.replace('.', "-")),
        product: product.to_owned(),
        vendor: product.split('.').next().unwrap_or("").to_owned(),
        category: category.to_owned(),
        rule: format!("data/test.toml#{product}/domain[0]"),
        reason: "test".to_owned(),
        risk: Vec::new(),
        confidence: "high".to_owned(),
        plan: None,
        tenant: None,
        catalog_version: "2026.11.21-1".to_owned(),
        count: 1,
        process: None,
        details: json!({ "qtype": 1, "answers": [], "resolver": "", "tcp": false }),
        evidence: vec![1, 2, 3],
    }
}

/// The same, attributed to a process of `user`.
pub fn by_user(mut observation: NewObservation, user: &str) -> NewObservation {
    observation.process = Some(ObservedProcess {
        pid: 4242,
        parent_pid: 1,
        name: "agent".to_owned(),
        exe: "/usr/bin/agent".to_owned(),
        cmdline: "agent --run".to_owned(),
        user: user.to_owned(),
    });
    observation
}

/// Host names of the seeded fleet, the hostile one included.
pub const HOSTS: [&str; 6] = [
    "eng-laptop-1",
    "eng-laptop-2",
    "<script>alert(1)</script>",
    "eng-laptop-4",
    "sales-laptop-1",
    "sales-laptop-2",
];
/// User names of the seeded fleet.
pub const USERS: [&str; 3] = ["alice", "bob\"'<b>", "=cmd|' /C calc'!A0"];

/// Seeds a fleet whose figures are known; returns the agent ids (by `HOSTS` index).
/// Period of interest: [NOW - 30 d, NOW); previous period: [NOW - 60 d, NOW - 30 d).
pub async fn seed_fleet(store: &Store) -> Vec<Uuid> {
    let enrolled = NOW - 90 * DAY;
    let mut agents = Vec::new();
    for (index, host) in HOSTS.iter().enumerate() {
        let group = if index < 4 { "eng" } else { "sales" };
        agents.push(enroll(store, host, group, enrolled).await);
    }
    // A revoked host is not in the fleet.
    let revoked = enroll(store, "revoked-laptop", "eng", enrolled).await;
    store
        .revoke_agent(revoked, "test", NOW - 40 * DAY)
        .await
        .unwrap();
    let day = |d: i64| NOW - d * DAY;
    let batches: Vec<(usize, Vec<NewObservation>, i64)> = vec![
        // previous period: chatgpt on host 0 (alice)
        (
            0,
            vec![by_user(
                observation("openai.chatgpt", "chat", day(45)),
                USERS[0],
            )],
            day(45),
        ),
        // this period
        (
            0,
            vec![
                by_user(observation("openai.chatgpt", "chat", day(20)), USERS[0]),
                observation("openai.chatgpt", "chat", day(3)),
                {
                    let mut o = by_user(
                        observation("anthropic.claude-code", "coding_agent", day(10)),
                        USERS[0],
                    );
                    o.signal = Signal::Process;
                    o.risk = vec!["approval_bypass".to_owned()];
                    o
                },
                {
                    let mut o = by_user(
                        observation("anthropic.claude-code", "coding_agent", day(9)),
                        USERS[0],
                    );
                    o.signal = Signal::Process;
                    o.name = "kubectl".to_owned();
                    o.risk = vec!["agent_infra_cli".to_owned()];
                    o
                },
            ],
            day(3),
        ),
        (
            1,
            vec![
                by_user(observation("openai.chatgpt", "chat", day(25)), USERS[1]),
                {
                    let mut o = observation("ollama.ollama", "local_model_runtime", day(8));
                    o.signal = Signal::Listener;
                    o.name = "0.0.0.0:11434".to_owned();
                    o.details = json!({ "address": "0.0.0.0", "port": 11434, "protocol": "tcp", "exposed": true });
                    o
                },
            ],
            day(8),
        ),
        (
            2,
            vec![
                {
                    let mut o = observation("openai.chatgpt", "chat", day(15));
                    o.plan = Some("personal".to_owned());
                    o
                },
                {
                    let mut o = by_user(
                        observation("cursor.cursor", "coding_agent", day(14)),
                        USERS[2],
                    );
                    o.signal = Signal::Config;
                    o.name = "/home/user/.cursor/mcp.json".to_owned();
                    o.details = json!({
                        "path": "/home/user/.cursor/mcp.json", "setting": "", "value": "",
                        "mcp_server": "remote-search", "mcp_target": "https://mcp.example.com/sse",
                        "mcp_transport": "sse",
                    });
                    o
                },
            ],
            day(14),
        ),
        (
            4,
            vec![
                by_user(observation("openai.chatgpt", "chat", day(1)), USERS[1]),
                observation("google.gemini", "chat", day(29)),
            ],
            day(1),
        ),
    ];
    for (index, batch, now) in batches {
        store
            .insert_observations(agents[index], &batch, now)
            .await
            .unwrap();
    }
    // Host 3 reports nothing AI-related but is alive; host 5 is silent since enrollment.
    store
        .record_heartbeat(
            agents[3],
            &Heartbeat {
                hostname: HOSTS[3].to_owned(),
                os: "linux".to_owned(),
                os_version: "6.1".to_owned(),
                arch: "x86_64".to_owned(),
                agent_version: "0.1.0".to_owned(),
                catalog_version: "2026.11.21-1".to_owned(),
                health: json!({ "blind_spots": [{ "kind": "doh", "detail": "DoH to 1.1.1.1" }] }),
            },
            NOW - DAY / 2,
        )
        .await
        .unwrap();
    agents
}
