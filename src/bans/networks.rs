//! Timed bans of whole networks (`block 198.51.100.0/24`, as the 2024
//! original's `hash:net` set allows, and the `/LEN` entries of its `ipset
//! save` dump). They are few (a console command, not an event), so they live
//! apart from the per-address store: a small ordered map, in the kernel with
//! the deny entries (the kernel holds deny list and network bans, minus the
//! protected networks), journaled and dumped like address bans, and lifted
//! by the expiry task.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Upsert;
use crate::clock::UnixTime;

/// Most network bans held; beyond, a new one is refused (a console command
/// per network: this is far above any real use).
pub const MAX_NETWORK_BANS: usize = 10_000;

/// One network ban, as listed, dumped and journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetBan {
    pub net: IpNet,
    pub expiry: UnixTime,
    pub reason: String,
    pub count: u32,
}

#[derive(Debug, Default)]
pub struct NetBans {
    map: BTreeMap<IpNet, NetBan>,
}

impl NetBans {
    /// Bans `net` until at least `expiry`; `None` when full.
    pub fn upsert(&mut self, net: IpNet, expiry: UnixTime, reason: &str) -> Option<Upsert> {
        if let Some(b) = self.map.get_mut(&net) {
            b.expiry = b.expiry.max(expiry);
            b.count = b.count.saturating_add(1);
            return Some(Upsert::Extended);
        }
        if self.map.len() >= MAX_NETWORK_BANS {
            return None;
        }
        self.map.insert(
            net,
            NetBan {
                net,
                expiry,
                reason: reason.to_string(),
                count: 1,
            },
        );
        Some(Upsert::New)
    }

    /// Puts back a ban read from disk (its expiry and count as they were).
    pub fn restore(&mut self, ban: NetBan) {
        if self.map.len() < MAX_NETWORK_BANS || self.map.contains_key(&ban.net) {
            self.map.insert(ban.net, ban);
        }
    }

    pub fn get(&self, net: &IpNet) -> Option<&NetBan> {
        self.map.get(net)
    }

    pub fn remove(&mut self, net: &IpNet) -> Option<NetBan> {
        self.map.remove(net)
    }

    /// Removes and returns the bans with `expiry <= now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Vec<NetBan> {
        let due: Vec<IpNet> = self
            .map
            .values()
            .filter(|b| b.expiry <= now)
            .map(|b| b.net)
            .collect();
        due.iter().filter_map(|n| self.map.remove(n)).collect()
    }

    pub fn next_deadline(&self) -> Option<UnixTime> {
        self.map.values().map(|b| b.expiry).min()
    }

    /// Every network ban, soonest expiry first.
    pub fn list(&self) -> Vec<NetBan> {
        let mut all: Vec<NetBan> = self.map.values().cloned().collect();
        all.sort_by_key(|b| (b.expiry, b.net));
        all
    }

    pub fn nets(&self) -> Vec<IpNet> {
        self.map.keys().copied().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn upsert_extends_and_expiry_pops_in_order() {
        let mut n = NetBans::default();
        assert_eq!(
            n.upsert(net("198.51.100.0/24"), 100, "r"),
            Some(Upsert::New)
        );
        assert_eq!(
            n.upsert(net("198.51.100.0/24"), 50, "r"),
            Some(Upsert::Extended)
        );
        assert_eq!(n.get(&net("198.51.100.0/24")).unwrap().expiry, 100);
        assert_eq!(n.upsert(net("2001:db8::/48"), 70, "r"), Some(Upsert::New));
        assert_eq!(n.next_deadline(), Some(70));
        assert_eq!(n.pop_expired(69), vec![]);
        assert_eq!(n.pop_expired(70)[0].net, net("2001:db8::/48"));
        assert_eq!(n.nets(), vec![net("198.51.100.0/24")]);
        for i in 0..MAX_NETWORK_BANS as u32 {
            n.upsert(
                IpNet::new((i << 8).to_be_bytes().into(), 24).unwrap(),
                5,
                "r",
            );
        }
        assert_eq!(n.upsert(net("203.0.113.0/24"), 5, "r"), None, "full");
    }
}

