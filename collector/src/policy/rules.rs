//! The alert policy: which alerts an observation (or an agent's health, or its silence) raises,
//! with which severity, and why. Pure and deterministic: inputs are the observation, what the store
//! knows about its finding, the policy snapshot and the time; outputs are alert actions. No IO, no
//! clock, no database. The table of reasons is documented in `docs/ALERTS.md`; keep both in step.
//!
//! Severity is `base(reason, category, risk flags)`, lowered one step when the product is
//! sanctioned for the host's group (for the reasons that say so), then replaced by the most specific
//! matching severity override of the policy.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use crate::store::{NewObservation, Signal, UnknownName};

/// How urgent an alert is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The stable name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// This severity moved `steps` up (positive) or down (negative), within `Info..=Critical`.
    pub fn shifted(self, steps: i32) -> Severity {
        let index = Severity::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or_default() as i32;
        let shifted = (index + steps).clamp(0, Severity::ALL.len() as i32 - 1);
        Severity::ALL[shifted as usize]
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or(UnknownName { kind: "severity" })
    }
}

/// Why an alert exists. The ids are stable: they are stored, filtered on and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    NewProduct,
    RiskyAgentSetting,
    AgentInfraCli,
    AgentShell,
    NewMcpServer,
    ExposedModelServer,
    ConsumerAiUse,
    PersonalPlan,
    SensorSilent,
    SensorBlinded,
}

impl Reason {
    /// Every reason, in documentation order.
    pub const ALL: [Reason; 10] = [
        Reason::NewProduct,
        Reason::RiskyAgentSetting,
        Reason::AgentInfraCli,
        Reason::AgentShell,
        Reason::NewMcpServer,
        Reason::ExposedModelServer,
        Reason::ConsumerAiUse,
        Reason::PersonalPlan,
        Reason::SensorSilent,
        Reason::SensorBlinded,
    ];

    /// The stable snake_case id.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewProduct => "new_product",
            Reason::RiskyAgentSetting => "risky_agent_setting",
            Reason::AgentInfraCli => "agent_infra_cli",
            Reason::AgentShell => "agent_shell",
            Reason::NewMcpServer => "new_mcp_server",
            Reason::ExposedModelServer => "exposed_model_server",
            Reason::ConsumerAiUse => "consumer_ai_use",
            Reason::PersonalPlan => "personal_plan",
            Reason::SensorSilent => "sensor_silent",
            Reason::SensorBlinded => "sensor_blinded",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or(UnknownName { kind: "reason" })
    }
}

/// The product id sensor alerts (silent, blinded) are filed under.
pub const SENSOR_PRODUCT: &str = "shadowai.agent";

/// Risk flags that make an agent's setting risky (`risky_agent_setting`).
pub const RISKY_SETTING_FLAGS: [&str; 7] = [
    "approval_bypass",
    "sandbox_off",
    "computer_use",
    "broad_allowlist",
    "unattended",
    "auto_edit",
    "mcp_auto_trust",
];

/// Of those, the ones that remove the human from the loop outright (base severity high).
const HUMAN_OUT_OF_LOOP_FLAGS: [&str; 3] = ["approval_bypass", "sandbox_off", "computer_use"];

/// Plans that are a person's own account rather than a company's.
pub const PERSONAL_PLANS: [&str; 6] = ["individual", "free", "personal", "plus", "pro", "premium"];

