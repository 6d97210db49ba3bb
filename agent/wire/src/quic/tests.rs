use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    unhex(&std::fs::read_to_string(path).unwrap())
}

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

#[test]
fn rfc9001_initial_keys() {
    let c = InitialKeys::client(VERSION_1, &DCID).unwrap();
    assert_eq!(c.raw.0.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
    assert_eq!(c.raw.1.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
    assert_eq!(c.raw.2.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    let s = InitialKeys::server(VERSION_1, &DCID).unwrap();
    assert_eq!(s.raw.0.to_vec(), unhex("cf3a5331653c364c88f0f379b6067e37"));
    assert_eq!(s.raw.1.to_vec(), unhex("0ac1493ca1905853b0bba03e"));
    assert_eq!(s.raw.2.to_vec(), unhex("c206b8d9b9f0f37644430b490eeaa314"));
}

#[test]
fn rfc9369_initial_keys() {
    let c = InitialKeys::client(VERSION_2, &DCID).unwrap();
    assert_eq!(c.raw.0.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
    assert_eq!(c.raw.1.to_vec(), unhex("91f73e2351d8fa91660e909f"));
    assert_eq!(c.raw.2.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    let s = InitialKeys::server(VERSION_2, &DCID).unwrap();
    assert_eq!(s.raw.0.to_vec(), unhex("82db637861d55e1d011f19ea71d5d2a7"));
    assert_eq!(s.raw.1.to_vec(), unhex("dd13c276499c0249d3310652"));
    assert_eq!(s.raw.2.to_vec(), unhex("edf6d05c83121201b436e16877593c3a"));
}

fn check_rfc_packet(file: &str, version: u32) {
    let packet = fixture(file);
    let mut scratch = Vec::new();
    let (header, pn, range) = decrypt_initial(&packet, &mut scratch).unwrap();
    assert_eq!((header.version, header.dcid, pn), (version, &DCID[..], 2));
    assert_eq!(header.packet_len, 1200);
    let plain = &scratch[range];
    assert_eq!(plain.len(), 1162);
    let frame = fixture("rfc9001-a2-crypto-frame.hex");
    assert_eq!(&plain[..frame.len()], &frame[..]);
    assert!(plain[frame.len()..].iter().all(|b| *b == 0));
    let mut crypto = Vec::new();
    parse_frames(plain, |offset, data| crypto.push((offset, data.to_vec()))).unwrap();
    assert_eq!(crypto.len(), 1);
    assert_eq!(crypto[0].0, 0);
    let hello = crate::tls::parse_client_hello(&crypto[0].1).unwrap();
    assert_eq!(hello.sni.as_deref(), Some("example.com"));
    assert_eq!(hello.alpn, vec!["alpn".to_string()]);
    assert!(hello.complete);
    // our sealing helper makes the very same bytes
    assert_eq!(
        seal_client_initial(version, &DCID, 2, plain).unwrap()[22..],
        packet[22..]
    );
}

#[test]
fn rfc9001_client_initial_decrypts_exactly() {
    check_rfc_packet("rfc9001-a2-client-initial.hex", VERSION_1);
}

#[test]
fn rfc9369_client_initial_decrypts_exactly() {
    check_rfc_packet("rfc9369-a2-client-initial.hex", VERSION_2);
}

#[test]
fn corrupted_or_truncated_packets_are_errors() {
    let packet = fixture("rfc9001-a2-client-initial.hex");
    let mut scratch = Vec::new();
    for n in 0..packet.len() {
        assert!(decrypt_initial(&packet[..n], &mut scratch).is_err());
    }
    let mut bad = packet.clone();
    bad[600] ^= 1;
    assert_eq!(
        decrypt_initial(&bad, &mut scratch).unwrap_err(),
        QuicError::Decrypt
    );
    // a server would answer with keys of the other side: refused
    let s = InitialKeys::server(VERSION_1, &DCID).unwrap();
    let h = parse_initial_header(&packet).unwrap();
    assert!(decrypt_initial_with(&packet, &h, &s, None, &mut scratch).is_err());
}

#[test]
fn packet_number_decoding_rfc9000_a3() {
    assert_eq!(
        decode_packet_number(Some(0xa82f30ea), 0x9b32, 2),
        0xa82f9b32
    );
    assert_eq!(decode_packet_number(None, 2, 4), 2);
    assert_eq!(decode_packet_number(Some(255), 1, 1), 257);
}

#[test]
fn frames_allowed_in_initial() {
    // PADDING, PING, ACK with one range, ACK_ECN, CRYPTO, CONNECTION_CLOSE
    let payload = [
        0, 1, 2, 5, 0, 1, 0, 1, 1, 3, 5, 0, 0, 0, 1, 2, 3, 6, 4, 2, b'h', b'i', 0x1c, 1, 6, 0,
    ];
    let mut seen = Vec::new();
    parse_frames(&payload, |o, d| seen.push((o, d.to_vec()))).unwrap();
    assert_eq!(seen, vec![(4, b"hi".to_vec())]);
    for n in 0..payload.len() {
        let _ = parse_frames(&payload[..n], |_, _| {});
    }
    // STREAM is not allowed in an Initial
    assert_eq!(
        parse_frames(&[0x08, 0, 0], |_, _| {}),
        Err(QuicError::BadFrame)
    );
    // an ACK announcing more ranges than bytes
    assert_eq!(
        parse_frames(&[2, 0, 0, 0x7f, 0xff, 0], |_, _| {}),
        Err(QuicError::BadFrame)
    );
}

#[test]
fn varints() {
    assert_eq!(read_varint(&[0x25], 0), Some((37, 1)));
    assert_eq!(read_varint(&[0x7b, 0xbd], 0), Some((15293, 2)));
    assert_eq!(
        read_varint(&[0x9d, 0x7f, 0x3e, 0x7d], 0),
        Some((494878333, 4))
    );
    assert_eq!(
        read_varint(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 0),
        Some((151288809941952652, 8))
    );
    assert_eq!(read_varint(&[0xc2, 0x19], 0), None);
}
