//! The dashboard and the JSON API (axum).
//!
//! Architecture invariants:
//! - Every page is rendered by askama with HTML auto-escaping; no handler writes markup by hand.
//!   Strings from endpoints are shown through `view::visible`, which also makes control and
//!   bidirectional-override characters visible instead of letting them reorder the page.
//! - No inline scripts or styles: the Content-Security-Policy below forbids them, and the only
//!   stylesheet is embedded from `dashboards/static/` and served from `/static/app.css`.
//! - Dashboard pages need a session cookie; API calls need a bearer API key or that cookie. Every
//!   state-changing form carries a CSRF token (double-submit cookie before login, the session's
//!   token after).
//! - Errors map to HTTP once, here; internal details are logged, never sent.
//! - Handlers are the shell: they read the clock and pass `now_ms` to the store.

mod access;
mod api;
mod api_policy;
mod dashboard;
mod metrics;
pub mod openapi;
mod pages;
mod policy_page;
pub mod reports;
mod session;
mod shown_once;
mod throttle;
mod triage;
pub(crate) mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use time::OffsetDateTime;

use crate::store::Store;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "shadowai_session";
/// Name of the login form's double-submit CSRF cookie.
pub const CSRF_COOKIE: &str = "shadowai_csrf";

/// Largest request body any route accepts (forms and triage calls with a note).
const MAX_BODY_BYTES: usize = 16 * 1024;

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("../../../dashboards/static/app.css");

/// Settings of the HTTP face.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Mark cookies `Secure` (set when the dashboard is served over HTTPS, directly or by a proxy).
    pub secure_cookies: bool,
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct HttpState {
    store: Store,
    config: HttpConfig,
    login_throttle: Arc<throttle::LoginThrottle>,
    metrics_token: Option<std::sync::Arc<str>>,
    /// The collector CA's pin, which enrollment tokens made on the tokens page carry; without it
    /// the page only lists and revokes.
    enrollment_pin: Option<Arc<str>>,
    /// New secrets waiting for the GET that shows them once (POST-redirect-GET).
    shown_once: Arc<shown_once::ShownOnce>,
}

impl HttpState {
    pub fn new(store: Store, config: HttpConfig) -> Self {
        Self {
            store,
            config,
            login_throttle: Arc::default(),
            metrics_token: None,
            enrollment_pin: None,
            shown_once: Arc::default(),
        }
    }

    /// Lets admins create enrollment tokens on the tokens page (`pin`: the collector CA's pin).
    pub fn with_enrollment_pin(mut self, pin: String) -> Self {
        self.enrollment_pin = Some(Arc::from(pin));
        self
    }

    /// A bearer token `/metrics` accepts besides API keys (`[metrics] token_file`).
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.map(std::sync::Arc::from);
        self
    }
}

/// The address of the client's TCP connection (`unknown` when the router runs without one, as in
/// `oneshot` tests). Forwarding headers are not trusted: behind a reverse proxy this is the proxy.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddress(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string()),
        ))
    }
}

/// The dashboard, the JSON API, health checks and static assets.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(dashboard::alerts))
        .route("/alerts/bulk", post(triage::bulk_form))
        .route("/alerts/{id}", get(pages::alert))
        .route("/alerts/{id}/triage", post(triage::alert_form))
        .route("/overview", get(pages::overview))
        .route("/hosts", get(pages::hosts))
        .route("/hosts/{id}", get(pages::host))
        .route("/products", get(pages::products))
        .route("/products/{product}", get(pages::product))
        .route("/audit", get(pages::audit))
        .route("/policy", get(policy_page::policy))
        .route("/policy/sanctions", post(policy_page::add_sanction))
        .route(
            "/policy/sanctions/remove",
            post(policy_page::remove_sanction),
        )
        .route("/policy/tenants", post(policy_page::add_tenant))
        .route(
            "/policy/tenants/{id}/remove",
            post(policy_page::remove_tenant),
        )
        .route("/policy/overrides", post(policy_page::add_override))
        .route(
            "/policy/overrides/{id}/remove",
            post(policy_page::remove_override),
        )
        .route("/policy/suppressions", post(policy_page::add_suppression))
        .route(
            "/policy/suppressions/{id}/lift",
            post(policy_page::lift_suppression),
        )
        .route("/policy/settings", post(policy_page::set_setting))
        .route("/tokens", get(pages::tokens).post(pages::create_token))
        .route("/tokens/{id}/revoke", post(pages::revoke_token))
        .route("/users", get(pages::users).post(pages::add_user))
        .route("/users/{id}/access", post(pages::user_access))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/alerts/bulk", post(triage::bulk_api))
        .route("/api/v1/alerts/{id}", get(triage::alert_api))
        .route("/api/v1/alerts/{id}/{action}", post(triage::action_api))
        .route("/api/v1/audit", get(triage::audit_api))
        .route("/api/v1/observations", get(api::observations))
        .route("/api/v1/hosts", get(api::hosts))
        .route(
            "/api/v1/alerts/{id}/observations",
            get(api_policy::alert_observations),
        )
        .route("/api/v1/findings", get(api_policy::findings))
        .route("/api/v1/policy", get(api_policy::policy))
        .route("/api/v1/policy/changes", get(api_policy::changes))
        .route("/api/v1/policy/sanctions", post(api_policy::add_sanction))
        .route(
            "/api/v1/policy/sanctions/remove",
            post(api_policy::remove_sanction),
        )
        .route("/api/v1/policy/tenants", post(api_policy::add_tenant))
        .route(
            "/api/v1/policy/tenants/{id}",
            delete(api_policy::remove_tenant),
        )
        .route("/api/v1/policy/overrides", post(api_policy::add_override))
        .route(
            "/api/v1/policy/overrides/{id}",
            delete(api_policy::remove_override),
        )
        .route(
            "/api/v1/policy/suppressions",
            post(api_policy::add_suppression),
        )
        .route(
            "/api/v1/policy/suppressions/{id}",
            delete(api_policy::lift_suppression),
        )
        .route("/api/v1/policy/settings", post(api_policy::set_setting))
        .route("/api/v1/reports", get(reports::download))
        .route("/api/v1/reports/runs", get(reports::runs))
        .route("/api/v1/export", get(reports::export_status))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/static/app.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        api::ApiError::NotFound.into_response()
    } else {
        view::message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no page at this address.",
        )
    }
}

/// Headers every response carries. Pages and API answers are never cached (they hold evidence).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The wall clock in Unix milliseconds (handlers are the shell; the store takes time as input).
fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
