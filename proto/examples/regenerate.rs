//! Rewrites `src/gen/` from the `.proto` files: `cargo run -p shadowai-proto --example regenerate`.

include!("../src/codegen.rs");

fn main() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Err(error) = generate(crate_dir, &crate_dir.join("src/gen")) {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
