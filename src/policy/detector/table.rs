//! The per-source table of one address family: a dense slab of compact
//! slots, an index from the address (u32 for IPv4, u128 for IPv6) to its
//! slot, and a recency list through the slots.
//!
//! The list is ordered by each source's latest counting event: the tail
//! is the source that has gone longest without one, so whether any source
//! can no longer reach a threshold is one look at the tail. Sources whose
//! events count in no window (a good phone's SuccessfulAuth) are put at the
//! tail. Removal swaps the last slot into the hole, so the slab stays dense
//! and shrinks after a storm.

use std::collections::HashMap;

use super::account::{self, AccountSet, Names};
use super::window::{self, NONE, Tick};

/// "No slot" in the recency links.
const NIL: u32 = u32::MAX;

/// One source: 28 bytes, plus its address and `max_failures - 1` ticks.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// Neighbours in the recency list (towards the head, the tail).
    newer: u32,
    older: u32,
    /// Latest event that counts in a window ([`NONE`]: none that still can).
    pub live: Tick,
    /// Unix seconds (the console shows them to the second).
    pub first_seen: u32,
    pub last_seen: u32,
    /// Watched events, and counted ones among them (saturating).
    pub events: u32,
    pub failures: u32,
}

impl Slot {
    pub(super) fn new(now_s: u32) -> Self {
        Slot {
            newer: NIL,
            older: NIL,
            live: NONE,
            first_seen: now_s,
            last_seen: now_s,
            events: 0,
            failures: 0,
        }
    }
}

/// Addresses by slot, and slots by address.
#[derive(Debug)]
enum Keys {
    V4 {
        index: HashMap<u32, u32>,
        keys: Vec<u32>,
    },
    V6 {
        index: HashMap<u128, u32>,
        keys: Vec<u128>,
    },
}

#[derive(Debug)]
pub(super) struct Family {
    keys: Keys,
    slots: Vec<Slot>,
    /// `ring_len` failure ticks per slot, oldest first.
    ring_len: usize,
    rings: Vec<Tick>,
    /// ChallengeSent times inside the flood window, only for sources that
    /// sent one while the flood rule is on.
    challenges: HashMap<u32, Vec<Tick>>,
    /// Accounts named, only with the enumeration rule.
    accounts: HashMap<u32, AccountSet>,
    head: u32,
    tail: u32,
}

