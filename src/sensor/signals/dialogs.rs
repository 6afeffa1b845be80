//! Challenges waiting for their success. One entry per requester and
//! Call-ID (the Call-ID hashed with a per-run random key, so a scanner
//! cannot aim collisions): what the last request said (User-Agent,
//! method, account, whether it carried credentials) and the 401/407s sent
//! back since the last success. A challenge followed within the window by
//! a success (any 101-299 answer on the same Call-ID) was a good login;
//! one that is not becomes a failure when the window has passed: each 401
//! to a request that carried credentials (a wrong guess), and a 401 to one
//! without that the client never answered with credentials (svwar, svmap
//! giving up). So one wrong password is one failure, as in the AMI, not
//! two (the first, credential-less REGISTER's challenge is answered).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

// foldhash with a per-process random seed: several times faster than the
// standard SipHash on these short keys, and still not predictable by a
// sender choosing Call-IDs or addresses.
use foldhash::fast::RandomState;
use std::net::IpAddr;
use std::time::Duration;

/// Failures one dialog can produce in one window, whatever its 401 count.
const MAX_FAILURES_PER_WINDOW: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub requester: IpAddr,
    call: u64,
}

/// What the requests of one dialog said, the last one winning.
#[derive(Clone, Debug, Default)]
pub(super) struct Dialog {
    pub agent: Option<String>,
    pub method: Option<String>,
    pub account: String,
    pub transport: &'static str,
    pub port: u16,
    /// The last request carried Authorization/Proxy-Authorization.
    pub credentialed: bool,
    /// 401/407s to requests with credentials.
    challenges: u32,
    /// A 401/407 to a request without credentials, not answered by one
    /// with them yet.
    unanswered: bool,
    challenged_at: Option<Duration>,
    last: Duration,
}

/// A matured failure: the dialog as it was and when its first unanswered
/// challenge left.
pub(super) struct Matured {
    pub requester: IpAddr,
    pub dialog: Dialog,
    pub failures: u32,
    pub answered: Duration,
}

pub(super) struct Dialogs {
    map: HashMap<Key, Dialog, RandomState>,
    /// (deadline, key, challenged_at) in deadline order (the window is
    /// fixed, so pushes come in order).
    due: VecDeque<(Duration, Key, Duration)>,
    hasher: RandomState,
    window: Duration,
    cap: usize,
    last_purge: Option<Duration>,
    /// Requests and answers not tracked because the table was full.
    pub full: u64,
}

impl Dialogs {
    pub fn new(window: Duration, cap: usize) -> Self {
        Dialogs {
            map: HashMap::default(),
            due: VecDeque::new(),
            hasher: RandomState::default(),
            window,
            cap,
            last_purge: None,
            full: 0,
        }
    }

