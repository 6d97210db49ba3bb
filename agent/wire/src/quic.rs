//! QUIC v1 (RFC 9000/9001) and v2 (RFC 9369) Initial packets: header, Initial keys, header
//! protection removal, AEAD decryption and the frames an Initial may carry.
//!
//! Crypto is `ring` (HKDF-SHA256, AES-128-GCM, AES header protection), the library rustls already
//! brings in; no other crypto stack enters the agent.

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, quic::HeaderProtectionKey};
use ring::hkdf;

/// QUIC version 1.
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2.
pub const VERSION_2: u32 = 0x6b33_43cf;
/// Longest connection id of QUIC v1/v2.
pub const MAX_CID_LEN: usize = 20;
/// AEAD tag length of AES-128-GCM.
pub const TAG_LEN: usize = 16;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];

/// Why a datagram is not a decryptable Initial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// Not a long-header packet, or a version this crate does not decrypt.
    #[error("not a quic v1/v2 long header packet")]
    NotQuic,
    /// A long-header packet of another type (0-RTT, Handshake, Retry).
    #[error("not an initial packet")]
    NotInitial,
    /// The packet ends inside its header, or is too short for a header-protection sample.
    #[error("quic packet truncated")]
    Truncated,
    /// A connection id longer than 20 bytes.
    #[error("quic connection id longer than 20")]
    BadConnectionId,
    /// The AEAD tag did not verify: other keys (a server Initial), corruption, or not QUIC.
    #[error("quic initial did not decrypt")]
    Decrypt,
    /// A frame that cannot be read or may not appear in an Initial packet.
    #[error("quic frame malformed or not allowed in an initial")]
    BadFrame,
}

/// The header fields of an Initial packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialHeader<'a> {
    /// QUIC version.
    pub version: u32,
    /// Destination connection id (from a client's first flight: the id the keys derive from).
    pub dcid: &'a [u8],
    /// Source connection id.
    pub scid: &'a [u8],
    /// Retry / NEW_TOKEN token.
    pub token: &'a [u8],
    /// Offset of the (protected) packet number.
    pub pn_offset: usize,
    /// Bytes of this packet in the datagram (header + packet number + payload + tag); coalesced
    /// packets follow it.
    pub packet_len: usize,
}

/// Reads a QUIC variable-length integer at `pos`; returns it and the offset after it.
pub fn read_varint(buf: &[u8], pos: usize) -> Option<(u64, usize)> {
    let first = *buf.get(pos)?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(pos..pos + len)?;
    let mut value = u64::from(first & 0x3f);
    for b in bytes.get(1..)? {
        value = value << 8 | u64::from(*b);
    }
    Some((value, pos + len))
}

/// The long-header packet at the start of `datagram`: its type bits decoded for the version, and
/// its length in the datagram. For skipping coalesced 0-RTT / Handshake packets.
pub fn parse_initial_header(datagram: &[u8]) -> Result<InitialHeader<'_>, QuicError> {
    let first = *datagram.first().ok_or(QuicError::Truncated)?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotQuic);
    }
    let version = crate::link::be32(datagram, 1).ok_or(QuicError::Truncated)?;
    let packet_type = (first >> 4) & 0x03;
    let is_initial = match version {
        VERSION_1 => packet_type == 0,
        VERSION_2 => packet_type == 1,
        _ => return Err(QuicError::NotQuic),
    };
    let dcid_len = usize::from(*datagram.get(5).ok_or(QuicError::Truncated)?);
    if dcid_len > MAX_CID_LEN {
        return Err(QuicError::BadConnectionId);
    }
    let dcid = datagram.get(6..6 + dcid_len).ok_or(QuicError::Truncated)?;
    let mut pos = 6 + dcid_len;
    let scid_len = usize::from(*datagram.get(pos).ok_or(QuicError::Truncated)?);
    if scid_len > MAX_CID_LEN {
        return Err(QuicError::BadConnectionId);
    }
    let scid = datagram
        .get(pos + 1..pos + 1 + scid_len)
        .ok_or(QuicError::Truncated)?;
    pos += 1 + scid_len;
    let retry = match version {
        VERSION_1 => packet_type == 3,
        _ => packet_type == 0,
    };
    if retry {
        return Err(QuicError::NotInitial);
    }
    let mut token: &[u8] = &[];
    if is_initial {
        let (token_len, next) = read_varint(datagram, pos).ok_or(QuicError::Truncated)?;
        let token_len = usize::try_from(token_len).map_err(|_| QuicError::Truncated)?;
        token = datagram
            .get(next..next.saturating_add(token_len))
            .ok_or(QuicError::Truncated)?;
        pos = next + token_len;
    }
    let (length, pn_offset) = read_varint(datagram, pos).ok_or(QuicError::Truncated)?;
    let length = usize::try_from(length).map_err(|_| QuicError::Truncated)?;
    let packet_len = pn_offset.checked_add(length).ok_or(QuicError::Truncated)?;
    if packet_len > datagram.len() {
        return Err(QuicError::Truncated);
    }
    let header = InitialHeader {
        version,
        dcid,
        scid,
        token,
        pn_offset,
        packet_len,
    };
    if !is_initial {
        return Err(QuicError::NotInitial);
    }
    Ok(header)
}

