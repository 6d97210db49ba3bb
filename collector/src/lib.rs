//! The shadowai collector.
//!
//! `ingest` is the gRPC face agents talk to (identity from the mTLS certificate, limits, idempotent
//! batches); `store` is the evidence database (SQLite or PostgreSQL); `http` serves the dashboard and
//! the JSON API; `identity` is the private CA that issues agent certificates.
#![forbid(unsafe_code)]

pub mod auth;
pub mod catalogs;
pub mod config;
pub mod dashboard_tls;
pub mod evidence;
pub mod export;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod loadgen;
pub mod metrics;
pub mod policy;
pub mod quickstart;
pub mod report;
pub mod server;
pub mod store;
pub mod tokens;
