//! The program run by a small classic BPF interpreter (the kernel's
//! semantics for the instructions it uses: a load past the end of the
//! packet drops) against hand-built packets, a reference model, arbitrary
//! bytes and the packets of two real captures.

use super::*;
use proptest::prelude::*;

const ETH_IP: u16 = 0x0800;
const ETH_IP6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;

// ---------------------------------------------------------------------------
// Interpreter
// ---------------------------------------------------------------------------

/// What the kernel's checker (`bpf_check_classic`) would refuse, for the
/// instructions this module emits.
fn check(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSTRUCTIONS {
        return Err(format!("length {}", prog.len()));
    }
    for (pc, insn) in prog.iter().enumerate() {
        let rest = prog.len() - pc - 1;
        match insn.code {
            JA => {
                if insn.k as usize >= rest {
                    return Err(format!("{pc}: ja out of the program"));
                }
            }
            JEQ_K | JGT_K | JGE_K | JSET_K => {
                if usize::from(insn.jt) >= rest || usize::from(insn.jf) >= rest {
                    return Err(format!("{pc}: jump out of the program"));
                }
            }
            LD_H_ABS | LD_B_ABS | LD_H_IND | LD_B_IND | LDX_B_MSH | LDX_IMM | AND_K | TXA
            | RET_K => {}
            other => return Err(format!("{pc}: unexpected opcode {other:#x}")),
        }
    }
    match prog.last() {
        Some(l) if l.code == RET_K => Ok(()),
        _ => Err("does not end with ret".into()),
    }
}

fn load(pkt: &[u8], offset: u32, size: usize) -> Option<u32> {
    let start = usize::try_from(offset).ok()?;
    let bytes = pkt.get(start..start.checked_add(size)?)?;
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// Runs `prog` on a packet whose skb protocol is `ethertype`; returns what
/// the program returns (0 = drop).
fn run(prog: &[sock_filter], ethertype: u16, pkt: &[u8]) -> u32 {
    check(prog).expect("a program the kernel accepts");
    let (mut a, mut x) = (0u32, 0u32);
    let mut pc = 0usize;
    // Forward jumps only, so at most one step per instruction.
    for _ in 0..=prog.len() {
        let insn = prog[pc];
        pc += 1;
        let loaded = match insn.code {
            LD_H_ABS if insn.k == AD_PROTOCOL => Some(u32::from(ethertype)),
            LD_H_ABS => load(pkt, insn.k, 2),
            LD_B_ABS => load(pkt, insn.k, 1),
            LD_H_IND => load(pkt, x.wrapping_add(insn.k), 2),
            LD_B_IND => load(pkt, x.wrapping_add(insn.k), 1),
            LDX_B_MSH => match load(pkt, insn.k, 1) {
                Some(b) => {
                    x = 4 * (b & 0xf);
                    continue;
                }
                None => return 0,
            },
            LDX_IMM => {
                x = insn.k;
                continue;
            }
            AND_K => {
                a &= insn.k;
                continue;
            }
            TXA => {
                a = x;
                continue;
            }
            JA => {
                pc += insn.k as usize;
                continue;
            }
            JEQ_K | JGT_K | JGE_K | JSET_K => {
                let taken = match insn.code {
                    JEQ_K => a == insn.k,
                    JGT_K => a > insn.k,
                    JGE_K => a >= insn.k,
                    _ => a & insn.k != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
                continue;
            }
            RET_K => return insn.k,
            other => panic!("opcode {other:#x}"),
        };
        match loaded {
            Some(v) => a = v,
            None => return 0,
        }
    }
    panic!("program did not return");
}

fn keeps(prog: &[sock_filter], ethertype: u16, pkt: &[u8]) -> bool {
    match run(prog, ethertype, pkt) {
        0 => false,
        ACCEPT => true,
        other => panic!("unexpected return value {other}"),
    }
}

// ---------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------

const UDP: u8 = 17;
const TCP: u8 = 6;

fn transport(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    if proto == TCP {
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        let len = u16::try_from(8 + payload.len()).unwrap();
        l4.extend_from_slice(&len.to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
    }
    l4.extend_from_slice(payload);
    l4
}

/// IPv4 with `options` words of IP options and the flags/fragment field.
fn ipv4_with(proto: u8, sport: u16, dport: u16, options: u8, frag: u16) -> Vec<u8> {
    let l4 = transport(proto, sport, dport, b"OPTIONS sip:100@x SIP/2.0\r\n");
    let hlen = 20 + 4 * usize::from(options);
    let total = u16::try_from(hlen + l4.len()).unwrap();
    let mut p = vec![0x45 + options, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0, 203, 0, 113, 11, 203, 0, 113, 1]);
    p.extend(std::iter::repeat_n(1u8, 4 * usize::from(options)));
    p.extend_from_slice(&l4);
    p
}

fn ipv4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    ipv4_with(proto, sport, dport, 0, 0x4000)
}

fn ipv6_next(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11]);
    p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(l4);
    p
}

