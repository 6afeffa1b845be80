//! AccountIDs: the attacker's own text. Normalized without ever cutting a
//! string at a guessed byte position, bounded in length, and stored once
//! however many sources name it (svwar's dictionary is the same from every
//! bot).

use std::collections::HashMap;
use std::sync::Arc;

use super::window::{Tick, age};

/// Longest account name kept (bytes, cut at a character boundary): longer
/// names are still distinct accounts, just not remembered in full.
pub const MAX_ACCOUNT_BYTES: usize = 64;
/// PJSIP's AccountID when the user is not known.
const UNKNOWN_ACCOUNT: &str = "<unknown>";

/// The account part of an AccountID (`sip:100@host` -> `100`), at most
/// [`MAX_ACCOUNT_BYTES`], or `None` for no account (empty, `<unknown>`).
pub fn normalize_account(raw: &str) -> Option<&str> {
    let mut a = raw.trim();
    for scheme in ["sips:", "sip:"] {
        if let Some(rest) = strip_prefix_ignore_ascii_case(a, scheme) {
            a = rest;
            break;
        }
    }
    if let Some((user, _host)) = a.split_once('@') {
        a = user;
    }
    let a = cut(a.trim(), MAX_ACCOUNT_BYTES).trim_end();
    if a.is_empty() || a.eq_ignore_ascii_case(UNKNOWN_ACCOUNT) {
        None
    } else {
        Some(a)
    }
}

/// `s` without `prefix` (ASCII, compared without case). Compares bytes and
/// cuts only where the prefix ended, so a multi-byte character in `s` can
/// never be split.
fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or_default()
}

/// Account names held by the detector, each stored once with a count of
/// the sources that refer to it.
#[derive(Debug, Default)]
pub(super) struct Names {
    ids: HashMap<Arc<str>, u32>,
    /// By id: the name and how many references it has (`None`: free).
    names: Vec<Option<(Arc<str>, u32)>>,
    free: Vec<u32>,
}

impl Names {
    /// The id of `name`, with one more reference.
    fn acquire(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            if let Some(Some((_, refs))) = self.names.get_mut(id as usize) {
                *refs = refs.saturating_add(1);
            }
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.names.push(None);
                u32::try_from(self.names.len() - 1).unwrap_or(u32::MAX)
            }
        };
        if let Some(slot) = self.names.get_mut(id as usize) {
            *slot = Some((Arc::clone(&name), 1));
        }
        self.ids.insert(name, id);
        id
    }

    /// Drops one reference to `id`; the name goes with the last one.
    fn release(&mut self, id: u32) {
        let Some(slot) = self.names.get_mut(id as usize) else {
            return;
        };
        if let Some((name, refs)) = slot {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.ids.remove(name);
                *slot = None;
                self.free.push(id);
            }
        }
        if self.ids.is_empty() {
            self.names = Vec::new();
            self.free = Vec::new();
            self.ids.shrink_to_fit();
        }
    }

    fn find(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn get(&self, id: u32) -> &str {
        match self.names.get(id as usize) {
            Some(Some((name, _))) => name,
            _ => "",
        }
    }

    /// Distinct names held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// One source's accounts: (name id, tick last named), at most `cap`.
pub(super) type AccountSet = Vec<(u32, Tick)>;

/// Records that the source named `name` at `now`; beyond `cap`, the
/// account named least recently is forgotten.
pub(super) fn note(set: &mut AccountSet, names: &mut Names, name: &str, now: Tick, cap: usize) {
    if let Some(known) = names.find(name)
        && let Some(seen) = set.iter_mut().find(|(id, _)| *id == known)
    {
        seen.1 = seen.1.max(now);
        return;
    }
    while set.len() >= cap.max(1) {
        forget_oldest(set, names);
    }
    set.push((names.acquire(name), now));
}

/// Drops the least recently named account.
fn forget_oldest(set: &mut AccountSet, names: &mut Names) {
    let oldest = set
        .iter()
        .enumerate()
        .min_by_key(|(_, (_, t))| *t)
        .map(|(i, _)| i);
    if let Some(i) = oldest {
        let (id, _) = set.swap_remove(i);
        names.release(id);
    }
}

/// Keeps at most `cap` accounts, the most recent.
pub(super) fn trim(set: &mut AccountSet, names: &mut Names, cap: usize) {
    while set.len() > cap {
        forget_oldest(set, names);
    }
}

/// Gives every name of `set` back.
pub(super) fn release_all(set: AccountSet, names: &mut Names) {
    for (id, _) in set {
        names.release(id);
    }
}

/// Distinct accounts named within `window_ms` before `now`.
pub(super) fn within(set: &AccountSet, now: Tick, window_ms: u32) -> usize {
    set.iter()
        .filter(|(_, t)| *t != 0 && age(now, *t) < window_ms)
        .count()
}

/// The names, least recently named first.
pub(super) fn names_of(set: &AccountSet, names: &Names) -> Vec<String> {
    let mut seen: Vec<(Tick, &str)> = set.iter().map(|(id, t)| (*t, names.get(*id))).collect();
    seen.sort_unstable();
    seen.into_iter().map(|(_, n)| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_normalized() {
        assert_eq!(normalize_account(" 1000 "), Some("1000"));
        assert_eq!(normalize_account("sip:100@192.0.2.1"), Some("100"));
        assert_eq!(normalize_account("SIP:100"), Some("100"));
        assert_eq!(normalize_account("sips:100"), Some("100"));
        assert_eq!(normalize_account("<unknown>"), None);
        assert_eq!(normalize_account(""), None);
        assert_eq!(normalize_account("sip:"), None);
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let long = "é".repeat(40); // 80 bytes
        let a = normalize_account(&long).unwrap_or_default();
        assert_eq!(a.len(), 64);
        assert_eq!(a, "é".repeat(32));
        let odd = format!("a{}", "é".repeat(40)); // boundary at 63
        assert_eq!(normalize_account(&odd).map(str::len), Some(63));
        assert_eq!(cut("\u{fffd}\u{fffd}", 4), "\u{fffd}");
        assert_eq!(cut("ab", 0), "");
    }

    #[test]
    fn names_are_shared_and_released() {
        let mut names = Names::default();
        let (mut a, mut b) = (AccountSet::new(), AccountSet::new());
        note(&mut a, &mut names, "100", 1, 3);
        note(&mut b, &mut names, "100", 2, 3);
        note(&mut b, &mut names, "admin", 3, 3);
        assert_eq!(names.len(), 2);
        note(&mut b, &mut names, "1000", 4, 2); // forgets "100" in b only
        assert_eq!(names_of(&b, &names), ["admin", "1000"]);
        assert_eq!(names_of(&a, &names), ["100"]);
        release_all(a, &mut names);
        release_all(b, &mut names);
        assert_eq!(names.len(), 0);
        // Ids are reused after release.
        let mut c = AccountSet::new();
        note(&mut c, &mut names, "x", 1, 1);
        assert_eq!(c.first().map(|(id, _)| *id), Some(0));
    }
}
