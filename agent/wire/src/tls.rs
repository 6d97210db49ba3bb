//! TLS ClientHello (RFC 8446): SNI, ALPN, ECH presence, GREASE, key-share groups.
//!
//! Our own zero-copy walk rather than tls-parser: 4–5.5× faster on real curl and Chromium hellos
//! (`benches/choose.rs`, docs/BENCHMARKS.md "Wire parsers"), and it reads a hello cut short: once
//! the server_name extension is whole, the SNI is returned with `complete: false` (a QUIC hello
//! whose second Initial never arrives), where tls-parser only says the record is incomplete.

/// What a ClientHello says that the agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// server_name (host_name), lowercase.
    pub sni: Option<String>,
    /// application_layer_protocol_negotiation protocols, in order.
    pub alpn: Vec<String>,
    /// encrypted_client_hello (0xfe0d) is present; it may be GREASE ECH.
    pub ech: bool,
    /// A GREASE value (RFC 8701) appears in cipher suites, extensions, groups or versions.
    pub grease: bool,
    /// Groups of the key_share entries, in order (e.g. 0x11ec X25519MLKEM768).
    pub key_share_groups: Vec<u16>,
    /// False: the hello was truncated but the SNI was already found.
    pub complete: bool,
    /// Length of the handshake message body as announced in its header.
    pub len: usize,
}

/// Most ALPN protocols or key shares kept from one hello.
pub const MAX_LIST: usize = 16;
/// Largest ClientHello body accepted (a post-quantum hello is ~1.2–2.3 KB; padding may add more).
pub const MAX_HELLO_LEN: usize = 64 * 1024;
/// Longest server name accepted (a DNS name is at most 253 characters).
pub const MAX_SNI_LEN: usize = 255;

/// Handshake content type of a TLS record.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;

/// Why bytes are not (yet) a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// Not a TLS handshake record / message at all.
    #[error("not a tls handshake")]
    NotHandshake,
    /// A handshake message other than ClientHello.
    #[error("not a client hello")]
    NotClientHello,
    /// The bytes end before the hello (or its SNI) is complete: more bytes may fix it.
    #[error("client hello incomplete")]
    Incomplete,
    /// A length that overruns its container, or a field out of range.
    #[error("client hello malformed")]
    Malformed,
}

/// Is `value` a GREASE code point (RFC 8701): 0x?a?a with equal bytes.
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// Quick check that a TCP payload may start a ClientHello record: content type 22, major
/// version 3, and (when present) handshake type 1. For the hot path: no allocation, no loops.
#[inline]
pub fn starts_client_hello(payload: &[u8]) -> bool {
    match payload {
        [CONTENT_HANDSHAKE, 3, minor, rest @ ..] if *minor <= 4 => {
            rest.get(2).is_none_or(|t| *t == HANDSHAKE_CLIENT_HELLO)
        }
        _ => false,
    }
}

/// Parses a ClientHello from a TLS record stream (first byte 22) or a bare handshake message
/// (first byte 1, as in QUIC CRYPTO frames). A hello cut short after its server_name extension
/// yields `complete: false`; cut short before, [`TlsError::Incomplete`].
pub fn parse_client_hello(buf: &[u8]) -> Result<ClientHello, TlsError> {
    match buf.first() {
        Some(&HANDSHAKE_CLIENT_HELLO) => parse_handshake(buf),
        Some(&CONTENT_HANDSHAKE) => {
            let first = record_fragment(buf, 0)?;
            let (fragment, mut next) = first;
            // Usual case: the whole message is in the first record, read it in place.
            let needed = handshake_len(fragment).map(|l| l + 4);
            if needed.is_none_or(|n| n <= fragment.len()) || next >= buf.len() {
                return parse_handshake(fragment);
            }
            // A hello spread over several records: join the fragments (bounded).
            let mut joined = fragment.to_vec();
            while next < buf.len() && needed.is_none_or(|n| joined.len() < n) {
                let (fragment, after) = match record_fragment(buf, next) {
                    Ok(f) => f,
                    Err(TlsError::Incomplete) => break,
                    Err(e) => return Err(e),
                };
                if joined.len() + fragment.len() > MAX_HELLO_LEN + 4 {
                    return Err(TlsError::Malformed);
                }
                joined.extend_from_slice(fragment);
                next = after;
            }
            parse_handshake(&joined)
        }
        Some(_) => Err(TlsError::NotHandshake),
        None => Err(TlsError::Incomplete),
    }
}

