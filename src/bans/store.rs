//! The ban table: one compact entry per IP in a map keyed by the address
//! itself (u32 for IPv4, u128 for IPv6), plus a min-heap of expiries, so
//! the next expiry is found in O(1) without scanning. About 30 bytes a
//! ban for IPv4: 100k bans fit in 3 MB.
//!
//! The expiry index is lazy: an extended ban stays at its old second and
//! is moved when that second comes; a removed ban leaves a stale entry
//! that is skipped. Extending a ban under attack therefore costs O(1).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// An IPv4 expiry in the heap: the second in the high half, the address
/// in the low one (8 bytes; ordered by second first).
fn due4(at: u32, ip: u32) -> Reverse<u64> {
    Reverse(u64::from(at) << 32 | u64::from(ip))
}

#[derive(Debug, Default)]
pub struct BanStore {
    v4: HashMap<u32, Entry>,
    v6: HashMap<u128, Entry>,
    /// Expiries, earliest on top (possibly stale, see the module doc).
    due4: BinaryHeap<Reverse<u64>>,
    due6: BinaryHeap<Reverse<(u32, u128)>>,
    /// When the kernel timeout of a ban longer than the kernel can hold
    /// must be renewed (possibly stale: checked when due).
    renew: BinaryHeap<Reverse<(u32, IpAddr)>>,
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

