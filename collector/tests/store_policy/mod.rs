//! Findings, the alert policy and the policy tables, on every backend (instantiated by the
//! `backend_tests!` list in `../store.rs`). One test per alert reason, each with a positive and a
//! negative case.

use serde_json::json;
use shadowai_collector::policy::admin::{self, SuppressionRequest};
use shadowai_collector::store::{
    Alert, AlertFilters, AlertQuery, Finding, FindingQuery, Heartbeat, MAX_ALERT_LINKS,
    NewObservation, PolicyActor, PolicyRuleKind, Signal, Store, SuppressedFilter,
};
use sqlx::Connection;
use uuid::Uuid;

use super::{HOUR, NOW, TestDb, enrolled_agent, observation};

fn actor() -> PolicyActor {
    PolicyActor {
        who: "user:admin".to_owned(),
        from: "192.0.2.1".to_owned(),
    }
}

/// Runs SQL outside the product (what a triage action or a tamperer would do).
async fn execute(db: &TestDb, sql: &str) {
    if db.url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    } else {
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }
}

async fn alerts_with(store: &Store, filters: AlertFilters) -> Vec<Alert> {
    let query = AlertQuery {
        limit: 1000,
        after: None,
        status: None,
        product: None,
    };
    store
        .list_alerts_filtered(&query, &filters)
        .await
        .unwrap()
        .items
}

async fn all(store: &Store) -> Vec<Alert> {
    alerts_with(
        store,
        AlertFilters {
            suppressed: SuppressedFilter::Include,
            ..AlertFilters::default()
        },
    )
    .await
}

async fn of_reason(store: &Store, reason: &str) -> Vec<Alert> {
    all(store)
        .await
        .into_iter()
        .filter(|a| a.reason == reason)
        .collect()
}

async fn findings(store: &Store) -> Vec<Finding> {
    let query = FindingQuery {
        limit: 1000,
        ..FindingQuery::default()
    };
    store.list_findings(&query).await.unwrap().items
}

fn with_risk(mut o: NewObservation, risk: &[&str]) -> NewObservation {
    o.risk = risk.iter().map(|r| (*r).to_owned()).collect();
    o
}

fn config(product: &str, mcp_server: &str, risk: &[&str], at: i64) -> NewObservation {
    let mut o = with_risk(observation(product, at), risk);
    o.signal = Signal::Config;
    o.name = "/home/alice/.claude.json".to_owned();
    o.category = "coding_assistant".to_owned();
    o.process = None;
    o.details = json!({"path": "/home/alice/.claude.json", "setting": "mcpServers", "value": "",
        "mcp_server": mcp_server, "mcp_target": "", "mcp_transport": "stdio"});
    o
}

async fn sanction(store: &Store, product: &str, category: &str, group: &str) {
    admin::sanction(store, product, group, Some(category), "", &actor(), NOW)
        .await
        .unwrap();
}

// ------------------------------------------------------------------------------------- findings

