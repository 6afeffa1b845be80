//! The SIP sensor live, in private network namespaces joined by a veth
//! pair: the daemon (real nftables backend, `[sip] enabled`, the AMI link
//! down) in the "pbx" namespace with a small SIP responder that answers
//! REGISTER with 401 and OPTIONS with 200; a scanner sending
//! `User-Agent: friendly-scanner` and a phone sending OPTIONS from the
//! other. The scanner is banned on its first packet, with the reason and
//! User-Agent the sensor read; the phone is not. Traffic only ever goes
//! between the namespaces created here.

mod netns;
mod support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netns::runtime;
use sipban::clock::Clock;
use sipban::config::Config;
use sipban::daemon::{Daemon, Settings, build_backend};
use sipban::policy::Whitelist;
use support::ConsoleClient;

const PBX4: &str = "10.61.0.1";
const SCANNER: &str = "10.61.0.11";
const PHONE: &str = "10.61.0.50";

/// Answers each request from `sock` until `stop`: REGISTER 401, anything
/// else 200, with the request's Via, From, To, Call-ID and CSeq.
fn responder(sock: UdpSocket, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let header = |name: &str| {
                req.lines()
                    .find(|l| {
                        l.to_ascii_lowercase()
                            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                    })
                    .unwrap_or_default()
                    .to_string()
            };
            let status = if req.starts_with("REGISTER ") {
                "401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"asterisk\",nonce=\"1/ab\""
            } else {
                "200 OK"
            };
            let answer = format!(
                "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag=z9hG4bK-1\r\n{}\r\n{}\r\nServer: test-pbx\r\nContent-Length:  0\r\n\r\n",
                header("Via"),
                header("From"),
                header("To"),
                header("Call-ID"),
                header("CSeq"),
            );
            let _ = sock.send_to(answer.as_bytes(), from);
        }
    })
}

fn request(method: &str, user: &str, agent: &str, from: &str, call: &str) -> String {
    format!(
        "{method} sip:{user}@{PBX4} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from}:5060;branch=z9hG4bK-{call}\r\n\
         From: <sip:{user}@{PBX4}>;tag=1\r\n\
         To: <sip:{user}@{PBX4}>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 {method}\r\n\
         User-Agent: {agent}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// A port nothing listens on (the AMI link stays down).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_scanner_is_banned_on_its_first_packet_with_the_ami_link_down() {
    let (pbx, atk) = netns::wire(
        "sl",
        &[&format!("{PBX4}/16")],
        &[&format!("{SCANNER}/16"), &format!("{PHONE}/16")],
    );
    let target: SocketAddr = format!("{PBX4}:5060").parse().unwrap();
    let [scanner, phone] = netns::attacker_sockets(
        &atk,
        target,
        "[2001:db8::1]:5060".parse().unwrap(),
        [SCANNER, PHONE],
    );
    pbx.enter();
    runtime().block_on(async move {
        let text = format!(
            "[ami]\nhost = 127.0.0.1\nport = {}\n\n[sip]\nenabled = yes\ninterfaces = sl-pbx\n",
            closed_port()
        );
        let c = Config::parse(&text, std::path::Path::new("sensor.conf"))
            .expect("config")
            .config;
        let mut settings =
            Settings::from_config(&c, Whitelist::default(), vec!["127.0.0.1".parse().unwrap()]);
        settings.console = "127.0.0.1:0".parse().unwrap();
        settings.dump = None;
        settings.conntrack = None;
        settings.firewall_check = None;
        assert!(settings.sensor.is_some(), "[sip] enabled");
        let sock = UdpSocket::bind(format!("{PBX4}:5060")).expect("bind 5060");
        let stop = Arc::new(AtomicBool::new(false));
        let answering = responder(sock, Arc::clone(&stop));
        netns::capture_logs();
        let daemon = Daemon::start(settings, build_backend(&c, false), Clock::system())
            .await
            .expect("daemon starts");
        // The capture opens in its own task: wait until it says so.
        let (mut console, _) = ConsoleClient::connect(daemon.console_addr).await;
        let start = Instant::now();
        while !console
            .command("status")
            .await
            .contains("sensor on interface sl-pbx: capturing")
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no capture: {}",
                netns::logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The phone's OPTIONS is answered 200: never a failure.
        phone
            .send(
                request(
                    "OPTIONS",
                    "1001",
                    "Yealink SIP-T46S 66.86.0.15",
                    PHONE,
                    "p1",
                )
                .as_bytes(),
            )
            .unwrap();
        // The scanner's one REGISTER.
        scanner
            .send(request("REGISTER", "1000", "friendly-scanner", SCANNER, "4242").as_bytes())
            .unwrap();
        let ip: IpAddr = SCANNER.parse().unwrap();
        let start = Instant::now();
        let ban = loop {
            if let Some(b) = daemon.bans.get(ip) {
                break b;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the scanner was not banned"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(ban.reason, "scanner User-Agent friendly-scanner");
        assert!(
            daemon.bans.get(PHONE.parse().unwrap()).is_none(),
            "the phone"
        );
        // The log says what the sensor saw.
        let want = format!(
            "SENSOR => {SCANNER} (scanner User-Agent friendly-scanner) <- sensor Scanner account \"1000\" via UDP, User-Agent \"friendly-scanner\", REGISTER"
        );
        let start = Instant::now();
        while !netns::logs().contains(&want) {
            assert!(start.elapsed() < Duration::from_secs(5), "{want}\nnot in:\n{}", netns::logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // `report` names the scanner's User-Agent.
        let report = console.command("report").await;
        assert!(
            report.contains("Top User-Agents (SIP sensor):") && report.contains("friendly-scanner"),
            "{report}"
        );

        // In the kernel: its next REGISTER gets no answer, the phone's does.
        let mut buf = [0u8; 2048];
        let answered = |s: &UdpSocket, buf: &mut [u8]| {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            while s.recv(buf).is_ok() {}
            s.send(request("OPTIONS", "1001", "x", SCANNER, "again").as_bytes())
                .unwrap();
            s.recv(buf).is_ok()
        };
        let banned_in_kernel = {
            let start = Instant::now();
            loop {
                if !answered(&scanner, &mut buf) {
                    break true;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    break false;
                }
            }
        };
        assert!(banned_in_kernel, "the scanner still gets answers");
        assert!(answered(&phone, &mut buf), "the phone is cut off");

        stop.store(true, Ordering::SeqCst);
        answering.join().unwrap();
        daemon.stop().await.expect("stop");
    });
}
