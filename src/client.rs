//! The command-line client of the console, so scripts and humans need no
//! telnet: `sipban block 203.0.113.5`, `sipban check IP`, ... send one line
//! to the console and print its reply; `sipban console` is an interactive
//! session (rustyline: history, tab completion of commands and of banned
//! addresses), or runs the commands read from standard input when that is
//! not a terminal.
//!
//! # Protocol
//! On connect the console sends a banner ending in the prompt `sipban>`.
//! Each command line gets its reply followed by `\nsipban>`, or the bare
//! prompt when the reply is empty; `exit`/`quit` close the session. A reply
//! is framed by that prompt: the client reads until the data ends in
//! `\nsipban>` (or is exactly `sipban>`), within a deadline.
//!
//! # Errors and exit codes
//! The console has no status field: a reply is an error when one of its
//! lines matches [`ERROR_REPLIES`]. The `sipban <command>` forms exit with
//! [`EXIT_ERROR_REPLY`] (1) on such a reply (printed on stderr),
//! [`EXIT_NO_CONSOLE`] (3) when there was no exchange with the console
//! (unreachable, timed out, connection lost), 2 on a usage error (clap),
//! and 0 otherwise (reply on stdout).
//!
//! Reply text is made terminal-safe: control characters other than newline
//! and tab (an escape sequence in an attacker's SIP account name, say) are
//! replaced with U+FFFD before anything is printed.

use std::cell::RefCell;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Context, Editor, Helper};

use crate::config::{Config, ConfigError};
use crate::console::PROMPT;

/// Time allowed to open the connection, and for the banner to arrive.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one reply (`ping` waits for Asterisk, `flush` for the
/// firewall).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// A reply larger than this is refused rather than buffered (the `block`
/// listing of 100k bans is about 4 MB).
pub const MAX_REPLY: usize = 64 << 20;

/// Exit code: the console answered with an error (see [`ERROR_REPLIES`]).
pub const EXIT_ERROR_REPLY: u8 = 1;
/// Exit code: no exchange with the console (unreachable, timed out,
/// connection lost).
pub const EXIT_NO_CONSOLE: u8 = 3;

/// The prompt of the interactive session.
pub const INTERACTIVE_PROMPT: &str = "sipban> ";

/// One console command the client knows by name: a `sipban <name>`
/// subcommand and a tab completion.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleCommand {
    pub name: &'static str,
    pub about: &'static str,
    /// Shape of the arguments for `--help`; empty when it takes none.
    pub usage: &'static str,
    /// Completions of the first argument.
    pub words: &'static [&'static str],
    /// The first argument completes to the currently banned addresses.
    pub banned_ip_arg: bool,
}

const fn cmd(name: &'static str, usage: &'static str, about: &'static str) -> ConsoleCommand {
    ConsoleCommand {
        name,
        about,
        usage,
        words: &[],
        banned_ip_arg: false,
    }
}

const LIST_WORDS: &[&str] = &["add", "del", "list"];

/// The console commands `sipban` offers as subcommands, in `--help` order.
/// The client sends them as typed; the console decides what they mean, so a
/// command the daemon does not know yet gets its `Invalid command` reply.
pub const COMMANDS: &[ConsoleCommand] = &[
    ConsoleCommand {
        words: &["--all", "--allow", "--deny", "--dynamic"],
        ..cmd(
            "status",
            "[--all|--allow|--deny|--dynamic]",
            "Counts of allowed, denied and banned addresses",
        )
    },
    ConsoleCommand {
        banned_ip_arg: true,
        ..cmd("check", "IP", "Which list or ban holds IP, and why")
    },
    cmd(
        "report",
        "",
        "The last 24 h: events, top sources and accounts, bans",
    ),
    cmd("block", "[IP]", "Ban IP; without IP, list the active bans"),
    ConsoleCommand {
        banned_ip_arg: true,
        ..cmd("unblock", "IP", "Lift the ban on IP")
    },
    cmd(
        "flush",
        "",
        "Dump the bans, then remove them all from the firewall",
    ),
    cmd("restore", "", "Re-apply the bans of the dump file"),
    cmd("ping", "", "Ping Asterisk over the AMI link"),
    cmd("uptime", "", "How long the daemon has been running"),
    cmd("wl", "", "Show the white list"),
    ConsoleCommand {
        words: LIST_WORDS,
        ..cmd(
            "allow",
            "add|del|list [ADDR] [NOTE]",
            "Edit or show the allow list",
        )
    },
    ConsoleCommand {
        words: LIST_WORDS,
        ..cmd(
            "deny",
            "add|del|list [ADDR] [NOTE]",
            "Edit or show the deny list",
        )
    },
    cmd("reload", "", "Re-read the allow and deny lists"),
    cmd("version", "", "The daemon's version"),
    cmd(
        "check-firewall",
        "",
        "Compare the firewall with the bans and repair drift",
    ),
    cmd("help", "", "The console's command list"),
];

