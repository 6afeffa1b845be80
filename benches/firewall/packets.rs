//! Packets through the kernel rules each backend installs (issue 8's
//! packet figures). Two veth pairs between named namespaces: `fw`, whose
//! pbx end holds the backend's ruleset, and `bare`, the same addresses with
//! no ruleset at all. The same sender ([`super::blast`]) sends 64-byte UDP
//! datagrams to the pbx's port 5060 for the same time into each, one after
//! the other, several times; the figure is packets/s counted at the pbx's
//! UDP listener, ruleset against none.
//!
//! - Unbanned sources, with the bans, a deny list and every `[limits]`
//!   protection loaded: one source on the allow list (exempt from the
//!   limits, so the SIP rate does not drop its packets), and 32,000 sources
//!   each below the SIP rate (their meter and hashlimit buckets updated
//!   with every packet). The chain backend, rule per ban, for reference.
//! - A banned source flooding at 100k packets/s with a new source port
//!   every packet: what reaches the listener, and the pbx's conntrack
//!   table (a host rule using conntrack is loaded, as on any stateful
//!   host) against the same flood from an allowed source.
//!
//! Traffic only ever goes between the namespaces created here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use sipban::firewall::chain::ChainSettings;
use sipban::firewall::{
    Action, Backend, ChainBackend, Firewall, IpsetBackend, Limits, NftBackend, RateLimit, Scope,
};

use super::blast::{self, Received, Sent, Traffic};
use super::netns::{self, NamedNetns};
use super::{addr, sh, verdict};

const PBX: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// The test host on the allow list.
const SENDER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// The banned flooder.
const FLOODER: Ipv4Addr = Ipv4Addr::new(10, 77, 66, 6);
/// First of the sources below the limit (10.77.128.1 on).
const POOL: Ipv4Addr = Ipv4Addr::new(10, 77, 128, 1);
/// Sources below the limit: at 700k packets/s each sends ~22/s, under
/// `sip_rate` 50/second, and they fit the meters (65,536 sources) and
/// hashlimit's default table (65,536 on a machine with over 1 GiB).
const POOL_SIZE: u32 = 32_000;
const SIP: u16 = 5060;
/// The flood's packets/s and distinct source ports (each a conntrack
/// tuple, far below nf_conntrack_max).
const FLOOD_RATE: u64 = 100_000;
const FLOOD_PORTS: u16 = 10_000;
/// The listener stops this long after the last packet.
const QUIET: Duration = Duration::from_millis(50);

struct Sizes {
    bans: usize,
    deny: usize,
    chain: usize,
    rounds: usize,
    run: Duration,
    flood: Duration,
}

impl Sizes {
    fn new(full: bool) -> Sizes {
        if full {
            Sizes {
                bans: 100_000,
                deny: 5_000,
                chain: 5_000,
                rounds: 10,
                run: Duration::from_millis(500),
                flood: Duration::from_secs(3),
            }
        } else {
            Sizes {
                bans: 1_000,
                deny: 100,
                chain: 200,
                rounds: 1,
                run: Duration::from_millis(100),
                flood: Duration::from_millis(200),
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Nft,
    Ipset,
    Chain,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Nft => "nftables",
            Kind::Ipset => "ipset",
            Kind::Chain => "chain",
        }
    }
}

/// What a set backend's ruleset holds besides the bans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ruleset {
    /// The bans alone: the issue's own measurement (one set rule).
    BansOnly,
    /// The bans and the deny list: what the limits add is the difference
    /// to the full ruleset.
    BansDeny,
    /// The bans, the deny list, the allow list (the sender) and every
    /// `[limits]` protection.
    Full,
}

/// Every `[limits]` protection on, at the documented numbers.
fn limits() -> Limits {
    Limits {
        sip: Some(RateLimit::SIP),
        sip_ban_after: Some(Duration::from_secs(30)),
        tftp: Some(RateLimit::TFTP),
        tcp_connect: Some(RateLimit::TCP_CONNECT),
        dns: true,
    }
}

