//! The evidence store's behaviour, run against every backend: SQLite (a temporary file) always, and
//! PostgreSQL when `SHADOWAI_TEST_POSTGRES_URL` names an admin connection (each test gets its own
//! database, dropped afterwards even when the test fails). With `SHADOWAI_REQUIRE_POSTGRES=1` a
//! missing URL fails the PostgreSQL tests instead of skipping them.

// A test crate: a failed unwrap is a failed test, like in `#[test]` functions.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowai_collector::store::{
    AlertQuery, EnrollAgent, Heartbeat, NewEnrollmentToken, NewObservation, NewSession,
    ObservationQuery, ObservedProcess, Role, Signal, Store, StoreError,
};
use uuid::Uuid;

const NOW: i64 = 1_750_000_000_000;
const HOUR: i64 = 3_600_000;

// ------------------------------------------------------------------------------------- harness

#[macro_use]
mod db_harness;
use db_harness::*;

backend_tests!(
    migrations_are_idempotent,
    enrollment_tokens_are_refused_when_unknown_wrong_expired_used_up_or_revoked,
    concurrent_enrollments_never_exceed_max_uses,
    agents_are_found_by_any_of_their_certificates,
    revoked_agents_are_marked_as_revoked,
    heartbeats_update_the_agent,
    the_same_batch_twice_is_stored_once,
    an_id_stored_by_another_agent_is_not_overwritten,
    a_batch_from_an_unknown_agent_stores_nothing,
    alerts_are_raised_once_per_host_and_product,
    hostile_strings_round_trip_byte_exact,
    listings_page_newest_first_with_filters,
    users_sessions_and_api_keys,
    findings_aggregate_per_host_user_product_and_signal,
    reason_new_product_only_for_unsanctioned_products,
    reason_risky_agent_setting,
    reason_agent_infra_cli_and_agent_shell,
    reason_new_mcp_server,
    reason_exposed_model_server,
    reason_consumer_ai_use,
    reason_personal_plan,
    reason_sensor_silent,
    reason_sensor_blinded,
    a_resolved_alert_that_fires_again_opens_a_new_one,
    overrides_and_suppressions_apply_and_expire,
    policy_changes_are_audited_with_before_and_after,
    alert_listing_filters,
);

#[path = "store_policy/mod.rs"]
mod store_policy;
use store_policy::*;

// ------------------------------------------------------------------------------------- helpers

fn token(
    id: &str,
    secret: &str,
    expires_at_ms: Option<i64>,
    max_uses: Option<u32>,
) -> NewEnrollmentToken {
    NewEnrollmentToken {
        token_id: id.to_owned(),
        secret_sha256: secret.to_owned(),
        group: "laptops".to_owned(),
        expires_at_ms,
        max_uses,
        created_at_ms: NOW - HOUR,
        created_by: "test".to_owned(),
    }
}

fn enrollment(token_id: &str, secret: &str, hostname: &str) -> EnrollAgent {
    let agent_id = Uuid::now_v7();
    EnrollAgent {
        token_id: token_id.to_owned(),
        secret_sha256: secret.to_owned(),
        agent_id,
        cert_fingerprint: format!("fp-{}", agent_id.simple()),
        cert_expires_at_ms: NOW + 30 * 24 * HOUR,
        hostname: hostname.to_owned(),
        os: "linux".to_owned(),
        os_version: "6.1".to_owned(),
        arch: "x86_64".to_owned(),
        agent_version: "0.1.0".to_owned(),
        remote_addr: "192.0.2.7".to_owned(),
        now_ms: NOW,
    }
}

/// Enrolls an agent through a fresh unlimited token; returns its id and certificate fingerprint.
async fn enrolled_agent(store: &Store, hostname: &str) -> (Uuid, String) {
    let token_id = format!("t-{}", Uuid::now_v7().simple());
    store
        .create_enrollment_token(&token(&token_id, "s3cr3t", None, None))
        .await
        .unwrap();
    let request = enrollment(&token_id, "s3cr3t", hostname);
    store.enroll_agent(&request).await.unwrap();
    (request.agent_id, request.cert_fingerprint)
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
        risk: Vec::new(),
        confidence: "high".to_owned(),
        plan: None,
        tenant: None,
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
        details: json!({"event": "started"}),
        evidence: vec![0x0a, 0x24, 0x00, 0xff],
    }
}

