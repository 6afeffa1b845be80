//! Crash safety of the real binary, shared by tests/crash_safety.rs (a few
//! kills per backend, in CI) and benches/crash_soak.rs (20 kills per
//! backend, with figures): a daemon in a private network namespace, a
//! storm of attack events from a fake Asterisk, `kill -9` at a chosen
//! point, a restart, and then the promise checked: every address logged
//! `BLOCK =>` before the kill is banned in the kernel and tracked by the
//! new run, once each, and the kernel holds nothing the daemon does not
//! track.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{ChildGuard, NamedNetns, assert_private, run_ok};
use crate::support::{ConsoleClient, FakeAmi, security_event};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nftables,
    Ipset,
    Chain,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nftables => "nftables",
            Kind::Ipset => "ipset",
            Kind::Chain => "chain",
        }
    }
}

/// Where in a storm the daemon is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillAt {
    /// At the first `BLOCK =>` line of the storm: before any dump holds it.
    FirstBan,
    /// Once half the storm is logged.
    MidStorm,
    /// Once the whole storm is logged and dumped.
    After,
}

/// The i-th address of 198.18.0.0/15.
pub fn addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32,
    ))
}

/// A daemon (the real binary) in its own namespace, its files and the fake
/// Asterisk it logs in to.
pub struct Pbx {
    pub kind: Kind,
    pub ns: NamedNetns,
    pub fake: FakeAmi,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub dump: PathBuf,
    conf: PathBuf,
    console: u16,
    child: Option<ChildGuard>,
    next: usize,
    /// The log read so far: bytes, and the `BLOCK =>` addresses in them.
    seen: std::sync::Mutex<(u64, BTreeSet<IpAddr>)>,
}

/// What one kill and restart showed.
#[derive(Debug, Default)]
pub struct Round {
    /// `BLOCK =>` addresses in the log before the kill (every run so far).
    pub logged: usize,
    /// Of the storm's, how many the dump held at the kill.
    pub in_dump_at_kill: usize,
    /// Logged but not banned in the kernel or not tracked after the restart.
    pub lost: Vec<IpAddr>,
    /// In the kernel but not tracked (or the other way round).
    pub stale: Vec<IpAddr>,
    /// Addresses with more than one rule or listing.
    pub duplicates: Vec<IpAddr>,
    /// Tracked after the restart.
    pub tracked: usize,
    /// From the restart to the console answering with every ban.
    pub restart: Duration,
}

impl Round {
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.stale.is_empty() && self.duplicates.is_empty()
    }
}

