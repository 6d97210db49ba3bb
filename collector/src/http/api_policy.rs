//! The JSON API for findings, alert evidence and the policy.
//!
//! Reads need any role. Policy changes need the admin role; with a session cookie they must also
//! carry the session's CSRF token in an `X-CSRF-Token` header (an API key needs none: browsers do
//! not send it on their own). Every change is audited by the store with the caller's name and
//! remote address.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::api::{self, ApiError, Caller};
use super::{HttpState, now_ms, view};
use crate::auth;
use crate::policy::admin::{self, PolicyError, SuppressionRequest};
use crate::policy::rules::{Reason, Severity};
use crate::store::{
    AlertFilters, Finding, FindingQuery, PolicyActor, PolicyRuleKind, Role, Signal,
    SuppressedFilter,
};

/// Header carrying the session's CSRF token on state-changing API calls.
const CSRF_HEADER: &str = "x-csrf-token";
/// Longest filter value (group, user, category) accepted.
const MAX_FILTER: usize = 256;

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::Invalid(message) => ApiError::BadRequest(message),
            PolicyError::Store(error) => error.into(),
        }
    }
}

/// The remote address of the connection, when the server recorded it.
pub(super) struct RemoteAddr(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for RemoteAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RemoteAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        ))
    }
}

/// Authenticates a policy change: admin role, and the CSRF header for a session.
async fn admin(
    state: &HttpState,
    headers: &HeaderMap,
    remote: &RemoteAddr,
) -> Result<PolicyActor, ApiError> {
    let Caller {
        role,
        name,
        session_csrf,
    } = api::caller(state, headers).await?;
    if role != Role::Admin {
        return Err(ApiError::Forbidden(
            "changing the policy needs the admin role".into(),
        ));
    }
    if let Some(expected) = session_csrf {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !auth::is_same_secret(&expected, presented) {
            return Err(ApiError::Forbidden(format!(
                "a session needs its CSRF token in the {CSRF_HEADER} header"
            )));
        }
    }
    Ok(PolicyActor {
        who: name,
        from: remote
            .0
            .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string()),
    })
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(value)| value).map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge;
        }
        ApiError::BadRequest(match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "the body must be JSON (Content-Type: application/json)".to_owned()
            }
            _ => "the body is not a valid JSON request for this call".to_owned(),
        })
    })
}

fn filter(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_FILTER || v.chars().any(char::is_control) => Err(
            ApiError::BadRequest(format!("{name} must be 1 to {MAX_FILTER} bytes")),
        ),
        other => Ok(other),
    }
}

