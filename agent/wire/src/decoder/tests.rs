use super::*;
use crate::quic::{VERSION_1, VERSION_2, seal_client_initial};
use crate::testutil::*;
use crate::{AnswerData, tcp::ACK};
use std::net::IpAddr;

const PSH_ACK: u8 = 0x18;

fn client() -> SocketAddr {
    "10.0.0.2:50000".parse().unwrap()
}
fn server() -> SocketAddr {
    "104.18.32.47:443".parse().unwrap()
}

fn run(decoder: &mut Decoder, frames: &[Vec<u8>]) -> Vec<Event> {
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        decoder.decode(LinkType::Ethernet, 1000 + i as i64, f, &mut out);
    }
    out
}

fn hellos(events: &[Event]) -> Vec<&HelloEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TlsHello(h) => Some(h),
            _ => None,
        })
        .collect()
}

/// Every prefix of every frame, fed to a fresh decoder after the frames before it: no panic.
fn check_prefixes(frames: &[Vec<u8>]) {
    let mut d = Decoder::new(Limits::default());
    let mut out = Vec::new();
    for f in frames {
        for n in 0..f.len() {
            d.decode(LinkType::Ethernet, 0, &f[..n], &mut out);
        }
        d.decode(LinkType::Ethernet, 0, f, &mut out);
    }
}

fn pq_hello_segments(split: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let stream = record(&client_hello("api.openai.com", false));
    assert!(stream.len() > 1500);
    let (a, b) = stream.split_at(split);
    (stream.clone(), a.to_vec(), b.to_vec())
}

fn check_one_pq_hello(events: &[Event]) {
    let h = hellos(events);
    assert_eq!(h.len(), 1, "{events:?}");
    assert_eq!(
        h[0].flow,
        Flow {
            src: client(),
            dst: server()
        }
    );
    let hello = &h[0].hello;
    assert_eq!(hello.sni.as_deref(), Some("api.openai.com"));
    assert!(hello.complete && hello.grease && hello.ech);
    assert_eq!(hello.key_share_groups, vec![0x3a3a, 0x11ec, 0x001d]);
    assert_eq!(hello.alpn, vec!["h2", "http/1.1"]);
}

#[test]
fn hello_split_across_two_segments() {
    let (_, a, b) = pq_hello_segments(1448);
    let frames = vec![
        tcp(client(), server(), 100, 0x02, &[]),
        tcp(server(), client(), 900, 0x12, &[]),
        tcp(client(), server(), 101, PSH_ACK, &a),
        tcp(client(), server(), 101 + a.len() as u32, PSH_ACK, &b),
    ];
    let mut d = Decoder::new(Limits::default());
    check_one_pq_hello(&run(&mut d, &frames));
    check_prefixes(&frames);
    // without the SYN (capture started mid-handshake) too
    let mut d = Decoder::new(Limits::default());
    check_one_pq_hello(&run(&mut d, &frames[2..]));
}

#[test]
fn hello_out_of_order_and_retransmitted() {
    let (_, a, b) = pq_hello_segments(1000);
    let seq_b = 101 + a.len() as u32;
    let frames = vec![
        tcp(client(), server(), 100, 0x02, &[]),
        tcp(client(), server(), seq_b, PSH_ACK, &b), // second half first
        tcp(client(), server(), seq_b, PSH_ACK, &b), // and again
        tcp(client(), server(), 101, PSH_ACK, &a[..500]),
        tcp(client(), server(), 101, PSH_ACK, &a), // retransmit overlapping the piece before
        tcp(client(), server(), 101, PSH_ACK, &a), // a late duplicate after the hello
        tcp(
            client(),
            server(),
            seq_b + b.len() as u32,
            PSH_ACK,
            &record(&client_hello("x.io", true)),
        ),
    ];
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &frames);
    check_one_pq_hello(&events); // one per flow, even with a second hello later on the flow
    check_prefixes(&frames);
}

#[test]
fn hello_in_one_super_frame_over_ipv6() {
    let c: SocketAddr = "[2001:db8::2]:50000".parse().unwrap();
    let s: SocketAddr = "[2606:4700::1]:443".parse().unwrap();
    let (stream, _, _) = pq_hello_segments(0);
    let frame = tcp(c, s, 101, PSH_ACK, &stream);
    assert!(frame.len() > 1514);
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, std::slice::from_ref(&frame));
    assert_eq!(hellos(&events).len(), 1);
    assert_eq!(hellos(&events)[0].flow.dst, s);
    check_prefixes(&[frame]);
}

