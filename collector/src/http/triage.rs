//! Triage actions: the API (`POST /api/v1/alerts/{id}/{action}`, `POST /api/v1/alerts/bulk`), the
//! dashboard's forms (`POST /alerts/{id}/triage`, `POST /alerts/bulk`), one alert with its history
//! (`GET /api/v1/alerts/{id}`) and the audit log (`GET /api/v1/audit`, admins).
//!
//! Every action is authorised here, on the server, by role (responder or admin; viewers are
//! refused whatever the page showed them) and, for cookie-authenticated requests, by the session's
//! CSRF token (a form field, or the `X-CSRF-Token` header for the API). The store records who,
//! when, and from which address in one triage event per changed alert.

use axum::Form;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use uuid::Uuid;

use super::access::{self, ApiCaller, Refusal};
use super::api::{self, AlertJson, ApiError};
use super::{ClientAddress, HttpState, now_ms, view};
use crate::store::{
    AuditEntry, PageCursor, Resolution, Role, StoreError, TriageAction, TriageContext, TriageEvent,
    TriagedAlert, check_triage_request,
};

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated => ApiError::Unauthenticated,
            Refusal::Csrf => ApiError::Forbidden(
                "state-changing calls with a session cookie need the X-CSRF-Token header"
                    .to_owned(),
            ),
            Refusal::Internal => ApiError::Internal,
        }
    }
}

/// Maps a triage store error: unknown alert 404, an action that does not apply 409 with the
/// store's fixed reason, anything else 500 (logged).
fn triage_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound { .. } => ApiError::NotFound,
        StoreError::Invalid { what } => ApiError::Conflict(what.to_owned()),
        other => ApiError::from(other),
    }
}

fn require_responder(caller: &ApiCaller) -> Result<(), ApiError> {
    if caller.role < Role::Responder {
        return Err(ApiError::Forbidden(
            "triage needs the responder or admin role".to_owned(),
        ));
    }
    Ok(())
}

/// The action named `name`, with what it needs.
fn parse_action(
    name: &str,
    assignee: Option<&str>,
    resolution: Option<&str>,
) -> Result<TriageAction, String> {
    Ok(match name {
        "acknowledge" => TriageAction::Acknowledge,
        "assign" => TriageAction::Assign {
            assignee: assignee
                .filter(|a| !a.is_empty())
                .ok_or("assign needs an assignee")?
                .to_owned(),
        },
        "resolve" => TriageAction::Resolve {
            resolution: resolution
                .and_then(|r| r.parse::<Resolution>().ok())
                .ok_or(
                    "resolve needs a resolution: true_positive, false_positive, sanctioned or duplicate",
                )?,
        },
        "escalate" => TriageAction::Escalate,
        "comment" => TriageAction::Comment,
        "reopen" => TriageAction::Reopen,
        _ => {
            return Err(
                "action must be acknowledge, assign, resolve, escalate, comment or reopen".to_owned(),
            );
        }
    })
}

// ------------------------------------------------------------------------------------------ API

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    note: String,
    assignee: Option<String>,
    resolution: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    ids: Vec<Uuid>,
    action: String,
    #[serde(default)]
    note: String,
    assignee: Option<String>,
    resolution: Option<String>,
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| {
        ApiError::BadRequest("the body must be a JSON object with the documented fields".to_owned())
    })
}

#[derive(Serialize)]
pub(super) struct EventJson {
    id: Uuid,
    alert_id: Uuid,
    actor: String,
    action: String,
    detail: String,
    note: String,
    from_address: String,
    at: Option<String>,
}

impl EventJson {
    fn new(event: &TriageEvent) -> Self {
        EventJson {
            id: event.id,
            alert_id: event.alert_id,
            actor: event.actor.clone(),
            action: event.action.clone(),
            detail: event.detail.clone(),
            note: event.note.clone(),
            from_address: event.from_address.clone(),
            at: view::rfc3339_ms(event.at_ms),
        }
    }
}

