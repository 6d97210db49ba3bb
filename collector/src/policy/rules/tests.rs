use serde_json::json;

use super::*;
use crate::store::ObservedProcess;

fn observation(product: &str, category: &str, risk: &[&str]) -> NewObservation {
    NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: 1_750_000_000_000,
        signal: Signal::Process,
        name: "tool".to_owned(),
        product: product.to_owned(),
        vendor: "Vendor".to_owned(),
        category: category.to_owned(),
        rule: format!("data/x.toml#{product}/process/cli"),
        reason: "matched".to_owned(),
        risk: risk.iter().map(|r| (*r).to_owned()).collect(),
        confidence: "high".to_owned(),
        plan: None,
        tenant: None,
        catalog_version: "1".to_owned(),
        count: 1,
        process: Some(ObservedProcess {
            pid: 10,
            parent_pid: 1,
            name: "kubectl".to_owned(),
            exe: "/usr/bin/kubectl".to_owned(),
            cmdline: "kubectl get pods".to_owned(),
            user: "alice".to_owned(),
        }),
        details: json!({"event": "started"}),
        evidence: Vec::new(),
    }
}

fn new_finding() -> FindingState {
    FindingState {
        is_new: true,
        count_before: 0,
        count_after: 1,
        new_risk: Vec::new(),
    }
}

fn known_finding(count_before: i64) -> FindingState {
    FindingState {
        is_new: false,
        count_before,
        count_after: count_before + 1,
        new_risk: Vec::new(),
    }
}

fn sanction(product: &str, category: &str, group: &str) -> Sanction {
    Sanction {
        id: Uuid::now_v7(),
        product: product.to_owned(),
        category: category.to_owned(),
        group: group.to_owned(),
        note: String::new(),
        created_at_ms: 0,
        created_by: "test".to_owned(),
    }
}

fn tenant(product: &str, tenant: &str) -> TenantRule {
    TenantRule {
        id: Uuid::now_v7(),
        product: product.to_owned(),
        tenant: tenant.to_owned(),
        group: String::new(),
        note: String::new(),
        created_at_ms: 0,
        created_by: "test".to_owned(),
    }
}

/// The (reason, firing, severity) triples, sorted by reason.
fn check(actions: &[AlertAction]) -> Vec<(&'static str, Firing, Severity)> {
    let mut seen: Vec<_> = actions
        .iter()
        .map(|a| (a.reason.as_str(), a.firing, a.severity))
        .collect();
    seen.sort_by_key(|s| s.0);
    seen
}

#[test]
fn names_round_trip() {
    for reason in Reason::ALL {
        assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
    }
    for severity in Severity::ALL {
        assert_eq!(severity.as_str().parse::<Severity>(), Ok(severity));
    }
    assert!("New_Product".parse::<Reason>().is_err());
    assert_eq!(Severity::Info.shifted(-1), Severity::Info);
    assert_eq!(Severity::High.shifted(5), Severity::Critical);
    assert_eq!(Severity::Medium.shifted(-1), Severity::Low);
}

#[test]
fn a_new_unsanctioned_product_raises_and_a_known_one_bumps() {
    let policy = PolicySnapshot::default();
    let o = observation("ollama.ollama", "local_model_runtime", &[]);
    let actions = evaluate(&o, "laptops", &new_finding(), &policy);
    assert_eq!(
        check(&actions),
        [("new_product", Firing::Raise, Severity::Medium)]
    );
    assert!(
        actions[0]
            .explanation
            .contains("data/x.toml#ollama.ollama/process/cli")
    );
    assert_eq!(
        check(&evaluate(&o, "laptops", &known_finding(3), &policy)),
        [("new_product", Firing::Bump, Severity::Medium)]
    );
    let chat = observation("openai.chatgpt", "chat_app", &[]);
    assert_eq!(
        check(&evaluate(&chat, "laptops", &new_finding(), &policy)),
        [("new_product", Firing::Raise, Severity::Low)]
    );
}

#[test]
fn sanctioned_products_raise_no_new_product_alert_only_in_their_group() {
    let mut policy = PolicySnapshot::default();
    policy
        .sanctions
        .push(sanction("ollama.ollama", "local_model_runtime", "research"));
    let o = observation("ollama.ollama", "local_model_runtime", &[]);
    assert!(evaluate(&o, "research", &new_finding(), &policy).is_empty());
    assert_eq!(evaluate(&o, "sales", &new_finding(), &policy).len(), 1);
    policy
        .sanctions
        .push(sanction("ollama.ollama", "local_model_runtime", ""));
    assert!(evaluate(&o, "sales", &new_finding(), &policy).is_empty());
}

