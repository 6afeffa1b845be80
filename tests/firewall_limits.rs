//! `[limits]` on the wire, for nftables, ipset and the chain backend: the
//! SIP rate lets about the burst of a 1,000-packet flood through and all of
//! an allowed source's; the kernel counts the excess per source; a source
//! that keeps exceeding the rate is banned by the daemon with the reason
//! `rate limit` (and counted in `report`) while an allowed one never is;
//! TFTP and new TCP connections are limited per source; large DNS answers
//! are dropped; drift is repaired and stop leaves nothing behind.
//!
//! Packets are counted, not timed: a burst is sent within a few
//! milliseconds, in which the rates here refill at most a packet or two.
//!
//! Every test runs in network namespaces it creates (a pbx and an attacker
//! joined by a veth pair); a firewall command is only ever run in them.
//! Needs root, nft, ipset, iptables, ip6tables and iproute2.

mod netns;
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netns::{NamedNetns, eventually, nothing_yet, run_ok, runtime};
use sipban::clock::Clock;
use sipban::config::Config;
use sipban::daemon::{Daemon, build_backend};
use sipban::firewall::chain::ChainSettings;
use sipban::firewall::{
    Action, Backend, ChainBackend, Firewall, Hook, IpsetBackend, Limits, NftBackend, Ownership,
    Rate, RateLimit, Scope, SetSettings,
};
use sipban::policy::Whitelist;
use support::{ConsoleClient, FakeAmi};

const LIMITED4: &str = "203.0.113.7";
const ALLOWED4: &str = "203.0.113.8";
const LIMITED6: &str = "2001:db8::7";
const PBX4: &str = "203.0.113.1";
const PBX6: &str = "2001:db8::1";
const FLOOD: usize = 1000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(host: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(host), port)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nft,
    Ipset,
    Chain,
}

impl Kind {
    /// The backend the daemon builds from a config with `limits` as its
    /// `[limits]` section (the chain given the set backends' ports).
    fn configured(self, limits: &str) -> Box<dyn Backend> {
        let (name, ports) = match self {
            Kind::Nft => ("nftables", ""),
            Kind::Ipset => ("ipset", ""),
            Kind::Chain => ("chain", "ports = \"udp/5060, tcp/5060, tcp/5061\"\n"),
        };
        let text = format!(
            "[iptables]\npath = \"/usr/sbin/\"\nrule = DROP\n\n[firewall]\nbackend = {name}\n{ports}\n\
             [limits]\n{limits}"
        );
        let c = Config::parse(&text, std::path::Path::new("t.conf"))
            .expect("config")
            .config;
        build_backend(&c, false)
    }

    fn backend(self, limits: Limits) -> Box<dyn Backend> {
        let action4 = Action::Drop;
        match self {
            Kind::Chain => Box::new(
                ChainBackend::new(ChainSettings {
                    path: "/usr/sbin/".into(),
                    chain: "sipban-udp".into(),
                    scope: Scope::default(),
                    action_v6: action4.to_ipv6(),
                    action_v4: action4,
                })
                .with_limits(limits),
            ),
            _ => {
                let s = SetSettings {
                    bin_dir: "/usr/sbin/".into(),
                    table: "inet sipban".into(),
                    set4: "sipban-udp-v4".into(),
                    set6: "sipban-udp-v6".into(),
                    scope: Scope::default(),
                    action6: action4.to_ipv6(),
                    action4,
                    hook: Hook::Raw,
                    mode: Ownership::Own,
                    deny4: None,
                    deny6: None,
                };
                match self {
                    Kind::Nft => Box::new(NftBackend::new(s).with_limits(limits)),
                    _ => Box::new(IpsetBackend::new(s).with_limits(limits)),
                }
            }
        }
    }
}

fn wire() -> (NamedNetns, NamedNetns) {
    netns::wire(
        "lim",
        &["203.0.113.1/24", "2001:db8::1/64"],
        &["203.0.113.7/24", "203.0.113.8/24", "2001:db8::7/64"],
    )
}