/// `POST /api/v1/alerts/{id}/{action}` with an optional JSON body `{note, assignee, resolution}`.
pub(super) async fn action_api(
    State(state): State<HttpState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EventJson>, ApiError> {
    let caller = access::api_caller(&state, &headers, true).await?;
    require_responder(&caller)?;
    let Ok(Path((id, action))) = path else {
        return Err(ApiError::BadRequest(
            "the path must be /api/v1/alerts/{id}/{action}".to_owned(),
        ));
    };
    let alert_id = Uuid::try_parse(&id)
        .map_err(|_| ApiError::BadRequest("alert id must be a UUID".to_owned()))?;
    let body: ActionBody = json_body(&api::body_bytes(body)?)?;
    let action = parse_action(
        &action,
        body.assignee.as_deref(),
        body.resolution.as_deref(),
    )
    .map_err(ApiError::BadRequest)?;
    let context = TriageContext {
        actor: caller.actor,
        from_address: address,
        note: body.note,
        now_ms: now_ms(),
    };
    check_triage_request(&action, &context, 1)
        .map_err(|message| ApiError::BadRequest(message.to_owned()))?;
    let event = state
        .store
        .triage_alert(alert_id, &action, &context)
        .await
        .map_err(triage_error)?;
    info!(%alert_id, action = action.name(), "alert triaged");
    Ok(Json(EventJson::new(&event)))
}

#[derive(Serialize)]
pub(super) struct BulkJson {
    changed: usize,
    skipped: usize,
}

/// `POST /api/v1/alerts/bulk` with `{ids, action, note, assignee, resolution}`.
pub(super) async fn bulk_api(
    State(state): State<HttpState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BulkJson>, ApiError> {
    let caller = access::api_caller(&state, &headers, true).await?;
    require_responder(&caller)?;
    let body: BulkBody = serde_json::from_slice(&api::body_bytes(body)?).map_err(|_| {
        ApiError::BadRequest("the body must be {\"ids\": [...], \"action\": ...}".to_owned())
    })?;
    let action = parse_action(
        &body.action,
        body.assignee.as_deref(),
        body.resolution.as_deref(),
    )
    .map_err(ApiError::BadRequest)?;
    let context = TriageContext {
        actor: caller.actor,
        from_address: address,
        note: body.note,
        now_ms: now_ms(),
    };
    check_triage_request(&action, &context, body.ids.len())
        .map_err(|message| ApiError::BadRequest(message.to_owned()))?;
    let outcome = state
        .store
        .triage_alerts(&body.ids, &action, &context)
        .await
        .map_err(triage_error)?;
    info!(
        changed = outcome.changed,
        skipped = outcome.skipped,
        action = action.name(),
        "bulk triage"
    );
    Ok(Json(BulkJson {
        changed: outcome.changed,
        skipped: outcome.skipped,
    }))
}

#[derive(Serialize)]
pub(super) struct AlertDetailJson {
    alert: AlertJson,
    assignee: Option<String>,
    resolution: Option<String>,
    acknowledged_at: Option<String>,
    resolved_at: Option<String>,
    escalated_at: Option<String>,
    updated_at: Option<String>,
    history: Vec<EventJson>,
}

fn detail_json(found: &TriagedAlert, history: &[TriageEvent]) -> AlertDetailJson {
    let time = |ms: Option<i64>| ms.and_then(view::rfc3339_ms);
    AlertDetailJson {
        alert: AlertJson::new(&found.alert),
        assignee: found.triage.assignee.clone(),
        resolution: found.triage.resolution.clone(),
        acknowledged_at: time(found.triage.acknowledged_at_ms),
        resolved_at: time(found.triage.resolved_at_ms),
        escalated_at: time(found.triage.escalated_at_ms),
        updated_at: time(found.triage.updated_at_ms),
        history: history.iter().map(EventJson::new).collect(),
    }
}

/// `GET /api/v1/alerts/{id}`: the alert, its triage state and its history. Any role.
pub(super) async fn alert_api(
    State(state): State<HttpState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<AlertDetailJson>, ApiError> {
    access::api_caller(&state, &headers, false).await?;
    let alert_id = api::path_uuid(path, "alert id")?;
    let (found, history) = tokio::try_join!(
        state.store.triaged_alert(alert_id),
        state.store.alert_triage_events(alert_id)
    )?;
    let found = found.ok_or(ApiError::NotFound)?;
    Ok(Json(detail_json(&found, &history)))
}

#[derive(Debug, Deserialize)]
pub(super) struct AuditParams {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AuditJson {
    events: Vec<AuditEventJson>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct AuditEventJson {
    #[serde(flatten)]
    event: EventJson,
    alert_title: String,
    host: String,
}

/// `GET /api/v1/audit?limit=&cursor=`: triage events, newest first. Admins only.
pub(super) async fn audit_api(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditJson>, ApiError> {
    let caller = access::api_caller(&state, &headers, false).await?;
    if caller.role < Role::Admin {
        return Err(ApiError::Forbidden(
            "the audit log needs the admin role".to_owned(),
        ));
    }
    let Query(params) =
        params.map_err(|_| ApiError::BadRequest("query parameters are not valid".to_owned()))?;
    let limit = super::api::limit(params.limit.as_deref())?;
    let cursor = super::api::cursor(params.cursor.as_deref())?;
    let page = state.store.list_triage_events(cursor, limit).await?;
    Ok(Json(AuditJson {
        events: page.items.iter().map(audit_event_json).collect(),
        next_cursor: page.next.map(|c: PageCursor| c.to_string()),
    }))
}

fn audit_event_json(entry: &AuditEntry) -> AuditEventJson {
    AuditEventJson {
        event: EventJson::new(&entry.event),
        alert_title: entry.alert_title.clone(),
        host: entry.hostname.clone(),
    }
}

// ---------------------------------------------------------------------------------------- forms

#[derive(Debug, Deserialize)]
pub(super) struct TriageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    resolution: String,
    #[serde(default)]
    note: String,
}

fn form_error_page(error: StoreError) -> Response {
    match error {
        StoreError::NotFound { .. } => view::message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such alert.",
        ),
        StoreError::Invalid { what } => view::message_page(StatusCode::CONFLICT, "Not done", what),
        other => {
            warn!(error = %other, "triage failed");
            view::internal_error_page()
        }
    }
}

fn bad_form(message: &str) -> Response {
    view::message_page(StatusCode::BAD_REQUEST, "Not done", message)
}

/// `POST /alerts/{id}/triage`: one action from the alert page; back to the alert on success.
pub(super) async fn alert_form(
    State(state): State<HttpState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<TriageForm>, FormRejection>,
) -> Response {
    let user = match access::page_user(&state, &headers).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return bad_form("The form was not valid.");
    };
    if let Some(response) = access::check_form_csrf(&user, &form.csrf) {
        return response;
    }
    if user.role < Role::Responder {
        return access::forbidden_page(Role::Responder);
    }
    let Ok(alert_id) = Uuid::try_parse(&id) else {
        return view::message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such alert.",
        );
    };
    let action = match parse_action(
        &form.action,
        Some(form.assignee.as_str()),
        Some(form.resolution.as_str()),
    ) {
        Ok(action) => action,
        Err(message) => return bad_form(&message),
    };
    let context = TriageContext {
        actor: user.user_name,
        from_address: address,
        note: form.note,
        now_ms: now_ms(),
    };
    match state.store.triage_alert(alert_id, &action, &context).await {
        Ok(_) => {
            info!(%alert_id, action = action.name(), "alert triaged");
            Redirect::to(&format!("/alerts/{alert_id}")).into_response()
        }
        Err(error) => form_error_page(error),
    }
}

/// Whether `back` is a query string the queue produced (so the redirect stays on this site).
fn is_queue_query(back: &str) -> bool {
    back.len() <= 2048
        && back
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=&_%.+-".contains(&b))
}

/// `POST /alerts/bulk`: one action on the alerts ticked in the queue (`id` repeated); back to the
/// queue with its filters.
pub(super) async fn bulk_form(
    State(state): State<HttpState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let user = match access::page_user(&state, &headers).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let Ok(Form(fields)) = form else {
        return bad_form("The form was not valid.");
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.as_str())
    };
    if let Some(response) = access::check_form_csrf(&user, field("csrf")) {
        return response;
    }
    if user.role < Role::Responder {
        return access::forbidden_page(Role::Responder);
    }
    let mut ids = Vec::new();
    for (_, value) in fields.iter().filter(|(key, _)| key == "id") {
        let Ok(id) = Uuid::try_parse(value) else {
            return bad_form("An alert id in the form is not valid.");
        };
        ids.push(id);
    }
    if ids.is_empty() {
        return bad_form("Tick at least one alert.");
    }
    let action = match parse_action(
        field("action"),
        Some(field("assignee")),
        Some(field("resolution")),
    ) {
        Ok(action) => action,
        Err(message) => return bad_form(&message),
    };
    let context = TriageContext {
        actor: user.user_name,
        from_address: address,
        note: field("note").to_owned(),
        now_ms: now_ms(),
    };
    match state.store.triage_alerts(&ids, &action, &context).await {
        Ok(outcome) => {
            info!(
                changed = outcome.changed,
                skipped = outcome.skipped,
                action = action.name(),
                "bulk triage"
            );
            let back = field("back");
            let target = if is_queue_query(back) && !back.is_empty() {
                format!("/?{back}")
            } else {
                "/".to_owned()
            };
            Redirect::to(&target).into_response()
        }
        Err(error) => form_error_page(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_with_what_they_need() {
        assert_eq!(
            parse_action("acknowledge", None, None),
            Ok(TriageAction::Acknowledge)
        );
        assert!(parse_action("assign", Some(""), None).is_err());
        assert_eq!(
            parse_action("assign", Some("bob"), None),
            Ok(TriageAction::Assign {
                assignee: "bob".into()
            })
        );
        assert!(parse_action("resolve", None, Some("benign")).is_err());
        assert_eq!(
            parse_action("resolve", None, Some("false_positive")),
            Ok(TriageAction::Resolve {
                resolution: Resolution::FalsePositive
            })
        );
        assert!(parse_action("delete", None, None).is_err());
    }

    #[test]
    fn only_plain_query_strings_are_redirect_targets() {
        assert!(is_queue_query("status=open&sort=severity&host=mac%20book"));
        assert!(!is_queue_query("/evil.example"));
        assert!(!is_queue_query("a=b#frag"));
        assert!(!is_queue_query("x=\r\nLocation:"));
    }
}
