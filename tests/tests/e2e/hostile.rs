//! Every string from an endpoint is hostile: a process whose path and command line carry HTML,
//! SQL, terminal escapes and over a megabyte of arguments is recorded as data, length-capped, and
//! shown escaped; the store keeps working afterwards.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Api, Quickstart, Session, decode_entities, excerpt, poll_until, process_pid, process_text,
    spawn_idle, text,
};

const PRODUCT: &str = "anthropic.claude-code";
const HTML_NAME: &str = "<img src=x onerror=alert(1)>'";
const SCRIPT: &str = "<script>alert(1)</script>";
const SQL: &str = "'; DROP TABLE observations;--";
const CONTROL: &str = "\x07\x1b[2J";
/// The agent's cap on a command line: what arrives must be cut to about this.
const CMDLINE_CAP: usize = 8 * 1024;
const FILLER_ARG: usize = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_process_strings_are_stored_as_data_and_escaped() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let quickstart = Quickstart::start(&tmp.path().join("data"), None).await;
    let api = Api::new(&quickstart.dashboard, &quickstart.create_api_key("viewer"));

    // Claude Code's npm install runs as `node .../@anthropic-ai/claude-code/cli.js`: the catalog rule
    // wants a node runtime (which it also reads from argv[0]) and the script path, so the hostile
    // executable path and process name stay while the command line reads `node cli.js ...`
    let cli = tmp
        .path()
        .join("node_modules/@anthropic-ai/claude-code/cli.js");
    std::fs::create_dir_all(cli.parent().expect("cli.js has a parent"))
        .expect("create node_modules");
    std::fs::write(&cli, "// not the real tool\n").expect("write cli.js");
    let cli = cli.to_str().expect("UTF-8 temp path").to_owned();

    let filler = "A".repeat(FILLER_ARG);
    // hostile strings first: they must survive the agent's truncation of the command line
    let mut args = vec![cli.as_str(), SCRIPT, SQL, CONTROL];
    args.extend(std::iter::repeat_n(filler.as_str(), 11));
    let total: usize = args.iter().map(|arg| arg.len() + 1).sum();
    assert!(
        total > 1024 * 1024,
        "the command line must exceed 1 MiB, is {total} bytes"
    );

    let evil_path = tmp.path().join("evil").join(format!("{HTML_NAME}\x1b[31m"));
    let evil = spawn_idle(&evil_path, Some("node"), &args);
    let pid = u64::from(evil.pid());

    let observation = poll_until(
        Duration::from_secs(30),
        "the hostile process's observation",
        || find_observation(&api, pid),
    )
    .await;
    let cmdline = process_text(&observation, "cmdline");
    assert!(
        cmdline.contains(SCRIPT),
        "script tag not stored literally: {cmdline:?}"
    );
    assert!(
        cmdline.contains(SQL),
        "SQL quote not stored literally: {cmdline:?}"
    );
    assert!(
        cmdline.len() <= CMDLINE_CAP + 64,
        "a {total}-byte command line must be capped near {CMDLINE_CAP} bytes, got {}",
        cmdline.len()
    );
    assert!(
        process_text(&observation, "exe").contains(HTML_NAME),
        "exe path not stored literally: {observation}"
    );

    let session = Session::login_ok(&quickstart.dashboard, &quickstart.credentials()).await;
    let html = poll_until(
        Duration::from_secs(15),
        "the dashboard to show the alert",
        || async {
            let html = session.page("/").await;
            if html.contains(PRODUCT) {
                Ok(html)
            } else {
                Err(format!("no {PRODUCT} in the page"))
            }
        },
    )
    .await;
    let pid_text = pid.to_string();
    assert!(html.contains(&pid_text), "dashboard should name pid {pid}");
    let row = excerpt(&html, &pid_text, 1500);
    // escaped: no raw markup anywhere in the page...
    assert!(
        !html.contains("<script>alert(1)"),
        "unescaped script tag in the dashboard: {row}"
    );
    assert!(
        !html.contains("<img src=x"),
        "unescaped img tag in the dashboard: {row}"
    );
    assert!(
        !html.contains(['\x07', '\x1b']),
        "control characters must be shown as escapes, not sent raw: {row}"
    );
    // ...yet the responder reads the strings literally
    let shown = decode_entities(&html);
    assert!(
        shown.contains(SCRIPT),
        "the command line should be shown literally: {row}"
    );
    assert!(
        shown.contains(HTML_NAME),
        "the exe path should be shown literally: {row}"
    );
    assert!(
        shown.contains(SQL),
        "the SQL text should be shown literally: {row}"
    );

    // the SQL text was data: the tables are all there and the store keeps answering
    let alerts = api.alerts().await;
    assert!(
        alerts
            .iter()
            .any(|alert| text(alert, "product") == PRODUCT && process_pid(alert) == Some(pid)),
        "alert for the hostile process: {alerts:?}"
    );
    let observations = api.observations().await;
    assert!(
        observations
            .iter()
            .any(|item| process_pid(item) == Some(pid))
    );

    drop(evil);
    quickstart.stop().await;
}

async fn find_observation(api: &Api, pid: u64) -> Result<Value, String> {
    let observations = api.observations().await;
    observations
        .iter()
        .find(|item| text(item, "product") == PRODUCT && process_pid(item) == Some(pid))
        .cloned()
        .ok_or_else(|| {
            format!(
                "{} observations, none of pid {pid} as {PRODUCT}",
                observations.len()
            )
        })
}
