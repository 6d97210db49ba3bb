//! Triage in the store, on SQLite and PostgreSQL (each test gets its own database; PostgreSQL at
//! `SHADOWAI_TEST_POSTGRES_URL`, required with `SHADOWAI_REQUIRE_POSTGRES=1`): every action writes
//! exactly one triage event, actions that do not apply change nothing, bulk actions are all or
//! nothing for unknown ids, and the queue's filters, sorts and pages.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use shadowai_collector::store::{
    AlertFilter, AlertSort, EnrollAgent, NewEnrollmentToken, NewObservation, Resolution, Role,
    Signal, Store, StoreError, TriageAction, TriageContext,
};
use sqlx::Connection;
use uuid::Uuid;

const NOW: i64 = 1_750_000_000_000;

struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        TestDb {
            store: Store::connect(&url).await.unwrap(),
            _dir: Some(dir),
            postgres: None,
        }
    }

    async fn postgres() -> Option<TestDb> {
        #[allow(clippy::disallowed_methods)] // the test harness is this suite's entry point
        let admin_url = std::env::var("SHADOWAI_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        #[allow(clippy::disallowed_methods)]
        let required = std::env::var("SHADOWAI_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let Some(admin_url) = admin_url else {
            assert!(
                !required,
                "SHADOWAI_REQUIRE_POSTGRES=1 but no SHADOWAI_TEST_POSTGRES_URL"
            );
            println!("skipping postgres: SHADOWAI_TEST_POSTGRES_URL not set");
            return None;
        };
        let name = format!("shadowai_tt_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
        Some(TestDb {
            store,
            _dir: None,
            postgres: Some((admin_url, name)),
        })
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.postgres {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite().await;
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$name(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

backend_tests!(
    each_action_writes_one_event_and_changes_the_alert,
    actions_that_do_not_apply_change_nothing,
    bulk_actions_skip_what_does_not_apply_and_refuse_unknown_ids,
    the_queue_filters_sorts_and_pages,
    overview_figures_count_alerts,
);

async fn enroll(store: &Store, hostname: &str, group: &str) -> Uuid {
    let token_id = Uuid::now_v7().simple().to_string();
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: token_id.clone(),
            secret_sha256: "s".into(),
            group: group.into(),
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
            token_id,
            secret_sha256: "s".into(),
            agent_id,
            cert_fingerprint: agent_id.simple().to_string(),
            cert_expires_at_ms: NOW + 1,
            hostname: hostname.into(),
            os: "linux".into(),
            os_version: "6".into(),
            arch: "x86_64".into(),
            agent_version: "0".into(),
            remote_addr: "127.0.0.1".into(),
            now_ms: NOW,
        })
        .await
        .unwrap();
    agent_id
}

/// Stores one observation of `product` (risky ones make a high alert) and returns the alert id.
async fn alert(store: &Store, agent_id: Uuid, product: &str, risky: bool, at_ms: i64) -> Uuid {
    let observation = NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: at_ms,
        signal: Signal::Dns,
        name: format!("{product}.example"),
        product: product.into(),
        vendor: "v".into(),
        category: "assistant".into(),
        rule: "r".into(),
        reason: "why".into(),
        risk: if risky {
            vec!["agentic".into()]
        } else {
            vec![]
        },
        confidence: "high".into(),
        plan: None,
        tenant: None,
        catalog_version: "t".into(),
        count: 1,
        process: None,
        details: json!({}),
        evidence: vec![1],
    };
    store
        .insert_observations(agent_id, &[observation], at_ms)
        .await
        .unwrap();
    let page = store
        .alert_queue(&AlertFilter {
            agent_id: Some(agent_id),
            product: Some(product.into()),
            page_size: 5,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(page.alerts.len(), 1);
    page.alerts[0].alert.id
}

fn context(actor: &str, note: &str, now_ms: i64) -> TriageContext {
    TriageContext {
        actor: actor.into(),
        from_address: "192.0.2.1".into(),
        note: note.into(),
        now_ms,
    }
}

async fn add_responder(store: &Store, name: &str, role: Role) {
    store.create_user(name, role, "hash", NOW).await.unwrap();
}

async fn each_action_writes_one_event_and_changes_the_alert(store: &Store) {
    add_responder(store, "rita", Role::Responder).await;
    let agent = enroll(store, "mac-1", "eng").await;
    let id = alert(store, agent, "openai.chatgpt", false, NOW).await;

    let steps: Vec<(TriageAction, &str)> = vec![
        (TriageAction::Acknowledge, ""),
        (
            TriageAction::Assign {
                assignee: "rita".into(),
            },
            "yours",
        ),
        (TriageAction::Escalate, "big"),
        (TriageAction::Comment, "<script>x</script> line1\nline2"),
        (
            TriageAction::Resolve {
                resolution: Resolution::Sanctioned,
            },
            "approved",
        ),
        (TriageAction::Reopen, "again"),
    ];
    for (index, (action, note)) in steps.iter().enumerate() {
        let at = NOW + 1000 + i64::try_from(index).unwrap();
        let event = store
            .triage_alert(id, action, &context("alice", note, at))
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e}"));
        assert_eq!(event.action, action.name());
        assert_eq!(event.at_ms, at);
        assert_eq!(event.note, *note);
        assert_eq!(event.from_address, "192.0.2.1");
    }
    let history = store.alert_triage_events(id).await.unwrap();
    let actions: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "acknowledge",
            "assign",
            "escalate",
            "comment",
            "resolve",
            "reopen"
        ]
    );
    assert_eq!(history[1].detail, "rita");
    assert_eq!(history[4].detail, "sanctioned");
    assert_eq!(history[3].note, "<script>x</script> line1\nline2");
    let found = store.triaged_alert(id).await.unwrap().unwrap();
    assert_eq!(found.alert.status, "open", "reopened");
    assert_eq!(found.triage.assignee.as_deref(), Some("rita"));
    assert_eq!(found.triage.resolution, None);
    assert_eq!(found.triage.acknowledged_at_ms, Some(NOW + 1000));
    assert_eq!(found.triage.escalated_at_ms, Some(NOW + 1002));
    assert_eq!(found.triage.updated_at_ms, Some(NOW + 1005));
    let audit = store.list_triage_events(None, 4).await.unwrap();
    assert_eq!(audit.items.len(), 4);
    assert_eq!(audit.items[0].event.action, "reopen", "newest first");
    assert_eq!(audit.items[0].hostname, "mac-1");
    let rest = store.list_triage_events(audit.next, 4).await.unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.next.is_none());
}

