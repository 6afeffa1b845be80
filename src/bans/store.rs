//! The ban table: one entry per IP plus an ordered set of expiries, so the
//! next expiry is found in O(log n) without scanning.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::clock::UnixTime;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    pub ip: IpAddr,
    pub expires: UnixTime,
    pub reason: String,
    /// How many times this source was banned or re-reported while banned.
    pub count: u32,
    /// `false` after `flush`: kept (and dumped) so `restore` can bring it
    /// back, but not in the firewall.
    pub active: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// Not banned before: the firewall needs a new entry.
    New,
    /// Was present but inactive (flushed): the firewall needs it again.
    Reactivated,
    /// Already active: only the expiry moved (never a second rule).
    Extended,
}

#[derive(Debug, Default)]
pub struct BanStore {
    bans: HashMap<IpAddr, Ban>,
    deadlines: BTreeSet<(UnixTime, IpAddr)>,
}

impl BanStore {
    pub fn get(&self, ip: &IpAddr) -> Option<&Ban> {
        self.bans.get(ip)
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Bans `ip` until at least `expires` (an existing later expiry is kept).
    pub fn upsert(&mut self, ip: IpAddr, expires: UnixTime, reason: &str, count: u32) -> Upsert {
        match self.bans.get_mut(&ip) {
            Some(ban) => {
                let outcome = if ban.active {
                    Upsert::Extended
                } else {
                    Upsert::Reactivated
                };
                if expires > ban.expires {
                    self.deadlines.remove(&(ban.expires, ip));
                    ban.expires = expires;
                    self.deadlines.insert((expires, ip));
                }
                ban.count = ban.count.saturating_add(count.max(1));
                ban.active = true;
                outcome
            }
            None => {
                self.bans.insert(
                    ip,
                    Ban {
                        ip,
                        expires,
                        reason: reason.to_string(),
                        count: count.max(1),
                        active: true,
                    },
                );
                self.deadlines.insert((expires, ip));
                Upsert::New
            }
        }
    }

    pub fn remove(&mut self, ip: &IpAddr) -> Option<Ban> {
        let ban = self.bans.remove(ip)?;
        self.deadlines.remove(&(ban.expires, *ip));
        Some(ban)
    }

    /// Marks every active ban inactive and returns them.
    pub fn deactivate_all(&mut self) -> Vec<Ban> {
        let mut out = Vec::new();
        for ban in self.bans.values_mut().filter(|b| b.active) {
            ban.active = false;
            out.push(ban.clone());
        }
        out
    }

    pub fn next_deadline(&self) -> Option<UnixTime> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Removes and returns every ban with `expires <= now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Vec<Ban> {
        let mut out = Vec::new();
        while let Some(&(t, ip)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(ban) = self.bans.remove(&ip) {
                out.push(ban);
            }
        }
        out
    }

    /// All bans, soonest expiry first (the original's `block` order).
    pub fn by_expiry(&self) -> Vec<Ban> {
        self.deadlines
            .iter()
            .filter_map(|(_, ip)| self.bans.get(ip).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn repeat_extends_never_duplicates() {
        let mut s = BanStore::default();
        assert_eq!(s.upsert(ip("192.0.2.1"), 100, "x", 1), Upsert::New);
        assert_eq!(s.upsert(ip("192.0.2.1"), 200, "y", 1), Upsert::Extended);
        assert_eq!(s.len(), 1);
        let b = s.get(&ip("192.0.2.1")).unwrap();
        assert_eq!((b.expires, b.count, b.reason.as_str()), (200, 2, "x"));
        // An earlier expiry never shortens a ban.
        s.upsert(ip("192.0.2.1"), 150, "z", 1);
        assert_eq!(s.get(&ip("192.0.2.1")).unwrap().expires, 200);
        assert_eq!(s.next_deadline(), Some(200));
    }

    #[test]
    fn expiry_in_order() {
        let mut s = BanStore::default();
        s.upsert(ip("192.0.2.3"), 30, "r", 1);
        s.upsert(ip("192.0.2.1"), 10, "r", 1);
        s.upsert(ip("2001:db8::1"), 20, "r", 1);
        assert_eq!(s.next_deadline(), Some(10));
        let gone: Vec<_> = s.pop_expired(20).into_iter().map(|b| b.ip).collect();
        assert_eq!(gone, vec![ip("192.0.2.1"), ip("2001:db8::1")]);
        assert_eq!(s.next_deadline(), Some(30));
        assert!(s.pop_expired(29).is_empty());
    }

    #[test]
    fn flushed_bans_reactivate() {
        let mut s = BanStore::default();
        s.upsert(ip("192.0.2.1"), 10, "r", 1);
        assert_eq!(s.deactivate_all().len(), 1);
        assert!(!s.get(&ip("192.0.2.1")).unwrap().active);
        assert_eq!(s.upsert(ip("192.0.2.1"), 10, "r", 1), Upsert::Reactivated);
    }
}
