//! Per-frame cost of the decoder on real captured frames (tests/fixtures), and heap
//! allocations per frame counted with a counting global allocator.
//!
//! `cargo bench -p shadowai-wire --bench decoder`

// a benchmark over fixed fixtures: a missing or changed fixture should stop it at once
#![allow(clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use shadowai_wire::{Decoder, Event, Limits, LinkType};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[path = "../tests/wire/pcap.rs"]
#[allow(dead_code)]
mod pcap;

struct Samples {
    bulk: Vec<u8>,
    dns_query: Vec<u8>,
    dns_response: Vec<u8>,
    hello_curl: Vec<u8>,
    hello_chromium_superframe: Vec<u8>,
    hello_chromium_2seg: [Vec<u8>; 2],
    quic_chromium: [Vec<u8>; 2],
    quic_rfc9001: Vec<u8>,
}

/// The RFC 9001 A.2 client Initial in an Ethernet/IPv4/UDP frame: one packet, whole hello.
fn rfc9001_frame() -> Vec<u8> {
    let hex = std::fs::read_to_string(pcap::fixture_path("rfc9001-a2-client-initial.hex")).unwrap();
    let hex = hex.trim();
    let packet: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0];
    f.extend_from_slice(&((20 + 8 + packet.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
    f.extend_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
    f.extend_from_slice(&((8 + packet.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&packet);
    f
}

fn samples() -> Samples {
    let curl = pcap::read("tls-curl.pcap").frames;
    let tcp_payload_len = |f: &[u8]| f.len().saturating_sub(14 + 20 + 32);
    // the largest server→client data segment of the curl capture: bulk TLS application data
    let bulk = curl
        .iter()
        .map(|(_, f)| f.clone())
        .max_by_key(|f| f.len())
        .unwrap();
    let hello_curl = curl
        .iter()
        .map(|(_, f)| f.clone())
        .find(|f| f.get(66) == Some(&22) && f.get(71) == Some(&1))
        .unwrap();
    let dns = pcap::read("dns-dig.pcap").frames;
    let sf = pcap::read("tls-chromium-superframe.pcap").frames;
    let hello_chromium_superframe = sf
        .iter()
        .map(|(_, f)| f.clone())
        .find(|f| tcp_payload_len(f) > 1500)
        .unwrap();
    let two = pcap::read("tls-chromium-2seg.pcap").frames;
    let first = two
        .iter()
        .position(|(_, f)| f.get(66) == Some(&22) && f.get(71) == Some(&1))
        .unwrap();
    // the hello's second segment: the next frame of the same client port that carries data
    let second = two[first + 1..]
        .iter()
        .find(|(_, f)| f.get(34..36) == two[first].1.get(34..36) && tcp_payload_len(f) > 0)
        .map(|(_, f)| f.clone())
        .unwrap();
    let quic = pcap::read("quic-chromium.pcap").frames;
    Samples {
        bulk,
        dns_query: dns[0].1.clone(),
        dns_response: dns[3].1.clone(), // the HTTPS record response
        hello_curl,
        hello_chromium_superframe,
        hello_chromium_2seg: [two[first].1.clone(), second],
        // Chromium's hello spread over two Initials (chaos-protected CRYPTO fragments)
        quic_chromium: [quic[0].1.clone(), quic[1].1.clone()],
        quic_rfc9001: rfc9001_frame(),
    }
}

/// Heap allocations (count, bytes) of one call of `f` after a warm-up call.
fn allocs(mut f: impl FnMut()) -> (usize, usize) {
    f();
    let region = Region::new(GLOBAL);
    f();
    let s = region.change();
    (s.allocations + s.reallocations, s.bytes_allocated)
}

fn report_allocations(s: &Samples) {
    let mut out = Vec::with_capacity(16);
    let mut d = Decoder::new(Limits::default());
    let mut one = |frames: &[&[u8]], fresh: bool| {
        allocs(|| {
            if fresh {
                d = Decoder::new(Limits::default());
            }
            out.clear();
            for f in frames {
                d.decode(LinkType::Ethernet, 0, f, &mut out);
            }
        })
    };
    println!("allocations per call (count, bytes):");
    println!("  bulk tcp rejected      {:?}", one(&[&s.bulk], false));
    println!("  dns query              {:?}", one(&[&s.dns_query], false));
    println!(
        "  dns response (HTTPS)   {:?}",
        one(&[&s.dns_response], false)
    );
    println!("  tls hello curl 1 seg   {:?}", one(&[&s.hello_curl], true));
    println!(
        "  tls hello chromium >MTU{:?}",
        one(&[&s.hello_chromium_superframe], true)
    );
    let [a, b] = &s.hello_chromium_2seg;
    println!("  tls hello chromium 2seg{:?}", one(&[a, b], true));
    let [q0, q1] = &s.quic_chromium;
    println!("  quic chromium 2 initials {:?}", one(&[q0, q1], true));
    println!(
        "  quic rfc9001 1 initial  {:?}",
        one(&[&s.quic_rfc9001], true)
    );
}

fn bench(c: &mut Criterion) {
    let s = samples();
    report_allocations(&s);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let mut out: Vec<Event> = Vec::with_capacity(16);

    let mut d = Decoder::new(Limits::default());
    g.bench_function("bulk_tcp_rejected_empty_table", |b| {
        b.iter(|| d.decode(LinkType::Ethernet, 0, black_box(&s.bulk), &mut out))
    });
    // the same with 4,000 flows held (tombstones of hellos): every segment pays a lookup
    let mut busy = Decoder::new(Limits::default());
    let hello = &s.hello_curl;
    for i in 0..4000u16 {
        let mut f = hello.clone();
        f[34..36].copy_from_slice(&i.to_be_bytes()); // client port
        busy.decode(LinkType::Ethernet, 0, &f, &mut out);
    }
    assert_eq!(busy.tracked().0, 4000);
    g.bench_function("bulk_tcp_rejected_4000_flows", |b| {
        b.iter(|| busy.decode(LinkType::Ethernet, 0, black_box(&s.bulk), &mut out))
    });
    g.bench_function("dns_query", |b| {
        b.iter(|| {
            out.clear();
            d.decode(LinkType::Ethernet, 0, black_box(&s.dns_query), &mut out)
        })
    });
    g.bench_function("dns_response_https", |b| {
        b.iter(|| {
            out.clear();
            d.decode(LinkType::Ethernet, 0, black_box(&s.dns_response), &mut out)
        })
    });
    for (name, frames) in [
        ("tls_hello_curl_1_segment", vec![s.hello_curl.clone()]),
        (
            "tls_hello_chromium_superframe",
            vec![s.hello_chromium_superframe.clone()],
        ),
        (
            "tls_hello_chromium_2_segments",
            s.hello_chromium_2seg.to_vec(),
        ),
        ("quic_chromium_2_initials", s.quic_chromium.to_vec()),
        ("quic_rfc9001_1_initial", vec![s.quic_rfc9001.clone()]),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || (Decoder::new(Limits::default()), Vec::with_capacity(4)),
                |(d, out)| {
                    for f in &frames {
                        d.decode(LinkType::Ethernet, 0, black_box(f), out);
                    }
                    assert_eq!(out.len(), 1);
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
