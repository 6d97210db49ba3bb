//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver against the
//! real `shadowai-collector serve`, on SQLite and on PostgreSQL.
//!
//! Evidence is stored through the collector's own store API (as ingest stores it), with script and
//! HTML payloads in every string a page shows: process name, command line, DNS name, SNI, MCP
//! server name, user name, host name, a triage note. Every page is loaded and must show those
//! strings literally while no payload ran. A responder signs in, filters the queue, opens an alert,
//! assigns and resolves it with a note and finds that in the audit log; a viewer cannot triage,
//! neither from the page nor with a hand-crafted request; a forged cross-site POST from another
//! origin changes nothing. Screenshots of the main pages go to `target/browser-screenshots/` (and
//! to `docs/screenshots/` with `SHADOWAI_UPDATE_SCREENSHOTS=1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::{Value, json};
use shadowai_collector::auth;
use shadowai_collector::store::{
    AlertFilter, EnrollAgent, Heartbeat, NewEnrollmentToken, NewObservation, NewTenantRule,
    ObservedProcess, PolicyActor, Role, Signal, Store, TriageAction, TriageContext,
};
use shadowai_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::browser_driver::{Browser, Chromedriver};
use crate::support::{
    Login, POLL, ProcessGuard, Session, TestDatabase, binaries, csrf_field, http_client, set_cookie,
};

const PASSWORD: &str = "correct horse battery staple";
const ADMIN: &str = "alice";
const RESPONDER: &str = "rita";
const VIEWER: &str = "vera";

// Payloads: each would set `window.__pwned` (or add an element) if it reached the page as markup.
const HOST: &str = "host<script>window.__pwned='host'</script>";
const PROCESS_NAME: &str = "<script>window.__pwned='name'</script>claude";
const CMDLINE: &str =
    "claude --dangerously-skip-permissions \"><svg onload=\"window.__pwned='cmdline'\"><b>bold</b>";
const PROCESS_USER: &str = "<img src=x onerror=\"window.__pwned='user'\">mallory";
const ANCESTOR: &str = "<iframe src=\"javascript:window.__pwned='chain'\"></iframe>zsh";
const DNS_NAME: &str = "api.openai.com<img src=x onerror=\"window.__pwned='dns'\">";
const SNI: &str = "chatgpt.com\"><script>window.__pwned='sni'</script>";
const MCP_SERVER: &str = "<script>window.__pwned='mcp'</script>evil-mcp";
const GROUP: &str = "eng<i>ineering</i>";
const NOTE: &str = "<script>window.__pwned='note'</script> looked at it & \"it's\" fine";
const HOSTILE_USER: &str = "<img src=x onerror=\"window.__pwned='username'\">eve";
const BLIND_DETAIL: &str =
    "needs CAP_NET_RAW <a href=\"javascript:window.__pwned='health'\">fix</a>";

const PRODUCT_CLAUDE: &str = "anthropic.claude-code";
const PRODUCT_CHATGPT: &str = "openai.chatgpt";
const PRODUCT_API: &str = "openai.api";
const PRODUCT_CURSOR: &str = "cursor.cursor";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_browser_sqlite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", tmp.path().join("shadowai.db").display());
    run_dashboard_scenario(tmp.path(), &url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_browser_postgres() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    run_dashboard_scenario(tmp.path(), &database.url, "postgres").await;
}

/// Sign-in is rate limited: after five wrong passwords for a user, even the right one is refused
/// for a while, with the same answer for a user that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_lock_the_user_out() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", tmp.path().join("shadowai.db").display());
    let store = Store::connect(&url).await.expect("store");
    add_user(&store, ADMIN, Role::Admin).await;
    store.close().await;
    let collector = Collector::start(tmp.path(), &url).await;

    for _ in 0..5 {
        let login = Session::login(&collector.base, ADMIN, "wrong password", None).await;
        assert!(
            matches!(login, Login::Refused { status, .. } if status == reqwest::StatusCode::UNAUTHORIZED),
            "a wrong password is refused"
        );
    }
    let login = Session::login(&collector.base, ADMIN, PASSWORD, None).await;
    assert!(
        matches!(login, Login::Refused { status, .. } if status == reqwest::StatusCode::TOO_MANY_REQUESTS),
        "the right password must be refused while the user is locked out"
    );
    for _ in 0..5 {
        let _ = Session::login(&collector.base, "nobody", "wrong password", None).await;
    }
    let unknown = Session::login(&collector.base, "nobody", "wrong password", None).await;
    assert!(
        matches!(unknown, Login::Refused { status, .. } if status == reqwest::StatusCode::TOO_MANY_REQUESTS),
        "an unknown user is locked out the same way (no hint that it does not exist)"
    );
}

