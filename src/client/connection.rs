//! One blocking session with the console: connect, banner, login, one
//! command and its reply at a time, each within a deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::ConsoleTarget;
use super::replies::{Reply, printable};
use crate::ami::Secret;
use crate::console::PROMPT;

/// Time allowed to open the connection, and for the banner to arrive.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one reply (`ping` waits for Asterisk, `flush` for the
/// firewall).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A reply larger than this is refused rather than buffered (the `block`
/// listing of 100k bans is about 4 MB).
pub const MAX_REPLY: usize = 64 << 20;

/// Why there was no reply. Each message names the console's address.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the console at {addr}: {reason} (is sipban running?)")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error(
        "cannot reach the console at {addr}: no answer within {} (is sipban running, and listening there?)",
        human(.after)
    )]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error(
        "the console at {addr} sent no prompt within {} (is that sipban's console?)",
        human(.after)
    )]
    NoBanner { addr: SocketAddr, after: Duration },
    #[error("the console at {addr} did not answer {command:?} within {}", human(.after))]
    ReplyTimeout {
        addr: SocketAddr,
        command: String,
        after: Duration,
    },
    #[error("the console at {addr} closed the connection{}", detail_suffix(.detail))]
    Closed { addr: SocketAddr, detail: String },
    #[error("lost the connection to the console at {addr}: {reason}")]
    Io { addr: SocketAddr, reason: String },
    #[error("the console at {addr} sent a reply over {} MiB; giving up", MAX_REPLY >> 20)]
    TooLarge { addr: SocketAddr },
    #[error("a console command is one line: {0:?} has a line break")]
    BadLine(String),
    /// The reply to `login`; the secret tried is never shown.
    #[error("the console at {addr} refused the login: {reply}")]
    LoginRefused { addr: SocketAddr, reply: String },
    #[error(
        "the console secret has a line break or a control character and cannot be sent \
         (check {} or [control] secret)",
        super::SECRET_ENV
    )]
    BadSecret,
    #[error("cannot set up the terminal: {0}")]
    Terminal(String),
}

fn human(d: &Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn detail_suffix(detail: &str) -> String {
    match detail.is_empty() {
        true => String::new(),
        false => format!(": {detail}"),
    }
}

/// An I/O error as a person reads it: `Connection refused`, without the
/// `(os error 111)`.
pub(crate) fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text.get(..i).unwrap_or(&text).to_string(),
        _ => text,
    }
}

/// Connect and reply deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connection plus banner.
    pub connect: Duration,
    /// One reply.
    pub reply: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            reply: REPLY_TIMEOUT,
        }
    }
}

/// Why a framed read stopped.
enum ReadFail {
    Timeout,
    Eof(Vec<u8>),
    Io(io::Error),
    TooLarge,
}

/// A session with the console (blocking I/O; one command at a time).
pub struct Client {
    stream: TcpStream,
    addr: SocketAddr,
    timeouts: Timeouts,
    banner: String,
    /// The session is over (closed by the server, or left in an unknown
    /// state by an error): every further command fails.
    closed: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Client {
    /// Connects with the default [`Timeouts`] and reads the banner.
    pub fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        Self::connect_with(addr, Timeouts::default())
    }

