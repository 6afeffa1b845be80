//! Permanent deny entries (addresses and CIDR networks from the deny list),
//! as every backend enforces them: normalised, split by family and freed of
//! overlaps, and compared with what the kernel holds by the addresses they
//! cover, not by their spelling.
//!
//! Overlaps are removed here, before any backend sees the list: a network
//! inside another one (`192.0.2.7/32` inside `192.0.2.0/24`) adds nothing,
//! and nftables interval sets reject overlapping elements ("conflicting
//! intervals specified") unless the set has `auto-merge`, which would also
//! merge neighbours and make the kernel's listing differ from the list.
//! Adjacent networks are kept as they are (`/25` + `/25` stay two entries).

pub use crate::cidr::normalize;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A deny list ready for the kernel: per family, host bits cleared, sorted
/// by address, without duplicates and without networks covered by another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    v4: Vec<IpNet>,
    v6: Vec<IpNet>,
}

impl DenyList {
    pub fn new(nets: &[IpNet]) -> DenyList {
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = nets
            .iter()
            .map(|n| normalize(*n))
            .partition(|n| n.addr().is_ipv4());
        DenyList {
            v4: prune(v4),
            v6: prune(v6),
        }
    }

    /// The entries of one family.
    pub fn family(&self, v6: bool) -> &[IpNet] {
        if v6 { &self.v6 } else { &self.v4 }
    }

