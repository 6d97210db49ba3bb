//! The acceptance path of the product: one command starts collector and agent, a known AI tool
//! starts on the laptop, and within 15 s a responder sees an alert naming host, user, process and
//! rule, in the API and in the dashboard; a restart keeps all of it.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Api, Quickstart, Session, TestDatabase, lock_machine_wide, poll_until, process_pid,
    process_text, spawn_idle_as, text,
};

const PRODUCT: &str = "ollama.ollama";
/// The acceptance criterion: from process start to visible alert.
const DETECTION_DEADLINE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_sqlite_detects_ollama() {
    detects_ollama_and_survives_restart(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_postgres_detects_ollama() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    detects_ollama_and_survives_restart(Some(&database.url)).await;
}

async fn detects_ollama_and_survives_restart(database: Option<&str>) {
    let _only_ollama_on_this_machine = lock_machine_wide("ollama").await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");

    let quickstart = Quickstart::start(&data_dir, database).await;
    let credentials = quickstart.credentials();
    assert_eq!(credentials.username, "admin");
    let credentials_path = data_dir.join("admin-credentials.txt");
    let mode = std::fs::metadata(&credentials_path)
        .expect("credentials file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "admin-credentials.txt must be readable by its owner only"
    );
    let credentials_file = std::fs::read(&credentials_path).expect("credentials file");

    let key = quickstart.create_api_key("viewer");
    let api = Api::new(&quickstart.dashboard, &key);

    let ollama_path = tmp.path().join("bin").join("ollama");
    let ollama = spawn_idle_as(&ollama_path, &["serve"]);
    let started = Instant::now();
    let pid = u64::from(ollama.pid());

    let alert = poll_until(
        DETECTION_DEADLINE,
        "an ollama alert naming the started process",
        || find_alert(&api, pid),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed <= DETECTION_DEADLINE, "alert took {elapsed:?}");

    assert!(
        process_text(&alert, "exe").ends_with("/ollama"),
        "exe in {alert}"
    );
    assert!(
        process_text(&alert, "cmdline").contains("serve"),
        "cmdline in {alert}"
    );
    assert!(!text(&alert, "user").is_empty(), "user in {alert}");
    assert!(!text(&alert, "host").is_empty(), "host in {alert}");
    let rule = text(&alert, "rule");
    assert!(
        rule.contains("ollama"),
        "the alert must name the catalog rule that matched: {alert}"
    );
    let agent_id = text(&alert, "agent_id").to_owned();
    assert!(!agent_id.is_empty(), "agent_id in {alert}");
    let alert_id = alert.get("id").cloned().unwrap_or(Value::Null);

    let session = Session::login_ok(&quickstart.dashboard, &credentials).await;
    let html = session.page("/").await;
    assert!(
        html.contains(PRODUCT),
        "dashboard should list the {PRODUCT} alert"
    );
    assert!(
        html.contains(&pid.to_string()),
        "dashboard should name pid {pid}"
    );
    let host = text(&alert, "host");
    assert!(html.contains(host), "dashboard should name the host {host}");

    // the restart must not depend on the agent seeing the process again
    drop(ollama);
    quickstart.stop().await;

    let quickstart = Quickstart::start(&data_dir, database).await;
    assert_eq!(
        std::fs::read(&credentials_path).expect("credentials file"),
        credentials_file,
        "a second run must leave the admin login it wrote the first time untouched"
    );
    // the login still works: the file and the database agree after a restart
    Session::login_ok(&quickstart.dashboard, &credentials).await;
    let api = Api::new(&quickstart.dashboard, &key);
    let ollama_alerts = alerts_for_product(&api).await;
    assert_eq!(ollama_alerts.len(), 1, "after restart: {ollama_alerts:?}");
    assert_eq!(
        ollama_alerts[0].get("id"),
        Some(&alert_id),
        "the same alert survives a restart"
    );
    assert_eq!(process_pid(&ollama_alerts[0]), Some(pid));

    // the restarted agent keeps its identity: new evidence comes from the same agent, and the
    // product already alerted on this host raises no second alert
    let again = spawn_idle_as(&ollama_path, &["serve"]);
    let again_pid = u64::from(again.pid());
    let observation = poll_until(
        Duration::from_secs(30),
        "an observation of the second ollama",
        || find_observation(&api, again_pid),
    )
    .await;
    assert_eq!(
        text(&observation, "agent_id"),
        agent_id,
        "agent identity changed on restart"
    );
    assert_eq!(
        alerts_for_product(&api).await.len(),
        1,
        "a known product must not alert twice"
    );

    drop(again);
    quickstart.stop().await;
}

async fn find_alert(api: &Api, pid: u64) -> Result<Value, String> {
    let alerts = api.alerts().await;
    alerts
        .iter()
        .find(|alert| text(alert, "product") == PRODUCT && process_pid(alert) == Some(pid))
        .cloned()
        .ok_or_else(|| format!("{alerts:?}"))
}

async fn find_observation(api: &Api, pid: u64) -> Result<Value, String> {
    let observations = api.observations().await;
    observations
        .iter()
        .find(|observation| {
            text(observation, "product") == PRODUCT && process_pid(observation) == Some(pid)
        })
        .cloned()
        .ok_or_else(|| format!("{observations:?}"))
}

async fn alerts_for_product(api: &Api) -> Vec<Value> {
    api.alerts()
        .await
        .into_iter()
        .filter(|alert| text(alert, "product") == PRODUCT)
        .collect()
}
