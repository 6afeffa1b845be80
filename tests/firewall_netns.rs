//! The real firewall: the chain backend, the ban manager, the daemon and the
//! `sipban` binary against real iptables/ip6tables, and real packets through
//! a veth pair.
//!
//! Every test runs in network namespaces it creates itself, so the machine's
//! own firewall tables are never touched: either the test thread unshares a
//! private namespace (threads and child processes it starts inherit it), or
//! the test creates named namespaces (`ip netns add`) and enters them with
//! `setns`. Every firewall command run from this file first checks that the
//! calling thread is in the namespace it entered. A test that cannot create
//! or enter its namespace fails; none is ever skipped.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iptables, ip6tables and
//! iproute2.

mod netns;
mod support;

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netns::{
    ChildGuard, NamedNetns, assert_reaches, eventually, in_private_netns, nothing_yet, run, run_ok,
    runtime, text, wait_exit,
};
use sipban::bans::{BanManager, UnbanReason};
use sipban::clock::Clock;
use sipban::daemon::{Daemon, Settings};
use sipban::firewall::chain::ChainSettings;
use sipban::firewall::{Action, Backend, Block, ChainBackend, Firewall, Scope, SipPorts};
use sipban::policy::Whitelist;
use support::{ConsoleClient, FakeAmi};
use tokio_util::sync::CancellationToken;

const CHAIN: &str = "sipban-udp";
const SCOPE: &str = "-p udp --dport 5060";
const REJECT: &str = "REJECT --reject-with icmp-port-unreachable";
const V4: &str = "203.0.113.7";
const V6: &str = "2001:db8::7";
const TOOLS: [&str; 2] = ["iptables", "ip6tables"];

const JUMP: &str = "-A INPUT -p udp -m udp --dport 5060 -j sipban-udp";
const NEW: &str = "-N sipban-udp";
const RETURN: &str = "-A sipban-udp -j RETURN";
const REJECT4: &str =
    "-A sipban-udp -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable";
const REJECT6: &str =
    "-A sipban-udp -s 2001:db8::7/128 -j REJECT --reject-with icmp6-port-unreachable";
const SSH: &str = "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn strings(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Firewall inspection
// ---------------------------------------------------------------------------

/// Where firewall listings are taken: this thread's private namespace, or
/// a named one through `ip netns exec`.
#[derive(Clone, Copy)]
enum Where<'a> {
    Here,
    In(&'a NamedNetns),
}