fn ipv6(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    ipv6_next(
        proto,
        &transport(proto, sport, dport, b"REGISTER sip:x SIP/2.0\r\n"),
    )
}

fn ports(list: &[&str]) -> Vec<sock_filter> {
    let list: Vec<PortMatch> = list.iter().map(|s| s.parse().unwrap()).collect();
    program(&list).unwrap()
}

// ---------------------------------------------------------------------------
// Hand-built packets
// ---------------------------------------------------------------------------

#[test]
fn either_port_matches_on_both_families() {
    let p = ports(&["udp/5060", "tcp/5060-5061"]);
    for (eth, build) in [
        (ETH_IP, ipv4 as fn(u8, u16, u16) -> Vec<u8>),
        (ETH_IP6, ipv6 as fn(u8, u16, u16) -> Vec<u8>),
    ] {
        // Requests to the PBX and its answers.
        assert!(keeps(&p, eth, &build(UDP, 40000, 5060)));
        assert!(keeps(&p, eth, &build(UDP, 5060, 40000)));
        assert!(keeps(&p, eth, &build(UDP, 5060, 5060)));
        assert!(keeps(&p, eth, &build(TCP, 40000, 5060)));
        assert!(keeps(&p, eth, &build(TCP, 5061, 40000)));
        // Other ports, and the range is per transport.
        assert!(!keeps(&p, eth, &build(UDP, 40000, 9999)));
        assert!(!keeps(&p, eth, &build(UDP, 40000, 5061)));
        assert!(!keeps(&p, eth, &build(UDP, 5059, 5062)));
        assert!(!keeps(&p, eth, &build(TCP, 5059, 5062)));
        assert!(!keeps(&p, eth, &build(TCP, 5062, 40000)));
    }
}

#[test]
fn only_the_listed_transports() {
    let p = ports(&["udp/5060"]);
    assert!(keeps(&p, ETH_IP, &ipv4(UDP, 1, 5060)));
    assert!(!keeps(&p, ETH_IP, &ipv4(TCP, 1, 5060)));
    assert!(!keeps(&p, ETH_IP6, &ipv6(TCP, 5060, 1)));
    // SCTP and ICMP (an ICMP error quotes a UDP header: still not kept).
    assert!(!keeps(&p, ETH_IP, &ipv4(132, 5060, 5060)));
    let mut icmp = ipv4(1, 0, 0);
    icmp.extend_from_slice(&ipv4(UDP, 1, 5060));
    assert!(!keeps(&p, ETH_IP, &icmp));
    let p = ports(&["tcp/5061"]);
    assert!(keeps(&p, ETH_IP, &ipv4(TCP, 5061, 1)));
    assert!(!keeps(&p, ETH_IP, &ipv4(UDP, 5061, 1)));
}

#[test]
fn ipv4_options_move_the_ports() {
    let p = ports(&["udp/5060"]);
    for options in [1, 5, 10] {
        assert!(keeps(&p, ETH_IP, &ipv4_with(UDP, 1, 5060, options, 0)));
        assert!(!keeps(&p, ETH_IP, &ipv4_with(UDP, 1, 9999, options, 0)));
    }
    // Options whose bytes read as port 5060 where a 20-byte header would
    // put the ports are not ports.
    let mut p4 = ipv4_with(UDP, 1, 9999, 1, 0);
    p4[20..24].copy_from_slice(&[0x13, 0xc4, 0x13, 0xc4]);
    assert!(!keeps(&p, ETH_IP, &p4));
}

