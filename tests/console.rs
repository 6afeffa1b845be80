//! The console of the real daemon (fake Asterisk, dry-run firewall) as an
//! attacker and an administrator see it: the deny guard, imports that read
//! no file they should not, checked lines, deadlines, the session cap that
//! always lets an administrator in, and the login.

mod support;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use sipban::ami::Secret;
use sipban::clock::Clock;
use sipban::daemon::{Daemon, PolicySettings, Settings};
use sipban::firewall::{DryRun, DryRunLog};
use sipban::policy::Whitelist;
use sipban::policy::detector::DetectorConfig;
use support::{ConsoleClient, FakeAmi, settings};

const T0: u64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A daemon with allow and deny list files, its console on port 0.
struct Console {
    _ami: FakeAmi,
    dir: tempfile::TempDir,
    daemon: Daemon,
    fw: DryRunLog,
    deny: PathBuf,
}

impl Console {
    async fn start(allow: &str, tweak: impl FnOnce(&mut Settings, &std::path::Path)) -> Console {
        let ami = FakeAmi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (allow_file, deny) = (dir.path().join("allow"), dir.path().join("deny"));
        std::fs::write(&allow_file, allow).unwrap();
        std::fs::write(&deny, "").unwrap();
        let mut s = settings(&ami, &dir.path().join("dump"), Whitelist::default());
        // The AMI host: loopback in these tests, plus one more address.
        s.ami_hosts.push(ip("192.0.2.1"));
        tweak(&mut s, dir.path());
        let policy = PolicySettings {
            detector: DetectorConfig::default(),
            allow: allow_file,
            deny: deny.clone(),
        };
        let dry = DryRun::new();
        let fw = dry.log();
        let daemon = Daemon::start_with(s, Box::new(dry), Clock::manual(T0), Some(policy))
            .await
            .expect("daemon starts");
        Console {
            _ami: ami,
            dir,
            daemon,
            fw,
            deny,
        }
    }

    async fn client(&self) -> ConsoleClient {
        ConsoleClient::connect(self.daemon.console_addr).await.0
    }

    fn deny_file(&self) -> String {
        std::fs::read_to_string(&self.deny).unwrap()
    }
}

