//! The sensor's live capture on a real kernel (root), never in the host's
//! namespace: a pbx and an attacker namespace joined by a veth pair, the
//! capture inside pbx on its end of the pair, real UDP/TCP traffic over
//! IPv4 and IPv6. Only SIP packets, both ways, reach the capture, and the
//! kernel's counters agree.

mod netns;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use netns::{NamedNetns, runtime, unshare_netns, wire};
use sipban::sensor::capture::{
    Capture, CaptureError, CaptureOptions, Direction, EtherType, Frame, Interface, PortMatch, bpf,
};

const TCP: u8 = 6;
const UDP: u8 = 17;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn ports(list: &[&str]) -> Vec<PortMatch> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated string alive for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no interface {name} in this namespace");
    i
}

/// One captured packet, decoded by hand (the sensor's decoder is not this
/// test's subject).
#[derive(Debug, Clone)]
struct Seen {
    ethertype: EtherType,
    direction: Direction,
    ifindex: u32,
    timestamp: SystemTime,
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    tcp_flags: u8,
    payload: Vec<u8>,
}

fn decode(f: &Frame<'_>) -> Seen {
    assert!(!f.truncated(), "a short packet came truncated: {f:?}");
    assert_eq!(f.data.len(), f.len);
    let d = f.data;
    let (proto, src, dst, l4) = match f.ethertype {
        EtherType::Ipv4 => {
            assert_eq!(d[0] >> 4, 4, "{f:?}");
            let ihl = usize::from(d[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([d[2], d[3]]));
            let src: [u8; 4] = d[12..16].try_into().unwrap();
            let dst: [u8; 4] = d[16..20].try_into().unwrap();
            (d[9], IpAddr::from(src), IpAddr::from(dst), &d[ihl..total])
        }
        EtherType::Ipv6 => {
            assert_eq!(d[0] >> 4, 6, "{f:?}");
            let plen = usize::from(u16::from_be_bytes([d[4], d[5]]));
            let src: [u8; 16] = d[8..24].try_into().unwrap();
            let dst: [u8; 16] = d[24..40].try_into().unwrap();
            (
                d[6],
                IpAddr::from(src),
                IpAddr::from(dst),
                &d[40..40 + plen],
            )
        }
        other => panic!("the filter let {other} through: {f:?}"),
    };
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    let (tcp_flags, payload) = match proto {
        UDP => (0, &l4[8..]),
        TCP => (l4[13], &l4[usize::from(l4[12] >> 4) * 4..]),
        other => panic!("the filter let protocol {other} through: {f:?}"),
    };
    Seen {
        ethertype: f.ethertype,
        direction: f.direction,
        ifindex: f.ifindex,
        timestamp: f.timestamp,
        proto,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        tcp_flags,
        payload: payload.to_vec(),
    }
}

/// Everything the capture holds until `end` was seen and then nothing
/// came for 300 ms.
async fn collect(cap: &mut Capture, end: impl Fn(&Seen) -> bool) -> Vec<Seen> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen: Vec<Seen> = Vec::new();
    let mut ended = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "the end marker never came; got {seen:#?}"
        );
        let wait = if ended { 300 } else { 2000 };
        match tokio::time::timeout(Duration::from_millis(wait), cap.recv()).await {
            Ok(frame) => {
                let s = decode(&frame.expect("receive"));
                ended |= end(&s);
                seen.push(s);
            }
            Err(_) if ended => return seen,
            Err(_) => {}
        }
    }
}

/// Receives on `sock` until it gets `what` (5 s at most); returns the sender.
fn expect_datagram(sock: &UdpSocket, what: &[u8]) -> SocketAddr {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("waiting for {:?}: {e}", String::from_utf8_lossy(what)));
    assert_eq!(&buf[..n], what);
    from
}

fn find<'a>(seen: &'a [Seen], what: &str, pred: impl Fn(&Seen) -> bool) -> &'a Seen {
    seen.iter()
        .find(|s| pred(s))
        .unwrap_or_else(|| panic!("not captured: {what}; got {seen:#?}"))
}