#[test]
fn ipv4_fragments_keep_only_the_first() {
    let p = ports(&["udp/5060"]);
    // First fragment (more fragments, offset 0): has the UDP header.
    assert!(keeps(&p, ETH_IP, &ipv4_with(UDP, 1, 5060, 0, 0x2000)));
    // A later fragment whose payload happens to look like port 5060.
    for frag in [0x2001, 0x0001, 0x00b9, 0x1fff, 0x3fff] {
        assert!(
            !keeps(&p, ETH_IP, &ipv4_with(UDP, 5060, 5060, 0, frag)),
            "{frag:#x}"
        );
    }
    // The DF flag alone is no fragment.
    assert!(keeps(&p, ETH_IP, &ipv4_with(UDP, 1, 5060, 0, 0x4000)));
}

#[test]
fn ipv6_extension_headers_are_dropped() {
    let p = ports(&["udp/5060", "tcp/5060"]);
    let udp = transport(UDP, 1, 5060, b"x");
    // Hop-by-hop, routing, fragment, destination options, ESP, no next.
    for next in [0, 43, 44, 60, 50, 59] {
        let mut ext = vec![UDP, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&udp);
        assert!(!keeps(&p, ETH_IP6, &ipv6_next(next, &ext)), "{next}");
    }
    assert!(keeps(&p, ETH_IP6, &ipv6_next(UDP, &udp)));
}

#[test]
fn wrong_versions_and_header_lengths_are_dropped() {
    let p = ports(&["udp/5060"]);
    // An IPv6 packet under the IPv4 ethertype and the other way round.
    assert!(!keeps(&p, ETH_IP, &ipv6(UDP, 1, 5060)));
    assert!(!keeps(&p, ETH_IP6, &ipv4(UDP, 1, 5060)));
    // IHL below 5.
    for ihl in 0..5u8 {
        let mut p4 = ipv4(UDP, 1, 5060);
        p4[0] = 0x40 | ihl;
        assert!(!keeps(&p, ETH_IP, &p4), "ihl {ihl}");
    }
    // Other ethertypes, whatever the bytes.
    for eth in [ETH_ARP, 0x8100, 0x88a8, 0, 0xffff] {
        assert!(!keeps(&p, eth, &ipv4(UDP, 1, 5060)), "{eth:#x}");
    }
}

#[test]
fn truncated_packets_are_dropped() {
    let p = ports(&["udp/5060", "tcp/5060"]);
    for (eth, full, fixed) in [
        (ETH_IP, ipv4(UDP, 5060, 5060), 20 + 8),
        (ETH_IP, ipv4(TCP, 5060, 5060), 20 + 20),
        (ETH_IP6, ipv6(UDP, 5060, 5060), 40 + 8),
        (ETH_IP6, ipv6(TCP, 5060, 5060), 40 + 20),
    ] {
        assert!(keeps(&p, eth, &full[..fixed]));
        // Every shorter prefix, including one with both ports present but
        // the rest of the header missing.
        for len in 0..fixed {
            assert!(!keeps(&p, eth, &full[..len]), "{eth:#x} {len} bytes");
        }
    }
    // An IPv4 header length pointing past the packet.
    let mut p4 = ipv4(UDP, 5060, 5060);
    p4[0] = 0x4f;
    p4.truncate(60);
    assert!(!keeps(&p, ETH_IP, &p4));
}

// ---------------------------------------------------------------------------
// The program itself
// ---------------------------------------------------------------------------

#[test]
fn ranges_are_inclusive_and_merged() {
    let p = ports(&["udp/5000-5010", "udp/5011", "udp/5005-5008", "udp/7000"]);
    for port in [5000, 5005, 5010, 5011, 7000] {
        assert!(keeps(&p, ETH_IP, &ipv4(UDP, 1, port)), "{port}");
    }
    for port in [4999, 5012, 6999, 7001, 0, 65535] {
        assert!(!keeps(&p, ETH_IP, &ipv4(UDP, 1, port)), "{port}");
    }
    // Merged to 5000-5011 and 7000: one range test and one port test.
    let one = ports(&["udp/5000-5011", "udp/7000"]);
    assert_eq!(p.len(), one.len());
    assert_eq!(merged(&[], Transport::Udp), vec![]);
    let all = [
        PortMatch::new(Transport::Tcp, 0, 65535).unwrap(),
        PortMatch::port(Transport::Tcp, 65535),
    ];
    assert_eq!(merged(&all, Transport::Tcp), vec![(0, 65535)]);
}

