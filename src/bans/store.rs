//! The ban table: one compact entry per IP, plus the expiries grouped by
//! second, so the next expiry is found in O(log n) without scanning. About
//! 60 bytes a ban: 100k bans fit in a few MB.
//!
//! The expiry index is lazy: an extended ban stays in its old second and is
//! moved when that second comes; a removed ban leaves a stale address that
//! is skipped. Extending a ban under attack therefore costs O(1).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::UnixTime;

/// A ban as the rest of the daemon sees it.
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

/// Reason suffix of a ban that lasts for good (the source was moved to the
/// deny list, or listed there).
pub const PERMANENT: &str = "; permanent";

impl Ban {
    pub fn is_permanent(&self) -> bool {
        self.reason.ends_with(PERMANENT)
    }
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

/// What the store keeps per IP (the IP is the map key); 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Unix seconds; u32 lasts until 2106 (later expiries are clamped).
    expires: u32,
    /// Until when the firewall's own timeout holds the ban.
    kernel: u32,
    count: u32,
    reason: u16,
    active: bool,
}

fn to_u32(t: UnixTime) -> u32 {
    u32::try_from(t).unwrap_or(u32::MAX)
}

/// One row of the dump: ip, expiry, count, reason index.
pub type DumpRow = (IpAddr, UnixTime, u32, u16);

#[derive(Debug, Default)]
pub struct BanStore {
    bans: HashMap<IpAddr, Entry>,
    /// Expiry second -> the IPs (possibly stale) due then.
    deadlines: BTreeMap<u32, Vec<IpAddr>>,
    /// Interned reasons: there are only a handful of distinct ones.
    reasons: Vec<Arc<str>>,
    reason_ids: HashMap<Arc<str>, u16>,
}

impl BanStore {
    fn reason_id(&mut self, reason: &str) -> u16 {
        if let Some(id) = self.reason_ids.get(reason) {
            return *id;
        }
        let Ok(id) = u16::try_from(self.reasons.len()) else {
            // Absurdly many distinct reasons: share the last slot.
            return u16::MAX;
        };
        let r: Arc<str> = Arc::from(reason);
        self.reasons.push(Arc::clone(&r));
        self.reason_ids.insert(r, id);
        id
    }

    fn reason(&self, id: u16) -> &str {
        self.reasons
            .get(usize::from(id))
            .or(self.reasons.last())
            .map_or("", |r| r)
    }

    fn ban(&self, ip: IpAddr, e: &Entry) -> Ban {
        Ban {
            ip,
            expires: UnixTime::from(e.expires),
            reason: self.reason(e.reason).to_string(),
            count: e.count,
            active: e.active,
        }
    }

    fn schedule(&mut self, ip: IpAddr, at: u32) {
        self.deadlines.entry(at).or_default().push(ip);
    }

    pub fn get(&self, ip: &IpAddr) -> Option<Ban> {
        self.bans.get(ip).map(|e| self.ban(*ip, e))
    }

    pub fn is_active(&self, ip: &IpAddr) -> bool {
        self.bans.get(ip).is_some_and(|e| e.active)
    }

    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Until when the firewall holds `ip` by its own timeout.
    pub fn kernel_until(&self, ip: &IpAddr) -> Option<UnixTime> {
        self.bans.get(ip).map(|e| UnixTime::from(e.kernel))
    }

