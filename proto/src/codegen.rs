// Shared by the regeneration example and the freshness test (included with `include!`), so that
// both always generate with exactly the same settings.

/// Compiles the contract with protox and writes the Rust code into `out_dir`.
pub fn generate(crate_dir: &std::path::Path, out_dir: &std::path::Path) -> Result<(), String> {
    let files: Vec<std::path::PathBuf> =
        shadowai_proto::PROTO_FILES.iter().map(|f| crate_dir.join(f)).collect();
    let descriptors = protox::compile(&files, [crate_dir]).map_err(|e| e.to_string())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .emit_rerun_if_changed(false)
        .out_dir(out_dir)
        .compile_fds(descriptors)
        .map_err(|e| e.to_string())
}
