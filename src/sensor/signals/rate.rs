//! Requests per source over a sliding window, in 8 bytes a source: a
//! generic cell rate algorithm (the theoretical arrival time moves on by
//! `window / max` per request and drains with the clock), so a burst split
//! across two fixed windows cannot pass at twice the rate.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::net::IpAddr;
use std::time::Duration;

pub(super) struct Rates {
    /// foldhash, randomly seeded (see `dialogs.rs`).
    tat_ms: HashMap<IpAddr, u64, RandomState>,
    cost_ms: u64,
    window_ms: u64,
    cap: usize,
    last_purge: Option<u64>,
    /// Sources not rated because the table was full of busy ones.
    pub full: u64,
}

impl Rates {
    pub fn new(max: u32, window: Duration, cap: usize) -> Self {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        Rates {
            tat_ms: HashMap::default(),
            cost_ms: (window_ms / u64::from(max.max(1))).max(1),
            window_ms,
            cap,
            last_purge: None,
            full: 0,
        }
    }

    /// One request from `ip` at `now`: whether the source is now over the
    /// rate.
    pub fn request(&mut self, ip: IpAddr, now: Duration) -> bool {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let ip = ip.to_canonical();
        if !self.tat_ms.contains_key(&ip) && self.tat_ms.len() >= self.cap {
            // Drained sources carry no information: they go, in one scan
            // a second at most.
            if self
                .last_purge
                .is_none_or(|t| now_ms.saturating_sub(t) >= 1_000)
            {
                self.last_purge = Some(now_ms);
                self.tat_ms.retain(|_, t| *t > now_ms);
            }
            if self.tat_ms.len() >= self.cap {
                self.full = self.full.saturating_add(1);
                return false;
            }
        }
        let tat = self.tat_ms.entry(ip).or_insert(now_ms);
        *tat = (*tat).max(now_ms).saturating_add(self.cost_ms);
        tat.saturating_sub(now_ms) > self.window_ms
    }

    pub fn len(&self) -> usize {
        self.tat_ms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_max_in_the_window_is_a_flood_spread_out_is_not() {
        let ip: IpAddr = "203.0.113.11".parse().unwrap();
        let mut r = Rates::new(200, Duration::from_secs(10), 10);
        // 200 at once: at the rate, not over it.
        assert!((0..200).all(|_| !r.request(ip, Duration::from_secs(1))));
        assert!(r.request(ip, Duration::from_secs(1)), "the 201st");
        // One every 50 ms for a minute (the rate itself): never over.
        let mut r = Rates::new(200, Duration::from_secs(10), 10);
        assert!((0..1200).all(|i| !r.request(ip, Duration::from_millis(i * 50))));
    }

    #[test]
    fn bounded_drained_sources_make_room() {
        let mut r = Rates::new(10, Duration::from_secs(1), 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        r.request(a, Duration::ZERO);
        r.request(b, Duration::ZERO);
        assert!(!r.request(c, Duration::from_millis(50)));
        assert_eq!(r.full, 1);
        r.request(c, Duration::from_secs(5));
        assert_eq!(r.len(), 1);
    }
}
