//! Broken data files are refused with file and line, through one `check(toml, expect)` helper.
//!
//! `expect` is a fragment that must appear in the problem for `data/test.toml`, starting with
//! its line, e.g. `"data/test.toml:9: domain"`.

use shadowai_catalog::{Catalog, CatalogError};

const HEADER: &str = r#"[[product]]
id = "acme.thing"
vendor = "Acme"
name = "Thing"
category = "chat_app"
sources = ["https://acme.example/thing"]
verified = "2026-11-21"
"#;

#[track_caller]
fn check(toml: &str, expect: &str) {
    let files = vec![("data/test.toml".to_owned(), toml.to_owned())];
    match Catalog::from_files("1", files) {
        Ok(_) => panic!("expected a problem containing {expect:?}, but the catalog loaded"),
        Err(CatalogError::Invalid(problems)) => {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            assert!(
                text.iter().any(|problem| problem.contains(expect)),
                "expected {expect:?} in {text:#?}"
            );
        }
        Err(other) => panic!("expected a data problem, got {other}"),
    }
}

#[test]
fn a_valid_file_loads() {
    let toml = format!("{HEADER}domains = [{{ exact = \"thing.acme.example\" }}]\n");
    let catalog = Catalog::from_files("1", vec![("data/test.toml".into(), toml)]).unwrap();
    assert_eq!(catalog.products().len(), 1);
}

#[test]
fn unknown_keys_are_refused() {
    check(
        &format!("{HEADER}colour = \"red\"\ndomains = [{{ exact = \"a.example\" }}]\n"),
        "data/test.toml:8: unknown field `colour`",
    );
    check(
        &format!("{HEADER}domains = [{{ exact = \"a.example\", regex = \"a\" }}]\n"),
        "data/test.toml:8: unknown field `regex`",
    );
    check(
        &format!("{HEADER}\n[[product.process]]\nid = \"x\"\nnames = [\"x\"]\nargz = [\"y\"]\n"),
        "data/test.toml:12: unknown field `argz`",
    );
}

#[test]
fn wrong_values_are_refused() {
    check(
        &HEADER.replace("chat_app", "chatbot"),
        "data/test.toml:5: unknown variant `chatbot`",
    );
    check(
        &HEADER.replace("2026-11-21", "yesterday"),
        "data/test.toml:7: verified",
    );
    check(
        &HEADER.replace("https://acme.example/thing", "acme.example"),
        "data/test.toml:6: source",
    );
    check(
        &HEADER.replace("acme.thing", "Acme Thing"),
        "data/test.toml:2: product id",
    );
    check(
        &HEADER.replace("\"Acme\"", "\"\""),
        "data/test.toml:3: vendor",
    );
    check(
        HEADER,
        "data/test.toml:1: product `acme.thing` has neither domains nor process rules",
    );
    check("", "data/test.toml:1: file declares no [[product]]");
    check("[[product]\n", "data/test.toml:1:");
}

#[test]
fn malformed_domains_are_refused() {
    let with = |domain: &str| {
        format!("{HEADER}domains = [\n  {{ exact = \"a.example\" }},\n  {domain},\n]\n")
    };
    check(
        &with("{ exact = \"Upper.example\" }"),
        "data/test.toml:10: domain `Upper.example`",
    );
    check(
        &with("{ suffix = \"com\" }"),
        "data/test.toml:10: domain `com`: needs at least two labels",
    );
    check(
        &with("{ suffix = \"a..example\" }"),
        "data/test.toml:10: domain `a..example`",
    );
    check(
        &with("{ wildcard = \"*.example\" }"),
        "data/test.toml:10: domain `*.example`: the last two labels must be literal",
    );
    check(
        &with("{ suffix = \"*.b.example\" }"),
        "data/test.toml:10: domain `*.b.example`: `*` belongs in a `wildcard` pattern",
    );
    check(
        &with("{ wildcard = \"b.example\" }"),
        "data/test.toml:10: domain `b.example`: a wildcard pattern needs exactly one `*`",
    );
    check(
        &with("{ wildcard = \"*-*.b.example\" }"),
        "data/test.toml:10: domain `*-*.b.example`: a wildcard pattern needs exactly one `*`",
    );
    check(
        &with("{ exact = \"b.example\", tenant = true }"),
        "data/test.toml:10: domain `b.example`: `tenant` needs a `suffix`",
    );
    check(
        &with("{ suffix = \"b.example\", wildcard = \"*.c.example\" }"),
        "data/test.toml:10: a domain entry needs exactly one of `exact`, `suffix` or `wildcard`",
    );
    check(
        &with("{ exact = \"b.example\", suffix = \"c.example\" }"),
        "data/test.toml:10: a domain entry needs exactly one",
    );
    check(
        &with("{ plan = \"x\" }"),
        "data/test.toml:10: a domain entry needs exactly one",
    );
    check(
        &with("{ suffix = \"b.example\", plan = \"{*}\" }"),
        "data/test.toml:10: domain `b.example`: plan uses `{*}`",
    );
}

