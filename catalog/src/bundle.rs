//! The catalog bundle: how a whole catalog travels from the collector to agents.
//!
//! Format 1 is one JSON object, with fields in this order and no whitespace:
//!
//! ```json
//! {"format":1,"version":"2026.11.21-1","files":[{"name":"data/anthropic.toml","content":"..."}]}
//! ```
//!
//! `files` are the data files, sorted by `name`; each name is `data/<a-z 0-9 _ ->.toml`. The
//! canonical bytes are what `serde_json` writes for that object; the catalog's SHA-256 is taken
//! over them. [`crate::Catalog::from_bundle`] accepts any JSON of this shape, validates every
//! file, and re-encodes it canonically, so `bundle()` and `sha256()` are the same for the same
//! content whatever spacing or file order it arrived with.

use serde::{Deserialize, Serialize};

use crate::error::CatalogError;

/// The bundle format this crate reads and writes.
pub const BUNDLE_FORMAT: u32 = 1;
/// Largest bundle accepted, so a hostile or broken bundle cannot exhaust memory.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;
/// Most data files in one bundle.
pub const MAX_FILES: usize = 1024;
/// Longest version text (the wire contract's limit).
pub const MAX_VERSION: usize = 64;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Bundle {
    format: u32,
    version: String,
    files: Vec<BundleFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    name: String,
    content: String,
}

/// A decoded, shape-checked bundle: version and `(name, content)` pairs sorted by name.
pub(crate) struct Decoded {
    pub(crate) version: String,
    pub(crate) files: Vec<(String, String)>,
}

/// Decodes and shape-checks a bundle (not the data files in it).
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, CatalogError> {
    let fail = |reason: String| CatalogError::Bundle { reason };
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(fail(format!(
            "{} bytes is over the {MAX_BUNDLE_BYTES} byte limit",
            bytes.len()
        )));
    }
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|error| fail(format!("not a bundle: {error}")))?;
    if bundle.format != BUNDLE_FORMAT {
        return Err(fail(format!(
            "format {} is not {BUNDLE_FORMAT}",
            bundle.format
        )));
    }
    let files = bundle
        .files
        .into_iter()
        .map(|file| (file.name, file.content))
        .collect();
    check(bundle.version, files)
}

/// Checks a version and a set of `(name, content)` files, and sorts the files by name.
pub(crate) fn check(
    version: String,
    mut files: Vec<(String, String)>,
) -> Result<Decoded, CatalogError> {
    let fail = |reason: String| CatalogError::Bundle { reason };
    check_version(&version).map_err(fail)?;
    if files.is_empty() || files.len() > MAX_FILES {
        return Err(fail(format!("must hold 1 to {MAX_FILES} files")));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for window in files.windows(2) {
        if window[0].0 == window[1].0 {
            return Err(fail(format!("file `{}` appears twice", window[0].0)));
        }
    }
    for (name, _) in &files {
        if !is_file_name(name) {
            return Err(fail(format!(
                "file name `{name}` is not data/<a-z 0-9 _ ->.toml"
            )));
        }
    }
    Ok(Decoded { version, files })
}

/// Encodes version and files (already sorted by name) canonically.
pub(crate) fn encode(version: &str, files: &[(String, String)]) -> Vec<u8> {
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        version: version.to_owned(),
        files: files
            .iter()
            .map(|(name, content)| BundleFile {
                name: name.clone(),
                content: content.clone(),
            })
            .collect(),
    };
    // Serialising plain strings and integers into a Vec cannot fail.
    serde_json::to_vec(&bundle).unwrap_or_default()
}

/// A version is 1 to 64 bytes of `0-9 A-Z a-z . + -`, e.g. `2026.11.21-1`.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    let valid = !version.is_empty()
        && version.len() <= MAX_VERSION
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "version `{version}` must be 1 to {MAX_VERSION} bytes of 0-9 A-Z a-z . + -"
        ))
    }
}

fn is_file_name(name: &str) -> bool {
    let Some(stem) = name
        .strip_prefix("data/")
        .and_then(|rest| rest.strip_suffix(".toml"))
    else {
        return false;
    };
    !stem.is_empty()
        && stem.len() <= 64
        && stem
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_restricted() {
        assert!(is_file_name("data/ollama.toml"));
        assert!(is_file_name("data/llama-cpp.toml"));
        assert!(!is_file_name("data/../etc/passwd.toml"));
        assert!(!is_file_name("ollama.toml"));
        assert!(!is_file_name("data/.toml"));
        assert!(!is_file_name("data/Ollama.toml"));
    }

    #[test]
    fn versions_are_restricted() {
        assert!(check_version("2026.11.21-1").is_ok());
        assert!(check_version("").is_err());
        assert!(check_version("1 2").is_err());
        assert!(check_version(&"1".repeat(65)).is_err());
    }
}