    pub fn connect_with(addr: SocketAddr, timeouts: Timeouts) -> Result<Client, ClientError> {
        let stream =
            TcpStream::connect_timeout(&addr, timeouts.connect).map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    ClientError::ConnectTimeout {
                        addr,
                        after: timeouts.connect,
                    }
                }
                _ => ClientError::Unreachable {
                    addr,
                    reason: io_reason(&e),
                },
            })?;
        let _ = stream.set_nodelay(true);
        // A console that stops reading must not block a write forever.
        let _ = stream.set_write_timeout(Some(timeouts.reply));
        let mut client = Client {
            stream,
            addr,
            timeouts,
            banner: String::new(),
            closed: false,
        };
        let deadline = Instant::now() + timeouts.connect;
        match client.read_reply(deadline) {
            Ok(bytes) => client.banner = printable(&bytes),
            Err(ReadFail::Timeout) => {
                return Err(ClientError::NoBanner {
                    addr,
                    after: timeouts.connect,
                });
            }
            // "too many console sessions", for one.
            Err(ReadFail::Eof(partial)) => {
                return Err(ClientError::Closed {
                    addr,
                    detail: printable(&partial),
                });
            }
            Err(fail) => return Err(client.fail_error(fail, "")),
        }
        Ok(client)
    }

    /// Connects to `target` and logs in when it has a secret.
    pub fn open(target: &ConsoleTarget) -> Result<Client, ClientError> {
        Self::open_with(target, Timeouts::default())
    }

    pub fn open_with(target: &ConsoleTarget, timeouts: Timeouts) -> Result<Client, ClientError> {
        let mut client = Self::connect_with(target.addr, timeouts)?;
        if let Some(secret) = &target.secret {
            client.login(secret)?;
        }
        Ok(client)
    }

    /// `login SECRET`; a refusal is an error, and the session is over.
    pub fn login(&mut self, secret: &Secret) -> Result<(), ClientError> {
        if secret.expose().contains(char::is_control) {
            return Err(ClientError::BadSecret);
        }
        let line = format!("login {}", secret.expose());
        let reply = self.exchange(&line, "login")?;
        if reply.is_error {
            self.closed = true;
            return Err(ClientError::LoginRefused {
                addr: self.addr,
                reply: reply.text,
            });
        }
        // The banner asked for a login, which is done.
        self.banner = self
            .banner
            .lines()
            .filter(|l| !l.starts_with("login required"))
            .collect::<Vec<_>>()
            .join("\n");
        Ok(())
    }

    /// `allow|deny import [--force]` followed by `lines` and the closing
    /// `.`: the console's import of content sent by the client. A refusal
    /// of the import command itself is its reply.
    pub fn import_lines(
        &mut self,
        list: &str,
        force: bool,
        lines: &[String],
    ) -> Result<Reply, ClientError> {
        let head = format!("{list} import{}", if force { " --force" } else { "" });
        let intro = self.command(&head)?;
        if intro.is_error {
            return Ok(intro);
        }
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        for line in lines {
            if line.contains(['\n', '\r']) {
                return Err(ClientError::BadLine(line.clone()));
            }
            body.push_str(line);
            body.push('\n');
        }
        body.push_str(".\n");
        let result = self.send_and_read(&body, &head);
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The banner without its prompt (`Sipban 0.1.0 (sipban-rs)` ...).
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// False once the session is over; a new [`Client`] is needed then.
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// Sends one command line and returns its reply. `exit`/`quit` return
    /// an empty reply once the console has closed the session. After an
    /// error the session is over.
    pub fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        if line.contains(['\n', '\r']) {
            return Err(ClientError::BadLine(line.to_string()));
        }
        if self.closed {
            return Err(ClientError::Closed {
                addr: self.addr,
                detail: String::new(),
            });
        }
        let line = line.trim();
        let result = self.exchange(line, line);
        if result.is_err() || is_quit(line) {
            self.closed = true;
        }
        result
    }

    /// Sends `line`; errors name it as `shown` (a login hides its secret).
    fn exchange(&mut self, line: &str, shown: &str) -> Result<Reply, ClientError> {
        match self.send_and_read(&format!("{line}\n"), shown) {
            Err(ClientError::Closed { detail, .. }) if is_quit(line) && detail.is_empty() => {
                Ok(Reply::default())
            }
            result => result,
        }
    }

    fn send_and_read(&mut self, bytes: &str, shown: &str) -> Result<Reply, ClientError> {
        if let Err(e) = self.stream.write_all(bytes.as_bytes()) {
            let fail = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadFail::Timeout,
                _ => ReadFail::Io(e),
            };
            return Err(self.fail_error(fail, shown));
        }
        let deadline = Instant::now() + self.timeouts.reply;
        match self.read_reply(deadline) {
            Ok(bytes) => Ok(Reply::new(printable(&bytes))),
            Err(fail) => Err(self.fail_error(fail, shown)),
        }
    }

    fn fail_error(&self, fail: ReadFail, line: &str) -> ClientError {
        let addr = self.addr;
        match fail {
            ReadFail::Timeout => ClientError::ReplyTimeout {
                addr,
                command: line.to_string(),
                after: self.timeouts.reply,
            },
            ReadFail::Eof(partial) => ClientError::Closed {
                addr,
                detail: printable(&partial),
            },
            ReadFail::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                ClientError::Closed {
                    addr,
                    detail: String::new(),
                }
            }
            ReadFail::Io(e) => ClientError::Io {
                addr,
                reason: io_reason(&e),
            },
            ReadFail::TooLarge => ClientError::TooLarge { addr },
        }
    }

    /// Reads up to the prompt that ends a reply; returns the reply bytes
    /// without it.
    fn read_reply(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(len) = framed_len(&buf) {
                buf.truncate(len);
                return Ok(buf);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadFail::Timeout);
            }
            if let Err(e) = self.stream.set_read_timeout(Some(deadline - now)) {
                return Err(ReadFail::Io(e));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadFail::Eof(buf)),
                Ok(n) => {
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    if buf.len() > MAX_REPLY {
                        return Err(ReadFail::TooLarge);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(ReadFail::Io(e)),
            }
        }
    }
}

/// Length of the reply in `buf` when `buf` holds a whole one: it is exactly
/// the prompt (empty reply) or ends in `\n` + prompt.
fn framed_len(buf: &[u8]) -> Option<usize> {
    let prompt = PROMPT.as_bytes();
    if buf == prompt {
        return Some(0);
    }
    let end = buf.len().checked_sub(prompt.len() + 1)?;
    (buf[end] == b'\n' && buf.ends_with(prompt)).then_some(end)
}

pub(crate) fn is_quit(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    first.eq_ignore_ascii_case("exit") || first.eq_ignore_ascii_case("quit")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_framed_by_the_prompt_after_a_newline() {
        assert_eq!(framed_len(b"sipban>"), Some(0));
        assert_eq!(framed_len(b"x block\n\nsipban>"), Some(8));
        assert_eq!(framed_len(b"\nSipban 0.1\nsipban>"), Some(11));
        assert_eq!(framed_len(b"Invalid command: sipban>"), None);
        assert_eq!(framed_len(b"sipban"), None);
        assert_eq!(framed_len(b""), None);
    }

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "Connection refused");
    }
}
