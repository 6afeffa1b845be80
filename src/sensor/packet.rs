//! One captured frame -> addresses, ports and the UDP/TCP payload.
//!
//! The sensor only needs who talked to whom and the bytes SIP rides in, so
//! this stops at the transport header and borrows the payload from the
//! frame: nothing is copied, the capture buffer is reused for the next frame.
//! Header parsing is etherparse's (`SlicedPacket`), which checks every length
//! against the slice, skips IPv6 extension headers and trims Ethernet padding
//! by the IP total length. A frame cut short by the snap length is an error
//! ([`DecodeError::Truncated`]), never a shorter payload: a SIP message with
//! its tail missing would otherwise be read as a different message.
//!
//! IP fragments are not reassembled. Every fragment, the first included, is
//! reported as [`DecodeError::Fragment`]: the first one carries only the
//! start of a datagram, and handing it on as the whole UDP payload would
//! misparse it (none of the real captures had any; see the fixtures README).

use std::fmt;
use std::net::IpAddr;

use etherparse::err::packet::SliceError;
use etherparse::err::{Layer, LenError};
use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

/// Link-layer header in front of the IP packet, as pcap names it (DLT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with up to three VLAN (802.1Q / QinQ) tags.
    Ethernet,
    /// Linux cooked capture v1 (`any` interface, 16-byte header).
    LinuxSll,
    /// Linux cooked capture v2 (20-byte header, tcpdump >= 4.99 on `any`).
    LinuxSll2,
    /// Bare IP packet; the version nibble says v4 or v6.
    RawIp,
    /// Bare packet whose protocol is given out of band: what an AF_PACKET
    /// SOCK_DGRAM socket hands over with `sll_protocol`, or pcap's
    /// LINKTYPE_IPV4/IPV6.
    EtherType(u16),
    /// Any other pcap link type: [`decode`] refuses it.
    Other(u32),
}

impl LinkType {
    /// EtherType of IPv4.
    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    /// EtherType of IPv6.
    pub const ETHERTYPE_IPV6: u16 = 0x86DD;

    /// The link type of a pcap/pcapng link-type number.
    pub fn from_dlt(dlt: u32) -> LinkType {
        match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            // LINKTYPE_RAW; 12 and 14 are DLT_RAW values older files carry.
            101 | 12 | 14 => LinkType::RawIp,
            228 => LinkType::EtherType(Self::ETHERTYPE_IPV4),
            229 => LinkType::EtherType(Self::ETHERTYPE_IPV6),
            other => LinkType::Other(other),
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkType::Ethernet => f.write_str("Ethernet"),
            LinkType::LinuxSll => f.write_str("Linux cooked v1"),
            LinkType::LinuxSll2 => f.write_str("Linux cooked v2"),
            LinkType::RawIp => f.write_str("raw IP"),
            LinkType::EtherType(t) => write!(f, "bare packet of ethertype {t:#06x}"),
            LinkType::Other(dlt) => write!(f, "link type {dlt}"),
        }
    }
}

/// The TCP header fields stream reassembly needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    /// Sequence number of the first payload byte (of the SYN, if set).
    pub seq: u32,
    /// Opens the stream: the sequence number is the initial one.
    pub syn: bool,
    /// The sender's last segment.
    pub fin: bool,
    /// The connection is torn down.
    pub rst: bool,
}

/// Which transport carried the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram: the payload is one whole SIP message (or a keepalive).
    Udp,
    /// A piece of a byte stream: see [`crate::sensor::reassembly`].
    Tcp(TcpSegment),
}

/// A decoded UDP or TCP packet; `payload` borrows from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address (the packet's, never a SIP header's).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// UDP, or TCP with its sequence number and flags.
    pub transport: Transport,
    /// UDP payload (trimmed to the UDP length) or TCP segment data.
    pub payload: &'a [u8],
}

/// Why a frame gave no packet. [`DecodeError::is_malformed`] separates
/// broken frames from ones that are fine but not for us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The capture's link type is not one this module knows.
    #[error("unsupported link type: {0}")]
    UnsupportedLink(LinkType),
    /// Not IPv4 or IPv6 (ARP, LLDP, a non-ethertype SLL protocol, ...).
    #[error("not an IP packet")]
    NotIp,
    /// Neither UDP nor TCP (ICMP, ESP, ...); the IP protocol number.
    #[error("IP protocol {0} is neither UDP nor TCP")]
    NotUdpOrTcp(u8),
    /// An IP fragment: only whole datagrams are decoded.
    #[error("IP fragment (not reassembled)")]
    Fragment,
    /// The frame ends before a header or length field says it should
    /// (snap length, or a lying length field).
    #[error("truncated frame: {0}")]
    Truncated(LenError),
    /// A header field is invalid (IP version, header length, ...).
    #[error("malformed frame: {0}")]
    Malformed(SliceError),
}