/// The known console command called `name` (case-insensitive, as the
/// console parses them).
pub fn command_spec(name: &str) -> Option<&'static ConsoleCommand> {
    COMMANDS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// How one line of a reply is matched (after trimming spaces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyPattern {
    StartsWith(&'static str),
    EndsWith(&'static str),
    Contains(&'static str),
}

impl ReplyPattern {
    pub fn matches(&self, line: &str) -> bool {
        let line = line.trim();
        match *self {
            ReplyPattern::StartsWith(p) => line.starts_with(p),
            ReplyPattern::EndsWith(p) => line.ends_with(p),
            ReplyPattern::Contains(p) => line.contains(p),
        }
    }
}

/// How the client tells an error reply from an answer: the single place
/// that knows the console's error wording.
///
/// The console has no status field, so a reply is an error when **any of
/// its lines** matches one of these patterns (the wording of today's
/// console, most of it the original SIPban's):
///
/// | pattern | reply |
/// |---|---|
/// | starts `Invalid command` | unknown command |
/// | contains `don't seems like a valid address` | a bad address (`... or network` for the lists) |
/// | starts `ip address missing` | `unblock` without address |
/// | contains ` takes no argument` | e.g. `flush now` |
/// | starts `status takes ` | `status` with an unknown view |
/// | starts `usage:` | `allow`/`deny` misused |
/// | starts `reload failed` | a list file is bad: the old lists stay |
/// | starts `expected one address` | two addresses given |
/// | starts `line too long` | over 1024 bytes |
/// | starts `restore failed` | dump unreadable or firewall error |
/// | starts `flush refused` | firewall error, nothing removed |
/// | starts `firewall check failed` | `check-firewall` could not run |
/// | starts `No answer from Asterisk` | `ping` timed out (second line of the reply) |
/// | starts `Ping not sent` | `ping` without an AMI link |
/// | ends `), not blocked` | `block` of a protected address: the ban asked for did not happen |
/// | starts `error:` | **the convention for new console commands** |
///
/// Not errors, because the state asked for holds: `IP is not previously
/// blocked` (an `unblock` of an address that is not banned), `IP previously
/// blocked`, `no dump file to restore rules`.
///
/// Convention: a new console command reports a failure with a line starting
/// with `error: `; it is recognised here already, so the client needs no
/// change. The other patterns stay for the original's replies.
pub const ERROR_REPLIES: &[ReplyPattern] = &[
    ReplyPattern::StartsWith("Invalid command"),
    ReplyPattern::Contains("don't seems like a valid address"),
    ReplyPattern::StartsWith("ip address missing"),
    ReplyPattern::Contains(" takes no argument"),
    ReplyPattern::StartsWith("status takes "),
    ReplyPattern::StartsWith("usage:"),
    ReplyPattern::StartsWith("reload failed"),
    ReplyPattern::StartsWith("expected one address"),
    ReplyPattern::StartsWith("line too long"),
    ReplyPattern::StartsWith("restore failed"),
    ReplyPattern::StartsWith("flush refused"),
    ReplyPattern::StartsWith("firewall check failed"),
    ReplyPattern::StartsWith("No answer from Asterisk"),
    ReplyPattern::StartsWith("Ping not sent"),
    ReplyPattern::EndsWith("), not blocked"),
    ReplyPattern::StartsWith("error:"),
];

/// True when `text` (a reply without its prompt) is an error per
/// [`ERROR_REPLIES`].
pub fn is_error_reply(text: &str) -> bool {
    text.lines()
        .any(|line| ERROR_REPLIES.iter().any(|p| p.matches(line)))
}

/// One reply, without banner and prompt, terminal-safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Matched [`ERROR_REPLIES`].
    pub is_error: bool,
}

impl Reply {
    fn new(text: String) -> Reply {
        let is_error = is_error_reply(&text);
        Reply { text, is_error }
    }
}

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
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
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
        let result = self.exchange(line);
        if result.is_err() || is_quit(line) {
            self.closed = true;
        }
        result
    }

    fn exchange(&mut self, line: &str) -> Result<Reply, ClientError> {
        if let Err(e) = self.stream.write_all(format!("{line}\n").as_bytes()) {
            let fail = match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadFail::Timeout,
                _ => ReadFail::Io(e),
            };
            return Err(self.fail_error(fail, line));
        }
        let deadline = Instant::now() + self.timeouts.reply;
        match self.read_reply(deadline) {
            Ok(bytes) => Ok(Reply::new(printable(&bytes))),
            Err(ReadFail::Eof(partial)) if is_quit(line) && printable(&partial).is_empty() => {
                Ok(Reply::default())
            }
            Err(fail) => Err(self.fail_error(fail, line)),
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
                    buf.extend_from_slice(&chunk[..n]);
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

/// Reply bytes as printable text: lossy UTF-8, no `\r`, other control
/// characters but newline and tab replaced, blank lines around trimmed.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| c != '\r')
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_control() => char::REPLACEMENT_CHARACTER,
            c => c,
        })
        .collect();
    text.trim_end().trim_start_matches('\n').to_string()
}

