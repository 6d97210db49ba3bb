use super::*;
use crate::testutil::dns_query;

fn header(qd: u16, an: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x81, 0x80];
    for c in [qd, an, 0, 0] {
        m.extend_from_slice(&c.to_be_bytes());
    }
    m
}

fn check_prefixes(msg: &[u8]) {
    for n in 0..msg.len() {
        let _ = parse_message(&msg[..n]);
    }
}

#[test]
fn query_with_edns() {
    let q = dns_query(0xbeef, "API.OpenAI.com", 1);
    let m = parse_message(&q).unwrap();
    assert_eq!((m.id, m.response, m.opcode), (0xbeef, false, 0));
    assert_eq!(
        m.questions,
        vec![Question {
            name: "api.openai.com".into(),
            qtype: 1
        }]
    );
    assert_eq!(
        m.edns,
        Some(Edns {
            udp_payload_size: 1232,
            version: 0,
            dnssec_ok: true
        })
    );
    check_prefixes(&q);
    for n in 0..q.len() - 11 {
        assert!(parse_message(&q[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn compressed_answers_cname_a_aaaa() {
    let mut m = header(1, 3);
    m.extend_from_slice(b"\x03www\x06openai\x03com\x00\x00\x01\x00\x01");
    // www.openai.com CNAME cdn.openai.com (compressed against offset 16 "openai.com")
    m.extend_from_slice(&[
        0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 16,
    ]);
    let cname_at = m.len() - 6;
    m.extend_from_slice(&[
        0xc0,
        cname_at as u8,
        0,
        1,
        0,
        1,
        0,
        0,
        0,
        30,
        0,
        4,
        104,
        18,
        32,
        47,
    ]);
    m.extend_from_slice(&[0xc0, cname_at as u8, 0, 28, 0, 1, 0, 0, 0, 30, 0, 16]);
    m.extend_from_slice(&[0x26, 0x06, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let r = parse_message(&m).unwrap();
    assert!(r.response);
    assert_eq!(r.answers.len(), 3);
    assert_eq!(
        r.answers[0].data,
        AnswerData::Cname("cdn.openai.com".into())
    );
    assert_eq!(r.answers[1].name, "cdn.openai.com");
    assert_eq!(
        r.answers[1].data,
        AnswerData::A(Ipv4Addr::new(104, 18, 32, 47))
    );
    assert_eq!(
        r.answers[2].data,
        AnswerData::Aaaa("2606:4700::1".parse().unwrap())
    );
    assert_eq!(r.answers[1].ttl, 30);
    check_prefixes(&m);
}

#[test]
fn pointer_loops_terminate() {
    // a pointer to itself
    let mut m = header(1, 0);
    m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse_message(&m), Err(DnsError::PointerLoop));
    // two names pointing at each other: forward pointer refused
    let mut m = header(1, 0);
    m.extend_from_slice(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12]);
    assert_eq!(parse_message(&m), Err(DnsError::PointerLoop));
    // a label then a pointer back to its own start
    let mut m = header(1, 0);
    m.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(parse_message(&m), Err(DnsError::PointerLoop));
    // a long backwards chain ends (strictly decreasing), whatever its length
    let mut m = header(0, 0);
    m.extend_from_slice(&[0]);
    for _ in 0..200 {
        let at = m.len() - 2;
        m.extend_from_slice(&[0xc0, at as u8]);
    }
    let _ = read_name(&m, m.len() - 2);
}

#[test]
fn label_over_63_and_name_over_255() {
    let mut m = header(1, 0);
    m.push(64);
    m.extend_from_slice(&[b'a'; 64]);
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse_message(&m), Err(DnsError::BadLabel));
    let mut m = header(1, 0);
    for _ in 0..5 {
        m.push(63);
        m.extend_from_slice(&[b'a'; 63]);
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse_message(&m), Err(DnsError::NameTooLong));
    // 253 characters is fine
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    let q = dns_query(1, &name, 1);
    assert_eq!(parse_message(&q).unwrap().questions[0].name, name);
}

#[test]
fn odd_bytes_are_escaped_like_dig() {
    let mut m = header(1, 0);
    m.extend_from_slice(&[
        5, b'a', b'.', b'B', 0xff, b' ', 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
    ]);
    let r = parse_message(&m).unwrap();
    assert_eq!(r.questions[0].name, "a\\046b\\255\\032.com");
}

fn https_record(rdata: &[u8]) -> Vec<u8> {
    let mut m = header(1, 1);
    m.extend_from_slice(b"\x07chatgpt\x03com\x00\x00\x41\x00\x01");
    m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0]);
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(rdata);
    m
}

#[test]
fn https_record_with_alpn_ech_and_hints() {
    let mut rdata = vec![0, 1, 0]; // priority 1, target "."
    rdata.extend_from_slice(&[0, 1, 0, 6, 2, b'h', b'3', 2, b'h', b'2']);
    rdata.extend_from_slice(&[0, 4, 0, 8, 104, 18, 32, 47, 172, 64, 155, 209]);
    rdata.extend_from_slice(&[0, 5, 0, 3, 0xfe, 0x0d, 0]);
    rdata.extend_from_slice(&[
        0, 6, 0, 16, 0x26, 0x06, 0x47, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ]);
    let m = https_record(&rdata);
    let r = parse_message(&m).unwrap();
    assert_eq!(
        r.answers[0].data,
        AnswerData::Svcb {
            priority: 1,
            target: String::new(),
            alpn: vec!["h3".into(), "h2".into()],
            ech: true,
            ipv4_hints: vec![
                Ipv4Addr::new(104, 18, 32, 47),
                Ipv4Addr::new(172, 64, 155, 209)
            ],
            ipv6_hints: vec!["2606:4700::1".parse().unwrap()],
        }
    );
    check_prefixes(&m);
    // a SvcParam overrunning the record spoils that answer only
    let mut bad = rdata.clone();
    bad[4] = 0;
    bad[5] = 0;
    bad[6] = 99;
    let r = parse_message(&https_record(&bad)).unwrap();
    assert_eq!(r.answers[0].data, AnswerData::Other(65));
    // alias mode with a target name
    let r = parse_message(&https_record(b"\x00\x00\x03cdn\x07example\x00")).unwrap();
    let AnswerData::Svcb {
        priority, target, ..
    } = &r.answers[0].data
    else {
        panic!()
    };
    assert_eq!((*priority, target.as_str()), (0, "cdn.example"));
}

#[test]
fn counts_larger_than_the_message_are_errors_not_allocations() {
    let mut m = header(0xffff, 0xffff);
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert_eq!(parse_message(&m), Err(DnsError::Truncated));
}