/// The triage API: a viewer's key is refused, a responder's key acknowledges once (a second time
/// is a conflict that records nothing), a session cookie without the CSRF header is refused, and
/// the admin reads the result in the audit API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_api_checks_roles_csrf_and_states() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", tmp.path().join("shadowai.db").display());
    let store = Store::connect(&url).await.expect("store");
    let seeded = seed(&store).await;
    let key = |role: Role| {
        let store = store.clone();
        async move {
            let (token, digest) = auth::new_api_key();
            store
                .create_api_key(role.as_str(), role, &digest, now_ms())
                .await
                .expect("api key");
            format!("Bearer {token}")
        }
    };
    let (viewer, responder, admin) = (
        key(Role::Viewer).await,
        key(Role::Responder).await,
        key(Role::Admin).await,
    );
    let collector = Collector::start(tmp.path(), &url).await;
    let base = &collector.base;
    let client = http_client();
    let acknowledge = format!("{base}/api/v1/alerts/{}/acknowledge", seeded.sni_alert);

    let refused = client
        .post(&acknowledge)
        .header(reqwest::header::AUTHORIZATION, &viewer)
        .send()
        .await
        .expect("viewer POST");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);

    let done = client
        .post(&acknowledge)
        .header(reqwest::header::AUTHORIZATION, &responder)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(json!({"note": "on it"}).to_string())
        .send()
        .await
        .expect("responder POST");
    assert_eq!(done.status(), reqwest::StatusCode::OK);
    let event: Value = serde_json::from_str(&done.text().await.unwrap()).unwrap();
    assert_eq!(event["action"], "acknowledge");
    assert_eq!(event["actor"], "apikey:responder");
    assert_eq!(event["from_address"], "127.0.0.1");

    let again = client
        .post(&acknowledge)
        .header(reqwest::header::AUTHORIZATION, &responder)
        .send()
        .await
        .expect("second acknowledge");
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    let body = again.text().await.unwrap();
    assert!(
        body.contains("only an open alert can be acknowledged"),
        "{body}"
    );

    let bad = client
        .post(format!("{base}/api/v1/alerts/{}/resolve", seeded.sni_alert))
        .header(reqwest::header::AUTHORIZATION, &responder)
        .body(r#"{"resolution":"<script>"}"#)
        .send()
        .await
        .expect("bad resolution");
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);

    // a signed-in session's cookie without the X-CSRF-Token header is refused
    let form = client
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login");
    let (csrf_cookie, _) = set_cookie(&form, "shadowai_csrf").expect("csrf cookie");
    let csrf = csrf_field(&form.text().await.unwrap()).expect("csrf field");
    let login = client
        .post(format!("{base}/login"))
        .header(
            reqwest::header::COOKIE,
            format!("shadowai_csrf={csrf_cookie}"),
        )
        .form(&[
            ("username", RESPONDER),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("POST /login");
    let (session, _) = set_cookie(&login, "shadowai_session").expect("session cookie");
    let escalate = client
        .post(format!(
            "{base}/api/v1/alerts/{}/escalate",
            seeded.sni_alert
        ))
        .header(
            reqwest::header::COOKIE,
            format!("shadowai_session={session}"),
        )
        .send()
        .await
        .expect("escalate without csrf header");
    assert_eq!(escalate.status(), reqwest::StatusCode::FORBIDDEN);
    let detail: Value = serde_json::from_str(
        &client
            .get(format!("{base}/api/v1/alerts/{}", seeded.sni_alert))
            .header(reqwest::header::AUTHORIZATION, &viewer)
            .send()
            .await
            .expect("alert detail")
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(detail["alert"]["status"], "acknowledged");
    assert_eq!(detail["history"].as_array().map(Vec::len), Some(1));

    let audit = client
        .get(format!("{base}/api/v1/audit"))
        .header(reqwest::header::AUTHORIZATION, &responder)
        .send()
        .await
        .expect("audit as responder");
    assert_eq!(audit.status(), reqwest::StatusCode::FORBIDDEN);
    let audit: Value = serde_json::from_str(
        &client
            .get(format!("{base}/api/v1/audit"))
            .header(reqwest::header::AUTHORIZATION, &admin)
            .send()
            .await
            .expect("audit as admin")
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["acknowledge", "comment"], "newest first: {audit}");
    assert_eq!(
        audit["events"][1]["note"], NOTE,
        "notes round-trip byte-exact"
    );
    store.close().await;
}

// ------------------------------------------------------------------------------------ scenario

async fn run_dashboard_scenario(dir: &Path, database_url: &str, backend: &str) {
    let Some(driver) = Chromedriver::start().await else {
        return;
    };
    let store = Store::connect(database_url).await.expect("store");
    let seeded = seed(&store).await;
    let collector = Collector::start(dir, database_url).await;
    let base = collector.base.clone();
    let browser = Browser::new(&driver).await;
    let shots = Screenshots::new(backend);

    // --- sign in as the admin and look at every page: payloads shown literally, none ran
    sign_in(&browser, &base, ADMIN).await;
    assert_eq!(
        path_of(&browser.current_url().await),
        "/",
        "sign-in lands on the queue"
    );
    let pages = [
        ("/overview".to_owned(), "overview", vec![HOST]),
        (
            "/".to_owned(),
            "alerts",
            vec![HOST, PROCESS_NAME, PROCESS_USER],
        ),
        (
            format!("/alerts/{}", seeded.claude_alert),
            "alert",
            vec![
                HOST,
                PROCESS_NAME,
                CMDLINE,
                PROCESS_USER,
                ANCESTOR,
                NOTE,
                GROUP,
            ],
        ),
        (
            format!("/alerts/{}", seeded.dns_alert),
            "alert-dns",
            vec![DNS_NAME, HOST],
        ),
        (
            format!("/alerts/{}", seeded.sni_alert),
            "alert-sni",
            vec![SNI],
        ),
        (
            format!("/alerts/{}", seeded.mcp_alert),
            "alert-mcp",
            vec![MCP_SERVER],
        ),
        (
            "/hosts".to_owned(),
            "hosts",
            vec![HOST, GROUP, BLIND_DETAIL],
        ),
        (
            format!("/hosts/{}", seeded.agent_id),
            "host",
            vec![HOST, MCP_SERVER, BLIND_DETAIL, DNS_NAME, SNI],
        ),
        ("/products".to_owned(), "products", vec![PRODUCT_CLAUDE]),
        (
            format!("/products/{PRODUCT_CLAUDE}"),
            "product",
            vec![HOST, PROCESS_USER],
        ),
        ("/policy".to_owned(), "policy", vec![NOTE, GROUP, ADMIN]),
        ("/audit".to_owned(), "audit", vec![NOTE, HOST]),
        ("/tokens".to_owned(), "tokens", vec![GROUP]),
        ("/users".to_owned(), "users", vec![HOSTILE_USER]),
    ];
    for (path, name, expected) in &pages {
        browser.goto(&format!("{base}{path}")).await;
        assert_nothing_ran(&browser, path).await;
        let text = browser.body_text().await;
        for payload in expected {
            assert!(
                text.contains(payload),
                "{path} should show {payload:?} literally; the page says:\n{text}"
            );
        }
        shots.save(&browser, name).await;
    }

    // --- filter the queue by host and severity
    browser.goto(&format!("{base}/")).await;
    browser.type_into("input[name=host]", "laptop-002").await;
    browser.click_and_wait("#apply-filters").await;
    let rows = browser.find_all("table.alerts tbody tr").await;
    assert_eq!(rows.len(), 2, "laptop-002 has two unresolved alerts");
    assert!(
        !browser.body_text().await.contains("<script>"),
        "other hosts filtered out"
    );
    browser
        .goto(&format!("{base}/?severity=high&status=all"))
        .await;
    let text = browser.body_text().await;
    assert!(
        text.contains(PROCESS_NAME),
        "the risky claude alert is high"
    );
    assert!(
        !text.contains("laptop-002"),
        "laptop-002's alerts are medium"
    );
    shots.save(&browser, "alerts-filtered").await;

    // --- open an alert from the queue, assign it, resolve it with a note
    browser
        .goto(&format!("{base}/?product={PRODUCT_CHATGPT}"))
        .await;
    browser
        .click_and_wait(&format!("a[href=\"/alerts/{}\"]", seeded.dns_alert))
        .await;
    assert_eq!(
        path_of(&browser.current_url().await),
        format!("/alerts/{}", seeded.dns_alert)
    );
    browser.select("#assignee", RESPONDER).await;
    browser.click_and_wait("#assign").await;
    assert_eq!(browser.text("#alert-assignee").await, RESPONDER);
    browser.select("#resolution", "false_positive").await;
    let resolve_note = "checked with the owner: a <b>test</b> account";
    browser.type_into("#resolve-note", resolve_note).await;
    browser.click_and_wait("#resolve").await;
    assert_eq!(
        browser.text("#alert-status").await,
        "resolved (false_positive)"
    );
    assert_nothing_ran(&browser, "alert after resolving").await;
    let text = browser.body_text().await;
    assert!(
        text.contains(resolve_note),
        "the note shows literally: {text}"
    );
    let stored = store
        .triaged_alert(seeded.dns_alert)
        .await
        .expect("read alert")
        .expect("alert exists");
    assert_eq!(stored.alert.status, "resolved");
    assert_eq!(stored.triage.resolution.as_deref(), Some("false_positive"));
    assert_eq!(stored.triage.assignee.as_deref(), Some(RESPONDER));
    shots.save(&browser, "alert-resolved").await;

    // --- and it is in the audit log: who, what, from where
    browser.goto(&format!("{base}/audit")).await;
    let audit = browser.body_text().await;
    assert!(
        audit.contains(resolve_note),
        "audit log shows the note: {audit}"
    );
    assert!(audit.contains("resolve false_positive"), "{audit}");
    assert!(audit.contains("assign rita"), "{audit}");
    assert!(
        audit.contains("127.0.0.1"),
        "the source address is recorded: {audit}"
    );
    shots.save(&browser, "audit").await;

    // --- bulk acknowledge from the queue
    browser.goto(&format!("{base}/?host=laptop-002")).await;
    let ticked = browser
        .execute(
            "const boxes = document.querySelectorAll('input[name=id]');
             boxes.forEach(b => { b.checked = true; });
             return boxes.length;",
            vec![],
        )
        .await;
    assert_eq!(ticked, 2, "two alerts to tick");
    browser.select("select[name=action]", "acknowledge").await;
    browser.click_and_wait("#bulk-apply").await;
    assert!(
        browser.current_url().await.contains("host=laptop-002"),
        "bulk actions keep the queue's filters"
    );
    let acknowledged = store
        .alert_queue(&AlertFilter {
            host: Some("laptop-002".into()),
            status: Some("acknowledged".into()),
            page_size: 10,
            ..AlertFilter::default()
        })
        .await
        .expect("queue");
    assert_eq!(acknowledged.total, 2, "both laptop-002 alerts acknowledged");

    // --- an admin marks a product sanctioned for a group from its page, with a hostile reason
    // (group "research" has no host here, so no alert of the scenario changes)
    browser
        .goto(&format!("{base}/products/{PRODUCT_CHATGPT}"))
        .await;
    browser.type_into("#sanction-group", "research").await;
    browser.type_into("#sanction-note", NOTE).await;
    browser.click_and_wait("#mark-sanctioned").await;
    assert_eq!(
        path_of(&browser.current_url().await),
        format!("/products/{PRODUCT_CHATGPT}"),
        "the form returns to the product page"
    );
    assert_nothing_ran(&browser, "product page after sanctioning").await;
    assert!(
        browser.body_text().await.contains(NOTE),
        "reason shown literally"
    );
    let policy = store.read_policy(now_ms()).await.expect("policy");
    assert!(
        policy
            .sanctions
            .iter()
            .any(|s| s.product == PRODUCT_CHATGPT && s.group == "research" && s.note == NOTE),
        "sanction stored: {:?}",
        policy.sanctions
    );
    shots.save(&browser, "product-sanctioned").await;

    // --- a forged cross-site POST from another origin changes nothing
    let attacker = Attacker::start(&base, seeded.claude_alert).await;
    browser.goto(&attacker.url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.current_url().await.starts_with(&attacker.url) {
        assert!(
            Instant::now() < deadline,
            "the attacker page did not submit its form"
        );
        tokio::time::sleep(POLL).await;
    }
    let after_forgery = store
        .triaged_alert(seeded.claude_alert)
        .await
        .expect("read alert")
        .expect("alert exists");
    assert_eq!(
        after_forgery.alert.status, "open",
        "a forged POST must not resolve the alert"
    );
    assert_eq!(after_forgery.triage.resolution, None);
    let landed = browser.current_url().await;
    assert!(
        path_of(&landed) == "/login" || browser.body_text().await.contains("Form expired"),
        "the forged POST is refused (landed on {landed})"
    );

    // --- a viewer reads but cannot triage: no controls, and the server refuses a crafted form
    browser.delete_cookies().await;
    sign_in(&browser, &base, VIEWER).await;
    browser
        .goto(&format!("{base}/alerts/{}", seeded.claude_alert))
        .await;
    assert!(
        browser
            .find_all("#acknowledge, #resolve, #assign")
            .await
            .is_empty(),
        "a viewer sees no triage controls"
    );
    assert!(
        browser.find_all("a[href=\"/audit\"]").await.is_empty(),
        "a viewer is not offered the audit log"
    );
    let csrf = browser
        .execute(
            "return document.querySelector('form.logout input[name=csrf]').value;",
            vec![],
        )
        .await
        .as_str()
        .expect("the logout form carries the session's csrf token")
        .to_owned();
    // the same form a responder's page has, built by hand in the viewer's page and submitted
    browser
        .execute(
            "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];
             for (const [k, v] of [['csrf', arguments[1]], ['action', 'resolve'], ['resolution', 'sanctioned']]) {
               const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f); f.submit();",
            vec![
                json!(format!("/alerts/{}/triage", seeded.claude_alert)),
                json!(csrf),
            ],
        )
        .await;
    wait_for_text(&browser, "Not allowed").await;
    // and with a plain HTTP client, with the viewer's cookie, form field and API header
    let cookie = browser
        .cookie("shadowai_session")
        .await
        .expect("the viewer has a session cookie");
    let client = http_client();
    let form = client
        .post(format!("{base}/alerts/{}/triage", seeded.claude_alert))
        .header(
            reqwest::header::COOKIE,
            format!("shadowai_session={cookie}"),
        )
        .form(&[("csrf", csrf.as_str()), ("action", "acknowledge")])
        .send()
        .await
        .expect("crafted form POST");
    assert_eq!(form.status(), reqwest::StatusCode::FORBIDDEN);
    let api = client
        .post(format!(
            "{base}/api/v1/alerts/{}/acknowledge",
            seeded.claude_alert
        ))
        .header(
            reqwest::header::COOKIE,
            format!("shadowai_session={cookie}"),
        )
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("crafted API POST");
    assert_eq!(api.status(), reqwest::StatusCode::FORBIDDEN);
    let audit = client
        .get(format!("{base}/audit"))
        .header(
            reqwest::header::COOKIE,
            format!("shadowai_session={cookie}"),
        )
        .send()
        .await
        .expect("audit as viewer");
    assert_eq!(
        audit.status(),
        reqwest::StatusCode::FORBIDDEN,
        "the audit log is for admins"
    );
    let unchanged = store
        .triaged_alert(seeded.claude_alert)
        .await
        .expect("read alert")
        .expect("alert exists");
    assert_eq!(unchanged.alert.status, "open", "the viewer changed nothing");
    shots.save(&browser, "viewer-alert").await;

    browser.quit().await;
    drop(collector);
    store.close().await;
}

// ---------------------------------------------------------------------------------------- seed

struct Seeded {
    agent_id: Uuid,
    claude_alert: Uuid,
    dns_alert: Uuid,
    sni_alert: Uuid,
    mcp_alert: Uuid,
}

async fn add_user(store: &Store, name: &str, role: Role) {
    let hash = auth::hash_password(PASSWORD).expect("hash");
    store
        .create_user(name, role, &hash, now_ms())
        .await
        .unwrap_or_else(|e| panic!("add user {name}: {e}"));
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

async fn enroll(store: &Store, hostname: &str, group: &str) -> Uuid {
    let token_id = Uuid::now_v7().simple().to_string();
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: token_id.clone(),
            secret_sha256: auth::sha256_hex("secret"),
            group: group.to_owned(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: now_ms(),
            created_by: "test".into(),
        })
        .await
        .expect("token");
    let agent_id = Uuid::now_v7();
    store
        .enroll_agent(&EnrollAgent {
            token_id,
            secret_sha256: auth::sha256_hex("secret"),
            agent_id,
            cert_fingerprint: auth::sha256_hex(&agent_id.to_string()),
            cert_expires_at_ms: now_ms() + 86_400_000,
            hostname: hostname.to_owned(),
            os: "linux".into(),
            os_version: "6.1".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            remote_addr: "127.0.0.1".into(),
            now_ms: now_ms(),
        })
        .await
        .expect("enroll");
    agent_id
}

struct Evidence<'a> {
    signal: Signal,
    name: &'a str,
    product: &'a str,
    risk: &'a [&'a str],
    process: Option<(&'a str, &'a str, &'a str)>,
    details: Value,
}

fn observation(evidence: &Evidence<'_>, at_ms: i64) -> NewObservation {
    let id = Uuid::now_v7();
    let process = evidence
        .process
        .map(|(name, cmdline, user)| ObservedProcess {
            pid: 4242,
            parent_pid: 4000,
            name: name.to_owned(),
            exe: format!("/usr/local/bin/{name}"),
            cmdline: cmdline.to_owned(),
            user: user.to_owned(),
        });
    let proto = v1::Observation {
        id: id.to_string(),
        observed_at_ms: at_ms,
        process: process.as_ref().map(|p| v1::ProcessInfo {
            pid: p.pid,
            parent_pid: p.parent_pid,
            name: p.name.clone(),
            exe: p.exe.clone(),
            cmdline: p.cmdline.clone(),
            user: p.user.clone(),
            ancestors: vec![
                v1::ProcessAncestor {
                    pid: 4000,
                    name: ANCESTOR.to_owned(),
                    exe: "/bin/zsh".into(),
                },
                v1::ProcessAncestor {
                    pid: 1,
                    name: "systemd".into(),
                    exe: "/sbin/init".into(),
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let vendor = evidence.product.split('.').next().unwrap_or("").to_owned();
    NewObservation {
        id,
        observed_at_ms: at_ms,
        signal: evidence.signal,
        name: evidence.name.to_owned(),
        product: evidence.product.to_owned(),
        vendor,
        category: "assistant".into(),
        rule: format!(
            "data/test.toml#{}/{}/rule",
            evidence.product, evidence.signal
        ),
        reason: format!(
            "{} matched the catalog entry of {}",
            evidence.signal, evidence.product
        ),
        risk: evidence.risk.iter().map(|r| (*r).to_owned()).collect(),
        confidence: "high".into(),
        plan: Some("personal".into()),
        tenant: None,
        catalog_version: "test".into(),
        count: 1,
        process,
        details: evidence.details.clone(),
        evidence: proto.encode_to_vec(),
    }
}

async fn seed(store: &Store) -> Seeded {
    for (name, role) in [
        (ADMIN, Role::Admin),
        (RESPONDER, Role::Responder),
        (VIEWER, Role::Viewer),
        (HOSTILE_USER, Role::Responder),
    ] {
        add_user(store, name, role).await;
    }
    let agent_id = enroll(store, HOST, GROUP).await;
    let now = now_ms();
    // A policy rule with hostile text for the policy page (a product no seeded alert is about).
    store
        .add_tenant_rule(
            &NewTenantRule {
                product: "microsoft.azure-openai".into(),
                tenant: "contoso".into(),
                group: GROUP.into(),
                note: NOTE.into(),
            },
            &PolicyActor {
                who: format!("user:{ADMIN}"),
                from: "192.0.2.9".into(),
            },
            now,
        )
        .await
        .expect("tenant rule");
    store
        .record_heartbeat(
            agent_id,
            &Heartbeat {
                hostname: HOST.to_owned(),
                os: "linux".into(),
                os_version: "6.1".into(),
                arch: "x86_64".into(),
                agent_version: "0.1.0".into(),
                catalog_version: "test".into(),
                health: json!({"sensors": [
                    {"sensor": "process", "state": "SENSOR_STATE_OK", "detail": ""},
                    {"sensor": "network", "state": "SENSOR_STATE_BLIND", "detail": BLIND_DETAIL},
                ]}),
            },
            now,
        )
        .await
        .expect("heartbeat");
    let batch = [
        Evidence {
            signal: Signal::Process,
            name: PROCESS_NAME,
            product: PRODUCT_CLAUDE,
            risk: &["no_human_approval"],
            process: Some((PROCESS_NAME, CMDLINE, PROCESS_USER)),
            details: json!({"event": "started"}),
        },
        Evidence {
            signal: Signal::Dns,
            name: DNS_NAME,
            product: PRODUCT_CHATGPT,
            risk: &[],
            process: None,
            details: json!({"qtype": 1, "answers": [], "resolver": "127.0.0.53", "tcp": false}),
        },
        Evidence {
            signal: Signal::TlsSni,
            name: SNI,
            product: PRODUCT_API,
            risk: &[],
            process: None,
            details: json!({"alpn": ["h2"], "ech": false, "src": "10.0.0.2:5000", "dst": "1.2.3.4:443"}),
        },
        Evidence {
            signal: Signal::Config,
            name: "/home/u/.cursor/mcp.json",
            product: PRODUCT_CURSOR,
            risk: &["mcp_server"],
            process: None,
            details: json!({"path": "/home/u/.cursor/mcp.json", "setting": "", "value": "",
                            "mcp_server": MCP_SERVER, "mcp_target": "npx evil", "mcp_transport": "stdio"}),
        },
    ];
    let observations: Vec<NewObservation> = batch
        .iter()
        .enumerate()
        .map(|(i, e)| observation(e, now - 60_000 + i64::try_from(i).unwrap()))
        .collect();
    store
        .insert_observations(agent_id, &observations, now)
        .await
        .expect("insert observations");
    // a second, harmless host with two medium alerts
    let other = enroll(store, "laptop-002", "sales").await;
    let plain = [
        Evidence {
            signal: Signal::Dns,
            name: "chatgpt.com",
            product: PRODUCT_CHATGPT,
            risk: &[],
            process: None,
            details: json!({}),
        },
        Evidence {
            signal: Signal::TlsSni,
            name: "api.openai.com",
            product: PRODUCT_API,
            risk: &[],
            process: None,
            details: json!({}),
        },
    ];
    let observations: Vec<NewObservation> =
        plain.iter().map(|e| observation(e, now - 30_000)).collect();
    store
        .insert_observations(other, &observations, now)
        .await
        .expect("insert observations");

    let alert_of = |product: &'static str| {
        let store = store.clone();
        async move {
            let page = store
                .alert_queue(&AlertFilter {
                    agent_id: Some(agent_id),
                    product: Some(product.to_owned()),
                    // The policy may raise other reasons too (a risky setting, a shell); the
                    // scenario triages the "new product" alert.
                    reason: Some("new_product".to_owned()),
                    page_size: 10,
                    ..AlertFilter::default()
                })
                .await
                .expect("queue");
            assert_eq!(page.alerts.len(), 1, "one new_product alert for {product}");
            page.alerts[0].alert.id
        }
    };
    let claude_alert = alert_of(PRODUCT_CLAUDE).await;
    // a hostile note from a responder, shown on the alert page and in the audit log
    store
        .triage_alert(
            claude_alert,
            &TriageAction::Comment,
            &TriageContext {
                actor: RESPONDER.into(),
                from_address: "192.0.2.10".into(),
                note: NOTE.into(),
                now_ms: now,
            },
        )
        .await
        .expect("comment");
    Seeded {
        agent_id,
        claude_alert,
        dns_alert: alert_of(PRODUCT_CHATGPT).await,
        sni_alert: alert_of(PRODUCT_API).await,
        mcp_alert: alert_of(PRODUCT_CURSOR).await,
    }
}

// ------------------------------------------------------------------------------------- helpers

/// A running `shadowai-collector serve` on loopback ports chosen by the system.
struct Collector {
    _process: ProcessGuard,
    base: String,
}

impl Collector {
    async fn start(data_dir: &Path, database_url: &str) -> Collector {
        let mut command = Command::new(&binaries().collector);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database", database_url])
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ]);
        let process = ProcessGuard::spawn("shadowai-collector serve", &mut command);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let base = process.lines().iter().find_map(|line| {
                line.split("dashboard: ")
                    .nth(1)
                    .map(|url| url.trim().trim_end_matches('/').to_owned())
            });
            if let Some(base) = base {
                return Collector {
                    _process: process,
                    base,
                };
            }
            assert!(
                Instant::now() < deadline,
                "the collector did not start\n{}",
                process.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn sign_in(browser: &Browser, base: &str, user: &str) {
    browser.goto(&format!("{base}/login")).await;
    browser.type_into("#username", user).await;
    browser.type_into("#password", PASSWORD).await;
    browser
        .click_and_wait("form[action=\"/login\"] button[type=submit]")
        .await;
    assert_ne!(
        path_of(&browser.current_url().await),
        "/login",
        "sign-in as {user} failed: {}",
        browser.body_text().await
    );
}

/// The path of a URL (`http://host:port/path?query` → `/path`).
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |at| &after_scheme[at..]);
    path.split(['?', '#']).next().unwrap_or("/").to_owned()
}

/// No payload ran: no `window.__pwned`, the title is ours, and the page holds no element a payload
/// would have added.
async fn assert_nothing_ran(browser: &Browser, page: &str) {
    let verdict = browser
        .execute(
            "return { pwned: window.__pwned === undefined ? null : String(window.__pwned),
                      title: document.title,
                      injected: document.querySelectorAll('script, img, iframe, object, embed, b, i, svg:not(.chart), a[href^=\"javascript\"]').length };",
            vec![],
        )
        .await;
    assert_eq!(
        verdict["pwned"],
        Value::Null,
        "a payload ran on {page}: {verdict}"
    );
    assert!(
        verdict["title"]
            .as_str()
            .is_some_and(|t| t.ends_with("shadowai")),
        "title changed on {page}: {verdict}"
    );
    assert_eq!(
        verdict["injected"], 0,
        "markup from evidence reached the DOM of {page}: {verdict}"
    );
}

async fn wait_for_text(browser: &Browser, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = browser.body_text().await;
        if text.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {needle:?}: {text}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Screenshots of this run, under `target/browser-screenshots/<backend>/`; with
/// `SHADOWAI_UPDATE_SCREENSHOTS=1` the SQLite run also refreshes `docs/screenshots/`.
struct Screenshots {
    dir: PathBuf,
    docs: Option<PathBuf>,
}

impl Screenshots {
    fn new(backend: &str) -> Screenshots {
        let exe = std::env::current_exe().expect("test executable");
        // target/<profile>/deps/e2e-<hash>
        let target = exe
            .ancestors()
            .nth(3)
            .expect("target dir above the test executable")
            .to_path_buf();
        let dir = target.join("browser-screenshots").join(backend);
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let docs = (backend == "sqlite"
            && std::env::var_os("SHADOWAI_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1"))
        .then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
        Screenshots { dir, docs }
    }

    async fn save(&self, browser: &Browser, name: &str) {
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "screenshot {name} is a PNG");
        std::fs::write(self.dir.join(format!("{name}.png")), &png).expect("write screenshot");
        if let Some(docs) = &self.docs {
            std::fs::create_dir_all(docs).expect("docs/screenshots");
            std::fs::write(docs.join(format!("{name}.png")), &png).expect("write screenshot");
        }
    }
}

/// A page on another origin (another port) that POSTs a triage form to the collector as soon as
/// it loads: what a phishing page would do to a signed-in responder.
struct Attacker {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Attacker {
    async fn start(collector: &str, alert: Uuid) -> Attacker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("attacker listener");
        let url = format!(
            "http://localhost:{}/",
            listener.local_addr().unwrap().port()
        );
        let page = format!(
            "<!doctype html><html><body><form id=f method=post action=\"{collector}/alerts/{alert}/triage\">\
             <input type=hidden name=csrf value=guessed-token>\
             <input type=hidden name=action value=resolve>\
             <input type=hidden name=resolution value=sanctioned></form>\
             <script>document.getElementById('f').submit();</script></body></html>"
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        Attacker { url, task }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
