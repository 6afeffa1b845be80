//! Network namespaces for the firewall tests (tests/firewall_*.rs), so the
//! machine's own firewall is never touched: either the test thread unshares
//! a private namespace (threads and child processes it starts inherit it),
//! or the test creates named namespaces (`ip netns add`, deleted on drop)
//! and enters them with `setns`. Every command run through [`run_in`] (and
//! so [`run`], [`run_ok`], [`nft_script`]) first checks that the calling
//! thread is in the private namespace it entered. A test that cannot create
//! or enter its namespace fails; none is ever skipped.
//!
//! Also: a veth pair between two named namespaces and UDP probes through
//! it, polling, captured logs and a guard for child processes.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::io::{self, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

pub fn thread_netns() -> PathBuf {
    std::fs::read_link("/proc/thread-self/ns/net").expect("read /proc/thread-self/ns/net")
}

thread_local! {
    /// (namespace this thread left, private namespace it entered).
    static ENTERED: RefCell<Option<(PathBuf, PathBuf)>> = const { RefCell::new(None) };
}

fn record_entered(before: PathBuf) {
    let after = thread_netns();
    assert_ne!(
        before, after,
        "the network namespace of this thread did not change"
    );
    ENTERED.with(|e| {
        let mut e = e.borrow_mut();
        // Keep the namespace the thread started in as the one to stay out of.
        let host = e.take().map_or(before, |(host, _)| host);
        assert_ne!(host, after, "back in the namespace this thread started in");
        *e = Some((host, after));
    });
}

/// Panics unless the calling thread is in the private namespace it entered.
pub fn assert_private() {
    let now = thread_netns();
    ENTERED.with(|e| match &*e.borrow() {
        Some((host, private)) => {
            assert_ne!(&now, host, "refusing to touch the original namespace");
            assert_eq!(&now, private, "thread left its private namespace");
        }
        None => panic!(
            "refusing to run a firewall command: this thread never entered a private network namespace"
        ),
    });
}

/// Moves the calling thread into a new, empty network namespace with
/// loopback up.
pub fn unshare_netns() {
    let before = thread_netns();
    // SAFETY: plain syscall on the calling thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        panic!(
            "unshare(CLONE_NEWNET) failed: {} (these tests need root)",
            io::Error::last_os_error()
        );
    }
    record_entered(before);
    run_ok("ip", &["link", "set", "lo", "up"]);
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `body` in a fresh private network namespace. The future is only
/// polled after the thread has moved.
pub fn in_private_netns(body: impl Future<Output = ()>) {
    unshare_netns();
    runtime().block_on(body);
}

static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

/// A named namespace (`ip netns add`), deleted on drop.
pub struct NamedNetns {
    pub name: String,
}

impl NamedNetns {
    /// `sipban-CRATE-PID-N-ROLE`: unique per test binary, run and call.
    pub fn create(role: &str) -> NamedNetns {
        let name = format!(
            "sipban-{}-{}-{}-{role}",
            env!("CARGO_CRATE_NAME"),
            std::process::id(),
            NEXT_NS.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("cannot run ip");
        assert!(
            out.status.success(),
            "ip netns add {name} failed (these tests need root): {}",
            text(&out.stderr)
        );
        let ns = NamedNetns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .expect("cannot run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            text(&out.stderr)
        );
    }

    /// `ip netns exec NAME PROG ARGS`.
    pub fn exec(&self, prog: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, prog])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {prog}: {e}"))
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) {
        let before = thread_netns();
        let f = File::open(self.path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.path().display()));
        // SAFETY: `f` is an open namespace file for the whole call.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            panic!(
                "setns({}) failed: {}",
                self.name,
                io::Error::last_os_error()
            );
        }
        record_entered(before);
        let ino = f.metadata().expect("stat namespace file").ino();
        assert_eq!(
            thread_netns(),
            PathBuf::from(format!("net:[{ino}]")),
            "setns did not enter {}",
            self.name
        );
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A pbx and an attacker namespace joined by a veth pair `LINK-pbx` /
/// `LINK-atk` with the given addresses (`ADDR/LEN`; IPv6 ones without
/// duplicate address detection), both ends up. The pair is created inside
/// pbx with its peer straight in the attacker's namespace: nothing appears
/// in the original namespace.
pub fn wire(link: &str, pbx_addrs: &[&str], atk_addrs: &[&str]) -> (NamedNetns, NamedNetns) {
    let pbx = NamedNetns::create("pbx");
    let atk = NamedNetns::create("atk");
    let pbx_dev = format!("{link}-pbx");
    let atk_dev = format!("{link}-atk");
    pbx.ip(&[
        "link", "add", &pbx_dev, "type", "veth", "peer", "name", &atk_dev, "netns", &atk.name,
    ]);
    for (ns, dev, addrs) in [(&pbx, &pbx_dev, pbx_addrs), (&atk, &atk_dev, atk_addrs)] {
        for a in addrs {
            if a.contains(':') {
                ns.ip(&["addr", "add", a, "dev", dev, "nodad"]);
            } else {
                ns.ip(&["addr", "add", a, "dev", dev]);
            }
        }
        ns.ip(&["link", "set", dev, "up"]);
    }
    (pbx, atk)
}

