//! The classic BPF program that keeps only SIP traffic, so the kernel drops
//! everything else before it is ever queued to (or copied for) the sensor.
//!
//! The program is written for an `AF_PACKET` socket of type `SOCK_DGRAM`:
//! offset 0 is the network header, and the link layer is gone. The
//! ethertype is therefore not in the packet; it comes from the ancillary
//! load `SKF_AD_OFF + SKF_AD_PROTOCOL` (the skb's protocol, which the kernel
//! also puts in `sll_protocol`).
//!
//! What it keeps: IPv4 or IPv6 packets whose transport is UDP or TCP and
//! whose source **or** destination port falls in one of the [`PortMatch`]
//! ranges of that transport. Either port, because the PBX's answers (from
//! port 5060 to the attacker's port) tell what the request meant.
//!
//! What it drops, and why:
//! - IPv4 non-first fragments (offset ≠ 0): they carry no transport header,
//!   so the bytes where ports would be are payload. The first fragment
//!   (offset 0, more-fragments set) is kept if its ports match.
//! - IPv6 packets whose next header is not UDP or TCP directly: extension
//!   headers (hop-by-hop, routing, fragment, destination options, ...) are
//!   not walked. A bounded walk in classic BPF costs many instructions per
//!   header for traffic SIP endpoints do not send; fragmented IPv6 SIP
//!   (over UDP, a message bigger than the path MTU) is lost to the sensor.
//! - Packets too short for the fields read: a classic BPF load past the end
//!   of the packet ends the program with "drop", so a truncated header can
//!   never match on bytes that are not there. The program probes the last
//!   byte of the fixed UDP (8) or TCP (20) header before reading a port.
//! - IPv4 headers with a version other than 4 or a header length below 20
//!   bytes, IPv6 headers with a version other than 6; any other ethertype
//!   (ARP, a VLAN tag the driver did not strip, ...).
//!
//! Ranges are sorted and merged per transport before the program is built,
//! and the program is bounded by the kernel's limit ([`MAX_INSTRUCTIONS`]):
//! a port list that would not fit is an error, never a silently shorter
//! filter. Every conditional jump is short by construction (a port test
//! skips over its own inline `ret`); the only long jumps are `ja`, whose
//! offset is 32 bits.

use std::fmt;
use std::str::FromStr;

use libc::sock_filter;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// What an accepting program returns: keep the whole packet (the socket's
/// receive buffer bounds what is copied).
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPV6_HEADER_LEN: u32 = 40;

// Opcodes (linux/bpf_common.h, linux/filter.h). libc exports them as u32;
// an opcode is a u16 in `sock_filter`.
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LD_B_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const LDX_IMM: u16 = (libc::BPF_LDX | libc::BPF_W | libc::BPF_IMM) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const TXA: u16 = (libc::BPF_MISC | libc::BPF_TXA) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// `SKF_AD_OFF + SKF_AD_PROTOCOL` as the unsigned offset of a load.
const AD_PROTOCOL: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32;

/// A transport SIP runs over (TLS and WebSocket are TCP here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn protocol(self) -> u32 {
        match self {
            Transport::Udp => IPPROTO_UDP,
            Transport::Tcp => IPPROTO_TCP,
        }
    }

    /// The fixed part of its header (TCP options come after).
    fn min_header_len(self) -> u32 {
        match self {
            Transport::Udp => 8,
            Transport::Tcp => 20,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// One transport and an inclusive port range: `udp/5060`, `tcp/5060-5061`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortMatch {
    pub transport: Transport,
    pub first: u16,
    pub last: u16,
}

impl PortMatch {
    /// A range; `first` must not be above `last`.
    pub fn new(transport: Transport, first: u16, last: u16) -> Result<PortMatch, PortMatchError> {
        if first > last {
            return Err(PortMatchError::Reversed { first, last });
        }
        Ok(PortMatch {
            transport,
            first,
            last,
        })
    }

    /// A single port.
    pub fn port(transport: Transport, port: u16) -> PortMatch {
        PortMatch {
            transport,
            first: port,
            last: port,
        }
    }
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.transport, self.first)
        } else {
            write!(f, "{}/{}-{}", self.transport, self.first, self.last)
        }
    }
}

