//! The dashboard and JSON API, driven through the router without a socket (`oneshot`), on a
//! SQLite store in a temporary directory.

// A test crate: a failed unwrap is a failed test, like in `#[test]` functions.
#![allow(clippy::unwrap_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use shadowai_collector::auth;
use shadowai_collector::http::{HttpConfig, HttpState, router};
use shadowai_collector::store::{
    EnrollAgent, NewEnrollmentToken, NewObservation, ObservedProcess, Role, Signal, Store,
};
use tower::ServiceExt;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery staple";
const HOSTILE_NAME: &str = "<script>alert(1)</script>";
const HOSTILE_CMDLINE: &str =
    "ollama serve \"><img src=x onerror=alert(2)> '; DROP TABLE observations;-- \u{1b}[2J";
const HOSTILE_HOST: &str = "host<b>&amp;\"'";

struct App {
    router: Router,
    store: Store,
    api_key: String,
    agent_id: Uuid,
    _dir: tempfile::TempDir,
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap()
}

async fn app_with(config: HttpConfig) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .unwrap();
    let now = now_ms();
    store
        .create_user(
            "alice",
            Role::Responder,
            &auth::hash_password(PASSWORD).unwrap(),
            now,
        )
        .await
        .unwrap();
    let (api_key, digest) = auth::new_api_key();
    store
        .create_api_key("ci", Role::Viewer, &digest, now)
        .await
        .unwrap();

    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: "tok".into(),
            secret_sha256: "secret".into(),
            group: "laptops".into(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: now,
            created_by: "test".into(),
        })
        .await
        .unwrap();
    let agent_id = Uuid::now_v7();
    store
        .enroll_agent(&EnrollAgent {
            token_id: "tok".into(),
            secret_sha256: "secret".into(),
            agent_id,
            cert_fingerprint: "fp".into(),
            cert_expires_at_ms: now + 1_000_000,
            hostname: HOSTILE_HOST.into(),
            os: "linux".into(),
            os_version: "6.1".into(),
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
            remote_addr: "192.0.2.1".into(),
            now_ms: now,
        })
        .await
        .unwrap();
    let observation = NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: 1_738_311_300_123,
        signal: Signal::Process,
        name: HOSTILE_NAME.into(),
        product: "ollama.ollama".into(),
        vendor: "Ollama".into(),
        category: "local_model_runtime".into(),
        rule: "data/ollama.toml#ollama.ollama/process[0]".into(),
        reason: "process name is ollama and arguments contain serve".into(),
        risk: vec!["exposed".into()],
        confidence: "high".into(),
        plan: None,
        tenant: None,
        catalog_version: "2025.06.1".into(),
        count: 1,
        process: Some(ObservedProcess {
            pid: 4242,
            parent_pid: 1,
            name: HOSTILE_NAME.into(),
            exe: "/opt/<i>ollama</i>".into(),
            cmdline: HOSTILE_CMDLINE.into(),
            user: "bob&co".into(),
        }),
        details: json!({"event": "started", "note": HOSTILE_NAME}),
        evidence: vec![1, 2, 3],
    };
    store
        .insert_observations(agent_id, &[observation], now)
        .await
        .unwrap();
    App {
        router: router(HttpState::new(store.clone(), config).with_enrollment_pin("pin".into())),
        store,
        api_key,
        agent_id,
        _dir: dir,
    }
}

async fn app() -> App {
    app_with(HttpConfig {
        secure_cookies: false,
    })
    .await
}