#[test]
fn bigger_than_64k_super_frame() {
    // A BIG TCP frame (IPv4 total length 0) with a hello followed by bulk data.
    let mut payload = record(&client_hello("chatgpt.com", true));
    payload.extend(std::iter::repeat_n(0x17, 70_000));
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &[tcp(client(), server(), 1, PSH_ACK, &payload)]);
    assert_eq!(hellos(&events)[0].hello.sni.as_deref(), Some("chatgpt.com"));
}

#[test]
fn bulk_tcp_is_not_tracked() {
    let mut d = Decoder::new(Limits::default());
    let mut frames = Vec::new();
    for i in 0..1000u32 {
        let payload = vec![(i % 256) as u8 | 0x80; 1448];
        frames.push(tcp(server(), client(), i * 1448, ACK, &payload));
        frames.push(tcp(client(), server(), 1, ACK, &[]));
    }
    let events = run(&mut d, &frames);
    assert!(events.is_empty());
    assert_eq!(d.tracked(), (0, 0, 0));
}

#[test]
fn syn_flood_and_fragments_do_not_grow_memory() {
    let limits = Limits {
        max_flows: 64,
        ..Limits::default()
    };
    let mut d = Decoder::new(limits);
    let mut out = Vec::new();
    for i in 0..20_000u32 {
        let src = SocketAddr::new(
            IpAddr::from([10, 1, (i >> 8) as u8, i as u8]),
            1024 + (i % 50_000) as u16,
        );
        d.decode(
            LinkType::Ethernet,
            i as i64,
            &tcp(src, server(), i, 0x02, &[]),
            &mut out,
        );
        // a hello start on every flow that never finishes: buffered, bounded
        let start = record(&client_hello("a.example", false));
        d.decode(
            LinkType::Ethernet,
            i as i64,
            &tcp(src, server(), i + 1, PSH_ACK, &start[..700]),
            &mut out,
        );
        assert!(d.tracked().0 <= 64);
        assert!(d.tracked().2 <= 64 * limits.max_bytes_per_flow);
    }
    assert!(d.stats().flows_evicted > 19_000);
    // IPv4 fragments are counted and dropped
    let mut frag = tcp(client(), server(), 1, PSH_ACK, &[1, 2, 3]);
    frag[20] = 0x20; // MF
    d.decode(LinkType::Ethernet, 0, &frag, &mut out);
    assert_eq!(d.stats().ip_fragments, 1);
    assert!(out.is_empty());
    d.expire(1_000_000);
    assert_eq!(d.tracked(), (0, 0, 0));
}

