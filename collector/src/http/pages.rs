//! The dashboard's pages besides the queue: overview, alert detail, hosts, products, and the admin
//! pages (audit log, enrollment tokens, users). Every value from an endpoint goes through
//! `view::visible` and askama's escaping; charts are server-rendered SVG (no script).

use askama::Template;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use prost::Message;
use serde::Deserialize;
use shadowai_proto::v1;
use tracing::{info, warn};
use uuid::Uuid;

use super::dashboard::{AgentView, AlertView, assignable};
use super::policy_page::{SanctionView, categories};
use super::shown_once::Kind;
use super::view::Chrome;
use super::{HttpState, access, now_ms, view};
use crate::auth;
use crate::store::{
    AlertFilter, AlertSort, PageCursor, Resolution, Role, StoreError, StoredObservation,
};
use crate::tokens::{self, TokenError};

const DAY_MS: i64 = 86_400_000;
/// Days in the overview's trend chart.
const TREND_DAYS: i64 = 14;
/// Height of the trend chart's plot area, SVG units.
const CHART_HEIGHT: i64 = 120;
/// Width of one day's bar, SVG units.
const BAR_WIDTH: i64 = 24;

fn store_failed(error: &StoreError) -> Response {
    warn!(error = %error, "dashboard query failed");
    view::internal_error_page()
}

fn not_found(what: &str) -> Response {
    view::message_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("There is no such {what}."),
    )
}

/// Unwraps a page's access check: the user, or the response to send instead.
macro_rules! signed_in {
    ($result:expr) => {
        match $result {
            Ok(user) => user,
            Err(response) => return response,
        }
    };
}

// ------------------------------------------------------------------------------------ overview

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    severities: Vec<SeverityCount>,
    unresolved: i64,
    new_products: Vec<ProductView>,
    risky_hosts: Vec<RiskyHostView>,
    reporting: usize,
    silent: usize,
    blinded: usize,
    revoked: usize,
    chart: Chart,
}

struct SeverityCount {
    severity: &'static str,
    open: i64,
    acknowledged: i64,
    href: String,
}

struct RiskyHostView {
    agent_id: String,
    host: String,
    alerts: i64,
}

/// A bar chart as SVG geometry (attributes, not styles: the CSP forbids inline styles).
struct Chart {
    width: i64,
    height: i64,
    bars: Vec<Bar>,
    max: i64,
}

struct Bar {
    x: i64,
    y: i64,
    height: i64,
    label_x: i64,
    label: String,
    count: i64,
    /// Day labels on every other bar keep them legible.
    show_label: bool,
}

fn trend_chart(per_day: &[(i64, i64)], today: i64) -> Chart {
    let first_day = today - (TREND_DAYS - 1);
    let counts: Vec<(i64, i64)> = (first_day..=today)
        .map(|day| {
            let count = per_day
                .iter()
                .find(|(d, _)| *d == day)
                .map_or(0, |(_, c)| *c);
            (day, count)
        })
        .collect();
    let max = counts.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    let bars = counts
        .iter()
        .enumerate()
        .map(|(index, (day, count))| {
            let index = i64::try_from(index).unwrap_or(0);
            let height = count * CHART_HEIGHT / max;
            let label = view::rfc3339_seconds(day * DAY_MS);
            Bar {
                x: index * (BAR_WIDTH + 6) + 4,
                y: CHART_HEIGHT - height + 4,
                height,
                label_x: index * (BAR_WIDTH + 6) + 4,
                label: label.get(5..10).unwrap_or("").to_owned(),
                count: *count,
                show_label: index % 2 == 0,
            }
        })
        .collect();
    Chart {
        width: TREND_DAYS * (BAR_WIDTH + 6) + 8,
        height: CHART_HEIGHT + 24,
        bars,
        max,
    }
}