fn time_filter(name: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .map(|text| {
            OffsetDateTime::parse(&text, &Rfc3339)
                .ok()
                .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
                .ok_or_else(|| ApiError::BadRequest(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

fn agent_filter(value: Option<String>) -> Result<Option<Uuid>, ApiError> {
    value
        .map(|id| {
            Uuid::try_parse(&id)
                .map_err(|_| ApiError::BadRequest("host must be an agent id (UUID)".to_owned()))
        })
        .transpose()
}

/// The alert filters of `GET /api/v1/alerts`, checked.
#[allow(clippy::too_many_arguments)]
pub(super) fn alert_filters(
    severity: Option<String>,
    reason: Option<String>,
    category: Option<String>,
    group: Option<String>,
    host: Option<String>,
    user: Option<String>,
    since: Option<String>,
    until: Option<String>,
    suppressed: Option<String>,
) -> Result<AlertFilters, ApiError> {
    if let Some(s) = &severity {
        s.parse::<Severity>().map_err(|_| {
            ApiError::BadRequest("severity must be one of info, low, medium, high, critical".into())
        })?;
    }
    if let Some(r) = &reason {
        r.parse::<Reason>().map_err(|_| {
            let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::BadRequest(format!("reason must be one of {}", known.join(", ")))
        })?;
    }
    let suppressed = match suppressed.as_deref() {
        None => SuppressedFilter::Hide,
        Some(text) => SuppressedFilter::parse(text).ok_or_else(|| {
            ApiError::BadRequest("suppressed must be hide, only or include".into())
        })?,
    };
    Ok(AlertFilters {
        severity,
        reason,
        category: filter("category", category)?,
        group: filter("group", group)?,
        agent_id: agent_filter(host)?,
        user: filter("user", user)?,
        since_ms: time_filter("since", since)?,
        until_ms: time_filter("until", until)?,
        suppressed,
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct FindingParams {
    limit: Option<String>,
    cursor: Option<String>,
    host: Option<String>,
    product: Option<String>,
    category: Option<String>,
    user: Option<String>,
    group: Option<String>,
    signal: Option<String>,
    risk: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `GET /api/v1/findings?limit=&cursor=&host=&product=&category=&user=&group=&signal=&risk=&since=&until=`
pub(super) async fn findings(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<FindingParams>, QueryRejection>,
) -> Result<Json<FindingList>, ApiError> {
    api::authenticate(&state, &headers).await?;
    let params = api::query(params)?;
    let signal = params
        .signal
        .map(|s| {
            s.parse::<Signal>().map_err(|_| {
                let known: Vec<&str> = Signal::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::BadRequest(format!("signal must be one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let risk = match params.risk {
        Some(flag)
            if flag.is_empty()
                || flag.len() > 64
                || !flag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
        {
            return Err(ApiError::BadRequest(
                "risk must be a flag of 1 to 64 of a-z 0-9 _".into(),
            ));
        }
        other => other,
    };
    let request = FindingQuery {
        limit: api::limit(params.limit.as_deref())?,
        after: api::cursor(params.cursor.as_deref())?,
        agent_id: agent_filter(params.host)?,
        product: api::product(params.product)?,
        category: filter("category", params.category)?,
        user: filter("user", params.user)?,
        group: filter("group", params.group)?,
        signal,
        risk,
        since_ms: time_filter("since", params.since)?,
        until_ms: time_filter("until", params.until)?,
    };
    let page = state.store.list_findings(&request).await?;
    Ok(Json(FindingList {
        findings: page.items.iter().map(FindingJson::new).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

#[derive(Serialize)]
pub(super) struct FindingList {
    findings: Vec<FindingJson>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct FindingJson {
    id: Uuid,
    agent_id: Uuid,
    host: String,
    group: String,
    user: String,
    product: String,
    signal: &'static str,
    subject: String,
    vendor: String,
    category: String,
    rule: String,
    first_seen: Option<String>,
    last_seen: Option<String>,
    count: i64,
    first_observation_id: Uuid,
    last_observation_id: Uuid,
    risk: Vec<String>,
    plan: Option<String>,
    tenant: Option<String>,
}

impl FindingJson {
    fn new(f: &Finding) -> Self {
        FindingJson {
            id: f.id,
            agent_id: f.agent_id,
            host: f.hostname.clone(),
            group: f.group.clone(),
            user: f.user_name.clone(),
            product: f.product.clone(),
            signal: f.signal.as_str(),
            subject: f.subject.clone(),
            vendor: f.vendor.clone(),
            category: f.category.clone(),
            rule: f.rule.clone(),
            first_seen: view::rfc3339_ms(f.first_seen_ms),
            last_seen: view::rfc3339_ms(f.last_seen_ms),
            count: f.count,
            first_observation_id: f.first_observation_id,
            last_observation_id: f.last_observation_id,
            risk: f.risk.clone(),
            plan: f.plan.clone(),
            tenant: f.tenant.clone(),
        }
    }
}

/// `GET /api/v1/alerts/{id}/observations`: the observation ids linked to an alert as evidence.
pub(super) async fn alert_observations(
    State(state): State<HttpState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api::authenticate(&state, &headers).await?;
    let id = api::path_uuid(path, "id")?;
    let ids = state.store.alert_observation_ids(id).await?;
    // No evidence may mean no alert (sensor alerts have none): an unknown alert is 404, as in
    // `GET /api/v1/alerts/{id}`.
    if ids.is_empty() && state.store.triaged_alert(id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(
        serde_json::json!({ "alert_id": id, "observation_ids": ids }),
    ))
}

/// `GET /api/v1/policy`: the whole policy now.
pub(super) async fn policy(
    State(state): State<HttpState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    api::authenticate(&state, &headers).await?;
    let now = now_ms();
    let policy = state.store.read_policy(now).await?;
    let suppressions = state.store.list_suppressions().await?;
    Ok(Json(serde_json::json!({
        "sanctions": policy.sanctions,
        "tenants": policy.tenants,
        "overrides": policy.overrides,
        "suppressions": suppressions,
        "settings": policy.settings,
        "reasons": Reason::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct ChangeParams {
    limit: Option<String>,
    before: Option<String>,
}

/// `GET /api/v1/policy/changes?limit=&before=`: the audit trail, newest first.
pub(super) async fn changes(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ChangeParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    api::authenticate(&state, &headers).await?;
    let params = api::query(params)?;
    let limit = api::limit(params.limit.as_deref())?;
    let before = time_filter("before", params.before)?;
    let changes = state.store.list_policy_changes(limit, before).await?;
    let changes: Vec<_> = changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "id": c.id,
                "at": view::rfc3339_ms(c.at_ms),
                "actor": c.actor,
                "source": c.source,
                "kind": c.kind,
                "before": c.before,
                "after": c.after,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "changes": changes })))
}

fn created<T: Serialize>(record: &T) -> Response {
    (StatusCode::CREATED, Json(record)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SanctionBody {
    product: String,
    #[serde(default)]
    group: String,
    category: Option<String>,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/policy/sanctions`
pub(super) async fn add_sanction(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<SanctionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    let record = admin::sanction(
        &state.store,
        &b.product,
        &b.group,
        b.category.as_deref(),
        &b.note,
        &actor,
        now_ms(),
    )
    .await?;
    Ok(created(&record))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UnsanctionBody {
    product: String,
    #[serde(default)]
    group: String,
}

/// `POST /api/v1/policy/sanctions/remove`
pub(super) async fn remove_sanction(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<UnsanctionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    let record = admin::unsanction(&state.store, &b.product, &b.group, &actor, now_ms()).await?;
    Ok(Json(record).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantBody {
    product: String,
    tenant: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/policy/tenants`
pub(super) async fn add_tenant(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<TenantBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    let record = admin::add_tenant(
        &state.store,
        &b.product,
        &b.tenant,
        &b.group,
        &b.note,
        &actor,
        now_ms(),
    )
    .await?;
    Ok(created(&record))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideBody {
    severity: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/policy/overrides`
pub(super) async fn add_override(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<OverrideBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    let record = admin::add_override(
        &state.store,
        &b.reason,
        &b.product,
        &b.group,
        &b.severity,
        &b.note,
        &actor,
        now_ms(),
    )
    .await?;
    Ok(created(&record))
}

async fn remove_rule(
    state: &HttpState,
    headers: &HeaderMap,
    remote: &RemoteAddr,
    kind: PolicyRuleKind,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(state, headers, remote).await?;
    let id = api::path_uuid(path, "id")?;
    let removed = state
        .store
        .remove_policy_rule(kind, id, &actor, now_ms())
        .await?;
    Ok(Json(removed).into_response())
}

/// `DELETE /api/v1/policy/tenants/{id}`
pub(super) async fn remove_tenant(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    remove_rule(&state, &headers, &remote, PolicyRuleKind::Tenant, path).await
}

/// `DELETE /api/v1/policy/overrides/{id}`
pub(super) async fn remove_override(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    remove_rule(&state, &headers, &remote, PolicyRuleKind::Override, path).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SuppressionBody {
    owner: String,
    /// RFC 3339.
    expires_at: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    group: String,
    /// Agent id.
    #[serde(default)]
    host: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/v1/policy/suppressions`
pub(super) async fn add_suppression(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<SuppressionBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    let expires_at_ms = time_filter("expires_at", Some(b.expires_at))?.unwrap_or_default();
    let request = SuppressionRequest {
        reason: b.reason,
        product: b.product,
        group: b.group,
        agent_id: b.host,
        owner: b.owner,
        note: b.note,
        expires_at_ms,
    };
    let record = admin::suppress(&state.store, &request, &actor, now_ms()).await?;
    Ok(created(&record))
}

/// `DELETE /api/v1/policy/suppressions/{id}`: lifts it.
pub(super) async fn lift_suppression(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let id = api::path_uuid(path, "id")?;
    let lifted = state.store.lift_suppression(id, &actor, now_ms()).await?;
    Ok(Json(lifted).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingBody {
    name: String,
    value: i64,
}

/// `POST /api/v1/policy/settings`
pub(super) async fn set_setting(
    State(state): State<HttpState>,
    headers: HeaderMap,
    remote: RemoteAddr,
    payload: Result<Json<SettingBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let actor = admin(&state, &headers, &remote).await?;
    let b = body(payload)?;
    admin::set_setting(&state.store, &b.name, b.value, &actor, now_ms()).await?;
    Ok(Json(serde_json::json!({ "name": b.name, "value": b.value })).into_response())
}
