//! The long-lived AMI connection: connect, check the banner, log in with
//! `Events: security`, forward security events, ping, and reconnect with
//! exponential backoff whenever the link breaks or goes quiet.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::codec::{AmiCodec, AmiFrame, CodecError};
use super::message::AmiMessage;
use super::security;
use crate::event::SecurityEvent;

/// A password that never shows up in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// Reconnect waits: from `min`, doubling up to `max`; back to `min` once a
/// login succeeds, so an Asterisk that restarts now and then is watched
/// again a second after it is back.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before the next attempt: back to `min` if the session that
    /// just ended had logged in.
    pub fn current(&self, wait: Duration, logged_in: bool) -> Duration {
        if logged_in { self.min } else { wait }
    }

    /// Doubles the wait, up to `max`.
    pub fn after_wait(&self, wait: Duration) -> Duration {
        (wait * 2).clamp(self.min, self.max)
    }
}

/// What every Asterisk manager says first (`Asterisk Call Manager/9.0.0`).
const BANNER: &str = "Asterisk Call Manager/";

#[derive(Clone, Debug)]
pub struct AmiSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub secret: Secret,
    /// `None` disables the periodic ping.
    pub ping_interval: Option<Duration>,
    /// A ping (or the banner, or the login reply) not answered within this
    /// time means the link is dead.
    pub reply_timeout: Duration,
    pub backoff: Backoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
}

#[derive(Debug, Error)]
pub enum AmiError {
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("no reply within {0:?} ({1})")]
    Timeout(Duration, &'static str),
    #[error("AMI login failed: {0}")]
    LoginFailed(String),
    #[error("{target} is not an Asterisk manager (it said {banner:?}); the secret was not sent")]
    NotAsterisk { target: String, banner: String },
    #[error("connection closed by Asterisk")]
    Eof,
    #[error("no Pong within {0:?}: link considered dead")]
    DeadLink(Duration),
    #[error("not connected to Asterisk")]
    NotConnected,
    #[error(transparent)]
    Codec(#[from] CodecError),
}

type PingReply = oneshot::Sender<Result<Duration, AmiError>>;

/// Cheap handle for the rest of the daemon (console `ping`, status).
#[derive(Clone, Debug)]
pub struct AmiHandle {
    pings: mpsc::Sender<PingReply>,
    state: watch::Receiver<LinkState>,
    reply_timeout: Duration,
}

impl AmiHandle {
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    /// Sends `Action: Ping` now and waits for Asterisk's answer.
    pub async fn ping(&self) -> Result<Duration, AmiError> {
        if self.state() != LinkState::Connected {
            return Err(AmiError::NotConnected);
        }
        let (tx, rx) = oneshot::channel();
        self.pings
            .send(tx)
            .await
            .map_err(|_| AmiError::NotConnected)?;
        match timeout(self.reply_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AmiError::NotConnected),
            Err(_) => Err(AmiError::Timeout(self.reply_timeout, "Ping")),
        }
    }

    /// Waits until the link reaches `want` (tests and start-up).
    pub async fn wait_for(&self, want: LinkState) {
        let mut rx = self.state.clone();
        let _ = rx.wait_for(|s| *s == want).await;
    }
}

/// Starts the client task. Events go to `events`; the task ends on `shutdown`.
pub fn spawn(
    settings: AmiSettings,
    events: mpsc::Sender<SecurityEvent>,
    shutdown: CancellationToken,
) -> (AmiHandle, tokio::task::JoinHandle<()>) {
    let (ping_tx, ping_rx) = mpsc::channel(16);
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
    let handle = AmiHandle {
        pings: ping_tx,
        state: state_rx,
        reply_timeout: settings.reply_timeout,
    };
    let client = Client {
        settings,
        events,
        pings: ping_rx,
        state: state_tx,
        next_id: 0,
    };
    (handle, tokio::spawn(client.run(shutdown)))
}

