//! Test support: a fake Asterisk manager (banner, login, ping, event
//! streaming, dropping connections on demand) on an ephemeral port, and
//! daemon settings that point at it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sipban::ami::{AmiSettings, Backoff, Secret};
use sipban::daemon::Settings;
use sipban::policy::Whitelist;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Shared {
    login_ok: AtomicBool,
    answer_pings: AtomicBool,
    logins: AtomicUsize,
    failed_logins: AtomicUsize,
    pings: AtomicUsize,
    connections: AtomicUsize,
    /// Clients currently logged in.
    live: AtomicUsize,
    changed: Notify,
    /// The first line sent (`None`: Asterisk 20's).
    banner: std::sync::Mutex<Option<String>>,
    /// Every `Secret:` a client sent.
    secrets: std::sync::Mutex<Vec<String>>,
    /// When each connection was accepted (Tokio's clock: virtual when paused).
    accepted: std::sync::Mutex<Vec<tokio::time::Instant>>,
}

pub struct FakeAmi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    events: broadcast::Sender<Arc<Vec<u8>>>,
    kill: broadcast::Sender<()>,
    accept_task: JoinHandle<()>,
}

impl FakeAmi {
    pub async fn start() -> FakeAmi {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listens on `addr` (port 0 for an ephemeral one). Used again with the
    /// old address to simulate an Asterisk restart.
    pub async fn start_on(addr: SocketAddr) -> FakeAmi {
        let listener = bind_retry(addr).await;
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        shared.login_ok.store(true, Ordering::SeqCst);
        shared.answer_pings.store(true, Ordering::SeqCst);
        let (events, _) = broadcast::channel(100_000);
        let (kill, _) = broadcast::channel(4);
        let accept_task = {
            let shared = Arc::clone(&shared);
            let events = events.clone();
            let kill = kill.clone();
            tokio::spawn(async move {
                while let Ok((sock, _)) = listener.accept().await {
                    // Asterisk writes each event at once; without this, Nagle
                    // plus delayed ACKs would add ~40 ms to isolated events.
                    let _ = sock.set_nodelay(true);
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    shared
                        .accepted
                        .lock()
                        .unwrap()
                        .push(tokio::time::Instant::now());
                    tokio::spawn(serve(
                        sock,
                        Arc::clone(&shared),
                        events.subscribe(),
                        kill.subscribe(),
                    ));
                }
            })
        };
        FakeAmi {
            addr,
            shared,
            events,
            kill,
            accept_task,
        }
    }

    pub fn set_login_ok(&self, ok: bool) {
        self.shared.login_ok.store(ok, Ordering::SeqCst);
    }

    /// The first line new connections get, instead of Asterisk's banner.
    pub fn set_banner(&self, banner: &str) {
        *self.shared.banner.lock().unwrap() = Some(banner.to_string());
    }

    /// The secrets clients sent with `Action: Login`.
    pub fn secrets_seen(&self) -> Vec<String> {
        self.shared.secrets.lock().unwrap().clone()
    }

    /// When each connection was accepted.
    pub fn connection_times(&self) -> Vec<tokio::time::Instant> {
        self.shared.accepted.lock().unwrap().clone()
    }

    pub fn set_answer_pings(&self, yes: bool) {
        self.shared.answer_pings.store(yes, Ordering::SeqCst);
    }

    pub fn logins(&self) -> usize {
        self.shared.logins.load(Ordering::SeqCst)
    }

    pub fn failed_logins(&self) -> usize {
        self.shared.failed_logins.load(Ordering::SeqCst)
    }

    pub fn pings(&self) -> usize {
        self.shared.pings.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s of real time, however Tokio's clock runs) until
    /// `f` holds; panics otherwise.
    pub async fn wait(&self, what: &str, f: impl Fn(&FakeAmi) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f(self) {
            let notified = self.shared.changed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            if std::time::Instant::now() > deadline && !f(self) {
                panic!("fake AMI: timed out waiting for {what}");
            }
        }
    }

    /// Waits until at least `n` logins succeeded in total.
    pub async fn wait_logins(&self, n: usize) {
        self.wait(&format!("{n} logins"), |a| a.logins() >= n && a.live() > 0)
            .await;
    }

    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Sends raw bytes to every logged-in client.
    pub fn send_raw(&self, bytes: &[u8]) {
        let _ = self.events.send(Arc::new(bytes.to_vec()));
    }

    /// Sends one security event in Asterisk 20's exact layout.
    pub fn send_event(&self, event: &str, service: &str, account: &str, remote: &str) {
        self.send_raw(security_event(event, service, account, remote).as_bytes());
    }

    /// Closes every client connection (Asterisk crash or restart).
    pub fn drop_clients(&self) {
        let _ = self.kill.send(());
    }

    /// Stops listening and drops every client.
    pub fn stop(self) -> SocketAddr {
        self.drop_clients();
        self.accept_task.abort();
        self.addr
    }
}

async fn bind_retry(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("fake AMI: cannot bind {addr}");
}

/// One security event as Asterisk 20 writes it (CRLF, empty values kept).
pub fn security_event(event: &str, service: &str, account: &str, remote: &str) -> String {
    let family = if remote.contains(':') { "IPV6" } else { "IPV4" };
    let severity = match event {
        "ChallengeSent" | "SuccessfulAuth" => "Informational",
        _ => "Error",
    };
    format!(
        "Event: {event}\r\nPrivilege: security,all\r\nEventTV: 2026-11-21T12:53:39.022+0000\r\n\
         Severity: {severity}\r\nService: {service}\r\nEventVersion: 1\r\nAccountID: {account}\r\n\
         SessionID: 0x7fd1a0001810\r\nLocalAddress: {family}/UDP/192.0.2.1/5060\r\n\
         RemoteAddress: {family}/UDP/{remote}/5060\r\n\r\n"
    )
}

async fn read_action(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Some(fields);
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn serve(
    sock: TcpStream,
    shared: Arc<Shared>,
    mut events: broadcast::Receiver<Arc<Vec<u8>>>,
    mut kill: broadcast::Receiver<()>,
) {
    let (read, mut write) = sock.into_split();
    let mut reader = BufReader::new(read);
    let banner = shared.banner.lock().unwrap().clone();
    let banner = banner.unwrap_or_else(|| "Asterisk Call Manager/9.0.0".to_string());
    if write
        .write_all(format!("{banner}\r\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut logged_in = false;
    let result: Option<()> = async {
        loop {
            tokio::select! {
                action = read_action(&mut reader) => {
                    let action = action?;
                    let id = field(&action, "actionid").map(|id| format!("ActionID: {id}\r\n")).unwrap_or_default();
                    match field(&action, "action").map(str::to_ascii_lowercase).as_deref() {
                        Some("login") => {
                            if let Some(secret) = field(&action, "secret") {
                                shared.secrets.lock().unwrap().push(secret.to_string());
                            }
                            if shared.login_ok.load(Ordering::SeqCst) {
                                write.write_all(format!("Response: Success\r\n{id}Message: Authentication accepted\r\n\r\n").as_bytes()).await.ok()?;
                                logged_in = true;
                                shared.logins.fetch_add(1, Ordering::SeqCst);
                                shared.live.fetch_add(1, Ordering::SeqCst);
                            } else {
                                write.write_all(format!("Response: Error\r\n{id}Message: Authentication failed\r\n\r\n").as_bytes()).await.ok()?;
                                shared.failed_logins.fetch_add(1, Ordering::SeqCst);
                                shared.changed.notify_waiters();
                                return None;
                            }
                        }
                        Some("ping") => {
                            shared.pings.fetch_add(1, Ordering::SeqCst);
                            if shared.answer_pings.load(Ordering::SeqCst) {
                                write.write_all(format!("Response: Success\r\n{id}Ping: Pong\r\nTimestamp: 1763729616.458000\r\n\r\n").as_bytes()).await.ok()?;
                            }
                        }
                        Some("logoff") => {
                            write.write_all(format!("Response: Goodbye\r\n{id}Message: Thanks for all the fish.\r\n\r\n").as_bytes()).await.ok()?;
                            return None;
                        }
                        _ => {
                            write.write_all(format!("Response: Error\r\n{id}Message: Invalid/unknown command\r\n\r\n").as_bytes()).await.ok()?;
                        }
                    }
                    shared.changed.notify_waiters();
                }
                ev = events.recv(), if logged_in => {
                    match ev {
                        Ok(bytes) => write.write_all(&bytes).await.ok()?,
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return None,
                    }
                }
                _ = kill.recv() => return None,
            }
        }
    }
    .await;
    let _ = result;
    if logged_in {
        shared.live.fetch_sub(1, Ordering::SeqCst);
    }
    shared.changed.notify_waiters();
}

/// A console client speaking raw lines, as telnet or nc would.
pub struct ConsoleClient {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl ConsoleClient {
    pub async fn connect(addr: SocketAddr) -> (ConsoleClient, String) {
        let sock = TcpStream::connect(addr).await.expect("console connect");
        let (r, w) = sock.into_split();
        let mut c = ConsoleClient {
            reader: BufReader::new(r),
            writer: w,
        };
        let banner = c.read_to_prompt().await;
        (c, banner)
    }

    /// Everything up to and including the next `sipban>` prompt.
    pub async fn read_to_prompt(&mut self) -> String {
        let mut out = Vec::new();
        let fut = async {
            loop {
                let mut byte = [0u8; 1];
                let n = tokio::io::AsyncReadExt::read(&mut self.reader, &mut byte)
                    .await
                    .expect("console read");
                if n == 0 {
                    break;
                }
                out.push(byte[0]);
                if out.ends_with(b"sipban>") {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), fut)
            .await
            .expect("console: no prompt within 15 s");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends `line` with the given terminator and returns the reply without
    /// the prompt.
    pub async fn command_with(&mut self, line: &str, eol: &str) -> String {
        self.writer
            .write_all(format!("{line}{eol}").as_bytes())
            .await
            .expect("console write");
        let reply = self.read_to_prompt().await;
        reply.trim_end_matches("sipban>").trim_end().to_string()
    }

    pub async fn command(&mut self, line: &str) -> String {
        self.command_with(line, "\r\n").await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("console write");
    }

    /// Everything the server sends until it closes the session (at most
    /// 15 s: a guard against a hang, not a wait).
    pub async fn read_to_close(&mut self) -> String {
        let mut out = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut self.reader, &mut out);
        match tokio::time::timeout(Duration::from_secs(15), read).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("console read: {e}"),
            Err(_) => panic!("console: session not closed within 15 s"),
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// True once the server closed the session.
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(
            tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncReadExt::read(&mut self.reader, &mut buf)
            )
            .await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// The ban time of [`settings`], in seconds.
pub const BAN: u64 = 3600;

/// Daemon settings for `ami`: console on an ephemeral port, one-hour bans
/// dumped to `dump`, the whitelist `wl`, AMI events trusted from 127.0.0.1,
/// no periodic firewall check, no conntrack.
pub fn settings(ami: &FakeAmi, dump: &Path, wl: Whitelist) -> Settings {
    Settings {
        dump: Some(dump.to_path_buf()),
        whitelist: wl,
        ..settings_without_dump(ami)
    }
}

/// [`settings`] without a dump file and with an empty whitelist.
pub fn settings_without_dump(ami: &FakeAmi) -> Settings {
    Settings {
        ami: AmiSettings {
            host: "127.0.0.1".into(),
            port: ami.addr.port(),
            username: "sipban".into(),
            secret: Secret::new("getout"),
            ping_interval: None,
            reply_timeout: Duration::from_secs(2),
            backoff: Backoff {
                min: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
        },
        console: "127.0.0.1:0".parse().unwrap(),
        console_secret: None,
        console_idle: Duration::from_secs(300),
        import_dir: None,
        ban_time: Duration::from_secs(BAN),
        dump: None,
        whitelist: Whitelist::default(),
        whitelist_path: None,
        ami_hosts: vec!["127.0.0.1".parse().unwrap()],
        chain: "sipban-udp".into(),
        firewall_check: None,
        conntrack: None,
        ipset_name: None,
        whois: sipban::console::whois::WhoisSettings::default(),
        sensor: None,
    }
}
