//! The shadowai endpoint agent.
//!
//! Sensors (`process`, `host`) turn what the machine does into catalog detections (`detect`); the runtime
//! (`run`) spools them and the transport (`transport`) delivers them to the collector over mTLS gRPC.
#![forbid(unsafe_code)]

pub mod budget;
pub mod commands;
pub mod config;
pub mod detect;
pub mod host;
pub mod identity;
pub mod net;
pub mod process;
pub mod redact;
pub mod spool;
pub mod status;
pub mod transport;