#[test]
fn risky_settings_grade_by_flags_and_sanction() {
    let mut policy = PolicySnapshot::default();
    let both = observation(
        "openai.codex",
        "coding_assistant",
        &["approval_bypass", "sandbox_off"],
    );
    let risky = evaluate(&both, "g", &new_finding(), &policy);
    assert!(check(&risky).contains(&("risky_agent_setting", Firing::Raise, Severity::Critical)));
    let edit = observation("openai.codex", "coding_assistant", &["auto_edit"]);
    assert!(
        check(&evaluate(&edit, "g", &known_finding(2), &policy)).contains(&(
            "risky_agent_setting",
            Firing::Bump,
            Severity::Medium
        ))
    );
    // A flag new to a known finding raises.
    let mut gained = known_finding(2);
    gained.new_risk = vec!["auto_edit".to_owned()];
    assert!(check(&evaluate(&edit, "g", &gained, &policy)).contains(&(
        "risky_agent_setting",
        Firing::Raise,
        Severity::Medium
    )));
    policy
        .sanctions
        .push(sanction("openai.codex", "coding_assistant", ""));
    assert_eq!(
        check(&evaluate(&both, "g", &new_finding(), &policy)),
        [("risky_agent_setting", Firing::Raise, Severity::High)]
    );
    // Flags outside the list raise nothing of this reason.
    let other = observation("openai.codex", "coding_assistant", &["network_exposed"]);
    assert!(
        !check(&evaluate(&other, "g", &new_finding(), &policy))
            .iter()
            .any(|a| a.0 == "risky_agent_setting")
    );
}

#[test]
fn agent_lineage_raises_every_time() {
    let mut policy = PolicySnapshot::default();
    policy
        .sanctions
        .push(sanction("anthropic.claude-code", "coding_assistant", ""));
    let infra = observation(
        "anthropic.claude-code",
        "coding_assistant",
        &["agent_infra_cli"],
    );
    let actions = evaluate(&infra, "g", &known_finding(9), &policy);
    assert_eq!(
        check(&actions),
        [("agent_infra_cli", Firing::Raise, Severity::Medium)]
    );
    assert!(actions[0].title.contains("kubectl"), "{}", actions[0].title);
    let shell = observation(
        "anthropic.claude-code",
        "coding_assistant",
        &["agent_shell"],
    );
    assert_eq!(
        check(&evaluate(&shell, "g", &known_finding(9), &policy)),
        [("agent_shell", Firing::Raise, Severity::Low)]
    );
}

#[test]
fn mcp_servers_unknown_or_remote_are_higher() {
    let mut policy = PolicySnapshot::default();
    policy
        .sanctions
        .push(sanction("anthropic.claude-code", "coding_assistant", ""));
    let mut known = observation("anthropic.claude-code", "coding_assistant", &[]);
    known.signal = Signal::Config;
    known.process = None;
    known.details =
        json!({"path": "~/.claude.json", "mcp_server": "github", "mcp_transport": "stdio"});
    assert_eq!(
        check(&evaluate(&known, "g", &new_finding(), &policy)),
        [("new_mcp_server", Firing::Raise, Severity::Low)]
    );
    let mut remote = known.clone();
    remote.risk = vec!["mcp_auto_trust".to_owned(), "mcp_remote".to_owned()];
    let actions = evaluate(&remote, "g", &known_finding(1), &policy);
    let mcp: Vec<_> = check(&actions)
        .into_iter()
        .filter(|a| a.0 == "new_mcp_server")
        .collect();
    assert_eq!(mcp, [("new_mcp_server", Firing::Bump, Severity::Critical)]);
    let mut unknown = known.clone();
    unknown.risk = vec!["mcp_unknown_server".to_owned()];
    assert_eq!(
        check(&evaluate(&unknown, "g", &new_finding(), &policy)),
        [("new_mcp_server", Firing::Raise, Severity::High)]
    );
    // A config observation without a server is no MCP alert.
    let mut plain = known.clone();
    plain.details = json!({"path": "~/.claude.json", "mcp_server": ""});
    assert!(evaluate(&plain, "g", &new_finding(), &policy).is_empty());
}

