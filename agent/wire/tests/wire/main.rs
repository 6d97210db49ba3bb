//! Integration tests of shadowai-wire: real captures, every prefix, seeded random inputs.

mod pcap;
mod prefixes;
mod random;
mod real_traffic;