async fn actions_that_do_not_apply_change_nothing(store: &Store) {
    add_responder(store, "vera", Role::Viewer).await;
    let agent = enroll(store, "mac-1", "eng").await;
    let id = alert(store, agent, "openai.chatgpt", false, NOW).await;
    let refused = |result: Result<_, StoreError>| {
        assert!(
            matches!(result, Err(StoreError::Invalid { .. })),
            "{result:?}"
        );
    };
    refused(
        store
            .triage_alert(id, &TriageAction::Reopen, &context("a", "", NOW))
            .await,
    );
    refused(
        store
            .triage_alert(
                id,
                &TriageAction::Assign {
                    assignee: "vera".into(),
                },
                &context("a", "", NOW),
            )
            .await,
    );
    refused(
        store
            .triage_alert(
                id,
                &TriageAction::Assign {
                    assignee: "nobody".into(),
                },
                &context("a", "", NOW),
            )
            .await,
    );
    refused(
        store
            .triage_alert(id, &TriageAction::Comment, &context("a", "  ", NOW))
            .await,
    );
    refused(
        store
            .triage_alert(id, &TriageAction::Comment, &context("a", "a\0b", NOW))
            .await,
    );
    let resolve = TriageAction::Resolve {
        resolution: Resolution::FalsePositive,
    };
    store
        .triage_alert(id, &resolve, &context("a", "", NOW))
        .await
        .unwrap();
    refused(
        store
            .triage_alert(id, &resolve, &context("a", "", NOW))
            .await,
    );
    refused(
        store
            .triage_alert(id, &TriageAction::Acknowledge, &context("a", "", NOW))
            .await,
    );
    refused(
        store
            .triage_alert(id, &TriageAction::Escalate, &context("a", "", NOW))
            .await,
    );
    assert!(matches!(
        store
            .triage_alert(
                Uuid::now_v7(),
                &TriageAction::Acknowledge,
                &context("a", "", NOW)
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let history = store.alert_triage_events(id).await.unwrap();
    assert_eq!(
        history.len(),
        1,
        "only the resolve was recorded: {history:?}"
    );
    let found = store.triaged_alert(id).await.unwrap().unwrap();
    assert_eq!(found.alert.status, "resolved");
    assert_eq!(found.triage.resolution.as_deref(), Some("false_positive"));
    assert_eq!(found.triage.assignee, None);
}

async fn bulk_actions_skip_what_does_not_apply_and_refuse_unknown_ids(store: &Store) {
    let agent = enroll(store, "mac-1", "eng").await;
    let a = alert(store, agent, "p.a", false, NOW).await;
    let b = alert(store, agent, "p.b", false, NOW + 1).await;
    let c = alert(store, agent, "p.c", false, NOW + 2).await;
    store
        .triage_alert(a, &TriageAction::Acknowledge, &context("x", "", NOW))
        .await
        .unwrap();
    let unknown = store
        .triage_alerts(
            &[b, Uuid::now_v7()],
            &TriageAction::Acknowledge,
            &context("x", "", NOW),
        )
        .await;
    assert!(matches!(unknown, Err(StoreError::NotFound { .. })));
    assert_eq!(
        store.triaged_alert(b).await.unwrap().unwrap().alert.status,
        "open",
        "an unknown id refuses the whole bulk action"
    );
    let outcome = store
        .triage_alerts(
            &[a, b, c, b],
            &TriageAction::Acknowledge,
            &context("x", "bulk", NOW),
        )
        .await
        .unwrap();
    assert_eq!((outcome.changed, outcome.skipped), (2, 1));
    for id in [a, b, c] {
        assert_eq!(
            store.triaged_alert(id).await.unwrap().unwrap().alert.status,
            "acknowledged"
        );
    }
    assert_eq!(
        store
            .list_triage_events(None, 100)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(
        store
            .triage_alerts(&[], &TriageAction::Acknowledge, &context("x", "", NOW))
            .await
            .is_err()
    );
}

async fn the_queue_filters_sorts_and_pages(store: &Store) {
    let mac = enroll(store, "MacBook-Anna", "eng").await;
    let pc = enroll(store, "pc_100%", "sales").await;
    let a = alert(store, mac, "openai.chatgpt", true, NOW).await;
    let b = alert(store, mac, "anthropic.claude", false, NOW + 10).await;
    let c = alert(store, pc, "openai.chatgpt", false, NOW + 20).await;
    store
        .triage_alert(
            b,
            &TriageAction::Resolve {
                resolution: Resolution::Duplicate,
            },
            &context("x", "", NOW),
        )
        .await
        .unwrap();
    let ids = |filter: AlertFilter| async move {
        let page = store
            .alert_queue(&AlertFilter {
                page_size: if filter.page_size == 0 {
                    50
                } else {
                    filter.page_size
                },
                ..filter
            })
            .await
            .unwrap();
        (
            page.alerts.iter().map(|a| a.alert.id).collect::<Vec<_>>(),
            page.total,
        )
    };
    assert_eq!(ids(AlertFilter::default()).await, (vec![c, b, a], 3));
    let unresolved = AlertFilter {
        status: Some("unresolved".into()),
        ..AlertFilter::default()
    };
    assert_eq!(ids(unresolved.clone()).await, (vec![c, a], 2));
    assert_eq!(
        ids(AlertFilter {
            host: Some("macbook".into()),
            ..AlertFilter::default()
        })
        .await,
        (vec![b, a], 2),
        "host matches a case-insensitive substring"
    );
    assert_eq!(
        ids(AlertFilter {
            host: Some("_100%".into()),
            ..AlertFilter::default()
        })
        .await,
        (vec![c], 1),
        "LIKE wildcards in the filter are literal"
    );
    assert_eq!(
        ids(AlertFilter {
            host: Some("c%1".into()),
            ..AlertFilter::default()
        })
        .await
        .1,
        0
    );
    assert_eq!(
        ids(AlertFilter {
            group: Some("sales".into()),
            ..AlertFilter::default()
        })
        .await,
        (vec![c], 1)
    );
    assert_eq!(
        ids(AlertFilter {
            severity: Some("high".into()),
            ..AlertFilter::default()
        })
        .await,
        (vec![a], 1)
    );
    assert_eq!(
        ids(AlertFilter {
            since_ms: Some(NOW + 5),
            ..AlertFilter::default()
        })
        .await,
        (vec![c, b], 2)
    );
    assert_eq!(
        ids(AlertFilter {
            assignee: Some(String::new()),
            ..AlertFilter::default()
        })
        .await
        .1,
        3,
        "unassigned"
    );
    assert_eq!(
        ids(AlertFilter {
            sort: AlertSort::Severity,
            ..AlertFilter::default()
        })
        .await
        .0,
        vec![a, c, b]
    );
    assert_eq!(
        ids(AlertFilter {
            sort: AlertSort::Host,
            ..AlertFilter::default()
        })
        .await
        .0,
        vec![b, a, c]
    );
    let second_page = ids(AlertFilter {
        page: 1,
        page_size: 2,
        ..AlertFilter::default()
    })
    .await;
    assert_eq!(second_page, (vec![a], 3));
}

async fn overview_figures_count_alerts(store: &Store) {
    let mac = enroll(store, "mac", "eng").await;
    let pc = enroll(store, "pc", "eng").await;
    alert(store, mac, "openai.chatgpt", true, NOW).await;
    alert(store, pc, "openai.chatgpt", false, NOW + 86_400_000).await;
    alert(store, pc, "old.product", false, NOW - 30 * 86_400_000).await;
    let tallies = store.alert_tallies().await.unwrap();
    let total: i64 = tallies.iter().map(|t| t.count).sum();
    assert_eq!(total, 3);
    let per_day = store.alerts_per_day(NOW - 86_400_000).await.unwrap();
    assert_eq!(per_day.iter().map(|(_, n)| n).sum::<i64>(), 2);
    let new = store
        .products_first_seen_since(NOW - 1000, 10)
        .await
        .unwrap();
    assert_eq!(new.len(), 1);
    assert_eq!(
        (new[0].product.as_str(), new[0].hosts),
        ("openai.chatgpt", 2)
    );
    let risky = store.risky_hosts(10).await.unwrap();
    assert_eq!(risky.len(), 1);
    assert_eq!(risky[0].hostname, "mac");
    let counts = store.alert_counts_by_agent().await.unwrap();
    assert_eq!(counts.iter().find(|c| c.agent_id == pc).unwrap().alerts, 2);
    let usage = store.product_usage(10).await.unwrap();
    assert_eq!(usage.len(), 2);
    assert_eq!(usage[0].observations, 2);
}
