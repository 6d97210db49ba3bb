//! Writes a large, deterministic benchmark capture for `shadowai-agent pcap` (see
//! `scripts/bench-pcap.sh` and docs/BENCHMARKS.md "Network sensor").
//!
//! ```sh
//! cargo bench -p shadowai-agent --bench pcapgen -- OUT.pcap [PACKETS]   # default 1,000,000
//! ```
//!
//! Mix (per 1,000 packets): 960 bulk TCP segments of 1,448 bytes on 64 established flows (80 %
//! download, 20 % upload), 15 DNS queries, 15 DNS responses (A records), 6 TLS ClientHellos (new
//! flows), 4 QUIC v1 Initials (new connections). Names: a third from the catalog (AI), the rest
//! benign. The ClientHello is a real one (curl 7.88.1 / OpenSSL 3.0.22, from
//! `agent/tests/fixtures/net/loopback-mix.pcap`) with its server_name extension rewritten; QUIC
//! Initials carry that hello in a CRYPTO frame, sealed with the real Initial keys of a fresh
//! connection id (shadowai_wire::quic::seal_client_initial).

use std::io::{BufWriter, Write};

const AI_NAMES: &[&str] = &[
    "chatgpt.com",
    "api.openai.com",
    "claude.ai",
    "api.anthropic.com",
    "api.mistral.ai",
    "huggingface.co",
    "copilot-proxy.githubusercontent.com",
    "generativelanguage.googleapis.com",
    "api.deepseek.com",
    "api.groq.com",
];

const BENIGN_NAMES: &[&str] = &[
    "example.org",
    "www.wikipedia.org",
    "github.com",
    "www.debian.org",
    "cdn.jsdelivr.net",
    "fonts.googleapis.com",
    "www.bbc.co.uk",
    "news.ycombinator.com",
    "crates.io",
    "static.rust-lang.org",
    "www.example.com",
    "login.microsoftonline.com",
    "outlook.office365.com",
    "slack.com",
    "zoom.us",
    "www.nytimes.com",
    "gemini.com",
    "docs.rs",
    "registry.npmjs.org",
    "pypi.org",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(out) = args.first() else {
        eprintln!("usage: pcapgen OUT.pcap [PACKETS]");
        std::process::exit(2);
    };
    let packets: u64 = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let hello = real_hello();
    let file = std::fs::File::create(out).unwrap_or_else(|e| {
        eprintln!("cannot create {out}: {e}");
        std::process::exit(1)
    });
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // pcap header: little-endian, v2.4, µs, snaplen 262144, Ethernet.
    let mut header = Vec::new();
    header.extend(0xa1b2_c3d4u32.to_le_bytes());
    header.extend(2u16.to_le_bytes());
    header.extend(4u16.to_le_bytes());
    header.extend([0u8; 8]);
    header.extend(262_144u32.to_le_bytes());
    header.extend(1u32.to_le_bytes());
    w.write_all(&header).expect("write");

    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut bulk = vec![0u8; 1448 + 4096];
    for b in bulk.iter_mut() {
        *b = rng.next() as u8;
    }
    let client = [10, 0, 0, 2];
    let resolver = [10, 0, 0, 53];
    let mut ts_us: u64 = 1_763_740_800_000_000; // 2025-11-21T16:00:00Z
    let mut next_port: u16 = 20_000;
    let mut frame = Vec::with_capacity(4096);
    let mut counts = [0u64; 5];
    let mut ai_seen = std::collections::BTreeSet::new();
    for i in 0..packets {
        ts_us += 5;
        frame.clear();
        let roll = rng.below(1000);
        let pick = |rng: &mut Rng| -> (&'static str, bool) {
            if rng.below(3) == 0 {
                (AI_NAMES[rng.below(AI_NAMES.len())], true)
            } else {
                (BENIGN_NAMES[rng.below(BENIGN_NAMES.len())], false)
            }
        };
        if roll < 960 {
            counts[0] += 1;
            let flow = rng.below(64) as u16;
            let server = [198, 51, 100, (flow % 200) as u8 + 1];
            let offset = rng.below(4096);
            let payload = &bulk[offset..offset + 1448];
            let seq = (i as u32).wrapping_mul(1448);
            if rng.below(5) == 0 {
                tcp(
                    &mut frame,
                    client,
                    40_000 + flow,
                    server,
                    443,
                    seq,
                    0x18,
                    payload,
                );
            } else {
                tcp(
                    &mut frame,
                    server,
                    443,
                    client,
                    40_000 + flow,
                    seq,
                    0x10,
                    payload,
                );
            }
        } else if roll < 975 {
            counts[1] += 1;
            let (name, ai) = pick(&mut rng);
            if ai {
                ai_seen.insert(name);
            }
            let id = rng.next() as u16;
            udp(
                &mut frame,
                client,
                30_000 + (id % 30_000),
                resolver,
                53,
                &dns(id, name, None),
            );
        } else if roll < 990 {
            counts[2] += 1;
            let (name, ai) = pick(&mut rng);
            if ai {
                ai_seen.insert(name);
            }
            let id = rng.next() as u16;
            let answer = [203, 0, 113, rng.below(250) as u8 + 1];
            udp(
                &mut frame,
                resolver,
                53,
                client,
                30_000 + (id % 30_000),
                &dns(id, name, Some(answer)),
            );
        } else if roll < 996 {
            counts[3] += 1;
            let (name, ai) = pick(&mut rng);
            if ai {
                ai_seen.insert(name);
            }
            next_port = next_port.wrapping_add(1).max(20_000);
            let record = with_sni(&hello, name);
            let server = [203, 0, 113, rng.below(250) as u8 + 1];
            tcp(&mut frame, client, next_port, server, 443, 1, 0x18, &record);
        } else {
            counts[4] += 1;
            let (name, ai) = pick(&mut rng);
            if ai {
                ai_seen.insert(name);
            }
            next_port = next_port.wrapping_add(1).max(20_000);
            let handshake = with_sni(&hello, name);
            let message = &handshake[5..]; // QUIC carries the handshake message, no record header
            let mut frames = vec![0x06, 0x00]; // CRYPTO, offset 0
            frames.extend(((message.len() as u16) | 0x4000).to_be_bytes());
            frames.extend(message);
            frames.resize(1162, 0); // PADDING to a 1,200-byte datagram
            let dcid = rng.next().to_be_bytes();
            let Ok(datagram) = shadowai_wire::quic::seal_client_initial(1, &dcid, 0, &frames)
            else {
                eprintln!("cannot seal a QUIC Initial");
                std::process::exit(1);
            };
            let server = [203, 0, 113, rng.below(250) as u8 + 1];
            udp(&mut frame, client, next_port, server, 443, &datagram);
        }
        let mut record = Vec::with_capacity(16);
        record.extend(((ts_us / 1_000_000) as u32).to_le_bytes());
        record.extend(((ts_us % 1_000_000) as u32).to_le_bytes());
        record.extend((frame.len() as u32).to_le_bytes());
        record.extend((frame.len() as u32).to_le_bytes());
        w.write_all(&record).expect("write");
        w.write_all(&frame).expect("write");
    }
    w.flush().expect("flush");
    eprintln!(
        "wrote {out}: {packets} packets (bulk {}, dns queries {}, dns responses {}, tls hellos {}, quic initials {}); AI names used: {}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        ai_seen.into_iter().collect::<Vec<_>>().join(",")
    );
}

