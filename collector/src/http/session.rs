//! Login, logout and the session cookie.
//!
//! The session cookie holds 32 random bytes; the store keeps only their SHA-256. The login form is
//! protected by a double-submit CSRF cookie; forms of a logged-in user carry the session's own CSRF
//! token. A failed login says nothing about whether the user exists: the password is checked
//! against a dummy hash with the same cost when the name is unknown.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::{CSRF_COOKIE, ClientAddress, HttpState, SESSION_COOKIE, now_ms, view};
use crate::auth;
use crate::store::{NewSession, SessionUser, StoreError};

/// How long a session lasts, ms (a working day; there is no sliding renewal).
const SESSION_LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// How long a login form's CSRF cookie lasts, seconds.
const LOGIN_CSRF_MAX_AGE_S: i64 = 3600;
/// Longest user name and password looked at; longer input fails like a wrong password.
const MAX_USER_NAME: usize = 128;
const MAX_PASSWORD: usize = 1024;

/// An argon2id PHC string with the default parameters `auth::hash_password` uses and a made-up
/// digest that no known password produces. Verifying against it costs what a real user's hash costs.
const DUMMY_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2hhZG93YWktZHVtbXktc2FsdA$1ku4moVmQkPZ7xIRrfo5I9GSdEfAwp4LnJRePX1TtaY";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The value of cookie `name`, if sent once or more (the first wins).
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The logged-in user of this request, if its session cookie names a live session.
pub(super) async fn current(
    state: &HttpState,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Option<(SessionUser, String)>, StoreError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| auth::is_token_shaped(t)) else {
        return Ok(None);
    };
    let digest = auth::sha256_hex(token);
    Ok(state
        .store
        .session(&digest, now_ms)
        .await?
        .map(|user| (user, digest)))
}

fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    // Names are constants and values are base64url tokens, so the header is always valid.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

fn login_page(state: &HttpState, status: StatusCode, csrf: &str, error: Option<&str>) -> Response {
    let mut response = view::render(status, &LoginPage { csrf, error });
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            CSRF_COOKIE,
            csrf,
            LOGIN_CSRF_MAX_AGE_S,
            state.config.secure_cookies,
        ),
    );
    response
}

/// `GET /login`: the form, with a CSRF token in a cookie and in a hidden field.
pub(super) async fn login_form(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match current(&state, &headers, now_ms()).await {
        Ok(Some(_)) => return Redirect::to("/").into_response(),
        Ok(None) => {}
        Err(error) => {
            warn!(error = %error, "session lookup failed");
            return view::internal_error_page();
        }
    }
    // Reusing a well-formed token keeps two open login tabs working.
    let csrf = cookie(&headers, CSRF_COOKIE)
        .filter(|t| auth::is_token_shaped(t))
        .map_or_else(auth::random_token, str::to_owned);
    login_page(&state, StatusCode::OK, &csrf, None)
}

/// `POST /login`: checks CSRF, then the password; on success a new session and a redirect to `/`.
pub(super) async fn login(
    State(state): State<HttpState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let fresh_csrf = auth::random_token();
    let Ok(Form(form)) = form else {
        return login_page(
            &state,
            StatusCode::BAD_REQUEST,
            &fresh_csrf,
            Some("The login form was not valid."),
        );
    };
    let csrf_cookie = cookie(&headers, CSRF_COOKIE).filter(|t| auth::is_token_shaped(t));
    if !csrf_cookie.is_some_and(|expected| auth::is_same_secret(expected, &form.csrf)) {
        debug!("login refused: csrf token missing or wrong");
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            &fresh_csrf,
            Some("The login form expired or did not come from this site. Please try again."),
        );
    }
    let csrf = csrf_cookie.unwrap_or_default();
    let now = now_ms();

    let LoginForm {
        username, password, ..
    } = form;
    if let Some(until) = state.login_throttle.locked_until(&username, &address, now) {
        debug!(user = %username.escape_debug(), %address, "login refused: locked out");
        let message = format!(
            "Too many failed sign-ins for this user or from this address. Try again after {}.",
            view::rfc3339_seconds(until)
        );
        return login_page(&state, StatusCode::TOO_MANY_REQUESTS, csrf, Some(&message));
    }
    // No user name holds a control character (and PostgreSQL refuses NUL in text).
    let is_plausible = username.len() <= MAX_USER_NAME
        && !username.contains(char::is_control)
        && password.len() <= MAX_PASSWORD;
    let user = if is_plausible {
        match state.store.user_by_name(&username).await {
            Ok(user) => user,
            Err(error) => {
                warn!(error = %error, "user lookup failed");
                return view::internal_error_page();
            }
        }
    } else {
        None
    };
    let hash = user
        .as_ref()
        .map_or(DUMMY_PASSWORD_HASH.to_owned(), |u| u.password_hash.clone());
    // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let matches = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|user| matches && is_plausible && !user.disabled) else {
        state
            .login_throttle
            .record_failure(&username, &address, now);
        debug!(user = %username.escape_debug(), %address, "login refused");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            csrf,
            Some("Wrong user name or password."),
        );
    };

    let token = auth::random_token();
    let session = NewSession {
        token_sha256: auth::sha256_hex(&token),
        user_id: user.id,
        csrf_token: auth::random_token(),
        created_at_ms: now,
        expires_at_ms: now + SESSION_LIFETIME_MS,
    };
    if let Err(error) = state.store.create_session(&session).await {
        warn!(error = %error, "session creation failed");
        return view::internal_error_page();
    }
    if let Err(error) = state.store.delete_expired_sessions(now).await {
        // Only housekeeping: the login itself succeeded.
        debug!(error = %error, "expired session cleanup failed");
    }
    state.login_throttle.record_success(&username);
    info!(user_id = %user.id, "user logged in");
    let secure = state.config.secure_cookies;
    let mut response = Redirect::to("/").into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, SESSION_LIFETIME_MS / 1000, secure),
    );
    cookies.append(header::SET_COOKIE, set_cookie(CSRF_COOKIE, "", 0, secure));
    response
}

/// `POST /logout`: ends the session when the form carries its CSRF token.
pub(super) async fn logout(
    State(state): State<HttpState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (user, digest) = match current(&state, &headers, now_ms()).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/login").into_response(),
        Err(error) => {
            warn!(error = %error, "session lookup failed");
            return view::internal_error_page();
        }
    };
    let is_valid = form.is_ok_and(|Form(form)| auth::is_same_secret(&user.csrf_token, &form.csrf));
    if !is_valid {
        debug!(user_id = %user.user_id, "logout refused: csrf token missing or wrong");
        return view::message_page(
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form did not come from this site or has expired. Reload the dashboard and try again.",
        );
    }
    if let Err(error) = state.store.delete_session(&digest).await {
        warn!(error = %error, "session deletion failed");
        return view::internal_error_page();
    }
    info!(user_id = %user.user_id, "user logged out");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, state.config.secure_cookies),
    );
    response
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordHash;

    use super::*;

    #[test]
    fn dummy_hash_costs_what_a_real_hash_costs() {
        let dummy = PasswordHash::new(DUMMY_PASSWORD_HASH).unwrap();
        let real_hash = auth::hash_password("anything").unwrap();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert!(!auth::verify_password("", DUMMY_PASSWORD_HASH));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; shadowai_session_x=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("shadowai_session=3; shadowai_session=4"),
        );
        assert_eq!(cookie(&headers, "shadowai_session"), Some("3"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "b"), None);
    }
}