impl Where<'_> {
    fn run(self, tool: &str, args: &[&str]) -> Output {
        match self {
            Where::Here => run(tool, args),
            Where::In(ns) => ns.exec(tool, args),
        }
    }

    /// `TOOL -S` of the filter table.
    fn all_rules(self, tool: &str) -> Vec<String> {
        let out = self.run(tool, &["-w", "-S"]);
        assert!(out.status.success(), "{tool} -S: {}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    }

    /// `TOOL -S CHAIN`, or `None` when the chain does not exist (the command
    /// fails and the full listing has no `-N CHAIN`).
    fn rules(self, tool: &str, chain: &str) -> Option<Vec<String>> {
        let out = self.run(tool, &["-w", "-S", chain]);
        let declared = self
            .all_rules(tool)
            .iter()
            .any(|l| *l == format!("-N {chain}") || *l == format!("-P {chain} ACCEPT"));
        if out.status.success() {
            assert!(declared, "{tool} -S {chain} works but -S does not list it");
            Some(text(&out.stdout).lines().map(str::to_string).collect())
        } else {
            assert!(
                !declared,
                "{tool} -S {chain} failed although the chain exists: {}",
                text(&out.stderr)
            );
            None
        }
    }

    /// INPUT rules that jump to `chain`.
    fn jumps(self, tool: &str, chain: &str) -> Vec<String> {
        let suffix = format!(" -j {chain}");
        self.rules(tool, "INPUT")
            .expect("INPUT exists")
            .into_iter()
            .filter(|r| r.ends_with(&suffix))
            .collect()
    }

    /// Neither our chain nor a jump to it is left.
    fn assert_clean(self, chain: &str) {
        for tool in TOOLS {
            assert_eq!(
                self.rules(tool, chain),
                None,
                "{tool}: chain {chain} left behind"
            );
            assert_eq!(
                self.jumps(tool, chain),
                Vec::<String>::new(),
                "{tool}: jump to {chain} left in INPUT"
            );
        }
    }
}

fn rules(tool: &str, chain: &str) -> Option<Vec<String>> {
    Where::Here.rules(tool, chain)
}

/// `-S CHAIN` is exactly `-N CHAIN`, `bans` (in order) and the final RETURN.
fn assert_chain(tool: &str, chain: &str, bans: &[&str]) {
    let mut want = vec![format!("-N {chain}")];
    want.extend(bans.iter().map(|s| s.to_string()));
    want.push(format!("-A {chain} -j RETURN"));
    assert_eq!(rules(tool, chain), Some(want), "{tool} -S {chain}");
}

/// INPUT is exactly the policy line followed by `rules`.
fn assert_input(tool: &str, input: &[&str]) {
    let mut want = vec!["-P INPUT ACCEPT".to_string()];
    want.extend(input.iter().map(|s| s.to_string()));
    assert_eq!(rules(tool, "INPUT"), Some(want), "{tool} -S INPUT");
}

fn backend(path: &str, chain: &str, scope: &str, rule: &str) -> Box<dyn Backend> {
    let action_v4 = Action::parse(rule, false).expect("IPv4 action");
    Box::new(ChainBackend::new(ChainSettings {
        path: path.into(),
        chain: chain.into(),
        scope: Scope::parse(scope).expect("scope"),
        action_v6: action_v4.to_ipv6(),
        action_v4,
    }))
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// 1. The chain backend through `Firewall`
// ---------------------------------------------------------------------------

#[test]
fn chain_backend_bans_both_families_and_leaves_the_firewall_as_found() {
    in_private_netns(async {
        // A rule of the admin's own, which must survive us untouched.
        for tool in TOOLS {
            run_ok(
                tool,
                &[
                    "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
                ],
            );
        }
        let fw = Firewall::start(backend("/usr/sbin/", CHAIN, SCOPE, REJECT))
            .await
            .expect("chain backend starts");
        assert_eq!(fw.backend_name(), "chain");
        for tool in TOOLS {
            assert_chain(tool, CHAIN, &[]);
            // Exactly one jump, first in INPUT.
            assert_input(tool, &[JUMP, SSH]);
        }

        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);

        // Adding again, in one batch or in several, never adds a second rule.
        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V4), Duration::from_secs(90));
        fw.sync().await;
        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);

        // A second IPv4 ban also goes before the RETURN.
        fw.add(ip("203.0.113.8"), Duration::from_secs(60));
        fw.sync().await;
        let v4 = rules("iptables", CHAIN).unwrap();
        assert_eq!(v4.len(), 4, "{v4:?}");
        assert_eq!(v4.last().map(String::as_str), Some(RETURN), "{v4:?}");
        assert!(v4.contains(&REJECT4.to_string()), "{v4:?}");
        let other = "-A sipban-udp -s 203.0.113.8/32 -j REJECT --reject-with icmp-port-unreachable";
        assert!(v4.contains(&other.to_string()), "{v4:?}");

        // Delete removes exactly that rule.
        fw.delete(ip(V4));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[other]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);
        // Deleting what is not banned is harmless.
        fw.delete(ip(V4));
        fw.delete(ip("198.51.100.1"));
        fw.delete(ip("2001:db8::99"));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[other]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);
        // Deleted, then banned again.
        fw.add(ip(V4), Duration::from_secs(60));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[other, REJECT4]);

        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
        for tool in TOOLS {
            assert_input(tool, &[SSH]);
        }
        assert!(fw.list().await.is_err(), "the applier stopped");
    });
}

