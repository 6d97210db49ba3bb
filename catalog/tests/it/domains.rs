//! Domain lookups through one `check(name, expect)` helper.
//!
//! `expect` is `"-"` for no match, or `"<product> <pattern>"` plus ` plan=<plan>` and
//! ` tenant=<tenant>` when the match reveals a plan or a tenant.

use shadowai_catalog::{Catalog, SHARED_INFRASTRUCTURE};

use crate::catalog;

#[track_caller]
fn check_with(catalog: &Catalog, name: &str, expect: &str) {
    let actual = match catalog.match_domain(name) {
        None => "-".to_owned(),
        Some(found) => {
            let mut text = format!("{} {}", found.product.id, found.pattern);
            if let Some(plan) = &found.plan {
                text.push_str(&format!(" plan={plan}"));
            }
            if let Some(tenant) = &found.tenant {
                text.push_str(&format!(" tenant={tenant}"));
            }
            text
        }
    };
    assert_eq!(actual, expect, "match_domain({name:?})");
}

#[track_caller]
fn check(name: &str, expect: &str) {
    check_with(catalog(), name, expect);
}

#[test]
fn exact_and_suffix_rules() {
    check("chatgpt.com", "openai.chatgpt chatgpt.com");
    check("ab.chatgpt.com", "openai.chatgpt chatgpt.com");
    check("api.openai.com", "openai.api api.openai.com");
    check("cdn.openai.com", "openai.api openai.com");
    check("registry.ollama.ai", "ollama.ollama registry.ollama.ai");
    check("x.registry.ollama.ai", "-");
    check("ollama.com", "ollama.ollama ollama.com");
    check("gemini.google.com", "google.gemini gemini.google.com");
    check(
        "generativelanguage.googleapis.com",
        "google.gemini-api generativelanguage.googleapis.com",
    );
    check("api.anthropic.com", "anthropic.api api.anthropic.com");
    check("claude.ai", "anthropic.claude claude.ai");
    check("platform.claude.com", "anthropic.api platform.claude.com");
    check("api2.cursor.sh", "anysphere.cursor cursor.sh");
}

#[test]
fn case_and_trailing_dot_are_ignored() {
    check("ChatGPT.COM", "openai.chatgpt chatgpt.com");
    check("api.openai.com.", "openai.api api.openai.com");
    check("API.Anthropic.Com.", "anthropic.api api.anthropic.com");
    check("chatgpt.com..", "-");
}

#[test]
fn most_specific_rule_wins() {
    // statsig.anthropic.com is Claude Code's; the rest of anthropic.com is the vendor's site.
    check(
        "statsig.anthropic.com",
        "anthropic.claude-code statsig.anthropic.com",
    );
    check("www.anthropic.com", "anthropic.api anthropic.com");
}

#[test]
fn copilot_hosts_reveal_the_plan() {
    check("api.githubcopilot.com", "github.copilot githubcopilot.com");
    check(
        "api.individual.githubcopilot.com",
        "github.copilot individual.githubcopilot.com plan=individual",
    );
    check(
        "api.business.githubcopilot.com",
        "github.copilot business.githubcopilot.com plan=business",
    );
    check(
        "proxy.enterprise.githubcopilot.com",
        "github.copilot enterprise.githubcopilot.com plan=enterprise",
    );
    check(
        "copilot-proxy.githubusercontent.com",
        "github.copilot copilot-proxy.githubusercontent.com",
    );
}

#[test]
fn tenant_rules_name_the_tenant() {
    check(
        "contoso-prod.openai.azure.com",
        "microsoft.azure-openai openai.azure.com tenant=contoso-prod",
    );
    check(
        "Contoso-Prod.OpenAI.Azure.com.",
        "microsoft.azure-openai openai.azure.com tenant=contoso-prod",
    );
    // The bare suffix names no resource.
    check("openai.azure.com", "-");
}

const TENANTS: &str = r#"
[[product]]
id = "acme.cloud"
vendor = "Acme"
name = "Acme Cloud AI"
category = "model_api"
sources = ["https://acme.example/"]
verified = "2026-11-21"
domains = [
  { suffix = "ai.acme.example", tenant = true },
  { wildcard = "*.models.acme.example", tenant = true, plan = "models" },
  { wildcard = "runtime-*.acme.example", plan = "region {*}" },
  { exact = "console.ai.acme.example" },
]
"#;