#[tokio::test]
async fn deny_entries_that_would_cut_off_the_host_are_refused_unless_forced() {
    let h = Console::start("198.51.100.0/24 office\n", |_, _| {}).await;
    let mut c = h.client().await;
    for (net, why) in [
        ("0.0.0.0/0", "0.0.0.0/0 is wider than /8"),
        ("::/0", "::/0 is wider than /32"),
        ("10.0.0.0/7", "10.0.0.0/7 is wider than /8"),
        ("127.0.0.0/8", "127.0.0.0/8 covers loopback"),
        ("::1", "::1/128 covers loopback"),
        ("192.0.2.0/24", "192.0.2.0/24 covers the AMI host 192.0.2.1"),
        (
            "198.0.0.0/8",
            "198.0.0.0/8 overlaps the allow list entry 198.51.100.0/24",
        ),
        (
            "198.51.100.7",
            "198.51.100.7/32 overlaps the allow list entry 198.51.100.0/24",
        ),
    ] {
        let reply = c.command(&format!("deny add {net} oops")).await;
        assert!(
            reply.starts_with(&format!("error: {why}; not added (deny add --force")),
            "{net}: {reply}"
        );
    }
    // Nothing changed: not in the list, the file or the firewall.
    assert_eq!(c.command("deny list").await, "");
    assert!(!h.deny_file().contains("oops"));
    assert!(h.fw.denied().is_empty());

    assert_eq!(
        c.command("deny add --force 198.0.0.0/8 I mean it").await,
        "198.0.0.0/8 added to the deny list"
    );
    assert_eq!(c.command("deny list").await, "198.0.0.0/8 I mean it");
    assert!(h.deny_file().contains("198.0.0.0/8 I mean it"));
    // In the firewall, the allow list wins: the /8 around the office's /24.
    let denied = h.fw.denied();
    let covers = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        denied.iter().any(|n| n.contains(&ip))
    };
    assert!(covers("198.0.0.1") && covers("198.255.255.255") && covers("198.51.101.1"));
    assert!(!covers("198.51.100.7"), "{denied:?}");
    // An ordinary entry needs no force; an allowed /0 is never accepted.
    assert_eq!(
        c.command("deny add 203.0.113.0/24").await,
        "203.0.113.0/24 added to the deny list"
    );
    let all = c.command("allow add 0.0.0.0/0").await;
    assert!(all.contains("would allow every address"), "{all}");
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_import_is_sent_as_lines_and_is_all_or_nothing() {
    let h = Console::start("198.51.100.0/24\n", |_, _| {}).await;
    let mut c = h.client().await;
    let intro = c.command("deny import").await;
    assert!(intro.starts_with("send the CSV lines"), "{intro}");
    c.send_raw(b"address,note\n203.0.113.0/24,scanners\n0.0.0.0/0,everything\r\n")
        .await;
    c.send_raw(b"198.51.100.9,office\n.\n").await;
    let refused = c.read_to_prompt().await;
    assert!(
        refused.starts_with("error: nothing imported: 2 entries refused (deny import --force"),
        "{refused}"
    );
    assert!(
        refused.contains("\nline 3: 0.0.0.0/0 is wider than /8"),
        "{refused}"
    );
    assert!(
        refused.contains("\nline 4: 198.51.100.9/32 overlaps"),
        "{refused}"
    );
    assert_eq!(c.command("deny list").await, "");

    // A bad line is named by number, and nothing is imported either.
    c.command("deny import").await;
    c.send_raw(b"203.0.113.0/24\nnot an address\n.\n").await;
    let bad = c.read_to_prompt().await;
    assert!(
        bad.starts_with("error: nothing imported: line 2: not an IP address or CIDR"),
        "{bad}"
    );
    assert_eq!(c.command("deny list").await, "");

    c.command("deny import").await;
    c.send_raw(b"203.0.113.0/24,scanners\r2001:db8:7::/48\r.\r")
        .await;
    assert_eq!(
        c.read_to_prompt().await,
        "2 of 2 entries added to the deny list\n\nsipban>"
    );
    assert!(h.deny_file().contains("203.0.113.0/24 scanners"));
    // The session goes on.
    assert_eq!(c.command("uptime").await, "Uptime 00:00:00");
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn imports_read_no_file_outside_the_import_directory_and_echo_none() {
    let secret_value = "hunter2-in-the-environment";
    let h = Console::start("", |_, _| {}).await;
    let mut c = h.client().await;
    // Without import_dir, no file at all is read.
    let reply = c.command("deny import /proc/self/environ").await;
    assert!(
        reply.starts_with("error: this console reads no files ([control] import_dir is not set)"),
        "{reply}"
    );
    assert!(reply.contains("send the content instead"), "{reply}");
    assert!(!reply.contains("PATH="), "{reply}");
    h.daemon.stop().await.unwrap();

    let h = Console::start("", |s, dir| {
        let imports = dir.join("imports");
        std::fs::create_dir(&imports).unwrap();
        s.import_dir = Some(imports);
    })
    .await;
    let imports = h.dir.path().join("imports");
    std::fs::write(imports.join("good.csv"), "203.0.113.0/24,bulk\n").unwrap();
    std::fs::write(
        imports.join("bad.csv"),
        format!("203.0.113.0/24\nSECRET={secret_value}\n"),
    )
    .unwrap();
    std::fs::write(h.dir.path().join("outside.csv"), "203.0.113.0/24\n").unwrap();
    std::os::unix::fs::symlink("/proc/self/environ", imports.join("env.csv")).unwrap();
    let mut c = h.client().await;
    for path in [
        "/proc/self/environ".to_string(),
        "env.csv".to_string(),
        "../outside.csv".to_string(),
        h.dir.path().join("outside.csv").display().to_string(),
    ] {
        let reply = c.command(&format!("deny import {path}")).await;
        assert!(
            reply.starts_with(&format!(
                "error: {path} is not a file inside the import directory"
            )),
            "{path}: {reply}"
        );
    }
    let bad = c.command("deny import bad.csv").await;
    assert_eq!(
        bad,
        "error: nothing imported: line 2: not an IP address or CIDR"
    );
    assert!(!bad.contains(secret_value));
    assert_eq!(c.command("deny list").await, "");
    assert_eq!(
        c.command("deny import good.csv").await,
        "1 of 1 entries added to the deny list"
    );
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn control_bytes_are_refused_and_every_line_end_is_answered() {
    let h = Console::start("", |_, _| {}).await;
    let mut c = h.client().await;
    assert_eq!(
        c.command("bl\0ock 203.0.113.5").await,
        "error: control byte 0x00 at column 3; line ignored"
    );
    assert_eq!(
        c.command("block\x1b[2J 203.0.113.5").await,
        "error: control byte 0x1b at column 6; line ignored"
    );
    assert_eq!(
        c.command_with("block 203.0.113.5\u{85}", "\n").await,
        "error: control character U+0085 at column 18; line ignored"
    );
    c.send_raw(b"block \xff\n").await;
    assert_eq!(
        c.read_to_prompt().await,
        "error: not valid UTF-8 at byte 7; line ignored\n\nsipban>"
    );
    assert!(
        h.daemon.bans.get(ip("203.0.113.5")).is_none(),
        "nothing ran"
    );
    // A bare CR, telnet's CR NUL, LF and CRLF each end one line.
    assert_eq!(c.command_with("uptime", "\r").await, "Uptime 00:00:00");
    assert_eq!(c.command_with("uptime", "\r\0").await, "Uptime 00:00:00");
    assert_eq!(c.command_with("uptime", "\n").await, "Uptime 00:00:00");
    assert_eq!(c.command_with("version", "\r\n").await, "sipban 0.1.0");
    h.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_idle_sessions_then_a_new_client_is_answered() {
    let h = Console::start("", |_, _| {}).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(h.client().await);
    }
    let mut admin = h.client().await;
    assert_eq!(admin.command("uptime").await, "Uptime 00:00:00");
    // The newest 63 still answer; the others were told and closed, oldest
    // first.
    let newest = held.split_off(200 - 63);
    for old in &mut held {
        let said = old.read_to_close().await;
        assert_eq!(
            said,
            "session closed: all 64 console sessions were taken and this one was idle the longest\n"
        );
    }
    for mut c in newest {
        assert_eq!(c.command("uptime").await, "Uptime 00:00:00");
    }
    h.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_have_not_logged_in_make_room_first() {
    let h = Console::start("", |s, _| s.console_secret = Some(Secret::new("s3cret"))).await;
    let mut admin = h.client().await;
    assert_eq!(admin.command("login s3cret").await, "logged in");
    let mut strangers = Vec::new();
    for _ in 0..100 {
        strangers.push(h.client().await);
    }
    // The administrator idled longest, but has logged in: still there.
    assert_eq!(admin.command("uptime").await, "Uptime 00:00:00");
    assert!(
        strangers[0]
            .read_to_close()
            .await
            .starts_with("session closed: all 64 console sessions were taken")
    );
    let mut newcomer = h.client().await;
    assert_eq!(newcomer.command("login s3cret").await, "logged in");
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_session_is_told_and_closed() {
    let h = Console::start("", |s, _| s.console_idle = Duration::from_millis(300)).await;
    let mut c = h.client().await;
    assert_eq!(c.command("uptime").await, "Uptime 00:00:00");
    let since = std::time::Instant::now();
    assert_eq!(c.read_to_close().await, "session closed: idle for 300 ms\n");
    assert!(since.elapsed() >= Duration::from_millis(300));
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_line_trickling_in_a_byte_a_second_is_cut_off() {
    let h = Console::start("", |_, _| {}).await;
    let mut c = h.client().await;
    assert_eq!(c.command("uptime").await, "Uptime 00:00:00");
    // Virtual time from here: the idle timeout (300 s) never passes, as a
    // byte comes every second, but the line must end within 10 s of its
    // first byte.
    tokio::time::pause();
    let start = tokio::time::Instant::now();
    for byte in b"uptime up" {
        c.send_raw(&[*byte]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        c.read_to_close().await,
        "session closed: a line must end within 10 s of its first byte\n"
    );
    assert!(start.elapsed() >= Duration::from_secs(10));
    tokio::time::resume();
    // Others still get in.
    let mut other = h.client().await;
    assert_eq!(other.command("uptime").await, "Uptime 00:00:00");
    h.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn the_login_comes_first_and_three_failures_close_the_session() {
    let h = Console::start("", |s, _| s.console_secret = Some(Secret::new("s3cret"))).await;
    let (mut c, banner) = ConsoleClient::connect(h.daemon.console_addr).await;
    assert!(banner.contains("login required: login SECRET"), "{banner}");
    for cmd in [
        "block 203.0.113.5",
        "status",
        "deny add 203.0.113.0/24",
        "flush",
    ] {
        assert_eq!(
            c.command(cmd).await,
            "error: login required (login SECRET)",
            "{cmd}"
        );
    }
    assert!(h.daemon.bans.get(ip("203.0.113.5")).is_none());
    assert!(c.command("help").await.contains("login {secret}"));
    assert_eq!(
        c.command("login wrong").await,
        "error: login failed (2 more tries allowed)"
    );
    // Same length, one byte off.
    assert_eq!(
        c.command("login s3creT").await,
        "error: login failed (1 more try allowed)"
    );
    c.send_raw(b"login S3CRET\n").await;
    assert_eq!(
        c.read_to_close().await,
        "error: login failed; session closed after 3 failures\n"
    );

    let mut c = h.client().await;
    assert_eq!(c.command("login s3cret").await, "logged in");
    assert_eq!(c.command("block 203.0.113.5").await, "203.0.113.5 block");
    assert_eq!(c.command("login s3cret").await, "already logged in");
    c.send_raw(b"quit\n").await;
    assert!(c.is_closed().await);
    h.daemon.stop().await.unwrap();
}
