//! Bundles: what the collector hands to agents.

use shadowai_catalog::{Catalog, CatalogError};

use crate::catalog;

const MINIMAL: &str = r#"
[[product]]
id = "acme.thing"
vendor = "Acme"
name = "Thing"
category = "chat_app"
sources = ["https://acme.example/thing"]
verified = "2026-11-21"
domains = [{ exact = "thing.acme.example" }]
"#;

#[test]
fn a_bundle_round_trips_to_the_same_catalog() {
    let original = catalog();
    let copy = Catalog::from_bundle(original.bundle()).unwrap();
    assert_eq!(copy.version(), original.version());
    assert_eq!(copy.sha256(), original.sha256());
    assert_eq!(copy.products(), original.products());
}

#[test]
fn bundles_are_canonical_whatever_order_and_spacing_they_came_with() {
    let json = serde_json::json!({
        "format": 1,
        "version": "1.0",
        "files": [
            {"name": "data/b.toml", "content": MINIMAL.replace("acme.thing", "acme.other").replace("thing.acme", "other.acme")},
            {"name": "data/a.toml", "content": MINIMAL},
        ]
    });
    let pretty = serde_json::to_vec_pretty(&json).unwrap();
    let catalog = Catalog::from_bundle(&pretty).unwrap();
    assert_ne!(catalog.bundle(), pretty.as_slice());
    let again = Catalog::from_bundle(catalog.bundle()).unwrap();
    assert_eq!(again.bundle(), catalog.bundle());
    assert_eq!(again.sha256(), catalog.sha256());
    assert_eq!(catalog.products()[0].file, "data/a.toml");
    assert_eq!(
        catalog
            .match_domain("other.acme.example")
            .unwrap()
            .product
            .id,
        "acme.other"
    );
}

#[test]
fn malformed_bundles_are_refused() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not a bundle"),
        (br#"{"format":2,"version":"1","files":[]}"#.to_vec(), "format 2"),
        (br#"{"format":1,"version":"1","files":[],"extra":1}"#.to_vec(), "unknown field"),
        (br#"{"format":1,"version":"1","files":[]}"#.to_vec(), "1 to"),
        (br#"{"format":1,"version":"bad version","files":[{"name":"data/a.toml","content":""}]}"#.to_vec(), "version"),
        (br#"{"format":1,"version":"1","files":[{"name":"../a.toml","content":""}]}"#.to_vec(), "file name"),
        (
            br#"{"format":1,"version":"1","files":[{"name":"data/a.toml","content":""},{"name":"data/a.toml","content":""}]}"#.to_vec(),
            "twice",
        ),
        (vec![b' '; shadowai_catalog::MAX_BUNDLE_BYTES + 1], "limit"),
    ];
    for (bytes, expected) in cases {
        match Catalog::from_bundle(&bytes) {
            Err(CatalogError::Bundle { reason }) => {
                assert!(
                    reason.contains(expected),
                    "{reason:?} should contain {expected:?}"
                )
            }
            other => panic!("expected a bundle error containing {expected:?}, got {other:?}"),
        }
    }
}

#[test]
fn a_bundle_with_an_invalid_data_file_is_refused_with_file_and_line() {
    let broken = MINIMAL.replace("thing.acme.example", "github.com");
    let json = serde_json::json!({
        "format": 1, "version": "2", "files": [{"name": "data/acme.toml", "content": broken}]
    });
    let error = Catalog::from_bundle(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("data/acme.toml:9:"), "{text}");
    assert!(text.contains("shared infrastructure"), "{text}");
}
