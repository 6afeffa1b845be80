//! How the client reads the console's replies: which are errors, and how
//! they are made safe to print.

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
/// | starts `No response from WHOIS servers` | `whois` got no answer (no network, a timeout) |
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
    ReplyPattern::StartsWith("No response from WHOIS servers"),
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
    pub(crate) fn new(text: String) -> Reply {
        let is_error = is_error_reply(&text);
        Reply { text, is_error }
    }
}

/// Reply bytes as printable text: lossy UTF-8, no `\r`, other control
/// characters but newline and tab replaced, blank lines around trimmed.
pub(crate) fn printable(bytes: &[u8]) -> String {
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
    fn odd_bytes_become_printable_text() {
        assert_eq!(printable(b"a\r\nb\n\n"), "a\nb");
        assert_eq!(printable(b"\x1b[31mred\x07"), "\u{fffd}[31mred\u{fffd}");
        assert_eq!(printable(b"\xff\xfeok\tx"), "\u{fffd}\u{fffd}ok\tx");
        assert_eq!(
            printable(b"\nCommands:\n\n  block\n"),
            "Commands:\n\n  block"
        );
    }
}
