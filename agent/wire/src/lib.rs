//! Sans-IO wire parsers for the shadowai agent.
//!
//! Bytes in, events out, time passed in: this crate does no IO and reads no clock. A captured frame
//! goes to [`Decoder::decode`] with its timestamp; the decoder walks link → IP → TCP/UDP and emits
//! [`Event`]s for DNS messages, TLS ClientHellos and QUIC Initial ClientHellos. Every byte is treated
//! as hostile: nothing here panics on input, every table is bounded, and a bulk TCP segment that
//! cannot start a TLS handshake is rejected without allocating.
//!
//! The layer parsers are public modules so fuzz targets and benchmarks can call each one directly.
//!
//! Events:
//! - one [`Event::TlsHello`] per TCP flow: its first ClientHello, reassembled across segments
//!   (in or out of order, retransmitted) or read from one >MTU super-frame; a hello cut short is
//!   reported (`complete: false`) only when the flow closes, hits its byte limit or (through
//!   [`Decoder::expire_into`]) goes idle with the SNI already read;
//! - one [`Event::QuicHello`] per QUIC connection (client address and DCID) as soon as the SNI is
//!   known: from the complete hello, or from a contiguous prefix of the CRYPTO stream that holds
//!   the server_name extension (`complete: false`);
//! - one [`Event::Dns`] per DNS message on port 53, UDP or TCP (length prefix, several messages
//!   per segment, a message split across segments). mDNS (5353) and other ports are ignored.
//!
//! IPv4 and IPv6 fragments are counted ([`DecoderStats::ip_fragments`]) and dropped, never
//! reassembled. Memory is bounded by [`Limits`]: at most `max_flows` TCP streams and
//! `max_quic_flows` QUIC connections, each buffering at most `max_bytes_per_flow` bytes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dns;
pub mod fuzzing;
pub mod ip;
pub mod link;
pub mod quic;
pub mod reassembly;
pub mod tcp;
pub mod tls;
pub mod udp;

mod decoder;
#[cfg(test)]
mod testutil;

pub use decoder::Decoder;
pub use dns::{Answer, AnswerData, Question};
pub use tls::ClientHello;

use std::net::SocketAddr;

/// The link layer of a capture, as named by a pcap / pcapng link type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with optional 802.1Q / 802.1ad VLAN tags (pcap link type 1).
    Ethernet,
    /// A raw IPv4 or IPv6 packet, version taken from the first nibble (101, 12, 14).
    RawIp,
    /// Linux "cooked" capture v1, 16-byte header (113).
    LinuxSll,
    /// Linux "cooked" capture v2, 20-byte header (276).
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host byte order (0, 108).
    Null,
}

impl LinkType {
    /// The link type for a pcap `LINKTYPE_*` value, or `None` for one this crate does not decode.
    pub fn from_pcap(linktype: u32) -> Option<LinkType> {
        match linktype {
            1 => Some(LinkType::Ethernet),
            101 | 12 | 14 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            0 | 108 => Some(LinkType::Null),
            _ => None,
        }
    }
}

/// Bounds on the decoder's memory: whatever arrives, its tables never grow past these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most TCP flows tracked at once (flows holding a partial ClientHello or DNS message).
    pub max_flows: usize,
    /// Most bytes buffered for one flow (TCP) or one QUIC connection's CRYPTO stream.
    pub max_bytes_per_flow: usize,
    /// A flow or QUIC connection not seen for this long (ms) is dropped.
    pub idle_timeout_ms: i64,
    /// Most QUIC connections (client DCIDs) tracked at once.
    pub max_quic_flows: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_flows: 4096,
            max_bytes_per_flow: 16 * 1024,
            idle_timeout_ms: 10_000,
            max_quic_flows: 1024,
        }
    }
}

/// Counters of what the decoder saw and refused; cheap to read at any time.
#[derive(Default, Debug, Clone)]
pub struct DecoderStats {
    /// Frames passed to [`Decoder::decode`].
    pub frames: u64,
    /// Frames refused for a malformed header at any layer (sum of the per-layer counters).
    pub malformed: u64,
    /// Malformed link-layer headers (Ethernet, VLAN, SLL, Null).
    pub malformed_link: u64,
    /// Malformed IPv4/IPv6 headers or extension headers.
    pub malformed_ip: u64,
    /// Malformed TCP or UDP headers.
    pub malformed_transport: u64,
    /// Frames whose link or network protocol is not decoded (ARP, LLDP, ...).
    pub unsupported: u64,
    /// IPv4/IPv6 fragments: counted and dropped (never reassembled).
    pub ip_fragments: u64,
    /// Flows (TCP or QUIC) dropped to make room or because the table was full.
    pub flows_evicted: u64,
    /// Flows dropped by [`Decoder::expire`] for being idle.
    pub flows_expired: u64,
    /// Bytes not buffered because a flow hit its byte limit or a segment was out of window.
    pub bytes_dropped: u64,
    /// TLS ClientHello events emitted (TCP).
    pub hellos: u64,
    /// TCP flows whose first handshake record was not a parseable ClientHello.
    pub tls_malformed: u64,
    /// QUIC Initial packets from clients decrypted successfully.
    pub quic_initials: u64,
    /// QUIC long-header Initial packets that did not decrypt (wrong keys, truncated, not QUIC).
    pub quic_undecryptable: u64,
    /// Decrypted QUIC Initials whose frames did not all parse (CRYPTO data before the error kept).
    pub quic_bad_frames: u64,
    /// QUIC ClientHello events emitted.
    pub quic_hellos: u64,
    /// DNS events emitted (UDP and TCP).
    pub dns_messages: u64,
    /// DNS messages on port 53 that did not parse.
    pub dns_malformed: u64,
}

/// A transport flow, oriented client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// The client (connection initiator) address.
    pub src: SocketAddr,
    /// The server address.
    pub dst: SocketAddr,
}

/// What the decoder found in a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A DNS query or response on port 53 (UDP or TCP).
    Dns(DnsEvent),
    /// The first TLS ClientHello of a TCP flow.
    TlsHello(HelloEvent),
    /// The ClientHello of a QUIC connection, from its Initial packets.
    QuicHello(QuicHelloEvent),
}

/// One DNS message.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsEvent {
    /// Capture time of the frame that completed the message (Unix ms).
    pub ts_ms: i64,
    /// The addresses as sent: a query is client → resolver, a response is resolver → client.
    pub flow: Flow,
    /// Carried over TCP (with the 2-byte length prefix).
    pub tcp: bool,
    /// QR bit: a response.
    pub response: bool,
    /// Message id.
    pub id: u16,
    /// Response code (low 4 bits of the header; extended bits from EDNS are not merged).
    pub rcode: u8,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section (authority and additional sections are not returned).
    pub answers: Vec<Answer>,
}

/// A TLS ClientHello seen on a TCP flow.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloEvent {
    /// Capture time of the frame that completed the hello (Unix ms).
    pub ts_ms: i64,
    /// The TCP flow, client → server.
    pub flow: Flow,
    /// What the hello says.
    pub hello: ClientHello,
}

/// A TLS ClientHello carried in QUIC Initial packets.
#[derive(Debug, Clone, PartialEq)]
pub struct QuicHelloEvent {
    /// Capture time of the Initial packet that completed the SNI (Unix ms).
    pub ts_ms: i64,
    /// The UDP flow, client → server.
    pub flow: Flow,
    /// The QUIC version of the Initial (0x00000001 v1, 0x6b3343cf v2).
    pub version: u32,
    /// What the hello says.
    pub hello: ClientHello,
}
