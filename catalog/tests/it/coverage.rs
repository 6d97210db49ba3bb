//! Coverage: the numbers the catalog issue promises, counted from the catalog itself.

use shadowai_catalog::Category;

use crate::catalog;

#[test]
fn coverage_meets_the_catalog_issue() {
    let stats = catalog().stats();
    let wanted = [
        ("domain rules", stats.domain_rules, 1000),
        ("products", stats.products, 300),
        ("tool/process signatures", stats.process_signatures, 120),
        (
            "risky agent settings (flags and config settings)",
            stats.risky_total(),
            25,
        ),
        (
            "MCP clients with config paths on macOS, Windows and Linux",
            stats.mcp_clients_all_os,
            20,
        ),
        ("local server ports", stats.ports, 25),
    ];
    let short: Vec<String> = wanted
        .iter()
        .filter(|(_, have, want)| have < want)
        .map(|(what, have, want)| format!("{what}: {have} < {want}"))
        .collect();
    assert!(short.is_empty(), "{}\n\n{stats}", short.join("\n"));
}

#[test]
fn every_category_has_products_with_a_signal() {
    let stats = catalog().stats();
    for category in Category::ALL {
        let counts = stats.per_category[&category];
        assert!(
            counts.products > 0 && counts.domain_rules + counts.process_signatures > 0,
            "category {} is empty: {counts:?}",
            category.as_str()
        );
    }
}

#[test]
fn stats_add_up() {
    let catalog = catalog();
    let stats = catalog.stats();
    let per_category: usize = stats.per_category.values().map(|c| c.products).sum();
    assert_eq!(per_category, stats.products);
    assert_eq!(stats.products, catalog.products().len());
    let domains: usize = catalog.products().iter().map(|p| p.domains.len()).sum();
    assert_eq!(domains, stats.domain_rules);
    assert_eq!(catalog.config_locations().count(), stats.config_locations);
    assert_eq!(catalog.apps().count(), stats.apps);
    assert!(stats.mcp_clients_all_os <= stats.mcp_clients);
    let text = stats.to_string();
    assert!(
        text.contains(&format!("domain rules        {}", stats.domain_rules)),
        "{text}"
    );
}