#[test]
fn exposed_listeners_are_high() {
    let policy = PolicySnapshot::default();
    let mut listener = observation("ollama.ollama", "local_model_runtime", &[]);
    listener.signal = Signal::Listener;
    listener.name = "0.0.0.0:11434".to_owned();
    listener.details = json!({"address": "0.0.0.0", "port": 11434, "exposed": true});
    assert!(
        check(&evaluate(&listener, "g", &new_finding(), &policy)).contains(&(
            "exposed_model_server",
            Firing::Raise,
            Severity::High
        ))
    );
    listener.details = json!({"address": "127.0.0.1", "port": 11434, "exposed": false});
    assert!(
        !check(&evaluate(&listener, "g", &new_finding(), &policy))
            .iter()
            .any(|a| a.0 == "exposed_model_server")
    );
}

#[test]
fn consumer_use_fires_at_the_threshold_only_with_a_sanctioned_alternative() {
    let mut policy = PolicySnapshot::default();
    policy.settings.consumer_use_threshold = 5;
    let chat = observation("openai.chatgpt", "chat_app", &[]);
    let at = |before: i64| FindingState {
        is_new: false,
        count_before: before,
        count_after: before + 1,
        new_risk: Vec::new(),
    };
    let reasons = |actions: Vec<AlertAction>| {
        check(&actions)
            .into_iter()
            .map(|a| (a.0, a.1))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reasons(evaluate(&chat, "g", &at(4), &policy)),
        [("new_product", Firing::Bump)]
    );
    policy
        .sanctions
        .push(sanction("microsoft.copilot", "chat_app", "g"));
    assert_eq!(
        reasons(evaluate(&chat, "g", &at(3), &policy)),
        [("new_product", Firing::Bump)]
    );
    assert_eq!(
        reasons(evaluate(&chat, "g", &at(4), &policy)),
        [
            ("consumer_ai_use", Firing::Raise),
            ("new_product", Firing::Bump)
        ]
    );
    assert_eq!(
        reasons(evaluate(&chat, "g", &at(5), &policy)),
        [
            ("consumer_ai_use", Firing::Bump),
            ("new_product", Firing::Bump)
        ]
    );
    // Another group has no sanctioned alternative.
    assert_eq!(
        reasons(evaluate(&chat, "other", &at(4), &policy)),
        [("new_product", Firing::Bump)]
    );
}

#[test]
fn tenant_rules_tell_ours_from_personal_and_foreign() {
    let mut policy = PolicySnapshot::default();
    let mut azure = observation("microsoft.azure-openai", "model_api", &[]);
    azure.tenant = Some("contoso".to_owned());
    // No tenant rule: an ordinary unsanctioned product.
    assert_eq!(
        check(&evaluate(&azure, "g", &new_finding(), &policy))[0].0,
        "new_product"
    );
    policy
        .tenants
        .push(tenant("microsoft.azure-openai", "Contoso"));
    assert!(
        evaluate(&azure, "g", &new_finding(), &policy).is_empty(),
        "our tenant is sanctioned"
    );
    azure.tenant = Some("fabrikam".to_owned());
    let reasons: Vec<_> = check(&evaluate(&azure, "g", &new_finding(), &policy))
        .into_iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(reasons, ["new_product", "personal_plan"]);
    let mut copilot = observation("github.copilot", "coding_assistant", &[]);
    copilot.plan = Some("individual".to_owned());
    policy
        .sanctions
        .push(sanction("github.copilot", "coding_assistant", ""));
    policy.tenants.push(tenant("github.copilot", "contoso-org"));
    assert_eq!(
        check(&evaluate(&copilot, "g", &new_finding(), &policy)),
        [
            ("new_product", Firing::Raise, Severity::Medium),
            ("personal_plan", Firing::Raise, Severity::Medium)
        ]
    );
    copilot.plan = Some("business".to_owned());
    assert!(evaluate(&copilot, "g", &new_finding(), &policy).is_empty());
}