    fn entry(&self, ip: &IpAddr) -> Option<&Entry> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(*a)),
        }
    }

    fn entry_mut(&mut self, ip: &IpAddr) -> Option<&mut Entry> {
        match ip {
            IpAddr::V4(a) => self.v4.get_mut(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.get_mut(&u128::from(*a)),
        }
    }

    fn schedule(&mut self, ip: IpAddr, at: u32) {
        match ip {
            IpAddr::V4(a) => self.due4.push(due4(at, u32::from(a))),
            IpAddr::V6(a) => self.due6.push(Reverse((at, u128::from(a)))),
        }
    }

    pub fn get(&self, ip: &IpAddr) -> Option<Ban> {
        self.entry(ip).map(|e| self.ban(*ip, e))
    }

    /// Expiry, count and the shared reason of `ip`'s ban, without copying
    /// the reason (the storm path asks for it at every event).
    pub fn brief(&self, ip: &IpAddr) -> Option<(UnixTime, u32, Arc<str>)> {
        self.entry(ip).map(|e| {
            let reason = self
                .reasons
                .get(usize::from(e.reason))
                .or(self.reasons.last())
                .map_or_else(|| Arc::from(""), Arc::clone);
            (UnixTime::from(e.expires), e.count, reason)
        })
    }

    pub fn is_active(&self, ip: &IpAddr) -> bool {
        self.entry(ip).is_some_and(|e| e.active)
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Until when the firewall holds `ip` by its own timeout.
    pub fn kernel_until(&self, ip: &IpAddr) -> Option<UnixTime> {
        self.entry(ip).map(|e| UnixTime::from(e.kernel))
    }

    pub fn set_kernel_until(&mut self, ip: &IpAddr, t: UnixTime) {
        if let Some(e) = self.entry_mut(ip) {
            e.kernel = to_u32(t);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kernel's timeout of `ip` must be renewed at `at` (it ends before
    /// the ban does).
    pub fn schedule_renewal(&mut self, ip: IpAddr, at: UnixTime) {
        self.renew.push(Reverse((to_u32(at), ip)));
    }

    /// The earliest renewal scheduled (it may turn out stale).
    pub fn next_renewal(&self) -> Option<UnixTime> {
        self.renew
            .peek()
            .map(|Reverse((at, _))| UnixTime::from(*at))
    }

    /// The active bans whose kernel timeout ends before them and is due for
    /// renewal by `now`, with their expiry; stale schedules are dropped.
    pub fn pop_renewals(&mut self, now: UnixTime, margin: u64) -> Vec<(IpAddr, UnixTime)> {
        let now32 = to_u32(now);
        let mut out = Vec::new();
        while let Some(Reverse((at, ip))) = self.renew.peek().copied() {
            if at > now32 {
                break;
            }
            self.renew.pop();
            if let Some(e) = self.entry(&ip)
                && e.active
                && e.kernel < e.expires
                && UnixTime::from(e.kernel) <= now.saturating_add(margin)
            {
                out.push((ip, UnixTime::from(e.expires)));
            }
        }
        out
    }

    /// Bans `ip` until at least `expires` (an existing later expiry is kept).
    pub fn upsert(&mut self, ip: IpAddr, expires: UnixTime, reason: &str, count: u32) -> Upsert {
        let expires = to_u32(expires);
        if let Some(e) = self.entry_mut(&ip) {
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
        let entry = Entry {
            expires,
            kernel: expires,
            count: count.max(1),
            reason: self.reason_id(reason),
            active: true,
        };
        match ip {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), entry),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), entry),
        };
        self.schedule(ip, expires);
        Upsert::New
    }

    pub fn remove(&mut self, ip: &IpAddr) -> Option<Ban> {
        // Its index entry goes stale and is skipped later.
        let e = match ip {
            IpAddr::V4(a) => self.v4.remove(&u32::from(*a)),
            IpAddr::V6(a) => self.v6.remove(&u128::from(*a)),
        }?;
        self.shrink();
        Some(self.ban(*ip, &e))
    }

    /// Hands memory back once far fewer bans are left than at the peak.
    fn shrink(&mut self) {
        if self.v4.capacity() > 1024 && self.v4.len() < self.v4.capacity() / 4 {
            self.v4.shrink_to(self.v4.len() * 2);
        }
        if self.v6.capacity() > 1024 && self.v6.len() < self.v6.capacity() / 4 {
            self.v6.shrink_to(self.v6.len() * 2);
        }
        if self.due4.capacity() > 1024 && self.due4.len() < self.due4.capacity() / 4 {
            self.due4.shrink_to(self.due4.len() * 2);
        }
        if self.due6.capacity() > 1024 && self.due6.len() < self.due6.capacity() / 4 {
            self.due6.shrink_to(self.due6.len() * 2);
        }
    }

    /// Marks every active ban inactive and returns their addresses.
    pub fn deactivate_all(&mut self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for (ip, e) in self.v4.iter_mut().filter(|(_, e)| e.active) {
            e.active = false;
            out.push(IpAddr::V4(Ipv4Addr::from(*ip)));
        }
        for (ip, e) in self.v6.iter_mut().filter(|(_, e)| e.active) {
            e.active = false;
            out.push(IpAddr::V6(Ipv6Addr::from(*ip)));
        }
        out
    }

    /// The earliest second the index has something for (it may turn out
    /// stale: then `pop_expired` finds nothing and the caller sleeps on).
    pub fn next_deadline(&self) -> Option<UnixTime> {
        let v4 = self.due4.peek().map(|Reverse(d)| (d >> 32) as u32);
        let v6 = self.due6.peek().map(|Reverse((at, _))| *at);
        match (v4, v6) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(UnixTime::from)
    }

    /// Removes and returns every ban with `expires <= now`.
    pub fn pop_expired(&mut self, now: UnixTime) -> Vec<Ban> {
        let now = to_u32(now);
        let mut out = Vec::new();
        while let Some(&Reverse(d)) = self.due4.peek() {
            let (at, ip) = ((d >> 32) as u32, d as u32);
            if at > now {
                break;
            }
            self.due4.pop();
            match self.v4.get(&ip) {
                Some(e) if e.expires <= now => {
                    if let Some(e) = self.v4.remove(&ip) {
                        out.push(self.ban(IpAddr::V4(Ipv4Addr::from(ip)), &e));
                    }
                }
                // Extended since it was indexed: index its real second
                // (later than `now`, so not seen again in this pass).
                Some(e) => self.due4.push(due4(e.expires, ip)),
                None => {}
            }
        }
        while let Some(&Reverse((at, ip))) = self.due6.peek() {
            if at > now {
                break;
            }
            self.due6.pop();
            match self.v6.get(&ip) {
                Some(e) if e.expires <= now => {
                    if let Some(e) = self.v6.remove(&ip) {
                        out.push(self.ban(IpAddr::V6(Ipv6Addr::from(ip)), &e));
                    }
                }
                Some(e) => self.due6.push(Reverse((e.expires, ip))),
                None => {}
            }
        }
        if !out.is_empty() {
            self.shrink();
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
        let v4 = self
            .v4
            .iter()
            .map(|(ip, e)| (IpAddr::V4(Ipv4Addr::from(*ip)), e));
        let v6 = self
            .v6
            .iter()
            .map(|(ip, e)| (IpAddr::V6(Ipv6Addr::from(*ip)), e));
        let mut all: Vec<(IpAddr, &Entry)> = v4.chain(v6).collect();
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

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::HashMap;

        const POOL: [&str; 6] = [
            "192.0.2.1",
            "192.0.2.2",
            "255.255.255.254",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "ffff::ffff",
        ];

        #[derive(Clone, Debug)]
        enum Op {
            Upsert(usize, u64, u8, u32),
            Remove(usize),
            Deactivate,
            Pop(u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..POOL.len(), 0u64..60, 0u8..3, 0u32..3)
                    .prop_map(|(i, t, r, c)| Op::Upsert(i, t, r, c)),
                1 => (0..POOL.len()).prop_map(Op::Remove),
                1 => Just(Op::Deactivate),
                2 => (0u64..8).prop_map(Op::Pop),
            ]
        }

        proptest! {
            /// Against a plain map: every ban is found, extended, removed
            /// and expired exactly as a map of bans would have it.
            #[test]
            fn store_matches_a_map(ops in proptest::collection::vec(op(), 1..80)) {
                let mut s = BanStore::default();
                // ip -> (expires, count, reason, active)
                let mut m: HashMap<IpAddr, (u64, u32, String, bool)> = HashMap::new();
                let mut now = 0;
                for op in ops {
                    match op {
                        Op::Upsert(i, t, r, c) => {
                            let a = ip(POOL[i]);
                            let (expires, reason) = (now + t, format!("r{r}"));
                            let want = match m.get_mut(&a) {
                                Some(b) => {
                                    let was = if b.3 { Upsert::Extended } else { Upsert::Reactivated };
                                    b.0 = b.0.max(expires);
                                    b.1 = b.1.saturating_add(c.max(1));
                                    b.3 = true;
                                    was
                                }
                                None => {
                                    m.insert(a, (expires, c.max(1), reason.clone(), true));
                                    Upsert::New
                                }
                            };
                            prop_assert_eq!(s.upsert(a, expires, &reason, c), want);
                        }
                        Op::Remove(i) => {
                            let a = ip(POOL[i]);
                            prop_assert_eq!(s.remove(&a).is_some(), m.remove(&a).is_some());
                        }
                        Op::Deactivate => {
                            let mut got = s.deactivate_all();
                            got.sort();
                            let mut want: Vec<IpAddr> =
                                m.iter().filter(|(_, b)| b.3).map(|(a, _)| *a).collect();
                            want.sort();
                            m.values_mut().for_each(|b| b.3 = false);
                            prop_assert_eq!(got, want);
                        }
                        Op::Pop(dt) => {
                            now += dt;
                            let got: Vec<IpAddr> =
                                s.pop_expired(now).into_iter().map(|b| b.ip).collect();
                            let mut want: Vec<(u64, IpAddr)> = m
                                .iter()
                                .filter(|(_, b)| b.0 <= now)
                                .map(|(a, b)| (b.0, *a))
                                .collect();
                            want.sort();
                            m.retain(|_, b| b.0 > now);
                            let want: Vec<IpAddr> = want.into_iter().map(|(_, a)| a).collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                    prop_assert_eq!(s.len(), m.len());
                    for a in POOL.map(ip) {
                        let got = s.get(&a).map(|b| (b.expires, b.count, b.reason, b.active));
                        prop_assert_eq!(got, m.get(&a).cloned());
                    }
                    // The index may point early (stale), never late.
                    if let Some(first) = m.values().map(|b| b.0).min() {
                        prop_assert!(s.next_deadline().is_some_and(|d| d <= first));
                    }
                    let order: Vec<u64> = s.by_expiry().iter().map(|b| b.expires).collect();
                    prop_assert!(order.windows(2).all(|w| w[0] <= w[1]));
                }
            }
        }
    }
}
