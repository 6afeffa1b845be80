//! What one receive gives: the network-layer bytes of one packet and what
//! the kernel said about it (family, interface, direction, time).

use std::fmt;
use std::time::SystemTime;

/// The most bytes of one packet the sensor keeps. A SIP message over UDP
/// fits in one datagram (64 KiB at most); a longer packet is a TCP
/// segmentation-offload burst, kept truncated and flagged.
pub const FRAME_MAX: usize = 64 * 1024;

/// The packet's network protocol, from `sll_protocol` (the filter only
/// lets IPv4 and IPv6 through; `Other` is for a caller's own filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Ipv6,
    Other(u16),
}

impl EtherType {
    pub fn from_u16(value: u16) -> EtherType {
        match value {
            0x0800 => EtherType::Ipv4,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Other(other),
        }
    }

    pub fn to_u16(self) -> u16 {
        match self {
            EtherType::Ipv4 => 0x0800,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Other(v) => v,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Ipv4 => f.write_str("IPv4"),
            EtherType::Ipv6 => f.write_str("IPv6"),
            EtherType::Other(v) => write!(f, "ethertype {v:#06x}"),
        }
    }
}

/// Which way the packet went through the interface, from `sll_pkttype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received for this host: `PACKET_HOST`, `PACKET_BROADCAST`,
    /// `PACKET_MULTICAST` (an attacker's request).
    Incoming,
    /// Sent by this host: `PACKET_OUTGOING` (the PBX's answer). On
    /// loopback a packet shows up twice: once outgoing, once incoming.
    Outgoing,
    /// Anything else, with the raw `sll_pkttype`: `PACKET_OTHERHOST`
    /// (another host's traffic, only seen in promiscuous mode, which the
    /// sensor never asks for), `PACKET_LOOPBACK`, ...
    Other(u8),
}

impl Direction {
    pub fn from_pkttype(pkttype: u8) -> Direction {
        match pkttype {
            libc::PACKET_HOST | libc::PACKET_BROADCAST | libc::PACKET_MULTICAST => {
                Direction::Incoming
            }
            libc::PACKET_OUTGOING => Direction::Outgoing,
            other => Direction::Other(other),
        }
    }
}

/// One captured packet. `data` starts at the network header (IPv4 or IPv6)
/// and borrows the capture's buffer until the next receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// At most [`FRAME_MAX`] bytes of the packet.
    pub data: &'a [u8],
    /// The packet's length in the kernel, above `data.len()` when the
    /// packet was truncated.
    pub len: usize,
    pub ethertype: EtherType,
    /// The interface it was seen on (useful with [`Interface::Any`](super::Interface::Any)).
    pub ifindex: u32,
    pub direction: Direction,
    /// When the kernel received (or sent) it; the receive time if the
    /// kernel gave no timestamp.
    pub timestamp: SystemTime,
}

impl Frame<'_> {
    /// Whether `data` is only the start of the packet.
    pub fn truncated(&self) -> bool {
        self.len > self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethertypes_round_trip() {
        for v in [0x0800u16, 0x86dd, 0x0806, 0, 0xffff] {
            assert_eq!(EtherType::from_u16(v).to_u16(), v);
        }
        assert_eq!(EtherType::from_u16(0x86dd), EtherType::Ipv6);
        assert_eq!(EtherType::Other(0x806).to_string(), "ethertype 0x0806");
    }

    #[test]
    fn directions() {
        assert_eq!(Direction::from_pkttype(0), Direction::Incoming);
        assert_eq!(Direction::from_pkttype(1), Direction::Incoming);
        assert_eq!(Direction::from_pkttype(2), Direction::Incoming);
        assert_eq!(Direction::from_pkttype(3), Direction::Other(3));
        assert_eq!(Direction::from_pkttype(4), Direction::Outgoing);
        assert_eq!(Direction::from_pkttype(5), Direction::Other(5));
    }

    #[test]
    fn truncation_flag() {
        let data = [0u8; 4];
        let mut f = Frame {
            data: &data,
            len: 4,
            ethertype: EtherType::Ipv4,
            ifindex: 1,
            direction: Direction::Incoming,
            timestamp: SystemTime::UNIX_EPOCH,
        };
        assert!(!f.truncated());
        f.len = 70000;
        assert!(f.truncated());
    }
}
