//! The report as tables: one per section, the same in HTML, PDF and CSV, so that every format shows
//! the same numbers. CSV output is one file per table (`<name>.csv`).

use super::data::{Report, change_text};

/// One table of the report.
#[derive(Debug, Clone)]
pub struct Table {
    /// File stem of its CSV and anchor in the HTML, e.g. `top_products`.
    pub name: &'static str,
    pub title: &'static str,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

fn ms_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn opt_percent(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}"))
}

/// Every table, in report order.
pub fn tables(report: &Report) -> Vec<Table> {
    let summary = &report.summary;
    let mut tables = vec![
        Table {
            name: "summary",
            title: "Summary",
            header: vec!["figure", "value", "previous_period", "change"],
            rows: vec![
                vec![
                    "hosts with unsanctioned AI".into(),
                    summary.hosts_with_unsanctioned_ai.value.to_string(),
                    summary.hosts_with_unsanctioned_ai.previous.to_string(),
                    change_text(&summary.hosts_with_unsanctioned_ai),
                ],
                vec![
                    "users with unsanctioned AI".into(),
                    summary.users_with_unsanctioned_ai.value.to_string(),
                    summary.users_with_unsanctioned_ai.previous.to_string(),
                    change_text(&summary.users_with_unsanctioned_ai),
                ],
                vec![
                    "share of the fleet (%)".into(),
                    format!("{:.1}", summary.fleet_share_percent),
                    format!("{:.1}", summary.previous_fleet_share_percent),
                    format!(
                        "{:+.1}",
                        summary.fleet_share_percent - summary.previous_fleet_share_percent
                    ),
                ],
                vec![
                    "hosts expected".into(),
                    report.scope.hosts_expected.to_string(),
                    String::new(),
                    String::new(),
                ],
                vec![
                    "hosts reporting".into(),
                    report.scope.hosts_reporting.to_string(),
                    String::new(),
                    String::new(),
                ],
                vec![
                    "hosts silent".into(),
                    report.scope.hosts_silent.to_string(),
                    String::new(),
                    String::new(),
                ],
                vec![
                    "hosts blinded".into(),
                    report.scope.hosts_blinded.to_string(),
                    String::new(),
                    String::new(),
                ],
            ],
        },
        Table {
            name: "by_category",
            title: "Unsanctioned AI by category",
            header: vec![
                "category",
                "hosts",
                "hosts_previous",
                "hosts_change",
                "users",
                "users_previous",
            ],
            rows: summary
                .by_category
                .iter()
                .map(|c| {
                    vec![
                        c.category.clone(),
                        c.hosts.value.to_string(),
                        c.hosts.previous.to_string(),
                        change_text(&c.hosts),
                        c.users.value.to_string(),
                        c.users.previous.to_string(),
                    ]
                })
                .collect(),
        },
        Table {
            name: "by_group",
            title: "Unsanctioned AI by group",
            header: vec![
                "group",
                "hosts",
                "hosts_with_unsanctioned_ai",
                "share_percent",
                "previous",
                "change",
            ],
            rows: summary
                .by_group
                .iter()
                .map(|g| {
                    vec![
                        g.group.clone(),
                        g.hosts.to_string(),
                        g.hosts_with_unsanctioned_ai.value.to_string(),
                        format!("{:.1}", g.share_percent),
                        g.hosts_with_unsanctioned_ai.previous.to_string(),
                        change_text(&g.hosts_with_unsanctioned_ai),
                    ]
                })
                .collect(),
        },
        Table {
            name: "top_products",
            title: "Top unsanctioned products",
            header: vec![
                "product", "vendor", "category", "hosts", "users", "events", "plans",
            ],
            rows: report
                .top_products
                .iter()
                .map(|p| {
                    vec![
                        p.product.clone(),
                        p.vendor.clone(),
                        p.category.clone(),
                        p.hosts.to_string(),
                        p.users.to_string(),
                        p.events.to_string(),
                        p.plans
                            .iter()
                            .map(|(plan, hosts)| format!("{plan}: {hosts}"))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ]
                })
                .collect(),
        },
    ];
    let weeks: Vec<String> = report
        .trends
        .week_starts_ms
        .iter()
        .map(|ms| ms_text(*ms).get(..10).unwrap_or_default().to_owned())
        .collect();
    for (name, title, series) in [
        (
            "trend_categories",
            "Weekly hosts per category",
            &report.trends.by_category,
        ),
        (
            "trend_products",
            "Weekly hosts of the top products",
            &report.trends.top_products,
        ),
    ] {
        tables.push(Table {
            name,
            title,
            header: vec!["week_start", "name", "hosts"],
            rows: series
                .iter()
                .flat_map(|s| {
                    s.hosts
                        .iter()
                        .zip(&weeks)
                        .map(|(hosts, week)| vec![week.clone(), s.name.clone(), hosts.to_string()])
                })
                .collect(),
        });
    }
    let risk = &report.agentic_risk;
    for (name, title, entries) in [
        (
            "agents_approval_off",
            "Agents with approval or sandbox off",
            &risk.approval_or_sandbox_off,
        ),
        (
            "agents_infra_cli",
            "Agents that ran infrastructure CLIs",
            &risk.infra_cli,
        ),
        (
            "exposed_model_servers",
            "Local model servers exposed to the network",
            &risk.exposed_model_servers,
        ),
    ] {
        tables.push(Table {
            name,
            title,
            header: vec!["product", "flag_or_tool", "hosts", "users"],
            rows: entries
                .iter()
                .map(|e| {
                    vec![
                        e.product.clone(),
                        e.flag.clone(),
                        e.hosts.to_string(),
                        e.users.to_string(),
                    ]
                })
                .collect(),
        });
    }
    tables.push(Table {
        name: "mcp_servers",
        title: "MCP servers (remote first)",
        header: vec!["server", "transport", "target", "remote", "hosts"],
        rows: risk
            .mcp_servers
            .iter()
            .map(|m| {
                vec![
                    m.server.clone(),
                    m.transport.clone(),
                    m.target.clone(),
                    if m.remote { "yes" } else { "no" }.into(),
                    m.hosts.to_string(),
                ]
            })
            .collect(),
    });
    tables.push(Table {
        name: "sanctioned_vs_unsanctioned",
        title: "Sanctioned and unsanctioned use per category",
        header: vec![
            "category",
            "sanctioned_hosts",
            "unsanctioned_hosts",
            "sanctioned_products",
        ],
        rows: report
            .sanctioned_vs_unsanctioned
            .iter()
            .map(|s| {
                vec![
                    s.category.clone(),
                    s.sanctioned_hosts.to_string(),
                    s.unsanctioned_hosts.to_string(),
                    s.sanctioned_products.join("; "),
                ]
            })
            .collect(),
    });
    tables.push(Table {
        name: "unmet_demand",
        title: "Unmet demand (heavy use, no sanctioned alternative)",
        header: vec![
            "category",
            "unsanctioned_hosts",
            "share_percent",
            "top_product",
        ],
        rows: report
            .unmet_demand
            .iter()
            .map(|u| {
                vec![
                    u.category.clone(),
                    u.unsanctioned_hosts.to_string(),
                    format!("{:.1}", u.share_percent),
                    u.top_product.clone(),
                ]
            })
            .collect(),
    });
    let triage = &report.triage;
    let mut triage_rows: Vec<Vec<String>> = vec![vec!["alerts".into(), triage.alerts.to_string()]];
    triage_rows.extend(
        triage
            .by_status
            .iter()
            .map(|(status, n)| vec![format!("status {status}"), n.to_string()]),
    );
    triage_rows.push(vec![
        "true positive rate (%)".into(),
        opt_percent(triage.true_positive_rate_percent),
    ]);
    triage_rows.push(vec![
        "false positive rate (%)".into(),
        opt_percent(triage.false_positive_rate_percent),
    ]);
    triage_rows.push(vec![
        "median time to acknowledge (minutes)".into(),
        triage.median_time_to_acknowledge_ms.map_or_else(
            || "n/a".to_owned(),
            |ms| format!("{:.1}", ms as f64 / 60_000.0),
        ),
    ]);
    tables.push(Table {
        name: "triage",
        title: "Triage outcomes",
        header: vec!["figure", "value"],
        rows: triage_rows,
    });
    tables.push(Table {
        name: "recommendations",
        title: "Recommendations",
        header: vec!["rule", "title", "text"],
        rows: report
            .recommendations
            .iter()
            .map(|r| vec![r.rule.to_owned(), r.title.clone(), r.text.clone()])
            .collect(),
    });
    tables.push(Table {
        name: "silent_hosts",
        title: "Silent hosts",
        header: vec!["host", "group", "last_contact"],
        rows: report
            .scope
            .silent
            .iter()
            .map(|h| vec![h.host.clone(), h.group.clone(), ms_text(h.last_contact_ms)])
            .collect(),
    });
    tables.push(Table {
        name: "blinded_hosts",
        title: "Blinded hosts",
        header: vec!["host", "group", "blind_spots"],
        rows: report
            .scope
            .blinded
            .iter()
            .map(|h| vec![h.host.clone(), h.group.clone(), h.kinds.join("; ")])
            .collect(),
    });
    tables.push(Table {
        name: "catalog_versions",
        title: "Catalog versions",
        header: vec!["version", "hosts"],
        rows: report
            .scope
            .catalog_versions
            .iter()
            .map(|c| vec![c.version.clone(), c.hosts.to_string()])
            .collect(),
    });
    tables.push(Table {
        name: "evidence",
        title: "Evidence appendix",
        header: vec![
            "alert_id",
            "host",
            "product",
            "reason",
            "first_observation_id",
            "last_observation_id",
        ],
        rows: report
            .evidence
            .alerts
            .iter()
            .map(|e| {
                vec![
                    e.alert_id.clone(),
                    e.host.clone(),
                    e.product.clone(),
                    e.reason.clone(),
                    e.first_observation_id.clone(),
                    e.last_observation_id.clone(),
                ]
            })
            .collect(),
    });
    tables
}

