//! Every tracked source, IPv4 and IPv6, under one cap; who goes when it is
//! reached, and the warning that says so.
//!
//! A new source beyond the cap evicts first a source that can no longer
//! reach a threshold (its latest counting event is older than the longest
//! window, or it never had one): forgetting it changes no decision. Only
//! if every source is still counting is a live one evicted: a few are
//! sampled at random and the one with the least progress goes (a
//! deterministic order would let a botnet pace its guesses so that exactly
//! the source about to reach its threshold is the one forgotten). A new
//! source whose event counts in no window never evicts a live one.

use std::net::IpAddr;

use super::account::Names;
use super::table::{Family, Slot};
use super::window::{self, NONE, Tick, age};

/// Live sources sampled for an eviction.
const SAMPLES: usize = 8;
/// The warning about evictions is repeated at most this often.
const REPORT_EVERY_MS: u64 = 60_000;

/// Sources evicted because the table was full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Sources that could no longer reach a threshold.
    pub idle: u64,
    /// Sources still counting towards one.
    pub live: u64,
}

/// Which family and which slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct At {
    pub v6: bool,
    pub slot: u32,
}

#[derive(Debug)]
pub(super) struct Sources {
    v4: Family,
    v6: Family,
    pub names: Names,
    seed: u64,
    total: Evictions,
    unreported: Evictions,
    last_report_ms: Option<u64>,
}

/// Whether a source whose latest counting event was at `live` can still
/// reach a threshold at `now` (`window_ms`: the longest window).
pub(super) fn can_count(live: Tick, now: Tick, window_ms: u32) -> bool {
    live != NONE && age(now, live) < window_ms
}

/// The family and key of `ip` (already canonical: mapped IPv4 is IPv4).
pub(super) fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

