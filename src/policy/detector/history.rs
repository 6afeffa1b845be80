//! The ban history: per source, how many bans and until when, for
//! escalation. 16 bytes a source in memory (times as u32 Unix seconds,
//! which last until 2106, and a u16 count); persisted as [`History`] with
//! the millisecond fields it always had.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::sources::key;

/// Ban history, persisted by the caller (JSON via serde) next to the bans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default)]
    pub entries: Vec<HistoryEntry>,
}

/// One source's bans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub ip: IpAddr,
    /// Bans issued since the history was last forgotten.
    pub ban_count: u32,
    /// First event seen from the source (ms since the epoch, to the second).
    pub first_seen_ms: u64,
    /// When the last ban was issued.
    pub last_ban_ms: u64,
    /// When the last ban ends (`u64::MAX` if permanent).
    pub until_ms: u64,
    #[serde(default)]
    pub permanent: bool,
}

/// One source's bans, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BanRecord {
    pub first_seen: u32,
    pub last_ban: u32,
    /// End of the last ban (`u32::MAX` while permanent).
    pub until: u32,
    pub ban_count: u16,
    pub permanent: bool,
}

/// Unix seconds of wall-clock `ms` (the ban store counts whole seconds
/// too, so a ban ends here exactly when it is lifted there).
pub(super) fn secs(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

fn ms(s: u32) -> u64 {
    u64::from(s) * 1000
}

impl BanRecord {
    pub(super) fn in_force(&self, now_ms: u64) -> bool {
        self.permanent || now_ms < ms(self.until)
    }

    pub(super) fn forgettable(&self, now_ms: u64, forget_ms: u64) -> bool {
        if self.permanent {
            now_ms.saturating_sub(ms(self.last_ban)) >= forget_ms
        } else {
            now_ms >= ms(self.until) && now_ms - ms(self.until) >= forget_ms
        }
    }

    pub(super) fn active(&self, now_ms: u64, forget_ms: u64) -> bool {
        self.in_force(now_ms) && !self.forgettable(now_ms, forget_ms)
    }

    pub(super) fn entry(&self, ip: IpAddr) -> HistoryEntry {
        HistoryEntry {
            ip,
            ban_count: u32::from(self.ban_count),
            first_seen_ms: ms(self.first_seen),
            last_ban_ms: ms(self.last_ban),
            until_ms: if self.permanent {
                u64::MAX
            } else {
                ms(self.until)
            },
            permanent: self.permanent,
        }
    }

    fn from_entry(e: &HistoryEntry) -> Self {
        BanRecord {
            first_seen: secs(e.first_seen_ms),
            last_ban: secs(e.last_ban_ms),
            until: if e.permanent {
                u32::MAX
            } else {
                secs(e.until_ms)
            },
            ban_count: u16::try_from(e.ban_count).unwrap_or(u16::MAX),
            permanent: e.permanent,
        }
    }
}

/// The records, keyed by address family.
#[derive(Debug, Default)]
pub(super) struct HistoryTable {
    v4: HashMap<u32, BanRecord>,
    v6: HashMap<u128, BanRecord>,
}

impl HistoryTable {
    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(super) fn get(&self, ip: IpAddr) -> Option<&BanRecord> {
        match key(ip) {
            (false, k) => self.v4.get(&u32::try_from(k).ok()?),
            (true, k) => self.v6.get(&k),
        }
    }

    pub(super) fn get_mut(&mut self, ip: IpAddr) -> Option<&mut BanRecord> {
        match key(ip) {
            (false, k) => self.v4.get_mut(&u32::try_from(k).ok()?),
            (true, k) => self.v6.get_mut(&k),
        }
    }

    /// `ip`'s record, `fresh` if it had none.
    pub(super) fn get_or_insert(&mut self, ip: IpAddr, fresh: BanRecord) -> &mut BanRecord {
        match ip {
            IpAddr::V4(a) => self.v4.entry(u32::from(a)).or_insert(fresh),
            IpAddr::V6(a) => self.v6.entry(u128::from(a)).or_insert(fresh),
        }
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&BanRecord) -> bool) {
        self.v4.retain(|_, r| keep(r));
        self.v6.retain(|_, r| keep(r));
        self.v4.shrink_to(self.v4.len() * 2);
        self.v6.shrink_to(self.v6.len() * 2);
    }

    /// Drops the `n` records with the oldest last ban, in two passes over
    /// the u32 times (no copy of the addresses).
    pub(super) fn drop_oldest(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.len() {
            *self = HistoryTable::default();
            return;
        }
        let mut times: Vec<u32> = self
            .v4
            .values()
            .chain(self.v6.values())
            .map(|r| r.last_ban)
            .collect();
        let (_, &mut cut, _) = times.select_nth_unstable(n - 1);
        drop(times);
        // Everything older than the n-th goes; of those at exactly its
        // time, as many as still needed.
        let older = self
            .v4
            .values()
            .chain(self.v6.values())
            .filter(|r| r.last_ban < cut)
            .count();
        let mut at_cut = n - older;
        let mut keep = |r: &BanRecord| {
            if r.last_ban < cut {
                false
            } else if r.last_ban == cut && at_cut > 0 {
                at_cut -= 1;
                false
            } else {
                true
            }
        };
        // Into fresh maps of the same size: the caller refills the room,
        // and removals in place would leave tombstones that make the next
        // refill double the table.
        let v4 = std::mem::take(&mut self.v4);
        self.v4 = HashMap::with_capacity(v4.len());
        self.v4.extend(v4.into_iter().filter(|(_, r)| keep(r)));
        let v6 = std::mem::take(&mut self.v6);
        self.v6 = HashMap::with_capacity(v6.len());
        self.v6.extend(v6.into_iter().filter(|(_, r)| keep(r)));
    }

    /// Every record as a persisted entry, sorted by address.
    pub(super) fn entries(&self) -> Vec<HistoryEntry> {
        let v4 = self
            .v4
            .iter()
            .map(|(k, r)| r.entry(IpAddr::V4(Ipv4Addr::from(*k))));
        let v6 = self
            .v6
            .iter()
            .map(|(k, r)| r.entry(IpAddr::V6(Ipv6Addr::from(*k))));
        let mut all: Vec<HistoryEntry> = v4.chain(v6).collect();
        all.sort_by_key(|e| e.ip);
        all
    }

    /// Merges persisted entries: those already forgotten at `now_ms`, or
    /// with no ban, are skipped; where both sides know an address, the
    /// later ban wins. Returns how many were taken.
    pub(super) fn load(&mut self, entries: &[HistoryEntry], now_ms: u64, forget_ms: u64) -> usize {
        let mut taken = 0;
        for e in entries {
            let rec = BanRecord::from_entry(e);
            if rec.ban_count == 0 || rec.forgettable(now_ms, forget_ms) {
                continue;
            }
            let ip = e.ip.to_canonical();
            match self.get_mut(ip) {
                Some(old) if old.last_ban >= rec.last_ban => continue,
                Some(old) => *old = rec,
                None => {
                    self.get_or_insert(ip, rec);
                }
            }
            taken += 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(last_ban: u32) -> BanRecord {
        BanRecord {
            first_seen: 0,
            last_ban,
            until: last_ban + 10,
            ban_count: 1,
            permanent: false,
        }
    }

    #[test]
    fn records_are_small() {
        assert!(std::mem::size_of::<BanRecord>() <= 16);
    }

    #[test]
    fn drop_oldest_drops_exactly_n_by_last_ban() {
        let mut h = HistoryTable::default();
        for i in 0..100u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            h.get_or_insert(ip, rec(i / 10)); // ten per second
        }
        let ip6: IpAddr = "2001:db8::1"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        h.get_or_insert(ip6, rec(0));
        h.drop_oldest(15);
        assert_eq!(h.len(), 86);
        let left: Vec<u32> = h.entries().iter().map(|e| secs(e.last_ban_ms)).collect();
        assert!(left.iter().all(|&t| t >= 1));
        assert_eq!(left.iter().filter(|&&t| t == 1).count(), 6);
    }

    #[test]
    fn entries_round_trip() {
        let mut h = HistoryTable::default();
        let ip: IpAddr = "192.0.2.7"
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut r = rec(1_763_729_616);
        r.permanent = true;
        r.until = u32::MAX;
        h.get_or_insert(ip, r);
        let entries = h.entries();
        assert_eq!(entries.first().map(|e| e.until_ms), Some(u64::MAX));
        let mut back = HistoryTable::default();
        assert_eq!(back.load(&entries, 1_763_729_616_000, 1000), 1);
        assert_eq!(back.get(ip), Some(&r));
    }
}