#[test]
fn chain_backend_with_drop_action() {
    in_private_netns(async {
        // Empty path: the binaries come from $PATH.
        let fw = Firewall::start(backend("", CHAIN, SCOPE, "DROP"))
            .await
            .expect("chain backend starts");
        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_chain(
            "iptables",
            CHAIN,
            &["-A sipban-udp -s 203.0.113.7/32 -j DROP"],
        );
        assert_chain(
            "ip6tables",
            CHAIN,
            &["-A sipban-udp -s 2001:db8::7/128 -j DROP"],
        );
        for tool in TOOLS {
            assert_input(tool, &[JUMP]);
        }
        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
        for tool in TOOLS {
            assert_input(tool, &[]);
        }
    });
}

#[test]
fn chain_backend_with_custom_scope_and_chain_name() {
    in_private_netns(async {
        let chain = "voip-bans";
        let fw = Firewall::start(backend(
            "/usr/sbin/",
            chain,
            "-p udp -m multiport --dports 5060,5061",
            REJECT,
        ))
        .await
        .expect("chain backend starts");
        for tool in TOOLS {
            assert_chain(tool, chain, &[]);
            assert_input(
                tool,
                &["-A INPUT -p udp -m multiport --dports 5060,5061 -j voip-bans"],
            );
            assert_eq!(rules(tool, CHAIN), None, "{tool}: default chain created");
        }
        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_chain(
            "iptables",
            chain,
            &["-A voip-bans -s 203.0.113.7/32 -j REJECT --reject-with icmp-port-unreachable"],
        );
        assert_chain(
            "ip6tables",
            chain,
            &["-A voip-bans -s 2001:db8::7/128 -j REJECT --reject-with icmp6-port-unreachable"],
        );
        fw.delete(ip(V4));
        fw.sync().await;
        assert_chain("iptables", chain, &[]);
        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(chain);
        for tool in TOOLS {
            assert_input(tool, &[]);
        }
    });
}

/// `[firewall] ports`: one jump per protocol (multiport for several
/// ports), an earlier run's jumps of another scope replaced at start, and
/// `block = all`: one jump for every packet.
#[test]
fn chain_backend_with_ports_jumps_once_per_protocol() {
    in_private_netns(async {
        let with = |scope: Scope| {
            let action_v4 = Action::parse(REJECT, false).expect("IPv4 action");
            Box::new(ChainBackend::new(ChainSettings {
                path: String::new(),
                chain: CHAIN.into(),
                scope,
                action_v6: action_v4.to_ipv6(),
                action_v4,
            })) as Box<dyn Backend>
        };
        // A crashed run of the original's scope left its jump.
        for tool in TOOLS {
            run_ok(tool, &["-w", "-N", CHAIN]);
            run_ok(
                tool,
                &[
                    "-w", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", CHAIN,
                ],
            );
        }
        let ports = SipPorts::parse("udp/5060, udp/10000-10010, tcp/5060, tcp/5061").unwrap();
        let fw = Firewall::start(with(Scope {
            sip: ports.clone(),
            ..Scope::default()
        }))
        .await
        .expect("chain backend starts");
        for tool in TOOLS {
            assert_input(
                tool,
                &[
                    "-A INPUT -p udp -m multiport --dports 5060,10000:10010 -j sipban-udp",
                    "-A INPUT -p tcp -m multiport --dports 5060,5061 -j sipban-udp",
                ],
            );
        }
        fw.shutdown().await.expect("shutdown");
        for tool in TOOLS {
            assert_input(tool, &[]);
        }
        Where::Here.assert_clean(CHAIN);

        let fw = Firewall::start(with(Scope {
            sip: ports,
            block: Block::All,
            interface: None,
        }))
        .await
        .expect("chain backend starts");
        for tool in TOOLS {
            assert_input(tool, &["-A INPUT -j sipban-udp"]);
        }
        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
    });
}

