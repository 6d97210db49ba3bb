//! Reports and SIEM export against real databases (SQLite always; PostgreSQL when
//! `SHADOWAI_TEST_POSTGRES_URL` is set), a real rsyslog, a local HTTPS receiver (rustls + hyper),
//! and poppler's pdftoppm/pdftotext. `scripts/test.sh` installs rsyslog and poppler-utils; a test
//! that needs one of them and cannot find it fails with the command that installs it.

// A test crate: a failed unwrap is a failed test, like in `#[test]` functions.
#![allow(clippy::unwrap_used)]

mod harness;

mod export;
mod report;