/// The first TLS ClientHello record in the fixture capture (curl → chatgpt.com).
fn real_hello() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/net/loopback-mix.pcap"
    );
    let bytes = std::fs::read(path).expect("fixture");
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().expect("4")) as usize;
        let data = &bytes[pos + 16..pos + 16 + caplen];
        pos += 16 + caplen;
        // Ethernet (14) + IPv4 (IHL) + TCP (data offset).
        if data.len() < 54 || data[12..14] != [0x08, 0x00] || data[23] != 6 {
            continue;
        }
        let ihl = usize::from(data[14] & 0x0f) * 4;
        let tcp = 14 + ihl;
        let payload = tcp + usize::from(data[tcp + 12] >> 4) * 4;
        if data.len() > payload + 5 && data[payload] == 0x16 && data[payload + 5] == 0x01 {
            return data[payload..].to_vec();
        }
    }
    panic!("no ClientHello in {path}");
}

/// The hello record with its server_name extension replaced by `name`.
fn with_sni(record: &[u8], name: &str) -> Vec<u8> {
    let body = &record[9..]; // record header 5 + handshake header 4
    let mut p = 2 + 32; // version, random
    p += 1 + usize::from(body[p]);
    p += 2 + usize::from(u16::from_be_bytes([body[p], body[p + 1]]));
    p += 1 + usize::from(body[p]);
    let extensions_at = p + 2;
    let extensions_len = usize::from(u16::from_be_bytes([body[p], body[p + 1]]));
    let mut extensions = Vec::new();
    let mut q = extensions_at;
    while q + 4 <= extensions_at + extensions_len {
        let kind = u16::from_be_bytes([body[q], body[q + 1]]);
        let len = usize::from(u16::from_be_bytes([body[q + 2], body[q + 3]]));
        if kind == 0 {
            let n = name.len() as u16;
            extensions.extend([0, 0]);
            extensions.extend((n + 5).to_be_bytes());
            extensions.extend((n + 3).to_be_bytes());
            extensions.push(0);
            extensions.extend(n.to_be_bytes());
            extensions.extend(name.as_bytes());
        } else {
            extensions.extend(&body[q..q + 4 + len]);
        }
        q += 4 + len;
    }
    let mut hello = body[..p].to_vec();
    hello.extend((extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut out = vec![0x16, 0x03, 0x01];
    out.extend(((hello.len() + 4) as u16).to_be_bytes());
    out.push(0x01);
    out.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    out.extend(hello);
    out
}

fn dns(id: u16, name: &str, answer: Option<[u8; 4]>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(id.to_be_bytes());
    m.extend(if answer.is_some() {
        [0x81, 0x80]
    } else {
        [0x01, 0x00]
    });
    m.extend([0, 1, 0, u8::from(answer.is_some()), 0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    if let Some(ip) = answer {
        m.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
        m.extend(ip);
    }
    m
}

fn ethernet_ipv4(frame: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: usize) {
    frame.extend([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    frame.extend([0x45, 0]);
    frame.extend(((20 + l4_len) as u16).to_be_bytes());
    frame.extend([0, 0, 0x40, 0, 64, protocol, 0, 0]);
    frame.extend(src);
    frame.extend(dst);
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    frame: &mut Vec<u8>,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) {
    ethernet_ipv4(frame, src, dst, 6, 20 + payload.len());
    frame.extend(sport.to_be_bytes());
    frame.extend(dport.to_be_bytes());
    frame.extend(seq.to_be_bytes());
    frame.extend(1u32.to_be_bytes());
    frame.extend([0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    frame.extend(payload);
}

fn udp(frame: &mut Vec<u8>, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) {
    ethernet_ipv4(frame, src, dst, 17, 8 + payload.len());
    frame.extend(sport.to_be_bytes());
    frame.extend(dport.to_be_bytes());
    frame.extend(((8 + payload.len()) as u16).to_be_bytes());
    frame.extend([0, 0]);
    frame.extend(payload);
}
