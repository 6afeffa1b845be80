//! Network arithmetic shared by the lists and the firewall: one spelling
//! per network ([`normalize`]), and "the allow list wins in the kernel"
//! ([`subtract`]): the deny entries the firewall holds are the deny list
//! minus every protected network (allow list, loopback, the AMI host), so no
//! backend needs an accept rule of its own and a denied /16 with an allowed
//! /24 inside reaches the kernel as the networks around that /24.

use ipnet::{IpNet, Ipv4Net};

/// Clears host bits (`192.0.2.7/24` is `192.0.2.0/24`) and turns networks
/// inside `::ffff:0:0/96` into IPv4 (`::ffff:192.0.2.0/120` is
/// `192.0.2.0/24`): lookups see mapped sources as IPv4, and IPv4 sources
/// reach the firewall as IPv4 packets, never as mapped IPv6 ones.
pub fn normalize(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 => n
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, n.prefix_len() - 96).ok())
            .map_or(IpNet::V6(n), IpNet::V4),
        other => other,
    }
}

/// `nets` without the addresses covered by `holes`, as CIDR networks.
/// Networks of the other family are not touched by a hole. The result
/// covers exactly the addresses of `nets` that no hole covers; a network
/// with a hole inside is split at most once per prefix length between the
/// two, so the result stays small (at most 32 pieces per IPv4 hole, 128 per
/// IPv6 hole).
pub fn subtract(nets: &[IpNet], holes: &[IpNet]) -> Vec<IpNet> {
    let holes: Vec<IpNet> = holes.iter().map(IpNet::trunc).collect();
    let mut out = Vec::new();
    for net in nets {
        let net = net.trunc();
        let inside: Vec<IpNet> = holes
            .iter()
            .copied()
            .filter(|h| same_family(&net, h) && (net.contains(h) || h.contains(&net)))
            .collect();
        carve(net, &inside, &mut out);
    }
    out
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    a.addr().is_ipv4() == b.addr().is_ipv4()
}

/// Pushes the parts of `net` outside `holes` (each overlapping `net`).
fn carve(net: IpNet, holes: &[IpNet], out: &mut Vec<IpNet>) {
    if holes.is_empty() {
        out.push(net);
        return;
    }
    if holes.iter().any(|h| h.contains(&net)) {
        return;
    }
    // Every hole lies strictly inside `net`, so `net` has halves.
    let Ok(halves) = net.subnets(net.prefix_len() + 1) else {
        out.push(net);
        return;
    };
    for half in halves {
        let inside: Vec<IpNet> = holes
            .iter()
            .copied()
            .filter(|h| half.contains(h) || h.contains(&half))
            .collect();
        carve(half, &inside, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_allowed_24_inside_a_denied_16() {
        let got = subtract(&nets(&["10.200.0.0/16"]), &nets(&["10.200.0.0/24"]));
        let want = nets(&[
            "10.200.1.0/24",
            "10.200.2.0/23",
            "10.200.4.0/22",
            "10.200.8.0/21",
            "10.200.16.0/20",
            "10.200.32.0/19",
            "10.200.64.0/18",
            "10.200.128.0/17",
        ]);
        let mut got = got;
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn covering_holes_remove_and_other_families_stay() {
        assert!(subtract(&nets(&["192.0.2.0/24"]), &nets(&["192.0.0.0/16"])).is_empty());
        assert_eq!(
            subtract(&nets(&["2001:db8::/32"]), &nets(&["10.0.0.0/8"])),
            nets(&["2001:db8::/32"])
        );
        assert!(subtract(&nets(&["0.0.0.0/0"]), &nets(&["0.0.0.0/0"])).is_empty());
        let got = subtract(&nets(&["0.0.0.0/0"]), &nets(&["127.0.0.0/8"]));
        assert_eq!(got.len(), 8);
        assert!(
            !got.iter()
                .any(|n| n.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()))
        );
    }

    fn v4net() -> impl Strategy<Value = IpNet> {
        (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
            IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), len)
                .unwrap()
                .trunc()
        })
    }

    proptest! {
        /// An address is covered by the result exactly when a net covers
        /// it and no hole does.
        #[test]
        fn result_covers_exactly_nets_minus_holes(
            deny in proptest::collection::vec(v4net(), 0..6),
            allow in proptest::collection::vec(v4net(), 0..6),
            probes in proptest::collection::vec(any::<u32>(), 0..64),
        ) {
            let out = subtract(&deny, &allow);
            let mut probes: Vec<IpAddr> = probes.into_iter().map(|a| IpAddr::V4(a.into())).collect();
            // Probe the edges of every network too.
            for n in deny.iter().chain(&allow) {
                probes.push(n.network());
                probes.push(n.broadcast());
            }
            for ip in probes {
                let want = deny.iter().any(|n| n.contains(&ip)) && !allow.iter().any(|h| h.contains(&ip));
                let got = out.iter().any(|n| n.contains(&ip));
                prop_assert_eq!(got, want, "{}", ip);
            }
            prop_assert!(out.len() <= deny.len() * (1 + 32 * allow.len()));
        }
    }
}
