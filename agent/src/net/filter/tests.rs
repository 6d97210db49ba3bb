use super::*;

const INCOMING: u32 = 0; // PACKET_HOST

/// IPv4 or IPv6 + TCP/UDP packet, optionally behind an Ethernet header.
struct Packet {
    v6: bool,
    tcp: bool,
    sport: u16,
    dport: u16,
    flags: u8,
    fragment: u16,
    payload: Vec<u8>,
}

impl Packet {
    fn tcp(dport: u16, flags: u8, payload: &[u8]) -> Packet {
        Packet {
            v6: false,
            tcp: true,
            sport: 40000,
            dport,
            flags,
            fragment: 0x4000, // DF
            payload: payload.to_vec(),
        }
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Packet {
        Packet {
            tcp: false,
            sport,
            dport,
            ..Packet::tcp(0, 0, payload)
        }
    }

    fn v6(mut self) -> Packet {
        self.v6 = true;
        self
    }

    fn ip(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend(self.sport.to_be_bytes());
        l4.extend(self.dport.to_be_bytes());
        if self.tcp {
            l4.extend([0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
            l4.push(0x80); // data offset 8 words: 32 bytes with options
            l4.push(self.flags);
            l4.extend([0xff, 0xff, 0, 0, 0, 0]);
            l4.extend([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
        } else {
            l4.extend(u16::try_from(8 + self.payload.len()).unwrap().to_be_bytes());
            l4.extend([0, 0]);
        }
        l4.extend(&self.payload);
        let protocol = if self.tcp { 6 } else { 17 };
        let mut ip = Vec::new();
        if self.v6 {
            ip.extend([0x60, 0, 0, 0]);
            ip.extend(u16::try_from(l4.len()).unwrap().to_be_bytes());
            ip.extend([protocol, 64]);
            ip.extend(
                [0x20, 0x01, 0x0d, 0xb8]
                    .iter()
                    .chain([0u8; 11].iter())
                    .chain([1u8].iter()),
            );
            ip.extend(
                [0x20, 0x01, 0x0d, 0xb8]
                    .iter()
                    .chain([0u8; 11].iter())
                    .chain([2u8].iter()),
            );
        } else {
            ip.push(0x46); // IHL 6: 4 bytes of options, so the IHL is really read
            ip.push(0);
            ip.extend(u16::try_from(24 + l4.len()).unwrap().to_be_bytes());
            ip.extend([0, 1]);
            ip.extend(self.fragment.to_be_bytes());
            ip.extend([64, protocol, 0, 0]);
            ip.extend([10, 0, 0, 2, 203, 0, 113, 9]);
            ip.extend([1, 1, 1, 0]); // NOP NOP NOP EOL
        }
        ip.extend(l4);
        ip
    }

    fn ethernet(&self) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        frame.extend(if self.v6 { [0x86, 0xdd] } else { [0x08, 0x00] });
        frame.extend(self.ip());
        frame
    }
}

fn passes(packet: &Packet, pkttype: u32) -> bool {
    let ethernet = run(
        &program(Framing::Ethernet, false),
        &packet.ethernet(),
        pkttype,
    );
    let raw = run(&program(Framing::RawIp, false), &packet.ip(), pkttype);
    assert_eq!(ethernet, raw, "framing must not change the verdict");
    ethernet != 0
}

const HELLO_START: &[u8] = &[
    0x16, 0x03, 0x01, 0x07, 0x00, 0x01, 0x00, 0x06, 0xfc, 0x03, 0x03,
];
const APP_DATA: &[u8] = &[0x17, 0x03, 0x03, 0x40, 0x00, 0xaa, 0xbb];
const CONTINUATION: &[u8] = &[0x9c, 0x11, 0xec, 0x04, 0xc0, 0x55];
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const SYN: u8 = 0x02;

#[test]
fn outgoing_hellos_and_their_continuations_pass() {
    for v6 in [false, true] {
        let v = |p: Packet| if v6 { p.v6() } else { p };
        assert!(passes(
            &v(Packet::tcp(443, PSH_ACK, HELLO_START)),
            PACKET_OUTGOING
        ));
        assert!(passes(
            &v(Packet::tcp(8443, ACK, CONTINUATION)),
            PACKET_OUTGOING
        ));
        assert!(passes(&v(Packet::tcp(443, SYN, &[])), PACKET_OUTGOING));
        assert!(passes(&v(Packet::tcp(853, SYN, &[])), PACKET_OUTGOING));
        // A hello's first segment is a full MSS (or a GSO super-frame): it passes at any size.
        let mut big_hello = HELLO_START.to_vec();
        big_hello.resize(16_000, 0x5a);
        assert!(passes(
            &v(Packet::tcp(443, ACK, &big_hello)),
            PACKET_OUTGOING
        ));
        // The continuation passes up to the cap, inclusive.
        let mut tail = CONTINUATION.to_vec();
        tail.resize(CONTINUATION_MAX as usize, 0x5a);
        assert!(passes(&v(Packet::tcp(443, ACK, &tail)), PACKET_OUTGOING));
    }
}

#[test]
fn full_size_bulk_segments_that_do_not_start_a_hello_stay_in_the_kernel() {
    for v6 in [false, true] {
        let v = |p: Packet| if v6 { p.v6() } else { p };
        let mut segment = CONTINUATION.to_vec();
        segment.resize(CONTINUATION_MAX as usize + 1, 0x5a);
        assert!(!passes(
            &v(Packet::tcp(443, ACK, &segment)),
            PACKET_OUTGOING
        ));
        segment.resize(1_448, 0x5a);
        assert!(!passes(
            &v(Packet::tcp(22, PSH_ACK, &segment)),
            PACKET_OUTGOING
        ));
        segment.resize(64_000, 0x5a);
        assert!(!passes(
            &v(Packet::tcp(80, PSH_ACK, &segment)),
            PACKET_OUTGOING
        ));
    }
}

#[test]
fn bulk_and_inbound_traffic_stays_in_the_kernel() {
    for v6 in [false, true] {
        let v = |p: Packet| if v6 { p.v6() } else { p };
        // Outgoing TLS application data, pure ACKs, a 1-byte payload.
        assert!(!passes(
            &v(Packet::tcp(443, PSH_ACK, APP_DATA)),
            PACKET_OUTGOING
        ));
        assert!(!passes(&v(Packet::tcp(443, ACK, &[])), PACKET_OUTGOING));
        assert!(!passes(&v(Packet::tcp(443, ACK, &[0x16])), PACKET_OUTGOING));
        // Anything inbound that is not DNS, even a hello (we only report our own clients).
        for payload in [HELLO_START, APP_DATA, CONTINUATION] {
            assert!(!passes(&v(Packet::tcp(443, PSH_ACK, payload)), INCOMING));
        }
        assert!(!passes(&v(Packet::tcp(443, SYN, &[])), INCOMING));
        // QUIC short header (1-RTT data) outgoing; long header inbound; mDNS.
        assert!(!passes(
            &v(Packet::udp(50000, 443, &[0x41, 1, 2, 3])),
            PACKET_OUTGOING
        ));
        assert!(!passes(
            &v(Packet::udp(443, 50000, &[0xc3, 0, 0, 0, 1])),
            INCOMING
        ));
        assert!(!passes(
            &v(Packet::udp(5353, 5353, &[0, 0, 0x84, 0])),
            PACKET_OUTGOING
        ));
    }
}

#[test]
fn dns_passes_both_ways_and_quic_long_headers_outgoing() {
    for v6 in [false, true] {
        let v = |p: Packet| if v6 { p.v6() } else { p };
        let dns = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        assert!(passes(&v(Packet::udp(40000, 53, &dns)), PACKET_OUTGOING));
        assert!(passes(&v(Packet::udp(53, 40000, &dns)), INCOMING));
        assert!(passes(
            &v(Packet::tcp(53, PSH_ACK, &[0, 12])),
            PACKET_OUTGOING
        ));
        let mut answer = Packet::tcp(0, PSH_ACK, APP_DATA);
        answer.sport = 53;
        answer.dport = 40000;
        assert!(passes(&v(answer), INCOMING));
        assert!(passes(
            &v(Packet::udp(50000, 443, &[0xc3, 0, 0, 0, 1])),
            PACKET_OUTGOING
        ));
        assert!(passes(
            &v(Packet::udp(50000, 4433, &[0xd3, 0x6b, 0x33, 0x43, 0xcf])),
            PACKET_OUTGOING
        ));
    }
}

#[test]
fn fragments_and_other_protocols_are_dropped() {
    let mut fragment = Packet::udp(40000, 53, &[0; 12]);
    fragment.fragment = 0x2000; // MF
    assert!(!passes(&fragment, PACKET_OUTGOING));
    fragment.fragment = 0x0010; // offset
    assert!(!passes(&fragment, PACKET_OUTGOING));
    let mut arp = Packet::tcp(443, SYN, &[]).ethernet();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(
        run(&program(Framing::Ethernet, false), &arp, PACKET_OUTGOING),
        0
    );
    let mut icmp = Packet::udp(40000, 53, &[0; 12]).ethernet();
    icmp[14 + 9] = 1;
    assert_eq!(
        run(&program(Framing::Ethernet, false), &icmp, PACKET_OUTGOING),
        0
    );
}

#[test]
fn loopback_keeps_only_the_outgoing_copy() {
    let program = program(Framing::Ethernet, true);
    let dns = Packet::udp(40000, 53, &[0; 12]).ethernet();
    assert_eq!(run(&program, &dns, PACKET_OUTGOING), SNAP_LEN);
    assert_eq!(run(&program, &dns, INCOMING), 0);
}

#[test]
fn every_prefix_of_a_frame_is_handled() {
    let program = program(Framing::Ethernet, false);
    for packet in [
        Packet::tcp(443, PSH_ACK, HELLO_START),
        Packet::tcp(443, ACK, CONTINUATION).v6(),
        Packet::udp(40000, 53, &[0; 12]),
        Packet::udp(50000, 443, &[0xc3, 0, 0, 0, 1]).v6(),
    ] {
        let frame = packet.ethernet();
        for end in 0..frame.len() {
            // Never a panic; a truncated header is dropped by the kernel's rule (load past end).
            let _ = run(&program, &frame[..end], PACKET_OUTGOING);
        }
        assert_eq!(run(&program, &frame[..13], PACKET_OUTGOING), 0);
    }
}

#[test]
fn jumps_stay_inside_the_program_and_it_ends_in_returns() {
    for framing in [Framing::Ethernet, Framing::RawIp] {
        for outgoing_only in [false, true] {
            let program = program(framing, outgoing_only);
            assert!(
                program.len() > 40 && program.len() < 255,
                "{}",
                program.len()
            );
            for (i, instruction) in program.iter().enumerate() {
                if instruction.code & 0x07 == JMP {
                    assert!(i + 1 + usize::from(instruction.jt) < program.len());
                    assert!(i + 1 + usize::from(instruction.jf) < program.len());
                }
            }
            assert_eq!(program.last().map(|i| (i.code, i.k)), Some((RET | K, 0)));
            assert_eq!(to_sock_filters(&program).len(), program.len());
        }
    }
}