/// `Firewall::list` reports what the kernel holds, not what was asked for:
/// rules added behind our back show up, and so do a crashed run's rules
/// taken over at start (the restart adopts them).
#[test]
fn chain_backend_list_reports_the_bans_in_the_kernel() {
    in_private_netns(async {
        run_ok("iptables", &["-w", "-N", CHAIN]);
        run_ok(
            "iptables",
            &["-w", "-A", CHAIN, "-s", "198.51.100.99/32", "-j", "DROP"],
        );
        let fw = Firewall::start(backend("", CHAIN, SCOPE, REJECT))
            .await
            .expect("chain backend starts");
        assert_eq!(fw.list().await.expect("list"), vec![ip("198.51.100.99")]);
        fw.delete(ip("198.51.100.99"));

        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip("203.0.113.8"), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_eq!(rules("iptables", CHAIN).map(|r| r.len()), Some(4));
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip(V4), ip("203.0.113.8"), ip(V6)]),
            "iptables -S {CHAIN}: {:?}",
            rules("iptables", CHAIN)
        );

        fw.delete(ip(V4));
        fw.sync().await;
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip("203.0.113.8"), ip(V6)])
        );
        // A rule added by hand is in the kernel, so it is listed.
        run_ok(
            "ip6tables",
            &["-w", "-I", CHAIN, "1", "-s", "2001:db8::42", "-j", "DROP"],
        );
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip("203.0.113.8"), ip(V6), ip("2001:db8::42")])
        );

        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
        assert!(fw.list().await.is_err(), "the applier stopped");
    });
}

/// A directory of wrappers for the iptables tools that log each call's
/// first arguments to `calls`, then run the real tool.
fn counting_tools() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("calls");
    for tool in [
        "iptables",
        "ip6tables",
        "iptables-restore",
        "ip6tables-restore",
    ] {
        let path = dir.path().join(tool);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $1 $2 $3\" >> {}\nexec /usr/sbin/{tool} \"$@\"\n",
                log.display()
            ),
        )
        .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    (dir, log)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn chain_backend_commits_a_storm_in_a_few_restores_not_one_call_per_ban() {
    in_private_netns(async {
        let (dir, log) = counting_tools();
        let path = format!("{}/", dir.path().display());
        let fw = Firewall::start(backend(&path, CHAIN, SCOPE, "DROP"))
            .await
            .expect("chain backend starts");
        std::fs::remove_file(&log).ok();
        let n = 3_000;
        let addr = |i: usize| IpAddr::from([10, 1, (i / 250) as u8, (i % 250 + 1) as u8]);
        for i in 0..n {
            fw.add(addr(i), Duration::from_secs(600));
        }
        fw.add(ip(V6), Duration::from_secs(600));
        fw.sync().await;
        let made = calls(&log);
        let restores = made.iter().filter(|c| c.contains("-restore")).count();
        assert!(restores <= 4, "{restores} restores for one storm: {made:?}");
        assert!(
            made.iter().all(|c| c.contains("-restore")),
            "a ban went in with a call of its own: {:?}",
            made.iter().find(|c| !c.contains("-restore"))
        );
        let v4 = rules("iptables", CHAIN).expect("chain");
        // -N, one rule per ban, RETURN; the bans in the order given.
        assert_eq!(v4.len(), n + 2);
        assert_eq!(
            v4.get(1).map(String::as_str),
            Some("-A sipban-udp -s 10.1.0.1/32 -j DROP")
        );
        assert_eq!(v4.last().map(String::as_str), Some(RETURN));
        assert_chain(
            "ip6tables",
            CHAIN,
            &["-A sipban-udp -s 2001:db8::7/128 -j DROP"],
        );

        // Unbans of a storm: as few commits.
        std::fs::remove_file(&log).ok();
        for i in 0..n {
            fw.delete(addr(i));
        }
        fw.sync().await;
        let made = calls(&log);
        assert!(made.len() <= 4, "{made:?}");
        assert_chain("iptables", CHAIN, &[]);

        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
    });
}

