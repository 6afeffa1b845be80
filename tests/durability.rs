//! No accepted ban is lost: to a crash of the daemon's own tasks, to a
//! dump that cannot be written (a full disk, at run time or at stop), to an
//! unwritable place refused at start; and what the console acknowledges is
//! on disk at once. In-process tests use the dry-run firewall whose
//! "kernel" outlives the daemon (as a real one does); the full-disk test
//! runs the real binary with nftables in a private network namespace and
//! its dump on a tiny tmpfs of its own mount namespace.

mod netns;
mod support;

use std::fs::File;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sipban::bans::{BanManager, journal};
use sipban::clock::Clock;
use sipban::daemon::Daemon;
use sipban::firewall::{Backend, DryRun, DryRunOp, Firewall, FirewallError};
use sipban::policy::Whitelist;
use support::{ConsoleClient, FakeAmi, settings};

const T0: u64 = 1_800_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A backend that panics when asked to ban `poison`, and records whether
/// anyone tried to clean it up.
struct Poisoned {
    poison: IpAddr,
    pending: Vec<IpAddr>,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Backend for Poisoned {
    fn name(&self) -> &'static str {
        "poisoned"
    }
    fn init(&mut self) -> Result<(), FirewallError> {
        Ok(())
    }
    fn add(&mut self, ip: IpAddr, _timeout: Duration) {
        self.pending.push(ip);
    }
    fn delete(&mut self, _ip: IpAddr) {}
    fn commit(&mut self) -> Result<(), FirewallError> {
        if self.pending.contains(&self.poison) {
            panic!("a bug in a firewall backend");
        }
        self.pending.clear();
        Ok(())
    }
    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(Vec::new())
    }
    fn set_denied(&mut self, _nets: &[IpNet]) -> Result<(), FirewallError> {
        Ok(())
    }
    fn shutdown(&mut self) -> Result<(), FirewallError> {
        self.calls.lock().unwrap().push("shutdown");
        Ok(())
    }
}

#[tokio::test]
async fn a_core_task_dying_leaves_the_firewall_as_it_is() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let backend = Poisoned {
        poison: ip("203.0.113.66"),
        pending: Vec::new(),
        calls: Arc::clone(&calls),
    };
    let daemon = Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(backend),
        Clock::manual(T0),
    )
    .await
    .expect("daemon starts");
    ami.wait_logins(1).await;
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.5");
    ami.send_event("InvalidPassword", "PJSIP", "1001", "203.0.113.66");
    // The applier thread dies: the daemon notices.
    tokio::time::timeout(Duration::from_secs(10), daemon.failed())
        .await
        .expect("the daemon notices its firewall thread died");
    daemon.stop_after_failure().await;
    assert!(
        calls.lock().unwrap().is_empty(),
        "the crash path must not clean up the firewall: {:?}",
        calls.lock().unwrap()
    );
    // What it knew is on disk for the next start.
    let entries = sipban::bans::persist::read(&dump).unwrap().unwrap();
    assert!(entries.iter().any(|e| e.ip == ip("203.0.113.5")));
}