async fn all_alerts(store: &Store) -> Vec<shadowai_collector::store::Alert> {
    let query = AlertQuery {
        limit: 1000,
        after: None,
        status: None,
        product: None,
    };
    store.list_alerts(&query).await.unwrap().items
}

async fn observations_of(
    store: &Store,
    agent_id: Option<Uuid>,
) -> Vec<shadowai_collector::store::StoredObservation> {
    let query = ObservationQuery {
        limit: 1000,
        after: None,
        agent_id,
        product: None,
    };
    store.list_observations(&query).await.unwrap().items
}

// --------------------------------------------------------------------------------------- tests

#[tokio::test]
async fn unknown_database_schemes_are_refused() {
    for url in [
        "mysql://localhost/x",
        "",
        "sqlite-ish",
        "http://example.invalid",
    ] {
        assert!(
            matches!(Store::connect(url).await, Err(StoreError::InvalidUrl)),
            "{url:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_sqlite_is_one_database_for_the_whole_pool() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let (agent_id, _) = enrolled_agent(&store, "memory").await;
    // Concurrent reads use several pooled connections; all must see the same database.
    let reads: Vec<_> = (0..6)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.list_agents().await })
        })
        .collect();
    for read in reads {
        let agents = read.await.unwrap().unwrap();
        assert_eq!(agents.len(), 1);
        assert_eq!(agents[0].agent_id, agent_id);
    }
}

#[test]
fn test_database_urls_keep_credentials_and_parameters() {
    assert_eq!(
        database_url("postgres://postgres@127.0.0.1:5432/postgres", "t"),
        "postgres://postgres@127.0.0.1:5432/t"
    );
    assert_eq!(
        database_url("postgres://u:p@h/db?sslmode=disable", "t"),
        "postgres://u:p@h/t?sslmode=disable"
    );
    assert_eq!(database_url("postgres://h", "t"), "postgres://h/t");
}

async fn migrations_are_idempotent(db: TestDb) -> TestDb {
    let (agent_id, _) = enrolled_agent(&db.store, "host-a").await;
    // A second start runs the migrations again: nothing fails and nothing is lost.
    let again = Store::connect(&db.url).await.expect("second connect");
    let agents = again.list_agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].agent_id, agent_id);
    again.ping().await.unwrap();
    again.close().await;
    db
}

async fn enrollment_tokens_are_refused_when_unknown_wrong_expired_used_up_or_revoked(
    db: TestDb,
) -> TestDb {
    let store = &db.store;
    store
        .create_enrollment_token(&token("limited", "right", Some(NOW + HOUR), Some(2)))
        .await
        .unwrap();
    store
        .create_enrollment_token(&token("expired", "right", Some(NOW), None))
        .await
        .unwrap();
    store
        .create_enrollment_token(&token("revoked", "right", None, None))
        .await
        .unwrap();
    store
        .revoke_enrollment_token("revoked", "test", NOW - 1)
        .await
        .unwrap();

    let refused = |result: Result<_, StoreError>| result.expect_err("enrollment should be refused");
    assert!(matches!(
        refused(store.enroll_agent(&enrollment("nope", "right", "h")).await),
        StoreError::TokenUnknown
    ));
    // A wrong secret says nothing more than "unknown", even for an expired or revoked token.
    for id in ["limited", "expired", "revoked"] {
        let error = refused(store.enroll_agent(&enrollment(id, "wrong", "h")).await);
        assert!(matches!(error, StoreError::TokenUnknown), "{id}: {error:?}");
    }
    // `now >= expires` is expired.
    assert!(matches!(
        refused(
            store
                .enroll_agent(&enrollment("expired", "right", "h"))
                .await
        ),
        StoreError::TokenExpired
    ));
    assert!(matches!(
        refused(
            store
                .enroll_agent(&enrollment("revoked", "right", "h"))
                .await
        ),
        StoreError::TokenRevoked
    ));

    // Wrong secrets spent nothing: both uses are still there, then it is used up.
    for host in ["one", "two"] {
        let enrolled = store
            .enroll_agent(&enrollment("limited", "right", host))
            .await
            .unwrap();
        assert_eq!(enrolled.group, "laptops");
    }
    assert!(matches!(
        refused(
            store
                .enroll_agent(&enrollment("limited", "right", "three"))
                .await
        ),
        StoreError::TokenUsedUp
    ));

    let hosts: Vec<String> = store
        .list_agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.hostname)
        .collect();
    assert_eq!(hosts, ["one", "two"]);
    assert!(matches!(
        store.revoke_enrollment_token("nope", "test", NOW).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_enrollment_token(&token("limited", "other", None, None))
            .await,
        Err(StoreError::Conflict { .. })
    ));
    db
}

