//! The storm as users get it: the shipped binary with its shipped defaults
//! (only the backend named, conntrack, journal and log file on), fed one
//! burst of events in the captured Asterisk fixtures' shape, timed from the
//! first byte of the burst to the last source banned in the store (the
//! console's `check`) and to its element present in the kernel (a probe of
//! that one element). Several runs: median and spread.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{ConsoleClient, FakeAmi};
use super::{addr, secs, storm_bytes};

/// One run's figures.
pub struct Run {
    pub store: Duration,
    pub kernel: Duration,
}

/// Median, low and high of some durations.
pub fn spread(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let mid = v.get(v.len() / 2).copied().unwrap_or_default();
    let lo = v.first().copied().unwrap_or_default();
    let hi = v.last().copied().unwrap_or_default();
    (mid, lo, hi)
}

pub fn show((mid, lo, hi): (Duration, Duration, Duration)) -> String {
    format!("{} ({}-{})", secs(mid), secs(lo), secs(hi))
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    console: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn start(ami: &FakeAmi, backend: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let console = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let d = dir.path().display();
    let conf = dir.path().join("sipban.conf");
    std::fs::write(
        &conf,
        format!(
            "[ami]\nport = {}\nping = 0\n[control]\nport = {console}\n[iptables]\n\
             path = /usr/sbin/\nwhite_list = {d}/wl\ndump = {d}/dump\n[log]\nfile = {d}/log\n\
             [firewall]\nbackend = {backend}\n",
            ami.addr.port()
        ),
    )
    .unwrap();
    let logins = ami.logins();
    let child = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipban binary");
    let daemon = Daemon {
        child,
        _dir: dir,
        console,
    };
    ami.wait(&format!("login {}", logins + 1), |a| {
        a.logins() > logins && a.live() > 0
    })
    .await;
    daemon
}

/// Whether the kernel holds `ip` in our ban set (one element asked for).
fn in_kernel(backend: &str, ip: &str) -> bool {
    let ok = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    match backend {
        "nftables" => ok(
            "nft",
            &[
                "get",
                "element",
                "inet",
                "sipban",
                "sipban-udp-v4",
                &format!("{{ {ip} }}"),
            ],
        ),
        _ => ok("ipset", &["test", "sipban-udp-v4", ip]),
    }
}

/// One burst of `n` events from sources `offset..offset+n`.
pub async fn run(ami: &FakeAmi, backend: &str, n: usize, offset: usize) -> Run {
    let daemon = start(ami, backend).await;
    let addr_console = format!("127.0.0.1:{}", daemon.console).parse().unwrap();
    let (mut console, _) = ConsoleClient::connect(addr_console).await;
    let bytes = storm_bytes(n, offset);
    let last = addr(offset + n - 1).to_string();
    let check = format!("check {last}");
    let t0 = Instant::now();
    ami.send_raw(&bytes);
    let deadline = t0 + Duration::from_secs(300);
    let store = loop {
        if console.command(&check).await.contains("banned until") {
            break t0.elapsed();
        }
        assert!(Instant::now() < deadline, "{backend}: {last} never banned");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let kernel = loop {
        if in_kernel(backend, &last) {
            break t0.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{backend}: {last} never in the kernel"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    drop(console);
    drop(daemon);
    Run { store, kernel }
}

/// `runs` storms of `n` through the binary and as many raw-tool loads of
/// the same elements, interleaved; one line of figures.
pub async fn report(
    backend: &str,
    n: usize,
    runs: usize,
    raw: impl Fn(usize) -> Duration,
) -> (String, f64) {
    let ami = FakeAmi::start().await;
    let (mut store, mut kernel, mut raws) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let f = run(&ami, backend, n, r * n).await;
        store.push(f.store);
        kernel.push(f.kernel);
        raws.push(raw(n));
    }
    let k = spread(kernel);
    let w = spread(raws);
    let ratio = k.0.as_secs_f64() / w.0.as_secs_f64().max(1e-9);
    let mut line = String::new();
    let _ = write!(
        line,
        "binary, {backend:<9} storm {n:>6}: event -> store {}   -> kernel {}   raw tool {}   ratio {ratio:.2}x (medians of {runs})",
        show(spread(store)),
        show(k),
        show(w),
    );
    (line, ratio)
}
