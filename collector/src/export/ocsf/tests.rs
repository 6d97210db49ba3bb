use uuid::Uuid;

use super::*;
use crate::store::{Alert, AlertProcess};

fn export(status: &str, sent: Option<&str>, signal: &str, details: Value) -> ExportAlert {
    ExportAlert {
        alert: Alert {
            id: Uuid::now_v7(),
            agent_id: Uuid::now_v7(),
            hostname: "laptop-7".into(),
            group: "eng".into(),
            user_name: "alice".into(),
            product: "openai.chatgpt".into(),
            vendor: "OpenAI".into(),
            category: "chat".into(),
            reason: "new_product".into(),
            severity: "high".into(),
            status: status.into(),
            title: "New AI product on host".into(),
            rule: "data/openai.toml#openai.chatgpt/domain/chatgpt.com".into(),
            process: Some(AlertProcess {
                pid: 42,
                name: "chrome".into(),
                exe: "/opt/google/chrome/chrome".into(),
                cmdline: "chrome --flag".into(),
            }),
            first_seen_ms: 1_000,
            last_seen_ms: 2_000,
            count: 3,
            first_observation_id: Some(Uuid::now_v7()),
            explanation: String::new(),
            suppressed_by: None,
            last_observation_id: Some(Uuid::now_v7()),
        },
        sent_status: sent.map(str::to_owned),
        os: "linux".into(),
        os_version: "6.1".into(),
        agent_version: "0.1.0".into(),
        last_signal: Some(signal.into()),
        last_name: Some("chatgpt.com".into()),
        last_details: Some(details),
    }
}

#[test]
fn activity_follows_what_the_sink_was_sent() {
    let event = detection_finding(&export("open", None, "dns", json!({})), 5);
    assert_eq!(event["activity_id"], 1);
    assert_eq!(event["type_uid"], 200_401);
    assert_eq!(event["is_alert"], true);
    let event = detection_finding(&export("acknowledged", Some("open"), "dns", json!({})), 5);
    assert_eq!(
        (event["activity_id"].clone(), event["status_id"].clone()),
        (json!(2), json!(2))
    );
    let event = detection_finding(&export("resolved", Some("open"), "dns", json!({})), 5);
    assert_eq!(
        (event["type_uid"].clone(), event["status_id"].clone()),
        (json!(200_403), json!(4))
    );
}

#[test]
fn device_actor_process_and_network_are_filled() {
    let details = json!({ "src": "10.0.0.7:51000", "dst": "[2001:db8::1]:443" });
    let event = detection_finding(&export("open", None, "tls_sni", details), 5);
    assert_eq!(event["severity_id"], 4);
    assert_eq!(event["device"]["hostname"], "laptop-7");
    assert_eq!(event["device"]["os"]["type_id"], 200);
    assert_eq!(event["actor"]["user"]["name"], "alice");
    assert_eq!(event["actor"]["process"]["file"]["name"], "chrome");
    let evidence = &event["evidences"][0];
    assert_eq!(evidence["dst_endpoint"]["hostname"], "chatgpt.com");
    assert_eq!(evidence["dst_endpoint"]["ip"], "2001:db8::1");
    assert_eq!(evidence["dst_endpoint"]["port"], 443);
    assert_eq!(evidence["src_endpoint"]["ip"], "10.0.0.7");
    assert_eq!(event["metadata"]["version"], OCSF_VERSION);
    assert_eq!(event["finding_info"]["analytic"]["type_id"], 1);
}

#[test]
fn hostile_strings_stay_data() {
    let mut hostile = export("open", None, "tls_sni", json!({ "dst": "not an address" }));
    hostile.alert.hostname = "\"}<script>\n".into();
    let event = detection_finding(&hostile, 5);
    let text = serde_json::to_string(&event).unwrap();
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["device"]["hostname"], "\"}<script>\n");
    assert!(back["evidences"][0]["dst_endpoint"].get("ip").is_none());
}
