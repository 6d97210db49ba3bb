//! DNS messages (RFC 1035) with compression, EDNS and HTTPS/SVCB records (RFC 9460).
//!
//! Our own reader rather than hickory-proto: 2.7–4.5× faster on real dig messages
//! (`benches/choose.rs`, figures in docs/BENCHMARKS.md "Wire parsers"), it builds only what the
//! agent uses, and its limits are ours: names lowercased with `\DDD` escapes, at most 255 wire
//! bytes, compression pointers strictly backwards (every walk ends), and a malformed answer's data
//! spoils that answer only.

use crate::link::{be16, be32};
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

/// Most question or answer records returned per message; the rest are not read.
pub const MAX_RECORDS: usize = 128;
/// Most compression pointers followed in one name (pointers must also go strictly backwards).
pub const MAX_POINTERS: usize = 64;
/// Most bytes of a name on the wire (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Most entries kept from one SvcParam list (alpn, hints).
pub const MAX_SVC_VALUES: usize = 16;

/// A parsed DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    /// Message id.
    pub id: u16,
    /// QR bit.
    pub response: bool,
    /// OPCODE (0 query).
    pub opcode: u8,
    /// TC bit: the response was truncated by the server.
    pub truncated: bool,
    /// RCODE, low 4 bits.
    pub rcode: u8,
    /// Question section (at most [`MAX_RECORDS`]).
    pub questions: Vec<Question>,
    /// Answer section (at most [`MAX_RECORDS`]).
    pub answers: Vec<Answer>,
    /// The EDNS OPT record of the additional section, if any.
    pub edns: Option<Edns>,
}

/// The EDNS(0) OPT pseudo-record (RFC 6891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub udp_payload_size: u16,
    /// EDNS version.
    pub version: u8,
    /// DO bit.
    pub dnssec_ok: bool,
}

/// A DNS message that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The message ends inside the header, a name or a record.
    #[error("dns message truncated")]
    Truncated,
    /// A label length with the reserved top bits 01 or 10, i.e. above 63.
    #[error("dns label longer than 63")]
    BadLabel,
    /// A name longer than 255 bytes.
    #[error("dns name longer than 255")]
    NameTooLong,
    /// A compression pointer that does not point strictly backwards, or too many of them.
    #[error("dns compression pointer loop")]
    PointerLoop,
    /// Record data that does not fit its type (A not 4 bytes, SvcParam overrun, ...).
    #[error("dns record data malformed")]
    BadRdata,
}

/// Parses a DNS message (without the TCP length prefix).
pub fn parse_message(msg: &[u8]) -> Result<DnsMessage, DnsError> {
    let h: &[u8; 12] = msg
        .get(..12)
        .and_then(|h| h.try_into().ok())
        .ok_or(DnsError::Truncated)?;
    let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut out = DnsMessage {
        id: u16::from_be_bytes([h[0], h[1]]),
        response: h[2] & 0x80 != 0,
        opcode: (h[2] >> 3) & 0x0f,
        truncated: h[2] & 0x02 != 0,
        rcode: h[3] & 0x0f,
        questions: Vec::new(),
        answers: Vec::new(),
        edns: None,
    };
    let mut pos = 12;
    for _ in 0..qd {
        let (name, next) = read_name(msg, pos)?;
        let qtype = be16(msg, next).ok_or(DnsError::Truncated)?;
        be16(msg, next + 2).ok_or(DnsError::Truncated)?;
        pos = next + 4;
        if out.questions.len() < MAX_RECORDS {
            out.questions.push(Question { name, qtype });
        }
    }
    for _ in 0..an {
        let record = read_record(msg, pos)?;
        pos = record.end;
        if out.answers.len() >= MAX_RECORDS {
            continue;
        }
        // Record framing is intact here: data that does not fit its type spoils this answer
        // (reported as Other), not the whole message.
        let data = read_rdata(msg, &record).unwrap_or(AnswerData::Other(record.rtype));
        out.answers.push(Answer {
            name: record.name,
            ttl: record.ttl,
            data,
        });
    }
    for _ in 0..ns {
        pos = skip_record(msg, pos)?;
    }
    for _ in 0..ar {
        let start = pos;
        pos = skip_record(msg, pos)?;
        // OPT: root name (one zero byte) then type 41
        if msg.get(start) == Some(&0) && be16(msg, start + 1) == Some(41) {
            let class = be16(msg, start + 3).ok_or(DnsError::Truncated)?;
            let ttl = be32(msg, start + 5).ok_or(DnsError::Truncated)?;
            out.edns = Some(Edns {
                udp_payload_size: class,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
    }
    Ok(out)
}

fn read_rdata(msg: &[u8], record: &Record) -> Result<AnswerData, DnsError> {
    Ok(match record.rtype {
        1 => {
            let b: [u8; 4] = record
                .rdata(msg)?
                .try_into()
                .map_err(|_| DnsError::BadRdata)?;
            AnswerData::A(Ipv4Addr::from(b))
        }
        28 => {
            let b: [u8; 16] = record
                .rdata(msg)?
                .try_into()
                .map_err(|_| DnsError::BadRdata)?;
            AnswerData::Aaaa(Ipv6Addr::from(b))
        }
        5 => {
            let (name, next) = read_name(msg, record.rdata_start)?;
            if next > record.end {
                return Err(DnsError::BadRdata);
            }
            AnswerData::Cname(name)
        }
        64 | 65 => read_svcb(msg, record.rdata_start, record.end)?,
        other => AnswerData::Other(other),
    })
}

struct Record {
    name: String,
    rtype: u16,
    ttl: u32,
    rdata_start: usize,
    end: usize,
}

impl Record {
    fn rdata<'a>(&self, msg: &'a [u8]) -> Result<&'a [u8], DnsError> {
        msg.get(self.rdata_start..self.end)
            .ok_or(DnsError::Truncated)
    }
}

fn read_record(msg: &[u8], pos: usize) -> Result<Record, DnsError> {
    let (name, next) = read_name(msg, pos)?;
    let rtype = be16(msg, next).ok_or(DnsError::Truncated)?;
    let ttl = be32(msg, next + 4).ok_or(DnsError::Truncated)?;
    let rdlen = usize::from(be16(msg, next + 8).ok_or(DnsError::Truncated)?);
    let rdata_start = next + 10;
    let end = rdata_start + rdlen;
    if end > msg.len() {
        return Err(DnsError::Truncated);
    }
    Ok(Record {
        name,
        rtype,
        ttl,
        rdata_start,
        end,
    })
}

/// Skips a record without building its name.
fn skip_record(msg: &[u8], pos: usize) -> Result<usize, DnsError> {
    let next = skip_name(msg, pos)?;
    let rdlen = usize::from(be16(msg, next + 8).ok_or(DnsError::Truncated)?);
    let end = next + 10 + rdlen;
    if end > msg.len() {
        return Err(DnsError::Truncated);
    }
    Ok(end)
}

/// Skips a name in place (a pointer ends it); returns the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len {
            0 => return Ok(pos + 1),
            1..=63 => pos += 1 + usize::from(len),
            0xc0..=0xff => {
                msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                return Ok(pos + 2);
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Reads a possibly compressed name at `pos`; returns it in presentation form (lowercase, no
/// trailing dot, `\DDD` for bytes that are not hostname bytes) and the offset after it in place.
pub fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 1usize; // the root label
    let mut after: Option<usize> = None;
    let mut pointers = 0;
    // Every pointer must target an offset before the label that holds it: the walk then strictly
    // decreases at each jump and always ends.
    let mut limit = pos;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len {
            0 => {
                return Ok((name, after.unwrap_or(pos + 1)));
            }
            1..=63 => {
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(DnsError::Truncated)?;
                wire_len += 1 + label.len();
                if wire_len > MAX_NAME_LEN {
                    return Err(DnsError::NameTooLong);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + label.len();
            }
            0xc0..=0xff => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                pointers += 1;
                if target >= limit || pointers > MAX_POINTERS {
                    return Err(DnsError::PointerLoop);
                }
                if after.is_none() {
                    after = Some(pos + 2);
                }
                limit = target;
                pos = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// Appends a label in presentation form: hostname bytes lowercased, anything else `\DDD`.
pub(crate) fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b.to_ascii_lowercase()));
        } else {
            push_escaped(out, b);
        }
    }
}