#[test]
fn captures_sip_both_ways_and_nothing_else() {
    let (pbx, atk) = wire(
        "scap",
        &["10.77.0.1/24", "fd77::1/64"],
        &["10.77.0.2/24", "fd77::2/64"],
    );
    pbx.enter();
    runtime().block_on(async {
        let start = SystemTime::now();
        let dev = ifindex("scap-pbx");
        let mut cap = Capture::open(
            &Interface::parse("scap-pbx"),
            &ports(&["udp/5060", "tcp/5060"]),
        )
        .expect("open the capture");
        assert_eq!(cap.interface(), &Interface::Named("scap-pbx".into()));
        assert!(cap.receive_buffer() >= 1 << 20, "{}", cap.receive_buffer());

        let pbx4: SocketAddr = "10.77.0.1:5060".parse().unwrap();
        let pbx6: SocketAddr = "[fd77::1]:5060".parse().unwrap();
        let noise: SocketAddr = "10.77.0.1:9999".parse().unwrap();
        let sip4 = UdpSocket::bind(pbx4).unwrap();
        let sip6 = UdpSocket::bind(pbx6).unwrap();
        let other = UdpSocket::bind(noise).unwrap();
        let listener = TcpListener::bind(pbx4).unwrap();
        let (a4, a6, mut client) = in_netns(&atk, || {
            (
                UdpSocket::bind("10.77.0.2:0").unwrap(),
                UdpSocket::bind("[fd77::2]:0").unwrap(),
                TcpStream::connect(pbx4).expect("TCP connect to the pbx"),
            )
        });
        let atk4 = a4.local_addr().unwrap();
        let atk6 = a6.local_addr().unwrap();
        let atk_tcp = client.local_addr().unwrap();

        // A request, and the PBX's answer from 5060 back to the attacker.
        a4.send_to(b"INVITE udp4", pbx4).unwrap();
        assert_eq!(expect_datagram(&sip4, b"INVITE udp4"), atk4);
        sip4.send_to(b"SIP/2.0 401 udp4", atk4).unwrap();
        expect_datagram(&a4, b"SIP/2.0 401 udp4");
        // Not SIP: it crosses the veth but the capture never sees it.
        a4.send_to(b"noise 9999", noise).unwrap();
        assert_eq!(expect_datagram(&other, b"noise 9999"), atk4);
        // IPv6.
        a6.send_to(b"REGISTER udp6", pbx6).unwrap();
        assert_eq!(expect_datagram(&sip6, b"REGISTER udp6"), atk6);
        // TCP: handshake, a request, closed both ends.
        client.write_all(b"OPTIONS tcp4").unwrap();
        let (mut server, from) = listener.accept().unwrap();
        assert_eq!(from, atk_tcp);
        let mut got = [0u8; 12];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"OPTIONS tcp4");
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        drop(server);
        // The end marker.
        a4.send_to(b"END", pbx4).unwrap();
        expect_datagram(&sip4, b"END");

        let seen = collect(&mut cap, |s| s.payload == b"END").await;

        for s in &seen {
            assert!(
                s.src.port() == 5060 || s.dst.port() == 5060,
                "not SIP: {s:#?}"
            );
            assert_eq!(s.ifindex, dev, "{s:#?}");
            assert!(s.timestamp >= start - Duration::from_secs(1), "{s:#?}");
            assert!(s.timestamp <= SystemTime::now(), "{s:#?}");
            // To the pbx: incoming; from it: outgoing.
            let to_pbx = s.dst.ip() == pbx4.ip() || s.dst.ip() == pbx6.ip();
            let from_pbx = s.src.ip() == pbx4.ip() || s.src.ip() == pbx6.ip();
            assert_ne!(to_pbx, from_pbx, "{s:#?}");
            let expected = if to_pbx {
                Direction::Incoming
            } else {
                Direction::Outgoing
            };
            assert_eq!(s.direction, expected, "{s:#?}");
            let v4 = s.src.is_ipv4();
            assert_eq!(
                s.ethertype,
                if v4 { EtherType::Ipv4 } else { EtherType::Ipv6 }
            );
        }
        assert!(!seen.iter().any(|s| s.payload.starts_with(b"noise")));

        let req = find(&seen, "UDP request", |s| s.payload == b"INVITE udp4");
        assert_eq!((req.proto, req.src, req.dst), (UDP, atk4, pbx4));
        assert_eq!(req.direction, Direction::Incoming);
        assert_eq!(req.ethertype, EtherType::Ipv4);
        let ans = find(&seen, "UDP answer", |s| s.payload == b"SIP/2.0 401 udp4");
        assert_eq!((ans.proto, ans.src, ans.dst), (UDP, pbx4, atk4));
        assert_eq!(ans.direction, Direction::Outgoing);
        let v6 = find(&seen, "IPv6 request", |s| s.payload == b"REGISTER udp6");
        assert_eq!((v6.proto, v6.src, v6.dst), (UDP, atk6, pbx6));
        assert_eq!(v6.ethertype, EtherType::Ipv6);
        assert_eq!(v6.direction, Direction::Incoming);
        let syn = find(&seen, "TCP SYN", |s| {
            s.proto == TCP && s.tcp_flags & (SYN | ACK) == SYN
        });
        assert_eq!(
            (syn.src, syn.dst, syn.direction),
            (atk_tcp, pbx4, Direction::Incoming)
        );
        let syn_ack = find(&seen, "TCP SYN-ACK", |s| {
            s.proto == TCP && s.tcp_flags & (SYN | ACK) == SYN | ACK
        });
        assert_eq!(
            (syn_ack.src, syn_ack.dst, syn_ack.direction),
            (pbx4, atk_tcp, Direction::Outgoing)
        );
        let data = find(&seen, "TCP request", |s| s.payload == b"OPTIONS tcp4");
        assert_eq!((data.proto, data.direction), (TCP, Direction::Incoming));
        let tcp_out = seen
            .iter()
            .filter(|s| s.proto == TCP && s.direction == Direction::Outgoing)
            .count();
        assert!(tcp_out >= 2, "SYN-ACK and the ACKs/FIN of the pbx");

        // The kernel counted each of them, lost none, and nothing else.
        let stats = cap.stats().expect("stats");
        assert_eq!(stats.drops, 0);
        assert!(
            stats.packets >= seen.len() as u64,
            "{stats:?} < {}",
            seen.len()
        );
        let late = collect_now(&mut cap).await;
        assert!(
            stats.packets <= (seen.len() + late) as u64,
            "{stats:?}: counted more than {} + {late} received",
            seen.len()
        );
        assert_eq!(stats.delivered(), stats.packets);
        // Counters are totals: a second read keeps them.
        assert!(cap.stats().unwrap().packets >= stats.packets);
    });
}

