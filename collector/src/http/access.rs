//! Who is asking, and may they: the session of a page request, the caller of an API request, and
//! the role and CSRF checks every state-changing handler runs on the server.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tracing::{debug, warn};

use super::{HttpState, now_ms, session, view};
use crate::auth;
use crate::store::{Role, SessionUser};

/// The signed-in user of a page request, or the response to send instead: a redirect to the login
/// form without a session, the 500 page when the store fails.
pub(super) async fn page_user(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<SessionUser, Response> {
    page_session(state, headers).await.map(|(user, _)| user)
}

/// Like [`page_user`], with the session's id (the SHA-256 of its cookie) that what is shown once
/// after a form is bound to.
pub(super) async fn page_session(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<(SessionUser, String), Response> {
    match session::current(state, headers, now_ms()).await {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(Redirect::to("/login").into_response()),
        Err(error) => {
            warn!(error = %error, "session lookup failed");
            Err(view::internal_error_page())
        }
    }
}

/// Like [`page_user`], and the user must hold at least `role` (403 page otherwise).
pub(super) async fn page_user_with(
    state: &HttpState,
    headers: &HeaderMap,
    role: Role,
) -> Result<SessionUser, Response> {
    let user = page_user(state, headers).await?;
    if user.role < role {
        debug!(user_id = %user.user_id, role = %user.role, needed = %role, "page refused");
        return Err(forbidden_page(role));
    }
    Ok(user)
}

/// The 403 page for a user whose role is too weak.
pub(super) fn forbidden_page(role: Role) -> Response {
    let message = match role {
        Role::Admin => "This needs the admin role.",
        Role::Responder => {
            "This needs the responder or admin role. Viewers can read but not triage."
        }
        Role::Viewer => "You may not do this.",
    };
    view::message_page(StatusCode::FORBIDDEN, "Not allowed", message)
}

/// Checks a form's CSRF token against the session's: `None` when it matches, else the 403 page.
pub(super) fn check_form_csrf(user: &SessionUser, presented: &str) -> Option<Response> {
    if auth::is_same_secret(&user.csrf_token, presented) {
        return None;
    }
    debug!(user_id = %user.user_id, "form refused: csrf token missing or wrong");
    Some(view::message_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form did not come from this site or has expired. Reload the page and try again.",
    ))
}

/// The caller of an API request.
#[derive(Debug, Clone)]
pub(super) struct ApiCaller {
    /// What the audit log records: the user name, or `apikey:<name>`.
    pub actor: String,
    pub role: Role,
}

/// Why an API caller was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Unauthenticated,
    /// A session-authenticated call that changes state without the session's `X-CSRF-Token`.
    Csrf,
    Internal,
}

/// Name of the header that carries the session's CSRF token on state-changing API calls made with
/// the session cookie (API keys need none: a browser never attaches them by itself).
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// Authenticates an API call: a bearer API key if an Authorization header is present (and then only
/// that), otherwise the session cookie. With `changes_state`, a session call must carry the CSRF
/// header.
pub(super) async fn api_caller(
    state: &HttpState,
    headers: &HeaderMap,
    changes_state: bool,
) -> Result<ApiCaller, Refusal> {
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
            .ok_or(Refusal::Unauthenticated)?;
        let key = state
            .store
            .use_api_key(&auth::sha256_hex(token), now)
            .await
            .map_err(|error| {
                warn!(error = %error, "api key lookup failed");
                Refusal::Internal
            })?
            .ok_or(Refusal::Unauthenticated)?;
        return Ok(ApiCaller {
            actor: format!("apikey:{}", key.name),
            role: key.role,
        });
    }
    let user = match session::current(state, headers, now).await {
        Ok(Some((user, _))) => user,
        Ok(None) => return Err(Refusal::Unauthenticated),
        Err(error) => {
            warn!(error = %error, "session lookup failed");
            return Err(Refusal::Internal);
        }
    };
    if changes_state {
        let presented = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !auth::is_same_secret(&user.csrf_token, presented) {
            debug!(user_id = %user.user_id, "api call refused: csrf header missing or wrong");
            return Err(Refusal::Csrf);
        }
    }
    Ok(ApiCaller {
        actor: user.user_name,
        role: user.role,
    })
}
