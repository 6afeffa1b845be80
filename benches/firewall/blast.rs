//! Packet generator and counter for the packet benchmarks. The sender is
//! a raw IPv4 socket (`IP_HDRINCL`) writing small UDP datagrams with
//! `sendmmsg`, rotating over a pool of source addresses and source ports:
//! one thread can be 32,000 sources each under a per-source rate limit, or
//! one source opening a new conntrack tuple with every packet. iperf3
//! cannot do either (one address, one port), hence this. The counter is a
//! UDP socket reading with `recvmmsg`, counting every datagram and those
//! from one watched source.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Datagrams per `sendmmsg`/`recvmmsg` call.
const BATCH: usize = 64;
/// UDP payload bytes (iperf3's `-l 64` of the measurement).
pub const PAYLOAD: usize = 64;
const IP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PACKET: usize = IP_HEADER + UDP_HEADER + PAYLOAD;
/// How often the counter drains its socket: the buffer holds ~30k
/// datagrams, tens of milliseconds at the fastest rates seen here.
const POLL: Duration = Duration::from_millis(1);
/// First source port of the rotation.
const FIRST_PORT: u16 = 1024;

/// What to send.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// Source addresses, one packet each in turn.
    pub sources: Vec<Ipv4Addr>,
    /// Distinct source ports, `FIRST_PORT..`, one packet each in turn.
    pub ports: u16,
    pub dest: SocketAddrV4,
    pub duration: Duration,
    /// Packets per second; `None`: as fast as the sender can.
    pub rate: Option<u64>,
}

/// What the sender managed.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub packets: u64,
    pub elapsed: Duration,
    /// The sending thread's CPU time. Each datagram crosses the veth and
    /// the receiving namespace's hooks in the sender's own system call
    /// (the softirq runs as it re-enables bottom halves, and this kernel
    /// charges that time to the running thread), so this is the path's
    /// cost whatever share of a core the scheduler gave the sender.
    pub cpu: Duration,
}

impl Sent {
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn raw_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(last_error(
            "socket(AF_INET, SOCK_RAW, IPPROTO_RAW) (needs root)",
        ));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// An IPv4+UDP datagram to `dest` with a zero UDP checksum (optional in
/// IPv4); the kernel fills the IP checksum, id and total length.
fn packet(dest: SocketAddrV4) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    let (ip, rest) = p.split_at_mut(IP_HEADER);
    let (udp, payload) = rest.split_at_mut(UDP_HEADER);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(PACKET as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = libc::IPPROTO_UDP as u8;
    ip[16..20].copy_from_slice(&dest.ip().octets());
    udp[2..4].copy_from_slice(&dest.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((UDP_HEADER + PAYLOAD) as u16).to_be_bytes());
    let text = b"REGISTER sip:pbx SIP/2.0\r\n";
    for (b, t) in payload.iter_mut().zip(text.iter().cycle()) {
        *b = *t;
    }
    p
}

fn set_source(p: &mut [u8; PACKET], ip: Ipv4Addr, port: u16) {
    p[12..16].copy_from_slice(&ip.octets());
    p[IP_HEADER..IP_HEADER + 2].copy_from_slice(&port.to_be_bytes());
}

/// Sends `t` from the calling thread's network namespace.
pub fn send(t: &Traffic) -> io::Result<Sent> {
    assert!(
        !t.sources.is_empty() && t.ports > 0,
        "traffic needs sources and ports"
    );
    let fd = raw_socket()?;
    let mut dest = sockaddr(t.dest);
    let template = packet(t.dest);
    let mut bufs = [template; BATCH];
    // SAFETY: all-zero iovec/mmsghdr are valid; pointers are set below.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let (mut src, mut port) = (0usize, 0u16);
    let mut packets = 0u64;
    let start = Instant::now();
    let cpu0 = thread_cpu();
    loop {
        let elapsed = start.elapsed();
        if elapsed >= t.duration {
            let cpu = thread_cpu().saturating_sub(cpu0);
            return Ok(Sent {
                packets,
                elapsed,
                cpu,
            });
        }
        if let Some(rate) = t.rate {
            let due = Duration::from_secs_f64(packets as f64 / rate as f64);
            if due > elapsed {
                std::thread::sleep((due - elapsed).min(t.duration - elapsed));
                continue;
            }
        }
        for ((buf, v), m) in bufs.iter_mut().zip(iov.iter_mut()).zip(msgs.iter_mut()) {
            set_source(buf, t.sources[src], FIRST_PORT + port);
            src = (src + 1) % t.sources.len();
            port = (port + 1) % t.ports;
            v.iov_base = buf.as_mut_ptr().cast();
            v.iov_len = PACKET;
            let h = &mut m.msg_hdr;
            h.msg_name = (&raw mut dest).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = v;
            h.msg_iovlen = 1;
        }
        // SAFETY: `msgs` points into `iov`, `bufs` and `dest`, all alive
        // and unmoved for the call.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // The device queue is full: those are lost, go on.
                Some(libc::ENOBUFS) | Some(libc::EINTR) => continue,
                _ => return Err(last_error("sendmmsg")),
            }
        }
        packets += n as u64;
    }
}