#[test]
fn chain_backend_batch_refused_by_drift_is_applied_one_by_one() {
    in_private_netns(async {
        let fw = Firewall::start(backend("", CHAIN, SCOPE, "DROP"))
            .await
            .expect("chain backend starts");
        let (a, b, c) = ("203.0.113.1", "203.0.113.2", "203.0.113.3");
        fw.add(ip(a), Duration::from_secs(60));
        fw.add(ip(b), Duration::from_secs(60));
        fw.sync().await;
        // Someone deletes b's rule by hand: a batch deleting it is refused
        // whole by iptables-restore.
        run_ok("iptables", &["-w", "-D", CHAIN, "-s", b, "-j", "DROP"]);
        fw.delete(ip(a));
        fw.delete(ip(b));
        fw.add(ip(c), Duration::from_secs(60));
        fw.sync().await;
        // Everything else in that batch still happened.
        assert_chain(
            "iptables",
            CHAIN,
            &["-A sipban-udp -s 203.0.113.3/32 -j DROP"],
        );
        assert_eq!(fw.list().await.expect("list"), vec![ip(c)]);
        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
    });
}

// ---------------------------------------------------------------------------
// 2. Taking over what an earlier run left
// ---------------------------------------------------------------------------

#[test]
fn chain_backend_takes_over_a_stale_chain_and_duplicate_jumps() {
    in_private_netns(async {
        for (tool, stale) in [
            ("iptables", "198.51.100.99/32"),
            ("ip6tables", "2001:db8::99/128"),
        ] {
            run_ok(
                tool,
                &[
                    "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
                ],
            );
            run_ok(tool, &["-w", "-N", CHAIN]);
            run_ok(tool, &["-w", "-A", CHAIN, "-s", stale, "-j", "DROP"]);
            run_ok(tool, &["-w", "-A", CHAIN, "-j", "RETURN"]);
            let jump = ["-p", "udp", "--dport", "5060", "-j", CHAIN];
            for op in ["-I", "-I", "-A"] {
                let mut args = vec!["-w", op, "INPUT"];
                args.extend(jump);
                run_ok(tool, &args);
            }
            assert_eq!(Where::Here.jumps(tool, CHAIN).len(), 3, "{tool}: setup");
        }

        let fw = Firewall::start(backend("", CHAIN, SCOPE, REJECT))
            .await
            .expect("chain backend takes over");
        // The crashed run's ban is kept (rewritten with today's rule, for
        // the restart to adopt), one RETURN, exactly one jump, at the top.
        let kept4 =
            format!("-A {CHAIN} -s 198.51.100.99/32 -j REJECT --reject-with icmp-port-unreachable");
        let kept6 = format!(
            "-A {CHAIN} -s 2001:db8::99/128 -j REJECT --reject-with icmp6-port-unreachable"
        );
        assert_chain("iptables", CHAIN, &[&kept4]);
        assert_chain("ip6tables", CHAIN, &[&kept6]);
        for tool in TOOLS {
            assert_input(tool, &[JUMP, SSH]);
        }
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip("198.51.100.99"), ip("2001:db8::99")])
        );
        fw.delete(ip("198.51.100.99"));
        fw.delete(ip("2001:db8::99"));

        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);

        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
        for tool in TOOLS {
            assert_input(tool, &[SSH]);
        }
    });
}

// ---------------------------------------------------------------------------
// 3. The ban manager on the real firewall, with a manual clock
// ---------------------------------------------------------------------------

