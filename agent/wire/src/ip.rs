//! IPv4 and IPv6 (with extension headers). Fragments are recognised, not reassembled.

use crate::link::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, be16};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most IPv6 extension headers walked before giving up.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A network-layer packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The upper-layer protocol (6 TCP, 17 UDP, ...), after IPv6 extension headers.
    pub protocol: u8,
    /// The upper-layer bytes, cut to the length the header announces when it is shorter.
    pub payload: &'a [u8],
    /// Part of a fragmented datagram (other than an IPv6 atomic fragment): not decodable alone.
    pub fragment: bool,
}

/// An IP header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// The packet ends inside a header.
    #[error("packet shorter than its ip header")]
    Truncated,
    /// The version nibble does not match the EtherType.
    #[error("wrong ip version")]
    BadVersion,
    /// IPv4 IHL below 5.
    #[error("ipv4 header length below 20")]
    BadHeaderLength,
    /// More than [`MAX_EXTENSION_HEADERS`] IPv6 extension headers.
    #[error("too many ipv6 extension headers")]
    TooManyExtensions,
    /// Not an IP EtherType.
    #[error("not ip")]
    NotIp,
}

/// Parses the packet of the given EtherType.
pub fn parse(ethertype: u16, buf: &[u8]) -> Result<IpPacket<'_>, IpError> {
    match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(buf),
        ETHERTYPE_IPV6 => parse_ipv6(buf),
        _ => Err(IpError::NotIp),
    }
}