/// `GET /overview`: open alerts by severity, new products this week, risky hosts, fleet coverage,
/// and new alerts per day.
pub(super) async fn overview(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let now = now_ms();
    let today = now.div_euclid(DAY_MS);
    let store = &state.store;
    let found = tokio::try_join!(
        store.alert_tallies(),
        store.products_first_seen_since(now - 7 * DAY_MS, 20),
        store.risky_hosts(10),
        store.list_agents(),
        store.alerts_per_day((today - (TREND_DAYS - 1)) * DAY_MS),
    );
    let (tallies, new_products, risky, agents, per_day) = match found {
        Ok(found) => found,
        Err(error) => return store_failed(&error),
    };
    let severities: Vec<SeverityCount> = ["critical", "high", "medium", "low"]
        .into_iter()
        .map(|severity| {
            let count = |status: &str| {
                tallies
                    .iter()
                    .filter(|t| t.severity == severity && t.status == status)
                    .map(|t| t.count)
                    .sum()
            };
            SeverityCount {
                severity,
                open: count("open"),
                acknowledged: count("acknowledged"),
                href: format!("/?{}", view::query_string(&[("severity", severity)])),
            }
        })
        .collect();
    let unresolved = tallies
        .iter()
        .filter(|t| t.status != "resolved")
        .map(|t| t.count)
        .sum();
    let fleet: Vec<AgentView> = agents.iter().map(|a| AgentView::new(a, now)).collect();
    let count_state = |name: &str| fleet.iter().filter(|a| a.state == name).count();
    let page = OverviewPage {
        chrome: Chrome::new(&user),
        severities,
        unresolved,
        new_products: new_products.iter().map(ProductView::new).collect(),
        risky_hosts: risky
            .iter()
            .map(|h| RiskyHostView {
                agent_id: h.agent_id.to_string(),
                host: view::visible(&h.hostname),
                alerts: h.alerts,
            })
            .collect(),
        reporting: count_state("reporting"),
        silent: count_state("silent"),
        blinded: count_state("blinded"),
        revoked: count_state("revoked"),
        chart: trend_chart(&per_day, today),
    };
    view::render(StatusCode::OK, &page)
}

// -------------------------------------------------------------------------------- alert detail

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    chrome: Chrome,
    alert: AlertView,
    group: String,
    category: String,
    explanation: String,
    acknowledged_at: String,
    resolved_at: String,
    escalated_at: String,
    chain: Vec<ChainStep>,
    timeline: Vec<ObservationView>,
    same_host: Vec<AlertView>,
    same_product: Vec<AlertView>,
    history: Vec<EventView>,
    assignees: Vec<String>,
    resolutions: Vec<&'static str>,
}

/// One process of the chain agent → shell → command, oldest ancestor first.
struct ChainStep {
    pid: String,
    name: String,
    exe: String,
    cmdline: String,
    is_subject: bool,
}

/// One observation as pages list it.
struct ObservationView {
    observed_at: String,
    signal: &'static str,
    name: String,
    product: String,
    rule: String,
    reason: String,
    risk: String,
    plan: String,
    tenant: String,
    process: String,
    user: String,
    /// Signal-specific detail worth reading (MCP server, setting, ALPN...).
    detail: String,
    count: u32,
}

impl ObservationView {
    fn new(o: &StoredObservation) -> Self {
        let process = o.process.as_ref();
        ObservationView {
            observed_at: view::rfc3339_seconds(o.observed_at_ms),
            signal: o.signal.as_str(),
            name: view::visible(&o.name),
            product: view::visible(&o.product),
            rule: view::visible(&o.rule),
            reason: view::visible(&o.reason),
            risk: view::visible(&o.risk.join(", ")),
            plan: view::visible(o.plan.as_deref().unwrap_or("")),
            tenant: view::visible(o.tenant.as_deref().unwrap_or("")),
            process: process.map_or_else(String::new, |p| {
                view::visible_truncated(&format!("{} (pid {}) {}", p.name, p.pid, p.cmdline), 160)
            }),
            user: view::visible(process.map_or("", |p| p.user.as_str())),
            detail: detail_text(&o.details),
            count: o.count,
        }
    }
}

/// The string fields of an observation's details worth showing, as `key: value` pairs.
fn detail_text(details: &serde_json::Value) -> String {
    let Some(object) = details.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for key in [
        "mcp_server",
        "mcp_target",
        "mcp_transport",
        "setting",
        "value",
        "event",
        "path",
        "version",
        "resolver",
        "dst",
    ] {
        let text = match object.get(key) {
            Some(serde_json::Value::String(text)) if !text.is_empty() => text.clone(),
            Some(serde_json::Value::Bool(true)) => "true".to_owned(),
            _ => continue,
        };
        parts.push(format!("{key}: {text}"));
    }
    for key in ["alpn", "answers"] {
        if let Some(list) = object.get(key).and_then(|v| v.as_array()) {
            let items: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            if !items.is_empty() {
                parts.push(format!("{key}: {}", items.join(", ")));
            }
        }
    }
    if object.get("exposed").and_then(serde_json::Value::as_bool) == Some(true) {
        parts.push("exposed beyond loopback".to_owned());
    }
    view::visible_truncated(&parts.join("; "), 400)
}

