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
        Err(Miss::Unicode) => "unicode".to_owned(),
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
fn lookups_fold_case_and_check_every_byte_of_a_hit() {
    let index = index(&[("example.com", DomainKind::Suffix, false)]);
    check(&index, "www.Example.com", "0 star=- below=www");
    check(&index, "WWW.EXAMPLE.COM.", "0 star=- below=WWW");
    check(&index, "www.example.com.", "0 star=- below=www");
    check(&index, "www.example.com..", "-");
    check(&index, "a..example.com", "-");
    check(&index, ".example.com", "-");
    check(&index, "a b.example.com", "-");
    check(&index, "a\u{7f}.example.com", "-");
    check(&index, "a_b.example.com", "0 star=- below=a_b");
    check(&index, "@.example.com", "-");
    check(&index, "\r.example.com", "-");
    check(&index, "\u{e9}.example.com", "unicode");
    check(&index, "www.example.com\u{3002}", "unicode");
    check(&index, &format!("{}.example.com", "a".repeat(64)), "-");
    check(
        &index,
        &format!("{}.example.com", "a".repeat(63)),
        &format!("0 star=- below={}", "a".repeat(63)),
    );
    check(
        &index,
        &format!("{}example.com", "a.".repeat(121)),
        "0 star=- below=a",
    );
    check(&index, &format!("{}example.com", "a.".repeat(122)), "-");
    check(
        &index,
        &format!("{}example.com", "\u{e9}.".repeat(122)),
        "unicode",
    );
    check(&index, "", "-");
    check(&index, ".", "-");
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
    let prepared = Prepared::new(suffix.as_bytes()).unwrap();
    let mut hash = SEED;
    let mut end = prepared.len;
    loop {
        let start;
        (start, hash) = prepared.step(hash, end);
        if start == 0 {
            return hash;
        }
        end = start - 1;
    }
}

#[test]
fn suffix_hashes_extend_label_by_label_and_fold_case() {
    let whole = hash_of("openai.com");
    assert_eq!(whole, hash_of("OpenAI.COM"));
    assert_ne!(whole, hash_of("openaic.om"));
    assert_ne!(whole, hash_of("com.openai"));
    assert_ne!(hash_of("abcdefgh.com"), hash_of("abcdefghcom"));
    assert_ne!(hash_of("abcdefgh.com"), hash_of("hgfedcba.com"));
    assert_ne!(hash_of("abcdefgh"), hash_of("abcdefg"));
    assert_ne!(hash_of("abcdefgh"), hash_of("abcdefgh0"));
    assert_ne!(hash_of("x.abcdefgh"), hash_of("y.abcdefgh"));
    assert_ne!(hash_of("abcdefgh.com"), hash_of("abcdefgh\0.com"));
    assert_ne!(hash_of("a.example"), hash_of("b.example"));
    let long = "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxyz";
    assert_ne!(
        hash_of(&format!("{long}.com")),
        hash_of(&format!("{long}a.com"))
    );
}

#[test]
fn dots_are_found_in_every_position() {
    for len in 1..=MAX_NAME {
        for dot in 1..len.saturating_sub(1) {
            let mut name = vec![b'a'; len];
            name[dot] = b'.';
            let prepared = Prepared::new(&name).unwrap();
            assert_eq!(prepared.label_start(len), dot + 1, "{len} {dot}");
            assert_eq!(prepared.label_start(dot), 0, "{len} {dot}");
        }
    }
    assert_eq!(
        Prepared::new(&[b'a'; MAX_NAME + 1]).err(),
        Some(Miss::NoMatch)
    );
    assert_eq!(Prepared::new(b"").err(), Some(Miss::NoMatch));
    assert_eq!(
        Prepared::new("\u{e9}".as_bytes()).err(),
        Some(Miss::Unicode)
    );
}

