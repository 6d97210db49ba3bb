//! The shadowai wire contract: `proto/shadowai/v1/*.proto`, compiled to Rust.
//!
//! The generated code is checked in (`src/gen/`), so building needs no `protoc`. The test
//! `tests/generated.rs` regenerates it with a pure-Rust protobuf compiler (protox) and fails on any
//! difference; `cargo run -p shadowai-proto --example regenerate` rewrites it after a `.proto` change.
#![forbid(unsafe_code)]

/// Version 1 of the contract. Only additive changes are allowed within it.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!("gen/shadowai.v1.rs");
}

/// Every `.proto` file of the contract, relative to the crate root, in compile order.
pub const PROTO_FILES: &[&str] = &["shadowai/v1/agent.proto", "shadowai/v1/observation.proto"];