pub async fn findings_aggregate_per_host_user_product_and_signal(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    let a = observation("ollama.ollama", NOW + 1_000);
    let mut b = with_risk(observation("ollama.ollama", NOW), &["network_exposed"]);
    b.count = 5;
    b.plan = Some("free".to_owned());
    let mut c = observation("ollama.ollama", NOW + 2_000);
    c.process.as_mut().unwrap().user = "bob".to_owned();
    let mut dns = observation("ollama.ollama", NOW + 3_000);
    dns.signal = Signal::Dns;
    dns.process = None;
    dns.tenant = Some("contoso".to_owned());
    let first_server = config("anthropic.claude-code", "github", &[], NOW);
    let second_server = config("anthropic.claude-code", "filesystem", &[], NOW);
    store
        .insert_observations(
            laptop,
            &[a.clone(), b.clone(), c, dns, first_server, second_server],
            NOW,
        )
        .await
        .unwrap();
    // A later batch grows the risk flags of the alice/process finding.
    let d = with_risk(
        observation("ollama.ollama", NOW + 500),
        &["approval_bypass"],
    );
    store
        .insert_observations(laptop, std::slice::from_ref(&d), NOW)
        .await
        .unwrap();

    let found = findings(store).await;
    assert_eq!(found.len(), 5, "{found:#?}");
    let alice = found
        .iter()
        .find(|f| f.user_name == "alice" && f.signal == Signal::Process)
        .unwrap();
    assert_eq!(alice.count, 7, "counts are summed: 1 + 5 + 1");
    assert_eq!(
        (alice.first_seen_ms, alice.last_seen_ms),
        (NOW, NOW + 1_000)
    );
    assert_eq!(
        (alice.first_observation_id, alice.last_observation_id),
        (b.id, a.id)
    );
    assert_eq!(alice.risk, ["approval_bypass", "network_exposed"]);
    assert_eq!(alice.plan.as_deref(), Some("free"));
    assert_eq!(
        (alice.hostname.as_str(), alice.group.as_str()),
        ("laptop", "laptops")
    );
    assert_eq!(alice.rule, "data/ollama.toml#ollama.ollama/process[0]");
    let bob = found.iter().find(|f| f.user_name == "bob").unwrap();
    assert_eq!((bob.count, bob.risk.len()), (1, 0));
    let by_dns = found.iter().find(|f| f.signal == Signal::Dns).unwrap();
    assert_eq!(
        (by_dns.user_name.as_str(), by_dns.tenant.as_deref()),
        ("", Some("contoso"))
    );
    let mut servers: Vec<&str> = found
        .iter()
        .filter(|f| f.signal == Signal::Config)
        .map(|f| f.subject.as_str())
        .collect();
    servers.sort_unstable();
    assert_eq!(
        servers,
        ["filesystem", "github"],
        "each MCP server is its own finding"
    );

    // Filters.
    let query = FindingQuery {
        limit: 10,
        risk: Some("network_exposed".to_owned()),
        ..FindingQuery::default()
    };
    assert_eq!(store.list_findings(&query).await.unwrap().items.len(), 1);
    let query = FindingQuery {
        limit: 10,
        user: Some("bob".to_owned()),
        signal: Some(Signal::Process),
        agent_id: Some(laptop),
        ..FindingQuery::default()
    };
    assert_eq!(store.list_findings(&query).await.unwrap().items.len(), 1);
    let query = FindingQuery {
        limit: 2,
        ..FindingQuery::default()
    };
    let first_page = store.list_findings(&query).await.unwrap();
    assert_eq!(first_page.items.len(), 2);
    let next = FindingQuery {
        limit: 10,
        after: first_page.next,
        ..FindingQuery::default()
    };
    assert_eq!(store.list_findings(&next).await.unwrap().items.len(), 3);
    db
}

// ------------------------------------------------------------------------------ one per reason

pub async fn reason_new_product_only_for_unsanctioned_products(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    sanction(store, "openai.codex", "coding_assistant", "").await;
    sanction(
        store,
        "lmstudio.lmstudio",
        "local_model_runtime",
        "research",
    )
    .await;
    let outcome = store
        .insert_observations(
            laptop,
            &[
                observation("openai.codex", NOW),
                observation("lmstudio.lmstudio", NOW),
                observation("ollama.ollama", NOW),
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(outcome.alerts_raised, 2);
    let raised: Vec<String> = of_reason(store, "new_product")
        .await
        .into_iter()
        .map(|a| a.product)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        raised,
        ["lmstudio.lmstudio", "ollama.ollama"],
        "the research sanction does not cover laptops"
    );
    let alert = of_reason(store, "new_product")
        .await
        .into_iter()
        .find(|a| a.product == "ollama.ollama")
        .unwrap();
    assert!(
        alert
            .explanation
            .contains("data/ollama.toml#ollama.ollama/process[0]"),
        "{}",
        alert.explanation
    );
    assert!(
        alert.explanation.contains("laptops"),
        "{}",
        alert.explanation
    );
    assert_eq!(alert.severity, "medium");
    db
}

pub async fn reason_risky_agent_setting(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    sanction(store, "openai.codex", "coding_assistant", "").await;
    let quiet = config("openai.codex", "", &[], NOW);
    store
        .insert_observations(laptop, &[quiet], NOW)
        .await
        .unwrap();
    assert!(
        all(store).await.is_empty(),
        "a sanctioned tool with safe settings raises nothing"
    );
    let risky = config(
        "openai.codex",
        "",
        &["approval_bypass", "sandbox_off"],
        NOW + 1,
    );
    store
        .insert_observations(laptop, std::slice::from_ref(&risky), NOW)
        .await
        .unwrap();
    let alerts = of_reason(store, "risky_agent_setting").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].severity, "high",
        "critical, one step lower because sanctioned"
    );
    assert_eq!(alerts[0].first_observation_id, Some(risky.id));
    assert!(
        alerts[0]
            .explanation
            .contains("approval_bypass, sandbox_off"),
        "{}",
        alerts[0].explanation
    );
    db
}

