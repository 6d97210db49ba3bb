//! Observation rows written with multi-row INSERT statements: one statement per
//! [`ROWS_PER_STATEMENT`] observations instead of one per observation.
//!
//! [`InsertObservationRows::insert_observation_rows`] works inside any transaction of either
//! backend (`tx.insert_observation_rows(..)`) and returns the ids it stored; ids already
//! present (by this agent or another) are skipped (`ON CONFLICT (id) DO NOTHING`) and not returned,
//! exactly as the per-row insert does. The statement text is made of placeholders only: every value
//! is bound, nothing from the batch reaches the SQL text.

use uuid::Uuid;

use super::{Backend, NewObservation, Store, StoreError, rows};

/// Observations per INSERT statement: 25 parameters each, 12 500 per statement, under SQLite's
/// 32 766 and PostgreSQL's 65 535 bound-parameter limits.
pub const ROWS_PER_STATEMENT: usize = 500;
const _: () = assert!(ROWS_PER_STATEMENT * 25 <= 32_766);

const INSERT_PREFIX: &str = "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
     product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
     process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
     details, evidence, tenant) ";

/// Multi-row observation inserts on a connection (or a transaction, through `&mut *tx`).
pub trait InsertObservationRows {
    /// Inserts the observation rows of `batch` for `agent_id` (text UUID) received at `now_ms`,
    /// skipping ids already stored; returns the ids this call stored.
    fn insert_observation_rows(
        &mut self,
        agent_id: &str,
        batch: &[NewObservation],
        now_ms: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Uuid>, StoreError>> + Send;
}

macro_rules! insert_observation_rows_for {
    ($connection:ty, $database:ty) => {
        impl InsertObservationRows for $connection {
            async fn insert_observation_rows(
                &mut self,
                agent_id: &str,
                batch: &[NewObservation],
                now_ms: i64,
            ) -> Result<Vec<Uuid>, StoreError> {
                let mut stored = Vec::with_capacity(batch.len());
                for chunk in batch.chunks(ROWS_PER_STATEMENT) {
                    let mut builder = sqlx::QueryBuilder::<$database>::new(INSERT_PREFIX);
                    builder.push_values(chunk, |mut row, observation| {
                        let process = observation.process.as_ref();
                        row.push_bind(observation.id.to_string())
                            .push_bind(agent_id.to_owned())
                            .push_bind(observation.observed_at_ms)
                            .push_bind(now_ms)
                            .push_bind(observation.signal.as_str())
                            .push_bind(observation.name.as_str())
                            .push_bind(observation.product.as_str())
                            .push_bind(observation.vendor.as_str())
                            .push_bind(observation.category.as_str())
                            .push_bind(observation.rule.as_str())
                            .push_bind(observation.reason.as_str())
                            .push_bind(rows::json_list(&observation.risk))
                            .push_bind(observation.confidence.as_str())
                            .push_bind(observation.plan.as_deref())
                            .push_bind(observation.catalog_version.as_str())
                            .push_bind(i64::from(observation.count))
                            .push_bind(process.map(|p| i64::from(p.pid)))
                            .push_bind(process.map(|p| i64::from(p.parent_pid)))
                            .push_bind(process.map(|p| p.name.as_str()))
                            .push_bind(process.map(|p| p.exe.as_str()))
                            .push_bind(process.map(|p| p.cmdline.as_str()))
                            .push_bind(process.map(|p| p.user.as_str()))
                            .push_bind(observation.details.to_string())
                            .push_bind(observation.evidence.as_slice())
                            .push_bind(observation.tenant.as_deref());
                    });
                    // no conflict target: the same text works when observations is partitioned by time
                    // and its primary key becomes (id, observed_at_ms) (docs/SCALING.md)
                    builder.push(" ON CONFLICT DO NOTHING RETURNING id");
                    let ids: Vec<String> =
                        builder.build_query_scalar().fetch_all(&mut *self).await?;
                    for id in ids {
                        stored.push(rows::uuid(&id)?);
                    }
                }
                Ok(stored)
            }
        }
    };
}

insert_observation_rows_for!(sqlx::SqliteConnection, sqlx::Sqlite);
insert_observation_rows_for!(sqlx::PgConnection, sqlx::Postgres);

impl Store {
    /// Stores only the observation rows of a batch, in one transaction with multi-row statements:
    /// no last-contact update, no findings, no alerts. What `loadgen --raw-rows` measures as the
    /// database's raw insert rate. Returns how many rows were new.
    pub async fn insert_observation_rows_only(
        &self,
        agent_id: Uuid,
        batch: &[NewObservation],
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let agent = agent_id.to_string();
        let stored = on_write_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let stored = tx.insert_observation_rows(&agent, batch, now_ms).await?;
            tx.commit().await?;
            stored
        });
        Ok(stored.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{
        EnrollAgent, NewEnrollmentToken, ObservationQuery, ObservedProcess, Signal,
    };

    const NOW: i64 = 1_750_000_000_000;

    async fn agent(store: &Store) -> Uuid {
        let token = format!("t{}", Uuid::now_v7().simple());
        store
            .create_enrollment_token(&NewEnrollmentToken {
                token_id: token.clone(),
                secret_sha256: "s".into(),
                group: "g".into(),
                expires_at_ms: None,
                max_uses: None,
                created_at_ms: NOW,
                created_by: "test".into(),
            })
            .await
            .unwrap();
        let agent_id = Uuid::now_v7();
        store
            .enroll_agent(&EnrollAgent {
                token_id: token,
                secret_sha256: "s".into(),
                agent_id,
                cert_fingerprint: Uuid::now_v7().to_string(),
                cert_expires_at_ms: NOW + 1,
                hostname: "h".into(),
                os: "linux".into(),
                os_version: "1".into(),
                arch: "x86_64".into(),
                agent_version: "1".into(),
                remote_addr: String::new(),
                now_ms: NOW,
            })
            .await
            .unwrap();
        agent_id
    }

    fn observation(n: usize) -> NewObservation {
        NewObservation {
            id: Uuid::now_v7(),
            observed_at_ms: NOW - n as i64,
            signal: Signal::Process,
            name: format!("tool-{n}"),
            product: "ollama.ollama".into(),
            vendor: "Ollama".into(),
            category: "local_model_runtime".into(),
            rule: "data/ollama.toml#ollama.ollama/process/server".into(),
            reason: "'; DROP TABLE observations;-- <b>".into(),
            risk: vec!["no_approval".into()],
            confidence: "high".into(),
            plan: n.is_multiple_of(2).then(|| "pro".into()),
            tenant: n.is_multiple_of(3).then(|| "tenant-ü".into()),
            catalog_version: "1".into(),
            count: 1,
            process: (n % 2 == 1).then(|| ObservedProcess {
                pid: n as u32,
                parent_pid: 1,
                name: "ollama".into(),
                exe: "/bin/ollama".into(),
                cmdline: "ollama serve \u{1b}[2J".into(),
                user: "alice".into(),
            }),
            details: serde_json::json!({ "n": n }),
            evidence: vec![0, 1, 2, n as u8],
        }
    }

    /// More than one statement's worth, a redelivery, an overlap, and an id of another agent:
    /// each id stored once, with its values byte for byte.
    async fn check(store: Store) {
        let (mine, other) = (agent(&store).await, agent(&store).await);
        let batch: Vec<_> = (0..ROWS_PER_STATEMENT + 7).map(observation).collect();
        let stored = store
            .insert_observation_rows_only(mine, &batch, NOW)
            .await
            .unwrap();
        assert_eq!(stored, batch.len());
        assert_eq!(
            store
                .insert_observation_rows_only(mine, &batch, NOW)
                .await
                .unwrap(),
            0,
            "a redelivered batch stores nothing"
        );
        let mut overlap = vec![observation(9_999)];
        overlap.extend_from_slice(&batch[..3]);
        assert_eq!(
            store
                .insert_observation_rows_only(other, &overlap, NOW)
                .await
                .unwrap(),
            1,
            "ids already stored for another agent are skipped, not overwritten"
        );
        assert_eq!(
            store.count_observations().await.unwrap(),
            batch.len() as i64 + 1
        );
        let listed = store
            .list_observations(&ObservationQuery {
                limit: 1_000,
                after: None,
                agent_id: Some(mine),
                product: None,
            })
            .await
            .unwrap()
            .items;
        assert_eq!(listed.len(), batch.len());
        for original in &batch[..10] {
            let row = listed.iter().find(|o| o.id == original.id).unwrap();
            assert_eq!(row.agent_id, mine);
            assert_eq!(row.reason, original.reason);
            assert_eq!(row.tenant, original.tenant);
            assert_eq!(row.plan, original.plan);
            assert_eq!(
                row.process.as_ref().map(|p| p.cmdline.clone()),
                original.process.as_ref().map(|p| p.cmdline.clone())
            );
            assert_eq!(
                store.observation_evidence(original.id).await.unwrap(),
                Some(original.evidence.clone())
            );
        }
    }

    #[tokio::test]
    async fn multi_row_insert_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bulk.db").display());
        let store = Store::connect(&url).await.unwrap();
        check(store.clone()).await;
        store.close().await;
    }

    #[tokio::test]
    async fn multi_row_insert_on_postgres() {
        use sqlx::Connection as _;
        #[allow(clippy::disallowed_methods)] // a test entry point
        let Some(admin) = std::env::var("SHADOWAI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("skipping postgres: SHADOWAI_TEST_POSTGRES_URL not set");
            return;
        };
        let name = format!("shadowai_bulk_{}", Uuid::new_v4().simple());
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
        // our own name, never input: safe in the statement text
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut connection)
            .await
            .unwrap();
        let (base, _) = admin.split_once('?').unwrap_or((admin.as_str(), ""));
        let authority = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority..].find('/') {
            Some(slash) => &base[..authority + slash],
            None => base,
        };
        let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
        check(store.clone()).await;
        store.close().await;
        sqlx::raw_sql(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut connection)
            .await
            .unwrap();
    }
}