/// Why a `transport/port[-port]` text is not a [`PortMatch`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortMatchError {
    #[error("{0:?}: expected transport/port or transport/first-last (udp/5060, tcp/5060-5061)")]
    Syntax(String),
    #[error("{0:?}: unknown transport (udp or tcp)")]
    Transport(String),
    #[error("{0:?}: not a port number (0-65535)")]
    Port(String),
    #[error("port range {first}-{last} is reversed")]
    Reversed { first: u16, last: u16 },
}

impl FromStr for PortMatch {
    type Err = PortMatchError;

    fn from_str(s: &str) -> Result<PortMatch, PortMatchError> {
        let s = s.trim();
        let (transport, ports) = s
            .split_once('/')
            .ok_or_else(|| PortMatchError::Syntax(s.to_string()))?;
        let transport = if transport.eq_ignore_ascii_case("udp") {
            Transport::Udp
        } else if transport.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else {
            return Err(PortMatchError::Transport(transport.to_string()));
        };
        let port = |p: &str| {
            // u16::from_str accepts a leading '+'; a port is digits only.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(PortMatchError::Port(p.to_string()));
            }
            p.parse::<u16>()
                .map_err(|_| PortMatchError::Port(p.to_string()))
        };
        let (first, last) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        PortMatch::new(transport, first, last)
    }
}

/// Why no program was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("no ports to capture")]
    NoPorts,
    #[error(
        "the port list needs a BPF program of {needed} instructions, above the kernel's limit of {max}; merge ranges"
    )]
    TooLong { needed: usize, max: usize },
}

/// The program that drops every packet: attached before the socket is
/// bound, until the real one replaces it.
pub fn drop_all() -> Vec<sock_filter> {
    vec![stmt(RET_K, DROP)]
}

/// The program keeping IPv4/IPv6 UDP/TCP packets with a source or
/// destination port in `ports` (see the module doc for what is dropped).
pub fn program(ports: &[PortMatch]) -> Result<Vec<sock_filter>, FilterError> {
    let sections: Vec<(Transport, Vec<(u16, u16)>)> = [Transport::Udp, Transport::Tcp]
        .into_iter()
        .map(|t| (t, merged(ports, t)))
        .filter(|(_, ranges)| !ranges.is_empty())
        .collect();
    if sections.is_empty() {
        return Err(FilterError::NoPorts);
    }
    let needed = HEADER_LEN
        + sections
            .iter()
            .map(|(_, ranges)| 2 + section_len(ranges))
            .sum::<usize>()
        + 1;
    if needed > MAX_INSTRUCTIONS {
        return Err(FilterError::TooLong {
            needed,
            max: MAX_INSTRUCTIONS,
        });
    }

    let mut a = Asm::default();
    // Ethertype dispatch.
    a.push(stmt(LD_H_ABS, AD_PROTOCOL));
    a.push(jump(JEQ_K, ETH_P_IP, 0, 1));
    a.ja(Label::V4);
    a.push(jump(JEQ_K, ETH_P_IPV6, 0, 1));
    a.ja(Label::V6);
    a.push(stmt(RET_K, DROP));

    // IPv4: version 4, first fragment only, X = header length (>= 20),
    // A = protocol.
    a.bind(Label::V4);
    a.push(stmt(LD_B_ABS, 0));
    a.push(stmt(AND_K, 0xf0));
    a.push(jump(JEQ_K, 0x40, 1, 0));
    a.push(stmt(RET_K, DROP));
    a.push(stmt(LD_H_ABS, 6));
    a.push(jump(JSET_K, 0x1fff, 0, 1));
    a.push(stmt(RET_K, DROP));
    a.push(stmt(LDX_B_MSH, 0));
    a.push(stmt(TXA, 0));
    a.push(jump(JGE_K, 20, 1, 0));
    a.push(stmt(RET_K, DROP));
    a.push(stmt(LD_B_ABS, 9));
    a.ja(Label::Transport);

    // IPv6: version 6, X = 40, A = next header.
    a.bind(Label::V6);
    a.push(stmt(LD_B_ABS, 0));
    a.push(stmt(AND_K, 0xf0));
    a.push(jump(JEQ_K, 0x60, 1, 0));
    a.push(stmt(RET_K, DROP));
    a.push(stmt(LDX_IMM, IPV6_HEADER_LEN));
    a.push(stmt(LD_B_ABS, 6));

    // Transport dispatch: A = protocol, X = offset of the transport header.
    a.bind(Label::Transport);
    debug_assert_eq!(a.code.len(), HEADER_LEN);
    for (transport, _) in &sections {
        a.push(jump(JEQ_K, transport.protocol(), 0, 1));
        a.ja(Label::Section(*transport));
    }
    a.push(stmt(RET_K, DROP));

    for (transport, ranges) in &sections {
        a.bind(Label::Section(*transport));
        // The last byte of the fixed header: a load past the end drops, so
        // a truncated transport header never matches on one port alone.
        a.push(stmt(LD_B_IND, transport.min_header_len() - 1));
        // Source port at X+0, destination port at X+2 (UDP and TCP alike).
        for offset in [0, 2] {
            a.push(stmt(LD_H_IND, offset));
            for &(first, last) in ranges {
                port_test(&mut a, first, last);
            }
        }
        a.push(stmt(RET_K, DROP));
    }
    let code = a.finish();
    debug_assert_eq!(code.len(), needed);
    Ok(code)
}