/// Gives the suffix `victim` (a string the index holds) the hash of `name`'s suffix `decoy`,
/// as a hash collision would.
fn collide(index: &mut DomainIndex, victim: &str, decoy: &str) {
    let target = hash_of(decoy);
    let node = index
        .suffixes
        .iter()
        .position(|suffix| &**suffix == victim)
        .unwrap();
    let slots = index
        .slots
        .iter()
        .copied()
        .filter(|slot| slot.node != NO_NODE);
    let mut moved: Vec<Slot> = slots.collect();
    for slot in &mut moved {
        if slot.node as usize == node {
            slot.hash = target;
        }
    }
    let mask = index.slots.len() - 1;
    index.slots.fill(EMPTY_SLOT);
    for slot in moved {
        let mut at = home_slot(slot.hash) & mask;
        while index.slots[at].node != NO_NODE {
            at = (at + 1) & mask;
        }
        index.slots[at] = slot;
    }
}

#[test]
fn a_hash_collision_costs_time_not_a_wrong_answer() {
    use DomainKind::{Exact, Suffix};
    let mut index = index(&[
        ("example.com", Suffix, false),
        ("other.example.org", Exact, false),
    ]);
    check(&index, "api.example.com", "0 star=- below=api");
    // `other.example.org` now claims the hash of `api.example.com`: an unchecked walk offers
    // its exact rule for `api.example.com`, the confirmation refuses it, and the checked walk
    // finds the true answer.
    collide(&mut index, "other.example.org", "api.example.com");
    assert!(
        index
            .walk::<false>(
                "api.example.com",
                &Prepared::new(b"api.example.com").unwrap()
            )
            .is_some_and(|found| found.rule.rule == 1)
    );
    check(&index, "api.example.com", "0 star=- below=api");
    check(&index, "x.api.example.com", "0 star=- below=api");
    check(&index, "other.example.org", "-");
}

#[test]
fn the_checked_walk_agrees_with_the_fast_one() {
    let catalog = crate::Catalog::embedded().unwrap();
    let index = &catalog.domains;
    let mut names: Vec<String> = Vec::new();
    for product in catalog.products() {
        for rule in &product.domains {
            let pattern = rule.pattern.replace('*', "x1");
            names.push(pattern.clone());
            names.push(format!("a.{pattern}"));
            names.push(format!("a.b.{pattern}"));
            names.push(pattern.to_ascii_uppercase());
            if let Some((_, rest)) = pattern.split_once('.') {
                names.push(rest.to_owned());
                names.push(format!("zz.{rest}"));
            }
        }
    }
    let mut hits = 0;
    for name in &names {
        let prepared = Prepared::new(name.as_bytes()).unwrap();
        let fast = index.walk::<false>(name, &prepared);
        let checked = index.walk::<true>(name, &prepared);
        let key = |found: Option<Found>| found.map(|found| (found.rule, found.rank, found.start));
        assert_eq!(key(fast), key(checked), "{name}");
        if let Some(found) = fast {
            assert!(index.confirm(name, &found), "{name}");
            hits += 1;
        }
    }
    assert!(hits > names.len() / 2, "{hits} of {}", names.len());
}

#[test]
fn the_embedded_catalog_hashes_without_collisions_or_long_probes() {
    let catalog = crate::Catalog::embedded().unwrap();
    let index = &catalog.domains;
    assert!(
        !index.collisions,
        "two suffixes of the catalog share a hash"
    );
    let mask = index.slots.len() - 1;
    let mut longest = 0;
    for (at, slot) in index.slots.iter().enumerate() {
        if slot.node != NO_NODE {
            longest = longest.max(at.wrapping_sub(home_slot(slot.hash) & mask) & mask);
        }
    }
    assert!(
        longest <= 16,
        "a probe runs {longest} slots: the suffix hash clusters"
    );
    let largest_group = index
        .wildcard_slots
        .iter()
        .map(|slot| slot.count)
        .max()
        .unwrap_or(0);
    assert!(
        largest_group <= 4,
        "{largest_group} wildcard rules share one key: index them by more"
    );
}

#[test]
fn word_checks_agree_with_the_byte_table() {
    // Every ASCII byte at every position of a word, and a label of every length.
    for byte in 0..0x80u8 {
        for at in 0..12 {
            let mut name = vec![b'a'; 12];
            name[at] = byte;
            let prepared = Prepared::new(&name).unwrap();
            let text = std::str::from_utf8(&name).unwrap();
            let expect = check_labels(text).is_some();
            assert_eq!(
                prepared.labels_are_valid(0..name.len()),
                expect,
                "{byte:#x} at {at}"
            );
        }
    }
    for len in 1..=80 {
        let name = format!("{}.b", "a".repeat(len));
        let prepared = Prepared::new(name.as_bytes()).unwrap();
        assert_eq!(prepared.labels_are_valid(0..len), len <= MAX_LABEL, "{len}");
        assert_eq!(
            prepared.labels_are_valid(0..name.len()),
            len <= MAX_LABEL,
            "{len}"
        );
    }
}