/// A product sanctioned for one group (or every group when `group` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sanction {
    pub id: Uuid,
    pub product: String,
    /// The product's category (from the catalog), so that alternatives can be found.
    pub category: String,
    /// `""` for every group.
    pub group: String,
    pub note: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// "This tenant of this product is ours" (an Azure OpenAI resource, a Copilot organisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRule {
    pub id: Uuid,
    pub product: String,
    pub tenant: String,
    /// `""` for every group.
    pub group: String,
    pub note: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A severity that replaces the computed one for matching alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeverityOverride {
    pub id: Uuid,
    /// Reason id, `""` for any.
    pub reason: String,
    /// Product id, `""` for any.
    pub product: String,
    /// Group, `""` for any.
    pub group: String,
    pub severity: Severity,
    pub note: String,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// While active, matching alerts are still recorded and counted but carry the suppression's id
/// and are left out of the open queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub id: Uuid,
    /// Reason id, `""` for any.
    pub reason: String,
    /// Product id, `""` for any.
    pub product: String,
    /// Group, `""` for any.
    pub group: String,
    /// Agent (host) id, `""` for any.
    pub agent_id: String,
    /// Who answers for it.
    pub owner: String,
    pub note: String,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    /// Set when lifted before its expiry.
    pub lifted_at_ms: Option<i64>,
}

impl Suppression {
    /// Whether it is in force at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.lifted_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

/// Numeric policy settings, with their defaults and bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// A sensor not heard from for this long is silent (ms).
    pub silent_after_ms: i64,
    /// A finding of an unsanctioned product with a sanctioned alternative raises
    /// `consumer_ai_use` when its count reaches this.
    pub consumer_use_threshold: i64,
}

/// A named setting: (name, default, smallest, largest).
pub struct SettingSpec {
    pub name: &'static str,
    pub default: i64,
    pub min: i64,
    pub max: i64,
    pub help: &'static str,
}

/// Every setting the policy knows.
pub const SETTING_SPECS: [SettingSpec; 2] = [
    SettingSpec {
        name: "silent_after_ms",
        default: 24 * 3_600_000,
        min: 5 * 60_000,
        max: 90 * 24 * 3_600_000,
        help: "a sensor not heard from for this long raises sensor_silent",
    },
    SettingSpec {
        name: "consumer_use_threshold",
        default: 20,
        min: 1,
        max: 1_000_000,
        help: "observations of one finding that make consumer_ai_use fire",
    },
];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            silent_after_ms: SETTING_SPECS[0].default,
            consumer_use_threshold: SETTING_SPECS[1].default,
        }
    }
}

impl Settings {
    /// Applies a stored `(name, value)`; unknown names and out-of-range values are ignored (a
    /// newer collector may know more settings).
    pub fn apply(&mut self, name: &str, value: i64) {
        let Some(spec) = SETTING_SPECS.iter().find(|s| s.name == name) else {
            return;
        };
        if !(spec.min..=spec.max).contains(&value) {
            return;
        }
        match name {
            "silent_after_ms" => self.silent_after_ms = value,
            "consumer_use_threshold" => self.consumer_use_threshold = value,
            _ => {}
        }
    }
}

/// The whole policy at one moment, as the rules read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PolicySnapshot {
    pub sanctions: Vec<Sanction>,
    pub tenants: Vec<TenantRule>,
    pub overrides: Vec<SeverityOverride>,
    /// Suppressions not lifted (expired ones included; `is_active` decides).
    pub suppressions: Vec<Suppression>,
    pub settings: Settings,
}

/// Where an observation stands with respect to the tenant rules of its product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// No tenant rule for this product and group.
    NoRules,
    /// The observation names one of our tenants.
    Ours,
    /// It names another tenant.
    Foreign,
    /// No tenant, but a personal plan.
    Personal,
    /// Neither a tenant nor a plan that tells.
    Unknown,
}

fn applies_to_group(rule_group: &str, group: &str) -> bool {
    rule_group.is_empty() || rule_group == group
}

impl PolicySnapshot {
    /// Whether `product` is sanctioned for `group` (globally or for that group).
    pub fn is_product_sanctioned(&self, product: &str, group: &str) -> bool {
        self.sanctions
            .iter()
            .any(|s| s.product == product && applies_to_group(&s.group, group))
    }