struct EventView {
    at: String,
    actor: String,
    action: String,
    detail: String,
    note: String,
    from_address: String,
}

fn process_chain(evidence: Option<&[u8]>) -> Vec<ChainStep> {
    let Some(process) = evidence
        .and_then(|bytes| v1::Observation::decode(bytes).ok())
        .and_then(|observation| observation.process)
    else {
        return Vec::new();
    };
    let mut chain: Vec<ChainStep> = process
        .ancestors
        .iter()
        .rev()
        .map(|a| ChainStep {
            pid: a.pid.to_string(),
            name: view::visible(&a.name),
            exe: view::visible(&a.exe),
            cmdline: String::new(),
            is_subject: false,
        })
        .collect();
    chain.push(ChainStep {
        pid: process.pid.to_string(),
        name: view::visible(&process.name),
        exe: view::visible(&process.exe),
        cmdline: view::visible(&process.cmdline),
        is_subject: true,
    });
    chain
}

fn optional_time(ms: Option<i64>) -> String {
    ms.map(view::rfc3339_seconds).unwrap_or_default()
}

fn related_filter(agent_id: Option<Uuid>, product: Option<String>) -> AlertFilter {
    AlertFilter {
        agent_id,
        product,
        page_size: 11,
        sort: AlertSort::LastSeen,
        ..AlertFilter::default()
    }
}

/// `GET /alerts/{id}`: why it fired, evidence, process chain, related alerts, history, triage.
pub(super) async fn alert(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let Ok(alert_id) = Uuid::try_parse(&id) else {
        return not_found("alert");
    };
    let store = &state.store;
    let found = match store.triaged_alert(alert_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found("alert"),
        Err(error) => return store_failed(&error),
    };
    let alert = &found.alert;
    let host_filter = related_filter(Some(alert.agent_id), None);
    let product_filter = related_filter(None, Some(alert.product.clone()));
    let loaded = tokio::try_join!(
        store.agent_observations(alert.agent_id, Some(&alert.product), 50),
        async {
            match alert.last_observation_id {
                Some(id) => store.observation_evidence(id).await,
                // Sensor alerts (silent, blinded) have no observation.
                None => Ok(None),
            }
        },
        store.alert_queue(&host_filter),
        store.alert_queue(&product_filter),
        store.alert_triage_events(alert_id),
        store.list_users(),
    );
    let (timeline, evidence, same_host, same_product, history, users) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return store_failed(&error),
    };
    let others = |page: &crate::store::AlertQueuePage| -> Vec<AlertView> {
        page.alerts
            .iter()
            .filter(|a| a.alert.id != alert_id)
            .take(10)
            .map(AlertView::new)
            .collect()
    };
    // Why the policy fired (the alert's own explanation), else the catalog's reason for the match.
    let explanation = if alert.explanation.is_empty() {
        timeline
            .iter()
            .find(|o| Some(o.id) == alert.last_observation_id)
            .or(timeline.first())
            .map(|o| view::visible(&o.reason))
            .unwrap_or_default()
    } else {
        view::visible(&alert.explanation)
    };
    let page = AlertPage {
        chrome: Chrome::new(&user),
        alert: AlertView::new(&found),
        group: view::visible(&alert.group),
        category: view::visible(&alert.category),
        explanation,
        acknowledged_at: optional_time(found.triage.acknowledged_at_ms),
        resolved_at: optional_time(found.triage.resolved_at_ms),
        escalated_at: optional_time(found.triage.escalated_at_ms),
        chain: process_chain(evidence.as_deref()),
        timeline: timeline.iter().map(ObservationView::new).collect(),
        same_host: others(&same_host),
        same_product: others(&same_product),
        history: history
            .iter()
            .map(|e| EventView {
                at: view::rfc3339_seconds(e.at_ms),
                actor: view::visible(&e.actor),
                action: view::visible(&e.action),
                detail: view::visible(&e.detail),
                note: view::visible_note(&e.note),
                from_address: view::visible(&e.from_address),
            })
            .collect(),
        assignees: assignable(&users),
        resolutions: Resolution::ALL.iter().map(|r| r.as_str()).collect(),
    };
    view::render(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------------------- hosts

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    chrome: Chrome,
    hosts: Vec<HostRow>,
}

