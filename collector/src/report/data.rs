//! The report's figures, from the store's report queries (`store/report.rs`). Everything the
//! report shows is in [`Report`]; the renderers (HTML, PDF, CSV, JSON) only lay it out.
//!
//! Definitions (docs/REPORTS.md says the same):
//! - a host or user *uses* a product in a period when at least one observation of that product
//!   (any signal) by that host (and, for users, attributed to a process of that user) falls in
//!   `[since, until)`; users are counted by name across hosts;
//! - *unsanctioned*: not sanctioned by the policy (`policy_sanctions`, globally or for the host's
//!   group) at generation time; `scope.sanctioned_policy` says how many sanctions applied;
//! - *fleet*: hosts enrolled before the end of the period and not revoked (in the group, if any);
//! - *reporting*: in contact at or after the start of the period; *silent*: no contact in the last
//!   24 hours of the period; *blinded*: the last heartbeat named blind spots (DoH, ECH, capture off).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::pseudonym::Namer;
use super::rules;
use crate::store::{ReportScope, Store, StoreError, WEEK_MS};

/// JSON schema id of [`Report`] (docs/report.schema.json).
pub const SCHEMA: &str = "https://shadowai.invalid/schemas/report-1.json";

/// At most this many alerts are listed in the evidence appendix (the total is always given).
pub const EVIDENCE_LIMIT: u32 = 500;
/// Products shown in the trend chart.
pub const TREND_PRODUCTS: usize = 5;
/// Rows of the top-products table.
pub const TOP_PRODUCTS: usize = 20;
const DAY_MS: i64 = 24 * 3_600_000;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportRequest {
    pub since_ms: i64,
    pub until_ms: i64,
    pub group: Option<String>,
    pub namer: Namer,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    pub generated_at_ms: i64,
    pub generated_at: String,
    pub period: Period,
    pub previous_period: Period,
    pub group: Option<String>,
    pub pseudonymized: bool,
    pub scope: Scope,
    pub summary: Summary,
    pub trends: Trends,
    pub top_products: Vec<ProductRow>,
    pub agentic_risk: AgenticRisk,
    pub sanctioned_vs_unsanctioned: Vec<SanctionRow>,
    pub unmet_demand: Vec<UnmetDemand>,
    pub triage: Triage,
    pub recommendations: Vec<rules::Recommendation>,
    pub integrity: Integrity,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub since_ms: i64,
    pub until_ms: i64,
    pub since: String,
    pub until: String,
    pub days: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scope {
    pub hosts_expected: i64,
    pub hosts_reporting: i64,
    pub hosts_silent: i64,
    pub hosts_blinded: i64,
    pub silent: Vec<HostRef>,
    pub blinded: Vec<BlindHost>,
    pub catalog_versions: Vec<CatalogCount>,
    pub sanctioned_policy: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRef {
    pub host: String,
    pub group: String,
    pub last_contact_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BlindHost {
    pub host: String,
    pub group: String,
    pub kinds: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogCount {
    pub version: String,
    pub hosts: i64,
}

/// A count in this period, the previous one, and the change.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    pub value: i64,
    pub previous: i64,
    pub change: i64,
    /// Change in percent of `previous`; `None` when `previous` is 0.
    pub change_percent: Option<f64>,
}

impl Figure {
    fn new(value: i64, previous: i64) -> Figure {
        Figure {
            value,
            previous,
            change: value - previous,
            change_percent: (previous != 0).then(|| percent(value - previous, previous)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub hosts_with_unsanctioned_ai: Figure,
    pub users_with_unsanctioned_ai: Figure,
    /// Hosts with unsanctioned AI in percent of the fleet.
    pub fleet_share_percent: f64,
    pub previous_fleet_share_percent: f64,
    pub by_category: Vec<CategoryRow>,
    pub by_group: Vec<GroupRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryRow {
    pub category: String,
    pub hosts: Figure,
    pub users: Figure,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    pub hosts: i64,
    pub hosts_with_unsanctioned_ai: Figure,
    pub share_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trends {
    /// Start of each week of the period, Unix ms (the last week may be partial).
    pub week_starts_ms: Vec<i64>,
    pub by_category: Vec<Series>,
    pub top_products: Vec<Series>,
}

/// Distinct hosts per week.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub hosts: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductRow {
    pub product: String,
    pub vendor: String,
    pub category: String,
    pub sanctioned: bool,
    pub hosts: i64,
    pub users: i64,
    pub events: i64,
    /// Hosts per plan ("personal", "corporate", ..., "unknown" when the evidence did not say).
    pub plans: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgenticRisk {
    /// Agents running with human approval or the sandbox turned off (or similar flags).
    pub approval_or_sandbox_off: Vec<RiskEntry>,
    pub approval_or_sandbox_off_hosts: i64,
    /// Infrastructure CLIs (kubectl, terraform, aws, ...) started by AI agents.
    pub infra_cli: Vec<RiskEntry>,
    pub infra_cli_hosts: i64,
    /// MCP servers configured on hosts, remote ones first.
    pub mcp_servers: Vec<McpServer>,
    pub mcp_server_hosts: i64,
    /// Local model servers listening beyond loopback.
    pub exposed_model_servers: Vec<RiskEntry>,
    pub exposed_model_server_hosts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskEntry {
    pub product: String,
    pub flag: String,
    pub hosts: i64,
    pub users: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct McpServer {
    pub server: String,
    pub transport: String,
    pub target: String,
    pub remote: bool,
    pub hosts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SanctionRow {
    pub category: String,
    pub sanctioned_hosts: i64,
    pub unsanctioned_hosts: i64,
    pub sanctioned_products: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnmetDemand {
    pub category: String,
    pub unsanctioned_hosts: i64,
    pub share_percent: f64,
    pub top_product: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Triage {
    /// Alerts first seen in the period.
    pub alerts: i64,
    pub by_status: BTreeMap<String, i64>,
    pub resolved: i64,
    /// Of resolved alerts; `None` until triage records resolutions (issue 8).
    pub true_positive_rate_percent: Option<f64>,
    pub false_positive_rate_percent: Option<f64>,
    pub median_time_to_acknowledge_ms: Option<i64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    /// Head of the evidence hash chain when the report was made. `None` on a collector without the
    /// evidence chain (issue 7); then `note` says so.
    pub chain_head: Option<String>,
    pub verify_command: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub alerts_total: i64,
    pub alerts: Vec<EvidenceEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceEntry {
    pub alert_id: String,
    pub host: String,
    pub product: String,
    pub reason: String,
    pub first_observation_id: String,
    pub last_observation_id: String,
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn period(since_ms: i64, until_ms: i64) -> Period {
    Period {
        since_ms,
        until_ms,
        since: rfc3339(since_ms),
        until: rfc3339(until_ms),
        days: ((until_ms - since_ms) as f64 / DAY_MS as f64 * 10.0).round() / 10.0,
    }
}

/// Distinct hosts and users of one slice of usage.
#[derive(Default)]
struct Tally<'a> {
    hosts: HashSet<&'a str>,
    users: HashSet<&'a str>,
}

impl<'a> Tally<'a> {
    fn add(&mut self, host: &'a str, user: Option<&'a str>) {
        self.hosts.insert(host);
        if let Some(user) = user {
            self.users.insert(user);
        }
    }
    fn hosts(&self) -> i64 {
        self.hosts.len() as i64
    }
    fn users(&self) -> i64 {
        self.users.len() as i64
    }
}

/// Builds the report. `now_ms` is the generation time.
pub async fn build(
    store: &Store,
    request: &ReportRequest,
    now_ms: i64,
) -> Result<Report, StoreError> {
    let namer = &request.namer;
    let scope = ReportScope {
        since_ms: request.since_ms,
        until_ms: request.until_ms,
        group: request.group.clone(),
    };
    let length = request.until_ms - request.since_ms;
    let previous = ReportScope {
        since_ms: request.since_ms - length,
        until_ms: request.since_ms,
        group: request.group.clone(),
    };
    let agents = store.report_agents(&scope).await?;
    let usage = store.report_usage(&scope).await?;
    let previous_usage = store.report_usage(&previous).await?;
    let risks = store.report_risks(&scope).await?;
    let statuses = store.report_alert_statuses(&scope).await?;
    let outcomes = store.report_triage(&scope).await?;
    let policy = store.policy_snapshot(now_ms).await?;
    // A root committed now pins everything stored so far: the head the report cites.
    let chain_head = store
        .evidence_head(now_ms, crate::evidence::MAX_ROOT_ENTRIES)
        .await?;
    let (evidence_rows, evidence_total) = store.report_evidence(&scope, EVIDENCE_LIMIT).await?;

    // ------------------------------------------------------------ scope and confidence
    let fleet = agents.len() as i64;
    let silent_before = request.until_ms.min(now_ms) - DAY_MS;
    let mut silent = Vec::new();
    let mut blinded = Vec::new();
    let mut catalogs: BTreeMap<String, i64> = BTreeMap::new();
    let mut reporting = 0;
    let mut hosts_by_group: BTreeMap<&str, i64> = BTreeMap::new();
    for agent in &agents {
        *hosts_by_group.entry(&agent.group_name).or_default() += 1;
        if agent.last_contact_ms >= request.since_ms {
            reporting += 1;
        }
        if agent.last_contact_ms < silent_before {
            silent.push(HostRef {
                host: namer.host(&agent.hostname),
                group: agent.group_name.clone(),
                last_contact_ms: agent.last_contact_ms,
            });
        }
        let kinds = blind_spots(&agent.health);
        if !kinds.is_empty() {
            blinded.push(BlindHost {
                host: namer.host(&agent.hostname),
                group: agent.group_name.clone(),
                kinds,
            });
        }
        let version = if agent.catalog_version.is_empty() {
            "unknown".to_owned()
        } else {
            agent.catalog_version.clone()
        };
        *catalogs.entry(version).or_default() += 1;
    }
    silent.sort_by(|a, b| {
        a.last_contact_ms
            .cmp(&b.last_contact_ms)
            .then(a.host.cmp(&b.host))
    });
    blinded.sort_by(|a, b| a.host.cmp(&b.host));

    // ------------------------------------------------------------ usage
    let sanctioned = |product: &str, group: &str| policy.is_product_sanctioned(product, group);
    let mut all = Tally::default();
    let mut all_previous = Tally::default();
    let mut by_category: BTreeMap<&str, (Tally, Tally)> = BTreeMap::new();
    let mut by_group: BTreeMap<&str, (Tally, Tally)> = BTreeMap::new();
    let mut by_product: BTreeMap<&str, (Tally, i64, &str, &str)> = BTreeMap::new();
    let mut plans: BTreeMap<&str, BTreeMap<&str, HashSet<&str>>> = BTreeMap::new();
    let weeks = usize::try_from((length + WEEK_MS - 1) / WEEK_MS)
        .unwrap_or(0)
        .max(1);
    let mut weekly_category: BTreeMap<&str, Vec<HashSet<&str>>> = BTreeMap::new();
    let mut weekly_product: BTreeMap<&str, Vec<HashSet<&str>>> = BTreeMap::new();
    let mut sanctioned_hosts: BTreeMap<&str, (HashSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for row in &usage {
        let host = row.agent_id.as_str();
        let user = row.user_name.as_deref();
        if sanctioned(&row.product, &row.group_name) {
            let entry = sanctioned_hosts.entry(&row.category).or_default();
            entry.0.insert(host);
            entry.1.insert(&row.product);
            continue;
        }
        all.add(host, user);
        by_category
            .entry(&row.category)
            .or_default()
            .0
            .add(host, user);
        by_group
            .entry(&row.group_name)
            .or_default()
            .0
            .add(host, user);
        let product = by_product
            .entry(&row.product)
            .or_insert_with(|| (Tally::default(), 0, &row.vendor, &row.category));
        product.0.add(host, user);
        product.1 += row.events;
        plans
            .entry(&row.product)
            .or_default()
            .entry(
                row.plan
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("unknown"),
            )
            .or_default()
            .insert(host);
        if let Ok(week) = usize::try_from(row.week)
            && week < weeks
        {
            weekly_category
                .entry(&row.category)
                .or_insert_with(|| vec![HashSet::new(); weeks])[week]
                .insert(host);
            weekly_product
                .entry(&row.product)
                .or_insert_with(|| vec![HashSet::new(); weeks])[week]
                .insert(host);
        }
    }
    for row in &previous_usage {
        if sanctioned(&row.product, &row.group_name) {
            continue;
        }
        let host = row.agent_id.as_str();
        let user = row.user_name.as_deref();
        all_previous.add(host, user);
        by_category
            .entry(&row.category)
            .or_default()
            .1
            .add(host, user);
        by_group
            .entry(&row.group_name)
            .or_default()
            .1
            .add(host, user);
    }

    let mut category_rows: Vec<CategoryRow> = by_category
        .iter()
        .map(|(category, (now, before))| CategoryRow {
            category: (*category).to_owned(),
            hosts: Figure::new(now.hosts(), before.hosts()),
            users: Figure::new(now.users(), before.users()),
        })
        .collect();
    category_rows.sort_by(|a, b| {
        b.hosts
            .value
            .cmp(&a.hosts.value)
            .then(a.category.cmp(&b.category))
    });
    let group_rows: Vec<GroupRow> = hosts_by_group
        .iter()
        .map(|(group, hosts)| {
            let (now, before) = by_group
                .get(group)
                .map_or((0, 0), |(n, b)| (n.hosts(), b.hosts()));
            GroupRow {
                group: (*group).to_owned(),
                hosts: *hosts,
                hosts_with_unsanctioned_ai: Figure::new(now, before),
                share_percent: percent(now, *hosts),
            }
        })
        .collect();

    let mut product_rows: Vec<ProductRow> = by_product
        .iter()
        .map(|(product, (tally, events, vendor, category))| ProductRow {
            product: (*product).to_owned(),
            vendor: (*vendor).to_owned(),
            category: (*category).to_owned(),
            sanctioned: false,
            hosts: tally.hosts(),
            users: tally.users(),
            events: *events,
            plans: plans
                .get(product)
                .map(|p| {
                    p.iter()
                        .map(|(plan, hosts)| ((*plan).to_owned(), hosts.len() as i64))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    product_rows.sort_by(|a, b| {
        b.hosts
            .cmp(&a.hosts)
            .then(b.events.cmp(&a.events))
            .then(a.product.cmp(&b.product))
    });

    let series = |name: &str, weeks: &[HashSet<&str>]| Series {
        name: name.to_owned(),
        hosts: weeks.iter().map(|w| w.len() as i64).collect(),
    };
    let trends = Trends {
        week_starts_ms: (0..weeks as i64)
            .map(|w| request.since_ms + w * WEEK_MS)
            .collect(),
        by_category: category_rows
            .iter()
            .filter_map(|c| {
                weekly_category
                    .get(c.category.as_str())
                    .map(|w| series(&c.category, w))
            })
            .collect(),
        top_products: product_rows
            .iter()
            .take(TREND_PRODUCTS)
            .filter_map(|p| {
                weekly_product
                    .get(p.product.as_str())
                    .map(|w| series(&p.product, w))
            })
            .collect(),
    };
    product_rows.truncate(TOP_PRODUCTS);

    // ------------------------------------------------------------ agentic risk
    let agentic_risk = agentic_risk(&risks, &agents, namer);

    // ------------------------------------------------------------ sanctioned vs unsanctioned
    let sanctioned_rows: Vec<SanctionRow> = category_rows
        .iter()
        .map(|c| {
            let (hosts, products) = sanctioned_hosts
                .get(c.category.as_str())
                .map(|(h, p)| (h.len() as i64, p.iter().map(|p| (*p).to_owned()).collect()))
                .unwrap_or((0, Vec::new()));
            SanctionRow {
                category: c.category.clone(),
                sanctioned_hosts: hosts,
                unsanctioned_hosts: c.hosts.value,
                sanctioned_products: products,
            }
        })
        .collect();
    let unmet_demand: Vec<UnmetDemand> = sanctioned_rows
        .iter()
        .filter(|s| s.sanctioned_products.is_empty())
        .filter(|s| rules::is_heavy_use(s.unsanctioned_hosts, fleet))
        .map(|s| UnmetDemand {
            category: s.category.clone(),
            unsanctioned_hosts: s.unsanctioned_hosts,
            share_percent: percent(s.unsanctioned_hosts, fleet),
            top_product: product_rows
                .iter()
                .find(|p| p.category == s.category)
                .map(|p| p.product.clone())
                .unwrap_or_default(),
        })
        .collect();

    // ------------------------------------------------------------ triage
    let by_status: BTreeMap<String, i64> = statuses
        .iter()
        .map(|s| (s.status.clone(), s.alerts))
        .collect();
    let alerts: i64 = by_status.values().sum();
    let with_resolution = outcomes.iter().filter(|o| o.resolution.is_some()).count() as i64;
    let resolved_as = |kind: &str| {
        outcomes
            .iter()
            .filter(|o| o.resolution.as_deref() == Some(kind))
            .count() as i64
    };
    let mut delays: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| o.acknowledge_after_ms)
        .map(|ms| ms.max(0))
        .collect();
    delays.sort_unstable();
    let median_time_to_acknowledge_ms = match delays.len() {
        0 => None,
        n if n % 2 == 1 => Some(delays[n / 2]),
        n => Some((delays[n / 2 - 1] + delays[n / 2]) / 2),
    };
    let triage = Triage {
        alerts,
        resolved: by_status.get("resolved").copied().unwrap_or(0),
        by_status,
        true_positive_rate_percent: (with_resolution > 0)
            .then(|| percent(resolved_as("true_positive"), with_resolution)),
        false_positive_rate_percent: (with_resolution > 0)
            .then(|| percent(resolved_as("false_positive"), with_resolution)),
        median_time_to_acknowledge_ms,
        note: if with_resolution == 0 {
            Some(
                "no alert of the period has been resolved yet: no true/false positive rates"
                    .to_owned(),
            )
        } else {
            None
        },
    };

    let hosts_with = Figure::new(all.hosts(), all_previous.hosts());
    let summary = Summary {
        hosts_with_unsanctioned_ai: hosts_with,
        users_with_unsanctioned_ai: Figure::new(all.users(), all_previous.users()),
        fleet_share_percent: percent(hosts_with.value, fleet),
        previous_fleet_share_percent: percent(hosts_with.previous, fleet),
        by_category: category_rows,
        by_group: group_rows,
    };
    let scope = Scope {
        hosts_expected: fleet,
        hosts_reporting: reporting,
        hosts_silent: silent.len() as i64,
        hosts_blinded: blinded.len() as i64,
        silent,
        blinded,
        catalog_versions: catalogs
            .into_iter()
            .map(|(version, hosts)| CatalogCount { version, hosts })
            .collect(),
        sanctioned_policy: match policy.sanctions.len() {
            0 => "none configured: every detected AI product counts as unsanctioned".to_owned(),
            n => format!(
                "{n} sanction{} at generation time (globally or per group); use of those products \
                 counts as sanctioned",
                if n == 1 { "" } else { "s" }
            ),
        },
    };
    let hostnames: HashMap<&str, &str> = agents
        .iter()
        .map(|a| (a.id.as_str(), a.hostname.as_str()))
        .collect();
    let evidence = Evidence {
        alerts_total: evidence_total,
        alerts: evidence_rows
            .iter()
            .map(|row| EvidenceEntry {
                alert_id: row.alert_id.clone(),
                host: namer.host(
                    hostnames
                        .get(row.agent_id.as_str())
                        .copied()
                        .unwrap_or(&row.hostname),
                ),
                product: row.product.clone(),
                reason: row.reason.clone(),
                first_observation_id: row.first_observation_id.clone(),
                last_observation_id: row.last_observation_id.clone(),
            })
            .collect(),
    };
    let integrity = Integrity {
        verify_command: match &chain_head {
            Some(head) => format!("shadowai-collector verify --expect-root {head}"),
            None => "shadowai-collector verify".to_owned(),
        },
        note: match &chain_head {
            Some(_) => "run the verify command on the collector's database: it recomputes every hash \
                        chain and fails unless the root chain_head is still there, unchanged, under \
                        the newest root"
                .to_owned(),
            None => "nothing has been stored in the evidence hash chain yet".to_owned(),
        },
        chain_head,
    };
    let mut report = Report {
        schema: SCHEMA,
        generated_at_ms: now_ms,
        generated_at: rfc3339(now_ms),
        period: period(request.since_ms, request.until_ms),
        previous_period: period(previous.since_ms, previous.until_ms),
        group: request.group.clone(),
        pseudonymized: namer.is_pseudonymized(),
        scope,
        summary,
        trends,
        top_products: product_rows,
        agentic_risk,
        sanctioned_vs_unsanctioned: sanctioned_rows,
        unmet_demand,
        triage,
        recommendations: Vec::new(),
        integrity,
        evidence,
    };
    report.recommendations = rules::recommend(&report);
    Ok(report)
}

/// The kinds of blind spot a heartbeat's health names.
fn blind_spots(health: &str) -> Vec<String> {
    let Ok(health) = serde_json::from_str::<Value>(health) else {
        return Vec::new();
    };
    let mut kinds: Vec<String> = health
        .get("blind_spots")
        .and_then(Value::as_array)
        .map(|spots| {
            spots
                .iter()
                .filter_map(|s| s.get("kind").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Risk flags that take the human out of an agent's loop.
pub const APPROVAL_FLAGS: [&str; 5] = [
    "approval_bypass",
    "sandbox_off",
    "unattended",
    "broad_allowlist",
    "mcp_auto_trust",
];
/// Risk flag of an infrastructure CLI started by an AI agent.
pub const INFRA_CLI_FLAG: &str = "agent_infra_cli";

fn agentic_risk(
    risks: &[crate::store::RiskRow],
    agents: &[crate::store::ReportAgent],
    namer: &Namer,
) -> AgenticRisk {
    let mut approval: BTreeMap<(&str, String), Tally> = BTreeMap::new();
    let mut approval_hosts: HashSet<&str> = HashSet::new();
    let mut infra: BTreeMap<(&str, String), Tally> = BTreeMap::new();
    let mut infra_hosts: HashSet<&str> = HashSet::new();
    let mut mcp: BTreeMap<(String, String, String, bool), HashSet<&str>> = BTreeMap::new();
    let mut mcp_hosts: HashSet<&str> = HashSet::new();
    let mut exposed: BTreeMap<(&str, String), Tally> = BTreeMap::new();
    let mut exposed_hosts: HashSet<&str> = HashSet::new();
    // Real names that must not leak through free text (MCP targets are paths and URLs).
    let private: Vec<&str> = if namer.is_pseudonymized() {
        agents
            .iter()
            .map(|a| a.hostname.as_str())
            .chain(risks.iter().filter_map(|r| r.user_name.as_deref()))
            .filter(|n| n.len() >= 2)
            .collect()
    } else {
        Vec::new()
    };
    for row in risks {
        let host = row.agent_id.as_str();
        let user = row.user_name.as_deref();
        let flags: Vec<String> = serde_json::from_str(&row.risk).unwrap_or_default();
        for flag in &flags {
            if APPROVAL_FLAGS.contains(&flag.as_str()) {
                approval
                    .entry((&row.product, flag.clone()))
                    .or_default()
                    .add(host, user);
                approval_hosts.insert(host);
            } else if flag == INFRA_CLI_FLAG {
                // The rule names the CLI: agent/lineage#agent_infra_cli/<cli>; the name is the tool.
                infra
                    .entry((&row.product, row.name.clone()))
                    .or_default()
                    .add(host, user);
                infra_hosts.insert(host);
            }
        }
        let details: Value = serde_json::from_str(&row.details).unwrap_or(Value::Null);
        let text = |key: &str| {
            details
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        if row.signal == "config" {
            let server = text("mcp_server");
            if !server.is_empty() {
                let transport = text("mcp_transport");
                let mut target = text("mcp_target");
                if private.iter().any(|name| target.contains(name)) {
                    target = "[redacted: names a user or host]".to_owned();
                }
                let remote = matches!(
                    transport.as_str(),
                    "http" | "sse" | "streamable-http" | "websocket"
                ) || target.starts_with("http://")
                    || target.starts_with("https://");
                mcp.entry((server, transport, target, remote))
                    .or_default()
                    .insert(host);
                mcp_hosts.insert(host);
            }
        }
        if row.signal == "listener" && details.get("exposed").and_then(Value::as_bool) == Some(true)
        {
            let port = details.get("port").and_then(Value::as_u64).unwrap_or(0);
            exposed
                .entry((&row.product, format!("port {port}")))
                .or_default()
                .add(host, user);
            exposed_hosts.insert(host);
        }
    }
    let entries = |map: BTreeMap<(&str, String), Tally>| {
        let mut rows: Vec<RiskEntry> = map
            .into_iter()
            .map(|((product, flag), tally)| RiskEntry {
                product: product.to_owned(),
                flag,
                hosts: tally.hosts(),
                users: tally.users(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.hosts
                .cmp(&a.hosts)
                .then(a.product.cmp(&b.product))
                .then(a.flag.cmp(&b.flag))
        });
        rows
    };
    let mut mcp_servers: Vec<McpServer> = mcp
        .into_iter()
        .map(|((server, transport, target, remote), hosts)| McpServer {
            server,
            transport,
            target,
            remote,
            hosts: hosts.len() as i64,
        })
        .collect();
    // Remote first, then by hosts.
    mcp_servers.sort_by(|a, b| {
        b.remote
            .cmp(&a.remote)
            .then(b.hosts.cmp(&a.hosts))
            .then(a.server.cmp(&b.server))
    });
    AgenticRisk {
        approval_or_sandbox_off: entries(approval),
        approval_or_sandbox_off_hosts: approval_hosts.len() as i64,
        infra_cli: entries(infra),
        infra_cli_hosts: infra_hosts.len() as i64,
        mcp_servers,
        mcp_server_hosts: mcp_hosts.len() as i64,
        exposed_model_servers: entries(exposed),
        exposed_model_server_hosts: exposed_hosts.len() as i64,
    }
}

/// The report as JSON text (pretty, stable key order).
pub fn to_json(report: &Report) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(report).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    bytes
}

/// A figure's change as text, e.g. "+12 (+25.0%)".
pub fn change_text(figure: &Figure) -> String {
    match figure.change_percent {
        Some(percent) => format!("{:+} ({:+.1}%)", figure.change, percent),
        None => format!("{:+}", figure.change),
    }
}