/// RFC 4180 CSV of a table. Fields that a spreadsheet would run as a formula (leading `=`, `+`,
/// `-`, `@`, tab or CR) get a leading `'`: host names and products come from endpoints.
pub fn csv(table: &Table) -> Vec<u8> {
    let mut out = String::new();
    let mut line = |fields: &mut dyn Iterator<Item = &str>| {
        let mut first = true;
        for field in fields {
            if !first {
                out.push(',');
            }
            first = false;
            let guarded;
            let field = if field.starts_with(['=', '+', '-', '@', '\t', '\r'])
                && field.parse::<f64>().is_err()
            {
                guarded = format!("'{field}");
                guarded.as_str()
            } else {
                field
            };
            if field.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&field.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(field);
            }
        }
        out.push_str("\r\n");
    };
    line(&mut table.header.iter().copied());
    for row in &table.rows {
        line(&mut row.iter().map(String::as_str));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let table = Table {
            name: "t",
            title: "T",
            header: vec!["a", "b"],
            rows: vec![
                vec!["=HYPERLINK(\"x\")".into(), "a,b".into()],
                vec!["-12".into(), "line\nbreak".into()],
            ],
        };
        let text = String::from_utf8(csv(&table)).unwrap();
        assert_eq!(
            text,
            "a,b\r\n\"'=HYPERLINK(\"\"x\"\")\",\"a,b\"\r\n-12,\"line\nbreak\"\r\n"
        );
    }
}
