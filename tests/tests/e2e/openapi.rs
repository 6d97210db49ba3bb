//! The JSON API against its OpenAPI document (`GET /api/v1/openapi.json`), checked by schemathesis
//! (from PyPI, pinned) against a real `shadowai-collector serve` on SQLite.
//!
//! Evidence arrives the real way: simulated agents enroll through the `Enroll` RPC and report over
//! their own mTLS connections (`loadgen`), so the policy raises alerts as in production. A few
//! triage actions and policy changes through the API fill the audit log and the policy. Then
//! schemathesis, with an admin API key, sends generated requests (valid and invalid) to every
//! operation the document describes and checks each answer: no 5xx, a documented status code,
//! a documented content type, the documented headers, and a body that matches the schema.
//!
//! schemathesis is installed into a virtualenv under the target directory
//! (`target/schemathesis-venv`, reused while it holds the pinned version), which needs Debian's
//! `python3-venv`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Serve, http_client, lock_machine_wide, poll_until};

/// The schemathesis release the test is written for (check names and flags differ across
/// releases).
const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// The checks run on every response (names of this schemathesis release).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";
/// Generated cases per operation and phase: enough to reach every parameter and error path (a
/// PDF request to a build without PDF support, a 500 then, needed ~150 to be found), small enough
/// that the whole run stays under a minute on a busy 2-core machine (~3500 requests).
const MAX_EXAMPLES: &str = "100";
/// A fixed seed: a failure in CI is reproducible with the same command.
const SEED: &str = "20260101";
/// The run is stopped (and the test fails) if it takes longer than this.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_conforms_to_its_openapi_document() {
    let test_started = Instant::now();
    let schemathesis = schemathesis().await;
    println!("schemathesis ready after {:.1?}", test_started.elapsed());
    let tmp = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", tmp.path().join("shadowai.db").display());
    let serve = Serve::start(&tmp.path().join("data"), &database).await;
    let base = serve.dashboard.clone();
    let key = serve.create_api_key("admin");

    // evidence through the real channel
    let report = serve.report_from_simulated_agents("fleet", 3, 30).await;
    assert_eq!(
        report["observations_acked"], 90,
        "every observation acknowledged: {report}"
    );
    let client = http_client();
    let api = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&key)
    };
    let alerts = poll_until(
        Duration::from_secs(30),
        "alerts from the simulated agents",
        || {
            let request = api(reqwest::Method::GET, "/api/v1/alerts?limit=20");
            async move {
                let response = request.send().await.map_err(|e| e.to_string())?;
                let text = response.text().await.map_err(|e| e.to_string())?;
                let body: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                match body["alerts"].as_array() {
                    Some(alerts) if alerts.len() >= 3 => Ok(alerts.clone()),
                    _ => Err(body.to_string()),
                }
            }
        },
    )
    .await;

    // triage history and a policy, so that the listings have something to validate
    let id = |i: usize| alerts[i]["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        (format!("/api/v1/alerts/{}/acknowledge", id(0)), json!({})),
        (
            format!("/api/v1/alerts/{}/comment", id(1)),
            json!({"note": "<script>alert('note')</script> seen \u{202e}reversed"}),
        ),
        (
            format!("/api/v1/alerts/{}/resolve", id(2)),
            json!({"resolution": "false_positive"}),
        ),
        (
            "/api/v1/policy/sanctions".to_owned(),
            json!({"product": "openai.chatgpt", "group": "fleet", "note": "enterprise plan"}),
        ),
        (
            "/api/v1/policy/tenants".to_owned(),
            json!({"product": "openai.api", "tenant": "Contoso-Prod"}),
        ),
        (
            "/api/v1/policy/overrides".to_owned(),
            json!({"reason": "new_product", "severity": "low"}),
        ),
        (
            "/api/v1/policy/suppressions".to_owned(),
            json!({"product": "ollama.ollama", "owner": "secops",
                   "expires_at": rfc3339_in(Duration::from_secs(86_400))}),
        ),
        (
            "/api/v1/policy/settings".to_owned(),
            json!({"name": "consumer_use_threshold", "value": 25}),
        ),
    ] {
        let response = api(reqwest::Method::POST, &path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(
            response.status().is_success(),
            "POST {path} {body}: {}",
            response.status()
        );
    }

    println!(
        "collector started and seeded after {:.1?}",
        test_started.elapsed()
    );
    let document = client
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .expect("GET openapi.json");
    assert_eq!(document.status(), 200, "served without authentication");
    assert_eq!(document.headers()["content-type"], "application/json");

    let output_dir = target_dir().join("schemathesis");
    std::fs::create_dir_all(&output_dir).expect("schemathesis output dir");
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .current_dir(&output_dir)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", SEED])
        .args(["--workers", "1"])
        // stateful: follows the document's links (a created rule is removed by its id)
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--generation-with-security-parameters", "false"])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "30"])
        .arg("--no-color")
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(output_dir.join("output.txt"), &text).expect("write schemathesis output");
    println!("schemathesis {SCHEMATHESIS_VERSION} ran in {elapsed:.1?}");
    assert!(
        output.status.success(),
        "schemathesis found responses that do not match openapi.json ({}; full output in {}):\n\
         {text}\n{}",
        output.status,
        output_dir.join("output.txt").display(),
        serve.process.log_tail()
    );
    assert!(
        text.contains("passed"),
        "schemathesis ran no test case:\n{text}"
    );
}

/// RFC 3339 `after` from now.
fn rfc3339_in(after: Duration) -> String {
    let at = time::OffsetDateTime::now_utc() + after;
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format time")
}

/// `target/` (or `CARGO_TARGET_DIR`): the test executable is `target/<profile>/deps/e2e-<hash>`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors()
        .nth(3)
        .expect("target dir above the test executable")
        .to_path_buf()
}

/// The `schemathesis` executable of the pinned release, installed into
/// `target/schemathesis-venv` unless it is there already.
async fn schemathesis() -> PathBuf {
    let _lock = lock_machine_wide("schemathesis-venv").await;
    let venv = target_dir().join("schemathesis-venv");
    let executable = venv.join("bin").join("schemathesis");
    if installed_version(&executable).await.as_deref() == Some(SCHEMATHESIS_VERSION) {
        return executable;
    }
    let created = tokio::process::Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .output()
        .await;
    match created {
        Err(error) => panic!(
            "cannot run python3 ({error}); schemathesis needs it: apt-get install python3 python3-venv"
        ),
        Ok(output) if !output.status.success() || !venv.join("bin/pip").exists() => panic!(
            "`python3 -m venv {}` failed; on Debian install the venv module: \
             apt-get install python3-venv\n{}",
            venv.display(),
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(_) => {}
    }
    let installed = tokio::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={SCHEMATHESIS_VERSION}"))
        .output()
        .await
        .expect("run pip");
    assert!(
        installed.status.success(),
        "pip install schemathesis=={SCHEMATHESIS_VERSION} failed:\n{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let version = installed_version(&executable).await;
    assert_eq!(
        version.as_deref(),
        Some(SCHEMATHESIS_VERSION),
        "schemathesis in {} reports another version",
        venv.display()
    );
    executable
}

/// The version `schemathesis --version` prints (`schemathesis, version X`), if it runs.
async fn installed_version(executable: &Path) -> Option<String> {
    let output = tokio::process::Command::new(executable)
        .arg("--version")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().rsplit(' ').next()?.to_owned())
}
