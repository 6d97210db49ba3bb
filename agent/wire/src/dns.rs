//! DNS messages (RFC 1035) with compression, EDNS and HTTPS/SVCB records (RFC 9460).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A question: a name and a query type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lowercase ASCII, no trailing dot; bytes that are not hostname bytes are escaped as `\DDD`.
    pub name: String,
    /// QTYPE (1 A, 28 AAAA, 5 CNAME, 64 SVCB, 65 HTTPS, ...).
    pub qtype: u16,
}

/// An answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The owner name, in the same form as [`Question::name`].
    pub name: String,
    /// Time to live in seconds.
    pub ttl: u32,
    /// The record data, for the types the agent uses.
    pub data: AnswerData,
}

/// Record data of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A canonical name.
    Cname(String),
    /// An SVCB (64) or HTTPS (65) record.
    Svcb {
        /// SvcPriority (0: alias mode).
        priority: u16,
        /// TargetName ("" for the root, i.e. the owner name).
        target: String,
        /// The alpn SvcParam (key 1).
        alpn: Vec<String>,
        /// The ech SvcParam (key 5) is present.
        ech: bool,
        /// ipv4hint (key 4).
        ipv4_hints: Vec<Ipv4Addr>,
        /// ipv6hint (key 6).
        ipv6_hints: Vec<Ipv6Addr>,
    },
    /// Any other type, by number.
    Other(u16),
}
