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
//! # Login and imports
//! When the console has a `[control] secret`, the client sends `login
//! SECRET` first. The secret comes from `SIPBAN_CONSOLE_SECRET` in the
//! environment ([`SECRET_ENV`]), else from the config's `[control]
//! secret`; it is never printed. `allow|deny import FILE.csv` is run by
//! the client: it reads FILE itself and sends its lines after the import
//! command, ended by a line holding only `.` (the console reads no file
//! unless `[control] import_dir` allows it).
//!
//! # Errors and exit codes
//! The console has no status field: a reply is an error when one of its
//! lines matches [`ERROR_REPLIES`]. The `sipban <command>` forms exit with
//! [`EXIT_ERROR_REPLY`] (1) on such a reply (printed on stderr),
//! [`EXIT_NO_CONSOLE`] (3) when there was no exchange with the console
//! (unreachable, timed out, connection lost, login refused), 2 on a usage
//! error (clap),
//! and 0 otherwise (reply on stdout).
//!
//! Reply text is made terminal-safe: control characters other than newline
//! and tab (an escape sequence in an attacker's SIP account name, say) are
//! replaced with U+FFFD before anything is printed.

mod commands;
mod connection;
mod import;
mod interactive;
mod replies;

use std::io::{self, BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;

use crate::ami::Secret;
use crate::config::{Config, ConfigError};

pub use commands::{COMMANDS, ConsoleCommand, command_spec, completions, parse_ban_list};
pub use connection::{CONNECT_TIMEOUT, Client, ClientError, MAX_REPLY, REPLY_TIMEOUT, Timeouts};
pub use import::{LocalLine, local_line, read_import};
pub use interactive::{INTERACTIVE_PROMPT, history_path};
pub use replies::{ERROR_REPLIES, Reply, ReplyPattern, is_error_reply};

use connection::{io_reason, is_quit};

/// Exit code: the console answered with an error (see [`ERROR_REPLIES`]).
pub const EXIT_ERROR_REPLY: u8 = 1;
/// Exit code: no exchange with the console (unreachable, timed out,
/// connection lost, login refused).
pub const EXIT_NO_CONSOLE: u8 = 3;

/// The environment variable with the console secret; it wins over the
/// config's `[control] secret` (a config holding the AMI secret is often
/// readable by root only).
pub const SECRET_ENV: &str = "SIPBAN_CONSOLE_SECRET";

/// Where the console listens, and the secret to log in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleTarget {
    pub addr: SocketAddr,
    pub secret: Option<Secret>,
}

impl ConsoleTarget {
    /// `addr`, with the secret of [`SECRET_ENV`] when it is set.
    pub fn from_env(addr: SocketAddr) -> ConsoleTarget {
        ConsoleTarget {
            addr,
            secret: env_secret(),
        }
    }

    /// The console of `config`; the secret of [`SECRET_ENV`], else
    /// `[control] secret`.
    pub fn of_config(config: &Config) -> ConsoleTarget {
        Self::of_config_and(config, env_secret())
    }

    fn of_config_and(config: &Config, env: Option<Secret>) -> ConsoleTarget {
        ConsoleTarget {
            addr: console_addr(config),
            secret: env.or_else(|| config.control.secret.clone()),
        }
    }
}

/// An address alone (`--console ADDR`): the secret comes from the
/// environment.
impl From<SocketAddr> for ConsoleTarget {
    fn from(addr: SocketAddr) -> ConsoleTarget {
        ConsoleTarget::from_env(addr)
    }
}

fn env_secret() -> Option<Secret> {
    std::env::var(SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Secret::new)
}

/// The console address of a config: `[control] address` and `port`.
pub fn console_addr(config: &Config) -> SocketAddr {
    SocketAddr::new(config.control.address, config.control.port)
}

/// The console address from the config at `path`; see
/// [`console_target_from_config`].
pub fn console_addr_from_config(
    path: &Path,
    explicit: bool,
) -> Result<(SocketAddr, Option<String>), ConfigError> {
    console_target_from_config(path, explicit).map(|(target, warning)| (target.addr, warning))
}

