//! What a ban blocks, on the wire: with the default config a banned source
//! gets no answer over UDP 5060, TCP 5060 and TCP/TLS 5061, IPv4 and IPv6,
//! on nftables and ipset (and on the chain backend given the same ports);
//! `block = all` cuts it off on every other port too; a deny entry covers
//! every SIP transport as well; and the ipset backend fills the 2024
//! original's `hash:net` set with its INPUT rule (`-i IFACE -m set
//! --match-set NAME src -j RULE`).
//!
//! Every test runs in network namespaces it creates (a pbx and an attacker
//! joined by a veth pair); a firewall command is only ever run in them.
//! Needs root, nft, ipset, iptables, ip6tables and iproute2.

mod netns;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use netns::{NamedNetns, assert_cut_off, assert_reaches, run_ok, runtime};
use sipban::config::Config;
use sipban::daemon::build_backend;
use sipban::firewall::{
    Action, Backend, Block, Firewall, Hook, Interface, IpsetBackend, Ownership, Scope, SetSettings,
    SetType,
};

const V4: &str = "203.0.113.7";
const V6: &str = "2001:db8::7";
const NEIGHBOUR4: &str = "203.0.113.8";
const NEIGHBOUR6: &str = "2001:db8::8";
const PBX4: &str = "203.0.113.1";
const PBX6: &str = "2001:db8::1";
const MIN: Duration = Duration::from_secs(60);
/// A port that is no SIP port.
const OTHER: u16 = 6000;

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
    fn name(self) -> &'static str {
        match self {
            Kind::Nft => "nftables",
            Kind::Ipset => "ipset",
            Kind::Chain => "chain",
        }
    }

    /// The backend the daemon builds from the shipped defaults plus
    /// `extra` `[firewall]` lines. The chain is given the set backends'
    /// ports (alone it keeps the original's UDP jump).
    fn backend(self, extra: &str) -> Box<dyn Backend> {
        let ports = match self {
            Kind::Chain => "ports = \"udp/5060, tcp/5060, tcp/5061\"\n",
            _ => "",
        };
        let text = format!(
            "[iptables]\npath = \"/usr/sbin/\"\n\n[firewall]\nbackend = {}\n{ports}{extra}",
            self.name()
        );
        let c = Config::parse(&text, Path::new("t.conf"))
            .expect("config")
            .config;
        build_backend(&c, false)
    }
}

/// pbx (.1, ::1) and attacker (.7, .8, ::7, ::8) joined by `sb-pbx` /
/// `sb-atk`.
fn wire() -> (NamedNetns, NamedNetns) {
    netns::wire(
        "sb",
        &["203.0.113.1/24", "2001:db8::1/64"],
        &[
            "203.0.113.7/24",
            "203.0.113.8/24",
            "2001:db8::7/64",
            "2001:db8::8/64",
        ],
    )
}

/// UDP sockets of the attacker's namespace, each from `local` to `port`
/// of the pbx's address of its family.
fn udp_from(atk: &NamedNetns, locals: [&str; 4], port: u16) -> [UdpSocket; 4] {
    netns::attacker_sockets(atk, addr(PBX4, port), addr(PBX6, port), locals)
}

