//! The decoder on captures of real clients (see tests/fixtures/README.md).

use crate::pcap;
use shadowai_wire::{AnswerData, ClientHello, Decoder, Event, Limits};

fn decode(name: &str) -> (Vec<Event>, Decoder) {
    let capture = pcap::read(name);
    let mut decoder = Decoder::new(Limits::default());
    let mut events = Vec::new();
    for (ts, frame) in &capture.frames {
        decoder.decode(capture.link, *ts, frame, &mut events);
    }
    assert_eq!(
        decoder.stats().malformed,
        0,
        "{name}: {:?}",
        decoder.stats()
    );
    (events, decoder)
}

fn tls_hellos(events: &[Event]) -> Vec<&ClientHello> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TlsHello(h) => Some(&h.hello),
            _ => None,
        })
        .collect()
}

#[test]
fn curl_openssl_hello() {
    let (events, _) = decode("tls-curl.pcap");
    let hellos = tls_hellos(&events);
    assert_eq!(hellos.len(), 1, "{events:?}");
    let h = hellos[0];
    assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
    assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    assert!(h.complete && !h.grease && !h.ech);
    assert_eq!(h.len, 508, "Debian's curl pads its hello to 512 bytes");
    let Event::TlsHello(e) = &events[0] else {
        unreachable!()
    };
    assert_eq!(e.flow.dst.port(), 4433);
}

#[test]
fn gnutls_hello() {
    let (events, _) = decode("tls-gnutls.pcap");
    let hellos = tls_hellos(&events);
    assert_eq!(hellos.len(), 1, "{events:?}");
    assert_eq!(hellos[0].sni.as_deref(), Some("chatgpt.com"));
    assert!(hellos[0].complete);
}

fn check_chromium(name: &str) {
    let (events, decoder) = decode(name);
    let hellos = tls_hellos(&events);
    assert!(
        !hellos.is_empty(),
        "{name}: no hello in {:?}",
        decoder.stats()
    );
    for h in &hellos {
        assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
        assert!(h.complete && h.grease && h.ech, "{h:?}");
        assert!(
            h.key_share_groups.contains(&0x11ec),
            "X25519MLKEM768 share: {h:?}"
        );
        assert!(
            h.len > 1500,
            "a post-quantum hello is larger than one segment: {}",
            h.len
        );
        assert!(h.alpn.iter().any(|a| a == "h2"));
    }
    // one hello per TCP connection
    let flows: std::collections::HashSet<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TlsHello(h) => Some(h.flow),
            _ => None,
        })
        .collect();
    assert_eq!(flows.len(), hellos.len());
}

#[test]
fn chromium_hello_in_two_segments() {
    check_chromium("tls-chromium-2seg.pcap");
}

#[test]
fn chromium_hello_in_one_super_frame() {
    check_chromium("tls-chromium-superframe.pcap");
    let capture = pcap::read("tls-chromium-superframe.pcap");
    assert!(
        capture.frames.iter().any(|(_, f)| f.len() > 1514),
        "the fixture has a >MTU frame"
    );
}

#[test]
fn chromium_quic_initials() {
    let (events, decoder) = decode("quic-chromium.pcap");
    let quic: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::QuicHello(q) => Some(q),
            _ => None,
        })
        .collect();
    assert!(!quic.is_empty(), "{:?}", decoder.stats());
    for q in &quic {
        assert_eq!(q.version, 1);
        assert_eq!(q.hello.sni.as_deref(), Some("chatgpt.com"));
        assert_eq!(q.flow.dst.port(), 443);
        assert!(
            q.hello.complete && q.hello.key_share_groups.contains(&0x11ec),
            "{:?}",
            q.hello
        );
    }
    assert_eq!(decoder.stats().quic_undecryptable, 0);
}

#[test]
fn chromium_first_initial_alone() {
    // Only the first datagram: what a sensor sees when nothing answers and the second Initial is
    // lost. In this capture Chromium's chaos protection put only bytes 0..72 of the hello at the
    // front of that datagram (the rest of it holds pieces from 1,015 on), so the SNI is not yet
    // contiguous and nothing may be reported; the connection is tracked, waiting.
    let capture = pcap::read("quic-chromium.pcap");
    let mut decoder = Decoder::new(Limits::default());
    let mut events = Vec::new();
    let (ts, first) = &capture.frames[0];
    decoder.decode(capture.link, *ts, first, &mut events);
    assert_eq!(decoder.stats().quic_initials, 1);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(decoder.tracked().1, 1);
    // the datagrams that follow it complete the hello
    for (ts, frame) in &capture.frames[1..2] {
        decoder.decode(capture.link, *ts, frame, &mut events);
    }
    assert_eq!(events.len(), 1);
}

#[test]
fn dig_udp_and_tcp() {
    let (events, _) = decode("dns-dig.pcap");
    let dns: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Dns(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dns.len(), 8, "{dns:#?}");
    assert_eq!(dns.iter().filter(|d| d.tcp).count(), 4);
    assert_eq!(dns.iter().filter(|d| d.response).count(), 4);
    let names: Vec<_> = dns.iter().map(|d| d.questions[0].name.as_str()).collect();
    assert_eq!(
        names,
        [
            "api.openai.com",
            "api.openai.com",
            "api.openai.com",
            "api.openai.com",
            "chatgpt.com",
            "chatgpt.com",
            "claude.ai",
            "claude.ai"
        ]
    );
    let https = dns
        .iter()
        .find(|d| d.response && d.questions[0].qtype == 65)
        .expect("an HTTPS response");
    assert_eq!(https.answers.len(), 1);
    match &https.answers[0].data {
        AnswerData::Svcb {
            priority,
            target,
            alpn,
            ech,
            ipv4_hints,
            ..
        } => {
            assert_eq!((*priority, target.as_str()), (1, ""));
            assert_eq!(alpn, &["h3", "h2"]);
            assert!(*ech);
            assert_eq!(
                ipv4_hints,
                &["10.231.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
            );
        }
        other => panic!("{other:?}"),
    }
    let a = dns
        .iter()
        .find(|d| d.response && d.questions[0].qtype == 1)
        .unwrap();
    assert_eq!(
        a.answers[0].data,
        AnswerData::A("10.231.0.1".parse().unwrap())
    );
    // the response flows from the resolver to the client
    assert_eq!(a.flow.src.port(), 53);
}
