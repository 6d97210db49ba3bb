//! The evidence chain and retention, run against every backend like the store suite: SQLite
//! always, PostgreSQL when `SHADOWAI_TEST_POSTGRES_URL` is set (required with
//! `SHADOWAI_REQUIRE_POSTGRES=1`). Tampering is done the way an intruder would: SQL straight into
//! the database, behind the store's back. The harness is shared with the store suite (`tests/db_harness`).

// A test crate: a failed unwrap is a failed test, like in `#[test]` functions.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowai_collector::store::chain::{self, ExpectedRoot};
use shadowai_collector::store::{
    AlertQuery, BrokenRecord, EnrollAgent, NewEnrollmentToken, NewObservation, ObservedProcess,
    RetentionPolicy, Signal, Store, StoreError, VerifyReport,
};
use sqlx::Connection;
use uuid::Uuid;

const NOW: i64 = 1_750_000_000_000;
const HOUR: i64 = 3_600_000;

// ------------------------------------------------------------------------------------- harness

#[macro_use]
mod db_harness;
use db_harness::*;

backend_tests!(
    an_untouched_chain_verifies_and_roots_pin_its_heads,
    an_edited_observation_is_named,
    a_deleted_observation_is_named,
    a_deleted_link_is_named,
    reordered_rows_are_named,
    a_truncated_tail_is_caught_by_the_root,
    deleted_or_edited_roots_are_named,
    an_observation_inserted_outside_the_product_is_named,
    observations_stored_before_the_chain_are_adopted,
    retention_expires_old_observations_and_verify_still_passes,
    a_deletion_dressed_as_an_expiry_is_named,
    control_records_are_chained_and_checked,
    concurrent_writers_keep_every_chain_intact,
    the_verify_command_prints_the_head_and_names_the_first_break,
    the_serve_jobs_commit_roots_and_expire_observations,
);

// ------------------------------------------------------------------------------------- helpers

const DAY: i64 = 24 * HOUR;

fn token(id: &str) -> NewEnrollmentToken {
    NewEnrollmentToken {
        token_id: id.to_owned(),
        secret_sha256: "s3cr3t".to_owned(),
        group: "laptops".to_owned(),
        expires_at_ms: None,
        max_uses: None,
        created_at_ms: NOW - 200 * DAY,
        created_by: "test".to_owned(),
    }
}

/// Enrolls an agent through a fresh token; returns its id.
async fn enrolled_agent(store: &Store, hostname: &str) -> Uuid {
    let token_id = format!("t-{}", Uuid::now_v7().simple());
    store
        .create_enrollment_token(&token(&token_id))
        .await
        .unwrap();
    let agent_id = Uuid::now_v7();
    store
        .enroll_agent(&EnrollAgent {
            token_id,
            secret_sha256: "s3cr3t".to_owned(),
            agent_id,
            cert_fingerprint: format!("fp-{}", agent_id.simple()),
            cert_expires_at_ms: NOW + 30 * DAY,
            hostname: hostname.to_owned(),
            os: "linux".to_owned(),
            os_version: "6.1".to_owned(),
            arch: "x86_64".to_owned(),
            agent_version: "0.1.0".to_owned(),
            remote_addr: "192.0.2.7".to_owned(),
            now_ms: NOW - 200 * DAY,
        })
        .await
        .unwrap();
    agent_id
}

fn observation(product: &str, observed_at_ms: i64) -> NewObservation {
    NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms,
        signal: Signal::Process,
        name: "ollama".to_owned(),
        product: product.to_owned(),
        vendor: "Ollama".to_owned(),
        category: "local_model_runtime".to_owned(),
        rule: format!("data/ollama.toml#{product}/process[0]"),
        reason: "process name is ollama and arguments contain serve".to_owned(),
        risk: vec!["network_exposed".to_owned()],
        confidence: "high".to_owned(),
        plan: None,
        tenant: Some("contoso".to_owned()),
        catalog_version: "2025.06.1".to_owned(),
        count: 1,
        process: Some(ObservedProcess {
            pid: 4242,
            parent_pid: 1,
            name: "ollama".to_owned(),
            exe: "/usr/local/bin/ollama".to_owned(),
            cmdline: "ollama serve".to_owned(),
            user: "alice".to_owned(),
        }),
        details: json!({"event": "started", "text": "\u{0}'; DROP TABLE observations; --"}),
        evidence: vec![0x0a, 0x24, 0x00, 0xff],
    }
}