#[tokio::test]
async fn an_acknowledged_ban_is_on_disk_before_the_answer_and_a_restart_keeps_it() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    let kernel = DryRun::new().log();
    let clock = Clock::manual(T0);
    let daemon = Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(DryRun::with_log(kernel.clone())),
        clock.clone(),
    )
    .await
    .unwrap();
    let (mut c, _) = ConsoleClient::connect(daemon.console_addr).await;
    assert_eq!(c.command("block 203.0.113.9").await, "203.0.113.9 block");
    // Acknowledged: in the journal already, whatever the dump writer does.
    let replayed = journal::replay(&dump, 0);
    assert!(
        replayed.records.iter().any(|r| matches!(r,
            journal::Record::Ban(e) if e.ip == ip("203.0.113.9") && &*e.reason == "Manual block")),
        "{replayed:?}"
    );
    assert!(kernel.banned().contains(&ip("203.0.113.9")));
    assert_eq!(
        c.command("unblock 203.0.113.9").await,
        "203.0.113.9 unblocked"
    );
    assert!(
        journal::replay(&dump, 0)
            .records
            .contains(&journal::Record::Unban(ip("203.0.113.9")))
    );
    assert_eq!(c.command("block 203.0.113.10").await, "203.0.113.10 block");
    // kill -9: no stop at all. The dump may not have it yet; the journal
    // and the "kernel" do.
    drop(c);
    drop(daemon);
    let daemon = Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(DryRun::with_log(kernel.clone())),
        clock.clone(),
    )
    .await
    .unwrap();
    let b = daemon.bans.get(ip("203.0.113.10")).expect("kept");
    assert_eq!(b.reason, "Manual block");
    assert!(
        daemon.bans.get(ip("203.0.113.9")).is_none(),
        "the unblock holds"
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn bans_the_kernel_holds_and_no_disk_does_are_adopted_with_their_timeouts() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    // A crashed run's "kernel": one ban with 100 s left, no dump, no journal.
    let kernel = DryRun::new().log();
    {
        let fw = Firewall::start(Box::new(DryRun::with_log(kernel.clone())))
            .await
            .unwrap();
        fw.add(ip("203.0.113.77"), Duration::from_secs(102));
        // One in its grace only: its ban is over, it is not adopted.
        fw.add(ip("203.0.113.78"), Duration::from_secs(2));
        fw.sync().await;
    }
    let clock = Clock::manual(T0);
    let daemon = Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(DryRun::with_log(kernel.clone())),
        clock.clone(),
    )
    .await
    .unwrap();
    let b = daemon.bans.get(ip("203.0.113.77")).expect("adopted");
    assert_eq!(b.reason, sipban::bans::ADOPTED);
    assert_eq!(b.expires, T0 + 100, "the kernel's timeout less its grace");
    assert!(kernel.banned().contains(&ip("203.0.113.77")));
    assert!(daemon.bans.get(ip("203.0.113.78")).is_none());
    assert!(!kernel.banned().contains(&ip("203.0.113.78")), "removed");
    // It is on disk now, and expires like any ban.
    assert!(
        sipban::bans::persist::read(&dump)
            .unwrap()
            .unwrap()
            .iter()
            .any(|e| e.ip == ip("203.0.113.77"))
    );
    clock.advance(100);
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon.bans.get(ip("203.0.113.77")).is_some() {
        assert!(Instant::now() < deadline, "not expired");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn a_dump_that_cannot_be_written_at_stop_leaves_the_firewall() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state");
    std::fs::create_dir(&sub).unwrap();
    let dump = sub.join("sipban.dump");
    let kernel = DryRun::new().log();
    let daemon = Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(DryRun::with_log(kernel.clone())),
        Clock::manual(T0),
    )
    .await
    .unwrap();
    daemon
        .bans
        .ban_durably(ip("203.0.113.8"), "Manual block", None)
        .await;
    // The place of the dump goes away (as a disk that fails would).
    std::fs::remove_dir_all(&sub).unwrap();
    assert!(daemon.stop().await.is_err(), "the failed dump is reported");
    assert!(
        !kernel.ops().contains(&DryRunOp::Shutdown),
        "the firewall is left as it is"
    );
    assert_eq!(kernel.banned(), vec![ip("203.0.113.8")]);
}

#[tokio::test]
async fn an_unwritable_dump_place_stops_the_start() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("missing/sipban.dump");
    let err = match Daemon::start(
        settings(&ami, &dump, Whitelist::default()),
        Box::new(DryRun::new()),
        Clock::manual(T0),
    )
    .await
    {
        Ok(_) => panic!("started with a dump it cannot write"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("missing/sipban.dump") && err.contains("No such file"),
        "{err}"
    );
}