/// Whether a TCP connection from `from` (in the attacker's namespace) to
/// `to` is accepted within half a second (a dropped SYN is never answered, a
/// rejected one is refused: both are no).
fn tcp_connects(atk: &NamedNetns, from: &str, to: SocketAddr) -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            atk.enter();
            runtime().block_on(async {
                let sock = if to.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .expect("tcp socket");
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

/// TCP listeners on the pbx's addresses, the SIP ports and `OTHER`.
fn tcp_listeners() -> Vec<TcpListener> {
    let mut out = Vec::new();
    for host in [PBX4, PBX6] {
        for port in [5060, 5061, OTHER] {
            out.push(TcpListener::bind(addr(host, port)).expect("tcp listen"));
        }
    }
    out
}

/// Every SIP transport from `from` reaches the pbx or none does.
fn assert_tcp(atk: &NamedNetns, from: &str, open: bool, when: &str) {
    let pbx = if ip(from).is_ipv4() { PBX4 } else { PBX6 };
    for port in [5060, 5061] {
        assert_eq!(
            tcp_connects(atk, from, addr(pbx, port)),
            open,
            "{when}: TCP {from} -> {pbx}:{port}"
        );
    }
}

fn banned_source_gets_no_answer_on_any_sip_transport(kind: Kind) {
    let (pbx, atk) = wire();
    let [bad4, good4, bad6, good6] = udp_from(&atk, [V4, NEIGHBOUR4, V6, NEIGHBOUR6], 5060);
    let [other4, _, other6, _] = udp_from(&atk, [V4, NEIGHBOUR4, V6, NEIGHBOUR6], OTHER);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = netns::listeners(addr(PBX4, 5060), addr(PBX6, 5060));
        let (olisten4, olisten6) = netns::listeners(addr(PBX4, OTHER), addr(PBX6, OTHER));
        let _tcp = tcp_listeners();
        let fw = Firewall::start(kind.backend(""))
            .await
            .expect("backend starts");
        let k = kind.name();
        assert_reaches(&bad4, &listen4, &format!("{k}: UDP before the ban"));
        assert_tcp(&atk, V4, true, &format!("{k}: before the ban"));
        assert_tcp(&atk, V6, true, &format!("{k}: before the ban"));

        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        assert_cut_off(&bad4, &listen4, &format!("{k}: UDP 5060, banned"));
        assert_cut_off(&bad6, &listen6, &format!("{k}: UDP 5060, banned (IPv6)"));
        assert_tcp(&atk, V4, false, &format!("{k}: banned"));
        assert_tcp(&atk, V6, false, &format!("{k}: banned (IPv6)"));
        // Only the SIP ports: the rest of the host still answers.
        assert_reaches(&other4, &olisten4, &format!("{k}: UDP {OTHER}, banned"));
        assert_reaches(&other6, &olisten6, &format!("{k}: UDP {OTHER}, banned"));
        assert!(
            tcp_connects(&atk, V4, addr(PBX4, OTHER)),
            "{k}: TCP {OTHER}"
        );
        // The neighbours are not banned.
        assert_reaches(&good4, &listen4, &format!("{k}: a neighbour"));
        assert_reaches(&good6, &listen6, &format!("{k}: a neighbour (IPv6)"));
        assert_tcp(&atk, NEIGHBOUR4, true, &format!("{k}: a neighbour"));
        assert_tcp(&atk, NEIGHBOUR6, true, &format!("{k}: a neighbour (IPv6)"));

        // A deny entry covers every SIP transport too.
        fw.set_denied(vec![
            format!("{NEIGHBOUR4}/32").parse().unwrap(),
            format!("{NEIGHBOUR6}/128").parse().unwrap(),
        ])
        .await
        .expect("deny entries");
        assert_cut_off(&good4, &listen4, &format!("{k}: UDP, denied"));
        assert_cut_off(&good6, &listen6, &format!("{k}: UDP, denied (IPv6)"));
        assert_tcp(&atk, NEIGHBOUR4, false, &format!("{k}: denied"));
        assert_tcp(&atk, NEIGHBOUR6, false, &format!("{k}: denied (IPv6)"));
        fw.set_denied(Vec::new())
            .await
            .expect("deny entries cleared");
        assert_tcp(&atk, NEIGHBOUR4, true, &format!("{k}: no longer denied"));

        fw.delete(ip(V4));
        fw.delete(ip(V6));
        fw.sync().await;
        assert_reaches(&bad4, &listen4, &format!("{k}: UDP after the unban"));
        assert_tcp(&atk, V4, true, &format!("{k}: after the unban"));
        assert_tcp(&atk, V6, true, &format!("{k}: after the unban"));
        fw.shutdown().await.expect("shutdown");
    });
}

fn block_all_cuts_a_banned_source_off_every_port(kind: Kind) {
    let (pbx, atk) = wire();
    let [bad4, good4, bad6, _] = udp_from(&atk, [V4, NEIGHBOUR4, V6, NEIGHBOUR6], OTHER);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = netns::listeners(addr(PBX4, OTHER), addr(PBX6, OTHER));
        let _tcp = tcp_listeners();
        let fw = Firewall::start(kind.backend("block = all\n"))
            .await
            .expect("backend starts");
        let k = kind.name();
        assert!(tcp_connects(&atk, V4, addr(PBX4, OTHER)), "{k}: before");
        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        assert_cut_off(&bad4, &listen4, &format!("{k}: UDP {OTHER}, banned"));
        assert_cut_off(&bad6, &listen6, &format!("{k}: UDP {OTHER}, banned (IPv6)"));
        for port in [5060, 5061, OTHER] {
            assert!(
                !tcp_connects(&atk, V4, addr(PBX4, port)),
                "{k}: TCP {port}, banned"
            );
            assert!(
                !tcp_connects(&atk, V6, addr(PBX6, port)),
                "{k}: TCP {port}, banned (IPv6)"
            );
        }
        assert_reaches(&good4, &listen4, &format!("{k}: a neighbour"));
        assert!(tcp_connects(&atk, NEIGHBOUR4, addr(PBX4, OTHER)), "{k}");
        fw.shutdown().await.expect("shutdown");
        assert!(tcp_connects(&atk, V4, addr(PBX4, OTHER)), "{k}: after");
    });
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
    banned_source_gets_no_answer_on_any_sip_transport,
    block_all_cuts_a_banned_source_off_every_port,
);