/// Stores `n` observations for `agent` in one batch received at `received_at_ms`; returns their
/// ids in chain order (id order).
async fn store_batch(store: &Store, agent: Uuid, n: usize, received_at_ms: i64) -> Vec<String> {
    let batch: Vec<_> = (0..n)
        .map(|i| observation("ollama.ollama", received_at_ms - 1_000 + i as i64))
        .collect();
    let outcome = store
        .insert_observations(agent, &batch, received_at_ms)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, n);
    let mut ids: Vec<String> = batch.iter().map(|o| o.id.to_string()).collect();
    ids.sort();
    ids
}

async fn verified(store: &Store) -> VerifyReport {
    store.verify(None).await.unwrap()
}

/// Verifies and expects an intact chain.
async fn intact(store: &Store) -> VerifyReport {
    let report = verified(store).await;
    assert_eq!(report.broken, None, "{report:#?}");
    report
}

/// Verifies and expects a break.
async fn first_break(store: &Store) -> BrokenRecord {
    let report = verified(store).await;
    match report.broken {
        Some(broken) => broken,
        None => panic!("verify passed: {report:#?}"),
    }
}

fn is_postgres(db: &TestDb) -> bool {
    db.postgres.is_some()
}

/// Runs SQL straight on the database, behind the store's back.
async fn tamper(db: &TestDb, statements: &str) {
    if is_postgres(db) {
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(statements)
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    } else {
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(statements)
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
    }
}

/// A blob literal in the backend's syntax.
fn blob_literal(db: &TestDb, bytes: &[u8]) -> String {
    if is_postgres(db) {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    } else {
        format!("X'{}'", hex::encode(bytes))
    }
}

fn chain_of(agent: Uuid) -> String {
    format!("agent:{agent}")
}

