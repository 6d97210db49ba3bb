//! End-to-end tests: the real `shadowai-collector` and `shadowai-agent` binaries, real mTLS gRPC
//! between them, real databases (SQLite; PostgreSQL at `SHADOWAI_TEST_POSTGRES_URL`), and the
//! dashboard and API over HTTP as a responder's browser or script would use them.
//!
//! One test binary for the whole suite (a list of modules), so the binaries are built once per run.

// A failed unwrap is how a test fails; helpers outside #[test] functions count too.
#![allow(clippy::unwrap_used)]

mod access;
mod browser;
mod browser_driver;
mod catalog_update;
mod channel;
mod hostile;
mod limits;
mod netlab;
mod observability;
mod openapi;
mod quickstart;
mod resilience;
mod runtime;
mod scale;
mod support;