/// The length of the long-header packet at the start of `datagram` whatever its type (for
/// walking coalesced packets); `None` for a Retry, a short header or garbage.
pub fn long_packet_len(datagram: &[u8]) -> Option<usize> {
    match parse_initial_header(datagram) {
        Ok(h) => Some(h.packet_len),
        Err(QuicError::NotInitial) => {
            // same walk without the token field
            let dcid_len = usize::from(*datagram.get(5)?);
            let scid_len = usize::from(*datagram.get(6 + dcid_len)?);
            if dcid_len > MAX_CID_LEN || scid_len > MAX_CID_LEN {
                return None;
            }
            let (length, pn_offset) = read_varint(datagram, 7 + dcid_len + scid_len)?;
            let end = pn_offset.checked_add(usize::try_from(length).ok()?)?;
            (end <= datagram.len()).then_some(end)
        }
        Err(_) => None,
    }
}

/// The client's Initial packet protection keys of one connection (one DCID).
pub struct InitialKeys {
    key: LessSafeKey,
    iv: [u8; 12],
    hp: HeaderProtectionKey,
    /// The raw key material, kept for tests against the RFC vectors.
    #[cfg(test)]
    raw: ([u8; 16], [u8; 12], [u8; 16]),
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Result<(), QuicError> {
    let out_len = u16::try_from(out.len())
        .map_err(|_| QuicError::Decrypt)?
        .to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).map_err(|_| QuicError::Decrypt)?];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| QuicError::Decrypt)
}

impl InitialKeys {
    /// The client keys for an Initial of `version` whose DCID is `dcid`.
    pub fn client(version: u32, dcid: &[u8]) -> Result<InitialKeys, QuicError> {
        InitialKeys::derive(version, dcid, b"client in")
    }

    /// The server keys (server Initials use the client's original DCID too).
    pub fn server(version: u32, dcid: &[u8]) -> Result<InitialKeys, QuicError> {
        InitialKeys::derive(version, dcid, b"server in")
    }