/// How many bytes of a record stream hold the whole ClientHello, when the headers present say
/// so; `None` while a header needed for the answer is missing.
pub fn client_hello_stream_len(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut have = 0usize;
    let mut needed: Option<usize> = None;
    loop {
        let rec_len = usize::from(u16::from_be_bytes([*buf.get(pos + 3)?, *buf.get(pos + 4)?]));
        let body_start = pos + 5;
        if needed.is_none() {
            // handshake header may itself be split; only the first record is checked here
            let fragment = buf.get(body_start..).unwrap_or_default();
            let hs = fragment
                .get(..rec_len.min(fragment.len()))
                .unwrap_or_default();
            needed = Some(handshake_len(hs)? + 4);
        }
        have += rec_len;
        pos = body_start + rec_len;
        if needed.is_some_and(|n| have >= n) {
            return Some(pos);
        }
        if pos > MAX_HELLO_LEN * 2 {
            return Some(pos);
        }
    }
}

fn record_fragment(buf: &[u8], at: usize) -> Result<(&[u8], usize), TlsError> {
    let header = buf.get(at..at + 5).ok_or(TlsError::Incomplete)?;
    let [content, major, _minor, hi, lo] = header else {
        return Err(TlsError::Incomplete);
    };
    if *content != CONTENT_HANDSHAKE || *major != 3 {
        return Err(TlsError::NotHandshake);
    }
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len == 0 || len > 16384 + 2048 {
        return Err(TlsError::Malformed);
    }
    let end = at + 5 + len;
    // a record cut short still yields what it holds: a hello may end with the capture
    let fragment = buf
        .get(at + 5..end.min(buf.len()))
        .ok_or(TlsError::Incomplete)?;
    Ok((fragment, end))
}

fn handshake_len(msg: &[u8]) -> Option<usize> {
    let [_, a, b, c, ..] = msg else { return None };
    Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c))
}

