//! One console session: banner, then line, command, reply, prompt, until
//! the client leaves or the session is closed (idle, a line too slow,
//! three failed logins, its slot given to a newcomer, shutdown). Every
//! close that is not the client's own is said on the line first.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use super::auth::{Auth, Login, MAX_LOGIN_FAILURES};
use super::codec::Line;
use super::command::{Command, ImportSource, ListOp};
use super::import::Collected;
use super::input::{Input, LINE_TIMEOUT, LineReader};
use super::registry::{MAX_SESSIONS, Seat};
use super::server::{ConsoleContext, PROMPT};
use super::{exec, list_commands};

/// A client that does not read its reply within this is dropped, so a
/// full socket cannot hold a slot.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// For the last words of a session closed by the console: a client that
/// stopped reading must not keep a closed session's task for long.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the session waits on between commands.
struct Io<'a> {
    input: LineReader<OwnedReadHalf>,
    out: OwnedWriteHalf,
    ctx: &'a ConsoleContext,
    seat: Seat,
    shutdown: CancellationToken,
}

/// A line, or the message that closes the session (empty: the client
/// left).
enum Next {
    Line(Line),
    Close(String),
}

pub async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    ctx: &ConsoleContext,
    seat: Seat,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let (read, write) = socket.into_split();
    let mut io = Io {
        input: LineReader::new(read),
        out: write,
        ctx,
        seat,
        shutdown,
    };
    let mut auth = Auth::new(ctx.secret.as_ref());
    let login_hint = if auth.required() {
        "login required: login SECRET\n"
    } else {
        ""
    };
    let banner = format!(
        "\nSipban {} (sipban-rs)\nuse 'help' for more commands\n{login_hint}{PROMPT}",
        env!("CARGO_PKG_VERSION")
    );
    io.send(&banner).await?;
    let closing = loop {
        let line = match io.next().await? {
            Next::Line(line) => line,
            Next::Close(why) => break why,
        };
        if !io.seat.busy() {
            break evicted();
        }
        let cmd = match line {
            Line::Bad(bad) => Command::Error(bad.to_string()),
            Line::Text(text) => Command::parse(&text),
        };
        let reply = match cmd {
            _ if !auth.allows(&cmd) => "error: login required (login SECRET)\n".to_string(),
            Command::Quit => break String::new(),
            Command::Login(tried) => match auth.login(&tried) {
                Login::Accepted => {
                    io.seat.logged_in();
                    tracing::info!("CONSOLE => login from {peer}");
                    "logged in\n".to_string()
                }
                Login::NotNeeded => "no login needed ([control] secret is not set)\n".to_string(),
                Login::AlreadyIn => "already logged in\n".to_string(),
                Login::Refused { left } => {
                    tracing::warn!(
                        "CONSOLE => failed login from {peer} ({} of {MAX_LOGIN_FAILURES})",
                        auth.failures()
                    );
                    format!(
                        "error: login failed ({left} more tr{} allowed)\n",
                        tries(left)
                    )
                }
                Login::Exhausted => {
                    tracing::warn!(
                        "CONSOLE => failed login from {peer} ({MAX_LOGIN_FAILURES} of \
                         {MAX_LOGIN_FAILURES}): session closed"
                    );
                    break format!(
                        "error: login failed; session closed after {MAX_LOGIN_FAILURES} failures\n"
                    );
                }
            },
            Command::Lists(
                name,
                ListOp::Import {
                    source: ImportSource::Lines,
                    force,
                },
            ) => {
                io.reply("send the CSV lines (address,note), then a line holding only .\n")
                    .await?;
                let collected = match io.collect().await? {
                    Ok(collected) => collected,
                    Err(why) => break why,
                };
                if !io.seat.busy() {
                    break evicted();
                }
                list_commands::import_lines(ctx, name, force, &collected).await
            }
            cmd => match exec::execute(ctx, cmd).await {
                Some(reply) => reply,
                None => break String::new(),
            },
        };
        io.reply(&reply).await?;
        io.seat.idle();
    };
    if !closing.is_empty() {
        tracing::info!("CONSOLE => session from {peer}: {}", closing.trim_end());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.out.write_all(closing.as_bytes())).await;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.out.shutdown()).await;
    Ok(())
}

fn tries(n: u32) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}

fn evicted() -> String {
    format!(
        "session closed: all {MAX_SESSIONS} console sessions were taken and this one was idle the longest\n"
    )
}

/// `300 s`, or `250 ms` below a second.
fn duration_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 || d >= Duration::from_secs(10) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

impl Io<'_> {
    async fn next(&mut self) -> io::Result<Next> {
        let idle = self.ctx.idle_timeout;
        let input = tokio::select! {
            input = self.input.next(idle) => input?,
            _ = self.seat.closed().cancelled() => return Ok(Next::Close(evicted())),
            _ = self.shutdown.cancelled() => {
                return Ok(Next::Close("session closed: sipban is stopping\n".into()));
            }
        };
        Ok(match input {
            Input::Line(line) => Next::Line(line),
            Input::Closed => Next::Close(String::new()),
            Input::Idle => Next::Close(format!(
                "session closed: idle for {}\n",
                duration_text(idle)
            )),
            Input::SlowLine => Next::Close(format!(
                "session closed: a line must end within {} of its first byte\n",
                duration_text(LINE_TIMEOUT)
            )),
        })
    }

    /// The lines of an import, up to a line holding only `.`; `Err` when
    /// the session closes first (nothing is imported then).
    async fn collect(&mut self) -> io::Result<Result<Collected, String>> {
        let mut collected = Collected::default();
        loop {
            // Waiting for input: the slot may go to a newcomer, but a
            // client sending lines is never the longest idle.
            self.seat.idle();
            match self.next().await? {
                Next::Line(Line::Text(t)) if t.trim() == "." => return Ok(Ok(collected)),
                Next::Line(line) => collected.push(line),
                Next::Close(why) => return Ok(Err(why)),
            }
        }
    }

    async fn send(&mut self, text: &str) -> io::Result<()> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.out.write_all(text.as_bytes())).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client does not read its replies",
            )),
        }
    }

    /// A reply and the prompt (the bare prompt for an empty reply).
    async fn reply(&mut self, reply: &str) -> io::Result<()> {
        if reply.is_empty() {
            self.send(PROMPT).await
        } else {
            self.send(&format!("{reply}\n{PROMPT}")).await
        }
    }
}