    fn derive(version: u32, dcid: &[u8], side: &[u8]) -> Result<InitialKeys, QuicError> {
        let (salt, key_label, iv_label, hp_label): (&[u8], &[u8], &[u8], &[u8]) = match version {
            VERSION_1 => (&SALT_V1, b"quic key", b"quic iv", b"quic hp"),
            VERSION_2 => (&SALT_V2, b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
            _ => return Err(QuicError::NotQuic),
        };
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
        let mut secret = [0u8; 32];
        expand_label(&initial, side, &mut secret)?;
        let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
        let mut key = [0u8; 16];
        let mut iv = [0u8; 12];
        let mut hp = [0u8; 16];
        expand_label(&prk, key_label, &mut key)?;
        expand_label(&prk, iv_label, &mut iv)?;
        expand_label(&prk, hp_label, &mut hp)?;
        let unbound = UnboundKey::new(&aead::AES_128_GCM, &key).map_err(|_| QuicError::Decrypt)?;
        let hp_key =
            HeaderProtectionKey::new(&aead::quic::AES_128, &hp).map_err(|_| QuicError::Decrypt)?;
        Ok(InitialKeys {
            key: LessSafeKey::new(unbound),
            iv,
            hp: hp_key,
            #[cfg(test)]
            raw: (key, iv, hp),
        })
    }
}

/// Recovers a full packet number from its truncated form (RFC 9000 Appendix A.3).
pub fn decode_packet_number(largest: Option<u64>, truncated: u64, pn_len: usize) -> u64 {
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let window = 1u64 << (pn_len * 8).min(32);
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | truncated;
    if candidate.saturating_add(half) <= expected && candidate < (1u64 << 62) - window {
        candidate + window
    } else if candidate > expected.saturating_add(half) && candidate >= window {
        candidate - window
    } else {
        candidate
    }
}

/// Removes header protection and decrypts the Initial at the start of `datagram` with `keys`.
/// `scratch` receives a copy of the packet; the plaintext payload is `scratch[range]`. Returns the
/// packet number and that range.
pub fn decrypt_initial_with(
    datagram: &[u8],
    header: &InitialHeader<'_>,
    keys: &InitialKeys,
    largest_pn: Option<u64>,
    scratch: &mut Vec<u8>,
) -> Result<(u64, std::ops::Range<usize>), QuicError> {
    let packet = datagram
        .get(..header.packet_len)
        .ok_or(QuicError::Truncated)?;
    let sample_at = header.pn_offset + 4;
    let sample = packet
        .get(sample_at..sample_at + 16)
        .ok_or(QuicError::Truncated)?;
    let mask = keys.hp.new_mask(sample).map_err(|_| QuicError::Decrypt)?;
    scratch.clear();
    scratch.extend_from_slice(packet);
    let [m0, m1, m2, m3, m4] = mask;
    let first = scratch.first_mut().ok_or(QuicError::Truncated)?;
    *first ^= m0 & 0x0f;
    let pn_len = usize::from(*first & 0x03) + 1;
    let mut truncated = 0u64;
    for (i, m) in [m1, m2, m3, m4].into_iter().take(pn_len).enumerate() {
        let b = scratch
            .get_mut(header.pn_offset + i)
            .ok_or(QuicError::Truncated)?;
        *b ^= m;
        truncated = truncated << 8 | u64::from(*b);
    }
    let pn = decode_packet_number(largest_pn, truncated, pn_len);
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().rev().zip(pn.to_be_bytes().iter().rev()) {
        *n ^= p;
    }
    let header_len = header.pn_offset + pn_len;
    if scratch.len() < header_len + TAG_LEN {
        return Err(QuicError::Truncated);
    }
    let (aad, body) = scratch.split_at_mut(header_len);
    let plain = keys
        .key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&*aad), body)
        .map_err(|_| QuicError::Decrypt)?;
    let plain_len = plain.len();
    Ok((pn, header_len..header_len + plain_len))
}

/// Decrypts the client Initial at the start of `datagram` with keys derived from its own DCID (a
/// client's first flight). The plaintext payload is `scratch[range]`.
pub fn decrypt_initial<'a>(
    datagram: &'a [u8],
    scratch: &mut Vec<u8>,
) -> Result<(InitialHeader<'a>, u64, std::ops::Range<usize>), QuicError> {
    let header = parse_initial_header(datagram)?;
    let keys = InitialKeys::client(header.version, header.dcid)?;
    let (pn, range) = decrypt_initial_with(datagram, &header, &keys, None, scratch)?;
    Ok((header, pn, range))
}