pub(crate) fn push_escaped(out: &mut String, b: u8) {
    out.push('\\');
    out.push(char::from(b'0' + b / 100));
    out.push(char::from(b'0' + (b / 10) % 10));
    out.push(char::from(b'0' + b % 10));
}

fn read_svcb(msg: &[u8], start: usize, end: usize) -> Result<AnswerData, DnsError> {
    let rdata = msg.get(..end).ok_or(DnsError::Truncated)?;
    let priority = be16(rdata, start).ok_or(DnsError::BadRdata)?;
    let (target, mut pos) = read_name(rdata, start + 2).map_err(|e| match e {
        DnsError::Truncated => DnsError::BadRdata,
        other => other,
    })?;
    let mut alpn = Vec::new();
    let mut ech = false;
    let mut ipv4_hints = Vec::new();
    let mut ipv6_hints = Vec::new();
    while pos < end {
        let key = be16(rdata, pos).ok_or(DnsError::BadRdata)?;
        let len = usize::from(be16(rdata, pos + 2).ok_or(DnsError::BadRdata)?);
        let value = rdata
            .get(pos + 4..pos + 4 + len)
            .ok_or(DnsError::BadRdata)?;
        pos += 4 + len;
        match key {
            1 => {
                let mut rest = value;
                while let Some((&n, tail)) = rest.split_first() {
                    let id = tail.get(..usize::from(n)).ok_or(DnsError::BadRdata)?;
                    rest = tail.get(usize::from(n)..).unwrap_or_default();
                    if alpn.len() < MAX_SVC_VALUES {
                        alpn.push(protocol_id(id));
                    }
                }
            }
            4 => {
                if len % 4 != 0 {
                    return Err(DnsError::BadRdata);
                }
                for c in value.chunks_exact(4).take(MAX_SVC_VALUES) {
                    let b: [u8; 4] = c.try_into().map_err(|_| DnsError::BadRdata)?;
                    ipv4_hints.push(Ipv4Addr::from(b));
                }
            }
            5 => ech = true,
            6 => {
                if len % 16 != 0 {
                    return Err(DnsError::BadRdata);
                }
                for c in value.chunks_exact(16).take(MAX_SVC_VALUES) {
                    let b: [u8; 16] = c.try_into().map_err(|_| DnsError::BadRdata)?;
                    ipv6_hints.push(Ipv6Addr::from(b));
                }
            }
            _ => {}
        }
    }
    Ok(AnswerData::Svcb {
        priority,
        target,
        alpn,
        ech,
        ipv4_hints,
        ipv6_hints,
    })
}

/// An ALPN protocol id as text: printable ASCII kept, other bytes `\DDD`.
pub(crate) fn protocol_id(id: &[u8]) -> String {
    let mut s = String::with_capacity(id.len());
    for &b in id {
        if b.is_ascii_graphic() && b != b'\\' {
            s.push(char::from(b));
        } else {
            push_escaped(&mut s, b);
        }
    }
    s
}

#[cfg(test)]
mod tests;