/// A cursor over a bounded slice; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn u16(&mut self) -> Option<u16> {
        let v = u16::from_be_bytes([*self.buf.get(self.pos)?, *self.buf.get(self.pos + 1)?]);
        self.pos += 2;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(v)
    }
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn parse_handshake(msg: &[u8]) -> Result<ClientHello, TlsError> {
    match msg.first() {
        None => return Err(TlsError::Incomplete),
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Err(TlsError::NotClientHello),
    }
    let len = handshake_len(msg).ok_or(TlsError::Incomplete)?;
    if len > MAX_HELLO_LEN {
        return Err(TlsError::Malformed);
    }
    let available = msg.get(4..).unwrap_or_default();
    let complete = available.len() >= len;
    let body = available.get(..len).unwrap_or(available);
    let mut hello = ClientHello {
        complete,
        len,
        ..ClientHello::default()
    };
    // Without `complete`, running out of bytes is Incomplete (or a partial hello once the SNI is
    // known); with it, running out of bytes is a length that lies: Malformed.
    let short = if complete {
        TlsError::Malformed
    } else {
        TlsError::Incomplete
    };
    let mut r = Reader { buf: body, pos: 0 };
    let version = r.u16().ok_or(short)?;
    if version >> 8 != 3 {
        return Err(TlsError::Malformed);
    }
    r.take(32).ok_or(short)?;
    let sid_len = r.u8().ok_or(short)?;
    if sid_len > 32 {
        return Err(TlsError::Malformed);
    }
    r.take(usize::from(sid_len)).ok_or(short)?;
    let suites_len = r.u16().ok_or(short)?;
    if suites_len % 2 != 0 {
        return Err(TlsError::Malformed);
    }
    let suites = r.take(usize::from(suites_len)).ok_or(short)?;
    hello.grease |= suites
        .chunks_exact(2)
        .any(|c| is_grease(u16::from_be_bytes([c[0], c[1]])));
    let comp_len = r.u8().ok_or(short)?;
    r.take(usize::from(comp_len)).ok_or(short)?;
    if r.is_empty() && complete {
        return Ok(hello); // no extensions (TLS 1.0-style hello)
    }
    let ext_len = usize::from(r.u16().ok_or(short)?);
    let ext_end = r.pos + ext_len;
    if complete && ext_end > body.len() {
        return Err(TlsError::Malformed);
    }
    let mut truncated = false;
    while r.pos < ext_end {
        let (Some(ext_type), Some(len)) = (r.u16(), r.u16()) else {
            if complete {
                return Err(TlsError::Malformed);
            }
            truncated = true;
            break;
        };
        let Some(data) = r.take(usize::from(len)) else {
            if complete {
                return Err(TlsError::Malformed);
            }
            truncated = true;
            break;
        };
        if r.pos > ext_end {
            return Err(TlsError::Malformed);
        }
        hello.grease |= is_grease(ext_type);
        match ext_type {
            0 => hello.sni = Some(parse_server_name(data)?),
            10 => hello.grease |= list16(data)?.chunks_exact(2).any(|c| is_grease(be(c))),
            16 => hello.alpn = parse_alpn(data)?,
            43 => {
                let (&n, rest) = data.split_first().ok_or(TlsError::Malformed)?;
                let versions = rest.get(..usize::from(n)).ok_or(TlsError::Malformed)?;
                hello.grease |= versions.chunks_exact(2).any(|c| is_grease(be(c)));
            }
            51 => {
                let mut shares = Reader {
                    buf: list16(data)?,
                    pos: 0,
                };
                while !shares.is_empty() {
                    let group = shares.u16().ok_or(TlsError::Malformed)?;
                    let key_len = shares.u16().ok_or(TlsError::Malformed)?;
                    shares
                        .take(usize::from(key_len))
                        .ok_or(TlsError::Malformed)?;
                    hello.grease |= is_grease(group);
                    if hello.key_share_groups.len() < MAX_LIST {
                        hello.key_share_groups.push(group);
                    }
                }
            }
            0xfe0d => hello.ech = true,
            _ => {}
        }
    }
    if !complete || truncated {
        hello.complete = false;
        if hello.sni.is_none() {
            return Err(TlsError::Incomplete);
        }
    }
    Ok(hello)
}

fn be(c: &[u8]) -> u16 {
    match c {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

/// The body of a vector with a 2-byte length that must fill `data` exactly.
fn list16(data: &[u8]) -> Result<&[u8], TlsError> {
    let (len, rest) = data.split_at_checked(2).ok_or(TlsError::Malformed)?;
    if usize::from(be(len)) != rest.len() {
        return Err(TlsError::Malformed);
    }
    Ok(rest)
}

fn parse_server_name(data: &[u8]) -> Result<String, TlsError> {
    let mut list = Reader {
        buf: list16(data)?,
        pos: 0,
    };
    while !list.is_empty() {
        let kind = list.u8().ok_or(TlsError::Malformed)?;
        let len = list.u16().ok_or(TlsError::Malformed)?;
        let name = list.take(usize::from(len)).ok_or(TlsError::Malformed)?;
        if kind == 0 {
            if name.is_empty() || name.len() > MAX_SNI_LEN {
                return Err(TlsError::Malformed);
            }
            let mut out = String::with_capacity(name.len());
            for label in name.split(|b| *b == b'.') {
                if !out.is_empty() {
                    out.push('.');
                }
                crate::dns::push_label(&mut out, label);
            }
            return Ok(out);
        }
    }
    Err(TlsError::Malformed)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, TlsError> {
    let mut rest = list16(data)?;
    let mut out = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let id = tail.get(..usize::from(n)).ok_or(TlsError::Malformed)?;
        rest = tail.get(usize::from(n)..).unwrap_or_default();
        if out.len() < MAX_LIST {
            out.push(crate::dns::protocol_id(id));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
