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
        &format!("{HEADER}domains = [{{ exact = \"a.example\", wildcard = true }}]\n"),
        "data/test.toml:8: unknown field `wildcard`",
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
        &with("{ suffix = \"*.example\" }"),
        "data/test.toml:10: domain `*.example`: the last two labels must be literal",
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
    check(&with("*.amazonaws.com"), "is shared infrastructure");
}

#[test]
fn invalid_process_rules_are_refused() {
    let with = |body: &str| format!("{HEADER}\n[[product.process]]\nid = \"rule\"\n{body}\n");
    check(
        &with("cmdline = ['(unclosed']"),
        "data/test.toml:9: cmdline regex `(unclosed` is invalid",
    );
    check(
        &with("exe.windows = ['C:\\Program Files\\x.exe']"),
        "data/test.toml:9: exe glob",
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
