//! The daemon end to end with the dry-run firewall: a fake Asterisk manager
//! on an ephemeral port, the real AMI client, policy, ban store and console.

mod support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use sipban::clock::Clock;
use sipban::daemon::{Daemon, Settings};
use sipban::firewall::{DryRun, DryRunLog, DryRunOp};
use sipban::policy::Whitelist;
use support::{BAN, ConsoleClient, FakeAmi, settings};

const T0: u64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

async fn start(settings: Settings, clock: &Clock) -> (Daemon, DryRunLog) {
    let dry = DryRun::new();
    let log = dry.log();
    let daemon = Daemon::start(settings, Box::new(dry), clock.clone())
        .await
        .expect("daemon starts");
    (daemon, log)
}

/// Polls `f` every 10 ms for up to 5 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    (dir, dump)
}

/// A fake AMI and a daemon (dry-run firewall, manual clock at `T0`).
struct Harness {
    ami: FakeAmi,
    _dir: tempfile::TempDir,
    dump: PathBuf,
    clock: Clock,
    daemon: Daemon,
    fw: DryRunLog,
}

impl Harness {
    /// White list `wl`; returns once the daemon is logged in.
    async fn new(wl: &str) -> Harness {
        let h = Self::with(wl, |_, _| {}).await;
        h.ami.wait_logins(1).await;
        h
    }

    /// Lets the test adjust the fake AMI and the settings first; does not
    /// wait for the login.
    async fn with(wl: &str, tweak: impl FnOnce(&FakeAmi, &mut Settings)) -> Harness {
        let ami = FakeAmi::start().await;
        let (dir, dump) = tmp();
        let clock = Clock::manual(T0);
        let wl = Whitelist::parse(wl, "wl".as_ref()).unwrap();
        let mut s = settings(&ami, &dump, wl);
        tweak(&ami, &mut s);
        let (daemon, fw) = start(s, &clock).await;
        Harness {
            ami,
            _dir: dir,
            dump,
            clock,
            daemon,
            fw,
        }
    }
}