#[test]
fn words_are_read_at_every_offset() {
    let text: Vec<u8> = (1..=40u8).collect();
    for len in 0..=text.len() {
        for at in 0..len + 9 {
            let expect = (0..8).fold(0u64, |word, k| {
                word | u64::from(*text[..len].get(at + k).unwrap_or(&0)) << (8 * k)
            });
            assert_eq!(word_at(&text[..len], at), expect, "{len} {at}");
        }
    }
}

#[test]
fn label_checks_agree_with_the_byte_table_for_every_dot_layout() {
    // Every string of `a` and `.` up to 14 bytes (dots at word edges and side by side).
    for len in 1..=14usize {
        for layout in 0..(1u32 << len) {
            let name: String = (0..len)
                .map(|at| if layout >> at & 1 == 1 { '.' } else { 'a' })
                .collect();
            let prepared = Prepared::new(name.as_bytes()).unwrap();
            assert_eq!(
                prepared.labels_are_valid(0..len),
                check_labels(&name).is_some(),
                "{name:?}"
            );
        }
    }
    // Labels of 62 to 65 bytes at every offset from a word edge.
    for lead in 0..9 {
        for label in 62..66 {
            let name = format!("{}{}.b", "a.".repeat(lead), "c".repeat(label));
            let prepared = Prepared::new(name.as_bytes()).unwrap();
            assert_eq!(
                prepared.labels_are_valid(0..name.len()),
                check_labels(&name).is_some(),
                "{name:?}"
            );
        }
    }
}

#[test]
fn a_step_finds_the_label_and_hashes_it_in_any_case() {
    for name in [
        "a.b",
        "abcdefg.hijklmn.com",
        "abcdefgh.abcdefghi.x",
        "x.abcdefghijklmnopq.abcdefg",
        "0123456.7",
        ".abc",
        "abc.",
        "a..b",
        "averyveryverylonglabel",
        "abcdefgh",
        "abcdefgh.com",
        "abcdefghabcdefgh.com",
        "x.abcdefgh.com",
    ] {
        let prepared = Prepared::new(name.as_bytes()).unwrap();
        let upper = name.to_ascii_uppercase();
        let shouting = Prepared::new(upper.as_bytes()).unwrap();
        let mut end = prepared.len;
        let mut hash = SEED;
        loop {
            let start = prepared.label_start(end);
            let (step_start, step_hash) = prepared.step(hash, end);
            assert_eq!(step_start, start, "{name} {end}");
            assert_eq!(
                shouting.step(hash, end),
                (step_start, step_hash),
                "{name} {end}"
            );
            // The same label alone hashes the same.
            let label = Prepared::new(&name.as_bytes()[start..end]);
            if let Ok(label) = label {
                assert_eq!(label.step(hash, label.len), (0, step_hash), "{name} {end}");
            }
            hash = step_hash;
            if start == 0 {
                break;
            }
            end = start - 1;
        }
    }
}

#[test]
fn labels_of_every_length_hash_apart() {
    let mut seen = std::collections::HashMap::new();
    for len in 1..=MAX_LABEL {
        for text in [
            "a".repeat(len),
            format!("{}.com", "a".repeat(len)),
            format!("b.{}", "a".repeat(len)),
            format!("{}b", "a".repeat(len - 1)),
        ] {
            if let Some(other) = seen.insert(hash_of(&text), text.clone()) {
                assert_eq!(other, text, "two names, one hash");
            }
        }
    }
}

#[test]
fn ascii_is_judged_at_every_position() {
    for len in 1..40 {
        for at in 0..len {
            let mut bytes = vec![b'a'; len];
            assert!(is_ascii(&bytes));
            bytes[at] = 0x80;
            assert!(!is_ascii(&bytes), "{len} {at}");
        }
    }
}
