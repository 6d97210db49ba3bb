//! UDP datagram headers.

/// A UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Datagram data, cut to the length field when it is shorter than the capture.
    pub payload: &'a [u8],
}

/// A UDP header that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpError {
    /// The datagram ends inside its header.
    #[error("datagram shorter than its udp header")]
    Truncated,
    /// Length field between 1 and 7.
    #[error("udp length below 8")]
    BadLength,
}

/// Parses a UDP header. A length of 0 (jumbogram, GSO super-frame) or one larger than the capture
/// keeps every captured byte.
pub fn parse(buf: &[u8]) -> Result<UdpDatagram<'_>, UdpError> {
    let h: &[u8; 8] = buf
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(UdpError::Truncated)?;
    let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let end = match len {
        0 => buf.len(),
        1..=7 => return Err(UdpError::BadLength),
        n if n > buf.len() => buf.len(),
        n => n,
    };
    Ok(UdpDatagram {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        payload: buf.get(8..end).ok_or(UdpError::Truncated)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_cuts_and_bounds() {
        let d = [0x30, 0x39, 0, 53, 0, 10, 0, 0, 1, 2, 3];
        let u = parse(&d).unwrap();
        assert_eq!(
            (u.src_port, u.dst_port, u.payload),
            (12345, 53, &[1u8, 2][..])
        );
        for n in 0..d.len() {
            let _ = parse(&d[..n]);
        }
        assert_eq!(parse(&[0, 0, 0, 0, 0, 5, 0, 0]), Err(UdpError::BadLength));
        assert_eq!(parse(&[0, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap().payload, &[9]);
    }
}