    pub fn set_kernel_until(&mut self, ip: &IpAddr, t: UnixTime) {
        if let Some(e) = self.bans.get_mut(ip) {
            e.kernel = to_u32(t);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Bans `ip` until at least `expires` (an existing later expiry is kept).
    pub fn upsert(&mut self, ip: IpAddr, expires: UnixTime, reason: &str, count: u32) -> Upsert {
        let expires = to_u32(expires);
        if let Some(e) = self.bans.get_mut(&ip) {
            let outcome = if e.active {
                Upsert::Extended
            } else {
                Upsert::Reactivated
            };
            // The index keeps the old second; `pop_expired` moves it on.
            e.expires = e.expires.max(expires);
            if !e.active {
                e.kernel = e.expires;
            }
            e.count = e.count.saturating_add(count.max(1));
            e.active = true;
            return outcome;
        }
        let reason = self.reason_id(reason);
        self.bans.insert(
            ip,
            Entry {
                expires,
                kernel: expires,
                count: count.max(1),
                reason,
                active: true,
            },
        );
        self.schedule(ip, expires);
        Upsert::New
    }

    pub fn remove(&mut self, ip: &IpAddr) -> Option<Ban> {
        // Its index slot goes stale and is skipped later.
        let e = self.bans.remove(ip)?;
        Some(self.ban(*ip, &e))
    }

    /// Marks every active ban inactive and returns their addresses.
    pub fn deactivate_all(&mut self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for (ip, e) in self.bans.iter_mut().filter(|(_, e)| e.active) {
            e.active = false;
            out.push(*ip);
        }
        out
    }

    /// The earliest second the index has something for (it may turn out
    /// stale: then `pop_expired` finds nothing and the caller sleeps on).
    pub fn next_deadline(&self) -> Option<UnixTime> {
        self.deadlines
            .first_key_value()
            .map(|(t, _)| UnixTime::from(*t))
    }

    /// Removes and returns every ban with `expires <= now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Vec<Ban> {
        let now = to_u32(now);
        let mut out = Vec::new();
        let mut later = Vec::new();
        while let Some(entry) = self.deadlines.first_entry() {
            let at = *entry.key();
            if at > now {
                break;
            }
            for ip in entry.remove() {
                match self.bans.get(&ip) {
                    Some(e) if e.expires <= now => {
                        if let Some(e) = self.bans.remove(&ip) {
                            out.push(self.ban(ip, &e));
                        }
                    }
                    // Extended since it was indexed: index its real second,
                    // unless it was removed and banned again (already there).
                    Some(e) if e.expires > at => later.push((ip, e.expires)),
                    _ => {}
                }
            }
        }
        for (ip, at) in later {
            let slot = self.deadlines.entry(at).or_default();
            if !slot.contains(&ip) {
                slot.push(ip);
            }
        }
        out.sort_by_key(|b| (b.expires, b.ip));
        out
    }

    /// All bans, soonest expiry first (the original's `block` order).
    pub fn by_expiry(&self) -> Vec<Ban> {
        self.ordered().map(|(ip, e)| self.ban(ip, e)).collect()
    }

    /// Active bans with their expiry, soonest first, without copying reasons.
    pub fn active_expiries(&self) -> Vec<(IpAddr, UnixTime)> {
        self.ordered()
            .filter(|(_, e)| e.active)
            .map(|(ip, e)| (ip, UnixTime::from(e.expires)))
            .collect()
    }

    /// Compact rows for the dump plus the reason table they index.
    pub fn dump_rows(&self) -> (Vec<DumpRow>, Vec<Arc<str>>) {
        let rows = self
            .ordered()
            .map(|(ip, e)| (ip, UnixTime::from(e.expires), e.count, e.reason))
            .collect();
        (rows, self.reasons.clone())
    }

    fn ordered(&self) -> impl Iterator<Item = (IpAddr, &Entry)> {
        let mut all: Vec<(IpAddr, &Entry)> = self.bans.iter().map(|(ip, e)| (*ip, e)).collect();
        all.sort_unstable_by_key(|(ip, e)| (e.expires, *ip));
        all.into_iter()
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
        // The index is lazy: the old second comes first, then moves on.
        assert_eq!(s.next_deadline(), Some(100));
        assert!(s.pop_expired(100).is_empty());
        assert_eq!(s.next_deadline(), Some(200));
        assert_eq!(s.by_expiry().len(), 1);
    }

    #[test]
    fn extended_and_removed_bans_leave_no_wrong_expiry() {
        let mut s = BanStore::default();
        s.upsert(ip("192.0.2.1"), 10, "r", 1);
        s.upsert(ip("192.0.2.1"), 50, "r", 1);
        s.upsert(ip("192.0.2.2"), 10, "r", 1);
        s.remove(&ip("192.0.2.2"));
        s.upsert(ip("192.0.2.2"), 30, "r", 1);
        assert!(s.pop_expired(10).is_empty(), "extended and re-banned");
        assert_eq!(s.next_deadline(), Some(30));
        let gone: Vec<_> = s.pop_expired(30).into_iter().map(|b| b.ip).collect();
        assert_eq!(gone, vec![ip("192.0.2.2")]);
        assert!(s.pop_expired(49).is_empty());
        assert_eq!(s.pop_expired(50).len(), 1);
        assert!(s.is_empty());
        assert_eq!(s.next_deadline(), None);
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
        assert_eq!(s.remove(&ip("192.0.2.3")).unwrap().expires, 30);
        // The stale slot yields nothing and then disappears.
        assert!(s.pop_expired(30).is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn flushed_bans_reactivate() {
        let mut s = BanStore::default();
        s.upsert(ip("192.0.2.1"), 10, "r", 1);
        assert_eq!(s.deactivate_all().len(), 1);
        assert!(!s.get(&ip("192.0.2.1")).unwrap().active);
        assert!(s.active_expiries().is_empty());
        assert_eq!(s.upsert(ip("192.0.2.1"), 10, "r", 1), Upsert::Reactivated);
    }

    #[test]
    fn reasons_are_shared() {
        let mut s = BanStore::default();
        for i in 0..1000u32 {
            let a = IpAddr::from((0xc000_0200u32 + i).to_be_bytes());
            s.upsert(
                a,
                10 + u64::from(i % 3),
                if i % 2 == 0 { "a" } else { "b" },
                1,
            );
        }
        let (rows, reasons) = s.dump_rows();
        assert_eq!(rows.len(), 1000);
        assert_eq!(reasons.len(), 2);
        assert!(
            rows.windows(2).all(|w| w[0].1 <= w[1].1),
            "ordered by expiry"
        );
    }
}