    /// How the tenant or plan an observation reveals relates to the product's tenant rules.
    pub fn tenant_status(
        &self,
        product: &str,
        group: &str,
        tenant: Option<&str>,
        plan: Option<&str>,
    ) -> TenantStatus {
        let mut rules = self
            .tenants
            .iter()
            .filter(|t| t.product == product && applies_to_group(&t.group, group))
            .peekable();
        if rules.peek().is_none() {
            return TenantStatus::NoRules;
        }
        if let Some(tenant) = tenant {
            let tenant = tenant.to_ascii_lowercase();
            return if rules.any(|t| t.tenant.eq_ignore_ascii_case(&tenant)) {
                TenantStatus::Ours
            } else {
                TenantStatus::Foreign
            };
        }
        match plan {
            Some(plan) if is_personal_plan(plan) => TenantStatus::Personal,
            _ => TenantStatus::Unknown,
        }
    }

    /// Sanctioned products of `category` for `group` other than `product`, sorted, deduplicated.
    pub fn sanctioned_alternatives(&self, category: &str, group: &str, product: &str) -> Vec<&str> {
        let found: BTreeSet<&str> = self
            .sanctions
            .iter()
            .filter(|s| {
                s.category == category && s.product != product && applies_to_group(&s.group, group)
            })
            .map(|s| s.product.as_str())
            .collect();
        found.into_iter().collect()
    }

    /// The most specific override for (reason, product, group): more fields named wins; among
    /// equals, the newest.
    pub fn severity_override(
        &self,
        reason: Reason,
        product: &str,
        group: &str,
    ) -> Option<&SeverityOverride> {
        self.overrides
            .iter()
            .filter(|o| {
                (o.reason.is_empty() || o.reason == reason.as_str())
                    && (o.product.is_empty() || o.product == product)
                    && applies_to_group(&o.group, group)
            })
            .max_by_key(|o| {
                let named = [&o.reason, &o.product, &o.group]
                    .iter()
                    .filter(|f| !f.is_empty())
                    .count();
                (named, o.created_at_ms, o.id)
            })
    }

    /// The active suppression covering (reason, product, group, agent) at `now_ms`, if any (the
    /// one that lasts longest, so that the alert stays suppressed as long as any covers it).
    pub fn suppression(
        &self,
        reason: Reason,
        product: &str,
        group: &str,
        agent_id: &str,
        now_ms: i64,
    ) -> Option<&Suppression> {
        self.suppressions
            .iter()
            .filter(|s| {
                s.is_active(now_ms)
                    && (s.reason.is_empty() || s.reason == reason.as_str())
                    && (s.product.is_empty() || s.product == product)
                    && applies_to_group(&s.group, group)
                    && (s.agent_id.is_empty() || s.agent_id == agent_id)
            })
            .max_by_key(|s| (s.expires_at_ms, s.id))
    }

    /// The final severity: the computed one, unless an override says otherwise.
    fn severity(&self, reason: Reason, product: &str, group: &str, computed: Severity) -> Severity {
        self.severity_override(reason, product, group)
            .map_or(computed, |o| o.severity)
    }
}

/// Whether a plan name is a personal account's.
pub fn is_personal_plan(plan: &str) -> bool {
    PERSONAL_PLANS.iter().any(|p| plan.eq_ignore_ascii_case(p))
}

/// Whether an alert action opens an alert or only adds to an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Something new: open an alert, or add to the open one.
    Raise,
    /// More of something already known: add to the open alert if there is one, else nothing.
    Bump,
}

/// One alert to raise or bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAction {
    pub reason: Reason,
    pub firing: Firing,
    pub severity: Severity,
    pub title: String,
    /// Why, naming the catalog rule and the numbers.
    pub explanation: String,
}

/// What the store knows about the finding an observation belongs to, just before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingState {
    /// The finding did not exist before this observation.
    pub is_new: bool,
    /// The finding's count before this observation (0 when new).
    pub count_before: i64,
    /// Its count including this observation.
    pub count_after: i64,
    /// Risk flags of this observation the finding did not have yet.
    pub new_risk: Vec<String>,
}