fn is_quit(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    first.eq_ignore_ascii_case("exit") || first.eq_ignore_ascii_case("quit")
}

/// The console address of a config: `[control] address` and `port`.
pub fn console_addr(config: &Config) -> SocketAddr {
    SocketAddr::new(config.control.address, config.control.port)
}

/// The console address from the config at `path`. A config named with
/// `-c` (`explicit`) must load. The default one may be missing (built-in
/// defaults, silently) or unreadable, as `/etc/sipban.conf` is for users
/// other than root since it holds the AMI secret (built-in defaults and a
/// warning, returned).
pub fn console_addr_from_config(
    path: &Path,
    explicit: bool,
) -> Result<(SocketAddr, Option<String>), ConfigError> {
    match Config::load(path) {
        Ok(loaded) => Ok((console_addr(&loaded.config), None)),
        Err(ConfigError::Io { source, .. }) if !explicit => {
            let defaults = console_addr(&Config::default());
            let warning = (source.kind() != io::ErrorKind::NotFound).then(|| {
                format!(
                    "cannot read {}: {}; trying the console at {defaults} (use -c or --console)",
                    path.display(),
                    io_reason(&source)
                )
            });
            Ok((defaults, warning))
        }
        Err(e) => Err(e),
    }
}

/// How a `sipban <command>` run or a script went, once the console answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// At least one reply was an error.
    ErrorReply,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::ErrorReply => EXIT_ERROR_REPLY,
        }
    }
}

/// Prints a reply: to `out`, or to `err` when it is an error. Write
/// failures (a closed pipe) are ignored: the console already acted.
fn print_reply(reply: &Reply, out: &mut impl Write, err: &mut impl Write) {
    if reply.text.is_empty() {
        return;
    }
    let _ = match reply.is_error {
        true => writeln!(err, "{}", reply.text),
        false => writeln!(out, "{}", reply.text),
    };
}