/// Appends a control record in a transaction of its own, committed or rolled back.
async fn append_control(
    db: &TestDb,
    kind: &str,
    record_id: &str,
    canonical: &[u8],
    commit: bool,
) -> Result<chain::Link, StoreError> {
    macro_rules! append {
        ($pool:expr) => {{
            let pool = $pool;
            let mut tx = pool.begin().await.unwrap();
            let link = chain::append_control(&mut tx, kind, record_id, canonical, NOW).await;
            if commit && link.is_ok() {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            pool.close().await;
            link
        }};
    }
    if is_postgres(db) {
        append!(sqlx::PgPool::connect(&db.url).await.unwrap())
    } else {
        append!(sqlx::SqlitePool::connect(&db.url).await.unwrap())
    }
}

async fn alert_count(store: &Store) -> usize {
    let query = AlertQuery {
        limit: 1000,
        after: None,
        status: None,
        product: None,
    };
    store.list_alerts(&query).await.unwrap().items.len()
}

// --------------------------------------------------------------------------------------- tests

async fn an_untouched_chain_verifies_and_roots_pin_its_heads(db: TestDb) -> TestDb {
    let store = &db.store;
    let report = intact(store).await;
    assert_eq!((report.chains, report.roots, report.root), (0, 0, None));

    let a = enrolled_agent(store, "host-a").await;
    let b = enrolled_agent(store, "host-b").await;
    store_batch(store, a, 3, NOW).await;
    store_batch(store, b, 4, NOW).await;
    store_batch(store, a, 2, NOW + 1).await;
    // Redelivery and an empty batch link nothing new.
    let again = vec![observation("ollama.ollama", NOW)];
    store.insert_observations(a, &again, NOW + 2).await.unwrap();
    store.insert_observations(a, &again, NOW + 3).await.unwrap();
    store.insert_observations(b, &[], NOW + 3).await.unwrap();

    let report = intact(store).await;
    assert_eq!(report.chains, 2);
    assert_eq!(report.records.get("observation"), Some(&10));
    assert_eq!(store.count_observations().await.unwrap(), 10);

    let first = store.commit_root(NOW + 10, 1000).await.unwrap().unwrap();
    assert_eq!((first.seq, first.entries), (1, 2));
    assert_eq!(
        store.commit_root(NOW + 11, 1000).await.unwrap(),
        None,
        "nothing moved"
    );
    store_batch(store, a, 1, NOW + 20).await;
    let second = store.commit_root(NOW + 30, 1000).await.unwrap().unwrap();
    assert_eq!((second.seq, second.entries), (2, 1));

    let report = intact(store).await;
    assert_eq!(report.roots, 2);
    let root = report.root.unwrap();
    assert_eq!((root.seq, root.hash.clone()), (2, hex::encode(second.hash)));
    assert_eq!(root.committed_at_ms, NOW + 30);

    // A root recorded elsewhere is checked too.
    let expected: ExpectedRoot = format!("1:{}", hex::encode(first.hash)).parse().unwrap();
    assert_eq!(store.verify(Some(expected)).await.unwrap().broken, None);
    let wrong: ExpectedRoot = format!("1:{}", hex::encode([7u8; 32])).parse().unwrap();
    let report = store.verify(Some(wrong)).await.unwrap();
    let broken = report.broken.unwrap();
    assert_eq!((broken.table.as_str(), broken.seq), ("chain_roots", 1));
    let missing: ExpectedRoot = format!("9:{}", hex::encode(first.hash)).parse().unwrap();
    let broken = store.verify(Some(missing)).await.unwrap().broken.unwrap();
    assert!(broken.problem.contains("gone"), "{broken:?}");
    db
}

async fn an_edited_observation_is_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 5, NOW).await;
    intact(store).await;
    tamper(
        &db,
        &format!(
            "UPDATE observations SET name = 'innocent' WHERE id = '{}'",
            ids[2]
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (
            broken.table.as_str(),
            broken.id.as_str(),
            broken.chain.as_str(),
            broken.seq
        ),
        ("observations", ids[2].as_str(), chain_of(a).as_str(), 3)
    );
    assert!(broken.problem.contains("does not match"), "{broken:?}");

    // The evidence blob is covered as well.
    tamper(
        &db,
        &format!(
            "UPDATE observations SET name = 'ollama' WHERE id = '{}'; \
             UPDATE observations SET evidence = {} WHERE id = '{}'",
            ids[2],
            blob_literal(&db, b"forged"),
            ids[4]
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!((broken.id.as_str(), broken.seq), (ids[4].as_str(), 5));
    db
}

async fn a_deleted_observation_is_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 5, NOW).await;
    tamper(
        &db,
        &format!("DELETE FROM observations WHERE id = '{}'", ids[1]),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (
            broken.table.as_str(),
            broken.id.as_str(),
            broken.chain.as_str(),
            broken.seq
        ),
        ("observations", ids[1].as_str(), chain_of(a).as_str(), 2)
    );
    assert!(broken.problem.contains("missing"), "{broken:?}");
    db
}

async fn a_deleted_link_is_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 5, NOW).await;
    // The intruder removes the row and its link, so that no link points at a missing row.
    tamper(
        &db,
        &format!(
            "DELETE FROM observations WHERE id = '{}'; \
             DELETE FROM chain_links WHERE kind = 'observation' AND record_id = '{}'",
            ids[2], ids[2]
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.chain.as_str(), broken.seq),
        ("chain_links", chain_of(a).as_str(), 3)
    );
    assert_eq!(broken.id, format!("{}#3", chain_of(a)));
    assert!(broken.problem.contains("missing"), "{broken:?}");
    db
}

async fn reordered_rows_are_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 5, NOW).await;
    // Two observation rows trade places (their ids are swapped).
    let swap_rows = format!(
        "UPDATE observations SET id = 'swap' WHERE id = '{second}'; \
         UPDATE observations SET id = '{second}' WHERE id = '{third}'; \
         UPDATE observations SET id = '{third}' WHERE id = 'swap'",
        second = ids[1],
        third = ids[2]
    );
    tamper(&db, &swap_rows).await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.id.as_str(), broken.seq),
        ("observations", ids[1].as_str(), 2)
    );
    tamper(&db, &swap_rows).await;
    intact(store).await;

    // Two links trade places in the chain.
    let chain = chain_of(a);
    tamper(
        &db,
        &format!(
            "UPDATE chain_links SET seq = -1 WHERE chain = '{chain}' AND seq = 2; \
             UPDATE chain_links SET seq = 2 WHERE chain = '{chain}' AND seq = 3; \
             UPDATE chain_links SET seq = 3 WHERE chain = '{chain}' AND seq = -1"
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (
            broken.table.as_str(),
            broken.id.as_str(),
            broken.chain.as_str(),
            broken.seq
        ),
        ("observations", ids[2].as_str(), chain.as_str(), 2)
    );
    db
}