impl Family {
    pub(super) fn new(v6: bool, ring_len: usize) -> Self {
        let keys = if v6 {
            Keys::V6 {
                index: HashMap::new(),
                keys: Vec::new(),
            }
        } else {
            Keys::V4 {
                index: HashMap::new(),
                keys: Vec::new(),
            }
        };
        Family {
            keys,
            slots: Vec::new(),
            ring_len,
            rings: Vec::new(),
            challenges: HashMap::new(),
            accounts: HashMap::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The slot of `key` (an IPv4 address as u32 in the v4 family).
    pub(super) fn find(&self, key: u128) -> Option<u32> {
        match &self.keys {
            Keys::V4 { index, .. } => index.get(&u32::try_from(key).ok()?).copied(),
            Keys::V6 { index, .. } => index.get(&key).copied(),
        }
    }

    /// Adds `key` (not present) at the tail; returns its slot.
    pub(super) fn insert(&mut self, key: u128, slot: Slot) -> u32 {
        let i = u32::try_from(self.slots.len()).unwrap_or(NIL);
        match &mut self.keys {
            Keys::V4 { index, keys } => {
                let k = u32::try_from(key).unwrap_or_default();
                index.insert(k, i);
                keys.push(k);
            }
            Keys::V6 { index, keys } => {
                index.insert(key, i);
                keys.push(key);
            }
        }
        self.slots.push(slot);
        self.rings.resize(self.rings.len() + self.ring_len, NONE);
        self.link_tail(i);
        i
    }

    pub(super) fn slot(&self, i: u32) -> Option<&Slot> {
        self.slots.get(i as usize)
    }

    pub(super) fn slot_mut(&mut self, i: u32) -> Option<&mut Slot> {
        self.slots.get_mut(i as usize)
    }

    fn ring_range(&self, i: u32) -> std::ops::Range<usize> {
        let start = i as usize * self.ring_len;
        start..start + self.ring_len
    }

    pub(super) fn ring(&self, i: u32) -> &[Tick] {
        self.rings.get(self.ring_range(i)).unwrap_or_default()
    }

    pub(super) fn ring_mut(&mut self, i: u32) -> &mut [Tick] {
        let range = self.ring_range(i);
        self.rings.get_mut(range).unwrap_or_default()
    }

    pub(super) fn challenges_mut(&mut self, i: u32) -> &mut Vec<Tick> {
        self.challenges.entry(i).or_default()
    }

    pub(super) fn challenges_len(&self, i: u32) -> usize {
        self.challenges.get(&i).map_or(0, Vec::len)
    }

    pub(super) fn accounts(&self, i: u32) -> Option<&AccountSet> {
        self.accounts.get(&i)
    }

    pub(super) fn accounts_mut(&mut self, i: u32) -> &mut AccountSet {
        self.accounts.entry(i).or_default()
    }

    /// The source that has gone longest without a counting event.
    pub(super) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Marks `i` as the most recently counting source.
    pub(super) fn make_newest(&mut self, i: u32) {
        if self.head == i {
            return;
        }
        self.unlink(i);
        let old = self.head;
        if let Some(s) = self.slot_mut(i) {
            s.newer = NIL;
            s.older = old;
        }
        match self.slot_mut(old) {
            Some(s) => s.newer = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn link_tail(&mut self, i: u32) {
        let old = self.tail;
        if let Some(s) = self.slot_mut(i) {
            s.older = NIL;
            s.newer = old;
        }
        match self.slot_mut(old) {
            Some(s) => s.older = i,
            None => self.head = i,
        }
        self.tail = i;
    }

    fn unlink(&mut self, i: u32) {
        let Some(&Slot { newer, older, .. }) = self.slot(i) else {
            return;
        };
        match self.slot_mut(newer) {
            Some(s) => s.older = older,
            None => self.head = older,
        }
        match self.slot_mut(older) {
            Some(s) => s.newer = newer,
            None => self.tail = newer,
        }
    }

    /// Forgets slot `i` (its names go back to `names`); the last slot
    /// takes its place.
    pub(super) fn remove(&mut self, i: u32, names: &mut Names) {
        let Some(last) = self.slots.len().checked_sub(1) else {
            return;
        };
        if i as usize > last {
            return;
        }
        self.unlink(i);
        self.challenges.remove(&i);
        if let Some(set) = self.accounts.remove(&i) {
            account::release_all(set, names);
        }
        let last = u32::try_from(last).unwrap_or(NIL);
        match &mut self.keys {
            Keys::V4 { index, keys } => {
                if let Some(k) = keys.get(i as usize) {
                    index.remove(k);
                }
                keys.swap_remove(i as usize);
                if let Some(k) = keys.get(i as usize) {
                    index.insert(*k, i);
                }
            }
            Keys::V6 { index, keys } => {
                if let Some(k) = keys.get(i as usize) {
                    index.remove(k);
                }
                keys.swap_remove(i as usize);
                if let Some(k) = keys.get(i as usize) {
                    index.insert(*k, i);
                }
            }
        }
        self.slots.swap_remove(i as usize);
        let from = self.ring_range(last);
        let to = self.ring_range(i);
        if i != last {
            self.rings.copy_within(from, to.start);
            if let Some(v) = self.challenges.remove(&last) {
                self.challenges.insert(i, v);
            }
            if let Some(v) = self.accounts.remove(&last) {
                self.accounts.insert(i, v);
            }
            self.relink_moved(i);
        }
        self.rings.truncate(last as usize * self.ring_len);
        self.shrink();
    }

    /// The slot that was last now is at `to`: its neighbours learn.
    fn relink_moved(&mut self, to: u32) {
        let Some(&Slot { newer, older, .. }) = self.slot(to) else {
            return;
        };
        match self.slot_mut(newer) {
            Some(s) => s.older = to,
            None => self.head = to,
        }
        match self.slot_mut(older) {
            Some(s) => s.newer = to,
            None => self.tail = to,
        }
    }

    /// Hands memory back once the table is much smaller than its peak.
    fn shrink(&mut self) {
        let n = self.slots.len();
        if self.slots.capacity() > 64 && n < self.slots.capacity() / 4 {
            self.slots.shrink_to(n * 2);
            self.rings.shrink_to(n * 2 * self.ring_len);
            match &mut self.keys {
                Keys::V4 { index, keys } => {
                    keys.shrink_to(n * 2);
                    index.shrink_to(n * 2);
                }
                Keys::V6 { index, keys } => {
                    keys.shrink_to(n * 2);
                    index.shrink_to(n * 2);
                }
            }
        }
        if self.challenges.capacity() > 64 && self.challenges.len() < self.challenges.capacity() / 4
        {
            self.challenges.shrink_to(self.challenges.len() * 2);
        }
        if self.accounts.capacity() > 64 && self.accounts.len() < self.accounts.capacity() / 4 {
            self.accounts.shrink_to(self.accounts.len() * 2);
        }
    }

    /// Slots from the last one down, so that [`Family::remove`] during the
    /// walk never skips one.
    pub(super) fn indices_rev(&self) -> impl Iterator<Item = u32> + use<> {
        (0..u32::try_from(self.slots.len()).unwrap_or(0)).rev()
    }

    /// Lowers every stored tick after the epoch moved.
    pub(super) fn rebase(&mut self, delta: u32) {
        for s in &mut self.slots {
            window::shift(&mut s.live, delta);
        }
        for t in &mut self.rings {
            window::shift(t, delta);
        }
        for v in self.challenges.values_mut() {
            v.iter_mut().for_each(|t| window::shift(t, delta));
            v.retain(|&t| t != NONE);
        }
        for set in self.accounts.values_mut() {
            set.iter_mut().for_each(|(_, t)| window::shift(t, delta));
        }
        self.challenges.retain(|_, v| !v.is_empty());
    }

    /// A new `max_failures`: every ring keeps its most recent times.
    pub(super) fn set_ring_len(&mut self, len: usize) {
        if len == self.ring_len {
            return;
        }
        let mut rings = Vec::with_capacity(self.slots.len() * len);
        for i in 0..u32::try_from(self.slots.len()).unwrap_or(0) {
            let old = self.ring(i);
            let keep = old.len().min(len);
            rings.resize(rings.len() + len - keep, NONE);
            rings.extend_from_slice(old.get(old.len() - keep..).unwrap_or_default());
        }
        self.rings = rings;
        self.ring_len = len;
    }

    /// Applies `f` to the ChallengeSent times of every source holding some;
    /// emptied lists are freed.
    pub(super) fn retain_challenges(&mut self, mut f: impl FnMut(&mut Vec<Tick>)) {
        self.challenges.retain(|_, v| {
            f(v);
            !v.is_empty()
        });
        self.shrink();
    }

    /// Keeps at most `cap` accounts per source (0: none at all).
    pub(super) fn trim_accounts(&mut self, names: &mut Names, cap: usize) {
        for set in self.accounts.values_mut() {
            account::trim(set, names, cap);
        }
        self.accounts.retain(|_, set| !set.is_empty());
        self.shrink();
    }

    /// A slot chosen from `seed` (for sampling eviction victims).
    pub(super) fn pick(&self, seed: u64) -> Option<u32> {
        let n = self.slots.len() as u64;
        (n > 0).then(|| u32::try_from(seed % n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The recency list from head to tail, checked both ways.
    fn order(f: &Family) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = f.head;
        let mut prev = NIL;
        while at != NIL {
            let s = f.slot(at).copied().unwrap_or(Slot::new(0));
            assert_eq!(s.newer, prev, "back link of {at}");
            out.push(at);
            prev = at;
            at = s.older;
            assert!(out.len() <= f.len(), "cycle");
        }
        assert_eq!(f.tail, prev);
        assert_eq!(out.len(), f.len());
        out
    }

    #[test]
    fn slots_are_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 28);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16),
        Remove(u16),
        Newest(u16),
    }

    proptest! {
        /// Against a model: the index, the rings, the side maps and the
        /// recency list stay consistent through swap-removals.
        #[test]
        fn table_matches_a_model(
            v6 in any::<bool>(),
            ops in proptest::collection::vec(
                prop_oneof![
                    (0u16..40).prop_map(Op::Insert),
                    (0u16..40).prop_map(Op::Remove),
                    (0u16..40).prop_map(Op::Newest),
                ],
                1..120,
            ),
        ) {
            let mut f = Family::new(v6, 2);
            let mut names = Names::default();
            // Model: keys from most to least recent.
            let mut model: Vec<u128> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        let k = u128::from(k);
                        if f.find(k).is_none() {
                            let i = f.insert(k, Slot::new(0));
                            f.ring_mut(i).copy_from_slice(&[k as u32 + 1, k as u32 + 2]);
                            f.challenges_mut(i).push(k as u32 + 3);
                            let name = k.to_string();
                            account::note(f.accounts_mut(i), &mut names, &name, 1, 2);
                            model.push(k);
                        }
                    }
                    Op::Remove(k) => {
                        if let Some(i) = f.find(u128::from(k)) {
                            f.remove(i, &mut names);
                            model.retain(|&m| m != u128::from(k));
                        }
                    }
                    Op::Newest(k) => {
                        if let Some(i) = f.find(u128::from(k)) {
                            f.make_newest(i);
                            model.retain(|&m| m != u128::from(k));
                            model.insert(0, u128::from(k));
                        }
                    }
                }
                let got: Vec<u128> = order(&f)
                    .into_iter()
                    .map(|i| {
                        let k = (0..40u128).find(|&k| f.find(k) == Some(i)).unwrap_or(999);
                        prop_assert_eq!(f.ring(i), &[k as u32 + 1, k as u32 + 2][..]);
                        prop_assert_eq!(f.challenges_len(i), 1);
                        let set = f.accounts(i).cloned().unwrap_or_default();
                        prop_assert_eq!(account::names_of(&set, &names), [k.to_string()]);
                        Ok(k)
                    })
                    .collect::<Result<_, _>>()?;
                prop_assert_eq!(&got, &model);
                prop_assert_eq!(names.len(), model.len());
            }
        }
    }
}