/// `sipban <command>`: one line, one reply.
pub fn run_one(
    addr: SocketAddr,
    line: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Outcome, ClientError> {
    let mut client = Client::connect(addr)?;
    let reply = client.command(line)?;
    print_reply(&reply, out, err);
    Ok(match reply.is_error {
        true => Outcome::ErrorReply,
        false => Outcome::Success,
    })
}

/// `sipban console` with standard input not a terminal: one command per
/// input line (blank lines and `#` comments skipped) up to the end or
/// `exit`/`quit`; each reply printed as [`run_one`] does. Stops at the first
/// connection problem; [`Outcome::ErrorReply`] when any reply was an error.
pub fn run_script(
    addr: SocketAddr,
    mut input: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Outcome, ClientError> {
    let mut client = Client::connect(addr)?;
    let mut outcome = Outcome::Success;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match input.read_until(b'\n', &mut raw) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = writeln!(err, "sipban: reading standard input: {}", io_reason(&e));
                break;
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let line = text.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_quit(line) {
            break;
        }
        let reply = client.command(line)?;
        print_reply(&reply, out, err);
        if reply.is_error {
            outcome = Outcome::ErrorReply;
        }
    }
    Ok(outcome)
}

/// `sipban console`: interactive with a terminal on standard input, else
/// [`run_script`] over standard input.
pub fn run_console(addr: SocketAddr) -> Result<Outcome, ClientError> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        interactive(addr)
    } else {
        run_script(addr, stdin.lock(), &mut io::stdout(), &mut io::stderr())
    }
}