async fn a_truncated_tail_is_caught_by_the_root(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 5, NOW).await;
    store.commit_root(NOW + 1, 1000).await.unwrap().unwrap();
    // The newest record goes, with its link, and the head is rewound: the chain itself is
    // consistent again, only the root remembers.
    let chain = chain_of(a);
    tamper(
        &db,
        &format!(
            "DELETE FROM observations WHERE id = '{}'; \
             DELETE FROM chain_links WHERE chain = '{chain}' AND seq = 5; \
             UPDATE chain_heads SET seq = 4, \
             hash = (SELECT hash FROM chain_links WHERE chain = '{chain}' AND seq = 4) \
             WHERE chain = '{chain}'",
            ids[4]
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.chain.as_str(), broken.seq),
        ("chain_root_entries", chain.as_str(), 5)
    );
    assert!(
        broken.problem.contains("newest records deleted"),
        "{broken:?}"
    );

    // A whole chain deleted is named too.
    tamper(
        &db,
        &format!(
            "DELETE FROM observations; DELETE FROM chain_links WHERE chain = '{chain}'; \
             DELETE FROM chain_heads WHERE chain = '{chain}'"
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.chain.as_str()),
        ("chain_root_entries", chain.as_str())
    );
    assert!(broken.problem.contains("chain deleted"), "{broken:?}");
    db
}

async fn deleted_or_edited_roots_are_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let b = enrolled_agent(store, "host-b").await;
    store_batch(store, a, 2, NOW).await;
    store.commit_root(NOW + 1, 1000).await.unwrap().unwrap();
    store_batch(store, b, 2, NOW + 2).await;
    store.commit_root(NOW + 3, 1000).await.unwrap().unwrap();
    intact(store).await;

    tamper(
        &db,
        "UPDATE chain_roots SET committed_at_ms = committed_at_ms + 1 WHERE seq = 1",
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.id.as_str(), broken.seq),
        ("chain_roots", "1", 1)
    );
    tamper(
        &db,
        "UPDATE chain_roots SET committed_at_ms = committed_at_ms - 1 WHERE seq = 1",
    )
    .await;
    intact(store).await;

    tamper(
        &db,
        "DELETE FROM chain_root_entries WHERE root_seq = 2; DELETE FROM chain_roots WHERE seq = 2",
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(broken.table, "chain_root_head");
    assert!(broken.problem.contains("roots deleted"), "{broken:?}");
    db
}

async fn an_observation_inserted_outside_the_product_is_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 2, NOW).await;
    let forged = Uuid::now_v7().to_string();
    tamper(
        &db,
        &format!(
            "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
             product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
             process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
             details, evidence, tenant) \
             SELECT '{forged}', agent_id, observed_at_ms, received_at_ms, signal, name, product, vendor, \
             category, rule, reason, risk, confidence, plan, catalog_version, count, process_pid, \
             process_parent_pid, process_name, process_exe, process_cmdline, process_user, details, \
             evidence, tenant FROM observations WHERE id = '{}'",
            ids[0]
        ),
    )
    .await;
    let broken_record = first_break(store).await;
    assert_eq!(
        (
            broken_record.table.as_str(),
            broken_record.id.as_str(),
            broken_record.chain.as_str()
        ),
        ("observations", forged.as_str(), chain_of(a).as_str())
    );
    assert!(
        broken_record.problem.contains("not linked"),
        "{broken_record:?}"
    );
    // The chain job adopts only rows that predate the chain: the forged row stays named.
    assert_eq!(store.link_unlinked_observations(NOW, 100).await.unwrap(), 0);
    assert_eq!(first_break(store).await.id, forged);
    db
}