pub async fn reason_agent_infra_cli_and_agent_shell(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    sanction(store, "anthropic.claude-code", "coding_assistant", "").await;
    let mut plain = observation("anthropic.claude-code", NOW);
    plain.category = "coding_assistant".to_owned();
    store
        .insert_observations(laptop, &[plain.clone()], NOW)
        .await
        .unwrap();
    assert!(all(store).await.is_empty());
    let mut kubectl = with_risk(plain.clone(), &["agent_infra_cli"]);
    kubectl.id = Uuid::now_v7();
    kubectl.process.as_mut().unwrap().name = "kubectl".to_owned();
    let mut bash = with_risk(plain.clone(), &["agent_shell"]);
    bash.id = Uuid::now_v7();
    bash.process.as_mut().unwrap().name = "bash".to_owned();
    let mut again = kubectl.clone();
    again.id = Uuid::now_v7();
    store
        .insert_observations(laptop, &[kubectl, bash, again], NOW)
        .await
        .unwrap();
    let infra = of_reason(store, "agent_infra_cli").await;
    assert_eq!(
        (infra.len(), infra[0].count, infra[0].severity.as_str()),
        (1, 2, "medium")
    );
    assert!(infra[0].title.contains("kubectl"), "{}", infra[0].title);
    let shell = of_reason(store, "agent_shell").await;
    assert_eq!((shell.len(), shell[0].severity.as_str()), (1, "low"));
    db
}

pub async fn reason_new_mcp_server(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    sanction(store, "anthropic.claude-code", "coding_assistant", "").await;
    store
        .insert_observations(
            laptop,
            &[config("anthropic.claude-code", "", &[], NOW)],
            NOW,
        )
        .await
        .unwrap();
    assert!(
        all(store).await.is_empty(),
        "a config without an MCP server"
    );
    store
        .insert_observations(
            laptop,
            &[config("anthropic.claude-code", "github", &[], NOW)],
            NOW,
        )
        .await
        .unwrap();
    let known = of_reason(store, "new_mcp_server").await;
    assert_eq!((known.len(), known[0].severity.as_str()), (1, "low"));
    // Resolved; then the same server reported again (agent restart) is no new alert, a new
    // unknown server is, and higher.
    execute(&db, "UPDATE alerts SET status = 'resolved'").await;
    store
        .insert_observations(
            laptop,
            &[
                config("anthropic.claude-code", "github", &[], NOW + 1),
                config(
                    "anthropic.claude-code",
                    "my-tool",
                    &["mcp_unknown_server"],
                    NOW + 2,
                ),
            ],
            NOW,
        )
        .await
        .unwrap();
    let alerts = of_reason(store, "new_mcp_server").await;
    assert_eq!(alerts.len(), 2);
    let open: Vec<_> = alerts.iter().filter(|a| a.status == "open").collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].severity, "high");
    assert!(open[0].title.contains("my-tool"), "{}", open[0].title);
    db
}

pub async fn reason_exposed_model_server(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    sanction(store, "ollama.ollama", "local_model_runtime", "").await;
    let listener = |address: &str, exposed: bool| {
        let mut o = observation("ollama.ollama", NOW);
        o.signal = Signal::Listener;
        o.name = format!("{address}:11434");
        o.process = None;
        o.details =
            json!({"address": address, "port": 11434, "protocol": "tcp", "exposed": exposed});
        if exposed {
            o.risk = vec!["network_exposed".to_owned()];
        }
        o
    };
    store
        .insert_observations(laptop, &[listener("127.0.0.1", false)], NOW)
        .await
        .unwrap();
    assert!(all(store).await.is_empty(), "loopback is fine");
    store
        .insert_observations(laptop, &[listener("0.0.0.0", true)], NOW)
        .await
        .unwrap();
    let alerts = of_reason(store, "exposed_model_server").await;
    assert_eq!(
        (alerts.len(), alerts[0].severity.as_str()),
        (1, "medium"),
        "high, sanctioned: medium"
    );
    assert!(
        alerts[0].title.contains("0.0.0.0:11434"),
        "{}",
        alerts[0].title
    );
    db
}

