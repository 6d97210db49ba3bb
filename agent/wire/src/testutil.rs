//! Builders of test inputs: ClientHellos, DNS messages and Ethernet/IP/TCP/UDP frames.

use std::net::{IpAddr, SocketAddr};

fn u16be(v: usize) -> [u8; 2] {
    (v as u16).to_be_bytes()
}

fn ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16be(data.len()));
    out.extend_from_slice(data);
}

/// A Chromium-like ClientHello handshake message: GREASE everywhere, an X25519MLKEM768 key share
/// (1,216 bytes) and a GREASE ECH extension. With `sni_first`, server_name is the first extension.
pub fn client_hello(sni: &str, sni_first: bool) -> Vec<u8> {
    let mut exts = Vec::new();
    let sni_ext = {
        let mut list = vec![0u8];
        list.extend_from_slice(&u16be(sni.len()));
        list.extend_from_slice(sni.as_bytes());
        let mut d = u16be(list.len()).to_vec();
        d.extend_from_slice(&list);
        d
    };
    ext(&mut exts, 0x0a0a, &[]); // GREASE extension
    if sni_first {
        ext(&mut exts, 0, &sni_ext);
    }
    ext(&mut exts, 10, &[0, 6, 0x3a, 0x3a, 0x11, 0xec, 0, 0x1d]);
    let mut shares = Vec::new();
    for (group, len) in [(0x3a3au16, 1usize), (0x11ec, 1216), (0x001d, 32)] {
        shares.extend_from_slice(&group.to_be_bytes());
        shares.extend_from_slice(&u16be(len));
        shares.extend(std::iter::repeat_n(0x42, len));
    }
    let mut ks = u16be(shares.len()).to_vec();
    ks.extend_from_slice(&shares);
    ext(&mut exts, 51, &ks);
    ext(
        &mut exts,
        16,
        &[
            0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
        ],
    );
    ext(&mut exts, 43, &[4, 0x6a, 0x6a, 3, 4]);
    ext(&mut exts, 0xfe0d, &[0; 40]);
    ext(&mut exts, 21, &[0; 150]); // padding, as BoringSSL adds
    if !sni_first {
        ext(&mut exts, 0, &sni_ext);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(32);
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 6, 0x1a, 0x1a, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&u16be(exts.len()));
    body.extend_from_slice(&exts);
    let mut msg = vec![1, 0];
    msg.extend_from_slice(&u16be(body.len()));
    msg.extend_from_slice(&body);
    msg
}

/// The handshake message in one TLS record.
pub fn record(msg: &[u8]) -> Vec<u8> {
    let mut r = vec![22, 3, 1];
    r.extend_from_slice(&u16be(msg.len()));
    r.extend_from_slice(msg);
    r
}

/// A DNS query for `name` of type `qtype`, with an EDNS OPT record.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0]);
    m
}

/// An Ethernet + IPv4/IPv6 frame around a transport segment.
pub fn frame(src: SocketAddr, dst: SocketAddr, protocol: u8, transport: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = 20 + transport.len();
            // a super-frame above 65535 bytes carries total length 0, as Linux BIG TCP does
            let total = if total > 0xffff { 0 } else { total };
            f.extend_from_slice(&[0x45, 0]);
            f.extend_from_slice(&u16be(total));
            f.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            // a hop-by-hop options header first, to walk an extension header
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&u16be(8 + transport.len()));
            f.extend_from_slice(&[0, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            f.extend_from_slice(&[protocol, 0, 1, 4, 0, 0, 0, 0]);
        }
        _ => panic!("mixed address families"),
    }
    f.extend_from_slice(transport);
    f
}

/// A TCP segment (header without options).
pub fn tcp(src: SocketAddr, dst: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = src.port().to_be_bytes().to_vec();
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    frame(src, dst, 6, &t)
}

/// A UDP datagram.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut u = src.port().to_be_bytes().to_vec();
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&u16be(8 + payload.len()));
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    frame(src, dst, 17, &u)
}

/// A QUIC CRYPTO frame.
pub fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![6];
    f.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}