async fn observations_stored_before_the_chain_are_adopted(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 2, NOW).await;
    // An observation as a pre-chain version stored it: no link, listed for adoption by the
    // migration.
    let old = Uuid::now_v7().to_string();
    tamper(
        &db,
        &format!(
            "INSERT INTO observations (id, agent_id, observed_at_ms, received_at_ms, signal, name, \
             product, vendor, category, rule, reason, risk, confidence, plan, catalog_version, count, \
             process_pid, process_parent_pid, process_name, process_exe, process_cmdline, process_user, \
             details, evidence, tenant) \
             SELECT '{old}', agent_id, observed_at_ms, received_at_ms, signal, name, product, vendor, \
             category, rule, reason, risk, confidence, plan, catalog_version, count, process_pid, \
             process_parent_pid, process_name, process_exe, process_cmdline, process_user, details, \
             evidence, tenant FROM observations WHERE id = '{}'; \
             INSERT INTO chain_adoptions (observation_id) VALUES ('{old}'), ('{}')",
            ids[0],
            Uuid::now_v7()
        ),
    )
    .await;
    let report = intact(store).await;
    assert_eq!(report.pending_adoption, 2);
    assert_eq!(
        store
            .link_unlinked_observations(NOW + 5, 100)
            .await
            .unwrap(),
        1
    );
    let report = intact(store).await;
    assert_eq!(
        report.pending_adoption, 0,
        "the listed id without a row is dropped"
    );
    assert_eq!(report.records.get("observation"), Some(&3));
    db
}

async fn retention_expires_old_observations_and_verify_still_passes(db: TestDb) -> TestDb {
    let store = &db.store;
    let policy = RetentionPolicy {
        max_age_ms: 90 * DAY,
        label: "observation_retention_days=90".to_owned(),
    };
    let a = enrolled_agent(store, "host-a").await;
    let b = enrolled_agent(store, "host-b").await;
    let old = store_batch(store, a, 3, NOW - 100 * DAY).await;
    let young = store_batch(store, a, 2, NOW - 10 * DAY).await;
    store_batch(store, b, 2, NOW - 10 * DAY).await;
    store
        .commit_root(NOW - 5 * DAY, 1000)
        .await
        .unwrap()
        .unwrap();
    let alerts = alert_count(store).await;
    assert!(alerts > 0);

    // Bounded batches: two links per chain per pass.
    let first = store
        .expire_observations(&policy, NOW, 10, 2)
        .await
        .unwrap();
    assert_eq!((first.chains, first.observations, first.links), (1, 2, 2));
    intact(store).await;
    let second = store
        .expire_observations(&policy, NOW, 10, 2)
        .await
        .unwrap();
    assert_eq!(
        (second.chains, second.observations, second.links),
        (1, 1, 1)
    );
    let done = store
        .expire_observations(&policy, NOW, 10, 2)
        .await
        .unwrap();
    assert_eq!(done.chains, 0, "nothing is old enough any more");

    assert_eq!(store.count_observations().await.unwrap(), 4);
    for id in &old {
        let id = Uuid::parse_str(id).unwrap();
        assert_eq!(store.observation_evidence(id).await.unwrap(), None);
    }
    assert_eq!(alert_count(store).await, alerts, "alerts stay");
    let report = intact(store).await;
    assert_eq!(report.expired, 3);
    assert_eq!(report.records.get("observation"), Some(&4));
    assert_eq!(report.records.get("expiry"), Some(&2));
    assert_eq!(
        report.roots, 1,
        "the root pinning expired links still verifies"
    );
    store.commit_root(NOW + 1, 1000).await.unwrap().unwrap();
    intact(store).await;

    // Later, the young ones expire too; the chain keeps the expiry records.
    let later = store
        .expire_observations(&policy, NOW + 85 * DAY, 10, 100)
        .await
        .unwrap();
    assert_eq!((later.chains, later.observations), (2, 4));
    let report = intact(store).await;
    assert_eq!(store.count_observations().await.unwrap(), 0);
    assert_eq!(report.records.get("observation"), None);
    assert_eq!(report.expired, 5 + 2, "a through seq 5, b through seq 2");
    assert_eq!(report.records.get("expiry"), Some(&4));
    for id in &young {
        let id = Uuid::parse_str(id).unwrap();
        assert_eq!(store.observation_evidence(id).await.unwrap(), None);
    }

    // An observation deleted outside retention is still named.
    store_batch(store, b, 2, NOW + 86 * DAY).await;
    let ids = store_batch(store, b, 1, NOW + 86 * DAY + 1).await;
    tamper(
        &db,
        &format!("DELETE FROM observations WHERE id = '{}'", ids[0]),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.id.as_str()),
        ("observations", ids[0].as_str())
    );
    db
}