// ---------------------------------------------------------------------------
// Commands (always in this thread's private namespace)
// ---------------------------------------------------------------------------

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

/// Runs a command in this thread's private namespace, feeding `stdin`.
pub fn run_in(prog: &str, args: &[&str], stdin: Option<&str>) -> Output {
    assert_private();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{prog}: writing stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"))
}

/// Runs a command in this thread's private namespace.
pub fn run(prog: &str, args: &[&str]) -> Output {
    run_in(prog, args, None)
}

/// A command in this thread's private namespace that must succeed; returns
/// its stdout.
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let out = run(prog, args);
    assert!(
        out.status.success(),
        "{prog} {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft -f -` with `script`, which must succeed.
pub fn nft_script(script: &str) {
    let out = run_in("nft", &["-f", "-"], Some(script));
    assert!(
        out.status.success(),
        "nft -f - failed: {}\n{script}",
        text(&out.stderr)
    );
}

/// The whole firewall configuration minus set elements and counters:
/// iptables-save/ip6tables-save, ipset headers and the nftables ruleset.
pub fn ruleset_snapshot() -> String {
    let mut out = String::new();
    for tool in ["iptables-save", "ip6tables-save"] {
        for line in run_ok(tool, &[]).lines() {
            if line.starts_with('#') {
                continue;
            }
            // `:INPUT ACCEPT [packets:bytes]`
            let line = match line.rfind(" [") {
                Some(i) if line.starts_with(':') => &line[..i],
                _ => line,
            };
            out.push_str(line);
            out.push('\n');
        }
    }
    for line in run_ok("ipset", &["save"]).lines() {
        if !line.starts_with("add ") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let mut v: serde_json::Value =
        serde_json::from_str(&run_ok("nft", &["-j", "list", "ruleset"])).unwrap();
    fn scrub(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("elem");
                for k in ["packets", "bytes"] {
                    if m.contains_key(k) {
                        m.insert(k.into(), serde_json::Value::from(0));
                    }
                }
                m.values_mut().for_each(scrub);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    scrub(&mut v);
    for item in v["nftables"].as_array().unwrap() {
        out.push_str(&item.to_string());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Polling and child processes
// ---------------------------------------------------------------------------

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills (SIGKILL) and reaps the child if the test ends before it exited.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Captured logs
// ---------------------------------------------------------------------------

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogSink;

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends every thread's log lines (the applier's too) to [`logs`].
pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| LogSink)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init()
            .expect("install the log capture");
    });
}

pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

// ---------------------------------------------------------------------------
// Real packets: attacker -> veth -> pbx:5060
// ---------------------------------------------------------------------------

static TOKEN: AtomicUsize = AtomicUsize::new(0);

