//! The leadership report on a seeded fleet: every figure of the JSON checked against SQL written
//! here independently; HTML self-contained and escaped; PDF rendered by poppler; pseudonymised
//! output without a real name.

use std::process::Command;

use serde_json::Value;
use shadowai_collector::report::pseudonym::Namer;
use shadowai_collector::report::{self, Format, Rendered, ReportRequest};

use crate::backend_tests;
use crate::harness::{
    Bind, DAY, HOSTS, NOW, TestDb, USERS, by_user, observation, scalar, seed_fleet,
};

const SINCE: i64 = NOW - 30 * DAY;
const WEEK: i64 = 7 * DAY;

backend_tests!(
    json_figures_match_independent_queries,
    pseudonymized_reports_name_nobody,
    html_is_self_contained_and_escapes_endpoint_strings,
    groups_narrow_the_fleet,
    sanctions_triage_outcomes_and_the_chain_head_reach_the_report,
    usage_figures_hold_for_periods_off_midnight,
);

fn request(namer: Namer, group: Option<&str>) -> ReportRequest {
    ReportRequest {
        since_ms: SINCE,
        until_ms: NOW,
        group: group.map(str::to_owned),
        namer,
    }
}

async fn json_report(db: &TestDb, namer: Namer, group: Option<&str>) -> Value {
    let report = report::data::build(&db.store, &request(namer, group), NOW)
        .await
        .unwrap();
    let Rendered::File(bytes) = report::render(&report, Format::Json).unwrap() else {
        panic!("json is one file")
    };
    serde_json::from_slice(&bytes).unwrap()
}

fn i(value: &Value) -> i64 {
    value
        .as_i64()
        .unwrap_or_else(|| panic!("not an integer: {value}"))
}

const IN_PERIOD: &str = "o.observed_at_ms >= $1 AND o.observed_at_ms < $2";

