//! Recommendations: fixed rules over the report's figures, each citing the numbers that fired it.
//! No language model, no free judgement: docs/REPORTS.md lists the same rules and thresholds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::data::Report;

/// A category is in heavy use when at least this share of the fleet uses it...
pub const HEAVY_USE_PERCENT: f64 = 5.0;
/// ...and at least this many hosts.
pub const HEAVY_USE_HOSTS: i64 = 3;
/// Growth worth a recommendation: this many percent over the previous period...
pub const GROWTH_PERCENT: f64 = 20.0;
/// ...and at least this many more hosts.
pub const GROWTH_HOSTS: i64 = 5;
/// Coverage below this share of the fleet reporting is worth fixing first.
pub const COVERAGE_PERCENT: f64 = 90.0;
/// False positives above this share of resolved alerts call for policy tuning.
pub const FALSE_POSITIVE_PERCENT: f64 = 30.0;

/// One recommendation.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// Stable rule id (docs/REPORTS.md).
    pub rule: &'static str,
    pub title: String,
    pub text: String,
    /// The numbers the rule used.
    pub figures: BTreeMap<&'static str, Value>,
}

/// Whether `hosts` of a fleet of `fleet` is heavy use (see the constants).
pub fn is_heavy_use(hosts: i64, fleet: i64) -> bool {
    fleet > 0
        && hosts >= HEAVY_USE_HOSTS
        && hosts as f64 * 100.0 / fleet as f64 >= HEAVY_USE_PERCENT
}