pub async fn reason_consumer_ai_use(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    admin::set_setting(store, "consumer_use_threshold", 3, &actor(), NOW)
        .await
        .unwrap();
    let chat = |at: i64| {
        let mut o = observation("openai.chatgpt", at);
        o.signal = Signal::Dns;
        o.name = "chatgpt.com".to_owned();
        o.category = "chat_app".to_owned();
        o.process = None;
        o
    };
    // No sanctioned alternative: no consumer_ai_use, however often.
    store
        .insert_observations(laptop, &[chat(NOW), chat(NOW + 1), chat(NOW + 2)], NOW)
        .await
        .unwrap();
    assert!(of_reason(store, "consumer_ai_use").await.is_empty());
    sanction(store, "microsoft.copilot", "chat_app", "laptops").await;
    // Count 3 -> 4 is past the threshold: nothing opens from a bump...
    store
        .insert_observations(laptop, &[chat(NOW + 3)], NOW)
        .await
        .unwrap();
    assert!(of_reason(store, "consumer_ai_use").await.is_empty());
    // ...but a new finding crossing it does (another host).
    let (desktop, _) = enrolled_agent(store, "desktop").await;
    store
        .insert_observations(desktop, &[chat(NOW), chat(NOW + 1)], NOW)
        .await
        .unwrap();
    assert!(
        of_reason(store, "consumer_ai_use").await.is_empty(),
        "2 < 3"
    );
    store
        .insert_observations(desktop, &[chat(NOW + 2), chat(NOW + 3)], NOW)
        .await
        .unwrap();
    let alerts = of_reason(store, "consumer_ai_use").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].agent_id, alerts[0].count), (desktop, 2));
    assert!(
        alerts[0].explanation.contains("microsoft.copilot"),
        "{}",
        alerts[0].explanation
    );
    assert!(
        alerts[0].explanation.contains("threshold of 3"),
        "{}",
        alerts[0].explanation
    );
    db
}

pub async fn reason_personal_plan(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    admin::add_tenant(
        store,
        "microsoft.azure-openai",
        "Contoso",
        "",
        "our resource",
        &actor(),
        NOW,
    )
    .await
    .unwrap();
    let azure = |tenant: &str, at: i64| {
        let mut o = observation("microsoft.azure-openai", at);
        o.signal = Signal::TlsSni;
        o.name = format!("{tenant}.openai.azure.com");
        o.category = "model_api".to_owned();
        o.tenant = Some(tenant.to_owned());
        o.process.as_mut().unwrap().user = format!("user-{tenant}");
        o
    };
    store
        .insert_observations(laptop, &[azure("contoso", NOW)], NOW)
        .await
        .unwrap();
    assert!(all(store).await.is_empty(), "our tenant is sanctioned");
    store
        .insert_observations(laptop, &[azure("fabrikam", NOW)], NOW)
        .await
        .unwrap();
    let alerts = of_reason(store, "personal_plan").await;
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].explanation.contains("fabrikam"),
        "{}",
        alerts[0].explanation
    );
    db
}