#[test]
fn shared_infrastructure_and_look_alikes_are_refused() {
    let with = |domain: &str| format!("{HEADER}domains = [{{ suffix = \"{domain}\" }}]\n");
    for shared in [
        "google.com",
        "googleapis.com",
        "github.com",
        "amazonaws.com",
        "azure.com",
        "cloudfront.net",
        "blob.core.windows.net",
        "sentry.io",
        "statsig.com",
        "gemini.com",
    ] {
        check(
            &with(shared),
            &format!("data/test.toml:8: domain `{shared}`: `{shared}` is shared infrastructure"),
        );
    }
    let wildcard = |domain: &str| format!("{HEADER}domains = [{{ wildcard = \"{domain}\" }}]\n");
    check(&wildcard("*.amazonaws.com"), "is shared infrastructure");
    check(&wildcard("*.googleapis.com"), "is shared infrastructure");
    let tenant =
        |domain: &str| format!("{HEADER}domains = [{{ suffix = \"{domain}\", tenant = true }}]\n");
    check(&tenant("azure.com"), "is shared infrastructure");
}

#[test]
fn invalid_process_rules_are_refused() {
    let with = |body: &str| format!("{HEADER}\n[[product.process]]\nid = \"rule\"\n{body}\n");
    check(
        &with("cmdline = ['(unclosed']"),
        "data/test.toml:11: cmdline regex `(unclosed` is invalid",
    );
    check(
        &with("exe.windows = ['C:\\Program Files\\x.exe']"),
        "data/test.toml:11: exe glob",
    );
    check(
        &with("confidence = \"high\""),
        "data/test.toml:9: process rule `rule` needs `names`, `exe` or `cmdline`",
    );
    check(
        &with("names = [\"a/b\"]"),
        "data/test.toml:9: process name `a/b`",
    );
    check(
        &with("names = [\"x\"]\nargs = [\"two words\"]"),
        "data/test.toml:9: argument `two words`",
    );
    check(
        &with("names = [\"x\"]\nruntime = \"ruby\""),
        "data/test.toml:12: unknown variant `ruby`",
    );
    check(
        &format!(
            "{HEADER}\n[[product.process]]\nid = \"a\"\nnames = [\"x\"]\n\n[[product.process]]\nid = \"a\"\nnames = [\"y\"]\n"
        ),
        "data/test.toml:13: duplicate process rule id `a`",
    );
}

#[test]
fn invalid_risky_flags_are_refused() {
    let with = |body: &str| {
        format!(
            "{HEADER}\n[[product.process]]\nid = \"rule\"\nnames = [\"x\"]\n\n[[product.risky_flag]]\n{body}\n"
        )
    };
    check(
        &with("flag = \"--yolo\"\nrisk = [\"yolo\"]\nseverity = \"high\"\nexplanation = \"x\""),
        "data/test.toml:13: unknown risk `yolo`",
    );
    check(
        &with(
            "flag = \"yolo\"\nrisk = [\"approval_bypass\"]\nseverity = \"high\"\nexplanation = \"x\"",
        ),
        "data/test.toml:13: risky flag `yolo`",
    );
    check(
        &with(
            "flag = \"--yolo\"\nrisk = [\"approval_bypass\"]\nseverity = \"extreme\"\nexplanation = \"x\"",
        ),
        "unknown variant `extreme`",
    );
    check(
        &with("flag = \"--yolo\"\nrisk = []\nseverity = \"high\"\nexplanation = \"x\""),
        "data/test.toml:13: risky flag `--yolo` raises no risk",
    );
    check(
        &format!(
            "{HEADER}domains = [{{ exact = \"a.example\" }}]\n\n[[product.risky_flag]]\nflag = \"--yolo\"\nrisk = [\"approval_bypass\"]\nseverity = \"high\"\nexplanation = \"x\"\n"
        ),
        "product `acme.thing` has risky flags but no process rule",
    );
}

