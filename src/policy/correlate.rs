//! One attempt seen twice: the AMI reports it within about a millisecond of
//! the PBX's answer; the sensor decides that a 401 went unanswered only
//! `[sip] auth_window` later. So the sensor's failure for a source counts
//! only when the AMI said nothing about that source from shortly before
//! the answer on: with the AMI link up, Asterisk's events (which tell a
//! wrong password from an unknown user) count and the sensor's do not;
//! with the link down, or for what Asterisk does not report, the sensor's
//! count. Per source, not per Call-ID: svcrack sends every guess with one
//! Call-ID, and chan_sip's events carry none.

use std::collections::HashMap;
use std::net::IpAddr;

/// How long before the answer an AMI event may have been stamped and still
/// be about the same attempt (clocks of one host; events within ~1 ms).
pub const SLACK_MS: u64 = 2_000;

/// The last time the AMI reported each source, bounded: when full, entries
/// older than `keep_ms` go; if none is that old, the new source is not
/// noted (its sensor failures then count: a double count, never a miss).
#[derive(Debug)]
pub struct AmiSightings {
    last: HashMap<IpAddr, u64>,
    cap: usize,
    keep_ms: u64,
    duplicates: u64,
}

impl AmiSightings {
    pub fn new(cap: usize, keep_ms: u64) -> Self {
        AmiSightings {
            last: HashMap::new(),
            cap,
            keep_ms,
            duplicates: 0,
        }
    }

    /// The AMI reported `ip` at `now_ms`.
    pub fn note(&mut self, ip: IpAddr, now_ms: u64) {
        let ip = ip.to_canonical();
        if self.last.len() >= self.cap && !self.last.contains_key(&ip) {
            let keep = self.keep_ms;
            self.last.retain(|_, t| now_ms.saturating_sub(*t) <= keep);
            if self.last.len() >= self.cap {
                return;
            }
        }
        let t = self.last.entry(ip).or_insert(now_ms);
        *t = (*t).max(now_ms);
    }

    /// Whether a sensor failure for `ip`, answered at `answered_ms`, is one
    /// the AMI reported already (counted as a duplicate if so).
    pub fn reported(&mut self, ip: IpAddr, answered_ms: u64) -> bool {
        let since = answered_ms.saturating_sub(SLACK_MS);
        let seen = self
            .last
            .get(&ip.to_canonical())
            .is_some_and(|t| *t >= since);
        if seen {
            self.duplicates = self.duplicates.saturating_add(1);
        }
        seen
    }

    /// Sensor failures not counted because the AMI had reported them.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_failure_the_ami_reported_around_its_answer_is_a_duplicate() {
        let mut s = AmiSightings::new(10, 60_000);
        s.note(ip("203.0.113.12"), 10_000);
        assert!(s.reported(ip("203.0.113.12"), 10_500));
        assert!(s.reported(ip("203.0.113.12"), 11_900));
        // Answered long after the AMI last spoke of it: the AMI missed it.
        assert!(!s.reported(ip("203.0.113.12"), 12_001));
        assert!(!s.reported(ip("203.0.113.13"), 10_500));
        assert_eq!(s.duplicates(), 2);
        // IPv4-mapped IPv6 is the same source.
        assert!(s.reported(ip("::ffff:203.0.113.12"), 10_000));
    }

    #[test]
    fn bounded_old_entries_make_room_fresh_ones_are_kept() {
        let mut s = AmiSightings::new(2, 1_000);
        s.note(ip("192.0.2.1"), 0);
        s.note(ip("192.0.2.2"), 500);
        s.note(ip("192.0.2.3"), 1_200); // .1 is older than 1 s: it goes.
        assert!(!s.reported(ip("192.0.2.1"), 0));
        assert!(s.reported(ip("192.0.2.3"), 1_200));
        s.note(ip("192.0.2.4"), 1_300); // both fresh: .4 is not noted.
        assert!(!s.reported(ip("192.0.2.4"), 1_300));
        assert_eq!(s.last.len(), 2);
    }
}
