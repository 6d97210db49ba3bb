//! Generated over the whole catalog: every rule's own pattern matches it, every extension and
//! config entry can be found, and the data is internally consistent.

use shadowai_catalog::{ConfigKind, DomainKind, Os, Product};

use crate::catalog;

/// A name the rule must match, and the tenant the match must report.
fn samples(pattern: &str, kind: DomainKind, tenant: bool) -> Vec<(String, Option<&'static str>)> {
    match (kind, tenant) {
        (DomainKind::Exact, _) => vec![(pattern.to_owned(), None)],
        (DomainKind::Suffix, false) => vec![
            (pattern.to_owned(), None),
            (format!("probe-1.{pattern}"), None),
            (format!("a.b.probe-2.{pattern}"), None),
        ],
        (DomainKind::Suffix, true) => vec![
            (format!("tenant-probe.{pattern}"), Some("tenant-probe")),
            (format!("api.tenant-probe.{pattern}"), Some("tenant-probe")),
        ],
        (DomainKind::Wildcard, false) => vec![(pattern.replace('*', "x1"), None)],
        (DomainKind::Wildcard, true) => vec![(pattern.replace('*', "x1"), Some("x1"))],
    }
}

#[test]
fn every_domain_rule_matches_its_own_pattern() {
    let catalog = catalog();
    let mut failures = Vec::new();
    let mut checked = 0;
    for product in catalog.products() {
        for rule in &product.domains {
            for (name, tenant) in samples(&rule.pattern, rule.kind, rule.tenant) {
                checked += 1;
                let Some(found) = catalog.match_domain(&name) else {
                    failures.push(format!("{name}: no match, expected {}", rule.id));
                    continue;
                };
                if found.rule == rule.id {
                    if found.tenant.as_deref() != tenant {
                        failures.push(format!(
                            "{name}: tenant {:?}, expected {tenant:?}",
                            found.tenant
                        ));
                    }
                    continue;
                }
                // Only a more specific rule of the same vendor may take the name over.
                if found.product.vendor_key() != product.vendor_key() {
                    failures.push(format!(
                        "{name}: matched {} of another vendor, expected {}",
                        found.rule, rule.id
                    ));
                }
            }
            if rule.kind == DomainKind::Suffix && rule.tenant {
                let bare = catalog.match_domain(&rule.pattern);
                if bare.is_some_and(|found| found.rule == rule.id) {
                    failures.push(format!(
                        "{}: a tenant rule matched its bare suffix",
                        rule.pattern
                    ));
                }
            }
        }
    }
    assert!(checked >= 1000, "only {checked} names checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deep_subdomains_and_upper_case_find_the_same_rule() {
    let catalog = catalog();
    for product in catalog.products() {
        for rule in product
            .domains
            .iter()
            .filter(|r| r.kind == DomainKind::Suffix && !r.tenant)
        {
            let deep = format!("a.b.c.d.e.f.{}", rule.pattern);
            let expected = catalog.match_domain(&deep).map(|found| found.rule);
            let upper = format!("{}.", deep.to_ascii_uppercase());
            assert_eq!(
                catalog.match_domain(&upper).map(|found| found.rule),
                expected,
                "{upper}"
            );
        }
    }
}

#[test]
fn every_extension_is_found_without_case() {
    let catalog = catalog();
    for product in catalog.products() {
        for extension in &product.extensions {
            for spelled in [
                extension.extension.clone(),
                extension.extension.to_ascii_uppercase(),
                extension.extension.to_ascii_lowercase(),
            ] {
                let found = catalog.extension(&spelled);
                assert_eq!(
                    found.map(|f| f.product.id.as_str()),
                    Some(product.id.as_str()),
                    "{spelled}"
                );
            }
        }
    }
    assert!(catalog.extension("ms-python.python").is_none());
    assert!(catalog.extension("").is_none());
}

#[test]
fn config_locations_name_their_product_and_have_paths() {
    let catalog = catalog();
    for location in catalog.config_locations() {
        let config = location.config;
        assert!(
            config.id.starts_with(&format!(
                "{}#{}/config/",
                location.product.file, location.product.id
            )),
            "{}",
            config.id
        );
        assert!(!config.paths.is_empty(), "{} has no paths", config.id);
        if config.kind == ConfigKind::Mcp {
            assert!(config.mcp_key.is_some(), "{}", config.id);
        }
        for setting in &config.settings {
            assert!(setting.id.starts_with(&config.id), "{}", setting.id);
        }
    }
}

#[test]
fn mcp_clients_are_listed_for_every_os() {
    let catalog = catalog();
    let clients: Vec<&Product> = catalog
        .products()
        .iter()
        .filter(|product| {
            Os::ALL.iter().all(|os| {
                product
                    .configs
                    .iter()
                    .any(|c| c.kind == ConfigKind::Mcp && !c.paths_for(*os).is_empty())
            })
        })
        .collect();
    assert_eq!(clients.len(), catalog.stats().mcp_clients_all_os);
}

#[test]
fn apps_have_a_bundle_id_or_a_path() {
    for location in catalog().apps() {
        let app = location.app;
        assert!(
            app.macos_bundle_id.is_some() || !app.paths.is_empty(),
            "{}",
            app.id
        );
    }
}

#[test]
fn products_on_a_port_are_found() {
    let catalog = catalog();
    let ollama: Vec<&str> = catalog
        .products_on_port(11434)
        .map(|p| p.id.as_str())
        .collect();
    assert!(ollama.contains(&"ollama.ollama"), "{ollama:?}");
    assert_eq!(catalog.products_on_port(1).count(), 0);
}