    /// Every entry, IPv4 first.
    pub fn nets(&self) -> Vec<IpNet> {
        self.v4.iter().chain(&self.v6).copied().collect()
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether `kernel` (entries of one family as the kernel lists them)
    /// covers exactly the addresses this list denies in that family.
    pub fn matches(&self, v6: bool, kernel: &[IpNet]) -> bool {
        let spans: Vec<(IpAddr, IpAddr)> = kernel
            .iter()
            .map(|n| (n.network(), n.broadcast()))
            .collect();
        self.matches_spans(v6, &spans)
    }

    /// As [`DenyList::matches`], for inclusive address ranges (nftables
    /// lists interval elements as prefixes, ranges or single addresses).
    pub fn matches_spans(&self, v6: bool, kernel: &[(IpAddr, IpAddr)]) -> bool {
        if kernel
            .iter()
            .any(|(a, b)| a.is_ipv6() != v6 || b.is_ipv6() != v6)
        {
            return false;
        }
        coverage(self.family(v6).iter().map(range))
            == coverage(kernel.iter().map(|(a, b)| (number(*a), number(*b))))
    }
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// First and last address of a network, as numbers.
fn range(net: &IpNet) -> (u128, u128) {
    (number(net.network()), number(net.broadcast()))
}

/// Sorted, without duplicates and without networks inside another. CIDR
/// networks either nest or are disjoint, so after sorting by first address
/// (the larger network first on a tie), a covered network is always
/// covered by the last one kept.
fn prune(mut nets: Vec<IpNet>) -> Vec<IpNet> {
    nets.sort_by_key(|n| (range(n).0, n.prefix_len()));
    let mut kept: Vec<IpNet> = Vec::with_capacity(nets.len());
    for net in nets {
        let (start, end) = range(&net);
        if let Some(last) = kept.last() {
            let (ls, le) = range(last);
            if ls <= start && end <= le {
                continue;
            }
        }
        kept.push(net);
    }
    kept
}

/// The addresses covered, as sorted disjoint ranges with neighbours merged.
fn coverage(ranges: impl Iterator<Item = (u128, u128)>) -> Vec<(u128, u128)> {
    let mut all: Vec<(u128, u128)> = ranges.collect();
    all.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(all.len());
    for (start, end) in all {
        if let Some(last) = out.last_mut()
            && start <= last.1.saturating_add(1)
        {
            last.1 = last.1.max(end);
            continue;
        }
        out.push((start, end));
    }
    out
}

/// `192.0.2.0/24` or a bare address (a single host).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// The address or network as the tools print it: a single host without
/// its prefix length.
pub fn text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// `0.0.0.0/0` and `::/0` as two halves: ipset's `hash:net` takes prefix
/// lengths from 1 only.
pub fn without_zero_prefix(nets: &[IpNet]) -> Vec<IpNet> {
    let mut out = Vec::with_capacity(nets.len());
    for net in nets {
        match net {
            IpNet::V4(n) if n.prefix_len() == 0 => {
                for a in [Ipv4Addr::new(0, 0, 0, 0), Ipv4Addr::new(128, 0, 0, 0)] {
                    out.push(IpNet::V4(Ipv4Net::new(a, 1).expect("a /1")));
                }
            }
            IpNet::V6(n) if n.prefix_len() == 0 => {
                for a in [
                    Ipv6Addr::UNSPECIFIED,
                    Ipv6Addr::new(0x8000, 0, 0, 0, 0, 0, 0, 0),
                ] {
                    out.push(IpNet::V6(Ipv6Net::new(a, 1).expect("a /1")));
                }
            }
            other => out.push(*other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| net(s)).collect()
    }

    #[test]
    fn normalised_sorted_and_without_overlaps() {
        let list = DenyList::new(&nets(&[
            "198.51.100.9",
            "203.0.113.77/24",
            "203.0.113.5/32",
            "198.51.100.9/32",
            "2001:db8:1::1",
            "2001:db8::/32",
            "2001:db8:5::/48",
            "::ffff:192.0.2.0/120",
            "10.0.0.0/25",
            "10.0.0.128/25",
        ]));
        assert_eq!(
            list.family(false),
            nets(&[
                "10.0.0.0/25",
                "10.0.0.128/25",
                "192.0.2.0/24",
                "198.51.100.9/32",
                "203.0.113.0/24"
            ])
            .as_slice()
        );
        assert_eq!(list.family(true), nets(&["2001:db8::/32"]).as_slice());
        assert_eq!(list.len(), 6);
        assert!(DenyList::new(&[]).is_empty());
    }

    #[test]
    fn a_larger_network_later_in_the_list_still_wins() {
        let list = DenyList::new(&nets(&[
            "10.1.2.3",
            "10.1.2.0/24",
            "10.0.0.0/8",
            "11.0.0.1",
        ]));
        assert_eq!(list.nets(), nets(&["10.0.0.0/8", "11.0.0.1/32"]));
    }

    #[test]
    fn kernel_listings_compare_by_coverage() {
        let list = DenyList::new(&nets(&["10.0.0.0/25", "10.0.0.128/25", "0.0.0.0/0"]));
        assert!(list.matches(false, &nets(&["0.0.0.0/1", "128.0.0.0/1"])));
        assert!(list.matches(false, &without_zero_prefix(list.family(false))));
        assert!(!list.matches(false, &nets(&["0.0.0.0/1"])));
        let list = DenyList::new(&nets(&["10.0.0.0/25", "10.0.0.128/25"]));
        assert!(list.matches(false, &nets(&["10.0.0.0/24"])));
        assert!(!list.matches(false, &nets(&["10.0.0.0/24", "10.0.1.1"])));
        assert!(!list.matches(false, &nets(&["2001:db8::/32"])));
        assert!(list.matches(true, &[]));
        assert!(!list.matches(true, &nets(&["2001:db8::1"])));
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(list.matches_spans(false, &[(a("10.0.0.0"), a("10.0.0.255"))]));
        assert!(!list.matches_spans(false, &[(a("10.0.0.0"), a("10.0.0.254"))]));
    }

    #[test]
    fn text_as_the_tools_print_it() {
        assert_eq!(text(&net("192.0.2.1")), "192.0.2.1");
        assert_eq!(text(&net("192.0.2.0/24")), "192.0.2.0/24");
        assert_eq!(text(&net("2001:db8::/48")), "2001:db8::/48");
        assert_eq!(
            without_zero_prefix(&nets(&["::/0"])),
            nets(&["::/1", "8000::/1"])
        );
    }
}
