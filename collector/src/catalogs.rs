//! Publishing catalog releases: a directory of data files (as in `catalog/data/`: `VERSION` and
//! `*.toml`) is validated exactly as agents will validate it, then stored; every collector sharing
//! the database serves the newest release to agents at their next heartbeat.

use std::path::Path;

use anyhow::{Context as _, bail};
use shadowai_catalog::Catalog;

use crate::store::{CatalogReleaseRecord, Store};

/// Largest data file read, bytes (the whole bundle is bounded by the catalog crate).
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a catalog directory.
pub fn load_dir(dir: &Path) -> anyhow::Result<Catalog> {
    let version = std::fs::read_to_string(dir.join("VERSION"))
        .with_context(|| format!("cannot read {}", dir.join("VERSION").display()))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".toml") {
            continue;
        }
        if entry.metadata()?.len() > MAX_FILE_BYTES {
            bail!("{name} is larger than {MAX_FILE_BYTES} bytes");
        }
        let content = std::fs::read_to_string(entry.path())
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        files.push((format!("data/{name}"), content));
    }
    Catalog::from_files(version.trim(), files).map_err(|error| anyhow::anyhow!("{error}"))
}

/// Validates `dir` and publishes it; returns the release.
pub async fn publish_dir(
    store: &Store,
    dir: &Path,
    by: &str,
    now_ms: i64,
) -> anyhow::Result<CatalogReleaseRecord> {
    let catalog = load_dir(dir)?;
    let record = CatalogReleaseRecord {
        version: catalog.version().to_owned(),
        sha256: catalog.sha256().to_owned(),
        bundle: catalog.bundle().to_vec(),
        published_at_ms: now_ms,
    };
    store.publish_catalog(&record, by).await.with_context(|| {
        format!(
            "cannot publish version {} (a version can be published once)",
            record.version
        )
    })?;
    Ok(record)
}
