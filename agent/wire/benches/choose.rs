//! Our zero-copy DNS and ClientHello readers against hickory-proto and tls-parser on the same
//! real messages, producing the same facts (names, types, addresses / SNI, ALPN, key shares).
//! The result and the choice are recorded in docs/BENCHMARKS.md ("Wire parsers").
//!
//! `cargo bench -p shadowai-wire --bench choose`

// a benchmark over fixed fixtures: a missing or changed fixture should stop it at once
#![allow(clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use std::hint::black_box;
use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};

#[path = "../tests/wire/pcap.rs"]
#[allow(dead_code)]
mod pcap;

fn udp_payload(frame: &[u8]) -> &[u8] {
    &frame[14 + 20 + 8..]
}

fn tcp_payload(frame: &[u8]) -> &[u8] {
    let ihl = 14 + 20;
    let doff = usize::from(frame[ihl + 12] >> 4) * 4;
    &frame[ihl + doff..]
}

/// What we need from a DNS message, via hickory-proto.
fn hickory_dns(msg: &[u8]) -> (usize, usize) {
    let m = Message::from_vec(msg).unwrap();
    let names: usize = m.queries().iter().map(|q| q.name().to_ascii().len()).sum();
    let data = m
        .answers()
        .iter()
        .filter(|r| {
            matches!(
                r.data(),
                RData::A(_) | RData::AAAA(_) | RData::CNAME(_) | RData::HTTPS(_)
            )
        })
        .count();
    (names, data)
}

fn own_dns(msg: &[u8]) -> (usize, usize) {
    let m = shadowai_wire::dns::parse_message(msg).unwrap();
    (
        m.questions.iter().map(|q| q.name.len()).sum(),
        m.answers.len(),
    )
}

/// What we need from a ClientHello, via tls-parser.
fn tls_parser_hello(record: &[u8]) -> (usize, usize, usize) {
    let (_, plain) = tls_parser::parse_tls_plaintext(record).unwrap();
    let Some(TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) = plain.msg.first()
    else {
        panic!("not a hello")
    };
    let (_, exts) = tls_parser::parse_tls_client_hello_extensions(ch.ext.unwrap()).unwrap();
    let (mut sni, mut alpn, mut shares) = (0, 0, 0);
    for e in exts {
        match e {
            TlsExtension::SNI(list) => {
                sni = list
                    .first()
                    .map_or(0, |(_, n)| n.to_ascii_lowercase().len())
            }
            TlsExtension::ALPN(list) => alpn = list.len(),
            TlsExtension::KeyShare(ks) => shares = ks.len(),
            _ => {}
        }
    }
    (sni, alpn, shares)
}

fn own_hello(record: &[u8]) -> (usize, usize, usize) {
    let h = shadowai_wire::tls::parse_client_hello(record).unwrap();
    (
        h.sni.map_or(0, |s| s.len()),
        h.alpn.len(),
        h.key_share_groups.len(),
    )
}

fn bench(c: &mut Criterion) {
    let dns = pcap::read("dns-dig.pcap").frames;
    let query = udp_payload(&dns[0].1).to_vec();
    let response = udp_payload(&dns[3].1).to_vec();
    assert_eq!(hickory_dns(&response).1, own_dns(&response).1);
    let curl = pcap::read("tls-curl.pcap").frames;
    let hello_curl = curl
        .iter()
        .map(|(_, f)| tcp_payload(f))
        .find(|p| p.get(5) == Some(&1))
        .unwrap()
        .to_vec();
    let sf = pcap::read("tls-chromium-superframe.pcap").frames;
    let hello_chrome = sf
        .iter()
        .map(|(_, f)| tcp_payload(f))
        .find(|p| p.len() > 1500 && p.get(5) == Some(&1))
        .unwrap()
        .to_vec();
    assert_eq!(tls_parser_hello(&hello_curl).0, own_hello(&hello_curl).0);
    assert_eq!(
        tls_parser_hello(&hello_chrome).0,
        own_hello(&hello_chrome).0
    );

    // a hello cut short: tls-parser can only say "incomplete"
    assert!(tls_parser::parse_tls_plaintext(&hello_chrome[..1000]).is_err());

    let mut g = c.benchmark_group("choose");
    g.bench_function("dns_query/own", |b| b.iter(|| own_dns(black_box(&query))));
    g.bench_function("dns_query/hickory", |b| {
        b.iter(|| hickory_dns(black_box(&query)))
    });
    g.bench_function("dns_response_https/own", |b| {
        b.iter(|| own_dns(black_box(&response)))
    });
    g.bench_function("dns_response_https/hickory", |b| {
        b.iter(|| hickory_dns(black_box(&response)))
    });
    g.bench_function("hello_curl/own", |b| {
        b.iter(|| own_hello(black_box(&hello_curl)))
    });
    g.bench_function("hello_curl/tls-parser", |b| {
        b.iter(|| tls_parser_hello(black_box(&hello_curl)))
    });
    g.bench_function("hello_chromium/own", |b| {
        b.iter(|| own_hello(black_box(&hello_chrome)))
    });
    g.bench_function("hello_chromium/tls-parser", |b| {
        b.iter(|| tls_parser_hello(black_box(&hello_chrome)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
