//! The policy page (`/policy`, admins) and its forms: sanctions, tenant rules, severity overrides,
//! suppressions and settings, with the recent policy changes.
//!
//! The forms change the policy through `policy::admin` and the store, exactly as the JSON API
//! does: the checks live there, not here. Each form is POST-redirect-GET; a refused change answers
//! with the message page saying what to fix.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shadowai_catalog::Category;
use tracing::{info, warn};
use uuid::Uuid;

use super::view::Chrome;
use super::{ClientAddress, HttpState, access, now_ms, view};
use crate::policy::admin::{self, PolicyError, SuppressionRequest};
use crate::policy::rules::{Reason, SETTING_SPECS, Sanction, Severity, Suppression};
use crate::store::{PolicyActor, PolicyRuleKind, Role, SessionUser, StoreError};

const DAY_MS: i64 = 86_400_000;
/// Policy changes the page shows.
const RECENT_CHANGES: u32 = 50;
/// Expired and lifted suppressions the page shows (newest first; the API lists them all).
const ENDED_SUPPRESSIONS: usize = 100;
/// Characters of a change's before/after record the page shows.
const CHANGE_CHARS: usize = 300;

/// Unwraps an access check: the value, or the response to send instead.
macro_rules! allowed {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

// ---------------------------------------------------------------------------------------- views

/// A sanction as the policy and product pages show it.
pub(super) struct SanctionView {
    pub(super) product: String,
    pub(super) product_href: String,
    pub(super) category: String,
    /// What the remove form sends back (escaped by askama as an attribute).
    pub(super) raw_product: String,
    pub(super) raw_group: String,
    pub(super) group: String,
    pub(super) note: String,
    pub(super) created: String,
    pub(super) created_by: String,
}

impl SanctionView {
    pub(super) fn new(s: &Sanction) -> Self {
        SanctionView {
            product: view::visible(&s.product),
            product_href: format!("/products/{}", view::percent_encoded(&s.product)),
            category: view::visible(&s.category),
            raw_product: s.product.clone(),
            raw_group: s.group.clone(),
            group: any_group(&s.group),
            note: view::visible_note(&s.note),
            created: view::rfc3339_seconds(s.created_at_ms),
            created_by: view::visible(&s.created_by),
        }
    }
}

struct TenantView {
    id: String,
    product: String,
    tenant: String,
    group: String,
    note: String,
    created: String,
    created_by: String,
}

struct OverrideView {
    id: String,
    reason: String,
    product: String,
    group: String,
    severity: &'static str,
    note: String,
    created: String,
    created_by: String,
}

struct SuppressionView {
    id: String,
    reason: String,
    product: String,
    group: String,
    host: String,
    owner: String,
    note: String,
    expires: String,
    created: String,
    created_by: String,
    /// `active`, `expired` or `lifted`.
    state: &'static str,
}

impl SuppressionView {
    fn new(s: &Suppression, now_ms: i64) -> Self {
        SuppressionView {
            id: s.id.to_string(),
            reason: any(&s.reason),
            product: any(&s.product),
            group: any(&s.group),
            host: any(&s.agent_id),
            owner: view::visible(&s.owner),
            note: view::visible_note(&s.note),
            expires: view::rfc3339_seconds(s.expires_at_ms),
            created: view::rfc3339_seconds(s.created_at_ms),
            created_by: view::visible(&s.created_by),
            state: if s.lifted_at_ms.is_some() {
                "lifted"
            } else if s.is_active(now_ms) {
                "active"
            } else {
                "expired"
            },
        }
    }
}

struct SettingView {
    name: &'static str,
    value: i64,
    default: i64,
    min: i64,
    max: i64,
    help: &'static str,
}

struct ChangeView {
    at: String,
    actor: String,
    source: String,
    kind: String,
    before: String,
    after: String,
}

fn any(text: &str) -> String {
    if text.is_empty() {
        "any".to_owned()
    } else {
        view::visible(text)
    }
}

fn any_group(group: &str) -> String {
    if group.is_empty() {
        "every group".to_owned()
    } else {
        view::visible(group)
    }
}

fn record_text(record: Option<&serde_json::Value>) -> String {
    record.map_or_else(String::new, |value| {
        view::visible_truncated(&value.to_string(), CHANGE_CHARS)
    })
}

/// The product categories, for a product the catalog does not know.
pub(super) fn categories() -> Vec<&'static str> {
    Category::ALL.iter().map(|c| c.as_str()).collect()
}