/// An attacker socket bound to `local`, connected to `target`.
pub fn attacker_socket(local: &str, target: SocketAddr) -> UdpSocket {
    let local: IpAddr = local
        .parse()
        .unwrap_or_else(|_| panic!("not an address: {local}"));
    let local = SocketAddr::new(local, 0);
    let s = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
    s.connect(target).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Attacker sockets bound to `locals`, each connected to `pbx4` or `pbx6`
/// by its family, made on a thread inside the attacker's namespace
/// (sockets stay where they were created).
pub fn attacker_sockets<const N: usize>(
    atk: &NamedNetns,
    pbx4: SocketAddr,
    pbx6: SocketAddr,
    locals: [&str; N],
) -> [UdpSocket; N] {
    std::thread::scope(|s| {
        s.spawn(|| {
            atk.enter();
            locals.map(|local| {
                let target = if local.contains(':') { pbx6 } else { pbx4 };
                attacker_socket(local, target)
            })
        })
        .join()
        .expect("attacker thread")
    })
}

/// UDP listeners on `pbx4` and `pbx6` in this thread's namespace.
pub fn listeners(pbx4: SocketAddr, pbx6: SocketAddr) -> (UdpSocket, UdpSocket) {
    let l4 = UdpSocket::bind(pbx4).unwrap_or_else(|e| panic!("bind {pbx4}: {e}"));
    let l6 = UdpSocket::bind(pbx6).unwrap_or_else(|e| panic!("bind {pbx6}: {e}"));
    for l in [&l4, &l6] {
        l.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    (l4, l6)
}

/// A receive timeout. A signal landing in a receive with SO_RCVTIMEO gives
/// EINTR even with SA_RESTART, so that counts as nothing received too.
pub fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// A fresh datagram payload.
pub fn token(kind: &str) -> String {
    format!("{kind}-{}", TOKEN.fetch_add(1, Ordering::SeqCst))
}

/// Sends from `from` until `listener` gets one of its datagrams.
pub fn assert_reaches(from: &UdpSocket, listener: &UdpSocket, when: &str) {
    let me = from.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 128];
    loop {
        assert!(
            Instant::now() < deadline,
            "{when}: datagrams from {me} never reached the listener"
        );
        let token = token("probe");
        match from.send(token.as_bytes()) {
            Ok(_) => {}
            // An ICMP error left over from an earlier REJECT.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
            Err(e) => panic!("{when}: send from {me}: {e}"),
        }
        let wait = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wait {
            match listener.recv_from(&mut buf) {
                Ok((n, src)) if &buf[..n] == token.as_bytes() => {
                    assert_eq!(src, me, "{when}: source address");
                    return;
                }
                Ok(_) => {}
                Err(e) if nothing_yet(&e) => {}
                Err(e) => panic!("{when}: listener: {e}"),
            }
        }
    }
}

/// A flood from `from` never reaches `listener`, whether it is dropped or
/// rejected (for tests about which sources are cut off, not how).
pub fn assert_cut_off(from: &UdpSocket, listener: &UdpSocket, when: &str) {
    flood_unheard(from, listener, when);
}

/// A flood from `from` never reaches `listener`. With `silent` (DROP)
/// nothing answers; otherwise (REJECT) an ICMP port unreachable does.
pub fn assert_blocked(from: &UdpSocket, listener: &UdpSocket, silent: bool, when: &str) {
    let refused = flood_unheard(from, listener, when);
    let me = from.local_addr().unwrap();
    if silent {
        assert!(!refused, "{when}: {me} got an ICMP error: not a DROP");
    } else {
        assert!(refused, "{when}: {me} never got the ICMP error of REJECT");
    }
}

/// Sends 100 datagrams from `from`, checks for 300 ms that none reaches
/// `listener`; returns whether an ICMP error came back to `from`.
fn flood_unheard(from: &UdpSocket, listener: &UdpSocket, when: &str) -> bool {
    let me = from.local_addr().unwrap();
    let mut buf = [0u8; 128];
    let mut refused = false;
    for i in 0..100 {
        let token = token("flood");
        match from.send(token.as_bytes()) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
            Err(e) => panic!("{when}: send from {me}: {e}"),
        }
        if i % 25 == 0 {
            match from.recv(&mut buf) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused = true,
                Err(e) if nothing_yet(&e) => {}
                other => panic!("{when}: unexpected reply to {me}: {other:?}"),
            }
        }
    }
    let wait = Instant::now() + Duration::from_millis(300);
    while Instant::now() < wait {
        match listener.recv_from(&mut buf) {
            Ok((_, src)) => assert_ne!(src, me, "{when}: a blocked datagram got through"),
            Err(e) if nothing_yet(&e) => {}
            Err(e) => panic!("{when}: listener: {e}"),
        }
    }
    refused
}