async fn a_deletion_dressed_as_an_expiry_is_named(db: TestDb) -> TestDb {
    let store = &db.store;
    let policy = RetentionPolicy {
        max_age_ms: 90 * DAY,
        label: "observation_retention_days=90".to_owned(),
    };
    let a = enrolled_agent(store, "host-a").await;
    store_batch(store, a, 2, NOW - 100 * DAY).await;
    let young = store_batch(store, a, 3, NOW - DAY).await;
    let outcome = store
        .expire_observations(&policy, NOW, 10, 100)
        .await
        .unwrap();
    assert_eq!(outcome.observations, 2);
    intact(store).await;
    // The intruder deletes the next (young) observation and moves the expiry mark over it, as if
    // retention had taken it.
    let chain = chain_of(a);
    tamper(
        &db,
        &format!(
            "UPDATE chain_heads SET expired_through = 3, \
             anchor_hash = (SELECT hash FROM chain_links WHERE chain = '{chain}' AND seq = 3) \
             WHERE chain = '{chain}'; \
             DELETE FROM observations WHERE id = '{}'; \
             DELETE FROM chain_links WHERE chain = '{chain}' AND seq = 3",
            young[0]
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (broken.table.as_str(), broken.chain.as_str()),
        ("chain_heads", chain.as_str())
    );
    assert!(broken.problem.contains("outside retention"), "{broken:?}");
    db
}

async fn control_records_are_chained_and_checked(db: TestDb) -> TestDb {
    let store = &db.store;
    let triage = Uuid::now_v7().to_string();
    let first = append_control(&db, "triage_event", &triage, b"\x01ack by alice", true)
        .await
        .unwrap();
    assert_eq!((first.chain.as_str(), first.seq), ("control", 1));
    let policy = Uuid::now_v7().to_string();
    let second = append_control(&db, "policy_change", &policy, b"\x01sanction x", true)
        .await
        .unwrap();
    assert_eq!(second.seq, 2);
    // A rolled-back transaction leaves no link.
    append_control(&db, "triage_event", "rolled-back", b"x", false)
        .await
        .unwrap();
    for (kind, id) in [
        ("observation", "x"),
        ("expiry", "x"),
        ("Bad Kind", "x"),
        ("ok", ""),
    ] {
        assert!(
            matches!(
                append_control(&db, kind, id, b"x", true).await,
                Err(StoreError::Invalid { .. })
            ),
            "{kind:?} {id:?}"
        );
    }
    let report = intact(store).await;
    assert_eq!(report.records.get("triage_event"), Some(&1));
    assert_eq!(report.records.get("policy_change"), Some(&1));
    assert_eq!(report.chains, 1);
    store.commit_root(NOW, 1000).await.unwrap().unwrap();
    intact(store).await;

    tamper(
        &db,
        &format!(
            "UPDATE chain_links SET record = {} WHERE chain = 'control' AND seq = 1",
            blob_literal(&db, b"\x01ack by mallory")
        ),
    )
    .await;
    let broken = first_break(store).await;
    assert_eq!(
        (
            broken.table.as_str(),
            broken.id.as_str(),
            broken.chain.as_str(),
            broken.seq
        ),
        ("chain_links", "control#1", "control", 1)
    );
    db
}

async fn concurrent_writers_keep_every_chain_intact(db: TestDb) -> TestDb {
    const WRITERS: usize = 12;
    const BATCHES: usize = 8;
    const BATCH: usize = 20;
    let agents = {
        let mut agents = Vec::new();
        for i in 0..4 {
            agents.push(enrolled_agent(&db.store, &format!("host-{i}")).await);
        }
        agents
    };
    // Three "collectors": separate pools on the same database.
    let mut collectors = vec![db.store.clone()];
    for _ in 0..2 {
        collectors.push(Store::connect(&db.url).await.unwrap());
    }
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = collectors[writer % collectors.len()].clone();
        let agent = agents[writer % agents.len()];
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES {
                let observations: Vec<_> = (0..BATCH)
                    .map(|i| observation("ollama.ollama", NOW + (batch * BATCH + i) as i64))
                    .collect();
                store
                    .insert_observations(agent, &observations, NOW + batch as i64)
                    .await
                    .unwrap();
            }
        }));
    }
    for (i, store) in collectors.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..5 {
                let _ = store
                    .commit_root(NOW + (i * 10 + round) as i64, 1000)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    db.store.commit_root(NOW + 100, 1000).await.unwrap();
    let report = intact(&db.store).await;
    let stored = db.store.count_observations().await.unwrap();
    assert_eq!(stored, (WRITERS * BATCHES * BATCH) as i64);
    assert_eq!(report.records.get("observation"), Some(&(stored as u64)));
    assert_eq!(report.chains, agents.len() as u64);
    assert!(report.roots >= 1);
    for store in &collectors[1..] {
        store.close().await;
    }
    db
}

