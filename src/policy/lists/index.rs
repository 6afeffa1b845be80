//! The longest-prefix index behind [`AddressList`](super::AddressList)
//! lookups: one hash probe per prefix length present, whatever the number
//! of entries.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

/// An address family's bits as an integer, most significant bit first.
pub(super) trait Bits: Copy + Eq + Hash {
    const WIDTH: u32;
    /// Keeps the first `len` bits, clears the rest.
    fn keep(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u32 = 32;
    fn keep(self, len: u8) -> Self {
        self & u32::MAX
            .checked_shl(Self::WIDTH.saturating_sub(len.into()))
            .unwrap_or(0)
    }
}

impl Bits for u128 {
    const WIDTH: u32 = 128;
    fn keep(self, len: u8) -> Self {
        self & u128::MAX
            .checked_shl(Self::WIDTH.saturating_sub(len.into()))
            .unwrap_or(0)
    }
}

/// Networks of one family indexed by prefix length: a lookup masks the
/// address once per length present, longest first, and probes that length's
/// hash map, so the first hit is the most specific entry. Cost depends on
/// the number of distinct lengths (<= 33 or 129), not on the entries.
#[derive(Clone, Debug)]
pub(super) struct PrefixIndex<K> {
    /// Non-empty levels, longest prefix first.
    levels: Vec<Level<K>>,
}

#[derive(Clone, Debug)]
struct Level<K> {
    len: u8,
    /// Network bits -> position in the entry vector.
    slots: HashMap<K, usize>,
}

impl<K> Default for PrefixIndex<K> {
    fn default() -> Self {
        PrefixIndex { levels: Vec::new() }
    }
}

impl<K: Bits> PrefixIndex<K> {
    pub(super) fn longest(&self, addr: K) -> Option<usize> {
        self.levels
            .iter()
            .find_map(|l| l.slots.get(&addr.keep(l.len)).copied())
    }

    fn level(&self, len: u8) -> Result<usize, usize> {
        // Sorted by descending length.
        self.levels.binary_search_by(|l| len.cmp(&l.len))
    }

    pub(super) fn exact(&self, network: K, len: u8) -> Option<usize> {
        let at = self.level(len).ok()?;
        self.levels.get(at)?.slots.get(&network.keep(len)).copied()
    }

    /// False (and nothing changed) if the network is already indexed.
    pub(super) fn insert(&mut self, network: K, len: u8, pos: usize) -> bool {
        let at = match self.level(len) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(
                    at,
                    Level {
                        len,
                        slots: HashMap::new(),
                    },
                );
                at
            }
        };
        let Some(level) = self.levels.get_mut(at) else {
            return false;
        };
        match level.slots.entry(network.keep(len)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(pos);
                true
            }
        }
    }

    /// The removed network's position; an emptied level goes, so lookups
    /// never probe it.
    pub(super) fn remove(&mut self, network: K, len: u8) -> Option<usize> {
        let at = self.level(len).ok()?;
        let level = self.levels.get_mut(at)?;
        let pos = level.slots.remove(&network.keep(len))?;
        if level.slots.is_empty() {
            self.levels.remove(at);
        }
        Some(pos)
    }

    /// The entry at `pos` left the vector: later ones moved down by one.
    pub(super) fn forget_position(&mut self, pos: usize) {
        for level in &mut self.levels {
            for p in level.slots.values_mut() {
                if *p > pos {
                    *p -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx4(nets: &[(&str, u8)]) -> PrefixIndex<u32> {
        let mut idx = PrefixIndex::default();
        for (pos, (addr, len)) in nets.iter().enumerate() {
            let a: std::net::Ipv4Addr = addr.parse().unwrap();
            assert!(idx.insert(u32::from(a), *len, pos));
        }
        idx
    }

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn keep_masks_every_length_without_overflow() {
        assert_eq!(0xffff_ffffu32.keep(0), 0);
        assert_eq!(0xffff_ffffu32.keep(1), 0x8000_0000);
        assert_eq!(0xffff_ffffu32.keep(24), 0xffff_ff00);
        assert_eq!(0xffff_ffffu32.keep(32), 0xffff_ffff);
        assert_eq!(0xffff_ffffu32.keep(200), 0xffff_ffff);
        assert_eq!(u128::MAX.keep(0), 0);
        assert_eq!(u128::MAX.keep(64), u128::MAX << 64);
        assert_eq!(u128::MAX.keep(128), u128::MAX);
    }
    #[test]
    fn index_levels_are_sorted_longest_first_and_longest_wins() {
        let idx = idx4(&[
            ("10.0.0.0", 8),
            ("10.1.2.3", 32),
            ("10.1.0.0", 16),
            ("0.0.0.0", 0),
            ("10.1.2.0", 24),
        ]);
        let lens: Vec<u8> = idx.levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, [32, 24, 16, 8, 0]);
        assert_eq!(idx.longest(v4("10.1.2.3")), Some(1));
        assert_eq!(idx.longest(v4("10.1.2.4")), Some(4));
        assert_eq!(idx.longest(v4("10.1.3.4")), Some(2));
        assert_eq!(idx.longest(v4("10.2.3.4")), Some(0));
        assert_eq!(idx.longest(v4("11.2.3.4")), Some(3));
    }
    #[test]
    fn index_refuses_duplicates_and_finds_exact() {
        let mut idx = idx4(&[("192.0.2.0", 24)]);
        assert!(!idx.insert(v4("192.0.2.0"), 24, 9));
        assert_eq!(idx.exact(v4("192.0.2.0"), 24), Some(0));
        assert_eq!(idx.exact(v4("192.0.2.0"), 25), None);
        assert_eq!(idx.exact(v4("192.0.3.0"), 24), None);
    }
    #[test]
    fn index_remove_drops_empty_levels_and_shifts_positions() {
        let mut idx = idx4(&[("10.0.0.0", 8), ("10.1.0.0", 16), ("10.1.2.0", 24)]);
        assert_eq!(idx.remove(v4("10.1.0.0"), 16), Some(1));
        idx.forget_position(1);
        assert_eq!(idx.levels.len(), 2);
        assert_eq!(idx.longest(v4("10.1.2.9")), Some(1));
        assert_eq!(idx.longest(v4("10.1.3.9")), Some(0));
        assert_eq!(idx.remove(v4("10.1.0.0"), 16), None);
        assert_eq!(idx.remove(v4("10.1.0.0"), 12), None);
    }
    #[test]
    fn index_v6() {
        let mut idx = PrefixIndex::<u128>::default();
        let a = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        assert!(idx.insert(a("2001:db8::"), 32, 0));
        assert!(idx.insert(a("2001:db8:1::"), 48, 1));
        assert!(idx.insert(a("2001:db8:1::7"), 128, 2));
        assert_eq!(idx.longest(a("2001:db8:1::7")), Some(2));
        assert_eq!(idx.longest(a("2001:db8:1::8")), Some(1));
        assert_eq!(idx.longest(a("2001:db8:2::8")), Some(0));
        assert_eq!(idx.longest(a("2001:db9::")), None);
    }
}