async fn json_figures_match_independent_queries(db: &TestDb) {
    seed_fleet(&db.store).await;
    let json = json_report(db, Namer::plain(), None).await;
    let url = &db.url;
    let period = [Bind::I(SINCE), Bind::I(NOW)];
    let previous = [Bind::I(SINCE - 30 * DAY), Bind::I(SINCE)];
    let hosts_sql = format!(
        "SELECT COUNT(DISTINCT o.agent_id) FROM observations o WHERE {IN_PERIOD} AND o.product <> ''"
    );
    let users_sql = format!(
        "SELECT COUNT(DISTINCT o.process_user) FROM observations o WHERE {IN_PERIOD} \
         AND o.product <> '' AND o.process_user IS NOT NULL AND o.process_user <> ''"
    );
    let summary = &json["summary"];
    let hosts = scalar(url, &hosts_sql, &period).await;
    assert_eq!(hosts, 4, "the seed has 4 hosts with AI in the period");
    assert_eq!(i(&summary["hosts_with_unsanctioned_ai"]["value"]), hosts);
    assert_eq!(
        i(&summary["hosts_with_unsanctioned_ai"]["previous"]),
        scalar(url, &hosts_sql, &previous).await
    );
    assert_eq!(
        i(&summary["users_with_unsanctioned_ai"]["value"]),
        scalar(url, &users_sql, &period).await
    );
    assert_eq!(
        i(&summary["users_with_unsanctioned_ai"]["previous"]),
        scalar(url, &users_sql, &previous).await
    );
    let fleet = scalar(
        url,
        "SELECT COUNT(*) FROM agents WHERE revoked_at_ms IS NULL AND enrolled_at_ms < $1",
        &[Bind::I(NOW)],
    )
    .await;
    let scope = &json["scope"];
    assert_eq!(i(&scope["hosts_expected"]), fleet);
    assert_eq!(
        i(&scope["hosts_reporting"]),
        scalar(
            url,
            "SELECT COUNT(*) FROM agents WHERE revoked_at_ms IS NULL AND enrolled_at_ms < $1 AND last_contact_ms >= $2",
            &[Bind::I(NOW), Bind::I(SINCE)]
        )
        .await
    );
    assert_eq!(
        i(&scope["hosts_silent"]),
        scalar(
            url,
            "SELECT COUNT(*) FROM agents WHERE revoked_at_ms IS NULL AND enrolled_at_ms < $1 AND last_contact_ms < $2",
            &[Bind::I(NOW), Bind::I(NOW - DAY)]
        )
        .await
    );
    assert_eq!(
        i(&scope["hosts_blinded"]),
        scalar(
            url,
            "SELECT COUNT(*) FROM agents WHERE revoked_at_ms IS NULL AND health LIKE '%\"blind_spots\":[{%'",
            &[]
        )
        .await
    );
    let share = json["summary"]["fleet_share_percent"].as_f64().unwrap();
    assert!(
        (share - (hosts as f64 * 100.0 / fleet as f64)).abs() < 0.051,
        "{share}"
    );

    // by category, this period and the previous one
    let categories = summary["by_category"].as_array().unwrap();
    assert_eq!(categories.len() as i64, scalar(url, &format!(
        "SELECT COUNT(DISTINCT o.category) FROM observations o WHERE {IN_PERIOD} AND o.product <> ''"), &period).await);
    for row in categories {
        let category = row["category"].as_str().unwrap().to_owned();
        for (field, sql) in [("hosts", &hosts_sql), ("users", &users_sql)] {
            let sql = format!("{sql} AND o.category = $3");
            let now = [Bind::I(SINCE), Bind::I(NOW), Bind::S(category.clone())];
            let before = [
                Bind::I(SINCE - 30 * DAY),
                Bind::I(SINCE),
                Bind::S(category.clone()),
            ];
            assert_eq!(
                i(&row[field]["value"]),
                scalar(url, &sql, &now).await,
                "{category} {field}"
            );
            assert_eq!(
                i(&row[field]["previous"]),
                scalar(url, &sql, &before).await,
                "{category} {field}"
            );
        }
    }
    // by group
    for row in summary["by_group"].as_array().unwrap() {
        let group = Bind::S(row["group"].as_str().unwrap().to_owned());
        assert_eq!(
            i(&row["hosts"]),
            scalar(
                url,
                "SELECT COUNT(*) FROM agents WHERE revoked_at_ms IS NULL AND group_name = $1",
                std::slice::from_ref(&group)
            )
            .await
        );
        let sql =
            format!("{hosts_sql} AND o.agent_id IN (SELECT id FROM agents WHERE group_name = $3)");
        assert_eq!(
            i(&row["hosts_with_unsanctioned_ai"]["value"]),
            scalar(url, &sql, &[Bind::I(SINCE), Bind::I(NOW), group]).await
        );
    }
    // top products: hosts, users, events, plans
    let products = json["top_products"].as_array().unwrap();
    assert_eq!(products.len() as i64, scalar(url, &format!(
        "SELECT COUNT(DISTINCT o.product) FROM observations o WHERE {IN_PERIOD} AND o.product <> ''"), &period).await);
    for row in products {
        let product = row["product"].as_str().unwrap().to_owned();
        let binds = [Bind::I(SINCE), Bind::I(NOW), Bind::S(product.clone())];
        assert_eq!(
            i(&row["hosts"]),
            scalar(url, &format!("{hosts_sql} AND o.product = $3"), &binds).await,
            "{product}"
        );
        assert_eq!(
            i(&row["users"]),
            scalar(url, &format!("{users_sql} AND o.product = $3"), &binds).await,
            "{product}"
        );
        assert_eq!(
            i(&row["events"]),
            scalar(url, &format!("SELECT CAST(SUM(o.count) AS BIGINT) FROM observations o WHERE {IN_PERIOD} AND o.product = $3"), &binds).await
        );
        for (plan, hosts) in row["plans"].as_object().unwrap() {
            let condition = if plan == "unknown" {
                "(o.plan IS NULL OR o.plan = '')".to_owned()
            } else {
                "o.plan = $4".to_owned()
            };
            let mut binds = binds.to_vec();
            if plan != "unknown" {
                binds.push(Bind::S(plan.clone()));
            }
            assert_eq!(
                i(hosts),
                scalar(
                    url,
                    &format!("{hosts_sql} AND o.product = $3 AND {condition}"),
                    &binds
                )
                .await,
                "{product} {plan}"
            );
        }
    }
    let chatgpt = products
        .iter()
        .find(|p| p["product"] == "openai.chatgpt")
        .unwrap();
    assert_eq!(
        (i(&chatgpt["hosts"]), i(&chatgpt["plans"]["personal"])),
        (4, 1)
    );

    // weekly trends: every point of every series
    let weeks = json["trends"]["week_starts_ms"].as_array().unwrap();
    assert_eq!(weeks.len(), 5, "30 days are 5 weeks, the last partial");
    for (key, column) in [("by_category", "category"), ("top_products", "product")] {
        for series in json["trends"][key].as_array().unwrap() {
            let name = series["name"].as_str().unwrap().to_owned();
            for (week, value) in series["hosts"].as_array().unwrap().iter().enumerate() {
                let start = SINCE + week as i64 * WEEK;
                let end = (start + WEEK).min(NOW);
                let sql = format!("{hosts_sql} AND o.{column} = $3");
                let expected = scalar(
                    url,
                    &sql,
                    &[Bind::I(start), Bind::I(end), Bind::S(name.clone())],
                )
                .await;
                assert_eq!(i(value), expected, "{key} {name} week {week}");
            }
        }
    }

    // agentic risk
    let risk = &json["agentic_risk"];
    let flagged = |condition: &str| format!("{hosts_sql} AND ({condition})");
    assert_eq!(
        i(&risk["approval_or_sandbox_off_hosts"]),
        scalar(url, &flagged("o.risk LIKE '%\"approval_bypass\"%' OR o.risk LIKE '%\"sandbox_off\"%' \
            OR o.risk LIKE '%\"unattended\"%' OR o.risk LIKE '%\"broad_allowlist\"%' OR o.risk LIKE '%\"mcp_auto_trust\"%'"), &period).await
    );
    assert_eq!(
        i(&risk["infra_cli_hosts"]),
        scalar(
            url,
            &flagged("o.risk LIKE '%\"agent_infra_cli\"%'"),
            &period
        )
        .await
    );
    assert_eq!(
        i(&risk["exposed_model_server_hosts"]),
        scalar(
            url,
            &flagged("o.signal = 'listener' AND o.details LIKE '%\"exposed\":true%'"),
            &period
        )
        .await
    );
    assert_eq!(
        i(&risk["mcp_server_hosts"]),
        scalar(
            url,
            &flagged("o.signal = 'config' AND o.details NOT LIKE '%\"mcp_server\":\"\"%'"),
            &period
        )
        .await
    );
    assert_eq!(risk["mcp_servers"][0]["remote"], true);
    assert_eq!(risk["infra_cli"][0]["flag"], "kubectl");
    for key in [
        "approval_or_sandbox_off_hosts",
        "infra_cli_hosts",
        "exposed_model_server_hosts",
        "mcp_server_hosts",
    ] {
        assert_eq!(i(&risk[key]), 1, "{key}");
    }

    // triage and evidence
    assert_eq!(
        i(&json["triage"]["alerts"]),
        scalar(
            url,
            "SELECT COUNT(*) FROM alerts WHERE first_seen_ms >= $1 AND first_seen_ms < $2",
            &period
        )
        .await
    );
    assert_eq!(
        i(&json["evidence"]["alerts_total"]),
        scalar(
            url,
            "SELECT COUNT(*) FROM alerts WHERE last_seen_ms >= $1 AND first_seen_ms < $2",
            &period
        )
        .await
    );
    assert_eq!(
        json["evidence"]["alerts"].as_array().unwrap().len() as i64,
        i(&json["evidence"]["alerts_total"])
    );

    // unmet demand and recommendations cite the numbers above
    let unmet: Vec<&str> = json["unmet_demand"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["category"].as_str().unwrap())
        .collect();
    assert!(unmet.contains(&"chat"), "{unmet:?}");
    let rules: Vec<&str> = json["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    for rule in [
        "R1-coverage",
        "R2-unmet-demand",
        "R4-agent-approval",
        "R5-agent-infra-cli",
        "R6-mcp-remote",
        "R7-exposed-model-server",
        "R8-personal-plans",
    ] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
    let coverage = &json["recommendations"][0];
    assert_eq!(coverage["figures"]["hosts_expected"], fleet);
    assert!(
        coverage["text"]
            .as_str()
            .unwrap()
            .contains(&format!("of {fleet} hosts"))
    );
    assert_eq!(json["$schema"], report::data::SCHEMA);
}

