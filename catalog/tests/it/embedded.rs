//! The built-in catalog loads, and says what it is.

use shadowai_catalog::{Catalog, Category, is_known_risk};

use crate::catalog;

#[test]
fn embedded_catalog_loads_without_problems() {
    let catalog = catalog();
    assert_eq!(catalog.version(), include_str!("../../data/VERSION").trim());
    assert_eq!(catalog.sha256().len(), 64);
    assert!(
        catalog.products().len() >= 12,
        "a first catalog of at least 12 products"
    );
}

#[test]
fn every_data_file_is_embedded() {
    let mut on_disk: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".toml"))
        .map(|name| format!("data/{name}"))
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = catalog()
        .products()
        .iter()
        .map(|product| product.file.clone())
        .collect();
    // The one file without products: the blind-spot lists.
    embedded.push("data/visibility.toml".to_owned());
    embedded.sort();
    embedded.dedup();
    assert_eq!(embedded, on_disk);
    assert!(catalog().doh_resolver("dns.google").is_some());
    assert!(catalog().ech_public_name("cloudflare-ech.com").is_some());
}

#[test]
fn products_carry_sources_and_a_verified_date() {
    for product in catalog().products() {
        assert!(!product.sources.is_empty(), "{}", product.id);
        assert_eq!(product.verified.len(), 10, "{}", product.id);
        for flag in &product.risky_flags {
            assert!(
                flag.risk.iter().all(|risk| is_known_risk(risk)),
                "{}",
                flag.id
            );
        }
    }
}

#[test]
fn products_are_found_by_id() {
    let catalog = catalog();
    let ollama = catalog.product("ollama.ollama").unwrap();
    assert_eq!(ollama.vendor, "Ollama");
    assert_eq!(ollama.category, Category::LocalModelRuntime);
    assert_eq!(ollama.ports, vec![11434]);
    assert!(catalog.product("nobody.nothing").is_none());
}

#[test]
fn first_products_the_foundation_needs_are_present() {
    for id in [
        "ollama.ollama",
        "lmstudio.lm-studio",
        "ggml.llama-cpp",
        "vllm.vllm",
        "anthropic.claude-code",
        "openai.codex",
        "google.gemini-cli",
        "aider.aider",
        "block.goose",
        "openclaw.openclaw",
        "openai.chatgpt",
        "anysphere.cursor",
        "github.copilot",
    ] {
        assert!(catalog().product(id).is_some(), "{id}");
    }
}

#[test]
fn the_same_content_has_the_same_hash() {
    let again = Catalog::embedded().unwrap();
    assert_eq!(again.sha256(), catalog().sha256());
    assert_eq!(again.bundle(), catalog().bundle());
}