// ----------------------------------------------------------------------------------------- page

#[derive(Template)]
#[template(path = "policy.html")]
struct PolicyPage {
    chrome: Chrome,
    sanctions: Vec<SanctionView>,
    tenants: Vec<TenantView>,
    overrides: Vec<OverrideView>,
    active: Vec<SuppressionView>,
    ended: Vec<SuppressionView>,
    settings: Vec<SettingView>,
    changes: Vec<ChangeView>,
    reasons: Vec<&'static str>,
    severities: Vec<&'static str>,
    categories: Vec<&'static str>,
}

/// `GET /policy` (admins): the whole policy, its forms, and the recent changes.
pub(super) async fn policy(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let user = allowed!(access::page_user_with(&state, &headers, Role::Admin).await);
    let now = now_ms();
    let (policy, suppressions, changes) = match tokio::try_join!(
        state.store.read_policy(now),
        state.store.list_suppressions(),
        state.store.list_policy_changes(RECENT_CHANGES, None)
    ) {
        Ok(found) => found,
        Err(error) => return store_failed(&error),
    };
    let (active, mut ended): (Vec<_>, Vec<_>) = suppressions
        .iter()
        .map(|s| SuppressionView::new(s, now))
        .partition(|s| s.state == "active");
    ended.truncate(ENDED_SUPPRESSIONS);
    let settings = SETTING_SPECS
        .iter()
        .map(|spec| SettingView {
            name: spec.name,
            value: match spec.name {
                "silent_after_ms" => policy.settings.silent_after_ms,
                "consumer_use_threshold" => policy.settings.consumer_use_threshold,
                _ => spec.default,
            },
            default: spec.default,
            min: spec.min,
            max: spec.max,
            help: spec.help,
        })
        .collect();
    let page = PolicyPage {
        chrome: Chrome::new(&user),
        sanctions: policy.sanctions.iter().map(SanctionView::new).collect(),
        tenants: policy
            .tenants
            .iter()
            .map(|t| TenantView {
                id: t.id.to_string(),
                product: view::visible(&t.product),
                tenant: view::visible(&t.tenant),
                group: any_group(&t.group),
                note: view::visible_note(&t.note),
                created: view::rfc3339_seconds(t.created_at_ms),
                created_by: view::visible(&t.created_by),
            })
            .collect(),
        overrides: policy
            .overrides
            .iter()
            .map(|o| OverrideView {
                id: o.id.to_string(),
                reason: any(&o.reason),
                product: any(&o.product),
                group: any_group(&o.group),
                severity: o.severity.as_str(),
                note: view::visible_note(&o.note),
                created: view::rfc3339_seconds(o.created_at_ms),
                created_by: view::visible(&o.created_by),
            })
            .collect(),
        active,
        ended,
        settings,
        changes: changes
            .iter()
            .map(|c| ChangeView {
                at: view::rfc3339_seconds(c.at_ms),
                actor: view::visible(&c.actor),
                source: view::visible(&c.source),
                kind: view::visible(&c.kind),
                before: record_text(c.before.as_ref()),
                after: record_text(c.after.as_ref()),
            })
            .collect(),
        reasons: Reason::ALL.iter().map(|r| r.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        categories: categories(),
    };
    view::render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------------------- forms

fn store_failed(error: &StoreError) -> Response {
    warn!(error = %error, "policy page query failed");
    view::internal_error_page()
}

fn not_done(status: StatusCode, message: &str) -> Response {
    view::message_page(status, "Not done", message)
}

/// A policy form: it carries the session's CSRF token.
trait PolicyForm {
    fn csrf(&self) -> &str;
}

/// The checks every policy form runs, in the order the other admin forms run them: a session, a
/// well-formed form, the session's CSRF token, the admin role. Yields who is acting, for the audit.
async fn admin_form<F: PolicyForm>(
    state: &HttpState,
    headers: &HeaderMap,
    client: ClientAddress,
    form: Result<Form<F>, FormRejection>,
) -> Result<(SessionUser, PolicyActor, F), Response> {
    let user = access::page_user(state, headers).await?;
    let Ok(Form(form)) = form else {
        return Err(not_done(StatusCode::BAD_REQUEST, "The form was not valid."));
    };
    if let Some(response) = access::check_form_csrf(&user, form.csrf()) {
        return Err(response);
    }
    if user.role < Role::Admin {
        return Err(access::forbidden_page(Role::Admin));
    }
    let actor = PolicyActor {
        who: format!("user:{}", user.user_name),
        from: client.0,
    };
    Ok((user, actor, form))
}

/// Answers a policy change: back to `to` when done, else a page saying why not.
fn answer<T>(user: &SessionUser, done: Result<T, PolicyError>, what: &str, to: &str) -> Response {
    match done {
        Ok(_) => {
            info!(user_id = %user.user_id, change = what, "policy changed from the dashboard");
            Redirect::to(to).into_response()
        }
        Err(PolicyError::Invalid(message)) => not_done(StatusCode::BAD_REQUEST, &message),
        Err(PolicyError::Store(StoreError::NotFound { entity })) => view::message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no such {entity} (it may have been removed already)."),
        ),
        Err(PolicyError::Store(StoreError::Conflict { .. })) => {
            not_done(StatusCode::CONFLICT, "The policy already has this rule.")
        }
        Err(PolicyError::Store(StoreError::Invalid { what })) => {
            not_done(StatusCode::BAD_REQUEST, what)
        }
        Err(PolicyError::Store(error)) => store_failed(&error),
    }
}

/// Where a sanction form returns: the product's page when it came from there, else `/policy`.
fn sanction_return(from: &str, product: &str) -> String {
    if from == "product" {
        format!("/products/{}", view::percent_encoded(product))
    } else {
        "/policy".to_owned()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SanctionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    group: String,
    /// `""`: from the catalog.
    #[serde(default)]
    category: String,
    #[serde(default)]
    note: String,
    /// `product` when sent from a product page.
    #[serde(default)]
    from: String,
}

impl PolicyForm for SanctionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /policy/sanctions` (admins): sanctions a product globally or for a group.
pub(super) async fn add_sanction(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<SanctionForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let category = Some(form.category.as_str()).filter(|c| !c.is_empty());
    let done = admin::sanction(
        &state.store,
        &form.product,
        form.group.trim(),
        category,
        &form.note,
        &actor,
        now_ms(),
    )
    .await;
    let to = sanction_return(&form.from, &form.product);
    answer(&user, done, "sanction.add", &to)
}

/// `POST /policy/sanctions/remove` (admins): withdraws a sanction (product and group).
pub(super) async fn remove_sanction(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<SanctionForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let done = admin::unsanction(&state.store, &form.product, &form.group, &actor, now_ms()).await;
    let to = sanction_return(&form.from, &form.product);
    answer(&user, done, "sanction.remove", &to)
}

#[derive(Debug, Deserialize)]
pub(super) struct TenantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    note: String,
}

impl PolicyForm for TenantForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /policy/tenants` (admins): declares a tenant of a product ours.
pub(super) async fn add_tenant(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<TenantForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let done = admin::add_tenant(
        &state.store,
        form.product.trim(),
        form.tenant.trim(),
        form.group.trim(),
        &form.note,
        &actor,
        now_ms(),
    )
    .await;
    answer(&user, done, "tenant.add", "/policy")
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl PolicyForm for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Removes a tenant rule or a severity override by id.
async fn remove_rule(
    state: &HttpState,
    headers: &HeaderMap,
    client: ClientAddress,
    form: Result<Form<CsrfForm>, FormRejection>,
    kind: PolicyRuleKind,
    id: &str,
) -> Response {
    let (user, actor, _) = allowed!(admin_form(state, headers, client, form).await);
    let Ok(id) = Uuid::try_parse(id) else {
        return view::message_page(StatusCode::NOT_FOUND, "Not found", "There is no such rule.");
    };
    let done = state
        .store
        .remove_policy_rule(kind, id, &actor, now_ms())
        .await
        .map_err(PolicyError::from);
    let what = match kind {
        PolicyRuleKind::Tenant => "tenant.remove",
        PolicyRuleKind::Override => "override.remove",
    };
    answer(&user, done, what, "/policy")
}

/// `POST /policy/tenants/{id}/remove` (admins).
pub(super) async fn remove_tenant(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    remove_rule(&state, &headers, client, form, PolicyRuleKind::Tenant, &id).await
}

#[derive(Debug, Deserialize)]
pub(super) struct OverrideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
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

impl PolicyForm for OverrideForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /policy/overrides` (admins): a severity for alerts of a reason and/or product.
pub(super) async fn add_override(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<OverrideForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let done = admin::add_override(
        &state.store,
        &form.reason,
        form.product.trim(),
        form.group.trim(),
        &form.severity,
        &form.note,
        &actor,
        now_ms(),
    )
    .await;
    answer(&user, done, "override.add", "/policy")
}

/// `POST /policy/overrides/{id}/remove` (admins).
pub(super) async fn remove_override(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    remove_rule(
        &state,
        &headers,
        client,
        form,
        PolicyRuleKind::Override,
        &id,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub(super) struct SuppressionForm {
    #[serde(default)]
    csrf: String,
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
    owner: String,
    /// Days from now until it expires.
    #[serde(default)]
    days: String,
    #[serde(default)]
    note: String,
}

impl PolicyForm for SuppressionForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /policy/suppressions` (admins): suppresses matching alerts for some days, with an owner.
pub(super) async fn add_suppression(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<SuppressionForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let Ok(days) = form.days.trim().parse::<i64>() else {
        return not_done(
            StatusCode::BAD_REQUEST,
            "The suppression needs its lifetime in whole days (1 to 366).",
        );
    };
    let now = now_ms();
    let request = SuppressionRequest {
        reason: form.reason,
        product: form.product.trim().to_owned(),
        group: form.group.trim().to_owned(),
        agent_id: form.host.trim().to_owned(),
        owner: form.owner.trim().to_owned(),
        note: form.note,
        expires_at_ms: now.saturating_add(days.saturating_mul(DAY_MS)),
    };
    let done = admin::suppress(&state.store, &request, &actor, now).await;
    answer(&user, done, "suppression.add", "/policy")
}

/// `POST /policy/suppressions/{id}/lift` (admins): ends a suppression before its expiry.
pub(super) async fn lift_suppression(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    Path(id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let (user, actor, _) = allowed!(admin_form(&state, &headers, client, form).await);
    let Ok(id) = Uuid::try_parse(&id) else {
        return view::message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such suppression.",
        );
    };
    let done = state
        .store
        .lift_suppression(id, &actor, now_ms())
        .await
        .map_err(PolicyError::from);
    answer(&user, done, "suppression.lift", "/policy")
}

#[derive(Debug, Deserialize)]
pub(super) struct SettingForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: String,
}

impl PolicyForm for SettingForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /policy/settings` (admins): sets a numeric setting within its bounds.
pub(super) async fn set_setting(
    State(state): State<HttpState>,
    headers: HeaderMap,
    client: ClientAddress,
    form: Result<Form<SettingForm>, FormRejection>,
) -> Response {
    let (user, actor, form) = allowed!(admin_form(&state, &headers, client, form).await);
    let Ok(value) = form.value.trim().parse::<i64>() else {
        return not_done(
            StatusCode::BAD_REQUEST,
            "A setting's value is a whole number.",
        );
    };
    let done = admin::set_setting(&state.store, &form.name, value, &actor, now_ms()).await;
    answer(&user, done, "setting.set", "/policy")
}
