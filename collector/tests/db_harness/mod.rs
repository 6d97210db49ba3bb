//! The per-test database of the store suites (`store.rs`, `chain.rs`): a fresh SQLite file, or a
//! fresh PostgreSQL database under `SHADOWAI_TEST_POSTGRES_URL` (dropped afterwards), and
//! `backend_tests!`, which instantiates each listed test for both backends. Include it with
//! `#[macro_use] mod db_harness; use db_harness::*;`.

#![allow(dead_code)]

use std::future::Future;

use shadowai_collector::store::Store;
use sqlx::Connection;
use uuid::Uuid;

/// A database for one test; a PostgreSQL database is dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    _sqlite_dir: Option<tempfile::TempDir>,
    pub postgres: Option<PostgresDatabase>,
}

pub struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Drop runs while a failed test unwinds, possibly on a runtime thread: use a thread of our
        // own with its own runtime. FORCE ends the test's pooled connections.
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
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let store = Store::connect(&url).await.expect("sqlite store");
        assert_eq!(store.backend_name(), "sqlite");
        TestDb {
            url,
            store,
            _sqlite_dir: Some(dir),
            postgres: None,
        }
    }

    /// `None` (after saying so) when PostgreSQL is not configured and not required.
    pub async fn postgres() -> Option<TestDb> {
        #[allow(clippy::disallowed_methods)] // the test harness is this suite's entry point
        let admin_url = std::env::var("SHADOWAI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        #[allow(clippy::disallowed_methods)]
        let required = std::env::var("SHADOWAI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Some(admin_url) = admin_url else {
            assert!(
                !required,
                "SHADOWAI_REQUIRE_POSTGRES=1 but SHADOWAI_TEST_POSTGRES_URL is not set: \
                 set it to an admin URL such as postgres://postgres@127.0.0.1:5432/postgres"
            );
            println!("skipping postgres: SHADOWAI_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("shadowai_t_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to SHADOWAI_TEST_POSTGRES_URL: {e}"));
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.expect("close admin connection");
        let database = PostgresDatabase {
            admin_url: admin_url.clone(),
            name: name.clone(),
        };
        let url = database_url(&admin_url, &name);
        let store = Store::connect(&url).await.expect("postgres store");
        assert_eq!(store.backend_name(), "postgres");
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

/// `admin_url` with its database replaced by `name` (query parameters kept).
pub fn database_url(admin_url: &str, name: &str) -> String {
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

/// Runs one test body against a backend's fresh database.
pub async fn run<F, Fut>(db: TestDb, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestDb>,
{
    test(db).await.finish().await;
}

/// Instantiates each listed test for SQLite and for PostgreSQL.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::TestDb::sqlite().await, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::run(db, super::$name).await;
                }
            )*
        }
    };
}