/// The 2024 original SIPban's set, as the ipset backend fills it for the
/// `[ipset]` mapping: one `hash:net` set named freely (no `-v4`), with
/// timeouts, and the original's rule in filter INPUT. Over netlink and
/// through `ipset restore` alike.
fn hash_net_set_with_the_originals_input_rule(spawn: bool) {
    let (pbx, atk) = wire();
    let [bad4, good4, _, _] = udp_from(&atk, [V4, NEIGHBOUR4, V6, NEIGHBOUR6], OTHER);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, _listen6) = netns::listeners(addr(PBX4, OTHER), addr(PBX6, OTHER));
        let action4 = Action::parse("DROP", false).unwrap();
        let settings = SetSettings {
            bin_dir: "/usr/sbin/".into(),
            table: "inet sipban".into(),
            set4: "sipban".into(),
            set6: "sipban-v6".into(),
            scope: Scope {
                block: Block::All,
                interface: Some(Interface::parse("sb-pbx").unwrap()),
                ..Scope::default()
            },
            action6: action4.to_ipv6(),
            action4,
            hook: Hook::Filter,
            mode: Ownership::Own,
            deny4: None,
            deny6: None,
        };
        let backend = IpsetBackend::with_runner(settings, spawn).with_set_type(SetType::Net);
        let fw = Firewall::start(Box::new(backend))
            .await
            .expect("backend starts");
        let header = run_ok("ipset", &["list", "sipban", "-t"]);
        assert!(header.contains("Type: hash:net"), "{header}");
        assert!(header.contains("family inet "), "{header}");
        assert!(header.contains(" timeout "), "{header}");
        let input: Vec<String> = run_ok("iptables", &["-w", "-S", "INPUT"])
            .lines()
            .filter(|l| l.contains("--match-set"))
            .map(str::to_string)
            .collect();
        assert_eq!(
            input,
            vec!["-A INPUT -i sb-pbx -m set --match-set sipban src -j DROP".to_string()]
        );
        fw.add(ip(V4), Duration::from_secs(600));
        fw.sync().await;
        let saved = run_ok("ipset", &["save", "sipban"]);
        let line = saved
            .lines()
            .find(|l| l.starts_with("add sipban 203.0.113.7"))
            .unwrap_or_else(|| panic!("no element in\n{saved}"));
        assert!(line.contains(" timeout "), "{line}");
        let held = fw.held().await.expect("held");
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(
            held[0]
                .remaining
                .is_some_and(|r| r > Duration::from_secs(590))
        );
        assert_cut_off(&bad4, &listen4, "banned, any port");
        assert_reaches(&good4, &listen4, "a neighbour");
        // The administrator's own network in the set is theirs: never
        // listed as a ban, never reconciled away.
        run_ok("ipset", &["add", "sipban", "198.51.100.0/24"]);
        let report = fw.reconcile(vec![(ip(V4), MIN)]).await.expect("reconcile");
        assert_eq!((report.added, report.removed), (0, 0), "{report:?}");
        fw.delete(ip(V4));
        fw.sync().await;
        assert_reaches(&bad4, &listen4, "after the unban");
        fw.shutdown().await.expect("shutdown");
        assert!(!run_ok("ipset", &["list", "-n"]).contains("sipban"));
        assert!(!run_ok("iptables-save", &[]).contains("sipban"));
    });
}

#[test]
fn ipset_hash_net_set_with_the_originals_input_rule() {
    hash_net_set_with_the_originals_input_rule(false)
}

#[test]
fn ipset_tool_hash_net_set_with_the_originals_input_rule() {
    hash_net_set_with_the_originals_input_rule(true)
}
