//! The console commands the client knows by name: `sipban <command>`
//! subcommands and tab completion.

use std::net::IpAddr;

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

const LIST_WORDS: &[&str] = &["add", "del", "list", "import", "export"];

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
    cmd(
        "block",
        "[IP | [--force] NET]",
        "Ban IP or every address of NET; without IP, list the active bans",
    ),
    ConsoleCommand {
        banned_ip_arg: true,
        ..cmd("unblock", "IP", "Lift the ban on IP")
    },
    cmd(
        "flush",
        "",
        "Dump the bans, then remove them all from the firewall",
    ),
    cmd("save", "", "Write the dump file now"),
    cmd("restore", "", "Re-apply the bans of the dump file"),
    cmd("ping", "", "Ping Asterisk over the AMI link"),
    cmd("uptime", "", "How long the daemon has been running"),
    ConsoleCommand {
        banned_ip_arg: true,
        ..cmd(
            "whois",
            "IP",
            "Who holds IP, from its regional registry (via whois.iana.org)",
        )
    },
    cmd("wl", "", "Show the white list"),
    ConsoleCommand {
        words: LIST_WORDS,
        ..cmd(
            "allow",
            "add ADDR [NOTE] | del ADDR | list | import FILE.csv | export",
            "Edit, show, import or export the allow list",
        )
    },
    ConsoleCommand {
        words: LIST_WORDS,
        ..cmd(
            "deny",
            "add [--force] ADDR [NOTE] | del ADDR | list | import [--force] FILE.csv | export",
            "Edit, show, import or export the deny list",
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
    let word = head.get(start..).unwrap_or_default();
    let before: Vec<&str> = head
        .get(..start)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