impl DecodeError {
    /// True for broken frames, false for well-formed ones that simply carry
    /// no UDP/TCP payload this sensor reads (a skip, not an anomaly).
    pub fn is_malformed(&self) -> bool {
        matches!(self, DecodeError::Truncated(_) | DecodeError::Malformed(_))
    }
}

impl From<SliceError> for DecodeError {
    fn from(err: SliceError) -> Self {
        match err {
            SliceError::Len(len) => DecodeError::Truncated(len),
            other => DecodeError::Malformed(other),
        }
    }
}

/// Length of the Linux cooked v2 header (fixed; protocol in its first two
/// bytes, big-endian).
const SLL2_HEADER_LEN: usize = 20;

/// Decodes one frame of the given link type into its UDP or TCP packet.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame)?,
        LinkType::LinuxSll => SlicedPacket::from_linux_sll(frame)?,
        LinkType::LinuxSll2 => {
            let (protocol, rest) = split_sll2(frame)?;
            SlicedPacket::from_ether_type(EtherType(protocol), rest)?
        }
        LinkType::RawIp => SlicedPacket::from_ip(frame)?,
        LinkType::EtherType(ether_type) => {
            SlicedPacket::from_ether_type(EtherType(ether_type), frame)?
        }
        LinkType::Other(_) => return Err(DecodeError::UnsupportedLink(link)),
    };
    from_sliced(&sliced)
}

/// Splits a Linux cooked v2 frame into its protocol and the packet after
/// the header.
fn split_sll2(frame: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let truncated = || {
        DecodeError::Truncated(LenError {
            required_len: SLL2_HEADER_LEN,
            len: frame.len(),
            len_source: etherparse::LenSource::Slice,
            layer: Layer::LinuxSllHeader,
            layer_start_offset: 0,
        })
    };
    let (header, rest) = frame
        .split_at_checked(SLL2_HEADER_LEN)
        .ok_or_else(truncated)?;
    match header {
        [hi, lo, ..] => Ok((u16::from_be_bytes([*hi, *lo]), rest)),
        _ => Err(truncated()),
    }
}