impl Sources {
    pub(super) fn new(ring_len: usize) -> Self {
        Sources {
            v4: Family::new(false, ring_len),
            v6: Family::new(true, ring_len),
            names: Names::default(),
            seed: 0x9e37_79b9_7f4a_7c15,
            total: Evictions::default(),
            unreported: Evictions::default(),
            last_report_ms: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(super) fn family(&self, v6: bool) -> &Family {
        if v6 { &self.v6 } else { &self.v4 }
    }

    /// The family of `v6` and the names its accounts refer to.
    pub(super) fn family_mut(&mut self, v6: bool) -> (&mut Family, &mut Names) {
        let fam = if v6 { &mut self.v6 } else { &mut self.v4 };
        (fam, &mut self.names)
    }

    pub(super) fn find(&self, ip: IpAddr) -> Option<At> {
        let (v6, k) = key(ip);
        self.family(v6).find(k).map(|slot| At { v6, slot })
    }

    pub(super) fn remove(&mut self, at: At) {
        let (fam, names) = self.family_mut(at.v6);
        fam.remove(at.slot, names);
    }

    /// A slot for `ip`, new or not. Makes room beyond `cap` (a live source
    /// only if `live_ok`); `None` if there was none to make.
    pub(super) fn admit(&mut self, ip: IpAddr, now_s: u32, room: Room) -> Option<At> {
        if let Some(at) = self.find(ip) {
            return Some(at);
        }
        while self.len() >= room.cap {
            if !self.evict_one(room) {
                return None;
            }
        }
        let (v6, k) = key(ip);
        let (fam, _) = self.family_mut(v6);
        let slot = fam.insert(k, Slot::new(now_s));
        Some(At { v6, slot })
    }

    /// Evicts down to `room.cap` (after a reconfigure).
    pub(super) fn fit(&mut self, room: Room) {
        while self.len() > room.cap && self.evict_one(room) {}
    }

    /// Evicts one source: one that can no longer count if any (the older
    /// of the two families' tails), else a live one if `room.live_ok`.
    fn evict_one(&mut self, room: Room) -> bool {
        let tail = |fam: &Family, v6| {
            let slot = fam.tail()?;
            let live = fam.slot(slot)?.live;
            (!can_count(live, room.now, room.window_ms)).then_some((live, At { v6, slot }))
        };
        let idle = match (tail(&self.v4, false), tail(&self.v6, true)) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b.1 } else { a.1 }),
            (a, b) => a.or(b).map(|(_, at)| at),
        };
        if let Some(at) = idle {
            self.remove(at);
            self.total.idle += 1;
            self.unreported.idle += 1;
            return true;
        }
        if !room.live_ok {
            return false;
        }
        let v6 = self.v6.len() > self.v4.len();
        let Some(slot) = self.least_progress(v6) else {
            return false;
        };
        self.remove(At { v6, slot });
        self.total.live += 1;
        self.unreported.live += 1;
        true
    }

    /// Among a few random slots of a family, the one furthest from a ban.
    fn least_progress(&mut self, v6: bool) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        for _ in 0..SAMPLES {
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let fam = self.family(v6);
            let slot = fam.pick(self.seed)?;
            let progress =
                fam.ring(slot).iter().filter(|&&t| t != NONE).count() + fam.challenges_len(slot);
            if best.is_none_or(|(p, _)| progress < p) {
                best = Some((progress, slot));
            }
        }
        best.map(|(_, slot)| slot)
    }

    /// Lowers every stored tick after the epoch moved.
    pub(super) fn rebase(&mut self, delta: u32) {
        self.v4.rebase(delta);
        self.v6.rebase(delta);
    }

    /// A new `max_failures`: rings keep their most recent times.
    pub(super) fn set_ring_len(&mut self, len: usize) {
        self.v4.set_ring_len(len);
        self.v6.set_ring_len(len);
    }

    /// A new flood count: each source keeps its latest `count` times
    /// (0: the rule is off, none are kept).
    pub(super) fn trim_challenges(&mut self, count: usize) {
        for fam in [&mut self.v4, &mut self.v6] {
            fam.retain_challenges(|times| {
                let extra = times.len().saturating_sub(count);
                times.drain(..extra);
            });
        }
    }

    /// Frees the ChallengeSent times that left the flood window.
    pub(super) fn expire_challenges(&mut self, now: Tick, window_ms: u32) {
        for fam in [&mut self.v4, &mut self.v6] {
            fam.retain_challenges(|times| window::expire(times, now, window_ms));
        }
    }

    /// A new account cap (0: no rule needs accounts, none are kept).
    pub(super) fn trim_accounts(&mut self, cap: usize) {
        self.v4.trim_accounts(&mut self.names, cap);
        self.v6.trim_accounts(&mut self.names, cap);
    }

    /// Drops the sources that `idle` says were last seen too long ago
    /// (given their last-seen second) and that can no longer count.
    pub(super) fn purge(&mut self, now: Tick, window_ms: u32, idle: impl Fn(u32) -> bool) -> usize {
        let mut dropped = 0;
        for fam in [&mut self.v4, &mut self.v6] {
            for i in fam.indices_rev() {
                let gone = fam
                    .slot(i)
                    .is_some_and(|s| idle(s.last_seen) && !can_count(s.live, now, window_ms));
                if gone {
                    fam.remove(i, &mut self.names);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    pub(super) fn evictions(&self) -> Evictions {
        self.total
    }

    /// The warning about evictions since the last one, at most once a
    /// minute.
    pub(super) fn report(&mut self, now_ms: u64, cap: usize) -> Option<String> {
        let Evictions { idle, live } = self.unreported;
        if idle + live == 0
            || self
                .last_report_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < REPORT_EVERY_MS)
        {
            return None;
        }
        self.unreported = Evictions::default();
        self.last_report_ms = Some(now_ms);
        Some(format!(
            "POLICY => detector full ({cap} sources): {idle} idle and {live} live sources evicted \
             in the last minute"
        ))
    }
}

/// What an admission may do to make room.
#[derive(Clone, Copy, Debug)]
pub(super) struct Room {
    pub cap: usize,
    pub now: Tick,
    pub window_ms: u32,
    /// Whether a live source may be evicted for this one.
    pub live_ok: bool,
}