async fn concurrent_enrollments_never_exceed_max_uses(db: TestDb) -> TestDb {
    db.store
        .create_enrollment_token(&token("once", "right", None, Some(1)))
        .await
        .unwrap();
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .enroll_agent(&enrollment("once", "right", &format!("host-{i}")))
                    .await
            })
        })
        .collect();
    let mut enrolled = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => enrolled += 1,
            Err(StoreError::TokenUsedUp) => {}
            Err(other) => panic!("unexpected refusal: {other:?}"),
        }
    }
    assert_eq!(enrolled, 1);
    assert_eq!(db.store.list_agents().await.unwrap().len(), 1);
    db
}

async fn agents_are_found_by_any_of_their_certificates(db: TestDb) -> TestDb {
    let store = &db.store;
    let (agent_id, first) = enrolled_agent(store, "host-a").await;
    assert_eq!(
        store
            .agent_by_certificate("not-a-fingerprint")
            .await
            .unwrap(),
        None
    );

    store
        .add_agent_certificate(agent_id, "renewed-fp", NOW + 60 * 24 * HOUR, NOW)
        .await
        .unwrap();
    for fingerprint in [first.as_str(), "renewed-fp"] {
        let identity = store
            .agent_by_certificate(fingerprint)
            .await
            .unwrap()
            .expect("known certificate");
        assert_eq!(identity.agent_id, agent_id);
        assert_eq!(identity.group, "laptops");
        assert_eq!(identity.hostname, "host-a");
        assert!(!identity.revoked);
    }
    // A fingerprint cannot be moved to another agent, and unknown agents get no certificates.
    let (other, _) = enrolled_agent(store, "host-b").await;
    assert!(matches!(
        store
            .add_agent_certificate(other, "renewed-fp", NOW, NOW)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store
            .agent_by_certificate("renewed-fp")
            .await
            .unwrap()
            .unwrap()
            .agent_id,
        agent_id
    );
    assert!(matches!(
        store
            .add_agent_certificate(Uuid::now_v7(), "fresh-fp", NOW, NOW)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    db
}

async fn revoked_agents_are_marked_as_revoked(db: TestDb) -> TestDb {
    let store = &db.store;
    let (agent_id, fingerprint) = enrolled_agent(store, "host-a").await;
    let (bystander, bystander_fp) = enrolled_agent(store, "host-b").await;
    store.revoke_agent(agent_id, "admin", NOW).await.unwrap();
    store
        .revoke_agent(agent_id, "admin", NOW + 1)
        .await
        .unwrap();

    assert!(
        store
            .agent_by_certificate(&fingerprint)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .agent_by_certificate(&bystander_fp)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let agents = store.list_agents().await.unwrap();
    assert!(agents.iter().any(|a| a.agent_id == agent_id && a.revoked));
    assert!(agents.iter().any(|a| a.agent_id == bystander && !a.revoked));
    assert!(matches!(
        store.revoke_agent(Uuid::now_v7(), "admin", NOW).await,
        Err(StoreError::NotFound { .. })
    ));
    db
}

async fn heartbeats_update_the_agent(db: TestDb) -> TestDb {
    let store = &db.store;
    let (agent_id, _) = enrolled_agent(store, "old-name").await;
    let health = json!({"sensors": [{"sensor": "network", "state": "SENSOR_STATE_BLIND", "detail": "no CAP_NET_RAW"}]});
    let heartbeat = Heartbeat {
        hostname: "new-name".to_owned(),
        os: "macos".to_owned(),
        os_version: "15.1".to_owned(),
        arch: "aarch64".to_owned(),
        agent_version: "0.2.0".to_owned(),
        catalog_version: "2025.06.2".to_owned(),
        health: health.clone(),
    };
    store
        .record_heartbeat(agent_id, &heartbeat, NOW + 5_000)
        .await
        .unwrap();
    // An older heartbeat arriving late does not move last contact backwards.
    store
        .record_heartbeat(agent_id, &heartbeat, NOW + 1_000)
        .await
        .unwrap();
    let agent = store.list_agents().await.unwrap().remove(0);
    assert_eq!(
        (
            agent.hostname.as_str(),
            agent.os.as_str(),
            agent.os_version.as_str(),
            agent.arch.as_str()
        ),
        ("new-name", "macos", "15.1", "aarch64")
    );
    assert_eq!(
        (agent.agent_version.as_str(), agent.catalog_version.as_str()),
        ("0.2.0", "2025.06.2")
    );
    assert_eq!(agent.health, health);
    assert_eq!(agent.last_contact_ms, NOW + 5_000);
    assert_eq!(agent.enrolled_at_ms, NOW);
    assert!(matches!(
        store
            .record_heartbeat(Uuid::now_v7(), &heartbeat, NOW)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    db
}

async fn the_same_batch_twice_is_stored_once(db: TestDb) -> TestDb {
    let store = &db.store;
    let (agent_id, _) = enrolled_agent(store, "host-a").await;
    let batch = vec![
        observation("ollama.ollama", NOW),
        observation("ollama.ollama", NOW + 1),
        observation("openai.codex", NOW + 2),
    ];

    let first = store
        .insert_observations(agent_id, &batch, NOW + 10)
        .await
        .unwrap();
    assert_eq!(
        (first.inserted, first.duplicates, first.alerts_raised),
        (3, 0, 2)
    );
    let second = store
        .insert_observations(agent_id, &batch, NOW + 20)
        .await
        .unwrap();
    assert_eq!(
        (second.inserted, second.duplicates, second.alerts_raised),
        (0, 3, 0)
    );

    assert_eq!(store.count_observations().await.unwrap(), 3);
    let alerts = all_alerts(store).await;
    let ollama = alerts
        .iter()
        .find(|a| a.product == "ollama.ollama")
        .unwrap();
    assert_eq!(ollama.count, 2, "redelivery must not count twice");
    // Redelivery still counts as contact.
    assert_eq!(
        store.list_agents().await.unwrap()[0].last_contact_ms,
        NOW + 20
    );
    db
}

async fn an_id_stored_by_another_agent_is_not_overwritten(db: TestDb) -> TestDb {
    let store = &db.store;
    let (owner, _) = enrolled_agent(store, "owner").await;
    let (intruder, _) = enrolled_agent(store, "intruder").await;
    let original = observation("ollama.ollama", NOW);
    store
        .insert_observations(owner, std::slice::from_ref(&original), NOW)
        .await
        .unwrap();

    let mut forged = observation("anthropic.claude", NOW + 1);
    forged.id = original.id;
    forged.name = "forged".to_owned();
    forged.evidence = b"forged".to_vec();
    let outcome = store
        .insert_observations(intruder, &[forged], NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        (outcome.inserted, outcome.duplicates, outcome.alerts_raised),
        (0, 1, 0)
    );

    let stored = observations_of(store, None).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].agent_id, owner);
    assert_eq!(stored[0].hostname, "owner");
    assert_eq!(stored[0].name, "ollama");
    assert_eq!(stored[0].product, "ollama.ollama");
    assert_eq!(
        store.observation_evidence(original.id).await.unwrap(),
        Some(original.evidence.clone())
    );
    assert!(observations_of(store, Some(intruder)).await.is_empty());
    let alerts = all_alerts(store).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].agent_id, owner);
    db
}

async fn a_batch_from_an_unknown_agent_stores_nothing(db: TestDb) -> TestDb {
    let result = db
        .store
        .insert_observations(Uuid::now_v7(), &[observation("ollama.ollama", NOW)], NOW)
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
    assert_eq!(db.store.count_observations().await.unwrap(), 0);
    assert!(all_alerts(&db.store).await.is_empty());
    db
}

async fn alerts_are_raised_once_per_host_and_product(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    let (desktop, _) = enrolled_agent(store, "desktop").await;

    let first = observation("ollama.ollama", NOW);
    let mut risky = observation("ollama.ollama", NOW + 2_000);
    risky.risk = vec!["exposed".to_owned()];
    if let Some(process) = risky.process.as_mut() {
        process.pid = 5151;
        process.cmdline = "ollama serve --host 0.0.0.0".to_owned();
        process.user = "bob".to_owned();
    }
    // Arrives last but was seen in between: must not become the "latest" process.
    let mut late = observation("ollama.ollama", NOW + 1_000);
    if let Some(process) = late.process.as_mut() {
        process.pid = 777;
    }
    // Attributed to no process: keeps the known process on the alert.
    let mut unattributed = observation("ollama.ollama", NOW + 3_000);
    unattributed.signal = Signal::Dns;
    unattributed.name = "registry.ollama.ai".to_owned();
    unattributed.process = None;
    let no_product = observation("", NOW);

    let outcome = store
        .insert_observations(laptop, &[first.clone(), no_product], NOW)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.alerts_raised), (2, 1));
    let outcome = store
        .insert_observations(
            laptop,
            &[risky.clone(), late, unattributed.clone()],
            NOW + 3_000,
        )
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.alerts_raised), (3, 0));
    let outcome = store
        .insert_observations(
            desktop,
            &[observation("ollama.ollama", NOW + 500)],
            NOW + 3_000,
        )
        .await
        .unwrap();
    assert_eq!(outcome.alerts_raised, 1, "another host is another alert");

    let alerts = all_alerts(store).await;
    assert_eq!(alerts.len(), 2);
    let alert = alerts.iter().find(|a| a.agent_id == laptop).unwrap();
    assert_eq!(alert.hostname, "laptop");
    assert_eq!(alert.group, "laptops");
    assert_eq!(alert.product, "ollama.ollama");
    assert_eq!(alert.vendor, "Ollama");
    assert_eq!(alert.category, "local_model_runtime");
    assert_eq!(alert.reason, "new_product");
    assert_eq!(alert.status, "open");
    assert_eq!(alert.severity, "high", "a risk flag raises the severity");
    assert_eq!(alert.title, "New AI product on host: Ollama ollama.ollama");
    assert_eq!(alert.rule, "data/ollama.toml#ollama.ollama/process[0]");
    assert_eq!(alert.count, 4);
    assert_eq!(
        (alert.first_seen_ms, alert.last_seen_ms),
        (NOW, NOW + 3_000)
    );
    assert_eq!(
        (alert.first_observation_id, alert.last_observation_id),
        (Some(first.id), Some(unattributed.id))
    );
    let process = alert.process.as_ref().unwrap();
    assert_eq!(
        (process.pid, process.cmdline.as_str()),
        (5151, "ollama serve --host 0.0.0.0")
    );
    assert_eq!(process.exe, "/usr/local/bin/ollama");
    assert_eq!(alert.user_name, "bob");

    let other = alerts.iter().find(|a| a.agent_id == desktop).unwrap();
    assert_eq!(
        (
            other.severity.as_str(),
            other.count,
            other.hostname.as_str()
        ),
        ("medium", 1, "desktop")
    );
    // Newest last_seen first.
    assert_eq!(alerts[0].agent_id, laptop);
    db
}

