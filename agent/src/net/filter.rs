//! The kernel packet filter (classic BPF) attached to every capture socket before it is bound.
//!
//! In words, a frame is passed to user space only when it is IPv4 (not a fragment) or IPv6 (TCP
//! or UDP directly after the fixed header) and:
//! 1. UDP or TCP with source or destination port 53, in either direction (queries and answers:
//!    the answers feed the IP → name cache), or
//! 2. it is **outgoing** (`SKF_AD_PKTTYPE == PACKET_OUTGOING`) and
//!    - UDP whose first payload byte has the QUIC long-header bit (0x80) set (Initial,
//!      Handshake, 0-RTT; short-header 1-RTT data is dropped), or
//!    - TCP with SYN set (a flow's start; tiny), or
//!    - TCP whose payload starts with `16 03` (a TLS handshake record: the ClientHello), or
//!    - TCP with 2 to [`CONTINUATION_MAX`] payload bytes that do **not** start with `17 03` (the
//!      header of a TLS application-data record).
//!
//! Why the last rule: a ClientHello of 1,500–2,300 bytes (ML-KEM key shares) may leave in two
//! segments, and a stateless filter cannot tell the continuation of a hello from any other
//! segment. The first segment of such a hello is a full MSS and starts with `16 03`; the rest is
//! what is left of the hello, under 1,000 bytes for today's clients at a 1,500-byte MTU (and
//! under 1,100 on a 1,420-byte WireGuard MTU). Bulk uploads leave in full-MSS segments (or, with
//! TSO/GSO, in super-frames of many MSS) that start anywhere in a record: at more than
//! [`CONTINUATION_MAX`] bytes they stay in the kernel. What still passes — small segments that do
//! not start an application-data record (interactive SSH, the tail of a write) — is rejected by the
//! user-space decoder in well under 100 ns per untracked flow. A hello so large that its
//! continuation exceeds the cap (over ~2,700 bytes at a 1,500-byte MTU) loses its tail; the
//! decoder still reads the SNI from the cut hello when the SNI sits in the first segment.
//! Inbound bulk, the bulk of a laptop's traffic, never leaves the kernel. Measured figures are in
//! `docs/BENCHMARKS.md` ("Network sensor").
//!
//! On loopback every packet is seen twice (once outgoing, once incoming), so loopback sockets
//! keep only the outgoing copy of everything.
//!
//! VLAN tags are not matched: Linux removes them from the frame before packet sockets see it.
//! IPv6 packets with extension headers before TCP/UDP are dropped (rare for a client's own flows).

#[cfg(target_os = "linux")]
use socket2::SockFilter;

/// Bytes of a passed frame handed to user space: enough for a GSO super-frame holding a hello.
pub const SNAP_LEN: u32 = 256 * 1024;

/// Largest outgoing TCP payload passed that does not start a TLS handshake record: room for the
/// continuation of a ClientHello that spans two segments, not for a full-MSS bulk segment.
pub const CONTINUATION_MAX: u32 = 1_200;

/// `PACKET_OUTGOING` from `linux/if_packet.h`.
pub const PACKET_OUTGOING: u32 = 4;
/// `SKF_AD_OFF + SKF_AD_PKTTYPE`: the ancillary load of the packet type.
const PKTTYPE: u32 = 0xffff_f000 + 4;

// Opcode parts from linux/bpf_common.h.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const H: u16 = 0x08;
const B: u16 = 0x10;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const IND: u16 = 0x40;
const MEM: u16 = 0x60;
const MSH: u16 = 0xa0;
const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const K: u16 = 0x00;
const X: u16 = 0x08;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

/// How frames of an interface begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A 14-byte Ethernet header (Ethernet, Wi-Fi as seen by Linux, loopback).
    Ethernet,
    /// The IP header first (tun, WireGuard, PPP, IP tunnels).
    RawIp,
}

/// One classic BPF instruction: opcode, jump-if-true, jump-if-false, constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    /// Opcode.
    pub code: u16,
    /// Forward jump when the condition holds.
    pub jt: u8,
    /// Forward jump when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// The filter program for an interface. `outgoing_only` is set for loopback.