fn from_sliced<'a>(sliced: &SlicedPacket<'a>) -> Result<Packet<'a>, DecodeError> {
    let (src, dst, ip_payload) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
            ip.payload(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
            ip.payload(),
        ),
        Some(NetSlice::Arp(_)) | None => return Err(DecodeError::NotIp),
    };
    if ip_payload.fragmented {
        return Err(DecodeError::Fragment);
    }
    match &sliced.transport {
        Some(TransportSlice::Udp(udp)) => Ok(Packet {
            src,
            dst,
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            transport: Transport::Udp,
            payload: udp.payload(),
        }),
        Some(TransportSlice::Tcp(tcp)) => Ok(Packet {
            src,
            dst,
            src_port: tcp.source_port(),
            dst_port: tcp.destination_port(),
            transport: Transport::Tcp(TcpSegment {
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            }),
            payload: tcp.payload(),
        }),
        _ => Err(DecodeError::NotUdpOrTcp(ip_payload.ip_number.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpNumber, Ipv4Header, LinuxSllPacketType, PacketBuilder, VlanId};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SIP: &[u8] = b"OPTIONS sip:100@203.0.113.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V4_SRC: [u8; 4] = [203, 0, 113, 11];
    const V4_DST: [u8; 4] = [203, 0, 113, 1];

    fn udp_v4_ethernet(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(V4_SRC, V4_DST, 64)
            .udp(5060, 5070)
            .write(&mut out, payload)
            .expect("test frame");
        out
    }

    /// IPv4 header + UDP header + payload, for the bare link types.
    fn udp_v4_ip(payload: &[u8]) -> Vec<u8> {
        let frame = udp_v4_ethernet(payload);
        frame.get(14..).expect("ethernet header").to_vec()
    }

    #[test]
    fn ethernet_ipv4_udp() {
        let frame = udp_v4_ethernet(SIP);
        let packet = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(packet.src, IpAddr::V4(Ipv4Addr::from(V4_SRC)));
        assert_eq!(packet.dst, IpAddr::V4(Ipv4Addr::from(V4_DST)));
        assert_eq!((packet.src_port, packet.dst_port), (5060, 5070));
        assert_eq!(packet.transport, Transport::Udp);
        assert_eq!(packet.payload, SIP);
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        // A short frame padded to Ethernet's 60-byte minimum.
        let mut frame = udp_v4_ethernet(b"\r\n\r\n");
        frame.resize(60, 0);
        let packet = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(packet.payload, b"\r\n\r\n");
    }

    #[test]
    fn vlan_tagged_and_double_tagged() {
        let vlan = VlanId::try_new(42).expect("vlan id");
        let mut single = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(vlan)
            .ipv4(V4_SRC, V4_DST, 64)
            .udp(5060, 5060)
            .write(&mut single, SIP)
            .expect("test frame");
        let mut double = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(vlan, vlan)
            .ipv4(V4_SRC, V4_DST, 64)
            .udp(5060, 5060)
            .write(&mut double, SIP)
            .expect("test frame");
        for frame in [single, double] {
            let packet = decode(LinkType::Ethernet, &frame).expect("decodes");
            assert_eq!(packet.payload, SIP);
        }
    }

    #[test]
    fn ipv6_tcp_with_flags() {
        let src: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 0x14).octets();
        let dst: [u8; 16] = Ipv6Addr::new(0x2001, 0xdb8, 0x113, 0, 0, 0, 0, 1).octets();
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 64)
            .tcp(37196, 5060, 0xFFFF_FFF0, 64)
            .syn()
            .fin()
            .write(&mut frame, SIP)
            .expect("test frame");
        let packet = decode(LinkType::Ethernet, &frame).expect("decodes");
        assert_eq!(packet.src, IpAddr::V6(Ipv6Addr::from(src)));
        assert_eq!(packet.dst, IpAddr::V6(Ipv6Addr::from(dst)));
        assert_eq!(
            packet.transport,
            Transport::Tcp(TcpSegment {
                seq: 0xFFFF_FFF0,
                syn: true,
                fin: true,
                rst: false
            })
        );
        assert_eq!(packet.payload, SIP);
    }

    /// IPv6 + hop-by-hop options header + UDP, by hand (the builder has no
    /// extension headers).
    fn ipv6_hop_by_hop_udp(payload: &[u8]) -> Vec<u8> {
        let udp_len = u16::try_from(8 + payload.len()).expect("small");
        let ip_payload_len = 8 + udp_len;
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&ip_payload_len.to_be_bytes());
        p.extend_from_slice(&[0, 64]); // next header: hop-by-hop; hop limit
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11).octets());
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
        // hop-by-hop: next = UDP, length 0 (8 bytes), PadN of 4 bytes.
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        p.extend_from_slice(&5060u16.to_be_bytes());
        p.extend_from_slice(&5060u16.to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]); // no checksum check here
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ipv6_extension_header_is_skipped() {
        let frame = ipv6_hop_by_hop_udp(SIP);
        let packet = decode(LinkType::RawIp, &frame).expect("decodes");
        assert_eq!(packet.transport, Transport::Udp);
        assert_eq!(packet.payload, SIP);
        let by_type = decode(LinkType::EtherType(LinkType::ETHERTYPE_IPV6), &frame);
        assert_eq!(by_type.expect("decodes").payload, SIP);
    }

    #[test]
    fn raw_ip_and_bare_ethertype() {
        let ip = udp_v4_ip(SIP);
        assert_eq!(decode(LinkType::RawIp, &ip).expect("raw").payload, SIP);
        let v4 = LinkType::EtherType(LinkType::ETHERTYPE_IPV4);
        assert_eq!(decode(v4, &ip).expect("ethertype").payload, SIP);
        // An IPv4 packet announced as IPv6 is refused, not misread.
        let v6 = LinkType::EtherType(LinkType::ETHERTYPE_IPV6);
        assert!(
            decode(v6, &ip)
                .expect_err("version mismatch")
                .is_malformed()
        );
        // ARP's ethertype is no IP.
        assert_eq!(
            decode(LinkType::EtherType(0x0806), &ip),
            Err(DecodeError::NotIp)
        );
    }

    #[test]
    fn linux_cooked_v1_and_v2() {
        let mut sll = Vec::new();
        PacketBuilder::linux_sll(LinuxSllPacketType::HOST, 6, [2, 0, 0, 0, 0, 1, 0, 0])
            .ipv4(V4_SRC, V4_DST, 64)
            .udp(5060, 5060)
            .write(&mut sll, SIP)
            .expect("test frame");
        assert_eq!(decode(LinkType::LinuxSll, &sll).expect("sll").payload, SIP);

        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6];
        sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
        sll2.extend_from_slice(&udp_v4_ip(SIP));
        assert_eq!(
            decode(LinkType::LinuxSll2, &sll2).expect("sll2").payload,
            SIP
        );
        for cut in 0..SLL2_HEADER_LEN {
            let short = sll2.get(..cut).expect("prefix");
            assert!(matches!(
                decode(LinkType::LinuxSll2, short),
                Err(DecodeError::Truncated(_))
            ));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let frames = [
            (LinkType::Ethernet, udp_v4_ethernet(SIP)),
            (LinkType::RawIp, ipv6_hop_by_hop_udp(SIP)),
        ];
        for (link, frame) in frames {
            for cut in 0..frame.len() {
                let short = frame.get(..cut).expect("prefix");
                let err = decode(link, short).expect_err("truncated frame must not decode");
                assert!(matches!(err, DecodeError::Truncated(_)), "cut {cut}: {err}");
            }
        }
    }

    fn ipv4_fragment(more_fragments: bool, offset_units: u16) -> Vec<u8> {
        let udp = udp_v4_ip(SIP);
        let l4 = udp.get(20..).expect("ipv4 header");
        let len = u16::try_from(l4.len()).expect("small");
        let mut header = Ipv4Header::new(len, 64, IpNumber::UDP, V4_SRC, V4_DST).expect("header");
        header.more_fragments = more_fragments;
        header.fragment_offset = etherparse::IpFragOffset::try_new(offset_units).expect("offset");
        header.header_checksum = header.calc_header_checksum();
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(l4);
        out
    }

    #[test]
    fn fragments_are_reported_not_misparsed() {
        for (more, offset) in [(true, 0), (true, 10), (false, 10)] {
            let frame = ipv4_fragment(more, offset);
            let err = decode(LinkType::RawIp, &frame).expect_err("fragment");
            assert_eq!(err, DecodeError::Fragment);
            assert!(!err.is_malformed());
        }
        // Offset 0 without more-fragments is a whole datagram.
        assert!(decode(LinkType::RawIp, &ipv4_fragment(false, 0)).is_ok());
    }

    #[test]
    fn other_protocols_and_links_are_skips() {
        let mut icmp = Vec::new();
        PacketBuilder::ipv4(V4_SRC, V4_DST, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .expect("test frame");
        let err = decode(LinkType::RawIp, &icmp).expect_err("icmp");
        assert_eq!(err, DecodeError::NotUdpOrTcp(1));
        assert!(!err.is_malformed());
        let err = decode(LinkType::from_dlt(147), &icmp).expect_err("dlt 147");
        assert_eq!(err, DecodeError::UnsupportedLink(LinkType::Other(147)));
    }

    #[test]
    fn dlt_numbers() {
        assert_eq!(LinkType::from_dlt(1), LinkType::Ethernet);
        assert_eq!(LinkType::from_dlt(113), LinkType::LinuxSll);
        assert_eq!(LinkType::from_dlt(276), LinkType::LinuxSll2);
        assert_eq!(LinkType::from_dlt(101), LinkType::RawIp);
        assert_eq!(LinkType::from_dlt(229), LinkType::EtherType(0x86DD));
    }

    fn any_link() -> impl Strategy<Value = LinkType> {
        prop_oneof![
            Just(LinkType::Ethernet),
            Just(LinkType::LinuxSll),
            Just(LinkType::LinuxSll2),
            Just(LinkType::RawIp),
            any::<u16>().prop_map(LinkType::EtherType),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(link in any_link(), frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(link, &frame);
        }

        #[test]
        fn mutated_frames_never_panic(index in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut frame = udp_v4_ethernet(SIP);
            if let Some(b) = frame.get_mut(index % 100) {
                *b = byte;
            }
            frame.truncate(cut.max(1) + 40);
            if let Ok(packet) = decode(LinkType::Ethernet, &frame) {
                prop_assert!(packet.payload.len() <= frame.len());
            }
        }
    }
}