impl App {
    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router.clone().oneshot(request).await.unwrap()
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, cookie: &str, form: &[(&str, &str)]) -> Response<Body> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, cookie)
            .body(Body::from(body))
            .unwrap();
        self.send(request).await
    }

    /// Logs in through the form; returns the `Cookie` header value of the session.
    async fn login(&self) -> String {
        let (csrf_cookie, csrf) = self.login_form().await;
        let response = self
            .post_form(
                "/login",
                &csrf_cookie,
                &[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("csrf", &csrf),
                ],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/");
        let session = set_cookie(&response, "shadowai_session").expect("session cookie");
        cookie_pair(&session)
    }

    /// GET /login; returns the CSRF cookie (as a `Cookie` header value) and the form's hidden token.
    async fn login_form(&self) -> (String, String) {
        let response = self.get("/login", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = cookie_pair(&set_cookie(&response, "shadowai_csrf").expect("csrf cookie"));
        let html = text(response).await;
        let csrf = between(&html, "name=\"csrf\" value=\"", "\"")
            .expect("csrf field")
            .to_owned();
        (cookie, csrf)
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn set_cookie(response: &Response<Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// "name=value" of a Set-Cookie header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

async fn text(response: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 10 * 1024 * 1024)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn json_body(response: Response<Body>) -> Value {
    let is_json = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json");
    assert!(is_json, "{:?}", response.headers());
    serde_json::from_str(&text(response).await).unwrap()
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn api_refuses_calls_without_valid_credentials() {
    let app = app().await;
    let (unknown_key, _) = auth::new_api_key();
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("authorization", &bearer(&unknown_key))],
        &[("authorization", "Bearer sak_short")],
        &[("authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")],
        &[(
            "cookie",
            "shadowai_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
    ];
    for uri in ["/api/v1/alerts", "/api/v1/observations"] {
        for headers in cases {
            let response = app.get(uri, headers).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{uri} {headers:?}"
            );
            assert_eq!(
                json_body(response).await,
                json!({"error": "unauthenticated"})
            );
        }
    }
    // A revoked key stops working.
    let (key, digest) = auth::new_api_key();
    let id = app
        .store
        .create_api_key("temp", Role::Admin, &digest, now_ms())
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/v1/alerts", &[("authorization", &bearer(&key))])
            .await
            .status(),
        StatusCode::OK
    );
    app.store.revoke_api_key(id, now_ms()).await.unwrap();
    assert_eq!(
        app.get("/api/v1/alerts", &[("authorization", &bearer(&key))])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn api_key_lists_alerts_with_host_process_and_times() {
    let app = app().await;
    let response = app
        .get(
            "/api/v1/alerts",
            &[("authorization", &bearer(&app.api_key))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    assert_eq!(body["next_cursor"], Value::Null);
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert["agent_id"], app.agent_id.to_string());
    assert_eq!(alert["host"], HOSTILE_HOST);
    assert_eq!(alert["group"], "laptops");
    assert_eq!(alert["user"], "bob&co");
    assert_eq!(alert["product"], "ollama.ollama");
    assert_eq!(alert["vendor"], "Ollama");
    assert_eq!(alert["category"], "local_model_runtime");
    assert_eq!(alert["reason"], "new_product");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["status"], "open");
    assert_eq!(
        alert["title"],
        "New AI product on host: Ollama ollama.ollama"
    );
    assert_eq!(alert["rule"], "data/ollama.toml#ollama.ollama/process[0]");
    assert_eq!(
        alert["process"],
        json!({"pid": 4242, "name": HOSTILE_NAME, "exe": "/opt/<i>ollama</i>", "cmdline": HOSTILE_CMDLINE})
    );
    assert_eq!(alert["first_seen"], "2025-01-31T08:15:00.123Z");
    assert_eq!(alert["last_seen"], "2025-01-31T08:15:00.123Z");
    assert_eq!(alert["count"], 1);
    assert_eq!(alert["first_observation_id"], alert["last_observation_id"]);
    assert!(Uuid::try_parse(alert["id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn api_lists_observations_verbatim() {
    let app = app().await;
    let response = app
        .get(
            "/api/v1/observations?limit=10",
            &[("authorization", &bearer(&app.api_key))],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    let observation = &body["observations"][0];
    assert_eq!(observation["host"], HOSTILE_HOST);
    assert_eq!(observation["signal"], "process");
    assert_eq!(observation["name"], HOSTILE_NAME);
    assert_eq!(observation["observed_at"], "2025-01-31T08:15:00.123Z");
    assert!(observation["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(observation["risk"], json!(["exposed"]));
    assert_eq!(observation["confidence"], "high");
    assert_eq!(observation["plan"], Value::Null);
    assert_eq!(observation["count"], 1);
    assert_eq!(
        observation["process"],
        json!({"pid": 4242, "parent_pid": 1, "name": HOSTILE_NAME, "exe": "/opt/<i>ollama</i>", "cmdline": HOSTILE_CMDLINE, "user": "bob&co"})
    );
    assert_eq!(
        observation["details"],
        json!({"event": "started", "note": HOSTILE_NAME})
    );
    // Filters.
    let by_agent = format!(
        "/api/v1/observations?agent_id={}&product=ollama.ollama",
        app.agent_id
    );
    let body = json_body(
        app.get(&by_agent, &[("authorization", &bearer(&app.api_key))])
            .await,
    )
    .await;
    assert_eq!(body["observations"].as_array().unwrap().len(), 1);
    let other = format!("/api/v1/observations?agent_id={}", Uuid::now_v7());
    let body = json_body(
        app.get(&other, &[("authorization", &bearer(&app.api_key))])
            .await,
    )
    .await;
    assert_eq!(body, json!({"observations": [], "next_cursor": null}));
}

#[tokio::test]
async fn api_pages_with_a_cursor() {
    let app = app().await;
    let auth = bearer(&app.api_key);
    // A second product on the same host: a second alert.
    let second = NewObservation {
        id: Uuid::now_v7(),
        observed_at_ms: 1_738_311_400_000,
        signal: Signal::Dns,
        name: "api.openai.com".into(),
        product: "openai.api".into(),
        vendor: "OpenAI".into(),
        category: "llm_api".into(),
        rule: "data/openai.toml#openai.api/domain[0]".into(),
        reason: "domain".into(),
        risk: vec![],
        confidence: "high".into(),
        plan: None,
        tenant: None,
        catalog_version: "1".into(),
        count: 1,
        process: None,
        details: json!({}),
        evidence: vec![],
    };
    app.store
        .insert_observations(app.agent_id, &[second], now_ms())
        .await
        .unwrap();

    let first_page = json_body(
        app.get("/api/v1/alerts?limit=1", &[("authorization", &auth)])
            .await,
    )
    .await;
    assert_eq!(
        first_page["alerts"][0]["product"], "openai.api",
        "newest last_seen first"
    );
    assert_eq!(first_page["alerts"][0]["process"]["pid"], Value::Null);
    let cursor = first_page["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second_page = json_body(
        app.get(
            &format!("/api/v1/alerts?limit=1&cursor={cursor}"),
            &[("authorization", &auth)],
        )
        .await,
    )
    .await;
    assert_eq!(second_page["alerts"][0]["product"], "ollama.ollama");
    assert_eq!(second_page["next_cursor"], Value::Null);

    let filtered = json_body(
        app.get(
            "/api/v1/alerts?status=open&product=openai.api",
            &[("authorization", &auth)],
        )
        .await,
    )
    .await;
    assert_eq!(filtered["alerts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn api_refuses_bad_parameters_with_a_json_error() {
    let app = app().await;
    let auth = bearer(&app.api_key);
    for uri in [
        "/api/v1/alerts?limit=0",
        "/api/v1/alerts?limit=1001",
        "/api/v1/alerts?limit=abc",
        "/api/v1/alerts?cursor=nonsense",
        "/api/v1/alerts?status=%3Cscript%3E",
        "/api/v1/alerts?limit=1&limit=2",
        "/api/v1/observations?agent_id=not-a-uuid",
        "/api/v1/observations?cursor=1_zz",
        &format!("/api/v1/observations?product={}", "p".repeat(129)),
    ] {
        let response = app.get(uri, &[("authorization", &auth)]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        let body = json_body(response).await;
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{uri}: {body}"
        );
    }
    let response = app
        .get("/api/v1/nothing", &[("authorization", &auth)])
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await, json!({"error": "not found"}));
}

#[tokio::test]
async fn dashboard_without_a_session_redirects_to_login() {
    let app = app().await;
    for headers in [&[][..], &[("cookie", "shadowai_session=forged")][..]] {
        let response = app.get("/", headers).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[header::LOCATION], "/login");
    }
}

#[tokio::test]
async fn login_with_csrf_opens_the_dashboard_and_logout_closes_it() {
    let app = app().await;
    let response = app.get("/login", &[]).await;
    let csrf_cookie = set_cookie(&response, "shadowai_csrf").unwrap();
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );

    let (csrf_cookie, csrf) = app.login_form().await;
    let response = app
        .post_form(
            "/login",
            &csrf_cookie,
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let session = set_cookie(&response, "shadowai_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            session.split("; ").any(|a| a == attribute),
            "{attribute} missing: {session}"
        );
    }
    assert!(!session.contains("Secure"), "not configured: {session}");
    let cookie = cookie_pair(&session);

    let response = app.get("/", &[("cookie", &cookie)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = text(response).await;
    assert!(html.contains("ollama.ollama"));
    assert!(html.contains("pid 4242"));
    assert!(html.contains("data/ollama.toml#ollama.ollama/process[0]"));
    assert!(html.contains("2025-01-31T08:15:00Z"));
    assert!(html.contains("bob&amp;co"));
    // The session cookie also opens the API.
    assert_eq!(
        app.get("/api/v1/alerts", &[("cookie", &cookie)])
            .await
            .status(),
        StatusCode::OK
    );
    // A logged-in user asking for the login page goes to the dashboard.
    assert_eq!(
        app.get("/login", &[("cookie", &cookie)]).await.headers()[header::LOCATION],
        "/"
    );

    // Logout needs the session's CSRF token, which the dashboard's form carries.
    let logout_csrf = between(&html, "name=\"csrf\" value=\"", "\"")
        .unwrap()
        .to_owned();
    let refused = app
        .post_form("/logout", &cookie, &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/", &[("cookie", &cookie)]).await.status(),
        StatusCode::OK,
        "still logged in"
    );
    let response = app
        .post_form("/logout", &cookie, &[("csrf", &logout_csrf)])
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login");
    assert!(
        set_cookie(&response, "shadowai_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        app.get("/", &[("cookie", &cookie)]).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.get("/api/v1/alerts", &[("cookie", &cookie)])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn login_with_a_wrong_or_missing_csrf_token_is_refused() {
    let app = app().await;
    let (csrf_cookie, csrf) = app.login_form().await;
    let other = auth::random_token();
    let cases: [(&str, &str); 4] = [
        (csrf_cookie.as_str(), other.as_str()),
        (csrf_cookie.as_str(), ""),
        ("", csrf.as_str()),
        ("shadowai_csrf=", ""),
    ];
    for (cookie, form_csrf) in cases {
        let response = app
            .post_form(
                "/login",
                cookie,
                &[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("csrf", form_csrf),
                ],
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "cookie {cookie:?} form {form_csrf:?}"
        );
        assert!(set_cookie(&response, "shadowai_session").is_none());
    }
}

#[tokio::test]
async fn wrong_logins_get_the_same_generic_answer() {
    let app = app().await;
    let (cookie, csrf) = app.login_form().await;
    let mut bodies = Vec::new();
    for (user, password) in [
        ("alice", "wrong password"),
        ("mallory", PASSWORD),
        ("alice", ""),
        (&*"a".repeat(5000), "x"),
    ] {
        let response = app
            .post_form(
                "/login",
                &cookie,
                &[("username", user), ("password", password), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&response, "shadowai_session").is_none());
        bodies.push(text(response).await);
    }
    assert!(bodies[0].contains("Wrong user name or password."));
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "answers differ between known and unknown users"
    );
}

#[tokio::test]
async fn hostile_strings_are_escaped_in_the_dashboard() {
    let app = app().await;
    let cookie = app.login().await;
    let html = text(app.get("/", &[("cookie", &cookie)]).await).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "name not escaped: {html}"
    );
    assert!(!html.contains(HOSTILE_NAME));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<i>ollama"));
    assert!(!html.contains("host<b>"));
    assert!(
        html.contains("host&lt;b&gt;&amp;amp;&quot;&#39;"),
        "host not escaped"
    );
    // The command line is cut in the cell and complete (escaped) in the tooltip; the terminal escape
    // is shown, not sent raw.
    assert!(!html.contains('\u{1b}'));
    assert!(html.contains("\\u{1b}[2J"));
    assert!(html.contains(
        "title=\"ollama serve &quot;&gt;&lt;img src=x onerror=alert(2)&gt; &#39;; DROP TABLE"
    ));
    // No script anywhere and no inline style.
    assert!(!html.contains("<script"));
    assert!(!html.contains("style="));
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = app().await;
    let cookie = app.login().await;
    let key = bearer(&app.api_key);
    let responses = [
        app.get("/", &[("cookie", &cookie)]).await,
        app.get("/", &[]).await,
        app.get("/login", &[]).await,
        app.get("/api/v1/alerts", &[("authorization", &key)]).await,
        app.get("/api/v1/alerts", &[]).await,
        app.get("/healthz", &[]).await,
        app.get("/static/app.css", &[]).await,
        app.get("/no-such-page", &[]).await,
    ];
    for response in responses {
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
    let page = app.get("/", &[("cookie", &cookie)]).await;
    assert_eq!(page.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn secure_cookies_when_configured() {
    let app = app_with(HttpConfig {
        secure_cookies: true,
    })
    .await;
    let response = app.get("/login", &[]).await;
    assert!(
        set_cookie(&response, "shadowai_csrf")
            .unwrap()
            .split("; ")
            .any(|a| a == "Secure")
    );
    let (csrf_cookie, csrf) = app.login_form().await;
    let response = app
        .post_form(
            "/login",
            &csrf_cookie,
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert!(
        set_cookie(&response, "shadowai_session")
            .unwrap()
            .split("; ")
            .any(|a| a == "Secure")
    );
}

#[tokio::test]
async fn health_readiness_and_stylesheet() {
    let app = app().await;
    let response = app.get("/healthz", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "ok");
    assert_eq!(app.get("/readyz", &[]).await.status(), StatusCode::OK);
    let css = app.get("/static/app.css", &[]).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(
        css.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(text(css).await.contains("table"));
    app.store.close().await;
    assert_eq!(
        app.get("/readyz", &[]).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

// ------------------------------------------------------------------ findings and policy (issue 7)

impl App {
    async fn send_json(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Response<Body> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body.to_string())).unwrap())
            .await
    }

    async fn admin_key(&self) -> String {
        let (key, digest) = auth::new_api_key();
        self.store
            .create_api_key("admin", Role::Admin, &digest, now_ms())
            .await
            .unwrap();
        key
    }
}

#[tokio::test]
async fn api_lists_findings_and_filters_alerts() {
    let app = app().await;
    let auth = bearer(&app.api_key);
    let headers = [("authorization", auth.as_str())];
    let body = json_body(app.get("/api/v1/findings", &headers).await).await;
    let findings = body["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!(finding["host"], HOSTILE_HOST);
    assert_eq!(finding["user"], "bob&co");
    assert_eq!(finding["product"], "ollama.ollama");
    assert_eq!(finding["signal"], "process");
    assert_eq!(finding["count"], 1);
    assert_eq!(finding["risk"], json!(["exposed"]));
    assert_eq!(finding["first_seen"], "2025-01-31T08:15:00.123Z");
    for (uri, expected) in [
        ("/api/v1/findings?risk=exposed&signal=process", 1),
        ("/api/v1/findings?risk=approval_bypass", 0),
        ("/api/v1/findings?group=laptops&user=bob%26co", 1),
        ("/api/v1/findings?since=2025-02-01T00:00:00Z", 0),
    ] {
        let body = json_body(app.get(uri, &headers).await).await;
        assert_eq!(
            body["findings"].as_array().unwrap().len(),
            expected,
            "{uri}"
        );
    }
    for (uri, expected) in [
        ("/api/v1/alerts?reason=new_product&severity=high", 1),
        ("/api/v1/alerts?reason=agent_shell", 0),
        (
            "/api/v1/alerts?category=local_model_runtime&group=laptops",
            1,
        ),
        ("/api/v1/alerts?until=2025-01-31T08:15:00.123Z", 0),
        ("/api/v1/alerts?suppressed=only", 0),
    ] {
        let body = json_body(app.get(uri, &headers).await).await;
        assert_eq!(body["alerts"].as_array().unwrap().len(), expected, "{uri}");
    }
    let alert = &json_body(app.get("/api/v1/alerts", &headers).await).await["alerts"][0];
    assert!(
        alert["explanation"]
            .as_str()
            .unwrap()
            .contains("not sanctioned"),
        "{alert}"
    );
    assert_eq!(alert["suppressed_by"], Value::Null);
    let links = json_body(
        app.get(
            &format!(
                "/api/v1/alerts/{}/observations",
                alert["id"].as_str().unwrap()
            ),
            &headers,
        )
        .await,
    )
    .await;
    assert_eq!(
        links["observation_ids"],
        json!([alert["first_observation_id"]])
    );
    for uri in [
        "/api/v1/findings?risk=a%25b",
        "/api/v1/findings?signal=smoke",
        "/api/v1/findings?host=laptop",
        "/api/v1/findings?since=yesterday",
        "/api/v1/alerts?reason=bogus",
        "/api/v1/alerts?severity=urgent",
        "/api/v1/alerts?suppressed=maybe",
        "/api/v1/alerts/not-a-uuid/observations",
    ] {
        let response = app.get(uri, &headers).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(json_body(response).await["error"].is_string());
    }
    assert_eq!(
        app.get("/api/v1/findings", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn policy_changes_need_an_admin_and_are_audited() {
    let app = app().await;
    let sanction = json!({"product": "ollama.ollama", "note": "approved by <b>IT</b>"});
    // Viewer key, and a responder session: forbidden.
    let viewer = bearer(&app.api_key);
    let response = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions",
            &[("authorization", &viewer)],
            &sanction,
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let responder = app.login().await;
    let response = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions",
            &[("cookie", &responder)],
            &sanction,
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let admin = bearer(&app.admin_key().await);
    let admin_headers = [("authorization", admin.as_str())];
    let response = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions",
            &admin_headers,
            &sanction,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_body(response).await;
    assert_eq!(
        created["category"], "local_model_runtime",
        "from the catalog"
    );
    let again = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions",
            &admin_headers,
            &sanction,
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    for bad in [
        json!({"product": "Not An Id"}),
        json!({"product": "ollama.ollama", "group": "x", "extra": 1}),
        json!({"product": "unknown.product"}),
        json!([1, 2]),
    ] {
        let response = app
            .send_json("POST", "/api/v1/policy/sanctions", &admin_headers, &bad)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let tenant = json_body(
        app.send_json(
            "POST",
            "/api/v1/policy/tenants",
            &admin_headers,
            &json!({"product": "microsoft.azure-openai", "tenant": "Contoso"}),
        )
        .await,
    )
    .await;
    assert_eq!(tenant["tenant"], "contoso");
    let suppression = app
        .send_json(
            "POST",
            "/api/v1/policy/suppressions",
            &admin_headers,
            &json!({"owner": "bob", "expires_at": "2999-01-01T00:00:00Z", "reason": "new_product"}),
        )
        .await;
    assert_eq!(
        suppression.status(),
        StatusCode::BAD_REQUEST,
        "more than 366 days away"
    );
    let override_ = json_body(
        app.send_json(
            "POST",
            "/api/v1/policy/overrides",
            &admin_headers,
            &json!({"reason": "sensor_silent", "severity": "high"}),
        )
        .await,
    )
    .await;
    let uri = format!(
        "/api/v1/policy/overrides/{}",
        override_["id"].as_str().unwrap()
    );
    let removed = app
        .send_json("DELETE", &uri, &admin_headers, &json!({}))
        .await;
    assert_eq!(removed.status(), StatusCode::OK);
    let removed_again = app
        .send_json("DELETE", &uri, &admin_headers, &json!({}))
        .await;
    assert_eq!(removed_again.status(), StatusCode::NOT_FOUND);
    let setting = app
        .send_json(
            "POST",
            "/api/v1/policy/settings",
            &admin_headers,
            &json!({"name": "consumer_use_threshold", "value": 0}),
        )
        .await;
    assert_eq!(setting.status(), StatusCode::BAD_REQUEST);

    let policy = json_body(app.get("/api/v1/policy", &admin_headers).await).await;
    assert_eq!(policy["sanctions"][0]["product"], "ollama.ollama");
    assert_eq!(policy["tenants"][0]["tenant"], "contoso");
    assert_eq!(policy["settings"]["consumer_use_threshold"], 20);
    let changes = json_body(app.get("/api/v1/policy/changes", &admin_headers).await).await;
    let kinds: Vec<&str> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "override.remove",
            "override.add",
            "tenant.add",
            "sanction.add"
        ]
    );
    assert_eq!(changes["changes"][3]["actor"], "apikey:admin");
    assert_eq!(
        changes["changes"][3]["after"]["note"],
        "approved by <b>IT</b>"
    );

    // An admin session needs the session's CSRF token in a header.
    app.store
        .create_user(
            "root",
            Role::Admin,
            &auth::hash_password(PASSWORD).unwrap(),
            now_ms(),
        )
        .await
        .unwrap();
    let (csrf_cookie, csrf) = app.login_form().await;
    let response = app
        .post_form(
            "/login",
            &csrf_cookie,
            &[
                ("username", "root"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    let session = cookie_pair(&set_cookie(&response, "shadowai_session").unwrap());
    let unsanction = json!({"product": "ollama.ollama"});
    let refused = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions/remove",
            &[("cookie", &session)],
            &unsanction,
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let html = text(app.get("/", &[("cookie", &session)]).await).await;
    let token = between(&html, "name=\"csrf\" value=\"", "\"")
        .unwrap()
        .to_owned();
    let accepted = app
        .send_json(
            "POST",
            "/api/v1/policy/sanctions/remove",
            &[("cookie", &session), ("x-csrf-token", &token)],
            &unsanction,
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let changes = json_body(
        app.get("/api/v1/policy/changes?limit=1", &admin_headers)
            .await,
    )
    .await;
    assert_eq!(changes["changes"][0]["actor"], "user:root");
    assert_eq!(changes["changes"][0]["kind"], "sanction.remove");
}

// ------------------------------------------------------------------------------- admin forms

impl App {
    /// Adds a user with `role`, signs them in; returns the session cookie and the page CSRF token.
    async fn session_as(&self, name: &str, role: Role) -> (String, String) {
        self.store
            .create_user(
                name,
                role,
                &auth::hash_password(PASSWORD).unwrap(),
                now_ms(),
            )
            .await
            .unwrap();
        let (csrf_cookie, csrf) = self.login_form().await;
        let response = self
            .post_form(
                "/login",
                &csrf_cookie,
                &[("username", name), ("password", PASSWORD), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let session = cookie_pair(&set_cookie(&response, "shadowai_session").unwrap());
        let html = text(self.get("/overview", &[("cookie", &session)]).await).await;
        let token = between(&html, "name=\"csrf\" value=\"", "\"")
            .unwrap()
            .to_owned();
        (session, token)
    }

    /// Posts a form; asserts the redirect to `to` (POST-redirect-GET).
    async fn post_done(&self, uri: &str, cookie: &str, form: &[(&str, &str)], to: &str) {
        let response = self.post_form(uri, cookie, form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{uri} {form:?}");
        assert_eq!(response.headers()[header::LOCATION], to, "{uri}");
    }

    async fn change_kinds(&self) -> Vec<(String, String)> {
        self.store
            .list_policy_changes(100, None)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|c| (c.kind, c.actor))
            .collect()
    }
}

#[tokio::test]
async fn admins_change_the_policy_through_the_policy_page_forms() {
    let app = app().await;
    let (admin, csrf) = app.session_as("root", Role::Admin).await;
    let page = app.get("/policy", &[("cookie", &admin)]).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(text(page).await.contains("No product is sanctioned."));

    let c = csrf.as_str();
    app.post_done(
        "/policy/sanctions",
        &admin,
        &[
            ("csrf", c),
            ("product", "ollama.ollama"),
            ("group", "eng"),
            ("note", HOSTILE_NAME),
        ],
        "/policy",
    )
    .await;
    app.post_done(
        "/policy/tenants",
        &admin,
        &[
            ("csrf", c),
            ("product", "microsoft.azure-openai"),
            ("tenant", "Contoso"),
        ],
        "/policy",
    )
    .await;
    app.post_done(
        "/policy/overrides",
        &admin,
        &[
            ("csrf", c),
            ("reason", "sensor_silent"),
            ("severity", "high"),
        ],
        "/policy",
    )
    .await;
    app.post_done(
        "/policy/suppressions",
        &admin,
        &[
            ("csrf", c),
            ("reason", "new_product"),
            ("owner", HOSTILE_HOST),
            ("days", "30"),
            ("note", "pilot"),
        ],
        "/policy",
    )
    .await;
    app.post_done(
        "/policy/settings",
        &admin,
        &[
            ("csrf", c),
            ("name", "consumer_use_threshold"),
            ("value", "5"),
        ],
        "/policy",
    )
    .await;

    let policy = app.store.read_policy(now_ms()).await.unwrap();
    assert_eq!(policy.sanctions[0].product, "ollama.ollama");
    assert_eq!(policy.sanctions[0].group, "eng");
    assert_eq!(policy.sanctions[0].note, HOSTILE_NAME);
    assert_eq!(policy.sanctions[0].category, "local_model_runtime");
    assert_eq!(policy.tenants[0].tenant, "contoso");
    assert_eq!(policy.overrides[0].reason, "sensor_silent");
    assert_eq!(policy.settings.consumer_use_threshold, 5);
    let suppressions = app.store.list_suppressions().await.unwrap();
    assert_eq!(suppressions[0].owner, HOSTILE_HOST);
    assert!(suppressions[0].is_active(now_ms()));

    // Hostile strings are shown escaped, in the tables and in the change log.
    let html = text(app.get("/policy", &[("cookie", &admin)]).await).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("host<b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("sanction.add") && html.contains("user:root"));

    // A refused change says why and changes nothing.
    let refused = app
        .post_form(
            "/policy/sanctions",
            &admin,
            &[("csrf", c), ("product", "Not An Id")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(text(refused).await.contains("must be a product id"));
    let too_long = app
        .post_form(
            "/policy/suppressions",
            &admin,
            &[
                ("csrf", c),
                ("reason", "new_product"),
                ("owner", "x"),
                ("days", "400"),
            ],
        )
        .await;
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);

    // Removal, each through its form.
    app.post_done(
        "/policy/sanctions/remove",
        &admin,
        &[("csrf", c), ("product", "ollama.ollama"), ("group", "eng")],
        "/policy",
    )
    .await;
    let tenant = format!("/policy/tenants/{}/remove", policy.tenants[0].id);
    app.post_done(&tenant, &admin, &[("csrf", c)], "/policy")
        .await;
    let override_ = format!("/policy/overrides/{}/remove", policy.overrides[0].id);
    app.post_done(&override_, &admin, &[("csrf", c)], "/policy")
        .await;
    let lift = format!("/policy/suppressions/{}/lift", suppressions[0].id);
    app.post_done(&lift, &admin, &[("csrf", c)], "/policy")
        .await;
    let again = app.post_form(&lift, &admin, &[("csrf", c)]).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let policy = app.store.read_policy(now_ms()).await.unwrap();
    assert!(policy.sanctions.is_empty() && policy.tenants.is_empty());
    assert!(policy.overrides.is_empty());
    let suppressions = app.store.list_suppressions().await.unwrap();
    assert!(suppressions[0].lifted_at_ms.is_some());
    let changes = app.change_kinds().await;
    let kinds: Vec<&str> = changes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "sanction.add",
            "tenant.add",
            "override.add",
            "suppression.add",
            "setting.set",
            "sanction.remove",
            "tenant.remove",
            "override.remove",
            "suppression.lift"
        ]
    );
    assert!(changes.iter().all(|(_, actor)| actor == "user:root"));
    let html = text(app.get("/policy", &[("cookie", &admin)]).await).await;
    assert!(html.contains("lifted"));
}

#[tokio::test]
async fn policy_forms_refuse_other_roles_and_missing_or_wrong_csrf() {
    let app = app().await;
    let (responder, responder_csrf) = app.session_as("resp", Role::Responder).await;
    let (viewer, viewer_csrf) = app.session_as("view", Role::Viewer).await;
    let (admin, _) = app.session_as("root", Role::Admin).await;
    for cookie in [&responder, &viewer] {
        let page = app.get("/policy", &[("cookie", cookie)]).await;
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert!(text(page).await.contains("This needs the admin role."));
        let nav = text(app.get("/overview", &[("cookie", cookie)]).await).await;
        assert!(!nav.contains("href=\"/policy\""));
    }
    let admin_nav = text(app.get("/overview", &[("cookie", &admin)]).await).await;
    assert!(admin_nav.contains("href=\"/policy\""));

    let tries: [(&str, &str, &str); 5] = [
        (&responder, &responder_csrf, "responder"),
        (&viewer, &viewer_csrf, "viewer"),
        (&admin, "", "missing csrf"),
        (&admin, "wrong", "wrong csrf"),
        (&admin, &responder_csrf, "another session's csrf"),
    ];
    for (cookie, csrf, who) in tries {
        for uri in [
            "/policy/sanctions",
            "/policy/tenants",
            "/policy/overrides",
            "/policy/suppressions",
            "/policy/settings",
        ] {
            let response = app
                .post_form(
                    uri,
                    cookie,
                    &[
                        ("csrf", csrf),
                        ("product", "ollama.ollama"),
                        ("tenant", "t"),
                        ("severity", "high"),
                        ("owner", "me"),
                        ("days", "3"),
                        ("name", "consumer_use_threshold"),
                        ("value", "3"),
                    ],
                )
                .await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who} {uri}");
        }
    }
    // Without a session: to the login form.
    let anonymous = app
        .post_form("/policy/sanctions", "", &[("product", "ollama.ollama")])
        .await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers()[header::LOCATION], "/login");
    assert!(app.change_kinds().await.is_empty(), "nothing changed");
    let policy = app.store.read_policy(now_ms()).await.unwrap();
    assert!(policy.sanctions.is_empty() && policy.tenants.is_empty());
    assert!(policy.overrides.is_empty());
    assert_eq!(policy.settings.consumer_use_threshold, 20);
    assert!(app.store.list_suppressions().await.unwrap().is_empty());
}

#[tokio::test]
async fn admins_mark_a_product_sanctioned_from_its_page() {
    let app = app().await;
    let (admin, csrf) = app.session_as("root", Role::Admin).await;
    let html = text(
        app.get("/products/ollama.ollama", &[("cookie", &admin)])
            .await,
    )
    .await;
    assert!(html.contains("Mark sanctioned") && html.contains("Not sanctioned for any group."));
    let responder = app.login().await;
    let html = text(
        app.get("/products/ollama.ollama", &[("cookie", &responder)])
            .await,
    )
    .await;
    assert!(!html.contains("Mark sanctioned"));

    for group in ["", "eng"] {
        app.post_done(
            "/policy/sanctions",
            &admin,
            &[
                ("csrf", &csrf),
                ("from", "product"),
                ("product", "ollama.ollama"),
                ("group", group),
                ("note", "approved <b>by CISO</b>"),
            ],
            "/products/ollama.ollama",
        )
        .await;
    }
    let html = text(
        app.get("/products/ollama.ollama", &[("cookie", &admin)])
            .await,
    )
    .await;
    assert!(html.contains("every group") && html.contains("<td>eng</td>"));
    assert!(html.contains("approved &lt;b&gt;by CISO&lt;/b&gt;"));
    assert!(!html.contains("<b>by CISO"));
    app.post_done(
        "/policy/sanctions/remove",
        &admin,
        &[
            ("csrf", &csrf),
            ("from", "product"),
            ("product", "ollama.ollama"),
            ("group", "eng"),
        ],
        "/products/ollama.ollama",
    )
    .await;
    let policy = app.store.read_policy(now_ms()).await.unwrap();
    assert_eq!(policy.sanctions.len(), 1);
    assert_eq!(policy.sanctions[0].group, "");
    let changes = app.change_kinds().await;
    assert_eq!(changes.len(), 3);
}

#[tokio::test]
async fn admins_create_an_enrollment_token_shown_once() {
    let app = app().await;
    let (admin, csrf) = app.session_as("root", Role::Admin).await;
    let response = app
        .post_form(
            "/tokens",
            &admin,
            &[
                ("csrf", &csrf),
                ("group", "mdm<i>"),
                ("max_uses", "2"),
                ("expires", "7d"),
            ],
        )
        .await;
    // POST-redirect-GET: the answer to the form is a redirect, so a reload repeats no POST
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let shown = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(shown.starts_with("/tokens?shown="), "{shown}");
    // another admin's session cannot read it (and does not use it up)
    let (other_admin, _) = app.session_as("root2", Role::Admin).await;
    let html = text(app.get(&shown, &[("cookie", &other_admin)]).await).await;
    assert!(!html.contains("new-token"), "bound to the session");
    let response = app.get(&shown, &[("cookie", &admin)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let html = text(response).await;
    let token = between(&html, "<code id=\"new-token\">", "</code>")
        .unwrap()
        .to_owned();
    // a reload of the page that showed it shows it no more
    let reloaded = text(app.get(&shown, &[("cookie", &admin)]).await).await;
    assert!(!reloaded.contains("new-token"), "shown once");
    assert!(!reloaded.contains(&token));
    assert!(
        token.starts_with("sa1.") && token.ends_with(".pin"),
        "{token}"
    );
    assert!(html.contains("mdm&lt;i&gt;"));
    let id = token.split('.').nth(1).unwrap();
    let tokens = app.store.list_enrollment_tokens(10).await.unwrap();
    let created = tokens.iter().find(|t| t.token_id == id).unwrap();
    assert_eq!(created.group, "mdm<i>");
    assert_eq!(created.max_uses, Some(2));
    assert!(created.expires_at_ms.unwrap() > now_ms() + 6 * 86_400_000);
    let secret = token.split('.').nth(2).unwrap();
    let listing = text(app.get("/tokens", &[("cookie", &admin)]).await).await;
    assert!(
        listing.contains(id) && !listing.contains(secret),
        "shown once"
    );

    for (form, status) in [
        (
            [("csrf", csrf.as_str()), ("group", ""), ("expires", "7d")],
            StatusCode::BAD_REQUEST,
        ),
        (
            [("csrf", csrf.as_str()), ("group", "g"), ("expires", "7w")],
            StatusCode::BAD_REQUEST,
        ),
        (
            [("csrf", "wrong"), ("group", "g"), ("expires", "7d")],
            StatusCode::FORBIDDEN,
        ),
    ] {
        let response = app.post_form("/tokens", &admin, &form).await;
        assert_eq!(response.status(), status, "{form:?}");
    }
    let responder = app.login().await;
    let html = text(app.get("/overview", &[("cookie", &responder)]).await).await;
    let responder_csrf = between(&html, "name=\"csrf\" value=\"", "\"").unwrap();
    let refused = app
        .post_form(
            "/tokens",
            &responder,
            &[("csrf", responder_csrf), ("group", "g"), ("expires", "7d")],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.store.list_enrollment_tokens(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn admins_add_a_user_whose_password_is_shown_once() {
    let app = app().await;
    let (admin, csrf) = app.session_as("root", Role::Admin).await;
    let response = app
        .post_form(
            "/users",
            &admin,
            &[("csrf", &csrf), ("name", "carol<b>"), ("role", "viewer")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let shown = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(shown.starts_with("/users?shown="), "{shown}");
    // the id does not show a token on the tokens page, nor the password to a responder
    let tokens_page = shown.replace("/users?", "/tokens?");
    let html = text(app.get(&tokens_page, &[("cookie", &admin)]).await).await;
    assert!(!html.contains("new-token"));
    let viewer = app.get(&shown, &[("cookie", &app.login().await)]).await;
    assert_eq!(viewer.status(), StatusCode::FORBIDDEN);

    let response = app.get(&shown, &[("cookie", &admin)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let html = text(response).await;
    assert!(html.contains("carol&lt;b&gt;"), "{html}");
    let password = between(&html, "<code id=\"new-password\">", "</code>")
        .expect("the password is shown")
        .to_owned();
    let reloaded = text(app.get(&shown, &[("cookie", &admin)]).await).await;
    assert!(!reloaded.contains(&password), "shown once");
    assert!(reloaded.contains("carol&lt;b&gt;"), "the user is listed");

    // the password shown is the user's
    let (csrf_cookie, login_csrf) = app.login_form().await;
    let login = app
        .post_form(
            "/login",
            &csrf_cookie,
            &[
                ("username", "carol<b>"),
                ("password", &password),
                ("csrf", &login_csrf),
            ],
        )
        .await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&login, "shadowai_session").is_some());

    // a name taken answers on the POST itself, with nothing stashed
    let again = app
        .post_form(
            "/users",
            &admin,
            &[("csrf", &csrf), ("name", "carol<b>"), ("role", "viewer")],
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
}

// ------------------------------------------------------------------------------------ OpenAPI

/// The router's source: the `/api/v1/` routes it registers are compared with the document.
const ROUTER_SOURCE: &str = include_str!("../src/http/mod.rs");
/// Methods an axum method router is built from.
const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// (method, path) of every `/api/v1/` route registered in `router()`, read from its source: each
/// `.route("PATH", get(..).post(..))` call.
fn api_routes_in_router() -> std::collections::BTreeSet<(String, String)> {
    assert!(
        !ROUTER_SOURCE.contains(".nest(") && !ROUTER_SOURCE.contains(".merge("),
        "the router nests or merges routers: teach this test to read them"
    );
    let mut routes = std::collections::BTreeSet::new();
    let mut rest = ROUTER_SOURCE;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("a .route( call closes");
        let call = &rest[..end];
        let path = between(call, "\"", "\"").expect("a route path literal");
        if !path.starts_with("/api/") {
            continue;
        }
        let handlers = &call[call.find(',').expect("a method router") + 1..];
        let mut found = 0;
        for method in METHODS {
            let needle = format!("{method}(");
            for (at, _) in handlers.match_indices(&needle) {
                let before = handlers[..at].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                    routes.insert((method.to_owned(), path.to_owned()));
                    found += 1;
                }
            }
        }
        assert!(found > 0, "no method found in the route {call:?}");
    }
    routes
}

fn openapi() -> Value {
    serde_json::from_str(shadowai_collector::http::openapi::DOCUMENT).expect("openapi.json is JSON")
}

#[test]
fn openapi_document_lists_exactly_the_routes_of_the_router() {
    let routes = api_routes_in_router();
    assert!(
        routes.len() >= 20,
        "found only {} API routes in mod.rs: {routes:?}",
        routes.len()
    );
    let document = openapi();
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: `{method}` is not an operation"
            );
            documented.insert((method.clone(), path.clone()));
        }
    }
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in openapi.json: {missing:?}; documented but not routed: {extra:?}"
    );
}

#[test]
fn openapi_document_is_of_this_version_and_its_enums_are_the_codes() {
    use shadowai_collector::policy::rules::{Reason, SETTING_SPECS, Severity};
    use shadowai_collector::store::{Resolution, TriageAction};

    let document = openapi();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let strings = |values: Vec<&str>| -> Value { json!(values) };
    let with_any = |values: Vec<&str>| -> Value {
        let mut all = vec![""];
        all.extend(values);
        json!(all)
    };
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
    let signals: Vec<&str> = Signal::ALL.iter().map(|s| s.as_str()).collect();
    let resolutions: Vec<&str> = Resolution::ALL.iter().map(|r| r.as_str()).collect();
    let categories: Vec<&str> = shadowai_catalog::Category::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    let settings: Vec<&str> = SETTING_SPECS.iter().map(|s| s.name).collect();
    let actions: Vec<&str> = [
        TriageAction::Acknowledge,
        TriageAction::Assign {
            assignee: String::new(),
        },
        TriageAction::Resolve {
            resolution: Resolution::Duplicate,
        },
        TriageAction::Escalate,
        TriageAction::Comment,
        TriageAction::Reopen,
    ]
    .iter()
    .map(TriageAction::name)
    .collect();

    let schema = |name: &str, property: &str| -> Value {
        let found = &document["components"]["schemas"][name]["properties"][property];
        assert!(!found.is_null(), "no {name}.{property}");
        // a nullable enum also lists null
        let values: Vec<Value> = found["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}.{property} has no enum"))
            .iter()
            .filter(|v| !v.is_null())
            .cloned()
            .collect();
        Value::Array(values)
    };
    let parameter = |path: &str, method: &str, name: &str| -> Value {
        document["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name} of {method} {path}"))["schema"]["enum"]
            .clone()
    };
    let expected = [
        (schema("Alert", "reason"), strings(reasons.clone())),
        (schema("Alert", "severity"), strings(severities.clone())),
        (schema("Observation", "signal"), strings(signals.clone())),
        (schema("Finding", "signal"), strings(signals.clone())),
        (
            schema("AlertDetail", "resolution"),
            strings(resolutions.clone()),
        ),
        (
            schema("TriageActionRequest", "resolution"),
            strings(resolutions.clone()),
        ),
        (
            schema("BulkTriageRequest", "resolution"),
            strings(resolutions.clone()),
        ),
        (schema("TriageEvent", "action"), strings(actions.clone())),
        (schema("AuditEvent", "action"), strings(actions.clone())),
        (
            schema("BulkTriageRequest", "action"),
            strings(actions.clone()),
        ),
        (schema("Sanction", "category"), strings(categories.clone())),
        (schema("SanctionRequest", "category"), strings(categories)),
        (
            schema("SeverityOverride", "reason"),
            with_any(reasons.clone()),
        ),
        (
            schema("SeverityOverride", "severity"),
            strings(severities.clone()),
        ),
        (schema("Suppression", "reason"), with_any(reasons.clone())),
        (
            schema("OverrideRequest", "reason"),
            with_any(reasons.clone()),
        ),
        (
            schema("OverrideRequest", "severity"),
            strings(severities.clone()),
        ),
        (
            schema("SuppressionRequest", "reason"),
            with_any(reasons.clone()),
        ),
        (schema("SettingValue", "name"), strings(settings)),
        (
            document["components"]["schemas"]["Policy"]["properties"]["reasons"]["items"]["enum"]
                .clone(),
            strings(reasons.clone()),
        ),
        (
            parameter("/api/v1/alerts", "get", "reason"),
            strings(reasons),
        ),
        (
            parameter("/api/v1/alerts", "get", "severity"),
            strings(severities),
        ),
        (
            parameter("/api/v1/findings", "get", "signal"),
            strings(signals),
        ),
        (
            parameter("/api/v1/alerts/{id}/{action}", "post", "action"),
            strings(actions),
        ),
    ];
    for (i, (documented, code)) in expected.iter().enumerate() {
        assert_eq!(
            documented, code,
            "enum #{i} of openapi.json differs from the code"
        );
    }
    // a setting request is one of the settings, with its bounds
    let variants = document["components"]["schemas"]["SettingRequest"]["oneOf"]
        .as_array()
        .expect("SettingRequest is oneOf the settings");
    let documented: Vec<(String, i64, i64)> = variants
        .iter()
        .map(|v| {
            let p = &v["properties"];
            (
                p["name"]["const"].as_str().unwrap().to_owned(),
                p["value"]["minimum"].as_i64().unwrap(),
                p["value"]["maximum"].as_i64().unwrap(),
            )
        })
        .collect();
    let code: Vec<(String, i64, i64)> = SETTING_SPECS
        .iter()
        .map(|s| (s.name.to_owned(), s.min, s.max))
        .collect();
    assert_eq!(documented, code, "settings and bounds of openapi.json");
}

#[tokio::test]
async fn openapi_document_is_served_without_authentication() {
    let app = app().await;
    let response = app.get("/api/v1/openapi.json", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        text(response).await,
        shadowai_collector::http::openapi::DOCUMENT
    );
}

#[tokio::test]
async fn api_lists_hosts_with_alert_counts() {
    let app = app().await;
    let auth = bearer(&app.api_key);
    let response = app.get("/api/v1/hosts", &[("authorization", &auth)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    let hosts = body["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{body}");
    let host = &hosts[0];
    assert_eq!(host["agent_id"], app.agent_id.to_string());
    // verbatim: JSON is data, escaping is the reader's job
    assert_eq!(host["hostname"], HOSTILE_HOST);
    assert_eq!(host["group"], "laptops");
    assert_eq!(host["os"], "linux");
    assert_eq!(host["agent_version"], "0.1.0");
    assert_eq!(host["state"], "reporting");
    assert!(host["last_seen"].as_str().unwrap().ends_with('Z'));
    let alerts = host["alerts"].as_i64().unwrap();
    assert!(
        alerts >= 1,
        "the ollama observation raised an alert: {host}"
    );
    assert_eq!(host["unresolved_alerts"].as_i64().unwrap(), alerts);
    assert_eq!(body["next_offset"], Value::Null);

    // a second host, and pages of one
    app.store
        .enroll_agent(&EnrollAgent {
            token_id: "tok".into(),
            secret_sha256: "secret".into(),
            agent_id: Uuid::now_v7(),
            cert_fingerprint: "fp2".into(),
            cert_expires_at_ms: now_ms() + 1_000_000,
            hostname: "aaa-first".into(),
            os: "macos".into(),
            os_version: "15".into(),
            arch: "arm64".into(),
            agent_version: "0.1.0".into(),
            remote_addr: "192.0.2.2".into(),
            now_ms: now_ms(),
        })
        .await
        .unwrap();
    let page = |query: &'static str| {
        let auth = auth.clone();
        let app = &app;
        async move {
            json_body(
                app.get(
                    &format!("/api/v1/hosts?{query}"),
                    &[("authorization", &auth)],
                )
                .await,
            )
            .await
        }
    };
    let first = page("limit=1").await;
    assert_eq!(first["hosts"][0]["hostname"], "aaa-first");
    assert_eq!(first["hosts"][0]["alerts"], 0);
    assert_eq!(first["next_offset"], 1);
    let second = page("limit=1&offset=1").await;
    assert_eq!(second["hosts"][0]["hostname"], HOSTILE_HOST);
    assert_eq!(second["next_offset"], Value::Null);
    assert_eq!(page("offset=5").await["hosts"], json!([]));

    for query in [
        "limit=0",
        "limit=1001",
        "offset=-1",
        "offset=x",
        "offset=4294967296",
    ] {
        let response = app
            .get(
                &format!("/api/v1/hosts?{query}"),
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(json_body(response).await["error"].is_string());
    }
    assert_eq!(
        app.get("/api/v1/hosts", &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Hostile input that once got a crash, a 500, plain text or the wrong status: each answer is now
/// a documented JSON error (what `openapi.json` says and schemathesis checks).
#[tokio::test]
async fn hostile_api_input_gets_documented_json_errors() {
    let app = app().await;
    let (responder, digest) = auth::new_api_key();
    app.store
        .create_api_key("responder", Role::Responder, &digest, now_ms())
        .await
        .unwrap();
    let responder = bearer(&responder);
    let viewer = bearer(&app.api_key);
    let post = |uri: String, body: String| {
        let responder = responder.clone();
        let app = &app;
        async move {
            app.send(
                Request::post(uri)
                    .header(header::AUTHORIZATION, responder)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let unknown = Uuid::now_v7();

    // invalid percent-encoding in a path segment: JSON 400, not axum's plain text
    for uri in [
        "/api/v1/alerts/%FF".to_owned(),
        "/api/v1/alerts/%FF/observations".to_owned(),
    ] {
        let response = app.get(&uri, &[("authorization", &viewer)]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(json_body(response).await["error"].is_string());
    }
    let response = post("/api/v1/alerts/%FF/acknowledge".to_owned(), String::new()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(json_body(response).await["error"].is_string());

    // an unknown alert has no evidence: 404 like GET /api/v1/alerts/{id}
    let response = app
        .get(
            &format!("/api/v1/alerts/{unknown}/observations"),
            &[("authorization", &viewer)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await, json!({"error": "not found"}));

    // a request that can never be valid is a 400, not the 409 of an action that does not apply
    let long_note = json!({ "note": "x".repeat(4097) }).to_string();
    for (uri, body) in [
        (format!("/api/v1/alerts/{unknown}/comment"), String::new()),
        (format!("/api/v1/alerts/{unknown}/acknowledge"), long_note),
        (
            format!("/api/v1/alerts/{unknown}/acknowledge"),
            json!({"note": "nul \u{0} inside"}).to_string(),
        ),
        (
            "/api/v1/alerts/bulk".to_owned(),
            json!({"ids": [], "action": "acknowledge"}).to_string(),
        ),
        (
            "/api/v1/alerts/bulk".to_owned(),
            json!({"ids": [unknown], "action": "assign", "assignee": "x".repeat(300)}).to_string(),
        ),
    ] {
        let response = post(uri.clone(), body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(json_body(response).await["error"].is_string());
    }

    // a body over the limit: JSON 413
    let huge = json!({ "note": "x".repeat(20_000) }).to_string();
    let response = post(format!("/api/v1/alerts/{unknown}/comment"), huge.clone()).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(json_body(response).await["error"].is_string());

    // control characters (NUL: PostgreSQL refuses it in text, a 500 there) never reach the store
    for uri in [
        "/api/v1/alerts?product=a%00b",
        "/api/v1/observations?product=%07",
        "/api/v1/findings?product=a%00",
        "/api/v1/reports?group=eng%00",
    ] {
        let response = app.get(uri, &[("authorization", &viewer)]).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(json_body(response).await["error"].is_string());
    }
    let response = post(
        format!("/api/v1/alerts/{unknown}/assign"),
        json!({"assignee": "rita\u{0}"}).to_string(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // a report period ending in a multi-byte character once panicked the handler
    let response = app
        .get(
            "/api/v1/reports?since=7%C3%A9",
            &[("authorization", &viewer)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(json_body(response).await["error"].is_string());

    // the PDF is in every build (it was a 400 from a build without the `pdf` feature)
    let response = app
        .get("/api/v1/reports?format=pdf", &[("authorization", &viewer)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/pdf");
    let pdf = axum::body::to_bytes(response.into_body(), 50 * 1024 * 1024)
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"), "{:?}", &pdf[..pdf.len().min(16)]);
}