/// Where the interactive history lives: `$XDG_STATE_HOME/sipban/history`
/// when `XDG_STATE_HOME` is set (to an absolute path, as the XDG spec asks),
/// else `~/.sipban_history`; `None` without either.
pub fn history_path() -> Option<PathBuf> {
    history_path_from(
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn history_path_from(xdg_state: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(state) = xdg_state.filter(|p| p.is_absolute()) {
        return Some(state.join("sipban").join("history"));
    }
    home.filter(|h| !h.as_os_str().is_empty())
        .map(|h| h.join(".sipban_history"))
}

/// Addresses of the console's `block` listing, lines
/// `[YYYY-MM-DD HH:MM:SS] IP`; other lines are skipped.
pub fn parse_ban_list(text: &str) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| {
            let rest = line.trim_start().strip_prefix('[')?;
            let (_, after) = rest.split_once(']')?;
            after.split_whitespace().next()?.parse().ok()
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Tab completion of `line` with the cursor at byte `pos`: the start of
/// the word under completion and (display, replacement) candidates. The
/// first word completes to a command name (and a space); the first argument
/// to the command's words, or for `unblock`/`check` to the addresses
/// `banned` returns (called only then).
pub fn completions(
    line: &str,
    pos: usize,
    banned: impl FnOnce() -> Vec<IpAddr>,
) -> (usize, Vec<(String, String)>) {
    let head = line.get(..pos).unwrap_or(line);
    let start = head
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &head[start..];
    let before: Vec<&str> = head[..start].split_whitespace().collect();
    let candidates: Vec<(String, String)> = match before.as_slice() {
        [] => COMMANDS
            .iter()
            .map(|c| c.name)
            .chain(["exit", "quit"])
            .filter(|name| name.starts_with(&word.to_ascii_lowercase()))
            .map(|name| (name.to_string(), format!("{name} ")))
            .collect(),
        [name] => match command_spec(name) {
            Some(spec) if spec.banned_ip_arg => banned()
                .into_iter()
                .map(|ip| ip.to_string())
                .filter(|ip| ip.starts_with(word))
                .map(|ip| (ip.clone(), ip))
                .collect(),
            Some(spec) => spec
                .words
                .iter()
                .filter(|w| w.starts_with(word))
                .map(|w| (w.to_string(), format!("{w} ")))
                .collect(),
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    (start, candidates)
}

/// The interactive session's connection: reopened on the next command
/// after it was lost (a daemon restart, say).
struct Link {
    addr: SocketAddr,
    client: Option<Client>,
}

impl Link {
    fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let client = match self.client.take() {
            Some(client) if client.is_open() => client,
            _ => Client::connect(self.addr)?,
        };
        let result = self.client.insert(client).command(line);
        if result.is_err() {
            self.client = None;
        }
        result
    }

    /// The banned addresses, for completion; none when the console cannot
    /// tell.
    fn banned(&mut self) -> Vec<IpAddr> {
        match self.command("block") {
            Ok(reply) if !reply.is_error => parse_ban_list(&reply.text),
            _ => Vec::new(),
        }
    }
}

struct ConsoleHelper {
    link: Rc<RefCell<Link>>,
}

impl Completer for ConsoleHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, candidates) = completions(line, pos, || {
            self.link
                .try_borrow_mut()
                .map(|mut link| link.banned())
                .unwrap_or_default()
        });
        let pairs = candidates
            .into_iter()
            .map(|(display, replacement)| Pair {
                display,
                replacement,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ConsoleHelper {
    type Hint = String;
}

impl Highlighter for ConsoleHelper {}

impl Validator for ConsoleHelper {}

impl Helper for ConsoleHelper {}

fn warn(text: &str) {
    let _ = writeln!(io::stderr(), "warning: {text}");
}

/// The rustyline session: `sipban> ` prompt, history, completion; Ctrl-C
/// clears the line, Ctrl-D or `exit`/`quit` leave. Error replies are shown
/// (on stderr) but the session's outcome is a success.
fn interactive(addr: SocketAddr) -> Result<Outcome, ClientError> {
    let client = Client::connect(addr)?;
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let _ = writeln!(stdout, "{}", client.banner());
    let link = Rc::new(RefCell::new(Link {
        addr,
        client: Some(client),
    }));
    let config = rustyline::Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false);
    let config = config
        .max_history_size(1000)
        .and_then(|c| c.history_ignore_dups(true))
        .map_err(|e| ClientError::Terminal(e.to_string()))?
        .build();
    let mut rl = Editor::<ConsoleHelper, DefaultHistory>::with_config(config)
        .map_err(|e| ClientError::Terminal(e.to_string()))?;
    rl.set_helper(Some(ConsoleHelper {
        link: Rc::clone(&link),
    }));

    let history = history_path();
    match &history {
        None => warn("neither XDG_STATE_HOME nor HOME is set: history not kept"),
        Some(path) => match rl.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn(&format!("cannot load history {}: {e}", path.display())),
        },
    }

    let result = loop {
        match rl.readline(INTERACTIVE_PROMPT) {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line);
                if is_quit(line) {
                    break Ok(Outcome::Success);
                }
                let reply = link.borrow_mut().command(line);
                match reply {
                    Ok(reply) => print_reply(&reply, &mut stdout, &mut stderr),
                    // The next command reconnects.
                    Err(e) => {
                        let _ = writeln!(stderr, "sipban: {e}");
                    }
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => {
                let _ = writeln!(stdout);
                break Ok(Outcome::Success);
            }
            Err(e) => break Err(ClientError::Terminal(e.to_string())),
        }
    };

    if let Some(path) = &history {
        let saved = match path.parent() {
            Some(dir) => std::fs::create_dir_all(dir).map_err(ReadlineError::Io),
            None => Ok(()),
        }
        .and_then(|()| rl.save_history(path));
        if let Err(e) = saved {
            warn(&format!("cannot save history {}: {e}", path.display()));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_of_todays_console() {
        for text in [
            "Invalid command: status",
            "300.1.1.1 don't seems like a valid address",
            "10.0.0.0/33 don't seems like a valid address or network",
            "status takes --all, --allow, --deny or --dynamic (got \"--bogus\")",
            "usage: deny add IP|CIDR [note] | deny del IP|CIDR | deny list",
            "reload failed, old lists kept: deny.list:3: bad line",
            "ip address missing",
            "flush takes no argument (got \"now\")",
            "expected one address, got \"1.2.3.4 5.6.7.8\"",
            "line too long (over 1024 bytes), ignored",
            "restore failed, nothing changed: bad dump",
            "flush refused, nothing removed: ipset gone",
            "firewall check failed: permission denied",
            "Ping sent\nNo answer from Asterisk: timed out",
            "Ping not sent: no AMI connection in this mode",
            "198.51.100.7 is protected (white list 198.51.100.0/24), not blocked",
            "error: no such list entry",
        ] {
            assert!(is_error_reply(text), "{text}");
        }
        for text in [
            "203.0.113.5 block",
            "203.0.113.5 previously blocked",
            "203.0.113.5 unblocked",
            "203.0.113.5 is not previously blocked",
            "Ping sent\nPong from Asterisk in 2 ms",
            "[2026-11-22 12:53:39] 203.0.113.11",
            "no dump file to restore rules",
            "203.0.113.5: not listed, not banned, no events seen",
            "",
        ] {
            assert!(!is_error_reply(text), "{text}");
        }
    }

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
    fn odd_bytes_become_printable_text() {
        assert_eq!(printable(b"a\r\nb\n\n"), "a\nb");
        assert_eq!(printable(b"\x1b[31mred\x07"), "\u{fffd}[31mred\u{fffd}");
        assert_eq!(printable(b"\xff\xfeok\tx"), "\u{fffd}\u{fffd}ok\tx");
        assert_eq!(
            printable(b"\nCommands:\n\n  block\n"),
            "Commands:\n\n  block"
        );
    }

    #[test]
    fn io_reasons_lose_the_os_error_number() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_reason(&e), "Connection refused");
    }

    #[test]
    fn ban_listing_gives_the_addresses() {
        let text = "[2026-11-22 12:53:39] 203.0.113.11\n[2026-11-22 12:54:00] 2001:db8::1\n\
                    garbage\n[broken\n[2026-11-22 12:50:00] 203.0.113.2 extra\n";
        let want: Vec<IpAddr> = ["203.0.113.2", "203.0.113.11", "2001:db8::1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(parse_ban_list(text), want);
    }

    fn replacements(line: &str, banned: &[&str]) -> (usize, Vec<String>) {
        let banned: Vec<IpAddr> = banned.iter().map(|s| s.parse().unwrap()).collect();
        let (start, c) = completions(line, line.len(), || banned);
        (start, c.into_iter().map(|(_, r)| r).collect())
    }

    #[test]
    fn completion_of_commands_words_and_banned_addresses() {
        assert_eq!(replacements("unb", &[]), (0, vec!["unblock ".to_string()]));
        assert_eq!(
            replacements("che", &[]).1,
            vec!["check ".to_string(), "check-firewall ".to_string()]
        );
        assert_eq!(replacements("deny d", &[]), (5, vec!["del ".to_string()]));
        assert_eq!(
            replacements("unblock 203.0.113.", &["203.0.113.9", "198.51.100.1"]),
            (8, vec!["203.0.113.9".to_string()])
        );
        assert_eq!(
            replacements("check ", &["203.0.113.9", "2001:db8::1"]).1,
            vec!["203.0.113.9".to_string(), "2001:db8::1".to_string()]
        );
        // Only unblock/check ask for the bans, and only for their argument.
        let (_, c) = completions("block 2", 7, || panic!("not asked"));
        assert!(c.is_empty());
        let (_, c) = completions("unblock 1.2.3.4 x", 17, || panic!("not asked"));
        assert!(c.is_empty());
        // A cursor inside a multibyte char does not panic.
        let _ = completions("é", 1, Vec::new);
    }

    #[test]
    fn history_location() {
        let home = Some(PathBuf::from("/home/op"));
        assert_eq!(
            history_path_from(Some("/st".into()), home.clone()),
            Some(PathBuf::from("/st/sipban/history"))
        );
        assert_eq!(
            history_path_from(Some("relative".into()), home.clone()),
            Some(PathBuf::from("/home/op/.sipban_history"))
        );
        assert_eq!(
            history_path_from(None, home),
            Some("/home/op/.sipban_history".into())
        );
        assert_eq!(history_path_from(None, None), None);
    }

    #[test]
    fn every_command_is_found_by_name() {
        for c in COMMANDS {
            assert_eq!(
                command_spec(&c.name.to_uppercase()).map(|s| s.name),
                Some(c.name)
            );
        }
        assert!(command_spec("console").is_none());
    }
}