#[test]
fn ban_manager_unban_and_expiry_reach_iptables() {
    in_private_netns(async {
        let fw = Firewall::start(backend("", CHAIN, SCOPE, REJECT))
            .await
            .expect("chain backend starts");
        let clock = Clock::manual(1_800_000_000);
        let bans = BanManager::new(fw.clone(), clock.clone(), Duration::from_secs(60), None);

        // Ban, then unban by hand.
        bans.ban(ip(V4), "Invalid Password");
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert!(bans.unban(ip(V4), UnbanReason::Manual));
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[]);
        assert!(!bans.unban(ip(V4), UnbanReason::Manual));

        // Expiry by the expiry task.
        let cancel = CancellationToken::new();
        let expiry = tokio::spawn(Arc::clone(&bans).run_expiry(cancel.clone()));
        bans.ban(ip(V4), "Invalid Password");
        bans.ban(ip(V6), "Challenge Response Failed");
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);

        clock.advance(30);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        bans.expire_due();
        fw.sync().await;
        assert!(bans.get(ip(V4)).is_some(), "expired after 30 s of 60");
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);

        clock.advance(31);
        eventually(
            "the expiry task to remove both bans",
            Duration::from_secs(5),
            || bans.get(ip(V4)).is_none() && bans.get(ip(V6)).is_none(),
        )
        .await;
        fw.sync().await;
        assert_chain("iptables", CHAIN, &[]);
        assert_chain("ip6tables", CHAIN, &[]);
        cancel.cancel();
        expiry.await.expect("expiry task");

        // Expiry through expire_due() alone.
        bans.ban(ip(V6), "Invalid Password");
        fw.sync().await;
        assert_chain("ip6tables", CHAIN, &[REJECT6]);
        clock.advance(61);
        bans.expire_due();
        fw.sync().await;
        assert_chain("ip6tables", CHAIN, &[]);
        assert!(bans.get(ip(V6)).is_none());

        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
    });
}

// ---------------------------------------------------------------------------
// 4. The whole daemon in-process
// ---------------------------------------------------------------------------

fn daemon_settings(ami: &FakeAmi, dump: &Path) -> Settings {
    let mut s = support::settings(ami, dump, Whitelist::default());
    s.ami.backoff.min = Duration::from_millis(50);
    s.chain = CHAIN.into();
    s
}

#[test]
fn daemon_turns_ami_events_into_rules_and_cleans_up_on_stop() {
    in_private_netns(async {
        let fake = FakeAmi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("sipban.dump");
        let daemon = Daemon::start(
            daemon_settings(&fake, &dump),
            backend("", CHAIN, SCOPE, REJECT),
            Clock::system(),
        )
        .await
        .expect("daemon starts");
        for tool in TOOLS {
            assert_chain(tool, CHAIN, &[]);
            assert_input(tool, &[JUMP]);
        }
        fake.wait_logins(1).await;

        // Good logins first: events are judged and applied in order, so once
        // the attackers' rules show, these have been judged too.
        for source in ["203.0.113.50", "2001:db8::50"] {
            fake.send_event("ChallengeSent", "PJSIP", "1001", source);
            fake.send_event("SuccessfulAuth", "PJSIP", "1001", source);
        }
        fake.send_event("InvalidPassword", "PJSIP", "1001", V4);
        fake.send_event("ChallengeResponseFailed", "PJSIP", "1001", V6);
        eventually(
            "both bans in iptables/ip6tables",
            Duration::from_secs(5),
            || {
                let has = |tool, rule: &str| {
                    rules(tool, CHAIN).is_some_and(|r| r.iter().any(|l| l == rule))
                };
                has("iptables", REJECT4) && has("ip6tables", REJECT6)
            },
        )
        .await;
        daemon.bans.firewall().sync().await;
        assert_chain("iptables", CHAIN, &[REJECT4]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);
        assert!(daemon.bans.get(ip("203.0.113.50")).is_none());
        assert!(daemon.bans.get(ip("2001:db8::50")).is_none());

        let (mut console, _banner) = ConsoleClient::connect(daemon.console_addr).await;
        let reply = console.command("unblock 203.0.113.7").await;
        assert!(
            reply.contains("203.0.113.7 unblocked"),
            "console said {reply:?}"
        );
        eventually("the unblocked rule to go", Duration::from_secs(5), || {
            rules("iptables", CHAIN).is_some_and(|r| !r.iter().any(|l| l == REJECT4))
        })
        .await;
        daemon.bans.firewall().sync().await;
        assert_chain("iptables", CHAIN, &[]);
        assert_chain("ip6tables", CHAIN, &[REJECT6]);
        drop(console);

        daemon.stop().await.expect("daemon stops");
        Where::Here.assert_clean(CHAIN);
        for tool in TOOLS {
            assert_input(tool, &[]);
        }
        let entries = sipban::bans::persist::read(&dump)
            .expect("dump readable")
            .expect("dump written");
        let ips: Vec<IpAddr> = entries.iter().map(|e| e.ip).collect();
        assert_eq!(ips, vec![ip(V6)], "dump {}", dump.display());
    });
}