/// Parses an IPv4 header. A total length of 0 (a TSO/"BIG TCP" super-frame) or larger than the
/// capture keeps every captured byte.
pub fn parse_ipv4(buf: &[u8]) -> Result<IpPacket<'_>, IpError> {
    let header: &[u8; 20] = buf
        .get(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(IpError::Truncated)?;
    if header[0] >> 4 != 4 {
        return Err(IpError::BadVersion);
    }
    let ihl = usize::from(header[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(IpError::BadHeaderLength);
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let flags_offset = u16::from_be_bytes([header[6], header[7]]);
    let fragment = flags_offset & 0x3fff != 0; // MF set or offset non-zero
    let end = if total == 0 || total > buf.len() {
        buf.len()
    } else {
        total
    };
    let payload = buf.get(ihl..end).ok_or(IpError::Truncated)?;
    Ok(IpPacket {
        src: IpAddr::V4(Ipv4Addr::new(
            header[12], header[13], header[14], header[15],
        )),
        dst: IpAddr::V4(Ipv4Addr::new(
            header[16], header[17], header[18], header[19],
        )),
        protocol: header[9],
        payload,
        fragment,
    })
}

/// Parses an IPv6 header and walks its extension headers to the upper layer (or to ESP / no next
/// header, returned as the protocol with the rest as payload).
pub fn parse_ipv6(buf: &[u8]) -> Result<IpPacket<'_>, IpError> {
    let header: &[u8; 40] = buf
        .get(..40)
        .and_then(|h| h.try_into().ok())
        .ok_or(IpError::Truncated)?;
    if header[0] >> 4 != 6 {
        return Err(IpError::BadVersion);
    }
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let end = if payload_len == 0 || 40 + payload_len > buf.len() {
        buf.len() // jumbogram / BIG TCP, or a capture cut short
    } else {
        40 + payload_len
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&header[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&header[24..40]);
    let mut next = header[6];
    let mut offset = 40;
    let mut fragment = false;
    let mut walked = 0;
    loop {
        let len = match next {
            // hop-by-hop, routing, destination options, mobility, HIP, shim6, experimental
            0 | 43 | 60 | 135 | 139 | 140 | 253 | 254 => {
                let hdr_len = *buf.get(offset + 1).ok_or(IpError::Truncated)?;
                (usize::from(hdr_len) + 1) * 8
            }
            44 => {
                let frag = be16(buf, offset + 2).ok_or(IpError::Truncated)?;
                if frag & 0xfff9 != 0 {
                    fragment = true; // offset non-zero or M flag: an atomic fragment is not one
                }
                8
            }
            51 => {
                let hdr_len = *buf.get(offset + 1).ok_or(IpError::Truncated)?;
                (usize::from(hdr_len) + 2) * 4
            }
            _ => break,
        };
        walked += 1;
        if walked > MAX_EXTENSION_HEADERS {
            return Err(IpError::TooManyExtensions);
        }
        next = *buf.get(offset).ok_or(IpError::Truncated)?;
        offset += len;
        if offset > end {
            return Err(IpError::Truncated);
        }
    }
    let payload = buf.get(offset..end).ok_or(IpError::Truncated)?;
    Ok(IpPacket {
        src: IpAddr::V6(Ipv6Addr::from(src)),
        dst: IpAddr::V6(Ipv6Addr::from(dst)),
        protocol: next,
        payload,
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(flags_offset: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 24, 0, 0];
        p.extend_from_slice(&flags_offset.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 2, 3, 4, 9, 9]);
        p
    }

    #[test]
    fn ipv4_cuts_to_total_length_and_flags_fragments() {
        let p = v4(0x4000); // DF only
        let ip = parse_ipv4(&p).unwrap();
        assert_eq!(ip.payload, &[1, 2, 3, 4]);
        assert!(!ip.fragment);
        assert_eq!(ip.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(parse_ipv4(&v4(0x2000)).unwrap().fragment);
        assert!(parse_ipv4(&v4(0x0010)).unwrap().fragment);
        for n in 0..p.len() {
            let _ = parse_ipv4(&p[..n]);
        }
        let mut bad = p.clone();
        bad[0] = 0x44;
        assert_eq!(parse_ipv4(&bad), Err(IpError::BadHeaderLength));
        // total length 0: TSO super-frame keeps everything
        let mut tso = p.clone();
        tso[2] = 0;
        tso[3] = 0;
        assert_eq!(parse_ipv4(&tso).unwrap().payload.len(), 6);
    }

    fn v6(exts: &[u8], first_next: u8) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((exts.len() + 4) as u16).to_be_bytes());
        p.push(first_next);
        p.push(64);
        p.extend_from_slice(&[0u8; 15]);
        p.push(1);
        p.extend_from_slice(&[0u8; 15]);
        p.push(2);
        p.extend_from_slice(exts);
        p.extend_from_slice(&[7, 7, 7, 7]);
        p
    }

    #[test]
    fn ipv6_walks_extension_headers() {
        // hop-by-hop (8 bytes) → destination options (16 bytes) → fragment (atomic) → TCP
        let mut exts = vec![60, 0, 0, 0, 0, 0, 0, 0];
        exts.extend_from_slice(&[44, 1]);
        exts.extend_from_slice(&[0u8; 14]);
        exts.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
        let p = v6(&exts, 0);
        let ip = parse_ipv6(&p).unwrap();
        assert_eq!(ip.protocol, 6);
        assert_eq!(ip.payload, &[7, 7, 7, 7]);
        assert!(!ip.fragment);
        for n in 0..p.len() {
            let _ = parse_ipv6(&p[..n]);
        }
        // a real fragment (offset 8, M set)
        let p = v6(&[17, 0, 0, 0x09, 0, 0, 0, 1], 44);
        assert!(parse_ipv6(&p).unwrap().fragment);
        // a chain of nine hop-by-hop headers is refused
        let mut exts = Vec::new();
        for _ in 0..9 {
            exts.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(parse_ipv6(&v6(&exts, 0)), Err(IpError::TooManyExtensions));
        // an extension header whose length runs past the packet
        assert_eq!(
            parse_ipv6(&v6(&[6, 200, 0, 0, 0, 0, 0, 0], 0)),
            Err(IpError::Truncated)
        );
    }
}