/// UDP sockets of the attacker's namespace to `port` of the pbx.
fn udp_from(atk: &NamedNetns, port: u16) -> [UdpSocket; 3] {
    netns::attacker_sockets(
        atk,
        addr(PBX4, port),
        addr(PBX6, port),
        [LIMITED4, ALLOWED4, LIMITED6],
    )
}

/// A UDP listener that can queue a whole flood (root may exceed
/// `rmem_max`).
fn big_listener(at: SocketAddr) -> UdpSocket {
    let l = UdpSocket::bind(at).unwrap_or_else(|e| panic!("bind {at}: {e}"));
    let size: libc::c_int = 16 << 20;
    // SAFETY: a valid socket and a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE");
    l.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    l
}

/// `n` datagrams at once, in runs of 100 (the veth's backlog holds 1,000).
fn burst(from: &UdpSocket, n: usize) {
    for i in 0..n {
        from.send(b"REGISTER sip:pbx SIP/2.0").expect("send");
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Datagrams each source got through to `listeners` while `send` ran.
fn received(listeners: &[&UdpSocket], send: impl FnOnce()) -> HashMap<IpAddr, usize> {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let counters: Vec<_> = listeners
            .iter()
            .map(|l| {
                let done = &done;
                s.spawn(move || {
                    let mut counts: HashMap<IpAddr, usize> = HashMap::new();
                    let mut buf = [0u8; 4096];
                    let mut quiet_since: Option<Instant> = None;
                    loop {
                        match l.recv_from(&mut buf) {
                            Ok((_, src)) => {
                                *counts.entry(src.ip()).or_default() += 1;
                                quiet_since = None;
                            }
                            Err(e) if nothing_yet(&e) => {
                                if done.load(Ordering::SeqCst) {
                                    let t = quiet_since.get_or_insert_with(Instant::now);
                                    if t.elapsed() > Duration::from_millis(300) {
                                        return counts;
                                    }
                                }
                            }
                            Err(e) => panic!("listener: {e}"),
                        }
                    }
                })
            })
            .collect();
        send();
        done.store(true, Ordering::SeqCst);
        let mut all = HashMap::new();
        for c in counters {
            for (ip, n) in c.join().expect("counter") {
                *all.entry(ip).or_default() += n;
            }
        }
        all
    })
}

/// Stops the flood threads however the test ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn sip_limit(ban_after: Option<Duration>) -> Limits {
    Limits {
        sip: Some(RateLimit::SIP),
        sip_ban_after: ban_after,
        ..Limits::default()
    }
}

/// Our objects gone from every tool's listing.
fn assert_nothing_left() {
    for tool in ["iptables-save", "ip6tables-save"] {
        let saved = run_ok(tool, &[]);
        assert!(
            !saved.contains("sipban") && !saved.contains("hashlimit"),
            "{tool} still has:\n{saved}"
        );
    }
    let sets = run_ok("ipset", &["list", "-n"]);
    assert!(!sets.contains("sipban"), "ipsets left: {sets}");
    let ruleset = run_ok("nft", &["list", "ruleset"]);
    assert!(!ruleset.contains("sipban"), "nft ruleset:\n{ruleset}");
}

/// Limits own objects: someone removes them, the check puts them back.
fn sabotage_limits(kind: Kind) {
    match kind {
        Kind::Nft => {
            run_ok("nft", &["flush", "chain", "inet", "sipban", "sipban-limit"]);
            run_ok(
                "nft",
                &["delete", "chain", "inet", "sipban", "sipban-limit"],
            );
        }
        Kind::Ipset => {
            run_ok("iptables", &["-w", "-t", "raw", "-F", "sipban-udp-limit"]);
        }
        Kind::Chain => {
            run_ok("iptables", &["-w", "-F", "sipban-udp-limit"]);
        }
    }
}

