//! The frame decoder: link → IP → transport → DNS / TLS / QUIC, with bounded flow tables.
//!
//! Hot path: a TCP segment of a flow that is not tracked and whose payload cannot start a TLS
//! handshake record is refused after reading the three headers and one byte, without hashing
//! while no flow is tracked and without allocating in any case.

use crate::quic::{self, InitialKeys, QuicError};
use crate::reassembly::{FlowTable, Reassembler};
use crate::tls::{self, TlsError};
use crate::{
    DecoderStats, DnsEvent, Event, Flow, HelloEvent, Limits, LinkType, QuicHelloEvent, dns, ip,
    link, tcp, udp,
};
use std::net::SocketAddr;

/// DNS port: UDP and TCP messages to or from it are parsed; 5353 (mDNS) and others are not.
pub const DNS_PORT: u16 = 53;
/// Most QUIC packets looked at in one datagram (coalesced Initial, 0-RTT, Handshake).
const MAX_COALESCED: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Tls,
    Dns,
}

struct TcpStream {
    kind: StreamKind,
    /// Sequence number of offset 0 of `buf`.
    next_seq: u32,
    buf: Reassembler,
    /// Finished (hello emitted, not TLS, or given up): kept as a tombstone so a later hello on
    /// the same flow (after a HelloRetryRequest) is not reported again.
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct QuicKey {
    flow: Flow,
    dcid: [u8; quic::MAX_CID_LEN],
    dcid_len: u8,
}

struct QuicConn {
    version: u32,
    keys: InitialKeys,
    largest_pn: Option<u64>,
    crypto: Reassembler,
    done: bool,
}

/// Turns captured frames into [`Event`]s. Holds bounded per-flow state; no IO, no clock.
pub struct Decoder {
    limits: Limits,
    stats: DecoderStats,
    tcp: FlowTable<Flow, TcpStream>,
    quic: FlowTable<QuicKey, QuicConn>,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder whose tables stay within `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            stats: DecoderStats::default(),
            tcp: FlowTable::new(limits.max_flows, limits.idle_timeout_ms),
            quic: FlowTable::new(limits.max_quic_flows, limits.idle_timeout_ms),
            scratch: Vec::new(),
        }
    }

    /// One captured frame (owned by the caller) → zero or more events pushed to `out`. Never panics.
    pub fn decode(&mut self, link: LinkType, ts_ms: i64, frame: &[u8], out: &mut Vec<Event>) {
        self.stats.frames += 1;
        let (ethertype, net) = match link::parse(link, frame) {
            Ok(v) => v,
            Err(_) => return self.malformed(|s| &mut s.malformed_link),
        };
        let packet = match ip::parse(ethertype, net) {
            Ok(p) => p,
            Err(ip::IpError::NotIp) => {
                self.stats.unsupported += 1;
                return;
            }
            Err(_) => return self.malformed(|s| &mut s.malformed_ip),
        };
        if packet.fragment {
            self.stats.ip_fragments += 1;
            return;
        }
        match packet.protocol {
            6 => match tcp::parse(packet.payload) {
                Ok(seg) => {
                    let flow = Flow {
                        src: SocketAddr::new(packet.src, seg.src_port),
                        dst: SocketAddr::new(packet.dst, seg.dst_port),
                    };
                    self.tcp_segment(ts_ms, flow, &seg, out);
                }
                Err(_) => self.malformed(|s| &mut s.malformed_transport),
            },
            17 => match udp::parse(packet.payload) {
                Ok(d) => {
                    let flow = Flow {
                        src: SocketAddr::new(packet.src, d.src_port),
                        dst: SocketAddr::new(packet.dst, d.dst_port),
                    };
                    self.udp_datagram(ts_ms, flow, d.payload, out);
                }
                Err(_) => self.malformed(|s| &mut s.malformed_transport),
            },
            _ => {}
        }
    }

    /// Drops flows idle longer than the timeout (call ~1/s); also called internally when full.
    /// A TCP hello still waiting for a missing segment is dropped silently: use
    /// [`Decoder::expire_into`] to have it reported when its SNI was read.
    pub fn expire(&mut self, now_ms: i64) {
        self.stats.flows_expired += self.tcp.expire(now_ms) + self.quic.expire(now_ms);
    }

    /// [`Decoder::expire`], and for each idle TCP flow whose ClientHello never completed (a
    /// segment the capture missed and that was never retransmitted) but whose contiguous bytes
    /// hold the server_name extension, a [`Event::TlsHello`] with `complete: false`, stamped
    /// `now_ms`.
    pub fn expire_into(&mut self, now_ms: i64, out: &mut Vec<Event>) {
        let mut hellos = 0;
        let expired = self.tcp.expire_with(now_ms, |flow, stream| {
            if stream.done || stream.kind != StreamKind::Tls {
                return;
            }
            if let Ok(hello) = tls::parse_client_hello(stream.buf.contiguous()) {
                hellos += 1;
                out.push(Event::TlsHello(HelloEvent {
                    ts_ms: now_ms,
                    flow: *flow,
                    hello,
                }));
            }
        });
        self.stats.hellos += hellos;
        self.stats.flows_expired += expired + self.quic.expire(now_ms);
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// TCP flows and QUIC connections held, and the bytes their buffers hold.
    pub fn tracked(&self) -> (usize, usize, usize) {
        let bytes = self.tcp.values().map(|s| s.buf.buffered()).sum::<usize>()
            + self
                .quic
                .values()
                .map(|c| c.crypto.buffered())
                .sum::<usize>();
        (self.tcp.len(), self.quic.len(), bytes)
    }

    fn malformed(&mut self, layer: impl FnOnce(&mut DecoderStats) -> &mut u64) {
        *layer(&mut self.stats) += 1;
        self.stats.malformed += 1;
    }

    fn count_table(&mut self, (expired, evicted): (u64, u64)) {
        self.stats.flows_expired += expired;
        self.stats.flows_evicted += evicted;
    }

    fn tcp_segment(
        &mut self,
        ts: i64,
        flow: Flow,
        seg: &tcp::TcpSegment<'_>,
        out: &mut Vec<Event>,
    ) {
        let payload = seg.payload;
        let syn = seg.flags & tcp::SYN != 0;
        let closing = seg.flags & (tcp::FIN | tcp::RST) != 0;
        if payload.is_empty() && !syn && !closing {
            return; // pure ACK
        }
        // an empty table (the usual case on a bulk capture) skips hashing
        if !self.tcp.is_empty()
            && let Some(stream) = self.tcp.get_mut(&flow, ts)
        {
            if syn && seg.flags & tcp::ACK == 0 && seg.seq.wrapping_add(1) != stream.next_seq {
                // a new connection on the same ports (the old one's FIN or RST was not seen)
                *stream = TcpStream {
                    kind: stream.kind,
                    next_seq: seg.seq.wrapping_add(1),
                    buf: Reassembler::new(),
                    done: false,
                };
            }
            if !stream.done {
                let seq = if syn {
                    seg.seq.wrapping_add(1)
                } else {
                    seg.seq
                };
                let max = self.limits.max_bytes_per_flow;
                self.stats.bytes_dropped += feed(stream, seq, payload, max) as u64;
                process(stream, ts, flow, max, closing, &mut self.stats, out);
            }
            if closing {
                self.tcp.remove(&flow);
            }
            return;
        }
        let is_dns = seg.src_port == DNS_PORT || seg.dst_port == DNS_PORT;
        let kind = if is_dns {
            StreamKind::Dns
        } else {
            StreamKind::Tls
        };
        if syn {
            // a server's SYN-ACK starts a stream only for DNS responses
            if seg.flags & tcp::ACK != 0 && !is_dns {
                return;
            }
            self.track(
                ts,
                flow,
                kind,
                seg.seq.wrapping_add(1),
                payload,
                closing,
                out,
            );
            return;
        }
        if payload.is_empty() {
            return;
        }
        if is_dns {
            self.track(ts, flow, kind, seg.seq, payload, closing, out);
        } else if tls::starts_client_hello(payload) {
            // The usual case, also for a >MTU super-frame: the whole hello in this segment.
            match tls::parse_client_hello(payload) {
                Ok(hello) if hello.complete => {
                    self.emit_hello(ts, flow, hello, out);
                    let tombstone = TcpStream {
                        kind,
                        next_seq: seg.seq,
                        buf: Reassembler::new(),
                        done: true,
                    };
                    let counts = self.tcp.insert(flow, tombstone, ts);
                    self.count_table(counts);
                }
                Ok(_) | Err(TlsError::Incomplete) => {
                    self.track(ts, flow, kind, seg.seq, payload, closing, out)
                }
                Err(_) => self.stats.tls_malformed += 1,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        ts: i64,
        flow: Flow,
        kind: StreamKind,
        next_seq: u32,
        payload: &[u8],
        closing: bool,
        out: &mut Vec<Event>,
    ) {
        if closing && payload.is_empty() {
            return;
        }
        let mut stream = TcpStream {
            kind,
            next_seq,
            buf: Reassembler::new(),
            done: false,
        };
        let max = self.limits.max_bytes_per_flow;
        self.stats.bytes_dropped += feed(&mut stream, next_seq, payload, max) as u64;
        process(&mut stream, ts, flow, max, closing, &mut self.stats, out);
        if !closing {
            let counts = self.tcp.insert(flow, stream, ts);
            self.count_table(counts);
        }
    }

    fn emit_hello(&mut self, ts: i64, flow: Flow, hello: tls::ClientHello, out: &mut Vec<Event>) {
        self.stats.hellos += 1;
        out.push(Event::TlsHello(HelloEvent {
            ts_ms: ts,
            flow,
            hello,
        }));
    }

    fn udp_datagram(&mut self, ts: i64, flow: Flow, payload: &[u8], out: &mut Vec<Event>) {
        if flow.src.port() == DNS_PORT || flow.dst.port() == DNS_PORT {
            emit_dns(ts, flow, false, payload, &mut self.stats, out);
            return;
        }
        let mut rest = payload;
        for _ in 0..MAX_COALESCED {
            match rest.first() {
                Some(b) if b & 0x80 != 0 => {}
                _ => return,
            }
            let len = match quic::parse_initial_header(rest) {
                Ok(header) => {
                    self.quic_initial(ts, flow, rest, &header, out);
                    header.packet_len
                }
                Err(QuicError::NotInitial) => match quic::long_packet_len(rest) {
                    Some(len) => len,
                    None => return,
                },
                Err(QuicError::NotQuic) => return,
                Err(_) => {
                    self.stats.quic_undecryptable += 1;
                    return;
                }
            };
            rest = rest.get(len..).unwrap_or_default();
        }
    }

    fn quic_initial(
        &mut self,
        ts: i64,
        flow: Flow,
        datagram: &[u8],
        header: &quic::InitialHeader<'_>,
        out: &mut Vec<Event>,
    ) {
        let mut key = QuicKey {
            flow,
            dcid: [0; quic::MAX_CID_LEN],
            dcid_len: 0,
        };
        if let Some(dst) = key.dcid.get_mut(..header.dcid.len()) {
            dst.copy_from_slice(header.dcid);
            key.dcid_len = header.dcid.len() as u8;
        }
        let decrypted = match self.quic.get_mut(&key, ts) {
            Some(conn) if conn.done => return,
            Some(conn) => quic::decrypt_initial_with(
                datagram,
                header,
                &conn.keys,
                conn.largest_pn,
                &mut self.scratch,
            ),
            None => {
                let Ok(keys) = InitialKeys::client(header.version, header.dcid) else {
                    self.stats.quic_undecryptable += 1;
                    return;
                };
                let result =
                    quic::decrypt_initial_with(datagram, header, &keys, None, &mut self.scratch);
                // Only a packet that decrypts earns a table entry: garbage costs CPU, not memory.
                if result.is_ok() {
                    let conn = QuicConn {
                        version: header.version,
                        keys,
                        largest_pn: None,
                        crypto: Reassembler::new(),
                        done: false,
                    };
                    let counts = self.quic.insert(key, conn, ts);
                    self.count_table(counts);
                }
                result
            }
        };
        let Ok((pn, range)) = decrypted else {
            self.stats.quic_undecryptable += 1;
            return;
        };
        let Some(conn) = self.quic.get_mut(&key, ts) else {
            return;
        };
        self.stats.quic_initials += 1;
        conn.largest_pn = Some(conn.largest_pn.map_or(pn, |l| l.max(pn)));
        let max = self.limits.max_bytes_per_flow;
        let mut dropped = 0usize;
        let plain = self.scratch.get(range).unwrap_or_default();
        let frames = quic::parse_frames(plain, |offset, data| {
            let offset = usize::try_from(offset).unwrap_or(usize::MAX);
            dropped += conn.crypto.insert(offset, data, max);
        });
        self.stats.bytes_dropped += dropped as u64;
        if frames.is_err() {
            self.stats.quic_bad_frames += 1;
        }
        let prefix = conn.crypto.contiguous();
        if prefix.is_empty() {
            return;
        }
        match tls::parse_client_hello(prefix) {
            Ok(hello) => {
                self.stats.quic_hellos += 1;
                out.push(Event::QuicHello(QuicHelloEvent {
                    ts_ms: ts,
                    flow,
                    version: conn.version,
                    hello,
                }));
                conn.done = true;
                conn.crypto = Reassembler::new();
            }
            Err(TlsError::Incomplete) if prefix.len() < max => {}
            Err(_) => {
                self.stats.tls_malformed += 1;
                conn.done = true;
                conn.crypto = Reassembler::new();
            }
        }
    }
}

/// Stores a segment's bytes in the stream; returns the bytes dropped.
fn feed(stream: &mut TcpStream, seq: u32, payload: &[u8], max: usize) -> usize {
    let rel = seq.wrapping_sub(stream.next_seq) as i32;
    let (offset, bytes) = if rel < 0 {
        // a retransmit that starts before what is still needed
        let skip = rel.unsigned_abs() as usize;
        match payload.get(skip..) {
            Some(rest) if !rest.is_empty() => (0, rest),
            _ => return 0,
        }
    } else {
        (rel as usize, payload)
    };
    if offset >= max {
        return bytes.len();
    }
    stream.buf.insert(offset, bytes, max)
}

/// Acts on the contiguous bytes of a stream: a complete hello or DNS messages.
fn process(
    stream: &mut TcpStream,
    ts: i64,
    flow: Flow,
    max: usize,
    closing: bool,
    stats: &mut DecoderStats,
    out: &mut Vec<Event>,
) {
    match stream.kind {
        StreamKind::Tls => {
            let data = stream.buf.contiguous();
            if data.is_empty() {
                return;
            }
            if !tls::starts_client_hello(data) {
                finish(stream);
                return;
            }
            let full = tls::client_hello_stream_len(data).is_some_and(|n| data.len() >= n);
            let stuck = data.len() >= max || closing;
            if !full && !stuck {
                return;
            }
            match tls::parse_client_hello(data) {
                Ok(hello) => {
                    stats.hellos += 1;
                    out.push(Event::TlsHello(HelloEvent {
                        ts_ms: ts,
                        flow,
                        hello,
                    }));
                }
                Err(TlsError::Incomplete) if !stuck => return,
                Err(_) => stats.tls_malformed += 1,
            }
            finish(stream);
        }
        StreamKind::Dns => loop {
            let data = stream.buf.contiguous();
            let Some(&[hi, lo]) = data.get(..2).and_then(|d| <&[u8; 2]>::try_from(d).ok()) else {
                return;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len + 2 > max || len < 12 {
                // cannot be buffered (or is not DNS): stop following this stream
                stats.dns_malformed += 1;
                finish(stream);
                return;
            }
            let Some(msg) = data.get(2..2 + len) else {
                return;
            };
            emit_dns(ts, flow, true, msg, stats, out);
            stream.buf.consume(2 + len);
            stream.next_seq = stream.next_seq.wrapping_add((2 + len) as u32);
        },
    }
}

fn finish(stream: &mut TcpStream) {
    stream.done = true;
    stream.buf = Reassembler::new();
}

fn emit_dns(
    ts: i64,
    flow: Flow,
    tcp: bool,
    msg: &[u8],
    stats: &mut DecoderStats,
    out: &mut Vec<Event>,
) {
    match dns::parse_message(msg) {
        Ok(m) => {
            stats.dns_messages += 1;
            out.push(Event::Dns(DnsEvent {
                ts_ms: ts,
                flow,
                tcp,
                response: m.response,
                id: m.id,
                rcode: m.rcode,
                questions: m.questions,
                answers: m.answers,
            }));
        }
        Err(_) => stats.dns_malformed += 1,
    }
}

#[cfg(test)]
mod tests;
