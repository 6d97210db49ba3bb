//! The JSON API under `/api/v1/`: the read-only listings (triage calls are in `triage.rs`). Any role may read. Authentication is a bearer API key
//! (`Authorization: Bearer sak_...`) or the dashboard's session cookie.
//!
//! Listings are newest first and paged by an opaque `cursor` (the `next_cursor` of the previous
//! page). Times are RFC 3339 UTC strings with milliseconds.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uuid::Uuid;

use super::{HttpState, now_ms, session, view};
use crate::auth;
use crate::store::{
    Alert, AlertQuery, MAX_PAGE, ObservationQuery, PageCursor, Role, StoreError, StoredObservation,
};

/// Page size when the client does not say.
const DEFAULT_LIMIT: u32 = 100;
/// Longest product id accepted as a filter (the proto's limit).
const MAX_PRODUCT: usize = 128;
/// Alert statuses a filter may name.
const STATUSES: [&str; 3] = ["open", "acknowledged", "resolved"];

/// How an API call failed; the only place API errors become HTTP.
#[derive(Debug)]
pub(super) enum ApiError {
    Unauthenticated,
    BadRequest(String),
    /// Authenticated, but the role (or a missing CSRF token) does not allow this.
    Forbidden(String),
    NotFound,
    /// The record exists already (or no longer), or the action does not apply to its state.
    Conflict(String),
    /// The body is over the router's limit (`MAX_BODY_BYTES`).
    PayloadTooLarge,
    Internal,
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { entity } => {
                debug!(entity, "api: not found");
                ApiError::NotFound
            }
            StoreError::Conflict { entity } => {
                ApiError::Conflict(format!("{entity} already exists"))
            }
            error => {
                warn!(error = %error, "api store error");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated".to_owned()),
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, message),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, message),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body must be at most {} KiB",
                    super::MAX_BODY_BYTES / 1024
                ),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// Authenticates a call and returns the caller's role: a bearer API key if an Authorization header
/// is present (and then only that), otherwise the session cookie.
pub(super) async fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<Role, ApiError> {
    Ok(caller(state, headers).await?.role)
}

/// Who is calling: their role, a name for the audit trail (`apikey:NAME`, `user:NAME`) and, for a
/// session, the CSRF token its state-changing calls must carry.
pub(super) struct Caller {
    pub role: Role,
    pub name: String,
    pub session_csrf: Option<String>,
}

/// Authenticates a call (see `authenticate`).
pub(super) async fn caller(state: &HttpState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let now = now_ms();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| {
                t.strip_prefix(auth::API_KEY_PREFIX)
                    .is_some_and(auth::is_token_shaped)
            })
            .ok_or(ApiError::Unauthenticated)?;
        let key = state
            .store
            .use_api_key(&auth::sha256_hex(token), now)
            .await?;
        let Some(key) = key else {
            debug!("api call with unknown or revoked key");
            return Err(ApiError::Unauthenticated);
        };
        return Ok(Caller {
            role: key.role,
            name: format!("apikey:{}", key.name),
            session_csrf: None,
        });
    }
    match session::current(state, headers, now).await? {
        Some((user, _)) => Ok(Caller {
            role: user.role,
            name: format!("user:{}", user.user_name),
            session_csrf: Some(user.csrf_token),
        }),
        None => Err(ApiError::Unauthenticated),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AlertParams {
    limit: Option<String>,
    cursor: Option<String>,
    status: Option<String>,
    product: Option<String>,
    severity: Option<String>,
    reason: Option<String>,
    category: Option<String>,
    group: Option<String>,
    host: Option<String>,
    user: Option<String>,
    since: Option<String>,
    until: Option<String>,
    suppressed: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ObservationParams {
    limit: Option<String>,
    cursor: Option<String>,
    agent_id: Option<String>,
    product: Option<String>,
}

pub(super) fn limit(text: Option<&str>) -> Result<u32, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_PAGE}"))
        })
}

pub(super) fn cursor(text: Option<&str>) -> Result<Option<PageCursor>, ApiError> {
    text.map(|t| {
        t.parse()
            .map_err(|_| ApiError::BadRequest("cursor is not valid".to_owned()))
    })
    .transpose()
}

pub(super) fn product(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        // Control characters never occur in a product id, and PostgreSQL refuses NUL in text.
        Some(p) if p.is_empty() || p.len() > MAX_PRODUCT || p.chars().any(char::is_control) => {
            Err(ApiError::BadRequest(format!(
                "product must be 1 to {MAX_PRODUCT} bytes without control characters"
            )))
        }
        other => Ok(other),
    }
}