fn sip_rate_lets_the_burst_through_and_the_allowed_all(kind: Kind) {
    let (pbx, atk) = wire();
    let [limited4, allowed4, limited6] = udp_from(&atk, 5060);
    pbx.enter();
    runtime().block_on(async move {
        let l4 = big_listener(addr(PBX4, 5060));
        let l6 = big_listener(addr(PBX6, 5060));
        let mut backend = kind.backend(sip_limit(Some(Duration::from_secs(30))));
        let mut watch = backend.flood_watch().expect("the excess is counted");
        let fw = Firewall::start(backend).await.expect("backend starts");
        fw.set_allowed(vec![
            format!("{ALLOWED4}/32").parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ])
        .await
        .expect("exempt networks");

        let got = received(&[&l4, &l6], || {
            burst(&limited4, FLOOD);
            burst(&allowed4, FLOOD);
            burst(&limited6, FLOOD);
        });
        let n = |s: &str| got.get(&ip(s)).copied().unwrap_or(0);
        let burst_size = RateLimit::SIP.burst as usize;
        for src in [LIMITED4, LIMITED6] {
            assert!(
                (burst_size..=burst_size + 20).contains(&n(src)),
                "{kind:?}: {src} got {} of {FLOOD} through (burst {burst_size}): {got:?}",
                n(src)
            );
        }
        assert_eq!(n(ALLOWED4), FLOOD, "{kind:?}: the allowed source: {got:?}");

        // The kernel counted every packet over the rate, per source.
        let counts: HashMap<IpAddr, u64> =
            watch.reader.read().expect("counts").into_iter().collect();
        for src in [LIMITED4, LIMITED6] {
            assert_eq!(
                counts.get(&ip(src)).copied(),
                Some((FLOOD - n(src)) as u64),
                "{kind:?}: {counts:?}"
            );
        }
        assert!(!counts.contains_key(&ip(ALLOWED4)), "{counts:?}");

        // Drift: the limit rules flushed by hand come back.
        let report = fw.reconcile(Vec::new()).await.expect("check");
        assert!(report.in_sync(), "{kind:?}: {report:?}");
        sabotage_limits(kind);
        let report = fw.reconcile(Vec::new()).await.expect("repair");
        assert!(!report.repaired.is_empty(), "{kind:?}: {report:?}");
        let report = fw.reconcile(Vec::new()).await.expect("check");
        assert!(report.in_sync(), "{kind:?}: after the repair: {report:?}");

        fw.shutdown().await.expect("shutdown");
        assert_nothing_left();
    });
}

