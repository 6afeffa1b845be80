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
    // SIPBAN_BENCH_BIN: another build of it (e.g. one made for a profiler).
    let bin = std::env::var("SIPBAN_BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_sipban").into());
    let child = Command::new(bin)
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
/// nftables is asked over netlink for that one element
/// (`NFT_MSG_GETSETELEM` without `NLM_F_DUMP`): `nft get element` would
/// fetch the whole set first (about 1 s at 100k on this machine), which
/// would both delay the stop and steal the daemon's CPU.
fn in_kernel(backend: &str, ip: &str) -> bool {
    match backend {
        "nftables" => nft_has("sipban", "sipban-udp-v4", ip.parse().expect("IPv4")),
        _ => Command::new("ipset")
            .args(["test", "sipban-udp-v4", ip])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// One `NFT_MSG_GETSETELEM` for `ip` in `inet TABLE SET`: the kernel
/// answers with the element (`NFT_MSG_NEWSETELEM`) or an error (ENOENT).
fn nft_has(table: &str, set: &str, ip: std::net::Ipv4Addr) -> bool {
    fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
        buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(data);
        buf.resize(buf.len().div_ceil(4) * 4, 0);
    }
    fn nest(buf: &mut Vec<u8>, ty: u16, inner: Vec<u8>) {
        attr(buf, ty | 0x8000, &inner);
    }
    let cstr = |s: &str| [s.as_bytes(), &[0]].concat();
    let mut key = Vec::new();
    attr(&mut key, 1, &ip.octets()); // NFTA_DATA_VALUE
    let mut elem = Vec::new();
    nest(&mut elem, 1, key); // NFTA_SET_ELEM_KEY
    let mut list = Vec::new();
    nest(&mut list, 1, elem); // NFTA_LIST_ELEM
    let mut body = vec![1u8, 0, 0, 0]; // nfgenmsg: NFPROTO_INET, v0, res_id 0
    attr(&mut body, 1, &cstr(table)); // NFTA_SET_ELEM_LIST_TABLE
    attr(&mut body, 2, &cstr(set)); // NFTA_SET_ELEM_LIST_SET
    nest(&mut body, 3, list); // NFTA_SET_ELEM_LIST_ELEMENTS
    let mut msg = Vec::new();
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    // NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM; NLM_F_REQUEST | NLM_F_ACK.
    msg.extend_from_slice(&(10u16 << 8 | 13).to_ne_bytes());
    msg.extend_from_slice(&5u16.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        assert!(fd >= 0, "netlink socket");
        let sent = libc::send(fd, msg.as_ptr().cast(), msg.len(), 0);
        let mut buf = vec![0u8; 8192];
        let n = if sent == msg.len() as isize {
            libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0)
        } else {
            -1
        };
        libc::close(fd);
        // The first answer: NEWSETELEM (type 10 << 8 | 12) if present,
        // NLMSG_ERROR (2) if not.
        n >= 16 && u16::from_ne_bytes([buf[4], buf[5]]) == (10 << 8 | 12)
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
    assert!(
        !in_kernel(backend, &last),
        "{backend}: the probe sees {last} before the storm"
    );
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
