use super::*;

#[test]
fn normalisation_lowercases_and_strips_one_trailing_dot() {
    assert_eq!(
        normalize_domain("API.OpenAI.com.").as_deref(),
        Some("api.openai.com")
    );
    assert!(matches!(
        normalize_domain("chatgpt.com"),
        Some(Cow::Borrowed("chatgpt.com"))
    ));
    assert_eq!(
        normalize_domain("xn--bcher-kva.example").as_deref(),
        Some("xn--bcher-kva.example")
    );
}

#[test]
fn unicode_names_become_punycode() {
    assert_eq!(
        normalize_domain("Bücher.example").as_deref(),
        Some("xn--bcher-kva.example")
    );
    // UTS #46 maps the ideographic full stop to a dot, as browsers do.
    assert_eq!(
        normalize_domain("ChatGPT。com").as_deref(),
        Some("chatgpt.com")
    );
    assert_eq!(normalize_domain("bad\u{0}name.example"), None);
    assert_eq!(normalize_domain(&"ü".repeat(2000)), None);
}

#[test]
fn normalisation_refuses_what_is_not_a_dns_name() {
    for hostile in [
        "",
        ".",
        "..",
        "a..b",
        ".a.b",
        "chatgpt.com..",
        "a b.com",
        "a*.com",
        "<script>.com",
        &"a".repeat(64),
        &format!("{}.com", "a.".repeat(130)),
    ] {
        assert_eq!(normalize_domain(hostile), None, "{hostile:?}");
    }
}

#[test]
fn patterns_are_checked() {
    use DomainKind::{Exact, Suffix, Wildcard};
    assert!(check_pattern("chatgpt.com", Exact).is_ok());
    assert!(check_pattern("openai.azure.com", Suffix).is_ok());
    assert!(check_pattern("*.openai.azure.com", Wildcard).is_ok());
    assert!(check_pattern("bedrock-runtime.*.amazonaws.com", Wildcard).is_ok());
    assert!(check_pattern("*-aiplatform.googleapis.com", Wildcard).is_ok());
    assert!(check_pattern("chatgpt-async-webps-prod-*.webpubsub.azure.com", Wildcard).is_ok());
    assert!(check_pattern("xn--bcher-kva.example", Exact).is_ok());
    for (bad, kind) in [
        ("com", Exact),
        ("ChatGPT.com", Exact),
        ("chatgpt.com.", Exact),
        ("*.openai.azure.com", Exact),
        ("*.openai.azure.com", Suffix),
        ("openai.azure.com", Wildcard),
        ("*.*.example.com", Wildcard),
        ("a*b*.example.com", Wildcard),
        ("*.com", Wildcard),
        ("a.*.com", Wildcard),
        ("x.*example.com", Wildcard),
        ("-a.example.com", Exact),
        ("a_b.example.com", Exact),
        ("github.com", Suffix),
        ("*.amazonaws.com", Wildcard),
        ("*.googleapis.com", Wildcard),
        ("gemini.com", Exact),
        ("blob.core.windows.net", Suffix),
    ] {
        assert!(check_pattern(bad, kind).is_err(), "{bad} as {kind:?}");
    }
}

#[test]
fn plans_are_checked() {
    assert!(check_plan(DomainKind::Suffix, "business").is_ok());
    assert!(check_plan(DomainKind::Wildcard, "region {*}").is_ok());
    assert!(check_plan(DomainKind::Exact, "{*}").is_err());
    assert!(check_plan(DomainKind::Wildcard, "{x}").is_err());
    assert!(check_plan(DomainKind::Suffix, "").is_err());
    assert!(check_plan(DomainKind::Suffix, &"p".repeat(65)).is_err());
}

/// Builds an index over `(pattern, kind, tenant)` and answers with the index of the rule.
fn index(rules: &[(&str, DomainKind, bool)]) -> DomainIndex {
    DomainIndex::build(
        rules
            .iter()
            .enumerate()
            .map(|(at, (pattern, kind, tenant))| IndexRule {
                rule: RuleRef {
                    product: 0,
                    rule: u32::try_from(at).unwrap(),
                },
                pattern,
                kind: *kind,
                tenant: *tenant,
            }),
    )
}

#[track_caller]
fn check(index: &DomainIndex, name: &str, expect: &str) {
    let actual = match index.lookup(name) {
        Err(Miss::NoMatch) => "-".to_owned(),
        Err(Miss::UpperCase) => "upper".to_owned(),
        Ok(hit) => format!(
            "{} star={} below={}",
            hit.rule.rule,
            hit.star.unwrap_or("-"),
            hit.below.unwrap_or("-")
        ),
    };
    assert_eq!(actual, expect, "lookup({name:?})");
}