#[test]
fn endless_hello_is_cut_at_the_flow_limit() {
    let limits = Limits {
        max_bytes_per_flow: 4096,
        ..Limits::default()
    };
    let mut d = Decoder::new(limits);
    // a record announcing 16 KiB, then filler, SNI never complete
    let mut start = vec![22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
    start.extend_from_slice(&[3, 3]);
    let mut frames = vec![tcp(client(), server(), 1, PSH_ACK, &start)];
    let mut seq = 1 + start.len() as u32;
    for _ in 0..20 {
        frames.push(tcp(client(), server(), seq, PSH_ACK, &[0u8; 1000]));
        seq += 1000;
        frames.push(tcp(client(), server(), seq + 50_000, PSH_ACK, &[0u8; 1000]));
    }
    let events = run(&mut d, &frames);
    assert!(events.is_empty());
    assert!(d.tracked().2 <= 4096);
    assert!(d.stats().bytes_dropped > 0);
    assert_eq!(d.stats().tls_malformed, 1);
}

#[test]
fn dns_over_udp_and_tcp_with_split_length_prefix() {
    let c: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let r: SocketAddr = "10.0.0.53:53".parse().unwrap();
    let q1 = dns_query(7, "api.anthropic.com", 1);
    let q2 = dns_query(8, "claude.ai", 65);
    let mut stream = Vec::new();
    for q in [&q1, &q2] {
        stream.extend_from_slice(&(q.len() as u16).to_be_bytes());
        stream.extend_from_slice(q);
    }
    // split inside the first length prefix, then both remaining messages in one segment
    let frames = vec![
        udp(c, r, &q1),
        udp(
            "10.0.0.2:5353".parse().unwrap(),
            "224.0.0.251:5353".parse().unwrap(),
            &q1,
        ),
        tcp(c, r, 10, 0x02, &[]),
        tcp(c, r, 11, PSH_ACK, &stream[..1]),
        tcp(c, r, 12, PSH_ACK, &stream[1..]),
    ];
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &frames);
    let dns: Vec<_> = events
        .iter()
        .map(|e| match e {
            Event::Dns(d) => d,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(dns.len(), 3, "mDNS is ignored");
    assert!(!dns[0].tcp && dns[1].tcp && dns[2].tcp);
    assert_eq!(dns[1].questions[0].name, "api.anthropic.com");
    assert_eq!((dns[2].id, dns[2].questions[0].qtype), (8, 65));
    assert_eq!(dns[2].flow, Flow { src: c, dst: r });
    check_prefixes(&frames);
}

#[test]
fn dns_https_response_over_tcp_split_across_segments() {
    let c: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let r: SocketAddr = "10.0.0.53:53".parse().unwrap();
    let mut m = dns_query(9, "chatgpt.com", 65);
    m[2] = 0x81;
    m[3] = 0x80;
    m[7] = 1; // one answer; move the OPT record after it
    let opt = m.split_off(m.len() - 11);
    m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0x2c]);
    let rdata = [0, 1, 0, 0, 1, 0, 3, 2, b'h', b'3', 0, 5, 0, 2, 0xab, 0xcd];
    m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    m.extend_from_slice(&rdata);
    m.extend_from_slice(&opt);
    let mut stream = (m.len() as u16).to_be_bytes().to_vec();
    stream.extend_from_slice(&m);
    let cut = stream.len() / 2;
    let frames = vec![
        tcp(r, c, 500, PSH_ACK, &stream[..cut]),
        tcp(r, c, 500 + cut as u32, PSH_ACK, &stream[cut..]),
    ];
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &frames);
    let Some(Event::Dns(e)) = events.first() else {
        panic!("{events:?}")
    };
    assert!(e.response && e.tcp);
    assert_eq!(e.flow.src, r);
    match &e.answers[0].data {
        AnswerData::Svcb { alpn, ech, .. } => assert!(alpn == &["h3"] && *ech),
        other => panic!("{other:?}"),
    }
}

fn quic_hellos(events: &[Event]) -> Vec<&QuicHelloEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::QuicHello(q) => Some(q),
            _ => None,
        })
        .collect()
}

fn initials_out_of_order(version: u32) -> Vec<Vec<u8>> {
    let dcid = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
    let hello = client_hello("gemini.google.com", false);
    let (a, b) = hello.split_at(900);
    // packet 0: the second piece of the first half, PING, the first piece; packet 1: the rest
    let mut p0 = vec![1];
    p0.extend(crypto_frame(400, &a[400..]));
    p0.extend([0u8; 30]);
    p0.push(1);
    p0.extend(crypto_frame(0, &a[..400]));
    p0.extend([0u8; 100]);
    let mut p1 = crypto_frame(900 + 300, &b[300..]);
    p1.push(1);
    p1.extend(crypto_frame(900, &b[..300]));
    p1.extend([0u8; 100]);
    let d0 = seal_client_initial(version, &dcid, 0, &p0).unwrap();
    let d1 = seal_client_initial(version, &dcid, 1, &p1).unwrap();
    let (c, s): (SocketAddr, SocketAddr) = (client(), server());
    vec![udp(c, s, &d1), udp(c, s, &d0)] // the later packet first
}

#[test]
fn quic_two_initials_out_of_order_v1_and_v2() {
    for version in [VERSION_1, VERSION_2] {
        let frames = initials_out_of_order(version);
        let mut d = Decoder::new(Limits::default());
        let events = run(&mut d, &frames);
        let q = quic_hellos(&events);
        assert_eq!(q.len(), 1, "{version:#x}: {:?}", d.stats());
        assert_eq!(q[0].version, version);
        assert_eq!(q[0].hello.sni.as_deref(), Some("gemini.google.com"));
        assert!(q[0].hello.complete);
        assert_eq!(
            q[0].flow,
            Flow {
                src: client(),
                dst: server()
            }
        );
        assert_eq!(d.stats().quic_initials, 2);
        // a retransmit after the hello is not reported again
        assert!(quic_hellos(&run(&mut d, &frames)).is_empty());
        check_prefixes(&frames);
    }
}