pub async fn reason_sensor_silent(db: TestDb) -> TestDb {
    let store = &db.store;
    let (quiet, _) = enrolled_agent(store, "quiet").await;
    let (chatty, _) = enrolled_agent(store, "chatty").await;
    let (revoked, _) = enrolled_agent(store, "revoked").await;
    store.revoke_agent(revoked, "test", NOW).await.unwrap();
    admin::set_setting(store, "silent_after_ms", HOUR, &actor(), NOW)
        .await
        .unwrap();
    store
        .insert_observations(chatty, &[], NOW + 2 * HOUR)
        .await
        .unwrap();
    let early = store.sweep_silent(NOW + HOUR - 1).await.unwrap();
    assert_eq!(early.silent_alerts_raised, 0);
    let outcome = store.sweep_silent(NOW + 2 * HOUR).await.unwrap();
    assert_eq!(outcome.silent_alerts_raised, 1);
    let again = store.sweep_silent(NOW + 2 * HOUR + HOUR / 2).await.unwrap();
    assert_eq!(
        (again.silent_alerts_raised, again.silent_alerts_bumped),
        (0, 0),
        "same silence"
    );
    let alerts = of_reason(store, "sensor_silent").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].agent_id, quiet);
    assert_eq!(
        (
            alerts[0].first_observation_id,
            alerts[0].last_observation_id
        ),
        (None, None)
    );
    assert_eq!(alerts[0].last_seen_ms, NOW, "the last contact");
    // It talks, then falls silent again: the open alert counts a second episode.
    store
        .insert_observations(quiet, &[], NOW + 4 * HOUR)
        .await
        .unwrap();
    let later = store.sweep_silent(NOW + 6 * HOUR).await.unwrap();
    assert_eq!(
        (later.silent_alerts_raised, later.silent_alerts_bumped),
        (1, 1),
        "chatty's first silence, quiet's second"
    );
    let quiet_alert = of_reason(store, "sensor_silent")
        .await
        .into_iter()
        .find(|a| a.agent_id == quiet)
        .unwrap();
    assert_eq!(quiet_alert.count, 2);
    db
}

pub async fn reason_sensor_blinded(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    let heartbeat = |health: serde_json::Value| Heartbeat {
        hostname: "laptop".to_owned(),
        os: "linux".to_owned(),
        os_version: "6.1".to_owned(),
        arch: "x86_64".to_owned(),
        agent_version: "0.1.0".to_owned(),
        catalog_version: "1".to_owned(),
        health,
    };
    let healthy = json!({"sensors": [{"sensor": "network", "state": "SENSOR_STATE_OK", "detail": ""}],
        "blind_spots": [], "degraded": false});
    store
        .record_heartbeat(laptop, &heartbeat(healthy.clone()), NOW)
        .await
        .unwrap();
    assert!(all(store).await.is_empty());
    let doh = json!({"sensors": [], "blind_spots": [{"kind": "doh", "detail": "Firefox DoH", "since_ms": NOW}],
        "degraded": false});
    store
        .record_heartbeat(laptop, &heartbeat(doh.clone()), NOW + 1)
        .await
        .unwrap();
    store
        .record_heartbeat(laptop, &heartbeat(doh.clone()), NOW + 2)
        .await
        .unwrap();
    let alerts = of_reason(store, "sensor_blinded").await;
    assert_eq!(
        (alerts.len(), alerts[0].count, alerts[0].severity.as_str()),
        (1, 1, "medium")
    );
    let blind = json!({"sensors": [{"sensor": "network", "state": "SENSOR_STATE_BLIND", "detail": "no CAP_NET_RAW"}],
        "blind_spots": [{"kind": "doh", "detail": "", "since_ms": NOW}], "degraded": true});
    store
        .record_heartbeat(laptop, &heartbeat(blind), NOW + 3)
        .await
        .unwrap();
    let alerts = of_reason(store, "sensor_blinded").await;
    assert_eq!(
        (alerts.len(), alerts[0].count, alerts[0].severity.as_str()),
        (1, 2, "high")
    );
    assert!(
        alerts[0].title.contains("network_blind"),
        "{}",
        alerts[0].title
    );
    assert_eq!(
        store.list_agents().await.unwrap()[0].last_contact_ms,
        NOW + 3
    );
    db
}

// ------------------------------------------------------------------------- dedup, links, policy