#[test]
fn the_most_specific_rule_wins() {
    use DomainKind::{Exact, Suffix, Wildcard};
    let index = index(&[
        ("example.com", Suffix, false),
        ("api.example.com", Exact, false),
        ("*.eu.example.com", Wildcard, false),
        ("fr.eu.example.com", Exact, false),
        ("example.com", Exact, false),
    ]);
    check(&index, "example.com", "4 star=- below=-");
    check(&index, "www.example.com", "0 star=- below=www");
    check(&index, "api.example.com", "1 star=- below=-");
    check(&index, "v2.api.example.com", "0 star=- below=api");
    check(&index, "de.eu.example.com", "2 star=de below=-");
    check(&index, "fr.eu.example.com", "3 star=- below=-");
    check(&index, "x.de.eu.example.com", "0 star=- below=eu");
    check(&index, "example.org", "-");
    check(&index, "com", "-");
}

#[test]
fn lookups_check_the_name_as_they_read_it() {
    let index = index(&[("example.com", DomainKind::Suffix, false)]);
    check(&index, "www.Example.com", "upper");
    check(&index, "WWW.example.com", "upper");
    check(&index, "a..example.com", "-");
    check(&index, ".example.com", "-");
    check(&index, "a b.example.com", "-");
    check(&index, "\u{e9}.example.com", "-");
    check(&index, &format!("{}.example.com", "a".repeat(64)), "-");
    // A miss reads only what it needs: what lies left of it is never judged.
    check(&index, "a..example.org", "-");
}

#[test]
fn tenant_suffixes_need_a_label_below_them() {
    let index = index(&[("openai.azure.com", DomainKind::Suffix, true)]);
    check(&index, "openai.azure.com", "-");
    check(&index, "contoso.openai.azure.com", "0 star=- below=contoso");
    check(&index, "azure.com", "-");
}

#[test]
fn wildcards_match_part_of_one_label() {
    use DomainKind::Wildcard;
    let index = index(&[
        ("*-aiplatform.googleapis.com", Wildcard, false),
        ("bedrock-runtime.*.amazonaws.com", Wildcard, false),
        ("webps-prod-*.webpubsub.azure.com", Wildcard, false),
    ]);
    check(
        &index,
        "us-central1-aiplatform.googleapis.com",
        "0 star=us-central1 below=-",
    );
    check(&index, "-aiplatform.googleapis.com", "-");
    check(&index, "aiplatform.googleapis.com", "-");
    check(&index, "x.us-aiplatform.googleapis.com", "-");
    check(
        &index,
        "bedrock-runtime.eu-west-1.amazonaws.com",
        "1 star=eu-west-1 below=-",
    );
    check(&index, "bedrock.eu-west-1.amazonaws.com", "-");
    check(&index, "s3.eu-west-1.amazonaws.com", "-");
    check(&index, "x.bedrock-runtime.eu-west-1.amazonaws.com", "-");
    check(
        &index,
        "webps-prod-7.webpubsub.azure.com",
        "2 star=7 below=-",
    );
    check(&index, "webps-dev-7.webpubsub.azure.com", "-");
}

/// The hash of a whole suffix, as the index computes it label by label.
fn hash_of(suffix: &str) -> u64 {
    let bytes = suffix.as_bytes();
    let mut hash = SEED;
    let mut end = bytes.len();
    loop {
        let start = scan_label(bytes, end, &mut hash).unwrap();
        if start == 0 {
            return hash;
        }
        end = start - 1;
    }
}

#[test]
fn suffix_hashes_extend_label_by_label() {
    let whole = hash_of("openai.com");
    assert_ne!(whole, hash_of("openaic.om"));
    assert_ne!(whole, hash_of("com.openai"));
    assert_ne!(hash_of("abcdefgh.com"), hash_of("abcdefghcom"));
    assert_ne!(hash_of("a.example"), hash_of("b.example"));
    let mut index = DomainIndex::default();
    let node = index.insert_path("openai.com");
    assert_eq!(
        index.find(whole, "openai.com").map(|n| &*n.suffix),
        Some("openai.com")
    );
    assert_eq!(index.nodes[node].suffix.as_ref(), "openai.com");
    // A colliding hash for another suffix is chained, not confused.
    let other = index.node_for(whole, "other.example");
    assert_ne!(other, node);
    assert_eq!(
        index.find(whole, "other.example").map(|n| &*n.suffix),
        Some("other.example")
    );
    assert_eq!(
        index.find(whole, "openai.com").map(|n| &*n.suffix),
        Some("openai.com")
    );
    assert!(index.find(whole, "third.example").is_none());
}

#[test]
fn the_embedded_catalog_hashes_without_long_chains() {
    let catalog = crate::Catalog::embedded().unwrap();
    let index = &catalog.domains;
    let mut longest = 0;
    for first in index.table.values() {
        let mut length = 0;
        let mut cursor = *first;
        while cursor != NO_NODE {
            length += 1;
            cursor = index.nodes[cursor as usize].next;
        }
        longest = longest.max(length);
    }
    let wildcards = index
        .nodes
        .iter()
        .map(|n| n.wildcards.len())
        .max()
        .unwrap_or(0);
    assert!(
        wildcards <= 32,
        "{wildcards} wildcard rules share one tail: index them by more"
    );
    assert!(
        longest <= 2,
        "hash chains of {longest}: the suffix hash collides"
    );
}