/// The alerts one stored observation raises or bumps.
pub fn evaluate(
    observation: &NewObservation,
    group: &str,
    finding: &FindingState,
    policy: &PolicySnapshot,
) -> Vec<AlertAction> {
    let mut actions = Vec::new();
    let o = observation;
    let product = o.product.as_str();
    let tenant_status =
        policy.tenant_status(product, group, o.tenant.as_deref(), o.plan.as_deref());
    let is_product_sanctioned = policy.is_product_sanctioned(product, group);
    let is_sanctioned = tenant_status == TenantStatus::Ours
        || (is_product_sanctioned
            && !matches!(
                tenant_status,
                TenantStatus::Foreign | TenantStatus::Personal
            ));
    let sanction_step = if is_sanctioned { -1 } else { 0 };
    let has_risk = |flag: &str| o.risk.iter().any(|r| r == flag);
    let is_new_risk = |flag: &str| finding.new_risk.iter().any(|r| r == flag);
    let novelty = |is_new: bool| if is_new { Firing::Raise } else { Firing::Bump };
    let who = match o.process.as_ref().map(|p| p.user.as_str()) {
        Some(user) if !user.is_empty() => format!("user {user}"),
        _ => "no attributed user".to_owned(),
    };
    let seen = format!(
        "{} of {} ({}, {}) by {who}; catalog rule {}",
        o.signal.as_str(),
        product,
        o.vendor,
        o.category,
        o.rule
    );
    let mut push =
        |reason: Reason, firing: Firing, computed: Severity, title: String, why: String| {
            let severity = policy.severity(reason, product, group, computed);
            let mut explanation = why;
            if severity != computed {
                explanation.push_str(&format!(
                    " Severity {severity} set by a policy override (computed {computed})."
                ));
            } else {
                explanation.push_str(&format!(" Severity {severity}."));
            }
            actions.push(AlertAction {
                reason,
                firing,
                severity,
                title,
                explanation,
            });
        };

    // new_product: a product not sanctioned for this group appears on the host.
    if !is_sanctioned {
        let base = match o.category.as_str() {
            "chat_app" | "productivity_ai" | "media_generation" | "browser_ai" => Severity::Low,
            _ => Severity::Medium,
        };
        let step = i32::from(!o.risk.is_empty());
        let computed = base.shifted(step);
        let mut why = format!(
            "{} not sanctioned for group {group:?}: {seen}.",
            if finding.is_new {
                "New finding,"
            } else {
                "Seen again,"
            }
        );
        if step > 0 {
            why.push_str(&format!(
                " Raised one step for risk flags {}.",
                o.risk.join(", ")
            ));
        }
        push(
            Reason::NewProduct,
            novelty(finding.is_new),
            computed,
            format!("New AI product on host: {} {}", o.vendor, product),
            why,
        );
    }

    // risky_agent_setting: approvals, sandbox or confirmation switched off.
    let risky: Vec<&str> = RISKY_SETTING_FLAGS
        .iter()
        .copied()
        .filter(|f| has_risk(f))
        .collect();
    if !risky.is_empty() {
        let out_of_loop = HUMAN_OUT_OF_LOOP_FLAGS
            .iter()
            .filter(|f| has_risk(f))
            .count();
        let base = if out_of_loop > 0 {
            Severity::High
        } else {
            Severity::Medium
        };
        let computed = base.shifted(i32::from(out_of_loop > 1) + sanction_step);
        let is_new = finding.is_new || risky.iter().any(|f| is_new_risk(f));
        push(
            Reason::RiskyAgentSetting,
            novelty(is_new),
            computed,
            format!("Risky agent setting: {} ({})", product, risky.join(", ")),
            format!(
                "Risk flags {} on {seen}{}.",
                risky.join(", "),
                if is_sanctioned {
                    "; the product is sanctioned (one step lower)"
                } else {
                    ""
                }
            ),
        );
    }

    // agent_infra_cli / agent_shell: each run is an event of its own.
    for (flag, reason, base, what) in [
        (
            "agent_infra_cli",
            Reason::AgentInfraCli,
            Severity::High,
            "an infrastructure or data CLI",
        ),
        (
            "agent_shell",
            Reason::AgentShell,
            Severity::Medium,
            "a shell",
        ),
    ] {
        if has_risk(flag) {
            let tool = o
                .process
                .as_ref()
                .map_or(o.name.as_str(), |p| p.name.as_str());
            push(
                reason,
                Firing::Raise,
                base.shifted(sanction_step),
                format!("AI agent ran {what}: {tool} ({product})"),
                format!(
                    "Process lineage flag {flag}: {product} started {tool:?}; {seen}{}.",
                    if is_sanctioned {
                        "; the agent is sanctioned (one step lower)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    // new_mcp_server: an MCP server declared in a client's configuration.
    if let Some(server) = mcp_server(o) {
        let remote = has_risk("mcp_remote");
        let unknown = has_risk("mcp_unknown_server");
        let base = if remote || unknown {
            Severity::High
        } else {
            Severity::Low
        };
        let computed = base.shifted(i32::from(has_risk("mcp_auto_trust")));
        let kind = match (remote, unknown) {
            (true, _) => "a remote server",
            (false, true) => "a server the catalog does not know",
            (false, false) => "a server the catalog knows",
        };
        push(
            Reason::NewMcpServer,
            novelty(finding.is_new),
            computed,
            format!("New MCP server for {product}: {server}"),
            format!(
                "MCP server {server:?}, {kind}{}: {seen}.",
                if has_risk("mcp_auto_trust") {
                    ", its tools run without confirmation"
                } else {
                    ""
                }
            ),
        );
    }

    // exposed_model_server: a local model server reachable beyond loopback.
    let is_exposed = has_risk("network_exposed")
        || (o.signal == Signal::Listener
            && o.details
                .get("exposed")
                .and_then(serde_json::Value::as_bool)
                == Some(true));
    if is_exposed {
        let is_new = finding.is_new || is_new_risk("network_exposed");
        push(
            Reason::ExposedModelServer,
            novelty(is_new),
            Severity::High.shifted(sanction_step),
            format!(
                "Local model server exposed beyond loopback: {product} {}",
                o.name
            ),
            format!("{} listens beyond loopback: {seen}.", o.name),
        );
    }

    // consumer_ai_use: repeated use of an unsanctioned product that has a sanctioned alternative.
    if !is_sanctioned {
        let alternatives = policy.sanctioned_alternatives(&o.category, group, product);
        let threshold = policy.settings.consumer_use_threshold;
        if !alternatives.is_empty() && finding.count_after >= threshold {
            let crossed = finding.count_before < threshold;
            push(
                Reason::ConsumerAiUse,
                if crossed { Firing::Raise } else { Firing::Bump },
                Severity::Medium,
                format!(
                    "Repeated use of {product} where {} is sanctioned",
                    alternatives.join(", ")
                ),
                format!(
                    "{} observations of this finding reach the threshold of {threshold}; group \
                     {group:?} has the sanctioned {} alternative {}: {seen}.",
                    finding.count_after,
                    o.category,
                    alternatives.join(", ")
                ),
            );
        }
    }

    // personal_plan: our tenant is sanctioned, this is someone else's or a personal account.
    if matches!(
        tenant_status,
        TenantStatus::Foreign | TenantStatus::Personal
    ) {
        let what = match (&o.tenant, &o.plan) {
            (Some(tenant), _) => format!("tenant {tenant:?}, not one of ours"),
            (None, Some(plan)) => format!("the personal plan {plan:?}"),
            (None, None) => "an unknown account".to_owned(),
        };
        push(
            Reason::PersonalPlan,
            novelty(finding.is_new),
            Severity::Medium,
            format!("{product} used with a personal or foreign account"),
            format!(
                "A corporate tenant of {product} is sanctioned for group {group:?}, but this use \
                 names {what}: {seen}."
            ),
        );
    }
    actions
}

/// The MCP server a configuration observation declares, if it declares one.
pub fn mcp_server(observation: &NewObservation) -> Option<&str> {
    if observation.signal != Signal::Config {
        return None;
    }
    observation
        .details
        .get("mcp_server")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What a heartbeat's health document says the agent cannot see: blind-spot kinds, sensors that
/// are blind, disabled or degraded, and the resource budget. Sorted, deduplicated.
pub fn blind_spots(health: &serde_json::Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    if let Some(spots) = health.get("blind_spots").and_then(|v| v.as_array()) {
        for spot in spots {
            if let Some(kind) = spot
                .get("kind")
                .and_then(|k| k.as_str())
                .filter(|k| !k.is_empty())
            {
                found.insert(kind.to_owned());
            }
        }
    }
    if let Some(sensors) = health.get("sensors").and_then(|v| v.as_array()) {
        for sensor in sensors {
            let name = sensor
                .get("sensor")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let state = match sensor.get("state").and_then(|v| v.as_str()) {
                Some("SENSOR_STATE_BLIND") => "blind",
                Some("SENSOR_STATE_DISABLED") => "disabled",
                Some("SENSOR_STATE_DEGRADED") => "degraded",
                _ => continue,
            };
            found.insert(format!("{name}_{state}"));
        }
    }
    if health.get("degraded").and_then(|v| v.as_bool()) == Some(true) {
        found.insert("budget_degraded".to_owned());
    }
    found
}

/// The `sensor_blinded` alert for a heartbeat, when it shows a blind spot the previous one did not.
pub fn evaluate_blinded(
    before: &BTreeSet<String>,
    now: &BTreeSet<String>,
    group: &str,
    policy: &PolicySnapshot,
) -> Option<AlertAction> {
    let added: Vec<&str> = now.difference(before).map(String::as_str).collect();
    if added.is_empty() {
        return None;
    }
    let whole_sensor = now
        .iter()
        .any(|k| k.ends_with("_blind") || k.ends_with("_disabled"));
    let computed = if whole_sensor {
        Severity::High
    } else {
        Severity::Medium
    };
    let severity = policy.severity(Reason::SensorBlinded, SENSOR_PRODUCT, group, computed);
    let all: Vec<&str> = now.iter().map(String::as_str).collect();
    Some(AlertAction {
        reason: Reason::SensorBlinded,
        firing: Firing::Raise,
        severity,
        title: format!("Sensor blinded: {}", all.join(", ")),
        explanation: format!(
            "The agent's heartbeat reports it cannot see everything: {} (new: {}). Until this \
             changes, \"no AI seen\" on this host is not evidence of no AI. Severity {severity}{}.",
            all.join(", "),
            added.join(", "),
            if whole_sensor {
                " (a whole sensor is blind or off)"
            } else {
                ""
            }
        ),
    })
}

/// The `sensor_silent` alert for an agent last heard from at `last_contact_ms`, if that is longer
/// ago than the policy allows.
pub fn evaluate_silent(
    last_contact_ms: i64,
    now_ms: i64,
    group: &str,
    policy: &PolicySnapshot,
) -> Option<AlertAction> {
    let silent_for = now_ms.saturating_sub(last_contact_ms);
    let threshold = policy.settings.silent_after_ms;
    if silent_for < threshold {
        return None;
    }
    let severity = policy.severity(
        Reason::SensorSilent,
        SENSOR_PRODUCT,
        group,
        Severity::Medium,
    );
    Some(AlertAction {
        reason: Reason::SensorSilent,
        firing: Firing::Raise,
        severity,
        title: "Sensor silent".to_owned(),
        explanation: format!(
            "No heartbeat or report for {} minutes (threshold {} minutes). Severity {severity}.",
            silent_for / 60_000,
            threshold / 60_000
        ),
    })
}

#[cfg(test)]
mod tests;