/// The console of the config at `path`, with its secret (see
/// [`ConsoleTarget::of_config`]). A config named with `-c` (`explicit`)
/// must load. The default one may be missing (built-in defaults, silently)
/// or unreadable, as `/etc/sipban.conf` is for users other than root since
/// it holds the AMI secret (built-in defaults and a warning, returned).
pub fn console_target_from_config(
    path: &Path,
    explicit: bool,
) -> Result<(ConsoleTarget, Option<String>), ConfigError> {
    match Config::load(path) {
        Ok(loaded) => Ok((ConsoleTarget::of_config(&loaded.config), None)),
        Err(ConfigError::Io { source, .. }) if !explicit => {
            let defaults = ConsoleTarget::of_config(&Config::default());
            let warning = (source.kind() != io::ErrorKind::NotFound).then(|| {
                format!(
                    "cannot read {}: {}; trying the console at {} (use -c or --console)",
                    path.display(),
                    io_reason(&source),
                    defaults.addr
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

    fn of(reply: &Reply) -> Outcome {
        match reply.is_error {
            true => Outcome::ErrorReply,
            false => Outcome::Success,
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

/// Runs one line a person typed: sent as it is, or run by the client
/// first (an import reads its file here).
fn run_line(client: &mut Client, line: &str) -> Result<Reply, ClientError> {
    match local_line(line) {
        LocalLine::Send => client.command(line),
        LocalLine::Import { list, force, path } => match read_import(&path) {
            Ok(lines) => client.import_lines(list, force, &lines),
            Err(why) => Ok(Reply {
                text: format!("error: {why}"),
                is_error: true,
            }),
        },
        LocalLine::Usage(text) => Ok(Reply {
            text,
            is_error: true,
        }),
    }
}

/// `sipban <command>`: one line, one reply.
pub fn run_one(
    target: impl Into<ConsoleTarget>,
    line: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Outcome, ClientError> {
    let mut client = Client::open(&target.into())?;
    let reply = run_line(&mut client, line)?;
    print_reply(&reply, out, err);
    Ok(Outcome::of(&reply))
}

/// `sipban console` with standard input not a terminal: one command per
/// input line (blank lines and `#` comments skipped) up to the end or
/// `exit`/`quit`; each reply printed as [`run_one`] does. Stops at the first
/// connection problem; [`Outcome::ErrorReply`] when any reply was an error.
pub fn run_script(
    target: impl Into<ConsoleTarget>,
    mut input: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<Outcome, ClientError> {
    let mut client = Client::open(&target.into())?;
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
        let reply = run_line(&mut client, line)?;
        print_reply(&reply, out, err);
        if reply.is_error {
            outcome = Outcome::ErrorReply;
        }
    }
    Ok(outcome)
}

/// `sipban console`: interactive with a terminal on standard input, else
/// [`run_script`] over standard input.
pub fn run_console(target: impl Into<ConsoleTarget>) -> Result<Outcome, ClientError> {
    let target = target.into();
    let stdin = io::stdin();
    if stdin.is_terminal() {
        interactive::interactive(target)
    } else {
        run_script(target, stdin.lock(), &mut io::stdout(), &mut io::stderr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_secret_wins_over_the_configs() {
        let mut config = Config::default();
        config.control.port = 4999;
        let t = ConsoleTarget::of_config_and(&config, None);
        assert_eq!(
            (t.addr.to_string(), t.secret),
            ("127.0.0.1:4999".into(), None)
        );
        config.control.secret = Some(Secret::new("from config"));
        let t = ConsoleTarget::of_config_and(&config, None);
        assert_eq!(t.secret, Some(Secret::new("from config")));
        let t = ConsoleTarget::of_config_and(&config, Some(Secret::new("from env")));
        assert_eq!(t.secret, Some(Secret::new("from env")));
    }
}