/// Instructions before the transport dispatch.
const HEADER_LEN: usize = 6 + 13 + 6;

/// One section: the length probe, two loads each followed by every range's
/// test, and a drop.
fn section_len(ranges: &[(u16, u16)]) -> usize {
    let tests: usize = ranges
        .iter()
        .map(|&(first, last)| if first == last { 2 } else { 3 })
        .sum();
    1 + 2 * (1 + tests) + 1
}

/// Accept if `first <= A <= last`, else fall through to the next test.
fn port_test(a: &mut Asm, first: u16, last: u16) {
    if first == last {
        a.push(jump(JEQ_K, first.into(), 0, 1));
    } else {
        a.push(jump(JGE_K, first.into(), 0, 2));
        a.push(jump(JGT_K, last.into(), 1, 0));
    }
    a.push(stmt(RET_K, ACCEPT));
}

/// The ranges of one transport, sorted, overlapping or adjacent ones merged.
fn merged(ports: &[PortMatch], transport: Transport) -> Vec<(u16, u16)> {
    let mut ranges: Vec<(u16, u16)> = ports
        .iter()
        .filter(|p| p.transport == transport)
        .map(|p| (p.first, p.last))
        .collect();
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            Some(prev) if u32::from(first) <= u32::from(prev.1) + 1 => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    V4,
    V6,
    Transport,
    Section(Transport),
}

/// Just enough of an assembler for forward `ja` to labels.
#[derive(Default)]
struct Asm {
    code: Vec<sock_filter>,
    bound: Vec<(Label, usize)>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn push(&mut self, insn: sock_filter) {
        self.code.push(insn);
    }

    fn ja(&mut self, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.code.push(stmt(JA, 0));
    }

    fn bind(&mut self, label: Label) {
        self.bound.push((label, self.code.len()));
    }

    fn finish(mut self) -> Vec<sock_filter> {
        for &(at, to) in &self.fixups {
            let target = self
                .bound
                .iter()
                .find(|(l, _)| *l == to)
                .map(|&(_, i)| i)
                .unwrap_or(at + 1);
            debug_assert!(target > at, "ja must jump forward");
            let offset = target.saturating_sub(at + 1);
            if let Some(insn) = self.code.get_mut(at) {
                insn.k = u32::try_from(offset).unwrap_or(0);
            }
        }
        self.code
    }
}

#[cfg(test)]
#[path = "bpf_tests.rs"]
mod tests;
