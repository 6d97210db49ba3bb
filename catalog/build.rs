//! Embeds every `data/*.toml` and `data/VERSION` into the crate, so that adding a data file
//! needs no code change. Generates `$OUT_DIR/embedded.rs` with `include_str!` entries.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let data = manifest_dir.join("data");
    // A directory here makes cargo rerun when any file under it is added, removed or changed.
    println!("cargo:rerun-if-changed=data");

    let mut names: Vec<String> = match std::fs::read_dir(&data) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.ends_with(".toml"))
            .collect(),
        Err(error) => panic!("cannot read {}: {error}", data.display()),
    };
    names.sort();

    let mut generated = String::new();
    let version = data.join("VERSION");
    let _ = writeln!(
        generated,
        "/// The catalog version from `data/VERSION`.\nconst EMBEDDED_VERSION: &str = include_str!({:?});",
        version.display().to_string()
    );
    let _ = writeln!(generated, "/// Every `data/*.toml`, sorted by name.");
    let _ = writeln!(generated, "const EMBEDDED_FILES: &[(&str, &str)] = &[");
    for name in &names {
        let path = data.join(name);
        let _ = writeln!(
            generated,
            "    ({:?}, include_str!({:?})),",
            format!("data/{name}"),
            path.display().to_string()
        );
    }
    let _ = writeln!(generated, "];");
    if let Err(error) = std::fs::write(out_dir.join("embedded.rs"), generated) {
        panic!("cannot write embedded.rs: {error}");
    }
}
