//! INTERIM network bans (issue 8 item 7, branch `original`): until the ban
//! store, the journal and the backends hold networks, a network ban is one
//! ban per address, for networks of at most 65,536 addresses. Used by the
//! console's `block NET` and by the network entries of an `ipset save`
//! dump. The lead replaces this file with real network bans; its callers
//! need only [`BanManager::ban_network`] (and drop [`fits`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::persist::NetworkEntry;
use super::{BanManager, DumpEntry, Upsert};

/// The widest networks banned address by address.
pub const WIDEST_V4: u8 = 16;
pub const WIDEST_V6: u8 = 112;

/// True when `net` can be banned here.
pub fn fits(net: IpNet) -> bool {
    let widest = match net {
        IpNet::V4(_) => WIDEST_V4,
        IpNet::V6(_) => WIDEST_V6,
    };
    net.prefix_len() >= widest
}

/// Every address of `net`, its first and last included (ipset's `hash:net`
/// matches them too); nothing for a network that does not [`fit`](fits).
pub fn addresses(net: IpNet) -> Box<dyn Iterator<Item = IpAddr>> {
    if !fits(net) {
        return Box::new(std::iter::empty());
    }
    match net.trunc() {
        IpNet::V4(n) => Box::new(
            (u32::from(n.network())..=u32::from(n.broadcast()))
                .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        ),
        IpNet::V6(n) => Box::new(
            (u128::from(n.network())..=u128::from(n.broadcast()))
                .map(|a| IpAddr::V6(Ipv6Addr::from(a)).to_canonical()),
        ),
    }
}

impl BanManager {
    /// Bans every address of `net` for the ban time; returns once they are
    /// in the kernel and on disk. `Extended` when every one was banned
    /// already. A network that does not [`fit`](fits) is refused (nothing
    /// banned, an error logged): callers check first.
    pub async fn ban_network(&self, net: IpNet, reason: &str) -> Upsert {
        if !fits(net) {
            tracing::error!("BLOCK => {net} not blocked: wider than a network ban can be yet");
            return Upsert::Extended;
        }
        let mut outcome = Upsert::Extended;
        let mut last = None;
        for ip in addresses(net) {
            let (o, seq) = self.ban_numbered(ip, reason, None);
            if o != Upsert::Extended {
                outcome = o;
            }
            last = Some(seq);
        }
        if let Some(seq) = last {
            self.confirmations.wait(seq).await;
        }
        outcome
    }
}

/// A dump's network entries as per-address entries; one that does not
/// [`fit`](fits) is a warning (the dump is then kept aside at start).
pub(super) fn expand(
    path: &std::path::Path,
    networks: Vec<NetworkEntry>,
    bans: &mut Vec<DumpEntry>,
    warnings: &mut Vec<String>,
) {
    for n in networks {
        if !fits(n.net) {
            warnings.push(format!(
                "{}: network {} skipped: wider than a network ban can be yet (/{WIDEST_V4}, /{WIDEST_V6}); \
                 add it to the deny list",
                path.display(),
                n.net
            ));
            continue;
        }
        bans.extend(addresses(n.net).map(|ip| DumpEntry {
            ip,
            expiry: n.expiry,
            reason: n.reason.clone(),
            count: n.count,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_is_every_address_in_it() {
        let v4: Vec<IpAddr> = addresses(net("198.51.100.0/30")).collect();
        assert_eq!(
            v4,
            [
                "198.51.100.0",
                "198.51.100.1",
                "198.51.100.2",
                "198.51.100.3"
            ]
            .map(|s| s.parse::<IpAddr>().unwrap())
        );
        assert_eq!(addresses(net("2001:db8::/126")).count(), 4);
        assert_eq!(addresses(net("10.0.0.0/16")).count(), 65_536);
        assert_eq!(addresses(net("10.0.0.0/15")).count(), 0);
        assert!(fits(net("10.0.0.0/16")) && !fits(net("10.0.0.0/15")));
        assert!(fits(net("2001:db8::/112")) && !fits(net("2001:db8::/111")));
    }
}