async fn hostile_strings_round_trip_byte_exact(db: TestDb) -> TestDb {
    let hostile = [
        "<script>alert(1)</script>",
        "'; DROP TABLE observations;--",
        "\" OR 1=1; --",
        "Robert'); DELETE FROM agents WHERE ('1'='1",
        "\u{1b}[31mred\u{1b}[0m\r\n\t\u{7f}\u{1}",
        "evil\u{202e}gpj.exe",
        "日本語 ✓ 🤖 ﷽ \u{feff}",
        "$1 $2 ? :name @p",
        "\\x00 \\' \\\"",
    ];
    let store = &db.store;
    let hostname = hostile.concat();
    let (agent_id, _) = enrolled_agent(store, &hostname).await;
    let mut batch = Vec::new();
    for (i, text) in hostile.iter().enumerate() {
        let mut o = observation(&format!("{text}.product"), NOW + i as i64);
        o.name = (*text).to_owned();
        o.vendor = (*text).to_owned();
        o.reason = (*text).to_owned();
        o.rule = (*text).to_owned();
        o.risk = vec![(*text).to_owned(), "second".to_owned()];
        o.plan = Some((*text).to_owned());
        o.tenant = Some(format!("tenant {text}"));
        o.details = json!({ "text": text, (*text): [text] });
        o.evidence = text
            .as_bytes()
            .iter()
            .copied()
            .chain([0u8, 0xff, 0xfe])
            .collect();
        o.process = Some(ObservedProcess {
            pid: u32::MAX,
            parent_pid: u32::MAX - 1,
            name: (*text).to_owned(),
            exe: (*text).to_owned(),
            cmdline: text.repeat(100),
            user: (*text).to_owned(),
        });
        batch.push(o);
    }
    let outcome = store
        .insert_observations(agent_id, &batch, NOW)
        .await
        .unwrap();
    assert_eq!(outcome.inserted, hostile.len());

    let stored = observations_of(store, Some(agent_id)).await;
    assert_eq!(stored.len(), hostile.len());
    for original in &batch {
        let copy = stored.iter().find(|s| s.id == original.id).unwrap();
        assert_eq!(copy.hostname, hostname);
        assert_eq!(copy.name, original.name);
        assert_eq!(copy.product, original.product);
        assert_eq!(copy.vendor, original.vendor);
        assert_eq!(copy.reason, original.reason);
        assert_eq!(copy.rule, original.rule);
        assert_eq!(copy.risk, original.risk);
        assert_eq!(copy.plan, original.plan);
        assert_eq!(copy.tenant, original.tenant);
        assert_eq!(copy.details, original.details);
        assert_eq!(copy.process, original.process);
        assert_eq!(
            store
                .observation_evidence(original.id)
                .await
                .unwrap()
                .as_ref(),
            Some(&original.evidence)
        );
    }
    let alerts = all_alerts(store).await;
    assert_eq!(alerts.len(), hostile.len());
    for original in &batch {
        let alert = alerts
            .iter()
            .find(|a| a.product == original.product)
            .unwrap();
        assert_eq!(alert.hostname, hostname);
        assert_eq!(alert.vendor, original.vendor);
        assert_eq!(alert.user_name, original.process.as_ref().unwrap().user);
        assert_eq!(
            alert.process.as_ref().unwrap().cmdline,
            original.process.as_ref().unwrap().cmdline
        );
    }
    // The tables the strings talk about are still there.
    assert_eq!(
        store.count_observations().await.unwrap(),
        hostile.len() as i64
    );
    assert_eq!(store.list_agents().await.unwrap().len(), 1);
    db
}

