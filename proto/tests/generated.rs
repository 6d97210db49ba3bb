//! The checked-in generated code must be exactly what the `.proto` files produce.

include!("../src/codegen.rs");

#[test]
fn generated_code_matches_the_proto_files() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = tempfile::tempdir().unwrap();
    generate(crate_dir, fresh.path()).unwrap();
    let name = "shadowai.v1.rs";
    let expected = std::fs::read_to_string(fresh.path().join(name)).unwrap();
    let checked_in = std::fs::read_to_string(crate_dir.join("src/gen").join(name)).unwrap();
    assert!(
        expected == checked_in,
        "src/gen/{name} is stale: run `cargo run -p shadowai-proto --example regenerate` and commit"
    );
}

#[test]
fn every_field_and_message_is_commented() {
    // The contract is read by people who write other agents; an undocumented field is a bug.
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in shadowai_proto::PROTO_FILES {
        let text = std::fs::read_to_string(crate_dir.join(file)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            let is_declaration = trimmed.starts_with("message ")
                || trimmed.starts_with("enum ")
                || trimmed.starts_with("rpc ")
                || trimmed.starts_with("oneof ")
                || (trimmed.ends_with(';') && trimmed.contains(" = "));
            if !is_declaration || index == 0 {
                continue;
            }
            let previous = lines[index - 1].trim();
            assert!(
                previous.starts_with("//"),
                "{file}:{}: `{trimmed}` has no comment on the line above",
                index + 1
            );
        }
    }
}