#[tokio::test]
async fn attack_events_become_bans_good_logins_never_do() {
    let Harness {
        ami,
        _dir,
        clock,
        daemon,
        fw,
        ..
    } = Harness::new("").await;

    // The office phone's normal registration: ChallengeSent + SuccessfulAuth.
    for _ in 0..5 {
        ami.send_event("ChallengeSent", "PJSIP", "1001", "203.0.113.50");
        ami.send_event("SuccessfulAuth", "PJSIP", "1001", "203.0.113.50");
    }
    ami.send_event("InvalidPassword", "SIP", "2001", "203.0.113.13");
    ami.send_event(
        "ChallengeResponseFailed",
        "PJSIP",
        "1002",
        "2001:db8:113::11",
    );
    ami.send_event("InvalidAccountID", "PJSIP", "9999", "::ffff:203.0.113.14");
    ami.send_event("InvalidPassword", "AMI", "admin", "203.0.113.15");
    eventually("four bans", || daemon.bans.list().len() == 4).await;
    daemon.bans.firewall().sync().await;

    let banned = fw.banned();
    for s in [
        "203.0.113.13",
        "2001:db8:113::11",
        "203.0.113.14",
        "203.0.113.15",
    ] {
        assert!(banned.contains(&ip(s)), "{s} in firewall");
    }
    assert!(daemon.bans.get(ip("203.0.113.50")).is_none());
    let b = daemon.bans.get(ip("203.0.113.13")).unwrap();
    assert_eq!(
        (b.expires, b.reason.as_str(), b.count),
        (T0 + BAN, "Invalid Password", 1)
    );

    // A repeated event extends, never duplicates a firewall entry.
    clock.advance(100);
    ami.send_event("InvalidPassword", "SIP", "2001", "203.0.113.13");
    eventually("extended", || {
        daemon.bans.get(ip("203.0.113.13")).unwrap().expires == T0 + 100 + BAN
    })
    .await;
    daemon.bans.firewall().sync().await;
    let adds = fw
        .ops()
        .iter()
        .filter(|op| **op == DryRunOp::Add(ip("203.0.113.13")))
        .count();
    assert_eq!(adds, 1);
    // ... but renews the kernel timeout, once for a whole flood.
    for _ in 0..20 {
        ami.send_event("InvalidPassword", "SIP", "2001", "203.0.113.13");
    }
    ami.send_event("InvalidPassword", "SIP", "2001", "203.0.113.99");
    eventually("marker", || daemon.bans.get(ip("203.0.113.99")).is_some()).await;
    daemon.bans.firewall().sync().await;
    let refreshes = fw
        .ops()
        .iter()
        .filter(|op| **op == DryRunOp::Refresh(ip("203.0.113.13")))
        .count();
    assert_eq!(refreshes, 1);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn whitelisted_loopback_and_ami_host_are_never_banned() {
    let ami = FakeAmi::start().await;
    let (_dir, dump) = tmp();
    let wl = Whitelist::parse(
        "198.51.100.0/24\n2001:db8:1::/48\n192.0.2.10\n",
        "wl".as_ref(),
    )
    .unwrap();
    let mut s = settings(&ami, &dump, wl);
    s.ami_hosts.push(ip("192.0.2.99"));
    let (daemon, fw) = start(s, &Clock::manual(T0)).await;
    ami.wait_logins(1).await;
    for src in [
        "198.51.100.9",
        "2001:db8:1::9",
        "192.0.2.10",
        "127.0.0.1",
        "::1",
        "192.0.2.99",
    ] {
        ami.send_event("InvalidPassword", "PJSIP", "1001", src);
        ami.send_event("InvalidAccountID", "PJSIP", "x", src);
    }
    // A marker after them: once it is banned, the others were judged.
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.8");
    eventually("marker ban", || {
        daemon.bans.get(ip("203.0.113.8")).is_some()
    })
    .await;
    daemon.bans.firewall().sync().await;
    assert_eq!(daemon.bans.list().len(), 1);
    assert_eq!(fw.banned(), vec![ip("203.0.113.8")]);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn bans_expire_on_time_with_an_advanced_clock() {
    let Harness {
        ami,
        _dir,
        clock,
        daemon,
        fw,
        ..
    } = Harness::new("").await;
    ami.send_event("InvalidPassword", "SIP", "2001", "203.0.113.20");
    eventually("ban", || daemon.bans.get(ip("203.0.113.20")).is_some()).await;
    clock.advance(10);
    ami.send_event("InvalidAccountID", "PJSIP", "x", "203.0.113.21");
    eventually("second ban", || {
        daemon.bans.get(ip("203.0.113.21")).is_some()
    })
    .await;

    clock.advance(BAN - 11);
    // One second early: the expiry step itself finds nothing due.
    daemon.bans.expire_due();
    assert_eq!(
        daemon.bans.list().len(),
        2,
        "one second early: still banned"
    );
    clock.advance(1);
    eventually("first expiry", || {
        daemon.bans.get(ip("203.0.113.20")).is_none()
    })
    .await;
    assert!(daemon.bans.get(ip("203.0.113.21")).is_some());
    clock.advance(10);
    eventually("second expiry", || daemon.bans.list().is_empty()).await;
    daemon.bans.firewall().sync().await;
    assert!(fw.banned().is_empty());
    assert!(fw.ops().contains(&DryRunOp::Delete(ip("203.0.113.21"))));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn every_console_command_over_tcp() {
    let ami = FakeAmi::start().await;
    let (_dir, dump) = tmp();
    let wl = Whitelist::parse("198.51.100.0/24\n2001:db8:1::1\n", "wl".as_ref()).unwrap();
    let clock = Clock::manual(T0);
    let (daemon, fw) = start(settings(&ami, &dump, wl), &clock).await;
    ami.wait_logins(1).await;
    let (mut c, banner) = ConsoleClient::connect(daemon.console_addr).await;
    assert!(banner.contains("Sipban"), "{banner}");
    assert!(banner.contains("use 'help' for more commands"));
    assert!(banner.ends_with("sipban>"));

    let help = c.command("help").await;
    for cmd in [
        "block",
        "unblock",
        "flush",
        "restore",
        "ping",
        "uptime",
        "wl",
        "exit/quit",
    ] {
        assert!(help.contains(cmd), "help lists {cmd}: {help}");
    }
    assert!(help.contains("clear rules on chain sipban-udp"));
    for cmd in [
        "login {secret}",
        "deny add [--force]",
        "allow|deny import [--force]",
    ] {
        assert!(help.contains(cmd), "help lists {cmd}: {help}");
    }
    assert_eq!(
        c.command("login anything").await,
        "no login needed ([control] secret is not set)"
    );

    assert_eq!(c.command("block").await, "");
    assert_eq!(c.command("block 203.0.113.30").await, "203.0.113.30 block");
    assert_eq!(
        c.command("block 203.0.113.30").await,
        "203.0.113.30 previously blocked"
    );
    assert_eq!(c.command("block 2001:db8::30").await, "2001:db8::30 block");
    assert_eq!(
        c.command("block 999.1.1.1").await,
        "999.1.1.1 don't seems like a valid address"
    );
    let spared = c.command("block 198.51.100.4").await;
    assert!(
        spared.contains("protected") && spared.contains("198.51.100.0/24"),
        "{spared}"
    );
    assert!(c.command("block 127.0.0.1").await.contains("protected"));
    // `nc` sends bare LF, some clients a bare CR: accepted.
    assert_eq!(
        c.command_with("block 203.0.113.30", "\r").await,
        "203.0.113.30 previously blocked"
    );
    let list = c.command_with("block", "\n").await;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with('[') && lines[0].ends_with("] 203.0.113.30"),
        "{list}"
    );
    assert!(lines[1].ends_with("] 2001:db8::30"));
    daemon.bans.firewall().sync().await;
    assert_eq!(fw.banned().len(), 2);

    assert_eq!(
        c.command("unblock 203.0.113.30").await,
        "203.0.113.30 unblocked"
    );
    assert_eq!(
        c.command("unblock 203.0.113.30").await,
        "203.0.113.30 is not previously blocked"
    );
    assert_eq!(c.command("unblock").await, "ip address missing");
    assert_eq!(
        c.command("unblock nonsense").await,
        "nonsense don't seems like a valid address"
    );

    assert_eq!(c.command("wl").await, "198.51.100.0/24\n2001:db8:1::1");
    assert_eq!(c.command("uptime").await, "Uptime 00:00:00");
    let ping = c.command("ping").await;
    assert!(
        ping.starts_with("Ping sent\nPong from Asterisk in"),
        "{ping}"
    );
    assert!(ami.pings() >= 1);

    assert_eq!(
        c.command("frobnicate 1 2").await,
        "Invalid command: frobnicate 1 2"
    );
    assert_eq!(c.command("").await, "");
    c.send_raw(&vec![b'A'; 3000]).await;
    let long = c.command("").await;
    assert!(long.starts_with("line too long"), "{long}");
    assert_eq!(c.command("block 203.0.113.31").await, "203.0.113.31 block");

    // flush: dumps, empties the firewall; restore brings the bans back.
    assert_eq!(
        c.command("flush").await,
        "iptables rules from chain sipban-udp removed"
    );
    assert_eq!(c.command("block").await, "");
    daemon.bans.firewall().sync().await;
    assert!(fw.banned().is_empty());
    let dumped = std::fs::read_to_string(&dump).unwrap();
    assert!(dumped.contains("203.0.113.31") && dumped.contains("2001:db8::30"));
    let restored = c.command("restore").await;
    assert!(
        restored.starts_with("Restore rules sipban-udp\n"),
        "{restored}"
    );
    assert!(restored.contains("] 203.0.113.31") && restored.contains("] 2001:db8::30"));
    assert!(restored.ends_with("End restore rules"));
    daemon.bans.firewall().sync().await;
    assert_eq!(fw.banned().len(), 2);

    // Many sessions at once.
    let mut others = Vec::new();
    for _ in 0..10 {
        others.push(ConsoleClient::connect(daemon.console_addr).await.0);
    }
    for o in &mut others {
        assert_eq!(o.command("uptime").await, "Uptime 00:00:00");
    }
    c.send_raw(b"quit\r\n").await;
    assert!(c.is_closed().await);
    others[0].send_raw(b"exit\n").await;
    assert!(others[0].is_closed().await);
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn restore_without_dump_and_ping_without_asterisk() {
    let Harness {
        ami,
        _dir,
        dump,
        daemon,
        ..
    } = Harness::new("").await;
    let (mut c, _) = ConsoleClient::connect(daemon.console_addr).await;
    assert_eq!(c.command("restore").await, "no dump file to restore rules");
    // A bad line costs that line: the others are restored, the bad one is
    // named with file:line.
    std::fs::write(
        &dump,
        format!("203.0.113.1,{}\ngarbage\n203.0.113.2,12\n", T0 + 600),
    )
    .unwrap();
    let r = c.command("restore").await;
    assert!(r.starts_with("Restore rules sipban-udp\n"), "{r}");
    assert!(r.contains(" 203.0.113.1\n"), "{r}");
    assert!(
        r.contains(&format!(
            "skipped: {}:2: \"garbage\": expected ip,expiry; skipped",
            dump.display()
        )),
        "{r}"
    );
    assert!(r.ends_with("End restore rules"), "{r}");
    let listed = c.command("block").await;
    assert!(
        listed.ends_with(" 203.0.113.1") && !listed.contains("203.0.113.2"),
        "the good unexpired entry only: {listed}"
    );
    ami.stop();
    let ping = c.command("ping").await;
    assert!(
        ping.contains("No answer from Asterisk") || ping.contains("not connected"),
        "{ping}"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn reconnects_after_asterisk_restarts() {
    let Harness {
        ami, _dir, daemon, ..
    } = Harness::new("").await;
    let addr = ami.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ami = FakeAmi::start_on(addr).await;
    ami.wait_logins(1).await;
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.40");
    eventually("ban after reconnect", || {
        daemon.bans.get(ip("203.0.113.40")).is_some()
    })
    .await;
    // The connection dropping mid-session (crash) is also survived.
    ami.drop_clients();
    ami.wait_logins(2).await;
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.41");
    eventually("ban after drop", || {
        daemon.bans.get(ip("203.0.113.41")).is_some()
    })
    .await;
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn login_failure_is_retried_with_backoff() {
    let ami = FakeAmi::start().await;
    ami.set_login_ok(false);
    let (_dir, dump) = tmp();
    let (daemon, _fw) = start(
        settings(&ami, &dump, Whitelist::default()),
        &Clock::manual(T0),
    )
    .await;
    ami.wait("three failed logins", |a| a.failed_logins() >= 3)
        .await;
    assert_eq!(ami.logins(), 0);
    ami.set_login_ok(true);
    ami.wait_logins(1).await;
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_hung_asterisk_without_pong_is_detected() {
    let ami = FakeAmi::start().await;
    let (_dir, dump) = tmp();
    let mut s = settings(&ami, &dump, Whitelist::default());
    s.ami.ping_interval = Some(Duration::from_millis(100));
    s.ami.reply_timeout = Duration::from_millis(300);
    let (daemon, _fw) = start(s, &Clock::manual(T0)).await;
    ami.wait_logins(1).await;
    ami.wait("a ping", |a| a.pings() >= 2).await;
    assert_eq!(ami.connections(), 1, "answered pings keep the link");
    ami.set_answer_pings(false);
    ami.wait("a reconnect", |a| a.connections() >= 2).await;
    ami.set_answer_pings(true);
    ami.wait_logins(2).await;
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_and_malformed_messages_do_not_derail_the_stream() {
    let Harness {
        ami, _dir, daemon, ..
    } = Harness::new("").await;
    let mut big = b"Event: Huge\r\nPrivilege: security,all\r\n".to_vec();
    for i in 0..2000 {
        big.extend_from_slice(format!("Field{i}: {}\r\n", "x".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b"\r\n");
    ami.send_raw(&big);
    ami.send_raw(
        b"Event: InvalidPassword\r\nPrivilege: security,all\r\nRemoteAddress: IPV4/UDP/not-an-ip/5060\r\n\r\n",
    );
    ami.send_raw(b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: PJSIP/1001\r\n\r\n");
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.60");
    eventually("ban after junk", || {
        daemon.bans.get(ip("203.0.113.60")).is_some()
    })
    .await;
    assert_eq!(daemon.bans.list().len(), 1);
    assert_eq!(ami.connections(), 1, "no reconnect needed");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn dump_is_written_soon_after_changes_and_restored_across_restart() {
    let ami = FakeAmi::start().await;
    let (_dir, dump) = tmp();
    let clock = Clock::manual(T0);
    let (daemon, _fw) = start(settings(&ami, &dump, Whitelist::default()), &clock).await;
    ami.wait_logins(1).await;
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.70");
    ami.send_event("InvalidAccountID", "PJSIP", "x", "2001:db8::70");
    // Without any shutdown (as under kill -9) the dump follows, DUMP_DELAY
    // after the last change; each ban is in the journal before that
    // (tests/durability.rs checks it at the moment of the acknowledgement).
    eventually("dump on disk", || {
        std::fs::read_to_string(&dump)
            .map(|t| t.contains("203.0.113.70") && t.contains("2001:db8::70"))
            .unwrap_or(false)
    })
    .await;
    daemon.stop().await.unwrap();

    // A new daemon (same dump) restores both bans with their expiry.
    clock.advance(60);
    let (daemon, fw) = start(settings(&ami, &dump, Whitelist::default()), &clock).await;
    let b = daemon.bans.get(ip("203.0.113.70")).expect("restored");
    assert_eq!(b.expires, T0 + BAN);
    assert_eq!(b.reason, "Invalid Password");
    assert!(daemon.bans.get(ip("2001:db8::70")).is_some());
    daemon.bans.firewall().sync().await;
    assert_eq!(fw.banned().len(), 2);
    daemon.stop().await.unwrap();

    // After the ban time has passed, a restart restores nothing.
    clock.advance(BAN);
    let (daemon, fw) = start(settings(&ami, &dump, Whitelist::default()), &clock).await;
    assert!(daemon.bans.list().is_empty());
    daemon.bans.firewall().sync().await;
    assert!(fw.banned().is_empty());
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn the_original_dump_format_is_migrated_and_a_corrupt_dump_is_kept_aside() {
    let ami = FakeAmi::start().await;
    let (dir, dump) = tmp();
    std::fs::write(
        &dump,
        format!(
            "# [2024-01-02 03:04:05]\n203.0.113.80,{}\n127.0.0.1,{}\n",
            T0 + 500,
            T0 + 500
        ),
    )
    .unwrap();
    let clock = Clock::manual(T0);
    let (daemon, _fw) = start(settings(&ami, &dump, Whitelist::default()), &clock).await;
    let b = daemon
        .bans
        .get(ip("203.0.113.80"))
        .expect("legacy entry restored");
    assert_eq!(
        (b.expires, b.reason.as_str()),
        (T0 + 500, "Sipban previous block")
    );
    assert!(
        daemon.bans.get(ip("127.0.0.1")).is_none(),
        "loopback never restored"
    );
    daemon.stop().await.unwrap();
    // The shutdown dump is JSON now.
    assert!(
        std::fs::read_to_string(&dump)
            .unwrap()
            .trim_start()
            .starts_with('{')
    );

    std::fs::write(&dump, "{ not json").unwrap();
    let (daemon, _fw) = start(settings(&ami, &dump, Whitelist::default()), &clock).await;
    assert!(daemon.bans.list().is_empty());
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".bad-"))
        .collect();
    assert_eq!(kept.len(), 1, "corrupt dump kept aside");
    daemon.stop().await.unwrap();
}

/// `[policy]` and `[lists]` in the daemon: thresholds, escalation to the
/// deny list, the new console commands, and history across a restart.
mod policy {
    use super::*;
    use sipban::daemon::PolicySettings;
    use sipban::policy::detector::DetectorConfig;

    struct Files {
        _dir: tempfile::TempDir,
        dump: PathBuf,
        allow: PathBuf,
        deny: PathBuf,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("allow"), "198.51.100.0/24 office\n").unwrap();
        std::fs::write(p("deny"), "# none yet\n").unwrap();
        Files {
            dump: p("dump"),
            allow: p("allow"),
            deny: p("deny"),
            _dir: dir,
        }
    }

    fn policy(f: &Files) -> PolicySettings {
        PolicySettings {
            detector: DetectorConfig {
                max_failures: 3,
                find_time: Duration::from_secs(60),
                ban_time: Duration::from_secs(BAN),
                ban_time_factor: 2.0,
                block_threshold: Some(1),
                ..DetectorConfig::default()
            },
            allow: f.allow.clone(),
            deny: f.deny.clone(),
        }
    }

    async fn start_with(ami: &FakeAmi, f: &Files, clock: &Clock) -> Daemon {
        let s = settings(ami, &f.dump, Whitelist::default());
        let d = Daemon::start_with(s, Box::new(DryRun::new()), clock.clone(), Some(policy(f)))
            .await
            .expect("daemon starts");
        ami.wait_logins(ami.logins() + 1).await;
        d
    }

    #[tokio::test]
    async fn thresholds_escalation_lists_and_history() {
        let ami = FakeAmi::start().await;
        let f = files();
        let clock = Clock::manual(T0);
        let d = start_with(&ami, &f, &clock).await;
        let (mut c, _) = ConsoleClient::connect(d.console_addr).await;
        let a = "203.0.113.77";

        // Two failures: below the threshold. The third bans.
        for _ in 0..2 {
            ami.send_event("ChallengeResponseFailed", "PJSIP", "1001", a);
        }
        ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.1");
        ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.1");
        ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.1");
        eventually("marker", || d.bans.get(ip("203.0.113.1")).is_some()).await;
        assert!(d.bans.get(ip(a)).is_none(), "two failures do not ban");
        ami.send_event("ChallengeResponseFailed", "PJSIP", "1001", a);
        eventually("third failure bans", || d.bans.get(ip(a)).is_some()).await;
        let b = d.bans.get(ip(a)).unwrap();
        assert!(b.reason.contains("3 failures"), "{}", b.reason);
        assert_eq!(b.expires, T0 + BAN);

        let check = c.command(&format!("check {a}")).await;
        assert!(check.contains("banned until"), "{check}");
        // A banned source keeps its history, not its counting detail (nor
        // the accounts: only the enumeration rule needs those).
        assert!(
            check.contains("banned 1 time so far, first seen [") && check.contains("last banned ["),
            "{check}"
        );

        // Unblocked, it offends again: past block_threshold 1, permanent.
        assert_eq!(
            c.command(&format!("unblock {a}")).await,
            format!("{a} unblocked")
        );
        clock.advance(5);
        for _ in 0..3 {
            ami.send_event("ChallengeResponseFailed", "PJSIP", "1001", a);
        }
        eventually("permanent", || {
            d.bans
                .get(ip(a))
                .is_some_and(|b| b.reason.ends_with("; permanent"))
        })
        .await;
        let deny = std::fs::read_to_string(&f.deny).unwrap();
        assert!(deny.contains(a), "{deny}");
        let status = c.command("status").await;
        assert!(status.contains("Dynamic (permanent)"), "{status}");
        let dynamic = c.command("status --dynamic").await;
        let line = dynamic.lines().find(|l| l.contains(a)).expect(&dynamic);
        assert!(
            line.contains("first seen") && line.contains("last banned"),
            "{dynamic}"
        );
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Deny") && l.ends_with(" 1")),
            "{status}"
        );

        // The allow list wins, and lifts a ban at once.
        ami.send_event("InvalidPassword", "SIP", "9", "203.0.113.88");
        ami.send_event("InvalidPassword", "SIP", "9", "203.0.113.88");
        ami.send_event("InvalidPassword", "SIP", "9", "203.0.113.88");
        eventually("ban .88", || d.bans.get(ip("203.0.113.88")).is_some()).await;
        assert_eq!(
            c.command("allow add 203.0.113.88 new office").await,
            "203.0.113.88/32 added to the allow list"
        );
        assert!(d.bans.get(ip("203.0.113.88")).is_none());
        assert!(
            std::fs::read_to_string(&f.allow)
                .unwrap()
                .contains("203.0.113.88 new office")
        );
        assert!(
            c.command("check 203.0.113.88")
                .await
                .contains("allowed by the allow list")
        );

        // deny del lifts the permanent ban.
        assert_eq!(
            c.command(&format!("deny del {a}")).await,
            format!("{a}/32 removed from the deny list")
        );
        assert!(d.bans.get(ip(a)).is_none());

        // A bad list file on reload: the old lists stay in force.
        std::fs::write(&f.allow, "198.51.100.0/24\nnot-an-address\n").unwrap();
        let r = c.command("reload").await;
        assert!(
            r.starts_with("reload failed, old lists kept:") && r.contains(":2:"),
            "{r}"
        );
        assert!(c.command("allow list").await.contains("203.0.113.88"));
        assert_eq!(
            c.command("version").await,
            format!("sipban {}", env!("CARGO_PKG_VERSION"))
        );
        d.stop().await.unwrap();

        // The history survives a restart (persisted with the bans).
        std::fs::write(&f.allow, "198.51.100.0/24\n").unwrap();
        let d = start_with(&ami, &f, &clock).await;
        let (mut c, _) = ConsoleClient::connect(d.console_addr).await;
        let check = c.command("check 203.0.113.1").await;
        assert!(check.contains("banned 1 time so far"), "{check}");
        d.stop().await.unwrap();
    }
}

#[tokio::test]
async fn deny_list_is_enforced_in_the_firewall_and_follows_changes() {
    use sipban::daemon::PolicySettings;
    use sipban::policy::detector::DetectorConfig;
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (allow, deny) = (dir.path().join("allow"), dir.path().join("deny"));
    std::fs::write(&allow, "").unwrap();
    std::fs::write(&deny, "10.9.0.0/16 scanners\n2001:db8:9::/48\n").unwrap();
    let dry = DryRun::new();
    let fw = dry.log();
    let policy = PolicySettings {
        detector: DetectorConfig::default(),
        allow,
        deny: deny.clone(),
    };
    let s = settings(&ami, &dir.path().join("dump"), Whitelist::default());
    let d = Daemon::start_with(s, Box::new(dry), Clock::manual(T0), Some(policy))
        .await
        .unwrap();
    let nets = |v: &[&str]| -> Vec<ipnet::IpNet> { v.iter().map(|n| n.parse().unwrap()).collect() };
    assert_eq!(fw.denied(), nets(&["10.9.0.0/16", "2001:db8:9::/48"]));
    ami.wait_logins(1).await;
    let (mut c, _) = ConsoleClient::connect(d.console_addr).await;
    assert_eq!(
        c.command("deny add 198.51.100.0/24 botnet").await,
        "198.51.100.0/24 added to the deny list"
    );
    assert_eq!(
        fw.denied(),
        nets(&["10.9.0.0/16", "198.51.100.0/24", "2001:db8:9::/48"])
    );
    assert!(
        std::fs::read_to_string(&deny)
            .unwrap()
            .contains("198.51.100.0/24 botnet")
    );
    c.command("deny del 10.9.0.0/16").await;
    assert_eq!(fw.denied(), nets(&["198.51.100.0/24", "2001:db8:9::/48"]));
    // An event from inside a denied network bans that source too.
    ami.send_event("InvalidPassword", "SIP", "1", "198.51.100.7");
    eventually("ban", || d.bans.get(ip("198.51.100.7")).is_some()).await;
    assert!(
        d.bans
            .get(ip("198.51.100.7"))
            .unwrap()
            .reason
            .contains("deny list")
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn report_and_csv_import_export() {
    use sipban::daemon::PolicySettings;
    use sipban::policy::detector::DetectorConfig;
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (allow, deny) = (dir.path().join("allow"), dir.path().join("deny"));
    std::fs::write(&allow, "").unwrap();
    std::fs::write(&deny, "").unwrap();
    let policy = PolicySettings {
        detector: DetectorConfig::default(),
        allow,
        deny: deny.clone(),
    };
    let mut s = settings(&ami, &dir.path().join("dump"), Whitelist::default());
    s.import_dir = Some(dir.path().to_path_buf());
    let d = Daemon::start_with(s, Box::new(DryRun::new()), Clock::manual(T0), Some(policy))
        .await
        .unwrap();
    ami.wait_logins(1).await;
    for _ in 0..3 {
        ami.send_event("ChallengeSent", "PJSIP", "1001", "203.0.113.50");
    }
    ami.send_event("InvalidAccountID", "PJSIP", "9999", "203.0.113.9");
    ami.send_event("InvalidAccountID", "PJSIP", "9998", "203.0.113.9");
    eventually("ban", || d.bans.get(ip("203.0.113.9")).is_some()).await;
    let (mut c, _) = ConsoleClient::connect(d.console_addr).await;
    // The second event is still in flight until the marker is banned.
    ami.send_event("InvalidPassword", "SIP", "1", "203.0.113.10");
    eventually("marker", || d.bans.get(ip("203.0.113.10")).is_some()).await;
    let report = c.command("report").await;
    assert!(
        report.contains("ChallengeSent") && report.contains("InvalidAccountID"),
        "{report}"
    );
    let top = report
        .lines()
        .find(|l| l.contains("203.0.113.50"))
        .expect(&report);
    assert!(top.trim_end().ends_with(" 3"), "{report}");
    assert!(report.contains("Bans issued: 2"), "{report}");

    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "address,note\n198.51.100.0/24,\"scanners, bulk\"\n2001:db8:7::/48,\n",
    )
    .unwrap();
    assert_eq!(
        c.command(&format!("deny import {}", csv.display())).await,
        "2 of 2 entries added to the deny list"
    );
    let export = c.command("deny export").await;
    assert!(
        export.contains("198.51.100.0/24,\"scanners, bulk\""),
        "{export}"
    );
    assert!(
        std::fs::read_to_string(&deny)
            .unwrap()
            .contains("2001:db8:7::/48")
    );
    // Only files inside [control] import_dir are read.
    let bad = c.command("deny import /nonexistent/x.csv").await;
    assert!(
        bad.starts_with("error: /nonexistent/x.csv is not a file inside the import directory"),
        "{bad}"
    );
    d.stop().await.unwrap();
}