async fn listings_page_newest_first_with_filters(db: TestDb) -> TestDb {
    let store = &db.store;
    let (first, _) = enrolled_agent(store, "first").await;
    let (second, _) = enrolled_agent(store, "second").await;
    // Two observations share a time: the id breaks the tie, so paging neither skips nor repeats.
    let times = [NOW, NOW + 10, NOW + 10, NOW + 20, NOW + 30];
    let batch: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| observation(&format!("p{i}"), *t))
        .collect();
    store.insert_observations(first, &batch, NOW).await.unwrap();
    store
        .insert_observations(second, &[observation("p0", NOW + 5)], NOW)
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = ObservationQuery {
            limit: 2,
            after,
            agent_id: Some(first),
            product: None,
        };
        let page = store.list_observations(&query).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|o| (o.observed_at_ms, o.id)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<_> = batch.iter().map(|o| (o.observed_at_ms, o.id)).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected);

    let by_product = ObservationQuery {
        limit: 10,
        after: None,
        agent_id: None,
        product: Some("p0".to_owned()),
    };
    let hosts: Vec<_> = store
        .list_observations(&by_product)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.hostname)
        .collect();
    assert_eq!(hosts, ["second", "first"]);

    let mut alert_pages = Vec::new();
    let mut after = None;
    loop {
        let query = AlertQuery {
            limit: 4,
            after,
            status: Some("open".to_owned()),
            product: None,
        };
        let page = store.list_alerts(&query).await.unwrap();
        alert_pages.push(page.items.len());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(alert_pages, [4, 2]);
    let resolved = AlertQuery {
        limit: 10,
        after: None,
        status: Some("resolved".to_owned()),
        product: None,
    };
    assert!(store.list_alerts(&resolved).await.unwrap().items.is_empty());
    let p0 = AlertQuery {
        limit: 10,
        after: None,
        status: None,
        product: Some("p0".to_owned()),
    };
    assert_eq!(store.list_alerts(&p0).await.unwrap().items.len(), 2);
    db
}

