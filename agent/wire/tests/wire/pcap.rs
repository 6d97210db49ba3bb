//! A minimal reader of classic pcap files, for the fixtures (tests only).

use shadowai_wire::LinkType;

pub struct Capture {
    pub link: LinkType,
    /// (timestamp in ms, frame bytes)
    pub frames: Vec<(i64, Vec<u8>)>,
}

pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn read(name: &str) -> Capture {
    let bytes = std::fs::read(fixture_path(name)).expect("fixture readable");
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        other => panic!("{name}: not a pcap (magic {other:#x})"),
    };
    let u32_at = |b: &[u8], at: usize| {
        let a: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = LinkType::from_pcap(u32_at(&bytes, 20)).expect("a link type the decoder reads");
    let mut frames = Vec::new();
    let mut pos = 24;
    while pos + 16 <= bytes.len() {
        let secs = i64::from(u32_at(&bytes, pos));
        let frac = i64::from(u32_at(&bytes, pos + 4));
        let caplen = u32_at(&bytes, pos + 8) as usize;
        let ms = secs * 1000 + if nanos { frac / 1_000_000 } else { frac / 1000 };
        frames.push((ms, bytes[pos + 16..pos + 16 + caplen].to_vec()));
        pos += 16 + caplen;
    }
    Capture { link, frames }
}