/// The BanManager alone: a ban acknowledged through `ban_durably` is in
/// the journal when it returns, and the journal is compacted into the dump.
#[tokio::test]
async fn the_dump_compacts_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    let fw = Firewall::start(Box::new(DryRun::quiet())).await.unwrap();
    let bans = BanManager::new(
        fw,
        Clock::manual(T0),
        Duration::from_secs(3600),
        Some(dump.clone()),
    );
    for i in 0..100u8 {
        bans.ban_durably(IpAddr::from([203, 0, 113, i]), "r", None)
            .await;
    }
    assert_eq!(journal::replay(&dump, 0).records.len(), 100);
    let files_before = journal::files(&dump).len();
    assert_eq!(bans.dump().await.unwrap(), 100);
    // The dump names the new generation; the older journal goes.
    bans.ban_durably(ip("198.51.100.1"), "r", None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while journal::files(&dump).len() > files_before {
        assert!(Instant::now() < deadline, "{:?}", journal::files(&dump));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let d = sipban::bans::persist::read_dump(&dump).unwrap().unwrap();
    let after = journal::replay(&dump, d.journal);
    assert_eq!(d.bans.len(), 100);
    assert_eq!(after.records.len(), 1, "only the change after the dump");
}

// ---------------------------------------------------------------------------
// The real binary: a full disk
// ---------------------------------------------------------------------------

#[test]
fn a_full_disk_loses_no_ban_the_kernel_keeps_them_and_the_restart_adopts_them() {
    let ns = netns::NamedNetns::create("full");
    ns.enter();
    netns::runtime().block_on(async {
        let fake = FakeAmi::start().await;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let console = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let (conf, log, wl) = (
            dir.path().join("sipban.conf"),
            dir.path().join("sipban.log"),
            dir.path().join("sipban.wl"),
        );
        std::fs::write(&wl, "# nobody\n").unwrap();
        std::fs::write(
            &conf,
            format!(
                "[ami]\nport = \"{}\"\nping = 0\n\n[control]\nport = \"{console}\"\n\n\
                 [iptables]\npath = \"/usr/sbin/\"\nrule = \"DROP\"\nwhite_list = \"{}\"\n\
                 dump = \"{}\"\n\n[firewall]\nbackend = nftables\nconntrack = no\n\
                 check_interval = 0\n\n[log]\nfile = \"{}\"\n",
                fake.addr.port(),
                wl.display(),
                state.join("sipban.dump").display(),
                log.display()
            ),
        )
        .unwrap();
        let stderr = dir.path().join("stderr");
        let spawn = |script: &str| {
            netns::assert_private();
            Command::new("ip")
                .args([
                    "netns", "exec", &ns.name, "unshare", "-m", "sh", "-c", script, "sh",
                ])
                .arg(&state)
                .arg(env!("CARGO_BIN_EXE_sipban"))
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&stderr).unwrap())
                .spawn()
                .expect("start sipban")
        };
        // The dump's directory is a 48 KiB tmpfs of the daemon's own mount
        // namespace: room for the start, not for 1000 bans.
        let mut child = netns::ChildGuard(spawn(
            "mount -t tmpfs -o size=48k tmpfs \"$1\" && exec \"$2\" -c \"$3\"",
        ));
        fake.wait_logins(1).await;
        let ips: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::from((0xc612_0000u32 + i).to_be_bytes()))
            .collect();
        let mut storm = Vec::new();
        for a in &ips {
            storm.extend(
                support::security_event("InvalidAccountID", "PJSIP", "100", &a.to_string())
                    .into_bytes(),
            );
        }
        fake.send_raw(&storm);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("] BLOCK => ").count() >= 1000 && text.contains("DUMP => cannot write")
            {
                break;
            }
            assert!(Instant::now() < deadline, "no full disk seen:\n{text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // SIGTERM: the dump fails, so the firewall stays.
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
        let status = netns::wait_exit(&mut child.0, Duration::from_secs(30)).expect("exit");
        assert!(!status.success(), "a stop that lost the dump must say so");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("the firewall is left as it is"), "{text}");
        let held = netns::run_ok("nft", &["list", "set", "inet", "sipban", "sipban-udp-v4"]);
        let in_kernel = ips.iter().filter(|a| held.contains(&a.to_string())).count();
        assert_eq!(in_kernel, 1000, "every ban is still in the kernel");

        // Restart with the disk back (this mount namespace: the directory
        // is empty): the bans are taken over from the kernel.
        let mut child = netns::ChildGuard(spawn("exec \"$2\" -c \"$3\""));
        fake.wait_logins(2).await;
        let addr = format!("127.0.0.1:{console}").parse().unwrap();
        let (mut c, _) = ConsoleClient::connect(addr).await;
        let listed = c.command("block").await;
        let tracked = ips
            .iter()
            .filter(|a| listed.contains(&format!(" {a}\n")) || listed.ends_with(&format!(" {a}")))
            .count();
        assert_eq!(tracked, 1000, "adopted after the restart");
        unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
        let status = netns::wait_exit(&mut child.0, Duration::from_secs(30)).expect("exit");
        assert!(status.success());
        // Now the disk took the dump: the bans are in it.
        let kept = sipban::bans::persist::read(&state.join("sipban.dump"))
            .unwrap()
            .unwrap();
        assert_eq!(kept.len(), 1000);
    });
}