// ---------------------------------------------------------------------------
// 5. The real binary, stopped with SIGTERM
// ---------------------------------------------------------------------------

#[test]
fn binary_bans_and_cleans_up_on_sigterm() {
    let ns = NamedNetns::create("bin");
    ns.enter();
    runtime().block_on(async {
        let at = Where::In(&ns);
        let fake = FakeAmi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let console_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let wl = dir.path().join("sipban.wl");
        let dump = dir.path().join("sipban.dump");
        let log = dir.path().join("sipban.log");
        let conf = dir.path().join("sipban.conf");
        std::fs::write(&wl, "# nobody\n").unwrap();
        std::fs::write(
            &conf,
            format!(
                "[ami]\nhost = \"127.0.0.1\"\nport = \"{}\"\nuser = \"sipban\"\npass = \"getout\"\nping = 600\n\n\
                 [control]\naddress = \"127.0.0.1\"\nport = \"{console_port}\"\n\n\
                 [timer]\nban = 3600\n\n\
                 [iptables]\npath = \"/usr/sbin/\"\nchain = \"sipban-udp\"\n\
                 rule = \"REJECT --reject-with icmp-port-unreachable\"\n\
                 white_list = \"{}\"\ndump = \"{}\"\n\n\
                 [log]\nfile = \"{}\"\n\n\
                 [firewall]\nbackend = chain\n",
                fake.addr.port(),
                wl.display(),
                dump.display(),
                log.display()
            ),
        )
        .unwrap();
        let stderr_path = dir.path().join("stderr.txt");
        let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_sipban"), "-c"])
            .arg(&conf)
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start sipban");
        let mut daemon = ChildGuard(child);
        let pid = daemon.0.id();

        // Logged in to the fake Asterisk (in this namespace).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(fake.logins() >= 1 && fake.live() > 0) {
            if let Some(status) = daemon.0.try_wait().expect("try_wait") {
                panic!("sipban exited early ({status}): {}", stderr());
            }
            assert!(Instant::now() < deadline, "no AMI login within 10 s: {}", stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `ip netns exec` execs the daemon: SIGTERM goes to sipban itself.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "sipban", "pid {pid} is not the daemon");
        for tool in TOOLS {
            assert_eq!(at.jumps(tool, CHAIN), vec![JUMP.to_string()], "{tool}");
        }

        fake.send_event("InvalidPassword", "PJSIP", "1001", V4);
        eventually("the binary's ban rule", Duration::from_secs(5), || {
            at.rules("iptables", CHAIN)
                .is_some_and(|r| r.iter().any(|l| l == REJECT4))
        })
        .await;
        assert_eq!(
            at.rules("iptables", CHAIN),
            Some(strings(&[NEW, REJECT4, RETURN]))
        );

        // SAFETY: plain syscall; `pid` is our unreaped child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
        let status = wait_exit(&mut daemon.0, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("sipban did not exit within 20 s of SIGTERM: {}", stderr()));
        assert!(status.success(), "sipban exited with {status}: {}", stderr());

        at.assert_clean(CHAIN);
        let entries = sipban::bans::persist::read(&dump)
            .expect("dump readable")
            .expect("dump written");
        assert!(
            entries.iter().any(|e| e.ip == ip(V4)),
            "dump lacks {V4}: {entries:?}"
        );
        let log_text = std::fs::read_to_string(&log).expect("log file");
        for want in [
            "] SipBan Start",
            "] CHAIN => sipban-udp created",
            "] BLOCK => 203.0.113.7 (Invalid Password)",
            "] SipBan Stop",
        ] {
            assert!(
                log_text.lines().any(|l| l.starts_with('[') && l.contains(want)),
                "log lacks {want:?}:\n{log_text}"
            );
        }
    });
}