#[test]
fn program_length_is_bounded() {
    assert_eq!(program(&[]), Err(FilterError::NoPorts));
    let every_other = |n: u16| -> Vec<PortMatch> {
        (0..n)
            .map(|i| PortMatch::port(Transport::Udp, 10000 + 2 * i))
            .collect()
    };
    // 25 + 2 + (1 + 2 * (1 + 2n) + 1) + 1 = 32 + 4n instructions.
    let fits = every_other(1016);
    let p = program(&fits).unwrap();
    assert_eq!(p.len(), 4096);
    assert!(keeps(&p, ETH_IP, &ipv4(UDP, 1, 10000 + 2 * 1015)));
    assert!(!keeps(&p, ETH_IP, &ipv4(UDP, 1, 10001)));
    assert_eq!(
        program(&every_other(1017)),
        Err(FilterError::TooLong {
            needed: 4100,
            max: 4096
        })
    );
    // The same count of ports, adjacent, is one range.
    let adjacent: Vec<PortMatch> = (0..5000)
        .map(|i| PortMatch::port(Transport::Tcp, 10000 + i))
        .collect();
    assert!(program(&adjacent).unwrap().len() < 50);
}

#[test]
fn drop_all_drops() {
    let p = drop_all();
    assert_eq!(run(&p, ETH_IP, &ipv4(UDP, 5060, 5060)), 0);
    assert_eq!(run(&p, ETH_IP6, &[]), 0);
}