/// Whatever is already queued (50 ms per packet at most).
async fn collect_now(cap: &mut Capture) -> usize {
    let mut n = 0;
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(50), cap.recv()).await {
        frame.expect("receive");
        n += 1;
    }
    n
}

/// Runs `f` on a thread inside `ns` (sockets stay in the namespace they
/// were made in).
fn in_netns<T: Send>(ns: &NamedNetns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            f()
        })
        .join()
        .expect("thread in the namespace")
    })
}

#[test]
fn any_interface_sees_loopback_both_ways() {
    unshare_netns();
    runtime().block_on(async {
        let lo = ifindex("lo");
        let mut cap = Capture::open(&Interface::parse("any"), &ports(&["udp/5060"])).unwrap();
        let pbx = UdpSocket::bind("127.0.0.1:5060").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let noise = UdpSocket::bind("127.0.0.1:9999").unwrap();
        peer.send_to(b"noise", noise.local_addr().unwrap()).unwrap();
        expect_datagram(&noise, b"noise");
        peer.send_to(b"OPTIONS lo", pbx.local_addr().unwrap())
            .unwrap();
        let from = expect_datagram(&pbx, b"OPTIONS lo");
        pbx.send_to(b"END", from).unwrap();
        expect_datagram(&peer, b"END");

        let seen = collect(&mut cap, |s| {
            s.payload == b"END" && s.direction == Direction::Incoming
        })
        .await;
        // Over loopback each packet leaves and arrives: four frames.
        let mut got: Vec<(&[u8], Direction)> = seen
            .iter()
            .map(|s| {
                assert_eq!(s.ifindex, lo);
                (s.payload.as_slice(), s.direction)
            })
            .collect();
        got.sort_by_key(|(p, d)| (p.to_vec(), *d == Direction::Incoming));
        assert_eq!(
            got,
            vec![
                (&b"END"[..], Direction::Outgoing),
                (&b"END"[..], Direction::Incoming),
                (&b"OPTIONS lo"[..], Direction::Outgoing),
                (&b"OPTIONS lo"[..], Direction::Incoming),
            ]
        );
        let stats = cap.stats().unwrap();
        assert_eq!((stats.packets, stats.drops), (4, 0));
    });
}