async fn users_sessions_and_api_keys(db: TestDb) -> TestDb {
    let store = &db.store;
    assert_eq!(store.user_count().await.unwrap(), 0);
    let admin = store
        .create_user("admin", Role::Admin, "$argon2id$hash", NOW)
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_user("admin", Role::Viewer, "$argon2id$other", NOW)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.create_user("", Role::Viewer, "h", NOW).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.create_user("a\nb", Role::Viewer, "h", NOW).await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(store.user_count().await.unwrap(), 1);
    let user = store.user_by_name("admin").await.unwrap().unwrap();
    assert_eq!(
        (
            user.id,
            user.role,
            user.password_hash.as_str(),
            user.disabled
        ),
        (admin, Role::Admin, "$argon2id$hash", false)
    );
    assert_eq!(store.user_by_name("Admin").await.unwrap(), None);
    assert_eq!(store.user_by_name(&"a".repeat(10_000)).await.unwrap(), None);

    let session = NewSession {
        token_sha256: "a".repeat(64),
        user_id: admin,
        csrf_token: "csrf".to_owned(),
        created_at_ms: NOW,
        expires_at_ms: NOW + HOUR,
    };
    store.create_session(&session).await.unwrap();
    let live = store
        .session(&session.token_sha256, NOW + HOUR - 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            live.user_id,
            live.user_name.as_str(),
            live.role,
            live.csrf_token.as_str()
        ),
        (admin, "admin", Role::Admin, "csrf")
    );
    assert_eq!(
        store
            .session(&session.token_sha256, NOW + HOUR)
            .await
            .unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(store.session(&"b".repeat(64), NOW).await.unwrap(), None);
    assert_eq!(store.delete_expired_sessions(NOW).await.unwrap(), 0);
    assert_eq!(store.delete_expired_sessions(NOW + HOUR).await.unwrap(), 1);
    store.create_session(&session).await.unwrap();
    store.delete_session(&session.token_sha256).await.unwrap();
    assert_eq!(
        store.session(&session.token_sha256, NOW).await.unwrap(),
        None
    );
    let orphan = NewSession {
        user_id: Uuid::now_v7(),
        token_sha256: "c".repeat(64),
        ..session.clone()
    };
    assert!(
        store.create_session(&orphan).await.is_err(),
        "a session needs a user"
    );

    let key_id = store
        .create_api_key("ci", Role::Viewer, &"d".repeat(64), NOW)
        .await
        .unwrap();
    let key = store
        .use_api_key(&"d".repeat(64), NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (key.id, key.name.as_str(), key.role),
        (key_id, "ci", Role::Viewer)
    );
    assert_eq!(store.use_api_key(&"e".repeat(64), NOW).await.unwrap(), None);
    store.revoke_api_key(key_id, NOW + 1).await.unwrap();
    assert_eq!(
        store.use_api_key(&"d".repeat(64), NOW + 2).await.unwrap(),
        None
    );
    assert!(matches!(
        store.revoke_api_key(Uuid::now_v7(), NOW).await,
        Err(StoreError::NotFound { .. })
    ));
    db
}
