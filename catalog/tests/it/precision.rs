//! Precision: popular non-AI domains and look-alikes never match (`tests/fixtures/not-ai.txt`).

use std::collections::BTreeSet;

use crate::catalog;

fn not_ai() -> Vec<&'static str> {
    include_str!("../fixtures/not-ai.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[test]
fn popular_non_ai_domains_and_look_alikes_match_nothing() {
    let names = not_ai();
    assert!(
        names.len() >= 300,
        "the precision list needs at least 300 names, has {}",
        names.len()
    );
    let matched: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let found = catalog().match_domain(name)?;
            Some(format!("{name} -> {} ({})", found.product.id, found.rule))
        })
        .collect();
    assert!(
        matched.is_empty(),
        "non-AI names matched; narrow these rules to AI-specific hosts:\n{}",
        matched.join("\n")
    );
}

#[test]
fn the_precision_list_is_well_formed() {
    let names = not_ai();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate names in not-ai.txt");
    for name in names {
        assert_eq!(
            shadowai_catalog::normalize_domain(name).as_deref(),
            Some(name),
            "`{name}` must be a lowercase DNS name, or the test would prove nothing"
        );
    }
}