/// What the counter saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Received {
    pub packets: u64,
    /// From the watched source.
    pub watched: u64,
}

/// A UDP socket on `at` whose buffer holds a long burst (root may exceed
/// `rmem_max`).
pub fn listener(at: SocketAddrV4) -> io::Result<UdpSocket> {
    let l = UdpSocket::bind(at).map_err(|e| io::Error::new(e.kind(), format!("bind {at}: {e}")))?;
    let size: libc::c_int = 32 << 20;
    // SAFETY: a valid socket and a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last_error("SO_RCVBUFFORCE"));
    }
    Ok(l)
}

/// Counts datagrams on `l` until `done` is set and nothing came for
/// `quiet` (what the socket queued is counted too).
pub fn count(
    l: &UdpSocket,
    watch: Option<Ipv4Addr>,
    done: &AtomicBool,
    quiet: Duration,
) -> io::Result<Received> {
    let mut bufs = [[0u8; 256]; BATCH];
    // SAFETY: all-zero iovec/mmsghdr/sockaddr_in are valid values.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut names: [libc::sockaddr_in; BATCH] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let watched = watch.map(|ip| u32::from(ip).to_be());
    let mut got = Received::default();
    let mut last = Instant::now();
    loop {
        let slots = bufs.iter_mut().zip(iov.iter_mut()).zip(names.iter_mut());
        for (((buf, v), name), m) in slots.zip(msgs.iter_mut()) {
            v.iov_base = buf.as_mut_ptr().cast();
            v.iov_len = buf.len();
            let h = &mut m.msg_hdr;
            h.msg_name = (name as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = v;
            h.msg_iovlen = 1;
        }
        // SAFETY: `msgs` points into `iov`, `bufs` and `names`, all alive
        // and unmoved for the call.
        let n = unsafe {
            libc::recvmmsg(
                l.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let n = n as usize;
            got.packets += n as u64;
            if let Some(w) = watched {
                got.watched += names
                    .iter()
                    .take(n)
                    .filter(|a| a.sin_addr.s_addr == w)
                    .count() as u64;
            }
            last = Instant::now();
            continue;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => {}
            _ => return Err(last_error("recvmmsg")),
        }
        if done.load(Ordering::SeqCst) && last.elapsed() >= quiet {
            return Ok(got);
        }
        // Drained: poll again in a while rather than sleep in the socket,
        // so the sender's packets never have to wake this thread.
        std::thread::sleep(POLL);
    }
}

/// `Udp:` counters of this thread's namespace (`/proc/net/snmp`), by name.
pub fn udp_counter(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").ok()?;
    let mut rows = text.lines().filter(|l| l.starts_with("Udp:"));
    let names = rows.next()?;
    let values = rows.next()?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// Conntrack entries of this thread's namespace; 0 while conntrack is not
/// loaded in it.
pub fn conntrack_count() -> u64 {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