#[test]
fn quic_first_initial_only_reports_a_partial_hello() {
    let dcid = [0xab; 8];
    let hello = client_hello("chat.mistral.ai", true);
    let mut p0 = crypto_frame(0, &hello[..1000]);
    p0.extend([0u8; 50]);
    let d0 = seal_client_initial(VERSION_1, &dcid, 0, &p0).unwrap();
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &[udp(client(), server(), &d0)]);
    let q = quic_hellos(&events);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].hello.sni.as_deref(), Some("chat.mistral.ai"));
    assert!(!q[0].hello.complete);
    // SNI at the end of the hello: nothing until the rest arrives
    let hello = client_hello("chat.mistral.ai", false);
    let p0 = crypto_frame(0, &hello[..1000]);
    let mut d = Decoder::new(Limits::default());
    let d0 = seal_client_initial(VERSION_1, &dcid, 0, &p0).unwrap();
    assert!(run(&mut d, &[udp(client(), server(), &d0)]).is_empty());
    let d1 = seal_client_initial(VERSION_1, &dcid, 1, &crypto_frame(1000, &hello[1000..])).unwrap();
    let events = run(&mut d, &[udp(client(), server(), &d1)]);
    assert!(quic_hellos(&events)[0].hello.complete);
}

#[test]
fn quic_garbage_costs_no_memory() {
    let mut d = Decoder::new(Limits::default());
    let mut out = Vec::new();
    for i in 0..2000u32 {
        let mut p = seal_client_initial(VERSION_1, &i.to_be_bytes(), 0, &[1; 1100]).unwrap();
        p[100] ^= 0xff;
        d.decode(
            LinkType::Ethernet,
            0,
            &udp(client(), server(), &p),
            &mut out,
        );
    }
    assert_eq!(d.stats().quic_undecryptable, 2000);
    assert_eq!(d.tracked(), (0, 0, 0));
}

#[test]
fn port_reuse_without_a_seen_close_is_a_new_connection() {
    let first = record(&client_hello("one.example", true));
    let second = record(&client_hello("two.example", true));
    let frames = vec![
        tcp(client(), server(), 100, 0x02, &[]),
        tcp(client(), server(), 101, PSH_ACK, &first),
        tcp(client(), server(), 100, 0x02, &[]), // a retransmitted SYN changes nothing
        tcp(client(), server(), 9_000, 0x02, &[]), // a new SYN on the same ports
        tcp(client(), server(), 9_001, PSH_ACK, &second),
    ];
    let mut d = Decoder::new(Limits::default());
    let events = run(&mut d, &frames);
    let names: Vec<_> = hellos(&events)
        .iter()
        .map(|h| h.hello.sni.clone().unwrap())
        .collect();
    assert_eq!(names, ["one.example", "two.example"]);
}

#[test]
fn a_hello_whose_second_segment_was_never_captured_is_reported_on_expiry() {
    let stream = record(&client_hello("perplexity.ai", true));
    let (a, _) = stream.split_at(1000);
    let frames = vec![tcp(client(), server(), 101, PSH_ACK, a)];
    let mut d = Decoder::new(Limits::default());
    assert!(run(&mut d, &frames).is_empty());
    let mut out = Vec::new();
    d.expire_into(5_000, &mut out);
    assert!(out.is_empty(), "not idle yet");
    d.expire_into(60_000, &mut out);
    let h = hellos(&out);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].hello.sni.as_deref(), Some("perplexity.ai"));
    assert!(!h[0].hello.complete);
    assert_eq!(h[0].ts_ms, 60_000);
    assert_eq!(d.tracked(), (0, 0, 0));
    // SNI not among the bytes received: nothing to report
    let stream = record(&client_hello("perplexity.ai", false));
    let mut d = Decoder::new(Limits::default());
    run(
        &mut d,
        &[tcp(client(), server(), 101, PSH_ACK, &stream[..1000])],
    );
    let mut out = Vec::new();
    d.expire_into(60_000, &mut out);
    assert!(out.is_empty());
}
