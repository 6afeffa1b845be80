//! Persistent flooders: the kernel counts, per source, the SIP packets
//! over the rate ([`super::OverLimitReader`]); this reads the counts every
//! few seconds, feeds the console's `report`, and reports a source that
//! stayed over the rate for `sip_ban_after` as a `RateLimit` security event
//! into the channel the AMI's events go to, so the policy bans it like any
//! attacker.
//!
//! Reading counters rather than logging packets keeps a flood cheap: the
//! kernel does one lookup and one increment per packet, and a read costs
//! one listing of the sources currently over the rate, whatever the packet
//! rate (100k pps from one source is one element).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::FloodWatch;
use crate::clock::Clock;
use crate::event::{EventKind, Origin, SecurityEvent};
use crate::stats::Stats;

/// How often the counts are read: often enough to see `ban_after` within
/// a few seconds, at most every 5 s, at least every second.
pub fn period(ban_after: Duration) -> Duration {
    (ban_after / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The kernel's count at the last read.
    count: u64,
    /// When the current run of excess began (ms).
    since: u64,
    /// Whether the last read found new excess.
    over: bool,
}

/// What one read found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// New over-limit packets per source since the last read.
    pub hits: Vec<(IpAddr, u64)>,
    /// Sources over the rate for `ban_after` by now.
    pub flooders: Vec<IpAddr>,
}

/// Turns successive counts into hits and persistent flooders. Pure: the
/// time is given. Holds one entry per source the kernel listed at the last
/// read, so it is bounded by the kernel's set.
#[derive(Debug)]
pub struct Tracker {
    ban_after: Duration,
    period: Duration,
    seen: HashMap<IpAddr, Seen>,
}

impl Tracker {
    pub fn new(ban_after: Duration, period: Duration) -> Tracker {
        Tracker {
            ban_after,
            period,
            seen: HashMap::new(),
        }
    }

    /// `counts`: the kernel's cumulative counts at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, counts: Vec<(IpAddr, u64)>) -> Observed {
        let period_ms = u64::try_from(self.period.as_millis()).unwrap_or(u64::MAX);
        let ban_ms = u64::try_from(self.ban_after.as_millis()).unwrap_or(u64::MAX);
        let mut out = Observed::default();
        let mut next = HashMap::with_capacity(counts.len());
        for (ip, count) in counts {
            let ip = ip.to_canonical();
            let prev = self.seen.get(&ip).copied();
            // A count below the last one is a new counter (the old expired).
            let new = match prev {
                Some(p) if count >= p.count => count - p.count,
                _ => count,
            };
            let mut s = match prev {
                // Excess in this read too: the run goes on.
                Some(p) if p.over && new > 0 => Seen { count, ..p },
                // A read covers the period before it.
                _ => Seen {
                    count,
                    since: now_ms.saturating_sub(period_ms),
                    over: false,
                },
            };
            s.over = new > 0;
            if new > 0 {
                out.hits.push((ip, new));
                if now_ms.saturating_sub(s.since) >= ban_ms {
                    out.flooders.push(ip);
                    // Reported once per run: once more only if it goes on
                    // for another `ban_after` (the ban did not take).
                    s.since = now_ms;
                }
            }
            next.insert(ip, s);
        }
        self.seen = next;
        out
    }
}

/// The event a persistent flooder becomes.
pub fn event(ip: IpAddr) -> SecurityEvent {
    SecurityEvent {
        kind: EventKind::RateLimit,
        service: "firewall".into(),
        account: String::new(),
        source: ip,
        port: 0,
        transport: None,
        event_time: None,
        origin: Origin::Kernel,
        sip: None,
    }
}

/// Reads and reports until `stop` is dropped (or the events' receiver is).
/// Runs on a thread of its own, in the network namespace it was started in.
pub fn run(
    mut watch: FloodWatch,
    events: mpsc::Sender<SecurityEvent>,
    stats: Arc<Stats>,
    clock: Clock,
    stop: Receiver<()>,
) {
    let period = period(watch.ban_after);
    let mut tracker = Tracker::new(watch.ban_after, period);
    let mut last_error: Option<String> = None;
    loop {
        match stop.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let counts = match watch.reader.read() {
            Ok(c) => {
                if last_error.take().is_some() {
                    tracing::info!("RATE LIMIT => over-limit counts readable again");
                }
                c
            }
            Err(e) => {
                // Said once, not every period.
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!("RATE LIMIT => cannot read the over-limit counts: {e}");
                    last_error = Some(e);
                }
                continue;
            }
        };
        let now_ms = clock.now_ms();
        let seen = tracker.observe(now_ms, counts);
        for (ip, n) in &seen.hits {
            stats.rate_limited(now_ms, *ip, *n);
        }
        for ip in seen.flooders {
            tracing::info!(
                "RATE LIMIT => {ip} over the SIP rate limit for {}s",
                watch.ban_after.as_secs()
            );
            if events.blocking_send(event(ip)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_the_rate_long_enough_is_reported_once_per_run() {
        let mut t = Tracker::new(Duration::from_secs(10), Duration::from_secs(2));
        let a = ip("203.0.113.5");
        let b = ip("203.0.113.6");
        // First read: a run began a period ago.
        let o = t.observe(2_000, vec![(a, 100), (b, 5)]);
        assert_eq!(o.hits, vec![(a, 100), (b, 5)]);
        assert!(o.flooders.is_empty());
        // b stops; a goes on.
        for now in [4_000, 6_000, 8_000] {
            let o = t.observe(now, vec![(a, now / 20), (b, 5)]);
            assert_eq!(o.hits, vec![(a, 100)]);
            assert!(o.flooders.is_empty(), "{now}");
        }
        // 10 s of excess (0..10 s).
        let o = t.observe(10_000, vec![(a, 1_000)]);
        assert_eq!(o.flooders, vec![a]);
        // Not again within the next 10 s.
        let o = t.observe(12_000, vec![(a, 1_200)]);
        assert!(o.flooders.is_empty());
        let o = t.observe(20_000, vec![(a, 2_000)]);
        assert_eq!(o.flooders, vec![a]);
    }

    #[test]
    fn a_pause_restarts_the_run_and_a_reset_counter_counts_afresh() {
        let mut t = Tracker::new(Duration::from_secs(6), Duration::from_secs(2));
        let a = ip("2001:db8::5");
        t.observe(2_000, vec![(a, 10)]);
        t.observe(4_000, vec![(a, 20)]);
        // No new excess at 6 s: the run ends.
        assert!(t.observe(6_000, vec![(a, 20)]).hits.is_empty());
        // The counter expired and started again at 3.
        let o = t.observe(8_000, vec![(a, 3)]);
        assert_eq!(o.hits, vec![(a, 3)]);
        assert!(t.observe(10_000, vec![(a, 9)]).flooders.is_empty());
        assert_eq!(t.observe(12_000, vec![(a, 12)]).flooders, vec![a]);
        // Gone from the kernel: forgotten.
        t.observe(14_000, vec![]);
        assert!(t.seen.is_empty());
    }

    #[test]
    fn periods() {
        assert_eq!(period(Duration::from_secs(30)), Duration::from_secs(5));
        assert_eq!(period(Duration::from_secs(6)), Duration::from_secs(2));
        assert_eq!(period(Duration::ZERO), Duration::from_secs(1));
    }
}