fn persistent_flooder_is_banned_for_rate_limit(kind: Kind) {
    let (pbx, atk) = wire();
    let [limited4, allowed4, _] = udp_from(&atk, 5060);
    pbx.enter();
    runtime().block_on(async move {
        let _l4 = big_listener(addr(PBX4, 5060));
        let fake = FakeAmi::start().await;
        let wl = Whitelist::parse(&format!("{ALLOWED4}\n"), "t.wl".as_ref()).unwrap();
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = support::settings(&fake, &dir.path().join("sipban.dump"), wl);
        let backend = kind.configured("sip_rate = 50/second\nsip_burst = 100\nsip_ban_after = 2\n");
        let daemon = Daemon::start(settings, backend, Clock::system())
            .await
            .expect("daemon starts");
        fake.wait_logins(1).await;

        // Both flood on: 100 packets every 20 ms, 10 times the rate.
        let stop = Arc::new(AtomicBool::new(false));
        let floods: Vec<_> = [&limited4, &allowed4]
            .into_iter()
            .map(|sock| {
                let (sock, stop) = (sock.try_clone().expect("socket"), Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        for _ in 0..100 {
                            let _ = sock.send(b"OPTIONS sip:pbx SIP/2.0");
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        let _stop = StopOnDrop(Arc::clone(&stop));
        eventually("the flooder's ban", Duration::from_secs(20), || {
            daemon.bans.get(ip(LIMITED4)).is_some_and(|b| b.active)
        })
        .await;
        stop.store(true, Ordering::SeqCst);
        for f in floods {
            f.join().expect("flood thread");
        }
        let ban = daemon.bans.get(ip(LIMITED4)).expect("banned");
        assert_eq!(ban.reason, "rate limit", "{kind:?}");
        assert!(
            daemon.bans.get(ip(ALLOWED4)).is_none(),
            "{kind:?}: the allowed source was banned"
        );
        let (mut console, _) = ConsoleClient::connect(daemon.console_addr).await;
        let report = console.command("report").await;
        let section = report
            .split("Packets over the SIP rate limit, by source:")
            .nth(1)
            .unwrap_or_else(|| panic!("{kind:?}: no rate-limit hits in\n{report}"));
        assert!(section.contains(LIMITED4), "{report}");
        assert!(!section.contains(ALLOWED4), "{report}");
        assert!(report.contains("RateLimit"), "{report}");
        drop(console);
        daemon.stop().await.expect("daemon stops");
        assert_nothing_left();
    });
}

fn static_protections_limit_tftp_new_connections_and_large_dns_answers(kind: Kind) {
    let (pbx, atk) = wire();
    let [tftp_limited, tftp_allowed, _] = udp_from(&atk, 69);
    // DNS "answers" from port 53 of the attacker's side.
    let dns = std::thread::scope(|s| {
        s.spawn(|| {
            atk.enter();
            let sock = UdpSocket::bind(addr(LIMITED4, 53)).expect("bind :53");
            sock.connect(addr(PBX4, 40053)).expect("connect");
            sock
        })
        .join()
        .expect("attacker thread")
    });
    pbx.enter();
    runtime().block_on(async move {
        let tftp = big_listener(addr(PBX4, 69));
        let resolver = big_listener(addr(PBX4, 40053));
        let _tcp = TcpListener::bind(addr(PBX4, 5061)).expect("tcp listen");
        let limits = Limits {
            tftp: Some(RateLimit {
                rate: Rate::parse("10/minute").unwrap(),
                burst: 20,
            }),
            tcp_connect: Some(RateLimit {
                rate: Rate::parse("1/minute").unwrap(),
                burst: 3,
            }),
            dns: true,
            ..Limits::default()
        };
        let fw = Firewall::start(kind.backend(limits))
            .await
            .expect("backend starts");
        fw.set_allowed(vec![format!("{ALLOWED4}/32").parse().unwrap()])
            .await
            .expect("exempt networks");

        let got = received(&[&tftp], || {
            burst(&tftp_limited, 100);
            burst(&tftp_allowed, 100);
        });
        let limited = got.get(&ip(LIMITED4)).copied().unwrap_or(0);
        assert!((20..=22).contains(&limited), "{kind:?}: TFTP {got:?}");
        assert_eq!(got.get(&ip(ALLOWED4)), Some(&100), "{kind:?}: TFTP {got:?}");

        let connects = |from: &str| {
            (0..6)
                .filter(|_| tcp_connects(&atk, from, addr(PBX4, 5061)))
                .count()
        };
        assert_eq!(
            connects(LIMITED4),
            3,
            "{kind:?}: new connections past the burst"
        );
        assert_eq!(connects(ALLOWED4), 6, "{kind:?}: the allowed source");

        // Answers over 2048 bytes go (fragmented on the wire, measured
        // whole); smaller ones arrive.
        let got = received(&[&resolver], || {
            for size in [2100, 1000, 3000, 2000] {
                dns.send(&vec![0u8; size]).expect("send");
            }
        });
        assert_eq!(got.get(&ip(LIMITED4)), Some(&2), "{kind:?}: DNS {got:?}");

        fw.shutdown().await.expect("shutdown");
        assert_nothing_left();
    });
}

/// Whether a TCP connection from `from` (in the attacker's namespace) to
/// `to` is accepted within half a second.
fn tcp_connects(atk: &NamedNetns, from: &str, to: SocketAddr) -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            atk.enter();
            runtime().block_on(async {
                let sock = tokio::net::TcpSocket::new_v4().expect("tcp socket");
                sock.bind(addr(from, 0)).expect("bind");
                matches!(
                    tokio::time::timeout(Duration::from_millis(500), sock.connect(to)).await,
                    Ok(Ok(_))
                )
            })
        })
        .join()
        .expect("attacker thread")
    })
}

macro_rules! each_backend {
    ($($scenario:ident),* $(,)?) => {
        mod nftables {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Nft)
            })*
        }
        mod ipset {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Ipset)
            })*
        }
        mod chain {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Chain)
            })*
        }
    };
}

each_backend!(
    sip_rate_lets_the_burst_through_and_the_allowed_all,
    persistent_flooder_is_banned_for_rate_limit,
    static_protections_limit_tftp_new_connections_and_large_dns_answers,
);