#[test]
fn duplicates_across_files_are_refused_with_both_places() {
    let first = format!("{HEADER}domains = [{{ exact = \"a.example\" }}]\n");
    let second = format!("{HEADER}domains = [{{ exact = \"b.example\" }}]\n");
    let files = vec![
        ("data/one.toml".to_owned(), first.clone()),
        ("data/two.toml".to_owned(), second),
    ];
    let error = Catalog::from_files("1", files).unwrap_err().to_string();
    assert!(
        error.contains(
            "data/two.toml:2: duplicate product id `acme.thing` (first declared at data/one.toml:2)"
        ),
        "{error}"
    );

    let other = first.replace("acme.thing", "acme.other");
    let files = vec![
        ("data/one.toml".to_owned(), first),
        ("data/two.toml".to_owned(), other),
    ];
    let error = Catalog::from_files("1", files).unwrap_err().to_string();
    assert!(error.contains("data/two.toml:8: domain `a.example` is already a rule of `acme.thing` at data/one.toml:8"), "{error}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let toml =
        format!("{HEADER}domains = [{{ exact = \"github.com\" }}, {{ suffix = \"com\" }}]\n")
            .replace("chat_app", "chat_app")
            .replace("2026-11-21", "soon");
    let error = Catalog::from_files("1", vec![("data/test.toml".into(), toml)]).unwrap_err();
    let CatalogError::Invalid(problems) = error else {
        panic!("expected data problems")
    };
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn overlapping_rules_of_different_vendors_are_refused_naming_both() {
    let acme = format!("{HEADER}domains = [{{ suffix = \"acme.example\" }}]\n");
    let globex = |domain: &str| {
        HEADER
            .replace("acme.thing", "globex.thing")
            .replace("\"Acme\"", "\"Globex\"")
            + &format!("domains = [{{ {domain} }}]\n")
    };
    for (domain, kind_and_pattern) in [
        ("exact = \"api.acme.example\"", "exact api.acme.example"),
        ("suffix = \"eu.acme.example\"", "suffix eu.acme.example"),
        (
            "wildcard = \"*.eu.acme.example\"",
            "wildcard *.eu.acme.example",
        ),
        (
            "suffix = \"eu.acme.example\", tenant = true",
            "suffix eu.acme.example",
        ),
    ] {
        let files = vec![
            ("data/acme.toml".to_owned(), acme.clone()),
            ("data/globex.toml".to_owned(), globex(domain)),
        ];
        let error = Catalog::from_files("1", files).unwrap_err().to_string();
        let expected = format!(
            "data/globex.toml:8: domain rule `{kind_and_pattern}` of `globex.thing` overlaps `suffix acme.example` of `acme.thing` at data/acme.toml:8"
        );
        assert!(error.contains(&expected), "{error}");
    }
    // Names that cannot be the same do not overlap.
    for domain in [
        "exact = \"acme.example.org\"",
        "suffix = \"notacme.example\"",
        "wildcard = \"acme-*.other.example\"",
    ] {
        let files = vec![
            ("data/acme.toml".to_owned(), acme.clone()),
            ("data/globex.toml".to_owned(), globex(domain)),
        ];
        assert!(Catalog::from_files("1", files).is_ok(), "{domain}");
    }
}

#[test]
fn rules_of_one_vendor_may_nest_and_the_most_specific_wins() {
    let site =
        format!("{HEADER}domains = [{{ suffix = \"acme.example\", confidence = \"low\" }}]\n");
    let chat = HEADER.replace("acme.thing", "acme.chat")
        + "domains = [{ suffix = \"chat.acme.example\" }, { exact = \"acme.example\" }]\n";
    let files = vec![
        ("data/acme.toml".to_owned(), site),
        ("data/acme-chat.toml".to_owned(), chat),
    ];
    let catalog = Catalog::from_files("1", files).unwrap();
    let product = |name: &str| {
        catalog
            .match_domain(name)
            .map(|found| found.product.id.clone())
    };
    assert_eq!(product("www.acme.example").as_deref(), Some("acme.thing"));
    assert_eq!(product("x.chat.acme.example").as_deref(), Some("acme.chat"));
    assert_eq!(product("acme.example").as_deref(), Some("acme.chat"));
}

#[test]
fn the_same_pattern_twice_is_refused_even_within_one_product() {
    check(
        &format!(
            "{HEADER}domains = [{{ suffix = \"a.example\" }}, {{ suffix = \"a.example\", tenant = true }}]\n"
        ),
        "data/test.toml:8: domain `a.example` is already a rule of `acme.thing` at data/test.toml:8",
    );
}

const CONFIG: &str = r#"
[[product.config]]
id = "settings"
kind = "settings"
format = "json"
paths.linux = ["~/.acme/settings.json"]
paths.macos = ["~/.acme/settings.json"]
paths.windows = ['%USERPROFILE%\.acme\settings.json']

[[product.config.setting]]
id = "yolo"
key = "permissions.mode"
equals = "yolo"
risk = ["approval_bypass"]
severity = "critical"
explanation = "Runs every tool without asking."
"#;

#[test]
fn config_files_and_settings_load() {
    let toml = format!("{HEADER}{CONFIG}");
    let catalog = Catalog::from_files("1", vec![("data/test.toml".into(), toml)]).unwrap();
    let locations: Vec<_> = catalog.config_locations().collect();
    assert_eq!(locations.len(), 1);
    let config = locations[0].config;
    assert_eq!(config.id, "data/test.toml#acme.thing/config/settings");
    assert_eq!(
        config.settings[0].id,
        "data/test.toml#acme.thing/config/settings/yolo"
    );
    assert_eq!(
        config.paths_for(shadowai_catalog::Os::Windows),
        [r"%USERPROFILE%\.acme\settings.json"]
    );
    let stats = catalog.stats();
    assert_eq!((stats.risky_settings, stats.risky_total()), (1, 1));
    assert_eq!(stats.mcp_clients, 0);
}

#[test]
fn invalid_config_entries_are_refused_with_their_line() {
    let with = |from: &str, to: &str| format!("{HEADER}{}", CONFIG.replace(from, to));
    check(
        &with("kind = \"settings\"", "kind = \"secrets\""),
        "data/test.toml:11: unknown variant `secrets`",
    );
    check(
        &with("format = \"json\"", "format = \"ini\""),
        "data/test.toml:12: unknown variant `ini`",
    );
    check(
        &with("kind = \"settings\"", "kind = \"mcp\""),
        "data/test.toml:9: config `settings` of kind `mcp` needs `mcp_key`",
    );
    check(
        &with(
            "format = \"json\"",
            "format = \"json\"\nmcp_key = \"mcpServers\"",
        ),
        "data/test.toml:9: config `settings`: `mcp_key` belongs to `kind = \"mcp\"`",
    );
    check(
        &with(
            "~/.acme/settings.json\"]\npaths.macos",
            "$HOME/.acme/settings.json\"]\npaths.macos",
        ),
        "data/test.toml:9: config `settings`: paths.linux `$HOME/.acme/settings.json`: environment variables are not expanded",
    );
    check(
        &with("%USERPROFILE%", "%TEMP%"),
        "data/test.toml:9: config `settings`: paths.windows",
    );
    check(
        &with(
            "paths.linux = [\"~/.acme/settings.json\"]",
            "paths.linux = [\"acme/settings.json\"]",
        ),
        "must start with `~/`, `/`, `./`",
    );
    check(&with("paths.linux", "paths.bsd"), "data/test.toml:");
    check(
        &with("equals = \"yolo\"", "equals = \"yolo\"\nis_true = true"),
        "data/test.toml:17: setting `yolo` needs exactly one of `equals`, `is_true = true` or a non-empty `contains`",
    );
    check(
        &with("equals = \"yolo\"", ""),
        "data/test.toml:17: setting `yolo` needs exactly one of",
    );
    check(
        &with("equals = \"yolo\"", "is_true = false"),
        "data/test.toml:17: setting `yolo`: `is_true` can only be `true`",
    );
    check(
        &with("risk = [\"approval_bypass\"]", "risk = [\"yolo\"]"),
        "data/test.toml:17: unknown risk `yolo`",
    );
    check(
        &with("key = \"permissions.mode\"", "key = \"permissions..mode\""),
        "data/test.toml:17: key `permissions..mode`: has an empty segment",
    );
    check(
        &with("severity = \"critical\"", "severity = \"dire\""),
        "unknown variant `dire`",
    );
    check(
        &with(
            "explanation = \"Runs every tool without asking.\"",
            "explanation = \" \"",
        ),
        "data/test.toml:17: setting `yolo` needs an explanation",
    );
    check(
        &with("id = \"yolo\"", "id = \"yolo\"\nwhen = \"always\""),
        "unknown field `when`",
    );
    check(
        &format!("{HEADER}{CONFIG}{CONFIG}"),
        "duplicate config id `settings`",
    );
}

#[test]
fn apps_and_extensions_are_checked() {
    let app = |body: &str| format!("{HEADER}\n[[product.app]]\nid = \"desktop\"\n{body}\n");
    let catalog = Catalog::from_files(
        "1",
        vec![(
            "data/test.toml".into(),
            app(
                "macos_bundle_id = \"com.acme.thing\"\npaths.macos = [\"/Applications/Thing.app\"]",
            ),
        )],
    )
    .unwrap();
    let apps: Vec<_> = catalog.apps().collect();
    assert_eq!(
        apps[0].app.macos_bundle_id.as_deref(),
        Some("com.acme.thing")
    );
    assert_eq!(apps[0].app.id, "data/test.toml#acme.thing/app/desktop");
    check(
        &app(""),
        "data/test.toml:9: app `desktop` needs `macos_bundle_id` or `paths`",
    );
    check(
        &app("macos_bundle_id = \"Thing\""),
        "data/test.toml:9: macos_bundle_id `Thing`",
    );
    check(
        &app("paths.windows = ['C:Thing.exe']"),
        "data/test.toml:9: app `desktop`: paths.windows `C:Thing.exe`",
    );

    let extensions = |list: &str| format!("{HEADER}extensions = [{list}]\n");
    let catalog = Catalog::from_files(
        "1",
        vec![("data/test.toml".into(), extensions("\"Acme.Thing\""))],
    )
    .unwrap();
    let found = catalog.extension("acme.thing").unwrap();
    assert_eq!(found.product.id, "acme.thing");
    assert_eq!(
        found.extension.id,
        "data/test.toml#acme.thing/extension/Acme.Thing"
    );
    assert!(catalog.extension("acme.other").is_none());
    check(&extensions("\"a b\""), "data/test.toml:8: extension `a b`");
    check(
        &extensions("\"acme.thing\", \"Acme.Thing\""),
        "data/test.toml:8: extension `Acme.Thing` is listed twice",
    );
    let other = HEADER.replace("acme.thing", "acme.other") + "extensions = [\"ACME.thing\"]\n";
    let files = vec![
        ("data/one.toml".to_owned(), extensions("\"acme.thing\"")),
        ("data/two.toml".to_owned(), other),
    ];
    let error = Catalog::from_files("1", files).unwrap_err().to_string();
    assert!(
        error.contains("data/two.toml:8: extension `ACME.thing` is already listed by `acme.thing` at data/one.toml:8"),
        "{error}"
    );
}

const VISIBILITY: &str = r#"[visibility]
sources = ["https://acme.example/doh"]
verified = "2026-11-21"
"#;

#[test]
fn visibility_lists_load_and_are_checked() {
    let toml = format!(
        "{VISIBILITY}doh_resolvers = [\"doh.acme.example\"]\nech_public_names = [\"front.acme.example\"]\n"
    );
    let catalog = Catalog::from_files("1", vec![("data/test.toml".into(), toml)]).unwrap();
    assert_eq!(
        catalog.doh_resolver("DOH.acme.example."),
        Some("doh.acme.example")
    );
    assert_eq!(
        catalog.ech_public_name("front.acme.example"),
        Some("front.acme.example")
    );
    assert_eq!(catalog.doh_resolver("front.acme.example"), None);

    check(
        &format!("{VISIBILITY}doh_resolvers = [\"Doh.acme.example\"]\n"),
        "data/test.toml:4: doh_resolvers: `Doh.acme.example`",
    );
    check(
        &format!("{VISIBILITY}doh_resolvers = [\"a.example\", \"a.example\"]\n"),
        "listed twice",
    );
    check(
        &format!("{VISIBILITY}ech_public_names = [\"bad name\"]\n"),
        "ech_public_names: `bad name`",
    );
    check(VISIBILITY, "[visibility] lists no names");
    check(
        &format!(
            "{}doh_resolvers = [\"a.example\"]\n",
            VISIBILITY.replace("2026-11-21", "soon")
        ),
        "verified `soon` must be a date",
    );
    check("", "file declares no [[product]]");
}