/// Every rule, in a fixed order.
pub fn recommend(report: &Report) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let scope = &report.scope;
    let fleet = scope.hosts_expected;

    // R1 coverage: figures undercount when hosts are silent or blind.
    let reporting_percent = if fleet == 0 {
        100.0
    } else {
        scope.hosts_reporting as f64 * 100.0 / fleet as f64
    };
    if reporting_percent < COVERAGE_PERCENT || scope.hosts_blinded > 0 || scope.hosts_silent > 0 {
        out.push(Recommendation {
            rule: "R1-coverage",
            title: "Close the sensor gaps first".into(),
            text: format!(
                "{} of {} hosts reported in the period ({:.1}%); {} are silent and {} are blinded \
                 (DoH, ECH or capture off). The figures below undercount by up to that much.",
                scope.hosts_reporting,
                fleet,
                reporting_percent,
                scope.hosts_silent,
                scope.hosts_blinded
            ),
            figures: BTreeMap::from([
                ("hosts_expected", json!(fleet)),
                ("hosts_reporting", json!(scope.hosts_reporting)),
                ("hosts_silent", json!(scope.hosts_silent)),
                ("hosts_blinded", json!(scope.hosts_blinded)),
            ]),
        });
    }

    // R2 unmet demand: heavy use of a category with no sanctioned alternative.
    for demand in &report.unmet_demand {
        out.push(Recommendation {
            rule: "R2-unmet-demand",
            title: format!("Offer a sanctioned {} tool", demand.category),
            text: format!(
                "{} hosts ({:.1}% of the fleet) used unsanctioned {} products and none is sanctioned; \
                 the most used is {}. A sanctioned alternative moves this use under policy.",
                demand.unsanctioned_hosts, demand.share_percent, demand.category, demand.top_product
            ),
            figures: BTreeMap::from([
                ("category", json!(demand.category)),
                ("unsanctioned_hosts", json!(demand.unsanctioned_hosts)),
                ("share_percent", json!(demand.share_percent)),
            ]),
        });
    }

    // R3 growth.
    let hosts = report.summary.hosts_with_unsanctioned_ai;
    if let Some(percent) = hosts.change_percent
        && percent >= GROWTH_PERCENT
        && hosts.change >= GROWTH_HOSTS
    {
        out.push(Recommendation {
                rule: "R3-growth",
                title: "Unsanctioned AI use is growing".into(),
                text: format!(
                    "Hosts with unsanctioned AI went from {} to {} ({:+.1}%) against the previous period \
                     of the same length. Decide the policy before the habit settles.",
                    hosts.previous, hosts.value, percent
                ),
                figures: BTreeMap::from([
                    ("previous", json!(hosts.previous)),
                    ("value", json!(hosts.value)),
                    ("change_percent", json!(percent)),
                ]),
            });
    }

    let risk = &report.agentic_risk;
    // R4 agents without a human in the loop.
    if risk.approval_or_sandbox_off_hosts > 0 {
        out.push(Recommendation {
            rule: "R4-agent-approval",
            title: "Keep a human in the loop of coding agents".into(),
            text: format!(
                "{} hosts ran AI agents with approval or the sandbox turned off (or equivalent flags). \
                 Require approval for commands and edits in the managed configuration of these agents.",
                risk.approval_or_sandbox_off_hosts
            ),
            figures: BTreeMap::from([("hosts", json!(risk.approval_or_sandbox_off_hosts))]),
        });
    }
    // R5 infrastructure CLIs run by agents.
    if risk.infra_cli_hosts > 0 {
        out.push(Recommendation {
            rule: "R5-agent-infra-cli",
            title: "Keep agents away from infrastructure credentials".into(),
            text: format!(
                "On {} hosts an AI agent started infrastructure CLIs (cloud, Kubernetes, Terraform). \
                 Scope the credentials those shells can reach, or run the agents without them.",
                risk.infra_cli_hosts
            ),
            figures: BTreeMap::from([("hosts", json!(risk.infra_cli_hosts))]),
        });
    }
    // R6 remote MCP servers.
    let remote: Vec<_> = risk.mcp_servers.iter().filter(|s| s.remote).collect();
    if !remote.is_empty() {
        out.push(Recommendation {
            rule: "R6-mcp-remote",
            title: "Allowlist remote MCP servers".into(),
            text: format!(
                "{} remote MCP servers are configured ({} hosts have MCP servers in all). Remote servers \
                 receive what the agent reads; publish an allowlist and review the rest.",
                remote.len(),
                risk.mcp_server_hosts
            ),
            figures: BTreeMap::from([
                ("remote_servers", json!(remote.len())),
                ("hosts_with_mcp", json!(risk.mcp_server_hosts)),
            ]),
        });
    }
    // R7 exposed local model servers.
    if risk.exposed_model_server_hosts > 0 {
        out.push(Recommendation {
            rule: "R7-exposed-model-server",
            title: "Bind local model servers to loopback".into(),
            text: format!(
                "{} hosts run a local model server reachable from the network. Anyone on that network \
                 can use it (and its models); bind it to 127.0.0.1.",
                risk.exposed_model_server_hosts
            ),
            figures: BTreeMap::from([("hosts", json!(risk.exposed_model_server_hosts))]),
        });
    }
    // R8 personal plans.
    let personal: i64 = report
        .top_products
        .iter()
        .map(|p| p.plans.get("personal").copied().unwrap_or(0))
        .sum();
    if personal > 0 {
        out.push(Recommendation {
            rule: "R8-personal-plans",
            title: "Move personal AI accounts to corporate ones".into(),
            text: format!(
                "{personal} host-product pairs used a personal plan of an AI service; what is typed there \
                 is governed by a consumer agreement, not the company's."
            ),
            figures: BTreeMap::from([("host_product_pairs", json!(personal))]),
        });
    }
    // R9 noisy policy.
    if let Some(rate) = report.triage.false_positive_rate_percent
        && rate > FALSE_POSITIVE_PERCENT
    {
        out.push(Recommendation {
                rule: "R9-false-positives",
                title: "Tune the alert policy".into(),
                text: format!(
                    "{rate:.1}% of resolved alerts were false positives. Sanction the products that are \
                     allowed, or suppress them per group, so that responders see what matters."
                ),
                figures: BTreeMap::from([("false_positive_rate_percent", json!(rate))]),
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_use_needs_both_share_and_hosts() {
        assert!(is_heavy_use(5, 100));
        assert!(!is_heavy_use(4, 100));
        assert!(!is_heavy_use(2, 10));
        assert!(is_heavy_use(3, 10));
        assert!(!is_heavy_use(3, 0));
    }
}