struct Client {
    settings: AmiSettings,
    events: mpsc::Sender<SecurityEvent>,
    pings: mpsc::Receiver<PingReply>,
    state: watch::Sender<LinkState>,
    next_id: u64,
}

/// How a session ended.
enum End {
    Shutdown,
    Failed {
        error: AmiError,
        logged_in_for: Option<Duration>,
    },
}

impl Client {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = self.settings.backoff.min;
        let target = format!("{}:{}", self.settings.host, self.settings.port);
        loop {
            self.state.send_replace(LinkState::Connecting);
            let end = tokio::select! {
                end = self.session(&target) => end,
                _ = shutdown.cancelled() => End::Shutdown,
            };
            self.state.send_replace(LinkState::Disconnected);
            match end {
                End::Shutdown => return,
                End::Failed {
                    error,
                    logged_in_for,
                } => {
                    backoff = self
                        .settings
                        .backoff
                        .current(backoff, logged_in_for.is_some());
                    if logged_in_for.is_some() {
                        tracing::warn!("AMI => disconnected from {target}: {error}");
                    } else {
                        match &error {
                            AmiError::LoginFailed(_) => tracing::error!("{error}"),
                            AmiError::NotAsterisk { .. } => tracing::error!("AMI => {error}"),
                            _ => tracing::warn!("AMI => {error}"),
                        }
                    }
                }
            }
            tracing::info!("AMI => reconnecting in {:.1}s", backoff.as_secs_f64());
            let wait = sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = shutdown.cancelled() => return,
                    Some(reply) = self.pings.recv() => {
                        let _ = reply.send(Err(AmiError::NotConnected));
                    }
                }
            }
            backoff = self.settings.backoff.after_wait(backoff);
        }
    }

    fn action_id(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("sipban-{what}-{}", self.next_id)
    }

    async fn session(&mut self, target: &str) -> End {
        let failed = |error| End::Failed {
            error,
            logged_in_for: None,
        };
        let wait = self.settings.reply_timeout;
        let stream = match timeout(wait, TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return failed(AmiError::Connect(target.to_string(), e)),
            Err(_) => return failed(AmiError::Timeout(wait, "connect")),
        };
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, AmiCodec::new());
        match timeout(wait, framed.next()).await {
            Ok(Some(Ok(AmiFrame::Banner(banner)))) if banner.starts_with(BANNER) => {
                tracing::debug!("AMI banner: {banner:?}");
            }
            // Whatever answered is not Asterisk: the secret stays here.
            Ok(Some(Ok(AmiFrame::Banner(banner)))) => {
                let banner = banner.chars().take(80).collect();
                return failed(AmiError::NotAsterisk {
                    target: target.to_string(),
                    banner,
                });
            }
            Ok(Some(Ok(_))) | Ok(None) => return failed(AmiError::Eof),
            Ok(Some(Err(e))) => return failed(e.into()),
            Err(_) => return failed(AmiError::Timeout(wait, "banner")),
        }
        let login_id = self.action_id("login");
        let login = AmiMessage::new()
            .with("Action", "Login")
            .with("ActionID", login_id.clone())
            .with("Username", self.settings.username.clone())
            .with("Secret", self.settings.secret.expose())
            .with("Events", "security");
        if let Err(e) = framed.send(&login).await {
            return failed(e.into());
        }
        let deadline = Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, framed.next()).await {
                Err(_) => return failed(AmiError::Timeout(wait, "login")),
                Ok(None) => return failed(AmiError::Eof),
                Ok(Some(Err(e))) => return failed(e.into()),
                Ok(Some(Ok(frame))) => frame,
            };
            let AmiFrame::Message(msg) = frame else {
                continue;
            };
            let is_reply = msg.get("Response").is_some()
                && msg.get("ActionID").is_none_or(|id| id == login_id);
            if !is_reply {
                continue;
            }
            if msg
                .get("Response")
                .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
            {
                break;
            }
            let why = msg.get("Message").unwrap_or("no message").to_string();
            return failed(AmiError::LoginFailed(why));
        }
        tracing::info!("AMI => connected to {target} as {}", self.settings.username);
        self.state.send_replace(LinkState::Connected);
        let since = Instant::now();
        let error = self.serve(&mut framed).await;
        let _ = framed
            .send(&AmiMessage::new().with("Action", "Logoff"))
            .await;
        match error {
            None => End::Shutdown,
            Some(error) => End::Failed {
                error,
                logged_in_for: Some(since.elapsed()),
            },
        }
    }

    /// The logged-in loop. Returns the error that ended it; never returns
    /// `None` on its own (the caller's select ends it on shutdown).
    async fn serve(&mut self, framed: &mut Framed<TcpStream, AmiCodec>) -> Option<AmiError> {
        let mut pending: HashMap<String, (Instant, Option<PingReply>)> = HashMap::new();
        let ping_every = self.settings.ping_interval;
        // An interval too large for the clock means: never.
        let after = |d: Duration| Instant::now().checked_add(d);
        let mut next_ping = ping_every.and_then(after);
        let reply_timeout = self.settings.reply_timeout;
        loop {
            let oldest = pending.values().map(|(sent, _)| *sent).min();
            let dead_at = oldest.map(|t| t + reply_timeout);
            tokio::select! {
                frame = framed.next() => match frame {
                    None => return Some(AmiError::Eof),
                    Some(Err(e)) => return Some(e.into()),
                    Some(Ok(AmiFrame::Oversized { bytes })) => {
                        tracing::warn!("AMI => dropped an oversized message ({bytes} bytes)");
                    }
                    Some(Ok(AmiFrame::Banner(_))) => {}
                    Some(Ok(AmiFrame::Message(msg))) => {
                        if let Some(id) = msg.get("ActionID")
                            && let Some((sent, reply)) = pending.remove(id)
                            && let Some(reply) = reply
                        {
                            let _ = reply.send(Ok(sent.elapsed()));
                        }
                        match security::from_message(&msg) {
                            Ok(Some(event)) => {
                                if self.events.send(event).await.is_err() {
                                    return None;
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!("AMI => ignored event: {e}"),
                        }
                    }
                },
                _ = sleep_until_opt(next_ping) => {
                    let id = self.action_id("ping");
                    if let Err(e) = send_ping(framed, &id).await {
                        return Some(e);
                    }
                    pending.insert(id, (Instant::now(), None));
                    next_ping = ping_every.and_then(after);
                }
                Some(reply) = self.pings.recv() => {
                    let id = self.action_id("ping");
                    if let Err(e) = send_ping(framed, &id).await {
                        let _ = reply.send(Err(AmiError::NotConnected));
                        return Some(e);
                    }
                    pending.insert(id, (Instant::now(), Some(reply)));
                }
                _ = sleep_until_opt(dead_at) => {
                    for (_, (_, reply)) in pending.drain() {
                        if let Some(reply) = reply {
                            let _ = reply.send(Err(AmiError::DeadLink(reply_timeout)));
                        }
                    }
                    return Some(AmiError::DeadLink(reply_timeout));
                }
            }
        }
    }
}

async fn send_ping(framed: &mut Framed<TcpStream, AmiCodec>, id: &str) -> Result<(), AmiError> {
    let ping = AmiMessage::new()
        .with("Action", "Ping")
        .with("ActionID", id);
    framed.send(&ping).await.map_err(AmiError::from)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_login() {
        let b = Backoff::default();
        let mut wait = b.min;
        let mut seen = vec![];
        for _ in 0..7 {
            wait = b.current(wait, false);
            seen.push(wait.as_secs());
            wait = b.after_wait(wait);
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30]);
        // A session that logged in resets it, however short it was.
        assert_eq!(b.current(Duration::from_secs(30), true).as_secs(), 1);
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("getout");
        assert_eq!(format!("{s:?}"), "MASKED");
        assert!(!format!("{s}").contains("getout"));
    }
}
