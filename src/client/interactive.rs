//! `sipban console` on a terminal: rustyline with history, completion of
//! commands and banned addresses, and a link that reconnects.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Context, Editor, Helper};

use super::commands::{completions, parse_ban_list};
use super::connection::{Client, ClientError, is_quit};
use super::replies::Reply;
use super::{ConsoleTarget, Outcome, print_reply, run_line};

/// The prompt of the interactive session.
pub const INTERACTIVE_PROMPT: &str = "sipban> ";

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

/// The interactive session's connection: reopened on the next command
/// after it was lost (a daemon restart, say).
struct Link {
    target: ConsoleTarget,
    client: Option<Client>,
}

impl Link {
    fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        let client = match self.client.take() {
            Some(client) if client.is_open() => client,
            _ => Client::open(&self.target)?,
        };
        let result = run_line(self.client.insert(client), line);
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
pub(super) fn interactive(target: ConsoleTarget) -> Result<Outcome, ClientError> {
    let client = Client::open(&target)?;
    let mut stdout = io::stdout();
    let mut stderr = io::stderr();
    let _ = writeln!(stdout, "{}", client.banner());
    let link = Rc::new(RefCell::new(Link {
        target,
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
}
