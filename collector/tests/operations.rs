//! What an operator relies on, on every backend: a database left by the previous release (migrated
//! only to 0003, with data written in that schema) is upgraded by the next start and every record
//! stays readable and writable; the SQLite online backup is a consistent, openable copy; the fleet
//! counts behind `/metrics` match the database.
//!
//! PostgreSQL runs when `SHADOWAI_TEST_POSTGRES_URL` names an admin connection (a database per test,
//! dropped afterwards); `SHADOWAI_REQUIRE_POSTGRES=1` turns a missing URL into a failure.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::json;
use shadowai_collector::store::{
    AlertQuery, BackupError, Heartbeat, ObservationQuery, Signal, Store,
};
use sqlx::Connection;
use uuid::Uuid;

const NOW: i64 = 1_750_000_000_000;
/// The last migration of the previous release (0.1.0).
const PREVIOUS_RELEASE_LAST_MIGRATION: &str = "0003";

// ------------------------------------------------------------------------------------- harness

struct PostgresDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    async fn create() -> Option<PostgresDatabase> {
        #[allow(clippy::disallowed_methods)] // the test harness is this suite's entry point
        let admin_url = std::env::var("SHADOWAI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let Some(admin_url) = admin_url else {
            #[allow(clippy::disallowed_methods)]
            let required = std::env::var("SHADOWAI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(!required, "SHADOWAI_REQUIRE_POSTGRES=1 but no URL");
            eprintln!("skipped: SHADOWAI_TEST_POSTGRES_URL is not set");
            return None;
        };
        // our own name, never from outside
        let name = format!("shadowai_ops_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&admin_url, &name);
        Some(PostgresDatabase {
            admin_url,
            name,
            url,
        })
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::raw_sql(&statement).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let start = base.find("://").map_or(0, |at| at + 3);
    let path = base[start..].find('/').map_or(base.len(), |at| start + at);
    let mut result = format!("{}/{database}", &base[..path]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

/// A migrator of the previous release: this tree's migrations up to and including 0003, copied
/// (byte for byte, so their checksums are what the previous release recorded) into `dir`.
async fn previous_release_migrator(flavour: &str, dir: &Path) -> sqlx::migrate::Migrator {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(flavour);
    let mut copied = 0;
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() <= PREVIOUS_RELEASE_LAST_MIGRATION
            || name.starts_with(PREVIOUS_RELEASE_LAST_MIGRATION)
        {
            std::fs::copy(&path, dir.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert_eq!(copied, 3, "the previous release had migrations 0001..0003");
    sqlx::migrate::Migrator::new(dir.to_path_buf())
        .await
        .unwrap()
}

// ------------------------------------------------------------------ data in the 0.1.0 schema

const AGENT: &str = "01970000-0000-7000-8000-000000000001";
const OBSERVATION_1: &str = "01970000-0000-7000-8000-0000000000a1";
const OBSERVATION_2: &str = "01970000-0000-7000-8000-0000000000a2";
const ALERT: &str = "01970000-0000-7000-8000-0000000000b1";
const FINGERPRINT: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

/// Writes what release 0.1.0 would have stored, with the statements of that schema, into `$pool`
/// (a SQLite or PostgreSQL pool: the same text runs on both). Every value is bound.
macro_rules! write_previous_release_data {
    ($pool:expr) => {{
    let pool = $pool;
    let connection = pool;
    let text = |s: &str| s.to_owned();
    sqlx::query(
        "INSERT INTO enrollment_tokens (id, secret_sha256, group_name, expires_at_ms, max_uses, uses, \
         created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(text("tok1"))
    .bind(text(&"0".repeat(64)))
    .bind(text("engineering"))
    .bind(NOW + 86_400_000)
    .bind(10_i64)
    .bind(1_i64)
    .bind(NOW - 3_600_000)
    .bind(text("cli"))
    .execute(connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO agents (id, group_name, hostname, os, os_version, arch, agent_version, \
         catalog_version, enrolled_at_ms, enrolled_from, enrollment_token_id, last_contact_ms, health) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(text(AGENT))
    .bind(text("engineering"))
    .bind(text("laptop-42"))
    .bind(text("linux"))
    .bind(text("Debian 12"))
    .bind(text("x86_64"))
    .bind(text("0.1.0"))
    .bind(text("2025.06.1"))
    .bind(NOW - 3_600_000)
    .bind(text("10.0.0.42"))
    .bind(text("tok1"))
    .bind(NOW - 60_000)
    .bind(text(r#"{"blind_spots":[{"detail":"no root","kind":"process_partial","since_ms":1}],"sensors":[]}"#))
    .execute(connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO agent_certificates (fingerprint, agent_id, expires_at_ms, created_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(text(FINGERPRINT))
    .bind(text(AGENT))
    .bind(NOW + 30 * 86_400_000)
    .bind(NOW - 3_600_000)
    .execute(connection)
    .await
    .unwrap();
    for (id, product, tenant, at) in [
        (OBSERVATION_1, "ollama.ollama", None, NOW - 120_000),
        (
            OBSERVATION_2,
            "microsoft.azure_openai",
            Some(text("contoso")),
            NOW - 60_000,
        ),
    ] {
        sqlx::query(
            "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
             product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
             process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
             details, evidence, tenant) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22, $23, $24, $25)",
        )
        .bind(text(id))
        .bind(text(AGENT))
        .bind(at)
        .bind(at + 1_000)
        .bind(text("process"))
        .bind(text("ollama"))
        .bind(text(product))
        .bind(text("Vendor"))
        .bind(text("local_model_runtime"))
        .bind(format!("data/x.toml#{product}/process/cli"))
        .bind(text("process name is ollama"))
        .bind(text(r#"["auto_approve"]"#))
        .bind(text("high"))
        .bind(None::<String>)
        .bind(text("2025.06.1"))
        .bind(3_i64)
        .bind(4242_i64)
        .bind(1_i64)
        .bind(text("ollama"))
        .bind(text("/usr/local/bin/ollama"))
        .bind(text("ollama serve"))
        .bind(text("alice"))
        .bind(text(r#"{"event":"started"}"#))
        .bind(vec![0x0a_u8, 0x24, 0x00, 0xff])
        .bind(tenant)
        .execute(connection)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO alerts (id, agent_id, product, reason, severity, status, title, vendor, category, \
         rule, user_name, process_pid, process_name, process_exe, process_cmdline, first_seen_ms, \
         last_seen_ms, count, first_observation_id, last_observation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
    )
    .bind(text(ALERT))
    .bind(text(AGENT))
    .bind(text("ollama.ollama"))
    .bind(text("new_product"))
    .bind(text("high"))
    .bind(text("open"))
    .bind(text("New AI product on host: Ollama"))
    .bind(text("Ollama"))
    .bind(text("local_model_runtime"))
    .bind(text("data/ollama.toml#ollama.ollama/process/cli"))
    .bind(text("alice"))
    .bind(4242_i64)
    .bind(text("ollama"))
    .bind(text("/usr/local/bin/ollama"))
    .bind(text("ollama serve"))
    .bind(NOW - 120_000)
    .bind(NOW - 60_000)
    .bind(2_i64)
    .bind(text(OBSERVATION_1))
    .bind(text(OBSERVATION_1))
    .execute(connection)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO users (id, name, role, password_hash, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(text("01970000-0000-7000-8000-0000000000c1"))
    .bind(text("alice"))
    .bind(text("admin"))
    .bind(text("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo"))
    .bind(NOW - 3_600_000)
    .execute(connection)
    .await
    .unwrap();
    }};
}

/// Everything written by [`write_previous_release_data`] reads back through this version's store,
/// and the upgraded database takes new writes.
async fn check_upgraded(store: &Store) {
    let agent_id = Uuid::parse_str(AGENT).unwrap();
    let agent = store
        .agent_by_certificate(FINGERPRINT)
        .await
        .unwrap()
        .expect("the agent's certificate still identifies it");
    assert_eq!(agent.agent_id, agent_id);
    assert_eq!(agent.hostname, "laptop-42");
    assert!(!agent.revoked);

    let observations = store
        .list_observations(&ObservationQuery {
            limit: 100,
            after: None,
            agent_id: None,
            product: None,
        })
        .await
        .unwrap()
        .items;
    assert_eq!(observations.len(), 2);
    let azure = observations
        .iter()
        .find(|o| o.id.to_string() == OBSERVATION_2)
        .unwrap();
    assert_eq!(azure.tenant.as_deref(), Some("contoso"));
    assert_eq!(azure.signal, Signal::Process);
    assert_eq!(azure.risk, vec!["auto_approve".to_owned()]);
    assert_eq!(azure.details, json!({"event": "started"}));
    assert_eq!(azure.process.as_ref().unwrap().user, "alice");
    assert_eq!(
        store
            .observation_evidence(Uuid::parse_str(OBSERVATION_1).unwrap())
            .await
            .unwrap(),
        Some(vec![0x0a, 0x24, 0x00, 0xff]),
        "evidence bytes survive the upgrade"
    );

    let alerts = store
        .list_alerts(&AlertQuery {
            limit: 100,
            after: None,
            status: None,
            product: None,
        })
        .await
        .unwrap()
        .items;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].id.to_string(), ALERT);
    assert_eq!(alerts[0].severity, "high");
    assert_eq!(alerts[0].hostname, "laptop-42");
    assert!(store.user_by_name("alice").await.unwrap().is_some());

    // the fleet gauges read the old rows: the agent reported a blind spot in its last heartbeat
    let fleet = store.fleet_counts(NOW, 180_000).await.unwrap();
    assert_eq!(
        (
            fleet.agents_online,
            fleet.agents_silent,
            fleet.agents_blinded
        ),
        (1, 0, 1)
    );
    assert_eq!(
        fleet.alerts,
        vec![("high".to_owned(), "open".to_owned(), 1)]
    );
    let fleet = store.fleet_counts(NOW + 600_000, 180_000).await.unwrap();
    assert_eq!((fleet.agents_online, fleet.agents_silent), (0, 1));

    // the upgraded database takes this version's writes
    store
        .record_heartbeat(
            agent_id,
            &Heartbeat {
                hostname: "laptop-42".into(),
                os: "linux".into(),
                os_version: "Debian 12".into(),
                arch: "x86_64".into(),
                agent_version: "0.2.0".into(),
                catalog_version: "2025.07.1".into(),
                health: json!({"blind_spots": [], "sensors": []}),
            },
            NOW,
        )
        .await
        .unwrap();
    let fleet = store.fleet_counts(NOW, 180_000).await.unwrap();
    assert_eq!(
        (
            fleet.agents_online,
            fleet.agents_silent,
            fleet.agents_blinded
        ),
        (1, 0, 0)
    );
}

async fn upgrade_from_previous_release(url: &str, flavour: &str) {
    let dir = tempfile::tempdir().unwrap();
    let migrator = previous_release_migrator(flavour, dir.path()).await;
    if flavour == "sqlite" {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_previous_release_data!(&pool);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        migrator.run(&pool).await.unwrap();
        write_previous_release_data!(&pool);
        pool.close().await;
    }
    // The next release starts: it migrates forward on connect.
    let store = Store::connect(url).await.expect("upgrade on start");
    check_upgraded(&store).await;
    store.close().await;
    // A second start finds nothing to do and the data is still there.
    let store = Store::connect(url).await.expect("second start");
    assert_eq!(store.count_observations().await.unwrap(), 2);
    store.close().await;
}

// ----------------------------------------------------------------------------------- the tests

#[tokio::test]
async fn sqlite_database_of_the_previous_release_is_upgraded_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    upgrade_from_previous_release(&url, "sqlite").await;
}

#[tokio::test]
async fn postgres_database_of_the_previous_release_is_upgraded_on_start() {
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    upgrade_from_previous_release(&database.url, "postgres").await;
}

#[tokio::test]
async fn sqlite_online_backup_is_a_consistent_copy_that_opens() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("live.db").display());
    // data as the previous test writes it, through the same path (migrations, then rows)
    upgrade_from_previous_release(&url, "sqlite").await;
    let store = Store::connect(&url).await.unwrap();
    let backup = dir.path().join("backup.db");
    // Writes keep going while the backup runs; the copy is one consistent snapshot.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                store.ping().await.unwrap();
                let _ = store.fleet_counts(NOW + i, 180_000).await.unwrap();
            }
        })
    };
    store.backup_sqlite(&backup).await.unwrap();
    writer.await.unwrap();
    assert!(matches!(
        store.backup_sqlite(&backup).await,
        Err(BackupError::Exists(_))
    ));
    store.close().await;
    let restored = Store::connect(&format!("sqlite://{}", backup.display()))
        .await
        .expect("the backup opens as a database");
    assert_eq!(restored.count_observations().await.unwrap(), 2);
    assert!(
        restored
            .agent_by_certificate(FINGERPRINT)
            .await
            .unwrap()
            .is_some()
    );
    restored.close().await;
}

#[tokio::test]
async fn backup_refuses_postgres_and_names_pg_dump() {
    let Some(database) = PostgresDatabase::create().await else {
        return;
    };
    let store = Store::connect(&database.url).await.unwrap();
    let error = store
        .backup_sqlite(Path::new("/tmp/never-written.db"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("pg_dump"), "{error}");
    store.close().await;
}

#[tokio::test]
async fn backup_file_name_is_data_not_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    let hostile = dir.path().join("x'; DROP TABLE agents; --.db");
    store.backup_sqlite(&hostile).await.unwrap();
    assert!(hostile.is_file());
    store.ping().await.unwrap();
    assert!(store.list_agents().await.unwrap().is_empty());
    store.close().await;
}
