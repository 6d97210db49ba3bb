//! TCP segment headers.

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// A TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Flags byte (FIN, SYN, RST, PSH, ACK, ...).
    pub flags: u8,
    /// Segment data after the header and options.
    pub payload: &'a [u8],
}

/// A TCP header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    /// The segment ends inside its header.
    #[error("segment shorter than its tcp header")]
    Truncated,
    /// Data offset below 5 words.
    #[error("tcp data offset below 20 bytes")]
    BadDataOffset,
}

/// Parses a TCP header.
pub fn parse(buf: &[u8]) -> Result<TcpSegment<'_>, TcpError> {
    let h: &[u8; 20] = buf
        .get(..20)
        .and_then(|h| h.try_into().ok())
        .ok_or(TcpError::Truncated)?;
    let data_offset = usize::from(h[12] >> 4) * 4;
    if data_offset < 20 {
        return Err(TcpError::BadDataOffset);
    }
    Ok(TcpSegment {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        flags: h[13],
        payload: buf.get(data_offset..).ok_or(TcpError::Truncated)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_options() {
        let mut s = vec![
            0x01, 0xbb, 0x00, 0x35, 0, 0, 1, 0, 0, 0, 0, 0, 0x60, 0x18, 0, 0, 0, 0, 0, 0,
        ];
        s.extend_from_slice(&[1, 1, 1, 0, 0xaa]);
        let t = parse(&s).unwrap();
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.flags),
            (443, 53, 256, 0x18)
        );
        assert_eq!(t.payload, &[0xaa]);
        for n in 0..s.len() {
            let _ = parse(&s[..n]);
        }
        assert_eq!(parse(&s[..23]), Err(TcpError::Truncated));
        s[12] = 0x40;
        assert_eq!(parse(&s), Err(TcpError::BadDataOffset));
    }
}