fn backend(kind: Kind, ruleset: Ruleset) -> Box<dyn Backend> {
    let limits = match ruleset {
        Ruleset::BansOnly | Ruleset::BansDeny => Limits::OFF,
        Ruleset::Full => limits(),
    };
    match kind {
        Kind::Nft => Box::new(NftBackend::new(super::sets()).with_limits(limits)),
        Kind::Ipset => Box::new(IpsetBackend::new(super::sets()).with_limits(limits)),
        Kind::Chain => Box::new(ChainBackend::new(ChainSettings {
            path: "/usr/sbin/".into(),
            chain: "sipban-udp".into(),
            scope: Scope::default(),
            action_v4: Action::Drop,
            action_v6: Action::Drop,
        })),
    }
}

/// `n` /24s of 100.64.0.0/10, away from every sender.
fn deny_nets(n: usize) -> Vec<IpNet> {
    (0..n as u32)
        .map(|i| {
            let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (i << 8);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base), 24).expect("a /24"))
        })
        .collect()
}

/// A pbx and a sender namespace joined by a veth pair.
struct Pair {
    pbx: NamedNetns,
    atk: NamedNetns,
}

impl Pair {
    fn new() -> Pair {
        let (p, a) = (format!("{PBX}/16"), format!("{SENDER}/16"));
        let (pbx, atk) = netns::wire("pkt", &[p.as_str()], &[a.as_str()]);
        Pair { pbx, atk }
    }

    /// `PROG ARGS` inside the pbx namespace, fed `stdin`.
    fn pbx_run(&self, prog: &str, args: &[&str], stdin: &str) {
        let mut all = vec!["netns", "exec", &self.pbx.name, prog];
        all.extend_from_slice(args);
        sh("ip", &all, Some(stdin));
    }
}

/// Runs `f` on a thread inside `ns` (threads and processes it starts stay
/// there).
fn in_ns<T: Send>(ns: &NamedNetns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            f()
        })
        .join()
        .expect("thread in a namespace")
    })
}

/// The backend started in `fw`'s pbx namespace and loaded: the bans and,
/// for the full ruleset, the deny list and the allow list (the sender); for
/// the chain its rules.
async fn load(kind: Kind, ruleset: Ruleset, fw: &Pair, s: &Sizes) -> Firewall {
    if kind == Kind::Chain {
        // The chain backend takes over a crashed run's rules in one commit:
        // far faster than one `iptables -I` per ban.
        let mut script = String::from("*filter\n:sipban-udp - [0:0]\n");
        for i in 0..s.chain {
            let _ = writeln!(script, "-A sipban-udp -s {}/32 -j DROP", addr(i));
        }
        script.push_str("COMMIT\n");
        fw.pbx_run("iptables-restore", &["--noflush"], &script);
    }
    let b = backend(kind, ruleset);
    let firewall = in_ns(&fw.pbx, move || {
        netns::runtime().block_on(Firewall::start(b))
    })
    .unwrap_or_else(|e| panic!("{}: start: {e}", kind.label()));
    let want = if kind == Kind::Chain {
        s.chain
    } else {
        for i in 0..s.bans {
            firewall.add(addr(i), Duration::from_secs(3600));
        }
        firewall.sync().await;
        if ruleset != Ruleset::BansOnly {
            firewall
                .set_denied(deny_nets(s.deny))
                .await
                .expect("deny list");
        }
        if ruleset == Ruleset::Full {
            firewall
                .set_allowed(vec![IpNet::from(std::net::IpAddr::V4(SENDER))])
                .await
                .expect("allow list");
        }
        s.bans
    };
    let held = firewall.list().await.expect("list").len();
    assert_eq!(held, want, "{}: every ban in the kernel", kind.label());
    firewall
}

