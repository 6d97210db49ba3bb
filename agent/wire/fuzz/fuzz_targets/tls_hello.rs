#![no_main]
//! cargo-fuzz target: see shadowai_wire::fuzzing::tls_hello for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| shadowai_wire::fuzzing::tls_hello(data));
