//! Published catalog releases.

use super::{Backend, Store, StoreError};

/// A catalog release as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogReleaseRecord {
    /// Catalog version (unique).
    pub version: String,
    /// SHA-256 hex of `bundle`.
    pub sha256: String,
    /// The bundle bytes.
    pub bundle: Vec<u8>,
    /// When it was published, Unix ms.
    pub published_at_ms: i64,
}

impl Store {
    /// Stores a release. Publishing the same version twice is refused (`Conflict`): a version names
    /// one content forever, so agents can trust a version they already hold.
    pub async fn publish_catalog(
        &self,
        release: &CatalogReleaseRecord,
        by: &str,
    ) -> Result<(), StoreError> {
        on_write_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO catalog_releases (version, sha256, bundle, published_at_ms, published_by) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&release.version)
            .bind(&release.sha256)
            .bind(&release.bundle)
            .bind(release.published_at_ms)
            .bind(by)
            .execute(pool)
            .await
            .map_err(StoreError::entity("catalog version"))?;
        });
        Ok(())
    }

    /// The most recently published release, if any.
    pub async fn latest_catalog(&self) -> Result<Option<CatalogReleaseRecord>, StoreError> {
        let row: Option<(String, String, Vec<u8>, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT version, sha256, bundle, published_at_ms FROM catalog_releases \
                 ORDER BY published_at_ms DESC, version DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(
            |(version, sha256, bundle, published_at_ms)| CatalogReleaseRecord {
                version,
                sha256,
                bundle,
                published_at_ms,
            },
        ))
    }
}
