//! One run of traffic between two namespaces and the figures of many:
//! the pair of namespaces, the sampling threads (listener, conntrack
//! sampler, sender, each in its namespace) and the medians.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::super::blast::{self, Received, Sent, Traffic};
use super::super::netns::{self, NamedNetns};
use super::super::sh;
use super::{PBX, SENDER, SIP};

/// The listener stops this long after the last packet.
const QUIET: Duration = Duration::from_millis(50);

/// A pbx and a sender namespace joined by a veth pair.
pub(super) struct Pair {
    pub(super) pbx: NamedNetns,
    pub(super) atk: NamedNetns,
}

impl Pair {
    pub(super) fn new() -> Pair {
        let (p, a) = (format!("{PBX}/16"), format!("{SENDER}/16"));
        let (pbx, atk) = netns::wire("pkt", &[p.as_str()], &[a.as_str()]);
        Pair { pbx, atk }
    }

    /// `PROG ARGS` inside the pbx namespace, fed `stdin`.
    pub(super) fn pbx_run(&self, prog: &str, args: &[&str], stdin: &str) {
        let mut all = vec!["netns", "exec", &self.pbx.name, prog];
        all.extend_from_slice(args);
        sh("ip", &all, Some(stdin));
    }
}

/// Runs `f` on a thread inside `ns` (threads and processes it starts stay
/// there).
pub(super) fn in_ns<T: Send>(ns: &NamedNetns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            f()
        })
        .join()
        .expect("thread in a namespace")
    })
}

/// One run of `t` from `pair`'s sender to its pbx's listener.
pub(super) struct Sample {
    pub(super) sent: Sent,
    pub(super) got: Received,
    /// Datagrams the listener's buffer had no room for.
    pub(super) overflow: u64,
    /// Conntrack entries before and at most during the run.
    pub(super) conntrack: Option<(u64, u64)>,
}

impl Sample {
    /// Received packets per second of the run.
    pub(super) fn pps(&self) -> f64 {
        self.got.packets as f64 / self.sent.elapsed.as_secs_f64().max(1e-9)
    }

    /// Received packets per second of the sender's CPU time.
    pub(super) fn per_cpu(&self) -> f64 {
        self.got.packets as f64 / self.sent.cpu.as_secs_f64().max(1e-9)
    }
}

pub(super) fn sample(pair: &Pair, t: &Traffic, watch: Option<Ipv4Addr>, conntrack: bool) -> Sample {
    let done = AtomicBool::new(false);
    let done = &done;
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let ready = ready_tx.clone();
        let counter = s.spawn(move || {
            pair.pbx.enter();
            let l = blast::listener(SocketAddrV4::new(PBX, SIP)).expect("listener");
            let before = blast::udp_counter("RcvbufErrors").unwrap_or(0);
            let _ = ready.send(());
            let got = blast::count(&l, watch, done, QUIET).expect("counting");
            let after = blast::udp_counter("RcvbufErrors").unwrap_or(0);
            (got, after.saturating_sub(before))
        });
        let tracker = conntrack.then(|| {
            let ready = ready_tx.clone();
            s.spawn(move || {
                pair.pbx.enter();
                let before = blast::conntrack_count();
                let _ = ready.send(());
                let mut most = before;
                while !done.load(Ordering::SeqCst) {
                    most = most.max(blast::conntrack_count());
                    std::thread::sleep(Duration::from_millis(10));
                }
                (before, most.max(blast::conntrack_count()))
            })
        });
        drop(ready_tx);
        for _ in 0..1 + usize::from(conntrack) {
            ready_rx.recv().expect("listener ready");
        }
        let sent = s
            .spawn(|| {
                pair.atk.enter();
                blast::send(t)
            })
            .join()
            .expect("sender")
            .expect("sending");
        done.store(true, Ordering::SeqCst);
        let (got, overflow) = counter.join().expect("counter");
        let conntrack = tracker.map(|t| t.join().expect("conntrack sampler"));
        Sample {
            sent,
            got,
            overflow,
            conntrack,
        }
    })
}

/// Median, low and high.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    (at(v.len() / 2), at(0), at(v.len().saturating_sub(1)))
}

pub(super) fn rate(pps: f64) -> String {
    if pps >= 10_000.0 {
        format!("{:.0}k/s", pps / 1000.0)
    } else {
        format!("{pps:.0}/s")
    }
}

fn show((mid, lo, hi): (f64, f64, f64)) -> String {
    format!("{} ({}-{})", rate(mid), rate(lo), rate(hi))
}

/// Both sides of one run pair: with the ruleset, without.
#[derive(Default)]
pub(super) struct Sides {
    with: Vec<f64>,
    without: Vec<f64>,
    /// with / without, per pair (neighbours share the machine's load).
    ratios: Vec<f64>,
}

impl Sides {
    pub(super) fn push(&mut self, with: f64, without: f64) {
        self.with.push(with);
        self.without.push(without);
        self.ratios.push(with / without.max(1e-9));
    }

    pub(super) fn ratio(&self) -> f64 {
        spread(self.ratios.clone()).0
    }

    pub(super) fn text(&self) -> String {
        format!(
            "{} vs {}: {:>5.1}%",
            show(spread(self.with.clone())),
            show(spread(self.without.clone())),
            self.ratio() * 100.0
        )
    }
}