struct HostRow {
    agent: AgentView,
    alerts: i64,
    unresolved: i64,
}

/// `GET /hosts`: every agent with its state, last contact, blind spots and alert counts.
pub(super) async fn hosts(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let now = now_ms();
    let (agents, counts) = match tokio::try_join!(
        state.store.list_agents(),
        state.store.alert_counts_by_agent()
    ) {
        Ok(found) => found,
        Err(error) => return store_failed(&error),
    };
    let counts: std::collections::HashMap<Uuid, &crate::store::AgentAlertCounts> =
        counts.iter().map(|c| (c.agent_id, c)).collect();
    let hosts = agents
        .iter()
        .map(|agent| {
            let count = counts.get(&agent.agent_id);
            HostRow {
                agent: AgentView::new(agent, now),
                alerts: count.map_or(0, |c| c.alerts),
                unresolved: count.map_or(0, |c| c.unresolved),
            }
        })
        .collect();
    view::render(
        StatusCode::OK,
        &HostsPage {
            chrome: Chrome::new(&user),
            hosts,
        },
    )
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    chrome: Chrome,
    agent: AgentView,
    os: String,
    enrolled_at: String,
    sensors: Vec<(String, String, String)>,
    inventory: Vec<ObservationView>,
    alerts: Vec<AlertView>,
    timeline: Vec<ObservationView>,
}

/// `GET /hosts/{id}`: health, last contact, blind spots, inventory, alerts and timeline of a host.
pub(super) async fn host(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let Ok(agent_id) = Uuid::try_parse(&id) else {
        return not_found("host");
    };
    let store = &state.store;
    let alerts_filter = AlertFilter {
        agent_id: Some(agent_id),
        page_size: 100,
        ..AlertFilter::default()
    };
    let loaded = tokio::try_join!(
        store.agent_summary(agent_id),
        store.agent_inventory(agent_id, 200),
        store.alert_queue(&alerts_filter),
        store.agent_observations(agent_id, None, 50),
    );
    let (agent, inventory, alerts, timeline) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return store_failed(&error),
    };
    let Some(agent) = agent else {
        return not_found("host");
    };
    let text = |value: &serde_json::Value, key: &str| {
        view::visible(value.get(key).and_then(|v| v.as_str()).unwrap_or(""))
    };
    let sensors = agent
        .health
        .get("sensors")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .map(|sensor| {
            (
                text(sensor, "sensor"),
                text(sensor, "state")
                    .trim_start_matches("SENSOR_STATE_")
                    .to_lowercase(),
                text(sensor, "detail"),
            )
        })
        .collect();
    // The newest observation of each inventory item.
    let mut seen = std::collections::HashSet::new();
    let inventory = inventory
        .iter()
        .filter(|o| seen.insert((o.signal, o.name.clone(), o.product.clone())))
        .map(ObservationView::new)
        .collect();
    let page = HostPage {
        chrome: Chrome::new(&user),
        os: view::visible(&format!("{} {} {}", agent.os, agent.os_version, agent.arch)),
        enrolled_at: view::rfc3339_seconds(agent.enrolled_at_ms),
        agent: AgentView::new(&agent, now_ms()),
        sensors,
        inventory,
        alerts: alerts.alerts.iter().map(AlertView::new).collect(),
        timeline: timeline.iter().map(ObservationView::new).collect(),
    };
    view::render(StatusCode::OK, &page)
}

// ------------------------------------------------------------------------------------- products

/// One product's usage as pages list it.
struct ProductView {
    product: String,
    href: String,
    vendor: String,
    category: String,
    hosts: i64,
    users: i64,
    alerts: i64,
    unresolved: i64,
    observations: i64,
    first_seen: String,
    last_seen: String,
}