#[test]
fn port_matches_parse_and_print() {
    let m: PortMatch = "udp/5060".parse().unwrap();
    assert_eq!(m, PortMatch::port(Transport::Udp, 5060));
    assert_eq!(m.to_string(), "udp/5060");
    let m: PortMatch = " TCP/5060-5061 ".parse().unwrap();
    assert_eq!(m, PortMatch::new(Transport::Tcp, 5060, 5061).unwrap());
    assert_eq!(m.to_string(), "tcp/5060-5061");
    for bad in [
        "",
        "5060",
        "udp",
        "udp/",
        "sctp/5060",
        "udp/65536",
        "udp/+5060",
        "udp/-1",
        "udp/1-",
        "udp/5061-5060",
        "udp/5060 5061",
        "udp/5060-5061-5062",
        "/5060",
    ] {
        assert!(bad.parse::<PortMatch>().is_err(), "{bad:?}");
    }
    assert_eq!(
        "udp/5061-5060".parse::<PortMatch>(),
        Err(PortMatchError::Reversed {
            first: 5061,
            last: 5060
        })
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// What the program should decide, written plainly.
fn model(list: &[PortMatch], ethertype: u16, pkt: &[u8]) -> bool {
    let (proto, l4) = match ethertype {
        ETH_IP => {
            let (Some(&vihl), Some(&proto), Some(frag)) = (pkt.first(), pkt.get(9), pkt.get(6..8))
            else {
                return false;
            };
            let ihl = usize::from(vihl & 0xf) * 4;
            let frag = u16::from_be_bytes([frag[0], frag[1]]);
            if vihl >> 4 != 4 || ihl < 20 || frag & 0x1fff != 0 {
                return false;
            }
            (proto, pkt.get(ihl..))
        }
        ETH_IP6 => match (pkt.first(), pkt.get(6)) {
            (Some(&v), Some(&next)) if v >> 4 == 6 => (next, pkt.get(40..)),
            _ => return false,
        },
        _ => return false,
    };
    let (transport, fixed) = match proto {
        UDP => (Transport::Udp, 8),
        TCP => (Transport::Tcp, 20),
        _ => return false,
    };
    let Some(l4) = l4.filter(|l4| l4.len() >= fixed) else {
        return false;
    };
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    list.iter().any(|m| {
        m.transport == transport
            && ((m.first..=m.last).contains(&sport) || (m.first..=m.last).contains(&dport))
    })
}

fn arb_match() -> impl Strategy<Value = PortMatch> {
    (any::<bool>(), 5050u16..5080, 0u16..6).prop_map(|(udp, first, width)| PortMatch {
        transport: if udp { Transport::Udp } else { Transport::Tcp },
        first,
        last: first + width,
    })
}

/// Mostly well-formed packets around the interesting ports, then damaged.
fn arb_packet() -> impl Strategy<Value = (u16, Vec<u8>)> {
    (
        any::<bool>(),
        prop_oneof![Just(UDP), Just(TCP), Just(1u8), Just(44u8)],
        5040u16..5090,
        5040u16..5090,
        0u8..3,
        prop_oneof![Just(0u16), Just(0x4000), Just(0x2000), any::<u16>()],
        any::<Option<(usize, u8)>>(),
        any::<Option<usize>>(),
    )
        .prop_map(|(v4, proto, sp, dp, opts, frag, flip, cut)| {
            let (eth, mut p) = if v4 {
                (ETH_IP, ipv4_with(proto, sp, dp, opts, frag))
            } else {
                (ETH_IP6, ipv6(proto, sp, dp))
            };
            if let Some((i, b)) = flip {
                let i = i % p.len();
                p[i] = b;
            }
            if let Some(cut) = cut {
                p.truncate(cut % (p.len() + 1));
            }
            (eth, p)
        })
}

proptest! {
    #[test]
    fn program_agrees_with_the_model(
        list in prop::collection::vec(arb_match(), 1..6),
        (eth, pkt) in arb_packet(),
    ) {
        let p = program(&list).unwrap();
        prop_assert_eq!(keeps(&p, eth, &pkt), model(&list, eth, &pkt));
    }

    #[test]
    fn arbitrary_bytes_only_drop_or_keep(
        list in prop::collection::vec(arb_match(), 1..6),
        eth in prop_oneof![Just(ETH_IP), Just(ETH_IP6), any::<u16>()],
        pkt in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let p = program(&list).unwrap();
        prop_assert_eq!(keeps(&p, eth, &pkt), model(&list, eth, &pkt));
    }

    #[test]
    fn any_port_list_is_a_valid_program_or_too_long(
        list in prop::collection::vec(
            (any::<bool>(), any::<u16>(), any::<u16>()).prop_map(|(udp, a, b)| PortMatch {
                transport: if udp { Transport::Udp } else { Transport::Tcp },
                first: a.min(b),
                last: a.max(b),
            }),
            0..1500,
        ),
    ) {
        match program(&list) {
            Ok(p) => prop_assert!(check(&p).is_ok()),
            Err(FilterError::NoPorts) => prop_assert!(list.is_empty()),
            Err(FilterError::TooLong { needed, max }) => prop_assert!(needed > max),
        }
    }
}

// ---------------------------------------------------------------------------
// Real captures (tcpdump on the PBX's bridge, Ethernet link type)
// ---------------------------------------------------------------------------

/// (ethertype, network-layer bytes) of each packet of a little-endian
/// classic pcap with Ethernet frames.
fn pcap_packets(pcap: &[u8]) -> Vec<(u16, Vec<u8>)> {
    assert_eq!(pcap.get(..4), Some(&[0xd4, 0xc3, 0xb2, 0xa1][..]));
    let mut out = Vec::new();
    let mut rest = pcap.get(24..).unwrap();
    while let Some(header) = rest.get(..16) {
        let incl = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
        let frame = rest.get(16..16 + incl).expect("whole record");
        rest = &rest[16 + incl..];
        let eth = u16::from_be_bytes([frame[12], frame[13]]);
        out.push((eth, frame[14..].to_vec()));
    }
    out
}

#[test]
fn real_sip_packets_are_kept() {
    let svmap = pcap_packets(include_bytes!("testdata/s1-svmap.pcap"));
    let tcp = pcap_packets(include_bytes!("testdata/s8-tcp.pcap"));
    assert_eq!((svmap.len(), tcp.len()), (6, 138));
    let sip = ports(&["udp/5060", "udp/5070", "tcp/5060-5061"]);
    for (eth, pkt) in svmap.iter().chain(&tcp) {
        assert!(keeps(&sip, *eth, pkt));
    }
    // svmap's v4 and v6 UDP, both directions, and nothing of it over TCP.
    let udp = ports(&["udp/5060"]);
    assert!(svmap.iter().all(|(e, p)| keeps(&udp, *e, p)));
    assert!(svmap.iter().any(|(e, _)| *e == ETH_IP6));
    assert!(!tcp.iter().any(|(e, p)| keeps(&udp, *e, p)));
    // Only the chan_sip exchange (to and from 5070).
    let chan_sip = ports(&["udp/5070"]);
    let kept = svmap
        .iter()
        .filter(|(e, p)| keeps(&chan_sip, *e, p))
        .count();
    assert_eq!(kept, 2);
    // Every segment of the TCP sessions, v4 and v6.
    let t = ports(&["tcp/5060"]);
    let v6 = tcp
        .iter()
        .filter(|(e, p)| *e == ETH_IP6 && keeps(&t, *e, p))
        .count();
    assert_eq!(v6, 39);
    assert!(tcp.iter().all(|(e, p)| keeps(&t, *e, p)));
}