/// Why a network was not banned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetBanError {
    #[error("{0} network bans are held already; unblock some first")]
    Full(usize),
}

impl super::BanManager {
    pub(super) fn networks_lock(&self) -> std::sync::MutexGuard<'_, NetBans> {
        self.networks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bans a whole network for the configured time (a host network bans
    /// the address). It reaches the kernel with the deny entries: the
    /// daemon puts them in force when [`Self::networks_changed`] fires (or
    /// the caller does, to answer once it is there); returns the change
    /// number to wait for with [`Self::durable`].
    pub fn ban_network(&self, net: IpNet, reason: &str) -> Result<(Upsert, u64), NetBanError> {
        let net = crate::cidr::normalize(net);
        if net.prefix_len() == net.max_prefix_len() {
            return Ok(self.ban_numbered(net.addr(), reason, None));
        }
        let expiry = self.clock.now().saturating_add(self.ban_time.as_secs());
        let (outcome, seq) = {
            let mut nets = self.networks_lock();
            let outcome = nets
                .upsert(net, expiry, reason)
                .ok_or(NetBanError::Full(MAX_NETWORK_BANS))?;
            let ban = nets.get(&net).cloned();
            let seq = match ban {
                Some(b) => self.number(super::journal::Record::BanNet(b)),
                None => 0,
            };
            (outcome, seq)
        };
        if outcome == Upsert::New {
            tracing::info!("BLOCK => {net} ({reason})");
        }
        self.networks_changed.send_modify(|n| *n += 1);
        self.expiry_changed.notify_one();
        self.changed();
        Ok((outcome, seq))
    }

    /// Lifts a network ban (a host network: the address's ban). `None` if
    /// there was none; else the change number to wait for.
    pub fn unban_network(&self, net: IpNet) -> Option<u64> {
        let net = crate::cidr::normalize(net);
        if net.prefix_len() == net.max_prefix_len() {
            return self.unban_numbered(net.addr(), super::UnbanReason::Manual);
        }
        let seq = {
            let mut nets = self.networks_lock();
            nets.remove(&net)?;
            self.number(super::journal::Record::UnbanNet(net))
        };
        tracing::info!("UNBLOCK => {net} (Manual Unblock)");
        self.networks_changed.send_modify(|n| *n += 1);
        self.changed();
        Some(seq)
    }

    /// Waits until change `seq` is in the kernel and on disk.
    pub async fn durable(&self, seq: u64) {
        self.confirmations.wait(seq).await
    }

    /// The network bans, soonest expiry first.
    pub fn networks(&self) -> Vec<NetBan> {
        self.networks_lock().list()
    }

    /// The banned networks, for the kernel's deny entries.
    pub fn banned_networks(&self) -> Vec<IpNet> {
        self.networks_lock().nets()
    }

    /// Changes whenever the banned networks do (a ban, an unban, an expiry,
    /// a restore): the daemon then puts the deny entries in force again.
    pub fn networks_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.networks_changed.subscribe()
    }

    /// Removes the network bans whose time has come.
    pub(super) fn expire_networks(&self, now: UnixTime) {
        let gone = self.networks_lock().pop_expired(now);
        if gone.is_empty() {
            return;
        }
        for b in &gone {
            tracing::info!("UNBLOCK => {} (Timeout Unblock)", b.net);
        }
        self.networks_changed.send_modify(|n| *n += 1);
        self.changed();
    }

    /// Puts network bans read from disk back (unexpired ones).
    pub(super) fn restore_networks(&self, bans: Vec<NetBan>) -> usize {
        let now = self.clock.now();
        let mut n = 0;
        {
            let mut nets = self.networks_lock();
            for b in bans.into_iter().filter(|b| b.expiry > now) {
                tracing::info!("BLOCK => {} ({})", b.net, b.reason);
                nets.restore(b);
                n += 1;
            }
        }
        if n > 0 {
            self.networks_changed.send_modify(|c| *c += 1);
            self.expiry_changed.notify_one();
        }
        n
    }

    pub(super) fn next_network_deadline(&self) -> Option<UnixTime> {
        self.networks_lock().next_deadline()
    }
}