/// A network ban (`block 198.51.100.0/24`, the 2024 original's hash:net
/// entries): in the kernel with the deny entries (minus what is allowed),
/// journaled, kept by a restart after kill -9, lifted on time.
#[tokio::test]
async fn a_network_ban_reaches_the_kernel_survives_a_crash_and_expires() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    let kernel = DryRun::new().log();
    let clock = Clock::manual(T0);
    let wl = Whitelist::parse("198.51.100.7\n", "wl".as_ref()).unwrap();
    let start = |kernel: sipban::firewall::DryRunLog, clock: Clock, wl: Whitelist| {
        let s = settings(&ami, &dump, wl);
        async move {
            Daemon::start(s, Box::new(DryRun::with_log(kernel)), clock)
                .await
                .unwrap()
        }
    };
    let daemon = start(kernel.clone(), clock.clone(), wl.clone()).await;
    let net: IpNet = "198.51.100.0/24".parse().unwrap();
    let (_, seq) = daemon.bans.ban_network(net, "Manual block").unwrap();
    daemon.bans.durable(seq).await;
    let covers = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        kernel.denied().iter().any(|n| n.contains(&ip))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !covers("198.51.100.8") {
        assert!(Instant::now() < deadline, "{:?}", kernel.denied());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!covers("198.51.100.7"), "the allowed address stays open");
    assert!(
        journal::replay(&dump, 0)
            .records
            .iter()
            .any(|r| matches!(r, journal::Record::BanNet(b) if b.net == net))
    );
    // kill -9, restart: still banned, still in the kernel.
    drop(daemon);
    let daemon = start(kernel.clone(), clock.clone(), wl.clone()).await;
    assert_eq!(daemon.bans.banned_networks(), vec![net]);
    assert!(covers("198.51.100.8"));
    // The ban time passes: lifted, and out of the kernel.
    clock.advance(support::BAN);
    let deadline = Instant::now() + Duration::from_secs(5);
    while covers("198.51.100.8") || !daemon.bans.banned_networks().is_empty() {
        assert!(
            Instant::now() < deadline,
            "not lifted: {:?}",
            kernel.denied()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.stop().await.unwrap();
}

/// A ban longer than the kernel can hold (ipset's limit, about 24.8 days)
/// has its kernel timeout renewed a day before the kernel would drop it:
/// no gap, however long the ban.
#[tokio::test]
async fn a_ban_longer_than_the_kernel_holds_is_renewed_before_it_lapses() {
    use sipban::firewall::sets::{KERNEL_GRACE, KERNEL_MAX_TIMEOUT};
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kernel = DryRun::new().log();
    let clock = Clock::manual(T0);
    let daemon = Daemon::start(
        settings(&ami, &dir.path().join("dump"), Whitelist::default()),
        Box::new(DryRun::with_log(kernel.clone())),
        clock.clone(),
    )
    .await
    .unwrap();
    daemon.bans.ban_permanently(ip("203.0.113.44"), "deny list");
    daemon.bans.firewall().sync().await;
    let refreshes = || {
        kernel
            .ops()
            .iter()
            .filter(|o| **o == DryRunOp::Refresh(ip("203.0.113.44")))
            .count()
    };
    assert_eq!(refreshes(), 0);
    // Held by the kernel until T0 + its maximum (less the grace); renewed a
    // day before that, not later.
    let kernel_end = KERNEL_MAX_TIMEOUT - KERNEL_GRACE;
    clock.advance(kernel_end - 86_400 - 1);
    daemon.bans.expire_due();
    daemon.bans.firewall().sync().await;
    assert_eq!(refreshes(), 0, "not yet due");
    clock.advance(1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while refreshes() == 0 {
        assert!(Instant::now() < deadline, "not renewed: {:?}", kernel.ops());
        daemon.bans.firewall().sync().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        daemon
            .bans
            .get(ip("203.0.113.44"))
            .is_some_and(|b| b.active)
    );
    daemon.stop().await.unwrap();
}

/// Dumps asked for at the same time (the dump writer, `flush`, `save`, a
/// restore) are written one after the other: the disk always holds every
/// ban, in the dump or in the journal after it.
#[tokio::test]
async fn concurrent_dumps_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("sipban.dump");
    let fw = Firewall::start(Box::new(DryRun::quiet())).await.unwrap();
    let bans = BanManager::new(
        fw,
        Clock::manual(T0),
        Duration::from_secs(3600),
        Some(dump.clone()),
    );
    let mut all = Vec::new();
    for round in 0..20u8 {
        let a = IpAddr::from([203, 0, 113, round]);
        bans.ban_durably(a, "r", None).await;
        all.push(a);
        let (x, y, z) = tokio::join!(bans.dump(), bans.dump(), bans.dump());
        assert!(x.is_ok() && y.is_ok() && z.is_ok());
    }
    let d = sipban::bans::persist::read_dump(&dump).unwrap().unwrap();
    let mut on_disk: Vec<IpAddr> = d.bans.iter().map(|e| e.ip).collect();
    for r in journal::replay(&dump, d.journal).records {
        if let journal::Record::Ban(b) = r {
            on_disk.push(b.ip);
        }
    }
    for a in &all {
        assert!(on_disk.contains(a), "{a} lost");
    }
}
