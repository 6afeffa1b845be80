//! Signals on the real binary (dry-run firewall, a fake Asterisk on
//! loopback): SIGHUP re-reads the lists and keeps the old ones when the new
//! file has a bad line; SIGINT stops cleanly, like SIGTERM, with the dump
//! written.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{ConsoleClient, FakeAmi};

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: plain syscall on our unreaped child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0);
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_lists_and_sigint_stops_cleanly() {
    let fake = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let console = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    std::fs::write(p("sipban.wl"), "198.51.100.0/24 office\n").unwrap();
    std::fs::write(p("sipban.deny"), "").unwrap();
    let conf = p("sipban.conf");
    std::fs::write(
        &conf,
        format!(
            "[ami]\nport = \"{}\"\nping = 0\n\n[control]\nport = \"{console}\"\n\n\
             [iptables]\nwhite_list = \"{}\"\ndump = \"{}\"\n\n\
             [lists]\ndeny = \"{}\"\n\n[log]\nfile = \"{}\"\n",
            fake.addr.port(),
            p("sipban.wl").display(),
            p("sipban.dump").display(),
            p("sipban.deny").display(),
            p("sipban.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .args(["-c"])
        .arg(&conf)
        .arg("--dry-run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sipban");
    fake.wait_logins(1).await;
    let addr = format!("127.0.0.1:{console}").parse().unwrap();
    let (mut c, _) = ConsoleClient::connect(addr).await;
    assert_eq!(c.command("wl").await, "198.51.100.0/24 office");
    let log = || std::fs::read_to_string(p("sipban.log")).unwrap_or_default();

    // SIGHUP: the new list is in force.
    std::fs::write(
        p("sipban.wl"),
        "198.51.100.0/24 office\n192.0.2.0/24 branch\n",
    )
    .unwrap();
    signal(&child, libc::SIGHUP);
    until("the reload", || {
        log().contains("LISTS => reloaded: 2 allow")
    })
    .await;
    assert_eq!(
        c.command("wl").await,
        "198.51.100.0/24 office\n192.0.2.0/24 branch"
    );

    // A bad line: named with file:line, the old lists stay whole.
    std::fs::write(p("sipban.wl"), "203.0.113.0/24\nnot-an-address\n").unwrap();
    signal(&child, libc::SIGHUP);
    let wl = p("sipban.wl");
    let want = format!("reload failed, old lists kept: {}:2:", wl.display());
    until("the refused reload", || log().contains(&want)).await;
    assert_eq!(
        c.command("wl").await,
        "198.51.100.0/24 office\n192.0.2.0/24 branch"
    );

    // SIGINT: a clean stop, exit 0, the dump written.
    assert_eq!(c.command("block 203.0.113.50").await, "203.0.113.50 block");
    signal(&child, libc::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGINT");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(status.success(), "{status}");
    let text = log();
    assert!(
        text.contains("SIGNAL => stopping") && text.contains("] SipBan Stop"),
        "{text}"
    );
    let dumped = sipban::bans::persist::read(&p("sipban.dump"))
        .unwrap()
        .unwrap();
    assert!(dumped.iter().any(|e| e.ip.to_string() == "203.0.113.50"));
}
