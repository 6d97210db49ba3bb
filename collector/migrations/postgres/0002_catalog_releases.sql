-- Catalog releases published to this collector (and, on PostgreSQL, to every collector sharing the
-- database). Agents are served the newest; the built-in catalog is used while there is none.
CREATE TABLE catalog_releases (
    version TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    bundle BYTEA NOT NULL,
    published_at_ms BIGINT NOT NULL,
    published_by TEXT NOT NULL
);
CREATE INDEX catalog_releases_published ON catalog_releases (published_at_ms);
