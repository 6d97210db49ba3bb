//! Link layers: Ethernet II with 802.1Q/802.1ad tags, raw IP, Linux cooked v1/v2, BSD loopback.

use crate::LinkType;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Most VLAN tags skipped before giving up (QinQ uses two; three covers odd stacks).
pub const MAX_VLAN_TAGS: usize = 3;

/// A link-layer header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The frame ends inside the link header.
    #[error("frame shorter than its link header")]
    Truncated,
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`].
    #[error("too many vlan tags")]
    TooManyTags,
}

/// The network protocol (as an EtherType) and its bytes. An EtherType other than
/// [`ETHERTYPE_IPV4`] / [`ETHERTYPE_IPV6`] is returned as is for the caller to skip; a raw IP or
/// loopback frame of an unknown family yields EtherType 0.
pub fn parse(link: LinkType, frame: &[u8]) -> Result<(u16, &[u8]), LinkError> {
    match link {
        LinkType::Ethernet => parse_ethernet(frame),
        LinkType::RawIp => {
            let first = frame.first().ok_or(LinkError::Truncated)?;
            Ok((ethertype_for_version(*first), frame))
        }
        LinkType::LinuxSll => {
            let proto = be16(frame, 14).ok_or(LinkError::Truncated)?;
            Ok((proto, frame.get(16..).ok_or(LinkError::Truncated)?))
        }
        LinkType::LinuxSll2 => {
            let proto = be16(frame, 0).ok_or(LinkError::Truncated)?;
            Ok((proto, frame.get(20..).ok_or(LinkError::Truncated)?))
        }
        LinkType::Null => {
            let family = frame.get(..4).ok_or(LinkError::Truncated)?;
            let payload = frame.get(4..).ok_or(LinkError::Truncated)?;
            // Written in the capturing host's byte order; families are small numbers, so the
            // non-zero end tells the order.
            let value = match family {
                [a, 0, 0, 0] => u32::from(*a),
                [0, 0, 0, a] => u32::from(*a),
                _ => 0,
            };
            let ethertype = match value {
                2 => ETHERTYPE_IPV4,
                // AF_INET6 on the BSDs (24), FreeBSD/Dragonfly (28) and macOS (30); 10 is Linux
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                _ => 0,
            };
            Ok((ethertype, payload))
        }
    }
}

fn parse_ethernet(frame: &[u8]) -> Result<(u16, &[u8]), LinkError> {
    let mut ethertype = be16(frame, 12).ok_or(LinkError::Truncated)?;
    let mut offset = 14;
    let mut tags = 0;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        tags += 1;
        if tags > MAX_VLAN_TAGS {
            return Err(LinkError::TooManyTags);
        }
        ethertype = be16(frame, offset + 2).ok_or(LinkError::Truncated)?;
        offset += 4;
    }
    Ok((ethertype, frame.get(offset..).ok_or(LinkError::Truncated)?))
}

fn ethertype_for_version(first: u8) -> u16 {
    match first >> 4 {
        4 => ETHERTYPE_IPV4,
        6 => ETHERTYPE_IPV6,
        _ => 0,
    }
}

pub(crate) fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

pub(crate) fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    let arr: [u8; 4] = b.try_into().ok()?;
    Some(u32::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_with_two_vlan_tags() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00, 0x45]);
        let (et, p) = parse(LinkType::Ethernet, &f).unwrap();
        assert_eq!(et, ETHERTYPE_IPV4);
        assert_eq!(p, &[0x45]);
        for n in 0..f.len() {
            let _ = parse(LinkType::Ethernet, &f[..n]);
        }
        assert_eq!(
            parse(LinkType::Ethernet, &f[..17]),
            Err(LinkError::Truncated)
        );
    }

    #[test]
    fn too_many_tags_is_an_error() {
        let mut f = vec![0u8; 12];
        for _ in 0..4 {
            f.extend_from_slice(&[0x81, 0x00, 0, 1]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(parse(LinkType::Ethernet, &f), Err(LinkError::TooManyTags));
    }

    #[test]
    fn null_loopback_both_byte_orders() {
        assert_eq!(
            parse(LinkType::Null, &[2, 0, 0, 0, 0x45]).unwrap().0,
            ETHERTYPE_IPV4
        );
        assert_eq!(
            parse(LinkType::Null, &[0, 0, 0, 30, 0x60]).unwrap().0,
            ETHERTYPE_IPV6
        );
        assert_eq!(parse(LinkType::Null, &[7, 7, 0, 0]).unwrap().0, 0);
        assert_eq!(parse(LinkType::Null, &[2, 0, 0]), Err(LinkError::Truncated));
    }

    #[test]
    fn sll_and_raw() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd, 0x60]);
        assert_eq!(
            parse(LinkType::LinuxSll, &sll).unwrap(),
            (ETHERTYPE_IPV6, &[0x60u8][..])
        );
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.push(0x45);
        assert_eq!(
            parse(LinkType::LinuxSll2, &sll2).unwrap(),
            (ETHERTYPE_IPV4, &[0x45u8][..])
        );
        assert_eq!(parse(LinkType::RawIp, &[0x45]).unwrap().0, ETHERTYPE_IPV4);
        assert_eq!(parse(LinkType::RawIp, &[]), Err(LinkError::Truncated));
        assert_eq!(LinkType::from_pcap(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_pcap(9999), None);
    }
}