#[test]
fn the_most_specific_override_wins() {
    let mut policy = PolicySnapshot::default();
    let over = |reason: &str, product: &str, severity: Severity| SeverityOverride {
        id: Uuid::now_v7(),
        reason: reason.to_owned(),
        product: product.to_owned(),
        group: String::new(),
        severity,
        note: String::new(),
        created_at_ms: 0,
        created_by: "t".to_owned(),
    };
    policy
        .overrides
        .push(over("new_product", "", Severity::Info));
    policy
        .overrides
        .push(over("new_product", "ollama.ollama", Severity::Critical));
    let ollama = observation("ollama.ollama", "local_model_runtime", &[]);
    let actions = evaluate(&ollama, "g", &new_finding(), &policy);
    assert_eq!(actions[0].severity, Severity::Critical);
    assert!(
        actions[0].explanation.contains("override"),
        "{}",
        actions[0].explanation
    );
    let other = observation("lmstudio.lmstudio", "local_model_runtime", &[]);
    assert_eq!(
        evaluate(&other, "g", &new_finding(), &policy)[0].severity,
        Severity::Info
    );
}

#[test]
fn suppressions_match_while_active() {
    let mut policy = PolicySnapshot::default();
    let id = Uuid::now_v7();
    policy.suppressions.push(Suppression {
        id,
        reason: "new_product".to_owned(),
        product: String::new(),
        group: "lab".to_owned(),
        agent_id: String::new(),
        owner: "bob".to_owned(),
        note: String::new(),
        expires_at_ms: 100,
        created_at_ms: 0,
        created_by: "t".to_owned(),
        lifted_at_ms: None,
    });
    assert_eq!(
        policy
            .suppression(Reason::NewProduct, "x", "lab", "a", 99)
            .map(|s| s.id),
        Some(id)
    );
    assert!(
        policy
            .suppression(Reason::NewProduct, "x", "lab", "a", 100)
            .is_none(),
        "expired"
    );
    assert!(
        policy
            .suppression(Reason::NewProduct, "x", "sales", "a", 50)
            .is_none()
    );
    assert!(
        policy
            .suppression(Reason::AgentShell, "x", "lab", "a", 50)
            .is_none()
    );
    policy.suppressions[0].lifted_at_ms = Some(10);
    assert!(
        policy
            .suppression(Reason::NewProduct, "x", "lab", "a", 50)
            .is_none(),
        "lifted"
    );
}

#[test]
fn blind_spots_come_from_spots_sensors_and_budget() {
    let health = json!({
        "sensors": [
            {"sensor": "network", "state": "SENSOR_STATE_BLIND", "detail": "no CAP_NET_RAW"},
            {"sensor": "process", "state": "SENSOR_STATE_OK", "detail": ""}
        ],
        "blind_spots": [{"kind": "doh", "detail": "", "since_ms": 1}, {"kind": "", "detail": ""}],
        "degraded": true
    });
    let spots = blind_spots(&health);
    let listed: Vec<&str> = spots.iter().map(String::as_str).collect();
    assert_eq!(listed, ["budget_degraded", "doh", "network_blind"]);
    let policy = PolicySnapshot::default();
    let action = evaluate_blinded(&BTreeSet::new(), &spots, "g", &policy).unwrap();
    assert_eq!(
        (action.reason, action.severity),
        (Reason::SensorBlinded, Severity::High)
    );
    assert!(
        evaluate_blinded(&spots, &spots, "g", &policy).is_none(),
        "nothing new"
    );
    let fewer: BTreeSet<String> = ["doh".to_owned()].into();
    assert!(evaluate_blinded(&spots, &fewer, "g", &policy).is_none());
    let added = evaluate_blinded(
        &fewer,
        &["doh".to_owned(), "ech".to_owned()].into(),
        "g",
        &policy,
    )
    .unwrap();
    assert_eq!(added.severity, Severity::Medium);
    assert!(blind_spots(&json!({})).is_empty());
}

#[test]
fn silence_counts_from_the_last_contact() {
    let mut policy = PolicySnapshot::default();
    policy.settings.silent_after_ms = 60_000;
    assert!(evaluate_silent(1_000, 60_999, "g", &policy).is_none());
    let action = evaluate_silent(1_000, 61_000, "g", &policy).unwrap();
    assert_eq!(action.reason, Reason::SensorSilent);
    let mut settings = Settings::default();
    settings.apply("silent_after_ms", 1);
    assert_eq!(settings, Settings::default(), "out of range is ignored");
    settings.apply("consumer_use_threshold", 7);
    assert_eq!(settings.consumer_use_threshold, 7);
}
