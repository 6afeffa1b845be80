//! Detector benchmark: a botnet spreading its guesses over many sources
//! (every source's first attempt, then every source's second, ...), the
//! pattern that slipped under the thresholds when the detector forgot the
//! oldest sources. Prints bans (all must be banned), time, events/s and
//! the memory per tracked source, measured by counting the allocator's
//! live bytes. Asserts only correctness, never speed.
//!
//! `cargo bench --bench policy` runs 100k and 1M sources; without
//! `--bench` (e.g. under `cargo test --all-targets`) it runs a small smoke
//! pass so the code stays exercised.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sipban::event::{EventKind, SecurityEvent};
use sipban::policy::detector::{Detector, DetectorConfig};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Wall-clock start of the attack (ms): any day will do.
const T0: u64 = 1_900_000_000_000;

/// The i-th address of 100.64.0.0/10 and up.
fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from((100u32 << 24 | 64 << 16).wrapping_add(i)))
}

struct Figures {
    bans: usize,
    events: u64,
    time: Duration,
    /// Live bytes per source while all were tracked (before the last round).
    per_source: f64,
    /// Live bytes per banned source afterwards (the history).
    per_ban: f64,
}

/// `sources` x `rounds` attempts, interleaved, within one minute. With
/// `scan`, each attempt is a svwar probe (a ChallengeSent and an unknown
/// account, a new one each round) under the recommended rules; otherwise a
/// wrong password under `max_failures = rounds`.
fn botnet(sources: u32, rounds: u32, scan: bool) -> Figures {
    let config = if scan {
        DetectorConfig::recommended()
    } else {
        DetectorConfig {
            max_failures: rounds,
            find_time: Duration::from_secs(60),
            ..DetectorConfig::default()
        }
    };
    let mut d = Detector::new(config).expect("valid config");
    let mut fail = SecurityEvent {
        kind: if scan {
            EventKind::InvalidAccountId
        } else {
            EventKind::ChallengeResponseFailed
        },
        service: "PJSIP".into(),
        account: "4711".into(),
        source: addr(0),
        port: 5060,
        transport: Some("UDP".into()),
        event_time: None,
        origin: Default::default(),
        sip: None,
    };
    let mut challenge = SecurityEvent {
        kind: EventKind::ChallengeSent,
        account: "<unknown>".into(),
        ..fail.clone()
    };
    let before = live();
    let mut per_source = 0.0;
    let mut bans = 0;
    let mut events = 0u64;
    let start = Instant::now();
    for round in 0..rounds {
        if scan {
            fail.account = format!("{}", 2000 + round);
        }
        // Spread over 50 s whatever the size: all within `find_time`.
        let step = 50_000.0 / f64::from(sources * rounds);
        for i in 0..sources {
            let now = T0 + (f64::from(round * sources + i) * step) as u64;
            if scan {
                challenge.source = addr(i);
                bans += usize::from(d.observe(&challenge, now).is_some());
                events += 1;
            }
            fail.source = addr(i);
            bans += usize::from(d.observe(&fail, now).is_some());
            events += 1;
        }
        // Every source tracked: before the banning round, or at the end
        // when the scan stays under the thresholds.
        let measure_at = if scan {
            rounds - 1
        } else {
            rounds.saturating_sub(2)
        };
        if round == measure_at {
            per_source = (live() - before) as f64 / d.tracked_sources().max(1) as f64;
        }
    }
    let time = start.elapsed();
    let per_ban = (live() - before) as f64 / d.history_len().max(1) as f64;
    Figures {
        bans,
        events,
        time,
        per_source,
        per_ban,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[u32] = if full {
        &[100_000, 1_000_000]
    } else {
        &[1_000, 10_000]
    };
    println!(
        "sipban detector benchmark ({}): interleaved sources x 3 attempts, all within find_time",
        if full { "full" } else { "smoke" }
    );
    for &n in sizes {
        let f = botnet(n, 3, false);
        println!(
            "max_failures = 3        {n:>8} sources: {:>8} banned ({}), {:>7.3} s, {:>10.0} events/s, \
             {:>5.1} bytes/tracked source, {:>5.1} bytes/banned source (history)",
            f.bans,
            if f.bans == n as usize {
                "all: met"
            } else {
                "MISSED"
            },
            f.time.as_secs_f64(),
            f.events as f64 / f.time.as_secs_f64(),
            f.per_source,
            f.per_ban
        );
        assert_eq!(f.bans, n as usize, "every source banned");
    }
    // The recommended rules with state for every rule: flood times and
    // accounts (3 probes each: under every threshold, nobody is banned).
    let n = if full { 100_000 } else { 1_000 };
    let f = botnet(n, 3, true);
    println!(
        "recommended rules, svwar {n:>8} sources: {:>8} banned, {:>7.3} s, {:>10.0} events/s, \
         {:>5.1} bytes/tracked source (flood times and 3 accounts each)",
        f.bans,
        f.time.as_secs_f64(),
        f.events as f64 / f.time.as_secs_f64(),
        f.per_source
    );
}
