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
//!   with every packet). For reference: the bans alone (the issue's own
//!   measurement), the bans and the deny list (the rest is what the limits
//!   cost), and the chain backend, rule per ban.
//! - A banned source flooding at 100k packets/s with a new source port
//!   every packet: what reaches the listener, and the pbx's conntrack
//!   table (a host rule using conntrack is loaded, as on any stateful
//!   host) against the same flood from an allowed source.
//!
//! Traffic only ever goes between the namespaces created here.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use sipban::firewall::chain::ChainSettings;
use sipban::firewall::{
    Action, Backend, ChainBackend, Firewall, IpsetBackend, Limits, NftBackend, RateLimit, Scope,
};

mod runs;

use super::blast::{self, Traffic};
use super::{addr, netns, verdict};
use runs::{Pair, Sides, in_ns, rate, sample};

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
                run: Duration::from_millis(50),
                flood: Duration::from_millis(100),
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
    let mut s = Sizes::new(full);
    // SIPBAN_BENCH_DENY: another deny list size (what the deny set costs).
    if let Some(n) = std::env::var("SIPBAN_BENCH_DENY")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        s.deny = n;
    }
    print(&format!(
        "packets: {}-byte UDP to {PBX}:{SIP} over a veth pair, one sender thread (raw socket, \
         sendmmsg) as fast as it can, received packets/s at the listener: medians (low-high) of {} \
         run(s) of {} ms with the ruleset, each paired with one into a twin namespace with none \
         (ratio: median of the pairs'); second line: the same per second of the sender's CPU \
         (which carries the receive path). Ruleset \"bans only\": {} bans; \"+ deny list\": a \
         {}-network deny list too; the others add the sender on the allow list and every [limits] \
         protection (SIP 50/s, TFTP, TCP connect, DNS). No conntrack in the pbx but for the flood.",
        blast::PAYLOAD,
        s.rounds,
        s.run.as_millis(),
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