/// Walks the frames of a decrypted Initial payload, calling `on_crypto(offset, data)` for each
/// CRYPTO frame. PADDING, PING, ACK and CONNECTION_CLOSE are skipped; any other frame is an error
/// (RFC 9000 §12.4: nothing else may appear in an Initial).
pub fn parse_frames(
    payload: &[u8],
    mut on_crypto: impl FnMut(u64, &[u8]),
) -> Result<(), QuicError> {
    let mut pos = 0;
    let varint = |pos: usize| read_varint(payload, pos).ok_or(QuicError::BadFrame);
    while let Some(&frame_type) = payload.get(pos) {
        pos += 1;
        match frame_type {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                let (_largest, p) = varint(pos)?;
                let (_delay, p) = varint(p)?;
                let (ranges, p) = varint(p)?;
                let (_first, mut p) = varint(p)?;
                // each range is at least two bytes: a count above the payload is a lie
                if ranges > payload.len() as u64 {
                    return Err(QuicError::BadFrame);
                }
                for _ in 0..ranges {
                    p = varint(varint(p)?.1)?.1;
                }
                if frame_type == 0x03 {
                    p = varint(varint(varint(p)?.1)?.1)?.1;
                }
                pos = p;
            }
            0x06 => {
                let (offset, p) = varint(pos)?;
                let (len, p) = varint(p)?;
                let len = usize::try_from(len).map_err(|_| QuicError::BadFrame)?;
                let data = payload
                    .get(p..p.saturating_add(len))
                    .ok_or(QuicError::BadFrame)?;
                on_crypto(offset, data);
                pos = p + len;
            }
            0x1c | 0x1d => {
                let (_code, mut p) = varint(pos)?;
                if frame_type == 0x1c {
                    p = varint(p)?.1;
                }
                let (len, p) = varint(p)?;
                let len = usize::try_from(len).map_err(|_| QuicError::BadFrame)?;
                payload
                    .get(p..p.saturating_add(len))
                    .ok_or(QuicError::BadFrame)?;
                pos = p + len;
            }
            _ => return Err(QuicError::BadFrame),
        }
    }
    Ok(())
}

/// Builds a protected client Initial (4-byte packet number, no SCID, no token) carrying
/// `payload` as its frames: the inverse of [`decrypt_initial_with`], checked against the RFC
/// vectors. For tests and fuzzing of everything behind decryption; the agent never sends.
pub fn seal_client_initial(
    version: u32,
    dcid: &[u8],
    pn: u32,
    payload: &[u8],
) -> Result<Vec<u8>, QuicError> {
    if dcid.len() > MAX_CID_LEN {
        return Err(QuicError::BadConnectionId);
    }
    let keys = InitialKeys::client(version, dcid)?;
    let type_bits = if version == VERSION_2 { 0x10 } else { 0x00 };
    let mut p = vec![0xc3 | type_bits];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(dcid.len() as u8);
    p.extend_from_slice(dcid);
    p.push(0); // no scid
    p.push(0); // no token
    let length = u16::try_from(4 + payload.len() + TAG_LEN)
        .ok()
        .filter(|l| *l < 0x4000)
        .ok_or(QuicError::Truncated)?;
    p.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_offset = p.len();
    p.extend_from_slice(&pn.to_be_bytes());
    let mut body = payload.to_vec();
    let mut nonce = keys.iv;
    for (n, b) in nonce
        .iter_mut()
        .rev()
        .zip(u64::from(pn).to_be_bytes().iter().rev())
    {
        *n ^= b;
    }
    let tag = keys
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&p[..]),
            &mut body,
        )
        .map_err(|_| QuicError::Decrypt)?;
    p.extend_from_slice(&body);
    p.extend_from_slice(tag.as_ref());
    let sample = p
        .get(pn_offset + 4..pn_offset + 20)
        .ok_or(QuicError::Truncated)?;
    let [m0, m1, m2, m3, m4] = keys.hp.new_mask(sample).map_err(|_| QuicError::Decrypt)?;
    if let Some(first) = p.first_mut() {
        *first ^= m0 & 0x0f;
    }
    if let Some(pn_bytes) = p.get_mut(pn_offset..pn_offset + 4) {
        for (b, m) in pn_bytes.iter_mut().zip([m1, m2, m3, m4]) {
            *b ^= m;
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests;