/// What the policy and triage decided shows in the report, and the chain head it cites is one
/// `verify --expect-root` accepts.
async fn sanctions_triage_outcomes_and_the_chain_head_reach_the_report(db: &TestDb) {
    use shadowai_collector::store::{
        AlertFilter, ExpectedRoot, NewSanction, PolicyActor, Resolution, TriageAction,
        TriageContext,
    };
    seed_fleet(&db.store).await;
    let url = &db.url;
    let period = [Bind::I(SINCE), Bind::I(NOW)];

    // ChatGPT becomes sanctioned everywhere: hosts that used only ChatGPT leave the figure.
    db.store
        .add_sanction(
            &NewSanction {
                product: "openai.chatgpt".into(),
                category: "chat".into(),
                group: String::new(),
                note: "enterprise plan".into(),
            },
            &PolicyActor {
                who: "cli".into(),
                from: "local".into(),
            },
            NOW,
        )
        .await
        .unwrap();
    // Two alerts resolved (one true, one false positive), one acknowledged, each some time after
    // it was first seen.
    let alerts = db
        .store
        .alert_queue(&AlertFilter {
            status: Some("open".into()),
            page_size: 10,
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert!(alerts.alerts.len() >= 3, "the seed raises alerts");
    let actions = [
        TriageAction::Resolve {
            resolution: Resolution::TruePositive,
        },
        TriageAction::Resolve {
            resolution: Resolution::FalsePositive,
        },
        TriageAction::Acknowledge,
    ];
    for (n, (item, action)) in alerts.alerts.iter().zip(&actions).enumerate() {
        let context = TriageContext {
            actor: "rita".into(),
            from_address: "127.0.0.1".into(),
            note: String::new(),
            now_ms: item.alert.first_seen_ms + (n as i64 + 1) * 3_600_000,
        };
        db.store
            .triage_alert(item.alert.id, action, &context)
            .await
            .unwrap();
    }

    let json = json_report(db, Namer::plain(), None).await;
    assert!(
        json["scope"]["sanctioned_policy"]
            .as_str()
            .unwrap()
            .starts_with("1 sanction "),
        "{}",
        json["scope"]["sanctioned_policy"]
    );
    let unsanctioned_hosts = scalar(
        url,
        &format!(
            "SELECT COUNT(DISTINCT o.agent_id) FROM observations o WHERE {IN_PERIOD} \
             AND o.product <> '' AND o.product <> 'openai.chatgpt'"
        ),
        &period,
    )
    .await;
    assert_eq!(
        i(&json["summary"]["hosts_with_unsanctioned_ai"]["value"]),
        unsanctioned_hosts
    );
    let chat = json["sanctioned_vs_unsanctioned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["category"] == "chat")
        .expect("a chat row");
    assert_eq!(
        i(&chat["sanctioned_hosts"]),
        scalar(
            url,
            &format!(
                "SELECT COUNT(DISTINCT o.agent_id) FROM observations o WHERE {IN_PERIOD} \
                 AND o.product = 'openai.chatgpt'"
            ),
            &period,
        )
        .await
    );

    // Triage outcomes, against the alerts table and the triage log.
    let resolved_sql = "SELECT COUNT(*) FROM alerts WHERE first_seen_ms >= $1 AND first_seen_ms < $2 \
                        AND resolution = $3";
    let true_positives = scalar(
        url,
        resolved_sql,
        &[
            Bind::I(SINCE),
            Bind::I(NOW),
            Bind::S("true_positive".into()),
        ],
    )
    .await;
    let false_positives = scalar(
        url,
        resolved_sql,
        &[
            Bind::I(SINCE),
            Bind::I(NOW),
            Bind::S("false_positive".into()),
        ],
    )
    .await;
    let resolved = true_positives + false_positives;
    if resolved > 0 {
        let rate = |n: i64| (n as f64 * 1000.0 / resolved as f64).round() / 10.0;
        assert_eq!(
            json["triage"]["true_positive_rate_percent"].as_f64(),
            Some(rate(true_positives))
        );
        assert_eq!(
            json["triage"]["false_positive_rate_percent"].as_f64(),
            Some(rate(false_positives))
        );
    }
    let acknowledged = scalar(
        url,
        "SELECT COUNT(*) FROM alerts l WHERE l.first_seen_ms >= $1 AND l.first_seen_ms < $2 \
         AND EXISTS (SELECT 1 FROM triage_events t WHERE t.alert_id = l.id \
             AND t.action IN ('acknowledge', 'resolve'))",
        &period,
    )
    .await;
    if acknowledged > 0 {
        assert!(
            json["triage"]["median_time_to_acknowledge_ms"]
                .as_i64()
                .unwrap()
                >= 3_600_000
        );
    } else {
        assert!(json["triage"]["median_time_to_acknowledge_ms"].is_null());
    }

    // The chain head: the newest root, and verify accepts it as the expected root.
    let head = json["integrity"]["chain_head"]
        .as_str()
        .expect("a chain head")
        .to_owned();
    let verified = db.store.verify(None).await.unwrap();
    assert!(verified.is_intact(), "{verified:?}");
    let root = verified.root.expect("a root");
    assert_eq!(head, format!("{}:{}", root.seq, root.hash));
    let expected: ExpectedRoot = head.parse().unwrap();
    assert!(db.store.verify(Some(expected)).await.unwrap().is_intact());
    assert_eq!(
        json["integrity"]["verify_command"],
        format!("shadowai-collector verify --expect-root {head}")
    );
}

async fn groups_narrow_the_fleet(db: &TestDb) {
    seed_fleet(&db.store).await;
    let json = json_report(db, Namer::plain(), Some("sales")).await;
    assert_eq!(i(&json["scope"]["hosts_expected"]), 2);
    assert_eq!(
        i(&json["summary"]["hosts_with_unsanctioned_ai"]["value"]),
        1
    );
    let products: Vec<&str> = json["top_products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product"].as_str().unwrap())
        .collect();
    assert_eq!(
        products,
        ["google.gemini", "openai.chatgpt"]
            .iter()
            .copied()
            .filter(|p| products.contains(p))
            .collect::<Vec<_>>()
    );
    assert!(!products.contains(&"anthropic.claude-code"));
}

async fn pseudonymized_reports_name_nobody(db: &TestDb) {
    seed_fleet(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let key = report::pseudonym::load_or_create_key(dir.path()).unwrap();
    let built = report::data::build(&db.store, &request(Namer::keyed(key), None), NOW)
        .await
        .unwrap();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    for format in [Format::Json, Format::Html, Format::Csv] {
        match report::render(&built, format).unwrap() {
            Rendered::File(bytes) => outputs.push((format.as_str().to_owned(), bytes)),
            Rendered::Tables(files) => outputs.extend(files),
        }
    }
    for (name, bytes) in &outputs {
        let text = String::from_utf8_lossy(bytes);
        for real in HOSTS
            .iter()
            .chain(USERS.iter())
            .chain(["eng-laptop", "sales-laptop", "alice"].iter())
        {
            assert!(!text.contains(real), "{name} contains {real:?}");
        }
    }
    let json: Value = serde_json::from_slice(&outputs[0].1).unwrap();
    assert_eq!(json["pseudonymized"], true);
    let silent: Vec<&str> = json["scope"]["silent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert!(
        !silent.is_empty() && silent.iter().all(|h| h.starts_with("host-")),
        "{silent:?}"
    );
    // Stable: the same key gives the same pseudonyms.
    let again = report::data::build(&db.store, &request(Namer::keyed(key), None), NOW)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(
            again
                .scope
                .silent
                .iter()
                .map(|h| &h.host)
                .collect::<Vec<_>>()
        )
        .unwrap(),
        serde_json::to_value(&silent).unwrap()
    );
}

async fn html_is_self_contained_and_escapes_endpoint_strings(db: &TestDb) {
    seed_fleet(&db.store).await;
    let built = report::data::build(&db.store, &request(Namer::plain(), None), NOW)
        .await
        .unwrap();
    let Rendered::File(bytes) = report::render(&built, Format::Html).unwrap() else {
        panic!()
    };
    let html = String::from_utf8(bytes).unwrap();
    for reference in [
        "http://", "https://", "//", "src=", "href=", "url(", "@import", "<script",
    ] {
        // the MCP target is shown as text: escaped, not a reference
        let found: Vec<_> = html
            .match_indices(reference)
            .map(|(i, _)| &html[i.saturating_sub(40)..(i + 40).min(html.len())])
            .collect();
        let allowed = |context: &&str| {
            reference.contains("//") && context.contains("mcp.example.com/sse</td>")
        };
        assert!(found.iter().all(allowed), "{reference}: {found:?}");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("<svg") && html.contains("<polyline"));
    assert!(html.contains("@media print"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pdf_renders_with_poppler_and_shows_the_headline_figures() {
    let db = TestDb::sqlite().await;
    seed_fleet(&db.store).await;
    let built = report::data::build(&db.store, &request(Namer::plain(), None), NOW)
        .await
        .unwrap();
    let Rendered::File(pdf) = report::render(&built, Format::Pdf).unwrap() else {
        panic!()
    };
    assert!(pdf.starts_with(b"%PDF-"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let tool = |name: &str| {
        which(name).unwrap_or_else(|| {
            panic!("{name} not found: apt-get install poppler-utils (scripts/test.sh does)")
        })
    };
    let status = Command::new(tool("pdftoppm"))
        .args(["-r", "40", "-png"])
        .arg(&path)
        .arg(dir.path().join("page"))
        .status()
        .unwrap();
    assert!(status.success());
    let pages = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".png")
        })
        .count();
    assert!(pages >= 2, "{pages} pages");
    let output = Command::new(tool("pdftotext"))
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    let summary = &built.summary;
    for needle in [
        "Shadow AI evidence report".to_owned(),
        "Hosts with unsanctioned AI".to_owned(),
        summary.hosts_with_unsanctioned_ai.value.to_string(),
        format!("{}%", summary.fleet_share_percent),
        report::data::change_text(&summary.hosts_with_unsanctioned_ai),
        "<script>alert(1)</script>".to_owned(),
        "openai.chatgpt".to_owned(),
    ] {
        assert!(
            text.contains(&needle),
            "pdftotext lacks {needle:?}:\n{text}"
        );
    }
    db.finish().await;
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(name))
        .find(|p| p.exists())
}

/// A small JSON Schema checker for the keywords docs/report.schema.json uses: `type`, `const`,
/// `required`, `properties`, `additionalProperties`, `items`, `$ref` (local).
fn check_schema(value: &Value, schema: &Value, root: &Value, path: &str) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = root
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{reference}"));
        return check_schema(value, target, root, path);
    }
    if let Some(expected) = schema.get("const") {
        assert_eq!(value, expected, "{path}");
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => panic!("bad type in schema at {path}"),
        };
        let matches = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => panic!("unknown type {t}"),
        };
        assert!(
            types.iter().any(|t| matches(t)),
            "{path}: {value} is not {types:?}"
        );
    }
    if let Some(object) = value.as_object() {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(
                object.contains_key(key.as_str().unwrap()),
                "{path} lacks {key}"
            );
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, item) in object {
            let child = format!("{path}.{key}");
            match (
                properties.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => check_schema(item, property, root, &child),
                (None, Some(Value::Bool(false))) => panic!("{child} is not in the schema"),
                (None, Some(additional)) if additional.is_object() => {
                    check_schema(item, additional, root, &child)
                }
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            check_schema(item, items, root, &format!("{path}[{index}]"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_follows_the_documented_schema() {
    let db = TestDb::sqlite().await;
    seed_fleet(&db.store).await;
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/report.schema.json")).unwrap();
    for group in [None, Some("sales"), Some("nobody")] {
        let json = json_report(&db, Namer::plain(), group).await;
        check_schema(&json, &schema, &schema, "$");
    }
    db.finish().await;
}

const HOUR: i64 = 3_600_000;

/// Periods that do not start or end at midnight UTC: the report reads the daily roll-up for the
/// whole days, raw observations for the partial days at the ends, and counts a host in both weeks
/// of a day a week boundary cuts (observations on both sides, in one batch or two). Every usage
/// figure against SQL over raw observations.
async fn usage_figures_hold_for_periods_off_midnight(db: &TestDb) {
    let agents = seed_fleet(&db.store).await;
    let image = |at: i64, count: u32| {
        let mut o = observation("midjourney.midjourney", "image_generation", at);
        o.count = count;
        o
    };
    let batches: Vec<(usize, Vec<_>)> = vec![
        (
            3,
            vec![
                // either side of 06:00 on one day (a week boundary of the first period below)
                image(NOW - 16 * DAY + 2 * HOUR, 2),
                image(NOW - 16 * DAY + 10 * HOUR, 3),
                // either side of the first period's start, one day
                image(NOW - 30 * DAY + HOUR, 5),
                image(NOW - 30 * DAY + 8 * HOUR, 7),
                // another product of the category, for the period without a whole day
                observation(
                    "stability.dreamstudio",
                    "image_generation",
                    NOW - 10 * DAY + 5 * HOUR,
                ),
                observation(
                    "stability.dreamstudio",
                    "image_generation",
                    NOW - 9 * DAY + HOUR,
                ),
                // either side of the second period's end
                by_user(image(NOW - 2 * DAY + 3 * HOUR, 1), "carol"),
                by_user(image(NOW - 2 * DAY + 9 * HOUR, 4), "carol"),
            ],
        ),
        // one day of ChatGPT on host 0 in two batches: the second moves the day's last time
        (
            0,
            vec![by_user(
                observation("openai.chatgpt", "chat", NOW - 16 * DAY + 3 * HOUR),
                USERS[0],
            )],
        ),
        (
            0,
            vec![by_user(
                observation("openai.chatgpt", "chat", NOW - 16 * DAY + 9 * HOUR),
                USERS[0],
            )],
        ),
        (
            1,
            vec![observation(
                "openai.chatgpt",
                "chat",
                NOW - 20 * DAY + 12 * HOUR,
            )],
        ),
    ];
    for (index, batch) in batches {
        db.store
            .insert_observations(agents[index], &batch, NOW - HOUR)
            .await
            .unwrap();
    }
    let periods = [
        (NOW - 30 * DAY + 6 * HOUR, NOW - 5 * HOUR),
        (NOW - 30 * DAY - 3 * HOUR, NOW - 2 * DAY + 7 * HOUR),
        // no whole day: raw observations only
        (NOW - 10 * DAY + 1, NOW - 9 * DAY + 2 * HOUR),
        (NOW - 20 * DAY + 11 * HOUR, NOW - 12 * DAY - HOUR),
        (SINCE, NOW),
        // more than 62 weeks: one row per week instead of week bit sets
        (NOW - 70 * WEEK + 3 * HOUR, NOW - HOUR),
    ];
    for (since, until) in periods {
        check_usage_figures(db, since, until).await;
    }
}

/// The report's usage figures for `[since, until)` (and the period before) against SQL over raw
/// observations: hosts and users with AI, by category, per product (hosts, users, events, plans)
/// and every point of the weekly trends.
async fn check_usage_figures(db: &TestDb, since: i64, until: i64) {
    let request = ReportRequest {
        since_ms: since,
        until_ms: until,
        group: None,
        namer: Namer::plain(),
    };
    let report = report::data::build(&db.store, &request, NOW).await.unwrap();
    let Rendered::File(bytes) = report::render(&report, Format::Json).unwrap() else {
        panic!("json is one file")
    };
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let url = &db.url;
    let at = format!("[{since}, {until})");
    let before = since - (until - since);
    let hosts_sql = format!(
        "SELECT COUNT(DISTINCT o.agent_id) FROM observations o WHERE {IN_PERIOD} AND o.product <> ''"
    );
    let users_sql = format!(
        "SELECT COUNT(DISTINCT o.process_user) FROM observations o WHERE {IN_PERIOD} \
         AND o.product <> '' AND o.process_user IS NOT NULL AND o.process_user <> ''"
    );
    let summary = &json["summary"];
    for (field, sql) in [
        ("hosts_with_unsanctioned_ai", &hosts_sql),
        ("users_with_unsanctioned_ai", &users_sql),
    ] {
        assert_eq!(
            i(&summary[field]["value"]),
            scalar(url, sql, &[Bind::I(since), Bind::I(until)]).await,
            "{at} {field}"
        );
        assert_eq!(
            i(&summary[field]["previous"]),
            scalar(url, sql, &[Bind::I(before), Bind::I(since)]).await,
            "{at} {field} previous"
        );
    }
    let categories = summary["by_category"].as_array().unwrap();
    assert_eq!(
        categories.len() as i64,
        scalar(
            url,
            &format!(
                "SELECT COUNT(DISTINCT o.category) FROM observations o WHERE {IN_PERIOD} AND o.product <> ''"
            ),
            &[Bind::I(since), Bind::I(until)]
        )
        .await,
        "{at}"
    );
    for row in categories {
        let category = row["category"].as_str().unwrap().to_owned();
        for (field, sql) in [("hosts", &hosts_sql), ("users", &users_sql)] {
            let sql = format!("{sql} AND o.category = $3");
            for (key, from, to) in [("value", since, until), ("previous", before, since)] {
                assert_eq!(
                    i(&row[field][key]),
                    scalar(
                        url,
                        &sql,
                        &[Bind::I(from), Bind::I(to), Bind::S(category.clone())]
                    )
                    .await,
                    "{at} {category} {field} {key}"
                );
            }
        }
    }
    let products = json["top_products"].as_array().unwrap();
    for row in products {
        let product = row["product"].as_str().unwrap().to_owned();
        let binds = [Bind::I(since), Bind::I(until), Bind::S(product.clone())];
        assert_eq!(
            i(&row["hosts"]),
            scalar(url, &format!("{hosts_sql} AND o.product = $3"), &binds).await,
            "{at} {product}"
        );
        assert_eq!(
            i(&row["users"]),
            scalar(url, &format!("{users_sql} AND o.product = $3"), &binds).await,
            "{at} {product}"
        );
        assert_eq!(
            i(&row["events"]),
            scalar(
                url,
                &format!(
                    "SELECT CAST(SUM(o.count) AS BIGINT) FROM observations o WHERE {IN_PERIOD} AND o.product = $3"
                ),
                &binds
            )
            .await,
            "{at} {product} events"
        );
        for (plan, hosts) in row["plans"].as_object().unwrap() {
            let condition = if plan == "unknown" {
                "(o.plan IS NULL OR o.plan = '')"
            } else {
                "o.plan = $4"
            };
            let mut binds = binds.to_vec();
            if plan != "unknown" {
                binds.push(Bind::S(plan.clone()));
            }
            assert_eq!(
                i(hosts),
                scalar(
                    url,
                    &format!("{hosts_sql} AND o.product = $3 AND {condition}"),
                    &binds
                )
                .await,
                "{at} {product} {plan}"
            );
        }
    }
    let weeks = json["trends"]["week_starts_ms"].as_array().unwrap();
    assert_eq!(
        weeks.len() as i64,
        (until - since + WEEK - 1) / WEEK,
        "{at}"
    );
    for (key, column) in [("by_category", "category"), ("top_products", "product")] {
        for series in json["trends"][key].as_array().unwrap() {
            let name = series["name"].as_str().unwrap().to_owned();
            for (week, value) in series["hosts"].as_array().unwrap().iter().enumerate() {
                let start = since + week as i64 * WEEK;
                let end = (start + WEEK).min(until);
                let expected = scalar(
                    url,
                    &format!("{hosts_sql} AND o.{column} = $3"),
                    &[Bind::I(start), Bind::I(end), Bind::S(name.clone())],
                )
                .await;
                assert_eq!(i(value), expected, "{at} {key} {name} week {week}");
            }
        }
    }
}