impl Pbx {
    /// Creates the namespace and enters it with the calling thread (which
    /// then runs the fake Asterisk and the inspections).
    pub async fn new(kind: Kind) -> Pbx {
        let ns = NamedNetns::create("crash");
        ns.enter();
        let fake = FakeAmi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let console = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let p = |n: &str| dir.path().join(n);
        let (log, dump, conf, wl) = (
            p("sipban.log"),
            p("sipban.dump"),
            p("sipban.conf"),
            p("sipban.wl"),
        );
        std::fs::write(&wl, "# nobody\n").unwrap();
        std::fs::write(
            &conf,
            format!(
                "[ami]\nhost = \"127.0.0.1\"\nport = \"{}\"\nping = 0\n\n\
                 [control]\naddress = \"127.0.0.1\"\nport = \"{console}\"\n\n\
                 [timer]\nban = 3600\n\n\
                 [iptables]\npath = \"/usr/sbin/\"\nrule = \"DROP\"\n\
                 white_list = \"{}\"\ndump = \"{}\"\n\n\
                 [firewall]\nbackend = {}\nconntrack = no\ncheck_interval = 0\n\n\
                 [log]\nfile = \"{}\"\n",
                fake.addr.port(),
                wl.display(),
                dump.display(),
                kind.name(),
                log.display()
            ),
        )
        .unwrap();
        Pbx {
            kind,
            ns,
            fake,
            dir,
            log,
            dump,
            conf,
            console,
            child: None,
            next: 0,
            seen: std::sync::Mutex::new((0, BTreeSet::new())),
        }
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.txt")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Starts the daemon and waits until it is logged in to the fake
    /// Asterisk and its console answers.
    pub async fn start(&mut self) {
        assert_private();
        let logins = self.fake.logins();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns.name,
                env!("CARGO_BIN_EXE_sipban"),
                "-c",
            ])
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.stderr_path()).unwrap())
            .spawn()
            .expect("start sipban");
        self.child = Some(ChildGuard(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(self.fake.logins() > logins && self.fake.live() > 0) {
            if let Some(status) = self.child_mut().try_wait().expect("try_wait") {
                panic!("sipban exited early ({status}): {}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "no AMI login within 60 s: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn child_mut(&mut self) -> &mut std::process::Child {
        &mut self.child.as_mut().expect("daemon running").0
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.0.kill();
            let _ = c.0.wait();
        }
    }

    /// SIGTERM; the exit status must be success.
    pub fn term(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain syscall on our unreaped child.
        unsafe { libc::kill(c.0.id() as libc::pid_t, libc::SIGTERM) };
        let status = crate::netns::wait_exit(&mut c.0, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("no exit within 30 s of SIGTERM: {}", self.stderr()));
        assert!(status.success(), "exit {status}: {}", self.stderr());
    }

    /// Sends a storm of `n` attack events from addresses not used before;
    /// returns them.
    pub fn storm(&mut self, n: usize) -> Vec<IpAddr> {
        let ips: Vec<IpAddr> = (self.next..self.next + n).map(addr).collect();
        self.next += n;
        let mut bytes = Vec::with_capacity(n * 330);
        for ip in &ips {
            bytes.extend_from_slice(
                security_event("InvalidAccountID", "PJSIP", "100", &ip.to_string()).as_bytes(),
            );
        }
        self.fake.send_raw(&bytes);
        ips
    }

    /// Every address of a `BLOCK => ip (...)` line in the log (all runs).
    /// Reads only what was appended since the last call.
    pub fn logged(&self) -> BTreeSet<IpAddr> {
        use std::io::{Read, Seek, SeekFrom};
        let mut seen = self.seen.lock().unwrap();
        let (offset, ips) = &mut *seen;
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.seek(SeekFrom::Start(*offset));
            let mut new = Vec::new();
            let _ = f.read_to_end(&mut new);
            // Whole lines only; a line being written is read next time.
            let whole = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            *offset += whole as u64;
            for line in String::from_utf8_lossy(&new[..whole]).lines() {
                if let Some(ip) = line
                    .split_once("] BLOCK => ")
                    .and_then(|(_, rest)| rest.split(' ').next()?.parse().ok())
                {
                    ips.insert(ip);
                }
            }
        }
        ips.clone()
    }

    /// The addresses the dump holds now.
    pub fn dumped(&self) -> BTreeSet<IpAddr> {
        sipban::bans::persist::read(&self.dump)
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.ip)
            .collect()
    }

    /// Waits until the log holds `want` of `ips` (or all of them).
    async fn wait_logged(&self, ips: &[IpAddr], want: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logged = self.logged();
            if ips.iter().filter(|ip| logged.contains(*ip)).count() >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{want} BLOCK lines not logged within 60 s: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The bans the running daemon tracks (console `block`), with how many
    /// times each is listed.
    pub async fn tracked(&self) -> BTreeMap<IpAddr, usize> {
        let addr = format!("127.0.0.1:{}", self.console).parse().unwrap();
        let (mut c, _) = ConsoleClient::connect(addr).await;
        let listing = c.command("block").await;
        let mut out = BTreeMap::new();
        for ip in listing
            .lines()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<IpAddr>().ok())
        {
            *out.entry(ip).or_insert(0) += 1;
        }
        out
    }

    /// The bans the kernel holds, with how many rules or elements each has.
    pub fn kernel(&self) -> BTreeMap<IpAddr, usize> {
        let mut out = BTreeMap::new();
        let mut count = |ip: IpAddr| *out.entry(ip).or_insert(0) += 1;
        match self.kind {
            Kind::Nftables => {
                for set in ["sipban-udp-v4", "sipban-udp-v6"] {
                    let json = run_ok("nft", &["-j", "list", "set", "inet", "sipban", set]);
                    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                    for item in v["nftables"].as_array().into_iter().flatten() {
                        for e in item["set"]["elem"].as_array().into_iter().flatten() {
                            let val = if e.is_string() { e } else { &e["elem"]["val"] };
                            if let Some(ip) = val.as_str().and_then(|s| s.parse().ok()) {
                                count(ip);
                            }
                        }
                    }
                }
            }
            Kind::Ipset => {
                for set in ["sipban-udp-v4", "sipban-udp-v6"] {
                    for line in run_ok("ipset", &["save", set]).lines() {
                        let mut w = line.split_whitespace();
                        if w.next() == Some("add")
                            && w.next() == Some(set)
                            && let Some(ip) = w.next().and_then(|s| s.parse().ok())
                        {
                            count(ip);
                        }
                    }
                }
            }
            Kind::Chain => {
                for tool in ["iptables", "ip6tables"] {
                    for line in run_ok(tool, &["-w", "-S", "sipban-udp"]).lines() {
                        let mut w = line.split_whitespace();
                        if w.next() == Some("-A")
                            && let Some(ip) = w
                                .skip_while(|x| *x != "-s")
                                .nth(1)
                                .and_then(|s| s.split('/').next())
                                .and_then(|s| s.parse().ok())
                        {
                            count(ip);
                        }
                    }
                }
            }
        }
        out
    }

    /// One round: a storm of `n`, `kill -9` at `at`, a restart, and the
    /// checks.
    pub async fn round(&mut self, n: usize, at: KillAt) -> Round {
        let ips = self.storm(n);
        match at {
            KillAt::FirstBan => self.wait_logged(&ips, 1).await,
            KillAt::MidStorm => self.wait_logged(&ips, n / 2).await,
            KillAt::After => {
                self.wait_logged(&ips, n).await;
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let dumped = self.dumped();
                    if ips.iter().all(|ip| dumped.contains(ip)) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "storm not dumped within 30 s");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        self.kill9();
        let logged = self.logged();
        let dumped = self.dumped();
        let started = Instant::now();
        self.start().await;
        let tracked = self.tracked().await;
        let restart = started.elapsed();
        let kernel = self.kernel();
        let lost = logged
            .iter()
            .filter(|ip| !tracked.contains_key(ip) || !kernel.contains_key(ip))
            .copied()
            .collect();
        let stale = kernel
            .keys()
            .filter(|ip| !tracked.contains_key(ip))
            .chain(tracked.keys().filter(|ip| !kernel.contains_key(ip)))
            .copied()
            .collect();
        let duplicates = kernel
            .iter()
            .chain(tracked.iter())
            .filter(|(_, n)| **n > 1)
            .map(|(ip, _)| *ip)
            .collect();
        Round {
            logged: logged.len(),
            in_dump_at_kill: ips.iter().filter(|ip| dumped.contains(ip)).count(),
            lost,
            stale,
            duplicates,
            tracked: tracked.len(),
            restart,
        }
    }
}

impl Pbx {
    /// After a clean stop: none of our tables, sets or chains remain.
    pub fn kernel_objects_gone(&self) -> bool {
        let nft = run_ok("nft", &["list", "tables"]);
        let sets = run_ok("ipset", &["list", "-n"]);
        let chain = crate::netns::run("iptables", &["-w", "-S", "sipban-udp"]);
        !nft.contains("sipban") && !sets.contains("sipban") && !chain.status.success()
    }
}