#[test]
fn wildcards_and_tenants_reach_the_match() {
    let catalog =
        Catalog::from_files("1", vec![("data/acme.toml".into(), TENANTS.into())]).unwrap();
    let check = |name: &str, expect: &str| check_with(&catalog, name, expect);
    check(
        "globex.ai.acme.example",
        "acme.cloud ai.acme.example tenant=globex",
    );
    check(
        "api.globex.ai.acme.example",
        "acme.cloud ai.acme.example tenant=globex",
    );
    check("ai.acme.example", "-");
    check(
        "console.ai.acme.example",
        "acme.cloud console.ai.acme.example",
    );
    check(
        "initech.models.acme.example",
        "acme.cloud *.models.acme.example plan=models tenant=initech",
    );
    check("a.initech.models.acme.example", "-");
    check(
        "runtime-eu-west-1.acme.example",
        "acme.cloud runtime-*.acme.example plan=region eu-west-1",
    );
    check("runtime-.acme.example", "-");
    check("builder-eu.acme.example", "-");
    let found = catalog.match_domain("globex.ai.acme.example").unwrap();
    assert_eq!(
        found.reason,
        "domain is under `ai.acme.example`; the label left of it names the tenant"
    );
    let found = catalog.match_domain("runtime-x.acme.example").unwrap();
    assert_eq!(found.reason, "domain matches `runtime-*.acme.example`");
}

#[test]
fn shared_infrastructure_never_matches_on_its_own() {
    for name in [
        "google.com",
        "www.google.com",
        "googleapis.com",
        "storage.googleapis.com",
        "github.com",
        "api.github.com",
        "raw.githubusercontent.com",
        "microsoft.com",
        "amazonaws.com",
        "s3.amazonaws.com",
        "azure.com",
        "portal.azure.com",
        "cloudfront.net",
        "d111111abcdef8.cloudfront.net",
        "x.blob.core.windows.net",
        "sentry.io",
        "o1.ingest.sentry.io",
        "statsig.com",
        "api.statsig.com",
        "r2.cloudflarestorage.com",
        "livekit.cloud",
    ] {
        check(name, "-");
    }
    for shared in SHARED_INFRASTRUCTURE {
        check(shared, "-");
    }
}

#[test]
fn look_alikes_do_not_match() {
    check("gemini.com", "-");
    check("www.gemini.com", "-");
    check("exchange.gemini.com", "-");
    check("notchatgpt.com", "-");
    check("chatgpt.com.evil.example", "-");
    check("openai.com.evil.example", "-");
    check("myollama.com", "-");
}

#[test]
fn hostile_names_match_nothing() {
    for name in [
        "",
        ".",
        " chatgpt.com",
        "chatgpt.com ",
        "chatgpt.com\0",
        "<script>.chatgpt.com",
        "chatgpt.com/path",
        "user@chatgpt.com",
        "chatgpt\u{ff0f}com",
    ] {
        check(name, "-");
    }
    let long = format!("{}.chatgpt.com", "a".repeat(64));
    check(&long, "-");
    let deep = format!("{}chatgpt.com", "a.".repeat(125));
    check(&deep, "-");
    let just_fits = format!("{}chatgpt.com", "a.".repeat(100));
    check(&just_fits, "openai.chatgpt chatgpt.com");
}

#[test]
fn unicode_names_are_matched_in_their_punycode_form() {
    let content = r#"
[[product]]
id = "acme.idn"
vendor = "Acme"
name = "IDN"
category = "chat_app"
sources = ["https://acme.example/"]
verified = "2026-11-21"
domains = [{ suffix = "xn--bcher-kva.example" }]
"#;
    let catalog =
        Catalog::from_files("1", vec![("data/acme.toml".into(), content.into())]).unwrap();
    check_with(
        &catalog,
        "xn--bcher-kva.example",
        "acme.idn xn--bcher-kva.example",
    );
    check_with(
        &catalog,
        "chat.XN--BCHER-KVA.example.",
        "acme.idn xn--bcher-kva.example",
    );
    // A person may type the Unicode form: it is converted (UTS #46) before the lookup.
    check_with(&catalog, "bücher.example", "acme.idn xn--bcher-kva.example");
    check_with(
        &catalog,
        "Chat.BÜCHER.example",
        "acme.idn xn--bcher-kva.example",
    );
    check_with(&catalog, "bucher.example", "-");
    // UTS #46 maps the ideographic full stop to a dot, as a browser would.
    check("ChatGPT。com", "openai.chatgpt chatgpt.com");
}

#[test]
fn matches_explain_themselves() {
    let found = catalog()
        .match_domain("api.business.githubcopilot.com")
        .unwrap();
    assert_eq!(
        found.rule,
        "data/github.toml#github.copilot/domain/business.githubcopilot.com"
    );
    assert_eq!(
        found.reason,
        "domain is `business.githubcopilot.com` or under it"
    );
    assert_eq!(found.product.vendor, "GitHub");
    let found = catalog().match_domain("api.openai.com").unwrap();
    assert_eq!(found.reason, "domain is `api.openai.com`");
}