#[test]
fn long_packets_are_truncated_and_flagged() {
    unshare_netns();
    runtime().block_on(async {
        let options = CaptureOptions {
            max_frame: 100,
            ..CaptureOptions::default()
        };
        let filter = bpf::program(&ports(&["udp/5060"])).unwrap();
        let mut cap = Capture::open_with(&Interface::parse("lo"), &filter, &options).unwrap();
        let pbx = UdpSocket::bind("127.0.0.1:5060").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![b'x'; 1000];
        peer.send_to(&big, pbx.local_addr().unwrap()).unwrap();
        expect_datagram(&pbx, &big);
        for direction in [Direction::Outgoing, Direction::Incoming] {
            let f = tokio::time::timeout(Duration::from_secs(5), cap.recv())
                .await
                .expect("a frame")
                .expect("receive");
            assert_eq!(f.direction, direction);
            assert!(f.truncated());
            assert_eq!((f.data.len(), f.len), (100, 20 + 8 + 1000));
            assert_eq!(f.ethertype, EtherType::Ipv4);
        }
    });
}

#[test]
fn nonexistent_interface_is_a_clear_error() {
    unshare_netns();
    runtime().block_on(async {
        let err = Capture::open(&Interface::parse("nosuch0"), &ports(&["udp/5060"]))
            .expect_err("no such interface");
        assert!(
            matches!(&err, CaptureError::UnknownInterface { interface } if *interface == Interface::Named("nosuch0".into())),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "capture on interface nosuch0: no such network interface"
        );
        // An empty port list is an error too, naming the interface.
        let err = Capture::open(&Interface::parse("lo"), &[]).expect_err("no ports");
        assert_eq!(err.to_string(), "capture on interface lo: no ports to capture");
    });
}

#[test]
fn without_cap_net_raw_is_a_clear_error() {
    std::thread::spawn(|| {
        unshare_netns();
        drop_cap_net_raw();
        runtime().block_on(async {
            let err = Capture::open(&Interface::parse("lo"), &ports(&["udp/5060"]))
                .expect_err("no CAP_NET_RAW");
            assert!(matches!(err, CaptureError::Permission { .. }), "{err:?}");
            let text = err.to_string();
            assert!(
                text.starts_with("capture on interface lo: packet sockets need CAP_NET_RAW"),
                "{text}"
            );
        });
    })
    .join()
    .expect("the thread without CAP_NET_RAW");
}

/// Drops CAP_NET_RAW from the calling thread's effective set (credentials
/// are per thread; the thread is this test's own).
fn drop_cap_net_raw() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0,
            "capget: {}",
            std::io::Error::last_os_error()
        );
        assert_ne!(
            data[0].effective & (1 << CAP_NET_RAW),
            0,
            "tests run as root"
        );
        data[0].effective &= !(1 << CAP_NET_RAW);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0,
            "capset: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Sends `payload` from `from` to `to` every 100 ms until `listener` hears
/// it (5 s at most).
fn send_until_heard(from: &UdpSocket, to: &str, listener: &UdpSocket, payload: &[u8]) {
    listener
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "{to} never heard {payload:?}");
        from.send_to(payload, to).unwrap();
        if let Ok((n, _)) = listener.recv_from(&mut buf)
            && &buf[..n] == payload
        {
            return;
        }
    }
}

/// The next frame carrying `payload` (others, such as retries, skipped).
async fn next_with(cap: &mut Capture, payload: &[u8]) -> Seen {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), cap.recv())
            .await
            .unwrap_or_else(|_| panic!("no frame with {payload:?}"))
            .expect("receive");
        let s = decode(&frame);
        if s.payload == payload {
            return s;
        }
    }
}

