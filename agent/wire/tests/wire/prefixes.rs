//! Every prefix of every real captured frame, through the whole decoder: never a panic, and the
//! complete frames still give their events afterwards.

use crate::pcap;
use shadowai_wire::{Decoder, Limits, dns, quic, tls};

const CAPTURES: [&str; 6] = [
    "tls-curl.pcap",
    "tls-gnutls.pcap",
    "tls-chromium-2seg.pcap",
    "tls-chromium-superframe.pcap",
    "quic-chromium.pcap",
    "dns-dig.pcap",
];

#[test]
fn every_prefix_of_every_frame() {
    for name in CAPTURES {
        let capture = pcap::read(name);
        let mut with_prefixes = Decoder::new(Limits::default());
        let mut plain = Decoder::new(Limits::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (ts, frame) in &capture.frames {
            for n in 0..frame.len() {
                with_prefixes.decode(capture.link, *ts, &frame[..n], &mut a);
            }
            a.clear();
            with_prefixes.decode(capture.link, *ts, frame, &mut a);
            plain.decode(capture.link, *ts, frame, &mut b);
        }
        assert!(
            with_prefixes.stats().malformed > 0,
            "{name}: prefixes were refused somewhere"
        );
        assert!(!b.is_empty(), "{name}: no events at all");
    }
}

#[test]
fn every_prefix_of_real_payloads_per_parser() {
    // the transport payloads of the captures, straight into the layer parsers
    let mut scratch = Vec::new();
    for name in CAPTURES {
        let capture = pcap::read(name);
        for (_, frame) in &capture.frames {
            // Ethernet(14) + IPv4 without options (20): enough for these loopback-free captures
            let Some(ip) = frame.get(14..) else { continue };
            let Ok(packet) = shadowai_wire::ip::parse_ipv4(ip) else {
                continue;
            };
            let payload = match packet.protocol {
                6 => shadowai_wire::tcp::parse(packet.payload)
                    .map(|s| s.payload)
                    .unwrap_or(&[]),
                17 => shadowai_wire::udp::parse(packet.payload)
                    .map(|d| d.payload)
                    .unwrap_or(&[]),
                _ => &[],
            };
            for n in 0..=payload.len() {
                let p = &payload[..n];
                let _ = tls::parse_client_hello(p);
                let _ = dns::parse_message(p);
                let _ = quic::decrypt_initial(p, &mut scratch);
            }
        }
    }
    let rfc = std::fs::read_to_string(pcap::fixture_path("rfc9001-a2-client-initial.hex")).unwrap();
    let rfc: Vec<u8> = (0..rfc.trim().len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&rfc[i..i + 2], 16).unwrap())
        .collect();
    for n in 0..rfc.len() {
        assert!(quic::decrypt_initial(&rfc[..n], &mut scratch).is_err());
    }
    assert!(quic::decrypt_initial(&rfc, &mut scratch).is_ok());
}