// ---------------------------------------------------------------------------
// 6. Real packets: attacker -> veth -> pbx:5060
// ---------------------------------------------------------------------------

/// Datagrams from `from` never reach `listener`, and the REJECT answers them.
fn assert_rejected(from: &UdpSocket, listener: &UdpSocket, when: &str) {
    let me = from.local_addr().unwrap();
    let mut buf = [0u8; 128];
    let mut refused = false;
    for _ in 0..3 {
        let token = netns::token("probe");
        // A send may itself report the previous ICMP error.
        match from.send(token.as_bytes()) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
            Err(e) => panic!("{when}: send from {me}: {e}"),
        }
        match from.recv(&mut buf) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
            Err(e) if nothing_yet(&e) => {}
            other => panic!("{when}: unexpected reply to {me}: {other:?}"),
        }
    }
    let wait = Instant::now() + Duration::from_millis(300);
    while Instant::now() < wait {
        match listener.recv_from(&mut buf) {
            Ok((_, src)) => assert_ne!(src, me, "{when}: a banned datagram got through"),
            Err(e) if nothing_yet(&e) => {}
            Err(e) => panic!("{when}: listener: {e}"),
        }
    }
    assert!(
        refused,
        "{when}: {me} never got the ICMP port unreachable of REJECT"
    );
}

#[test]
fn banned_source_is_rejected_on_the_wire() {
    // The veth pair is created inside pbx with its peer straight in the
    // attacker's namespace: nothing appears in the original namespace.
    let (pbx, atk) = netns::wire(
        "sb",
        &["203.0.113.1/24", "2001:db8::1/64"],
        &[
            "203.0.113.7/24",
            "203.0.113.8/24",
            "2001:db8::7/64",
            "2001:db8::8/64",
        ],
    );

    let pbx4: SocketAddr = "203.0.113.1:5060".parse().unwrap();
    let pbx6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
    // Sockets stay in the namespace they were created in: make the
    // attacker's on a thread inside the attacker namespace.
    let [bad4, good4, bad6, good6] = netns::attacker_sockets(
        &atk,
        pbx4,
        pbx6,
        ["203.0.113.7", "203.0.113.8", "2001:db8::7", "2001:db8::8"],
    );

    pbx.enter();
    runtime().block_on(async {
        let (listen4, listen6) = netns::listeners(pbx4, pbx6);
        let fw = Firewall::start(backend("", CHAIN, SCOPE, REJECT))
            .await
            .expect("chain backend starts");

        assert_reaches(&bad4, &listen4, "before the ban (IPv4)");
        assert_reaches(&bad6, &listen6, "before the ban (IPv6)");

        fw.add(ip(V4), Duration::from_secs(60));
        fw.add(ip(V6), Duration::from_secs(60));
        fw.sync().await;
        assert_rejected(&bad4, &listen4, "banned (IPv4)");
        assert_rejected(&bad6, &listen6, "banned (IPv6)");
        // Only the banned source is cut off.
        assert_reaches(&good4, &listen4, "a neighbour of the banned IPv4");
        assert_reaches(&good6, &listen6, "a neighbour of the banned IPv6");

        fw.delete(ip(V4));
        fw.delete(ip(V6));
        fw.sync().await;
        assert_reaches(&bad4, &listen4, "after the unban (IPv4)");
        assert_reaches(&bad6, &listen6, "after the unban (IPv6)");

        fw.add(ip(V4), Duration::from_secs(60));
        fw.sync().await;
        assert_rejected(&bad4, &listen4, "banned again (IPv4)");
        fw.shutdown().await.expect("shutdown");
        Where::Here.assert_clean(CHAIN);
        // No chain, no jump: traffic flows again.
        assert_reaches(&bad4, &listen4, "after shutdown (IPv4)");
    });
}