/// Runs `ip -n PBX ARGS` 300 ms into a receive that has nothing queued
/// (so it really waits on the socket); returns what the receive gave.
async fn while_waiting(
    cap: &mut Capture,
    pbx: &NamedNetns,
    args: &[&str],
) -> Result<(), CaptureError> {
    // Take whatever is queued, so the socket's readiness is spent.
    assert_eq!(collect_now(cap).await, 0, "nothing else queued");
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["-n", &pbx.name]).args(args);
    let change = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        cmd.status()
    });
    let got = tokio::time::timeout(Duration::from_secs(5), cap.recv())
        .await
        .unwrap_or_else(|_| panic!("not woken by ip {}", args.join(" ")));
    let status = change.await.unwrap().expect("run ip");
    assert!(status.success(), "ip {}", args.join(" "));
    got.map(|_| ())
}

#[test]
fn interface_down_up_and_deleted() {
    let (pbx, atk) = wire("sdn", &["10.78.0.1/24"], &["10.78.0.2/24"]);
    pbx.enter();
    runtime().block_on(async {
        let mut cap = Capture::open(&Interface::parse("sdn-pbx"), &ports(&["udp/5060"])).unwrap();
        let sip = UdpSocket::bind("10.78.0.1:5060").unwrap();
        let a = in_netns(&atk, || UdpSocket::bind("10.78.0.2:0").unwrap());
        let to = "10.78.0.1:5060";
        send_until_heard(&a, to, &sip, b"before");
        next_with(&mut cap, b"before").await;

        // Down while a receive waits: reported once, not fatal.
        let err = while_waiting(&mut cap, &pbx, &["link", "set", "sdn-pbx", "down"])
            .await
            .expect_err("the link is down");
        assert!(matches!(err, CaptureError::InterfaceDown { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "capture on interface sdn-pbx: the interface is down"
        );
        // Up again: the same capture gets packets again.
        pbx.ip(&["link", "set", "sdn-pbx", "up"]);
        send_until_heard(&a, to, &sip, b"after");
        let s = next_with(&mut cap, b"after").await;
        assert_eq!(s.direction, Direction::Incoming);

        // Deleted: the socket is unbound for good. The kernel takes the
        // link down first and only says so; a receive that sees "down"
        // before the deletion is complete finds out on the next one.
        let mut err = while_waiting(&mut cap, &pbx, &["link", "del", "sdn-pbx"])
            .await
            .expect_err("the link is gone");
        if matches!(err, CaptureError::InterfaceDown { .. }) {
            err = tokio::time::timeout(Duration::from_secs(5), cap.recv())
                .await
                .expect("the deletion found within 5 s")
                .expect_err("the link is gone");
        }
        assert!(matches!(err, CaptureError::InterfaceGone { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "capture on interface sdn-pbx: the interface went away"
        );
    });
}

#[test]
fn a_link_down_at_open() {
    let (pbx, atk) = wire("sdo", &["10.79.0.1/24"], &["10.79.0.2/24"]);
    pbx.enter();
    pbx.ip(&["link", "set", "sdo-pbx", "down"]);
    // A second link, down, never up.
    pbx.ip(&[
        "link", "add", "sdo-x", "type", "veth", "peer", "name", "sdo-y",
    ]);
    runtime().block_on(async {
        let udp = ports(&["udp/5060"]);
        let mut cap = Capture::open(&Interface::parse("sdo-pbx"), &udp).expect("open while down");
        let mut dummy = Capture::open(&Interface::parse("sdo-x"), &udp).expect("open while down");
        // Up: capturing starts.
        pbx.ip(&["link", "set", "sdo-pbx", "up"]);
        let sip = UdpSocket::bind("10.79.0.1:5060").unwrap();
        let a = in_netns(&atk, || UdpSocket::bind("10.79.0.2:0").unwrap());
        send_until_heard(&a, "10.79.0.1:5060", &sip, b"up");
        assert_eq!(
            next_with(&mut cap, b"up").await.direction,
            Direction::Incoming
        );
        // Deleting a link that is down tells the socket nothing; the
        // receive finds out all the same.
        let err = while_waiting(&mut dummy, &pbx, &["link", "del", "sdo-x"])
            .await
            .expect_err("the link is gone");
        assert!(matches!(err, CaptureError::InterfaceGone { .. }), "{err:?}");
    });
}