impl ProductView {
    fn new(usage: &crate::store::ProductUsage) -> Self {
        let href = format!("/products/{}", view::percent_encoded(&usage.product));
        ProductView {
            product: view::visible(&usage.product),
            href,
            vendor: view::visible(&usage.vendor),
            category: view::visible(&usage.category),
            hosts: usage.hosts,
            users: usage.users,
            alerts: usage.alerts,
            unresolved: usage.unresolved,
            observations: usage.observations,
            first_seen: view::rfc3339_seconds(usage.first_seen_ms),
            last_seen: view::rfc3339_seconds(usage.last_seen_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    chrome: Chrome,
    products: Vec<ProductView>,
}

/// `GET /products`: every product with alerts, by how many hosts and users use it.
pub(super) async fn products(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let usage = match state.store.product_usage(1000).await {
        Ok(usage) => usage,
        Err(error) => return store_failed(&error),
    };
    view::render(
        StatusCode::OK,
        &ProductsPage {
            chrome: Chrome::new(&user),
            products: usage.iter().map(ProductView::new).collect(),
        },
    )
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    chrome: Chrome,
    product: String,
    /// The product id as the sanction forms send it back (askama escapes it in the attribute).
    raw_product: String,
    /// Its sanctions, for admins (who also get the forms).
    sanctions: Vec<SanctionView>,
    categories: Vec<&'static str>,
    alerts_href: String,
    hosts: Vec<AlertView>,
    users: Vec<String>,
    plans: Vec<(String, String, i64)>,
}

/// `GET /products/{product}`: where a product is used, by which hosts and users, on which plans
/// and tenants (last 30 days).
pub(super) async fn product(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(product): Path<String>,
) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    if product.is_empty() || product.len() > 256 {
        return not_found("product");
    }
    let filter = AlertFilter {
        product: Some(product.clone()),
        sort: AlertSort::Host,
        page_size: 500,
        ..AlertFilter::default()
    };
    let since = now_ms() - 30 * DAY_MS;
    let (alerts, plans) = match tokio::try_join!(
        state.store.alert_queue(&filter),
        state.store.product_plans(&product, since)
    ) {
        Ok(found) => found,
        Err(error) => return store_failed(&error),
    };
    if alerts.alerts.is_empty() {
        return not_found("product");
    }
    let mut users: Vec<String> = alerts
        .alerts
        .iter()
        .map(|a| view::visible(&a.alert.user_name))
        .filter(|u| !u.is_empty())
        .collect();
    users.sort();
    users.dedup();
    let sanctions = if user.role >= Role::Admin {
        match state.store.read_policy(now_ms()).await {
            Ok(policy) => policy
                .sanctions
                .iter()
                .filter(|s| s.product == product)
                .map(SanctionView::new)
                .collect(),
            Err(error) => return store_failed(&error),
        }
    } else {
        Vec::new()
    };
    let page = ProductPage {
        chrome: Chrome::new(&user),
        raw_product: product.clone(),
        sanctions,
        categories: categories(),
        alerts_href: format!(
            "/?{}",
            view::query_string(&[("product", &product), ("status", "all")])
        ),
        product: view::visible(&product),
        hosts: alerts.alerts.iter().map(AlertView::new).collect(),
        users,
        plans: plans
            .iter()
            .map(|p| {
                (
                    view::visible(p.plan.as_deref().unwrap_or("")),
                    view::visible(p.tenant.as_deref().unwrap_or("")),
                    p.observations,
                )
            })
            .collect(),
    };
    view::render(StatusCode::OK, &page)
}

// ------------------------------------------------------------------------------------ audit log

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    events: Vec<AuditView>,
    next_page: Option<String>,
}

struct AuditView {
    at: String,
    actor: String,
    action: String,
    detail: String,
    note: String,
    from_address: String,
    alert_id: String,
    alert_title: String,
    host: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct CursorParams {
    cursor: Option<String>,
}

/// `GET /audit`: every triage action, newest first (admins).
pub(super) async fn audit(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<CursorParams>, QueryRejection>,
) -> Response {
    let user = signed_in!(access::page_user_with(&state, &headers, Role::Admin).await);
    let cursor = match params {
        Ok(Query(CursorParams { cursor: None })) => None,
        Ok(Query(CursorParams { cursor: Some(text) })) => match text.parse::<PageCursor>() {
            Ok(cursor) => Some(cursor),
            Err(_) => {
                return view::message_page(
                    StatusCode::BAD_REQUEST,
                    "Bad page",
                    "The page link was not valid.",
                );
            }
        },
        Err(_) => {
            return view::message_page(
                StatusCode::BAD_REQUEST,
                "Bad page",
                "The page link was not valid.",
            );
        }
    };
    let page = match state.store.list_triage_events(cursor, 100).await {
        Ok(page) => page,
        Err(error) => return store_failed(&error),
    };
    let events = page
        .items
        .iter()
        .map(|entry| AuditView {
            at: view::rfc3339_seconds(entry.event.at_ms),
            actor: view::visible(&entry.event.actor),
            action: view::visible(&entry.event.action),
            detail: view::visible(&entry.event.detail),
            note: view::visible_note(&entry.event.note),
            from_address: view::visible(&entry.event.from_address),
            alert_id: entry.event.alert_id.to_string(),
            alert_title: view::visible(&entry.alert_title),
            host: view::visible(&entry.hostname),
        })
        .collect();
    view::render(
        StatusCode::OK,
        &AuditPage {
            chrome: Chrome::new(&user),
            events,
            next_page: page.next.map(|c| format!("/audit?cursor={c}")),
        },
    )
}

// ---------------------------------------------------------------------------- enrollment tokens

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenView>,
    /// Whether this server holds the CA pin new tokens carry.
    can_create: bool,
    lifetimes: Vec<(&'static str, &'static str)>,
    /// A token just created: its group and its text (shown once).
    created: Option<(String, String)>,
}

struct TokenView {
    id: String,
    group: String,
    expires: String,
    uses: String,
    created: String,
    created_by: String,
    state: &'static str,
    can_revoke: bool,
}

/// The tokens page; `created` is a new token's text, shown on this answer only.
async fn tokens_page(
    state: &HttpState,
    user: &crate::store::SessionUser,
    created: Option<(String, String)>,
) -> Response {
    let now = now_ms();
    let tokens = match state.store.list_enrollment_tokens(500).await {
        Ok(tokens) => tokens,
        Err(error) => return store_failed(&error),
    };
    let tokens = tokens
        .iter()
        .map(|t| {
            let state = if t.revoked_at_ms.is_some() {
                "revoked"
            } else if t.expires_at_ms.is_some_and(|e| e <= now) {
                "expired"
            } else if t.max_uses.is_some_and(|m| t.uses >= m) {
                "used up"
            } else {
                "active"
            };
            TokenView {
                id: view::visible(&t.token_id),
                group: view::visible(&t.group),
                expires: t
                    .expires_at_ms
                    .map_or_else(|| "never".to_owned(), view::rfc3339_seconds),
                uses: match t.max_uses {
                    Some(max) => format!("{} of {max}", t.uses),
                    None => t.uses.to_string(),
                },
                created: view::rfc3339_seconds(t.created_at_ms),
                created_by: view::visible(&t.created_by),
                state,
                can_revoke: t.revoked_at_ms.is_none(),
            }
        })
        .collect();
    view::render(
        StatusCode::OK,
        &TokensPage {
            chrome: Chrome::new(user),
            tokens,
            can_create: state.enrollment_pin.is_some(),
            lifetimes: TOKEN_LIFETIMES.to_vec(),
            created,
        },
    )
}

/// The lifetimes the create form offers: (value for `tokens::parse_lifetime`, label).
const TOKEN_LIFETIMES: [(&str, &str); 5] = [
    ("1d", "1 day"),
    ("7d", "7 days"),
    ("30d", "30 days"),
    ("90d", "90 days"),
    ("never", "never"),
];

/// `GET /tokens`: enrollment tokens (never their secrets) with revocation and creation (admins);
/// `?shown=<id>` shows the token just created by this session, once.
pub(super) async fn tokens(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ShownParams>, QueryRejection>,
) -> Response {
    let (user, session) = signed_in!(access::page_session(&state, &headers).await);
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    let created = take_shown(&state, params, &session, Kind::EnrollmentToken);
    tokens_page(&state, &user, created).await
}

/// The query of a page that shows a new secret once after its form.
#[derive(Debug, Deserialize)]
pub(super) struct ShownParams {
    shown: Option<String>,
}

/// The secret stashed for this session and page under `?shown=`, taken out of the stash.
fn take_shown(
    state: &HttpState,
    params: Result<Query<ShownParams>, QueryRejection>,
    session: &str,
    kind: Kind,
) -> Option<(String, String)> {
    let id = params.ok()?.0.shown?;
    state.shown_once.take(&id, session, kind, now_ms())
}

/// Stashes a new secret for `GET <page>?shown=<id>` and redirects there (POST-redirect-GET: a
/// reload of the page does not repeat the form, and does not show the secret again).
fn redirect_to_shown(
    state: &HttpState,
    page: &str,
    session: &str,
    kind: Kind,
    shown: (String, String),
) -> Response {
    let id = state.shown_once.put(session, kind, shown, now_ms());
    Redirect::to(&format!("{page}?shown={id}")).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group: String,
    /// `""` for unlimited.
    #[serde(default)]
    max_uses: String,
    #[serde(default)]
    expires: String,
}

/// `POST /tokens`: creates an enrollment token (admins) and redirects to the page that shows its
/// text once (never logged, never stored: the store keeps the secret's SHA-256; the text waits in
/// memory for that GET only), like `token create` prints it once.
pub(super) async fn create_token(
    State(state): State<HttpState>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let (user, session) = signed_in!(access::page_session(&state, &headers).await);
    let Ok(Form(form)) = form else {
        return view::message_page(
            StatusCode::BAD_REQUEST,
            "Not done",
            "The form was not valid.",
        );
    };
    if let Some(response) = access::check_form_csrf(&user, &form.csrf) {
        return response;
    }
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    let Some(pin) = state.enrollment_pin.clone() else {
        return view::message_page(
            StatusCode::CONFLICT,
            "Not done",
            "This server cannot create tokens; use shadowai-collector token create.",
        );
    };
    let max_uses = match form.max_uses.trim() {
        "" => None,
        text => match text.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                return view::message_page(
                    StatusCode::BAD_REQUEST,
                    "Not done",
                    "Max uses must be a whole number (or empty for unlimited).",
                );
            }
        },
    };
    let lifetime = match tokens::parse_lifetime(&form.expires) {
        Ok(lifetime) => lifetime,
        Err(message) => return view::message_page(StatusCode::BAD_REQUEST, "Not done", &message),
    };
    let group = form.group.trim();
    match tokens::create_with_pin(
        &state.store,
        &pin,
        group,
        lifetime,
        max_uses,
        &user.user_name,
    )
    .await
    {
        Ok(token) => {
            info!(user_id = %user.user_id, "enrollment token created from the dashboard");
            redirect_to_shown(
                &state,
                "/tokens",
                &session,
                Kind::EnrollmentToken,
                (view::visible(group), token),
            )
        }
        Err(TokenError::Invalid(message)) => {
            view::message_page(StatusCode::BAD_REQUEST, "Not done", &message)
        }
        Err(TokenError::Store(error)) => store_failed(&error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /tokens/{id}/revoke` (admins).
pub(super) async fn revoke_token(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Some(response) = access::check_form_csrf(&user, &csrf) {
        return response;
    }
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    if id.len() > 128 {
        return not_found("enrollment token");
    }
    match state
        .store
        .revoke_enrollment_token(&id, &user.user_name, now_ms())
        .await
    {
        Ok(()) => {
            info!(user_id = %user.user_id, "enrollment token revoked");
            Redirect::to("/tokens").into_response()
        }
        Err(StoreError::NotFound { .. }) => not_found("enrollment token"),
        Err(error) => store_failed(&error),
    }
}

// ---------------------------------------------------------------------------------------- users

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserView>,
    created: Option<(String, String)>,
}

struct UserView {
    id: String,
    name: String,
    role: &'static str,
    created: String,
    disabled: bool,
    is_self: bool,
}

async fn users_page(
    state: &HttpState,
    user: &crate::store::SessionUser,
    status: StatusCode,
    created: Option<(String, String)>,
) -> Response {
    let users = match state.store.list_users().await {
        Ok(users) => users,
        Err(error) => return store_failed(&error),
    };
    let users = users
        .iter()
        .map(|u| UserView {
            id: u.id.to_string(),
            name: view::visible(&u.name),
            role: u.role.as_str(),
            created: view::rfc3339_seconds(u.created_at_ms),
            disabled: u.disabled_at_ms.is_some(),
            is_self: u.id == user.user_id,
        })
        .collect();
    let mut response = view::render(
        status,
        &UsersPage {
            chrome: Chrome::new(user),
            users,
            created,
        },
    );
    // A page showing a new password must not be kept anywhere (no-store is set for all pages).
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /users` (admins); `?shown=<id>` shows the password of the user just added by this
/// session, once.
pub(super) async fn users(
    State(state): State<HttpState>,
    headers: HeaderMap,
    params: Result<Query<ShownParams>, QueryRejection>,
) -> Response {
    let (user, session) = signed_in!(access::page_session(&state, &headers).await);
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    let created = take_shown(&state, params, &session, Kind::UserPassword);
    users_page(&state, &user, StatusCode::OK, created).await
}

#[derive(Debug, Deserialize)]
pub(super) struct AddUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

/// `POST /users`: adds a user with a generated password (admins) and redirects to the page that
/// shows the password once.
pub(super) async fn add_user(
    State(state): State<HttpState>,
    headers: HeaderMap,
    form: Result<Form<AddUserForm>, FormRejection>,
) -> Response {
    let (user, session) = signed_in!(access::page_session(&state, &headers).await);
    let Ok(Form(form)) = form else {
        return view::message_page(
            StatusCode::BAD_REQUEST,
            "Not done",
            "The form was not valid.",
        );
    };
    if let Some(response) = access::check_form_csrf(&user, &form.csrf) {
        return response;
    }
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    let Ok(role) = form.role.parse::<Role>() else {
        return view::message_page(
            StatusCode::BAD_REQUEST,
            "Not done",
            "The role must be admin, responder or viewer.",
        );
    };
    let password = auth::new_password();
    let hash = match tokio::task::spawn_blocking({
        let password = password.clone();
        move || auth::hash_password(&password)
    })
    .await
    {
        Ok(Ok(hash)) => hash,
        _ => {
            warn!("password hashing failed");
            return view::internal_error_page();
        }
    };
    match state
        .store
        .create_user(form.name.trim(), role, &hash, now_ms())
        .await
    {
        Ok(_) => {
            info!(user_id = %user.user_id, role = %role, "user added from the dashboard");
            let created = (view::visible(form.name.trim()), password);
            redirect_to_shown(&state, "/users", &session, Kind::UserPassword, created)
        }
        Err(StoreError::Conflict { .. }) => view::message_page(
            StatusCode::CONFLICT,
            "Not done",
            "A user with this name already exists.",
        ),
        Err(StoreError::Invalid { what }) => {
            view::message_page(StatusCode::BAD_REQUEST, "Not done", what)
        }
        Err(error) => store_failed(&error),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AccessForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    disabled: String,
}

/// `POST /users/{id}/access`: disables (`disabled=1`) or enables a user (admins; not oneself).
pub(super) async fn user_access(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<AccessForm>, FormRejection>,
) -> Response {
    let user = signed_in!(access::page_user(&state, &headers).await);
    let Ok(Form(form)) = form else {
        return view::message_page(
            StatusCode::BAD_REQUEST,
            "Not done",
            "The form was not valid.",
        );
    };
    if let Some(response) = access::check_form_csrf(&user, &form.csrf) {
        return response;
    }
    if user.role < Role::Admin {
        return access::forbidden_page(Role::Admin);
    }
    let Ok(target) = Uuid::try_parse(&id) else {
        return not_found("user");
    };
    if target == user.user_id {
        return view::message_page(
            StatusCode::CONFLICT,
            "Not done",
            "You cannot disable yourself.",
        );
    }
    let disabled = form.disabled == "1";
    match state
        .store
        .set_user_disabled(target, disabled, now_ms())
        .await
    {
        Ok(()) => {
            info!(user_id = %user.user_id, target = %target, disabled, "user access changed");
            Redirect::to("/users").into_response()
        }
        Err(StoreError::NotFound { .. }) => not_found("user"),
        Err(error) => store_failed(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trend_chart_has_one_bar_per_day_scaled_to_the_maximum() {
        let today = 20_000;
        let chart = trend_chart(&[(today, 4), (today - 2, 2), (today - 100, 50)], today);
        assert_eq!(chart.bars.len(), 14);
        assert_eq!(chart.max, 4);
        let last = chart.bars.last().unwrap();
        assert_eq!((last.count, last.height), (4, CHART_HEIGHT));
        assert_eq!(chart.bars[11].height, CHART_HEIGHT / 2);
        assert_eq!(chart.bars[0].height, 0);
        assert_eq!(trend_chart(&[], today).max, 1);
    }

    #[test]
    fn details_show_mcp_servers_and_settings() {
        let details = serde_json::json!({"mcp_server": "<b>x</b>", "setting": "autoApprove", "value": "", "exposed": true});
        assert_eq!(
            detail_text(&details),
            "mcp_server: <b>x</b>; setting: autoApprove; exposed beyond loopback"
        );
        assert_eq!(detail_text(&serde_json::json!([1])), "");
    }
}
