//! The fuzz entry points over a few thousand seeded random inputs, so that every `cargo test`
//! exercises them (the cargo-fuzz targets in `fuzz/` run the same functions for longer).

use crate::pcap;
use shadowai_wire::fuzzing;

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Seeds from the real captures: frames, and payloads after the 42-byte Ethernet/IPv4/UDP or
/// 54-byte Ethernet/IPv4/TCP headers.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for name in [
        "tls-curl.pcap",
        "tls-chromium-2seg.pcap",
        "quic-chromium.pcap",
        "dns-dig.pcap",
    ] {
        for (_, frame) in pcap::read(name).frames {
            for skip in [0, 42, 54, 66] {
                if let Some(p) = frame.get(skip..) {
                    seeds.push(p.to_vec());
                }
            }
        }
    }
    seeds
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(4) {
        0 => v.truncate(rng.below(v.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] ^= 1 << rng.below(8);
                }
            }
        }
        2 => {
            let n = rng.below(64);
            v = (0..n).map(|_| rng.next() as u8).collect();
        }
        _ => {
            if !v.is_empty() {
                let i = rng.below(v.len());
                let b = rng.next() as u8;
                v.insert(i, b);
                v.truncate(2048);
            }
        }
    }
    v
}

/// Frames for `fuzzing::decoder`: each with its 2-byte length.
fn framed(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn fuzz_entry_points_on_seeded_random_inputs() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_0f5a_d0a1);
    for _ in 0..3000 {
        let seed = &seeds[rng.below(seeds.len())];
        let a = mutate(&mut rng, seed);
        fuzzing::dns(&a);
        fuzzing::tls_hello(&a);
        fuzzing::quic_initial(&a);
    }
    for _ in 0..300 {
        let parts: Vec<Vec<u8>> = (0..1 + rng.below(6))
            .map(|_| {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed)
            })
            .collect();
        fuzzing::decoder(&framed(&parts));
    }
    // and the unmutated seeds, which must reach the deep paths
    for s in &seeds {
        fuzzing::tls_hello(s);
        fuzzing::dns(s);
    }
    fuzzing::decoder(&framed(
        &pcap::read("quic-chromium.pcap")
            .frames
            .into_iter()
            .map(|f| f.1)
            .collect::<Vec<_>>(),
    ));
}