pub fn program(framing: Framing, outgoing_only: bool) -> Vec<Instruction> {
    let l3: u32 = match framing {
        Framing::Ethernet => 14,
        Framing::RawIp => 0,
    };
    let mut a = Assembler::default();
    a.op(LD | W | ABS, PKTTYPE);
    a.op(ST, 1);
    if outgoing_only {
        a.jump(JEQ | K, PACKET_OUTGOING, "l3", "drop");
    }
    a.label("l3");
    match framing {
        Framing::Ethernet => {
            a.op(LD | H | ABS, 12);
            a.jump(JEQ | K, 0x0800, "v4", "not-v4");
            a.label("not-v4");
            a.jump(JEQ | K, 0x86dd, "v6", "drop");
        }
        Framing::RawIp => {
            a.op(LD | B | ABS, 0);
            a.op(ALU | AND | K, 0xf0);
            a.jump(JEQ | K, 0x40, "v4", "not-v4");
            a.label("not-v4");
            a.jump(JEQ | K, 0x60, "v6", "drop");
        }
    }
    // IPv4: no fragments; M[0] = L4 length; X = L4 offset.
    a.label("v4");
    a.op(LD | H | ABS, l3 + 6);
    a.jump(JSET | K, 0x3fff, "drop", "v4-whole");
    a.label("v4-whole");
    a.op(LDX | B | MSH, l3);
    a.op(LD | H | ABS, l3 + 2);
    a.op(ALU | SUB | X, 0);
    a.op(ST, 0);
    a.op(MISC | TXA, 0);
    a.op(ALU | ADD | K, l3);
    a.op(MISC | TAX, 0);
    a.op(LD | B | ABS, l3 + 9);
    a.jump(JEQ | K, 6, "tcp", "v4-udp?");
    a.label("v4-udp?");
    a.jump(JEQ | K, 17, "udp", "drop");
    // IPv6: fixed header only.
    a.label("v6");
    a.op(LD | H | ABS, l3 + 4);
    a.op(ST, 0);
    a.op(LDX | W | IMM, l3 + 40);
    a.op(LD | B | ABS, l3 + 6);
    a.jump(JEQ | K, 6, "tcp", "v6-udp?");
    a.label("v6-udp?");
    a.jump(JEQ | K, 17, "udp", "drop");
    // UDP: DNS either way; outgoing QUIC long header.
    a.label("udp");
    a.op(LD | H | IND, 0);
    a.jump(JEQ | K, 53, "accept", "udp-dport");
    a.label("udp-dport");
    a.op(LD | H | IND, 2);
    a.jump(JEQ | K, 53, "accept", "udp-out?");
    a.label("udp-out?");
    a.op(LD | MEM, 1);
    a.jump(JEQ | K, PACKET_OUTGOING, "udp-quic?", "drop");
    a.label("udp-quic?");
    a.op(LD | B | IND, 8);
    a.jump(JSET | K, 0x80, "accept", "drop");
    // TCP: DNS either way; outgoing SYN; outgoing payload not starting an application-data record.
    a.label("tcp");
    a.op(LD | H | IND, 0);
    a.jump(JEQ | K, 53, "accept", "tcp-dport");
    a.label("tcp-dport");
    a.op(LD | H | IND, 2);
    a.jump(JEQ | K, 53, "accept", "tcp-out?");
    a.label("tcp-out?");
    a.op(LD | MEM, 1);
    a.jump(JEQ | K, PACKET_OUTGOING, "tcp-syn?", "drop");
    a.label("tcp-syn?");
    a.op(LD | B | IND, 13);
    a.jump(JSET | K, 0x02, "accept", "tcp-len");
    a.label("tcp-len");
    a.op(LD | B | IND, 12);
    a.op(ALU | RSH | K, 2);
    a.op(ALU | AND | K, 0x3c);
    a.op(ST, 2);
    a.op(MISC | TXA, 0);
    a.op(ST, 3);
    a.op(LDX | W | MEM, 2);
    a.op(LD | MEM, 0);
    a.op(ALU | SUB | X, 0);
    a.jump(JGE | K, 2, "tcp-payload", "drop");
    a.label("tcp-payload");
    // M[2] = payload length; X = payload offset; A = its first two bytes.
    a.op(ST, 2);
    a.op(LD | MEM, 3);
    a.op(ALU | ADD | X, 0);
    a.op(MISC | TAX, 0);
    a.op(LD | H | IND, 0);
    a.jump(JEQ | K, 0x1603, "accept", "tcp-appdata?");
    a.label("tcp-appdata?");
    a.jump(JEQ | K, 0x1703, "drop", "tcp-small?");
    a.label("tcp-small?");
    a.op(LD | MEM, 2);
    a.jump(JGE | K, CONTINUATION_MAX + 1, "drop", "accept");
    a.label("accept");
    a.op(RET | K, SNAP_LEN);
    a.label("drop");
    a.op(RET | K, 0);
    a.finish()
}

/// The program in socket2's form, for `Socket::attach_filter`.
#[cfg(target_os = "linux")]
pub fn to_sock_filters(program: &[Instruction]) -> Vec<SockFilter> {
    program
        .iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect()
}

