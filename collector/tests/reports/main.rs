//! Reports and SIEM export against real databases (SQLite always; PostgreSQL when
//! `SHADOWAI_TEST_POSTGRES_URL` is set), a real rsyslog, a local HTTPS receiver (rustls + hyper),
//! poppler's pdftoppm/pdftotext, and a real SMTP server (python3-aiosmtpd). `scripts/test.sh`
//! installs rsyslog, poppler-utils and python3-aiosmtpd; a test that needs one of them and cannot
//! find it fails with the command that installs it.

// A test crate: a failed unwrap is a failed test, like in `#[test]` functions.
#![allow(clippy::unwrap_used)]

mod harness;

mod email;
mod export;
mod report;
mod schedule;