    pub fn key(&self, requester: IpAddr, call_id: &[u8]) -> Key {
        Key {
            requester: requester.to_canonical(),
            call: self.hasher.hash_one(call_id),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The dialog of `key`, created if there is room; `new` tells whether
    /// it was just created.
    pub fn entry(&mut self, key: Key, now: Duration) -> Option<(&mut Dialog, bool)> {
        let mut new = false;
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cap {
                self.purge(now);
            }
            if self.map.len() >= self.cap {
                self.full = self.full.saturating_add(1);
                return None;
            }
            self.map.insert(key, Dialog::default());
            new = true;
        }
        let d = self.map.get_mut(&key)?;
        d.last = d.last.max(now);
        Some((d, new))
    }

    /// A 401/407 went to the requester of `key`.
    pub fn challenged(&mut self, key: Key, now: Duration) {
        let window = self.window;
        let Some((d, _)) = self.entry(key, now) else {
            return;
        };
        if d.credentialed {
            d.challenges = d.challenges.saturating_add(1);
        } else {
            d.unanswered = true;
        }
        if d.challenged_at.is_none() {
            d.challenged_at = Some(now);
            self.due.push_back((now.saturating_add(window), key, now));
        }
    }

    /// The dialog got a success, or an answer that is no challenge: what
    /// was pending is settled.
    pub fn settled(&mut self, key: Key) {
        if let Some(d) = self.map.get_mut(&key) {
            d.challenges = 0;
            d.unanswered = false;
            d.challenged_at = None;
        }
    }

    /// The requester of `key` sent credentials: a challenge without them
    /// was answered.
    pub fn answered(&mut self, key: Key) {
        if let Some(d) = self.map.get_mut(&key) {
            d.unanswered = false;
        }
    }

    /// The dialog as it is, if tracked.
    pub fn get(&self, key: &Key) -> Option<&Dialog> {
        self.map.get(key)
    }

    /// Challenges whose window has passed at `now` without a success.
    pub fn mature(&mut self, now: Duration, out: &mut Vec<Matured>) {
        while let Some(&(deadline, key, at)) = self.due.front() {
            if deadline > now {
                break;
            }
            self.due.pop_front();
            let Some(d) = self.map.get_mut(&key) else {
                continue;
            };
            if d.challenged_at != Some(at) {
                continue;
            }
            let failures = d
                .challenges
                .saturating_add(u32::from(d.unanswered))
                .min(MAX_FAILURES_PER_WINDOW);
            d.challenges = 0;
            d.unanswered = false;
            d.challenged_at = None;
            if failures == 0 {
                continue;
            }
            out.push(Matured {
                requester: key.requester,
                dialog: d.clone(),
                failures,
                answered: at,
            });
        }
    }

    /// Drops dialogs idle for two windows with nothing pending; at most
    /// once a second, so a full table costs one scan a second, not one per
    /// packet.
    fn purge(&mut self, now: Duration) {
        if self
            .last_purge
            .is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_purge = Some(now);
        let idle = self.window.saturating_mul(2).max(Duration::from_secs(2));
        self.map
            .retain(|_, d| d.challenged_at.is_some() || now.saturating_sub(d.last) < idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(5);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_challenge_followed_by_a_success_is_no_failure() {
        let mut d = Dialogs::new(W, 10);
        let k = d.key("203.0.113.50".parse().unwrap(), b"abc@203.0.113.50");
        d.challenged(k, s(1.0));
        d.settled(k);
        let mut out = Vec::new();
        d.mature(s(10.0), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn unanswered_challenges_mature_after_the_window_all_of_them() {
        let mut d = Dialogs::new(W, 10);
        let k = d.key("203.0.113.12".parse().unwrap(), b"1234");
        // svcrack: a first REGISTER without credentials, then 21 guesses.
        d.challenged(k, s(1.0));
        for i in 1..22 {
            let (dialog, _) = d.entry(k, s(1.0)).unwrap();
            dialog.credentialed = true;
            d.answered(k);
            d.challenged(k, s(1.0 + f64::from(i) * 0.005));
        }
        let mut out = Vec::new();
        d.mature(s(5.9), &mut out);
        assert!(out.is_empty(), "not yet");
        d.mature(s(6.0), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].failures, 21, "the guesses, not the first challenge");
        assert_eq!(out[0].answered, s(1.0));
        // Settled: nothing more from the same challenges.
        d.mature(s(60.0), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_challenge_nobody_answers_is_one_failure() {
        let mut d = Dialogs::new(W, 10);
        let k = d.key("203.0.113.11".parse().unwrap(), b"svwar");
        d.entry(k, s(0.0));
        d.challenged(k, s(0.0));
        let mut out = Vec::new();
        d.mature(s(5.0), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].failures, 1);
    }

    #[test]
    fn the_table_is_bounded_and_idle_dialogs_make_room() {
        let mut d = Dialogs::new(W, 2);
        let a = d.key("192.0.2.1".parse().unwrap(), b"a");
        let b = d.key("192.0.2.1".parse().unwrap(), b"b");
        let c = d.key("192.0.2.1".parse().unwrap(), b"c");
        assert!(d.entry(a, s(0.0)).is_some());
        assert!(d.entry(b, s(0.0)).is_some());
        assert!(d.entry(c, s(1.0)).is_none(), "full, nothing idle");
        assert_eq!(d.full, 1);
        assert!(d.entry(c, s(20.0)).is_some(), "a and b were idle");
        assert!(d.len() <= 2);
    }
}