/// One run of `t` from `pair`'s sender to its pbx's listener.
struct Sample {
    sent: Sent,
    got: Received,
    /// Datagrams the listener's buffer had no room for.
    overflow: u64,
    /// Conntrack entries before and at most during the run.
    conntrack: Option<(u64, u64)>,
}

impl Sample {
    /// Received packets per second of the run.
    fn pps(&self) -> f64 {
        self.got.packets as f64 / self.sent.elapsed.as_secs_f64().max(1e-9)
    }

    /// Received packets per second of the sender's CPU time.
    fn per_cpu(&self) -> f64 {
        self.got.packets as f64 / self.sent.cpu.as_secs_f64().max(1e-9)
    }
}

fn sample(pair: &Pair, t: &Traffic, watch: Option<Ipv4Addr>, conntrack: bool) -> Sample {
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

fn rate(pps: f64) -> String {
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
struct Sides {
    with: Vec<f64>,
    without: Vec<f64>,
    /// with / without, per pair (neighbours share the machine's load).
    ratios: Vec<f64>,
}

impl Sides {
    fn push(&mut self, with: f64, without: f64) {
        self.with.push(with);
        self.without.push(without);
        self.ratios.push(with / without.max(1e-9));
    }

    fn ratio(&self) -> f64 {
        spread(self.ratios.clone()).0
    }

    fn text(&self) -> String {
        format!(
            "{} vs {}: {:>5.1}%",
            show(spread(self.with.clone())),
            show(spread(self.without.clone())),
            self.ratio() * 100.0
        )
    }
}

/// `t` into `fw` and into `bare`, alternating which goes first; two lines:
/// received packets/s, and per second of the sender's CPU.
fn throughput(label: &str, fw: &Pair, bare: &Pair, t: &Traffic, s: &Sizes) -> String {
    let (mut wall, mut cpu) = (Sides::default(), Sides::default());
    let mut overflow = 0;
    for r in 0..s.rounds {
        let mut run = |pair: &Pair, ruleset: bool| {
            let x = sample(pair, t, None, false);
            assert!(
                x.got.packets > 0,
                "{label}: nothing reached the listener (ruleset: {ruleset})"
            );
            overflow += x.overflow;
            x
        };
        let (with, without) = if r % 2 == 0 {
            let without = run(bare, false);
            (run(fw, true), without)
        } else {
            let with = run(fw, true);
            (with, run(bare, false))
        };
        wall.push(with.pps(), without.pps());
        cpu.push(with.per_cpu(), without.per_cpu());
    }
    format!(
        "packets {label:<40} {}   goal > 90%: {}\n\
         {:<48} per sender CPU second {}   goal > 90%: {}   (listener overflow {overflow})",
        wall.text(),
        verdict(wall.ratio() > 0.9),
        "",
        cpu.text(),
        verdict(cpu.ratio() > 0.9),
    )
}

/// The banned flood and its control from the allowed sender, with a
/// conntrack-using host rule loaded in the pbx.
async fn flood(kind: Kind, fw: &Pair, firewall: &Firewall, s: &Sizes) -> String {
    fw.pbx_run(
        "nft",
        &["-f", "-"],
        "add table inet bench-host\n\
         add chain inet bench-host input { type filter hook input priority 0; policy accept; }\n\
         add rule inet bench-host input ct state established,related accept\n",
    );
    firewall.add(std::net::IpAddr::V4(FLOODER), Duration::from_secs(3600));
    firewall.sync().await;
    let traffic = |from: Ipv4Addr| Traffic {
        sources: vec![from],
        ports: FLOOD_PORTS,
        dest: SocketAddrV4::new(PBX, SIP),
        duration: s.flood,
        rate: Some(FLOOD_RATE),
    };
    let banned = sample(fw, &traffic(FLOODER), Some(FLOODER), true);
    let control = sample(fw, &traffic(SENDER), Some(SENDER), true);
    let (b0, b1) = banned.conntrack.unwrap_or_default();
    let (c0, c1) = control.conntrack.unwrap_or_default();
    assert!(
        control.got.watched > 0 && c1 > c0,
        "{}: the allowed flood must reach the listener and conntrack ({} received, conntrack {c0} -> {c1}): else the banned figures mean nothing",
        kind.label(),
        control.got.watched
    );
    format!(
        "flood   {:<8} banned source at {} ({} sent in {:.1} s, {FLOOD_PORTS} source ports): {} reached the listener (goal 0: {}); conntrack {b0} before, {b1} at most during (goal no growth: {}); the same flood from an allowed source: {} sent, {} received, conntrack {c0} -> {c1}",
        kind.label(),
        rate(banned.sent.pps()),
        banned.sent.packets,
        banned.sent.elapsed.as_secs_f64(),
        banned.got.watched,
        verdict(banned.got.watched == 0),
        verdict(b1 <= b0),
        control.sent.packets,
        control.got.watched,
    )
}

fn print(line: &str) {
    println!("{line}");
    std::io::stdout().flush().ok();
}

/// Every packet figure, printed as it comes.
pub async fn report(full: bool) {
    let s = Sizes::new(full);
    print(&format!(
        "packets: {}-byte UDP to {PBX}:{SIP} over a veth pair, one sender thread (raw socket, \
         sendmmsg) as fast as it can, received packets/s at the listener: medians (low-high) of {} \
         runs of {:.1} s with the ruleset, each paired with one into a twin namespace with none \
         (ratio: median of the pairs'); second line: the same per second of the sender's CPU \
         (which carries the receive path). Ruleset \"bans only\": {} bans; \"+ deny list\": a \
         {}-network deny list too; the others add the sender on the allow list and every [limits] \
         protection (SIP 50/s, TFTP, TCP connect, DNS). No conntrack in the pbx but for the flood.",
        blast::PAYLOAD,
        s.rounds,
        s.run.as_secs_f64(),
        s.bans,
        s.deny
    ));
    let bare = Pair::new();
    let one = Traffic {
        sources: vec![SENDER],
        ports: 1,
        dest: SocketAddrV4::new(PBX, SIP),
        duration: s.run,
        rate: None,
    };
    let many = Traffic {
        sources: (0..POOL_SIZE)
            .map(|i| Ipv4Addr::from(u32::from(POOL) + i))
            .collect(),
        ..one.clone()
    };
    // SIPBAN_BENCH_BACKEND=nftables|ipset|chain runs one backend only.
    let only = std::env::var("SIPBAN_BENCH_BACKEND").ok();
    for kind in [Kind::Nft, Kind::Ipset, Kind::Chain] {
        if only.as_deref().is_some_and(|b| b != kind.label()) {
            continue;
        }
        let name = kind.label();
        if kind == Kind::Chain {
            let fw = Pair::new();
            let firewall = load(kind, Ruleset::Full, &fw, &s).await;
            let label = format!("chain, {} rules, 1 source", s.chain);
            print(&throughput(&label, &fw, &bare, &one, &s));
            firewall.shutdown().await.expect("shutdown");
            continue;
        }
        for (ruleset, what) in [
            (Ruleset::BansOnly, "bans only"),
            (Ruleset::BansDeny, "bans + deny list"),
        ] {
            let fw = Pair::new();
            let firewall = load(kind, ruleset, &fw, &s).await;
            let label = format!("{name}, {what}, 1 source");
            print(&throughput(&label, &fw, &bare, &one, &s));
            firewall.shutdown().await.expect("shutdown");
        }
        let fw = Pair::new();
        let firewall = load(kind, Ruleset::Full, &fw, &s).await;
        let label = format!("{name}, 1 allowed source (exempt)");
        print(&throughput(&label, &fw, &bare, &one, &s));
        let label = format!("{name}, {POOL_SIZE} sources below the limit");
        print(&throughput(&label, &fw, &bare, &many, &s));
        print(&flood(kind, &fw, &firewall, &s).await);
        firewall.shutdown().await.expect("shutdown");
    }
}
