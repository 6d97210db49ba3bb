use super::*;
use crate::testutil::{client_hello, record};

#[test]
fn pq_hello_with_grease_and_ech() {
    let msg = client_hello("API.OpenAI.com", false);
    for input in [msg.clone(), record(&msg)] {
        let h = parse_client_hello(&input).unwrap();
        assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
        assert!(h.grease && h.ech && h.complete);
        assert_eq!(h.key_share_groups, vec![0x3a3a, 0x11ec, 0x001d]);
        assert_eq!(h.len, msg.len() - 4);
    }
}

#[test]
fn every_prefix_is_ok_or_err_and_sni_first_gives_partial_hellos() {
    for sni_first in [true, false] {
        let stream = record(&client_hello("claude.ai", sni_first));
        let mut partial = 0;
        for n in 0..stream.len() {
            match parse_client_hello(&stream[..n]) {
                Ok(h) => {
                    assert!(!h.complete, "prefix {n}");
                    assert_eq!(h.sni.as_deref(), Some("claude.ai"));
                    partial += 1;
                }
                Err(e) => assert_eq!(e, TlsError::Incomplete, "prefix {n}"),
            }
            assert!(client_hello_stream_len(&stream[..n]).is_none_or(|l| l > n));
        }
        assert_eq!(client_hello_stream_len(&stream), Some(stream.len()));
        // SNI first: reported from the prefix holding it on; SNI last: only when complete
        assert_eq!(partial > 1000, sni_first, "{partial}");
    }
}

#[test]
fn hello_spread_over_two_records() {
    let msg = client_hello("mistral.ai", false);
    let (a, b) = msg.split_at(700);
    let mut stream = record(a);
    stream.extend_from_slice(&record(b));
    let h = parse_client_hello(&stream).unwrap();
    assert!(h.complete);
    assert_eq!(h.sni.as_deref(), Some("mistral.ai"));
    assert_eq!(client_hello_stream_len(&stream), Some(stream.len()));
}

#[test]
fn not_hellos() {
    assert_eq!(
        parse_client_hello(b"GET / HTTP/1.1\r\n"),
        Err(TlsError::NotHandshake)
    );
    assert_eq!(
        parse_client_hello(&[22, 3, 3, 0, 4, 2, 0, 0, 0]),
        Err(TlsError::NotClientHello)
    );
    assert_eq!(parse_client_hello(&[]), Err(TlsError::Incomplete));
    assert!(starts_client_hello(&[22, 3, 1, 2, 0, 1]));
    assert!(starts_client_hello(&[22, 3, 1]));
    assert!(!starts_client_hello(&[22, 3, 1, 2, 0, 2]));
    assert!(!starts_client_hello(&[23, 3, 3, 0, 10]));
    // a lying extension length in a complete hello
    let mut msg = client_hello("a.b", true);
    let ext_len_at = 4 + 2 + 32 + 1 + 32 + 2 + 6 + 2;
    msg[ext_len_at] = 0xff;
    assert_eq!(parse_client_hello(&msg), Err(TlsError::Malformed));
}

#[test]
fn grease_values() {
    assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x3a3a));
    assert!(!is_grease(0x0a1a) && !is_grease(0x11ec) && !is_grease(0x0000));
}

#[test]
fn openssl_hello_without_grease() {
    // minimal TLS 1.2-style hello with only server_name
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
    let sni = b"\x00\x0e\x00\x00\x0bexample.com";
    body.extend_from_slice(&((sni.len() + 4) as u16).to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, sni.len() as u8]);
    body.extend_from_slice(sni);
    let mut msg = vec![1, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let h = parse_client_hello(&msg).unwrap();
    assert_eq!(h.sni.as_deref(), Some("example.com"));
    assert!(!h.grease && !h.ech && h.key_share_groups.is_empty());
}