pub async fn a_resolved_alert_that_fires_again_opens_a_new_one(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    let kubectl = || {
        let mut o = with_risk(
            observation("anthropic.claude-code", NOW),
            &["agent_infra_cli"],
        );
        o.category = "coding_assistant".to_owned();
        o
    };
    let batch: Vec<_> = (0..MAX_ALERT_LINKS + 8).map(|_| kubectl()).collect();
    store
        .insert_observations(laptop, &batch, NOW)
        .await
        .unwrap();
    let open = of_reason(store, "agent_infra_cli").await;
    assert_eq!((open.len(), open[0].count), (1, MAX_ALERT_LINKS + 8));
    let linked = store.alert_observation_ids(open[0].id).await.unwrap();
    assert_eq!(
        linked.len() as i64,
        MAX_ALERT_LINKS,
        "the evidence list is bounded"
    );
    assert!(linked.contains(&batch[0].id));
    execute(&db, "UPDATE alerts SET status = 'resolved'").await;
    let outcome = store
        .insert_observations(laptop, &[kubectl()], NOW)
        .await
        .unwrap();
    assert_eq!(outcome.alerts_raised, 1);
    let alerts = of_reason(store, "agent_infra_cli").await;
    assert_eq!(alerts.len(), 2);
    let reopened = alerts.iter().find(|a| a.status == "open").unwrap();
    assert_eq!(reopened.count, 1);
    assert_eq!(
        store
            .alert_observation_ids(reopened.id)
            .await
            .unwrap()
            .len(),
        1
    );
    db
}

pub async fn overrides_and_suppressions_apply_and_expire(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    admin::add_override(
        store,
        "new_product",
        "ollama.ollama",
        "",
        "critical",
        "board asked",
        &actor(),
        NOW,
    )
    .await
    .unwrap();
    store
        .insert_observations(laptop, &[observation("ollama.ollama", NOW)], NOW)
        .await
        .unwrap();
    let alert = of_reason(store, "new_product").await.remove(0);
    assert_eq!(alert.severity, "critical");
    assert!(
        alert.explanation.contains("override"),
        "{}",
        alert.explanation
    );

    let request = SuppressionRequest {
        product: "ollama.ollama".to_owned(),
        owner: "bob".to_owned(),
        note: "lab machines".to_owned(),
        expires_at_ms: NOW + HOUR,
        ..SuppressionRequest::default()
    };
    let suppression = admin::suppress(store, &request, &actor(), NOW)
        .await
        .unwrap();
    // The open alert is suppressed at once, and further firings are recorded but stay suppressed.
    store
        .insert_observations(laptop, &[observation("ollama.ollama", NOW + 1)], NOW + 1)
        .await
        .unwrap();
    assert!(
        alerts_with(store, AlertFilters::default()).await.is_empty(),
        "hidden from the queue"
    );
    let suppressed = alerts_with(
        store,
        AlertFilters {
            suppressed: SuppressedFilter::Only,
            ..AlertFilters::default()
        },
    )
    .await;
    assert_eq!(suppressed.len(), 1);
    assert_eq!(
        (suppressed[0].suppressed_by, suppressed[0].count),
        (Some(suppression.id), 2)
    );
    // Expiry: the sweep releases it.
    let swept = store.sweep_silent(NOW + HOUR).await.unwrap();
    assert_eq!(swept.alerts_unsuppressed, 1);
    assert_eq!(alerts_with(store, AlertFilters::default()).await.len(), 1);
    // Lifting releases at once.
    let second = admin::suppress(
        store,
        &SuppressionRequest {
            expires_at_ms: NOW + 3 * HOUR,
            ..request.clone()
        },
        &actor(),
        NOW + 2 * HOUR,
    )
    .await
    .unwrap();
    assert!(alerts_with(store, AlertFilters::default()).await.is_empty());
    store
        .lift_suppression(second.id, &actor(), NOW + 2 * HOUR)
        .await
        .unwrap();
    assert_eq!(alerts_with(store, AlertFilters::default()).await.len(), 1);
    assert!(
        store
            .lift_suppression(second.id, &actor(), NOW + 2 * HOUR)
            .await
            .is_err()
    );
    // Refusals.
    for bad in [
        SuppressionRequest {
            expires_at_ms: NOW - 1,
            ..request.clone()
        },
        SuppressionRequest {
            owner: String::new(),
            ..request.clone()
        },
        SuppressionRequest {
            product: String::new(),
            ..request.clone()
        },
        SuppressionRequest {
            agent_id: "not-a-uuid".to_owned(),
            ..request.clone()
        },
    ] {
        assert!(
            admin::suppress(store, &bad, &actor(), NOW).await.is_err(),
            "{bad:?}"
        );
    }
    db
}