/// A path segment that must be a UUID (axum's own rejection, e.g. for invalid percent-encoding,
/// would answer in plain text).
pub(super) fn path_uuid(
    path: Result<Path<String>, PathRejection>,
    what: &str,
) -> Result<Uuid, ApiError> {
    path.ok()
        .and_then(|Path(text)| Uuid::try_parse(&text).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{what} must be a UUID")))
}

/// A request body within the router's limit.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest("the body could not be read".to_owned())
        }
    })
}

pub(super) fn query<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|_| ApiError::BadRequest("query parameters are not valid".to_owned()))
}

/// `GET /api/v1/alerts?limit=&cursor=&status=&product=&severity=&reason=&category=&group=&host=&user=&since=&until=&suppressed=`
pub(super) async fn alerts(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<AlertParams>, QueryRejection>,
) -> Result<Json<AlertList>, ApiError> {
    authenticate(&state, &headers).await?;
    let params = query(params)?;
    let status = match params.status {
        Some(s) if !STATUSES.contains(&s.as_str()) => {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        other => other,
    };
    let request = AlertQuery {
        limit: limit(params.limit.as_deref())?,
        after: cursor(params.cursor.as_deref())?,
        status,
        product: product(params.product)?,
    };
    let filters = super::api_policy::alert_filters(
        params.severity,
        params.reason,
        params.category,
        params.group,
        params.host,
        params.user,
        params.since,
        params.until,
        params.suppressed,
    )?;
    let page = state.store.list_alerts_filtered(&request, &filters).await?;
    Ok(Json(AlertList {
        alerts: page.items.iter().map(AlertJson::new).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// `GET /api/v1/observations?limit=&cursor=&agent_id=&product=`
pub(super) async fn observations(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ObservationParams>, QueryRejection>,
) -> Result<Json<ObservationList>, ApiError> {
    authenticate(&state, &headers).await?;
    let params = query(params)?;
    let agent_id = params
        .agent_id
        .as_deref()
        .map(|id| {
            Uuid::try_parse(id)
                .map_err(|_| ApiError::BadRequest("agent_id must be a UUID".to_owned()))
        })
        .transpose()?;
    let request = ObservationQuery {
        limit: limit(params.limit.as_deref())?,
        after: cursor(params.cursor.as_deref())?,
        agent_id,
        product: product(params.product)?,
    };
    let page = state.store.list_observations(&request).await?;
    Ok(Json(ObservationList {
        observations: page.items.iter().map(ObservationJson::new).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct HostParams {
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /api/v1/hosts?limit=&offset=`: enrolled hosts by host name, with their alert counts (the
/// figures of the `/hosts` page: `Store::list_agents_page` and `Store::alert_counts_by_agent`).
/// Paged by offset: hosts are ordered by name, which has no time to page on.
pub(super) async fn hosts(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<HostParams>, QueryRejection>,
) -> Result<Json<HostList>, ApiError> {
    authenticate(&state, &headers).await?;
    let params = query(params)?;
    let limit = limit(params.limit.as_deref())?;
    let offset = match params.offset.as_deref() {
        None => 0,
        Some(text) => text.parse::<u32>().map_err(|_| {
            ApiError::BadRequest("offset must be an integer from 0 to 4294967295".to_owned())
        })?,
    };
    // One more than asked for says whether there is a next page.
    let (mut agents, counts) = tokio::try_join!(
        state
            .store
            .list_agents_page(i64::from(limit) + 1, i64::from(offset)),
        state.store.alert_counts_by_agent()
    )?;
    let more = agents.len() > limit as usize;
    agents.truncate(limit as usize);
    let now = now_ms();
    let hosts = agents
        .iter()
        .map(|agent| {
            let count = counts.iter().find(|c| c.agent_id == agent.agent_id);
            let has_problems = !super::dashboard::problems(&agent.health).is_empty();
            HostJson {
                agent_id: agent.agent_id,
                hostname: agent.hostname.clone(),
                group: agent.group.clone(),
                os: agent.os.clone(),
                os_version: agent.os_version.clone(),
                arch: agent.arch.clone(),
                agent_version: agent.agent_version.clone(),
                catalog_version: agent.catalog_version.clone(),
                enrolled_at: view::rfc3339_ms(agent.enrolled_at_ms),
                last_seen: view::rfc3339_ms(agent.last_contact_ms),
                state: super::dashboard::agent_state(agent, has_problems, now),
                alerts: count.map_or(0, |c| c.alerts),
                unresolved_alerts: count.map_or(0, |c| c.unresolved),
            }
        })
        .collect();
    Ok(Json(HostList {
        hosts,
        next_offset: more.then(|| u64::from(offset) + u64::from(limit)),
    }))
}

#[derive(Serialize)]
pub(super) struct HostList {
    hosts: Vec<HostJson>,
    next_offset: Option<u64>,
}

#[derive(Serialize)]
struct HostJson {
    agent_id: Uuid,
    hostname: String,
    group: String,
    os: String,
    os_version: String,
    arch: String,
    agent_version: String,
    catalog_version: String,
    enrolled_at: Option<String>,
    last_seen: Option<String>,
    state: &'static str,
    alerts: i64,
    unresolved_alerts: i64,
}

#[derive(Serialize)]
pub(super) struct AlertList {
    alerts: Vec<AlertJson>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AlertJson {
    id: Uuid,
    agent_id: Uuid,
    host: String,
    group: String,
    user: String,
    product: String,
    vendor: String,
    category: String,
    reason: String,
    severity: String,
    status: String,
    title: String,
    rule: String,
    process: AlertProcessJson,
    first_seen: Option<String>,
    last_seen: Option<String>,
    count: i64,
    first_observation_id: Option<Uuid>,
    last_observation_id: Option<Uuid>,
    explanation: String,
    suppressed_by: Option<Uuid>,
}

#[derive(Serialize)]
struct AlertProcessJson {
    pid: Option<u32>,
    name: String,
    exe: String,
    cmdline: String,
}

impl AlertJson {
    pub(super) fn new(alert: &Alert) -> Self {
        let process = alert.process.as_ref();
        AlertJson {
            id: alert.id,
            agent_id: alert.agent_id,
            host: alert.hostname.clone(),
            group: alert.group.clone(),
            user: alert.user_name.clone(),
            product: alert.product.clone(),
            vendor: alert.vendor.clone(),
            category: alert.category.clone(),
            reason: alert.reason.clone(),
            severity: alert.severity.clone(),
            status: alert.status.clone(),
            title: alert.title.clone(),
            rule: alert.rule.clone(),
            process: AlertProcessJson {
                pid: process.map(|p| p.pid),
                name: process.map(|p| p.name.clone()).unwrap_or_default(),
                exe: process.map(|p| p.exe.clone()).unwrap_or_default(),
                cmdline: process.map(|p| p.cmdline.clone()).unwrap_or_default(),
            },
            first_seen: view::rfc3339_ms(alert.first_seen_ms),
            last_seen: view::rfc3339_ms(alert.last_seen_ms),
            count: alert.count,
            first_observation_id: alert.first_observation_id,
            last_observation_id: alert.last_observation_id,
            explanation: alert.explanation.clone(),
            suppressed_by: alert.suppressed_by,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ObservationList {
    observations: Vec<ObservationJson>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct ObservationJson {
    id: Uuid,
    agent_id: Uuid,
    host: String,
    observed_at: Option<String>,
    received_at: Option<String>,
    signal: &'static str,
    name: String,
    product: String,
    vendor: String,
    category: String,
    rule: String,
    reason: String,
    risk: Vec<String>,
    confidence: String,
    plan: Option<String>,
    tenant: Option<String>,
    count: u32,
    process: Option<ObservationProcessJson>,
    details: serde_json::Value,
}

#[derive(Serialize)]
struct ObservationProcessJson {
    pid: u32,
    parent_pid: u32,
    name: String,
    exe: String,
    cmdline: String,
    user: String,
}

impl ObservationJson {
    fn new(o: &StoredObservation) -> Self {
        ObservationJson {
            id: o.id,
            agent_id: o.agent_id,
            host: o.hostname.clone(),
            observed_at: view::rfc3339_ms(o.observed_at_ms),
            received_at: view::rfc3339_ms(o.received_at_ms),
            signal: o.signal.as_str(),
            name: o.name.clone(),
            product: o.product.clone(),
            vendor: o.vendor.clone(),
            category: o.category.clone(),
            rule: o.rule.clone(),
            reason: o.reason.clone(),
            risk: o.risk.clone(),
            confidence: o.confidence.clone(),
            plan: o.plan.clone(),
            tenant: o.tenant.clone(),
            count: o.count,
            process: o.process.as_ref().map(|p| ObservationProcessJson {
                pid: p.pid,
                parent_pid: p.parent_pid,
                name: p.name.clone(),
                exe: p.exe.clone(),
                cmdline: p.cmdline.clone(),
                user: p.user.clone(),
            }),
            details: o.details.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("1")).unwrap(), 1);
        assert_eq!(limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "", "ten", "1e3", " 5"] {
            assert!(limit(Some(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