#[derive(Default)]
struct Assembler {
    /// (instruction, jump labels) in order; labels resolved by `finish`.
    code: Vec<(Instruction, Option<(&'static str, &'static str)>)>,
    labels: Vec<(&'static str, usize)>,
}

impl Assembler {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((
            Instruction {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            None,
        ));
    }

    fn jump(&mut self, code: u16, k: u32, if_true: &'static str, if_false: &'static str) {
        self.code.push((
            Instruction {
                code: JMP | code,
                jt: 0,
                jf: 0,
                k,
            },
            Some((if_true, if_false)),
        ));
    }

    fn label(&mut self, name: &'static str) {
        self.labels.push((name, self.code.len()));
    }

    /// Resolves labels into forward offsets. The program is fixed at compile time and covered
    /// by tests, so an unknown or backward label is a programming error caught there.
    fn finish(self) -> Vec<Instruction> {
        let position = |name: &str| {
            self.labels
                .iter()
                .find(|(label, _)| *label == name)
                .map(|(_, at)| *at)
        };
        let mut out = Vec::with_capacity(self.code.len());
        for (index, (mut instruction, labels)) in self.code.iter().copied().enumerate() {
            if let Some((if_true, if_false)) = labels {
                let offset = |name| {
                    position(name)
                        .and_then(|at: usize| at.checked_sub(index + 1))
                        .and_then(|d| u8::try_from(d).ok())
                };
                match (offset(if_true), offset(if_false)) {
                    (Some(jt), Some(jf)) => {
                        instruction.jt = jt;
                        instruction.jf = jf;
                    }
                    // Unreachable with the fixed program above; fail closed (drop everything).
                    _ => {
                        return vec![Instruction {
                            code: RET | K,
                            jt: 0,
                            jf: 0,
                            k: 0,
                        }];
                    }
                }
            }
            out.push(instruction);
        }
        out
    }
}

/// A classic BPF interpreter for the subset [`program`] uses, with the kernel's semantics (a
/// load past the end of the frame drops it). Used by tests and benchmarks to check the program
/// on real frames without a socket; returns the snap length (0 = drop).
pub fn run(program: &[Instruction], frame: &[u8], pkttype: u32) -> u32 {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut memory = [0u32; 16];
    let mut pc = 0usize;
    let load = |offset: u32, size: usize| -> Option<u32> {
        if offset == PKTTYPE && size == 4 {
            return Some(pkttype);
        }
        let start = usize::try_from(offset).ok()?;
        let bytes = frame.get(start..start.checked_add(size)?)?;
        Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
    };
    while let Some(instruction) = program.get(pc) {
        pc += 1;
        let k = instruction.k;
        let class = instruction.code & 0x07;
        let size = match instruction.code & 0x18 {
            H => 2,
            B => 1,
            _ => 4,
        };
        match class {
            LD => {
                let value = match instruction.code & 0xe0 {
                    IMM => Some(k),
                    ABS => load(k, size),
                    IND => load(x.wrapping_add(k), size),
                    MEM => memory.get(k as usize).copied(),
                    _ => None,
                };
                let Some(value) = value else { return 0 };
                a = value;
            }
            LDX => {
                let value = match instruction.code & 0xe0 {
                    IMM => Some(k),
                    MEM => memory.get(k as usize).copied(),
                    MSH => load(k, 1).map(|b| (b & 0x0f) * 4),
                    _ => None,
                };
                let Some(value) = value else { return 0 };
                x = value;
            }
            ST => {
                let Some(slot) = memory.get_mut(k as usize) else {
                    return 0;
                };
                *slot = a;
            }
            ALU => {
                let operand = if instruction.code & X != 0 { x } else { k };
                a = match instruction.code & 0xf0 {
                    ADD => a.wrapping_add(operand),
                    SUB => a.wrapping_sub(operand),
                    AND => a & operand,
                    LSH => a.checked_shl(operand).unwrap_or(0),
                    RSH => a.checked_shr(operand).unwrap_or(0),
                    _ => return 0,
                };
            }
            JMP => {
                let operand = if instruction.code & X != 0 { x } else { k };
                let taken = match instruction.code & 0xf0 {
                    JA => {
                        pc += k as usize;
                        continue;
                    }
                    JEQ => a == operand,
                    JGE => a >= operand,
                    JSET => a & operand != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken {
                    instruction.jt
                } else {
                    instruction.jf
                });
            }
            RET => return k,
            MISC => {
                if instruction.code & 0xf8 == TXA {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests;