pub async fn policy_changes_are_audited_with_before_and_after(db: TestDb) -> TestDb {
    let store = &db.store;
    sanction(store, "github.copilot", "coding_assistant", "").await;
    assert!(
        admin::sanction(store, "github.copilot", "", None, "", &actor(), NOW)
            .await
            .is_err(),
        "twice is a conflict"
    );
    assert!(
        admin::sanction(store, "no.such-product", "", None, "", &actor(), NOW)
            .await
            .is_err()
    );
    let tenant = admin::add_tenant(
        store,
        "github.copilot",
        "contoso-org",
        "",
        "",
        &actor(),
        NOW,
    )
    .await
    .unwrap();
    store
        .remove_policy_rule(PolicyRuleKind::Tenant, tenant.id, &actor(), NOW + 1)
        .await
        .unwrap();
    admin::set_setting(store, "silent_after_ms", HOUR, &actor(), NOW + 2)
        .await
        .unwrap();
    admin::set_setting(store, "silent_after_ms", 2 * HOUR, &actor(), NOW + 3)
        .await
        .unwrap();
    assert!(
        admin::set_setting(store, "silent_after_ms", 1, &actor(), NOW)
            .await
            .is_err()
    );
    admin::unsanction(store, "github.copilot", "", &actor(), NOW + 4)
        .await
        .unwrap();

    let changes = store.list_policy_changes(100, None).await.unwrap();
    let kinds: Vec<&str> = changes.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "sanction.remove",
            "setting.set",
            "setting.set",
            "tenant.remove",
            "tenant.add",
            "sanction.add"
        ]
    );
    assert!(
        changes
            .iter()
            .all(|c| c.actor == "user:admin" && c.source == "192.0.2.1")
    );
    assert_eq!(
        changes[1].before,
        Some(json!({"name": "silent_after_ms", "value": HOUR}))
    );
    assert_eq!(
        changes[1].after,
        Some(json!({"name": "silent_after_ms", "value": 2 * HOUR}))
    );
    assert_eq!(changes[2].before, None);
    assert_eq!(
        changes[0].before.as_ref().unwrap()["product"],
        "github.copilot"
    );
    assert_eq!(changes[0].after, None);
    assert_eq!(
        changes[5].after.as_ref().unwrap()["category"],
        "coding_assistant"
    );
    let policy = store.read_policy(NOW).await.unwrap();
    assert!(policy.sanctions.is_empty() && policy.tenants.is_empty());
    assert_eq!(policy.settings.silent_after_ms, 2 * HOUR);
    // Another collector on the same database reads the same policy.
    let other = Store::connect(&db.url).await.unwrap();
    assert_eq!(other.read_policy(NOW).await.unwrap(), policy);
    other.close().await;
    db
}

pub async fn alert_listing_filters(db: TestDb) -> TestDb {
    let store = &db.store;
    let (laptop, _) = enrolled_agent(store, "laptop").await;
    let (desktop, _) = enrolled_agent(store, "desktop").await;
    let mut shell = with_risk(
        observation("anthropic.claude-code", NOW + HOUR),
        &["agent_shell"],
    );
    shell.category = "coding_assistant".to_owned();
    shell.process.as_mut().unwrap().user = "bob".to_owned();
    store
        .insert_observations(laptop, &[observation("ollama.ollama", NOW), shell], NOW)
        .await
        .unwrap();
    store
        .insert_observations(
            desktop,
            &[observation("ollama.ollama", NOW + 2 * HOUR)],
            NOW,
        )
        .await
        .unwrap();
    let count = |filters: AlertFilters| async move { alerts_with(store, filters).await.len() };
    assert_eq!(
        count(AlertFilters::default()).await,
        4,
        "ollama x2, claude-code new_product and shell"
    );
    assert_eq!(
        count(AlertFilters {
            reason: Some("agent_shell".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AlertFilters {
            severity: Some("high".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AlertFilters {
            category: Some("coding_assistant".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AlertFilters {
            agent_id: Some(desktop),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(AlertFilters {
            user: Some("bob".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(AlertFilters {
            group: Some("laptops".into()),
            ..Default::default()
        })
        .await,
        4
    );
    assert_eq!(
        count(AlertFilters {
            group: Some("servers".into()),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        count(AlertFilters {
            since_ms: Some(NOW + HOUR),
            until_ms: Some(NOW + 2 * HOUR),
            ..Default::default()
        })
        .await,
        2
    );
    db
}