/// Runs `shadowai-collector verify ARGS` on the test database: (exit code, stdout, stderr).
fn verify_command(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shadowai-collector"))
        .arg("--database")
        .arg(&db.url)
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

async fn the_verify_command_prints_the_head_and_names_the_first_break(db: TestDb) -> TestDb {
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let ids = store_batch(store, a, 3, NOW).await;
    let root = store.commit_root(NOW + 1, 1000).await.unwrap().unwrap();
    let printed_root = format!("{}:{}", root.seq, hex::encode(root.hash));

    let (code, stdout, stderr) = verify_command(&db, &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("evidence chain: intact\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("root: {printed_root} (committed ")),
        "{stdout}"
    );
    assert!(stdout.contains("records: observation 3"), "{stdout}");
    let (code, stdout, _) = verify_command(&db, &["--expect-root", &printed_root]);
    assert_eq!(code, 0, "{stdout}");
    let (code, _, stderr) = verify_command(&db, &["--expect-root", "1:zz"]);
    assert_eq!(code, 2, "a malformed root is a usage error: {stderr}");

    tamper(
        &db,
        &format!("UPDATE observations SET count = 99 WHERE id = '{}'", ids[1]),
    )
    .await;
    let (code, stdout, stderr) = verify_command(&db, &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.starts_with("evidence chain: BROKEN\n"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "first broken record: table observations, id {}, chain {}, seq 2",
            ids[1],
            chain_of(a)
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("evidence chain broken at observations"),
        "{stderr}"
    );
    assert!(stdout.contains("root: not verified"), "{stdout}");
    let (code, stdout, _) = verify_command(&db, &["--json"]);
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["intact"], false);
    assert_eq!(json["broken"]["table"], "observations");
    assert_eq!(json["broken"]["id"], ids[1].as_str());
    assert_eq!(json["broken"]["seq"], 2);
    assert_eq!(
        json["root"],
        serde_json::Value::Null,
        "roots are not reached after a break"
    );
    db
}

async fn the_serve_jobs_commit_roots_and_expire_observations(db: TestDb) -> TestDb {
    use shadowai_collector::evidence::{EvidenceSchedule, run_jobs};
    use shadowai_collector::server::now_ms;
    let store = &db.store;
    let a = enrolled_agent(store, "host-a").await;
    let now = now_ms();
    store_batch(store, a, 3, now - 100 * DAY).await;
    store_batch(store, a, 2, now).await;
    let schedule = EvidenceSchedule {
        root_interval: std::time::Duration::from_millis(50),
        retention_interval: std::time::Duration::from_millis(50),
        retention_days: 90,
    };
    assert_eq!(schedule.policy().label, "observation_retention_days=90");
    run_jobs(
        store.clone(),
        schedule,
        tokio::time::sleep(std::time::Duration::from_millis(400)),
    )
    .await;
    let report = intact(store).await;
    assert!(report.roots >= 1, "{report:?}");
    assert_eq!(report.expired, 3);
    assert_eq!(report.records.get("observation"), Some(&2));
    assert_eq!(store.count_observations().await.unwrap(), 2);
    db
}
