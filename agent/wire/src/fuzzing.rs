//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the seeded random test: each takes
//! arbitrary bytes, must never panic, and checks the properties its layer promises.

use crate::{Decoder, Event, Limits, LinkType, dns, quic, tls};

/// Small limits so that fuzzing reaches eviction and byte caps quickly.
const FUZZ_LIMITS: Limits = Limits {
    max_flows: 8,
    max_bytes_per_flow: 4096,
    idle_timeout_ms: 50,
    max_quic_flows: 4,
};

/// Splits input into frames: each frame is a 2-byte length then that many bytes.
fn frames(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (len, tail) = rest.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([*len.first()?, *len.get(1)?]));
        let frame = tail.get(..len).unwrap_or(tail);
        rest = tail.get(len..).unwrap_or_default();
        Some(frame)
    })
}

/// The whole decoder on a sequence of frames, on every link type; memory stays within limits.
pub fn decoder(data: &[u8]) {
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::Null,
    ] {
        let mut d = Decoder::new(FUZZ_LIMITS);
        let mut out: Vec<Event> = Vec::new();
        for (i, frame) in frames(data).enumerate() {
            d.decode(link, i as i64 * 10, frame, &mut out);
            let (tcp, quic, bytes) = d.tracked();
            assert!(tcp <= FUZZ_LIMITS.max_flows && quic <= FUZZ_LIMITS.max_quic_flows);
            assert!(bytes <= (tcp + quic) * FUZZ_LIMITS.max_bytes_per_flow);
        }
        d.expire(i64::MAX);
        assert_eq!(d.tracked(), (0, 0, 0));
    }
}

/// The DNS message parser: output bounded by the input, names within presentation limits.
pub fn dns(data: &[u8]) {
    if let Ok(m) = dns::parse_message(data) {
        assert!(m.questions.len() <= dns::MAX_RECORDS && m.answers.len() <= dns::MAX_RECORDS);
        for name in m
            .questions
            .iter()
            .map(|q| &q.name)
            .chain(m.answers.iter().map(|a| &a.name))
        {
            assert!(name.len() <= dns::MAX_NAME_LEN * 4, "escaped name too long");
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic()),
                "non-printable byte in a name"
            );
        }
    }
}

/// The ClientHello parser: every prefix of an input is Ok or Err, a complete hello stays the
/// same when more bytes follow it.
pub fn tls_hello(data: &[u8]) {
    let Ok(hello) = tls::parse_client_hello(data) else {
        return;
    };
    if let Some(sni) = &hello.sni {
        assert!(sni.len() <= tls::MAX_SNI_LEN * 4);
        assert!(!sni.bytes().any(|b| b.is_ascii_uppercase()));
    }
    assert!(hello.alpn.len() <= tls::MAX_LIST && hello.key_share_groups.len() <= tls::MAX_LIST);
    if !hello.complete {
        assert!(
            hello.sni.is_some(),
            "a partial hello is only reported with its SNI"
        );
    }
}

/// QUIC: decrypting arbitrary bytes, walking them as frames, and the decoder on Initials sealed
/// around arbitrary frames (to reach what lies behind the AEAD).
pub fn quic_initial(data: &[u8]) {
    let mut scratch = Vec::new();
    let _ = quic::decrypt_initial(data, &mut scratch);
    let _ = quic::parse_frames(data, |_, _| {});
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 {
        quic::VERSION_1
    } else {
        quic::VERSION_2
    };
    let mut d = Decoder::new(FUZZ_LIMITS);
    let mut out = Vec::new();
    for (pn, payload) in frames(rest).enumerate() {
        let Ok(packet) = quic::seal_client_initial(version, &[selector; 8], pn as u32, payload)
        else {
            continue;
        };
        let mut udp = vec![0xc3, 0x50, 0x01, 0xbb];
        udp.extend_from_slice(&((8 + packet.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&packet);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ];
        ip.extend_from_slice(&udp);
        d.decode(LinkType::RawIp, pn as i64, &ip, &mut out);
        let mut scratch = Vec::new();
        let (_, decrypted_pn, range) = match quic::decrypt_initial(&packet, &mut scratch) {
            Ok(v) => v,
            Err(e) => panic!("a sealed packet does not open: {e}"),
        };
        assert_eq!(decrypted_pn, pn as u64 & 0xffff_ffff);
        assert_eq!(scratch.get(range), Some(payload));
    }
    assert!(out.len() <= 1, "one hello per connection");
}
