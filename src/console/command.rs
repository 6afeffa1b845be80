//! Console commands as types. Parsing never fails the session: anything
//! unrecognised becomes a reply naming the offending text.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::ami::Secret;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `block`: list active bans.
    List,
    Block(IpAddr),
    /// `block [--force] NET`: every address of a network (the 2024
    /// original's `block 198.51.100.0/24`). `force`: past the deny guard
    /// ([`Policy::deny_conflict`](crate::policy::Policy::deny_conflict)).
    BlockNet {
        net: IpNet,
        force: bool,
    },
    /// `save`: write the dump now.
    Save,
    /// `whois IP`: who holds the address, from the regional registry.
    Whois(IpAddr),
    Unblock(IpAddr),
    /// `unblock NET`: lift a network ban.
    UnblockNet(ipnet::IpNet),
    Flush,
    Restore,
    Ping,
    Uptime,
    Wl,
    /// Compare the firewall with the bans and repair drift.
    CheckFirewall,
    /// `status [--all|--allow|--deny|--dynamic]`.
    Status(StatusView),
    /// `check IP`: which list or ban holds it, and why.
    Check(IpAddr),
    /// `allow|deny add NET [note]`, `allow|deny del NET`, `allow|deny list`.
    Lists(ListName, ListOp),
    Reload,
    Version,
    /// `report`: the last 24 hours.
    Report,
    Help,
    Quit,
    /// `login SECRET`: the rest of the line, spaces inside kept.
    Login(Secret),
    /// An empty line: just a new prompt.
    Nothing,
    /// A line we could not accept; the text is the reply.
    Error(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusView {
    Summary,
    All,
    Allow,
    Deny,
    Dynamic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListName {
    Allow,
    Deny,
}

impl ListName {
    pub fn as_str(self) -> &'static str {
        match self {
            ListName::Allow => "allow",
            ListName::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListOp {
    /// `force`: add a deny entry the guard refuses
    /// ([`Policy::deny_conflict`](crate::policy::Policy::deny_conflict)).
    Add {
        net: IpNet,
        note: Option<String>,
        force: bool,
    },
    Del(IpNet),
    Show,
    /// Merge CSV entries (`address,note`) into the list, all or nothing.
    Import {
        source: ImportSource,
        force: bool,
    },
    /// The list as CSV.
    Export,
}

/// Where the CSV of an import comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportSource {
    /// A file inside `[control] import_dir` on the daemon's host.
    File(PathBuf),
    /// The lines the client sends next, up to a line holding only `.`.
    Lines,
}

impl Command {
    pub fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else {
            return Command::Nothing;
        };
        if name.eq_ignore_ascii_case("login") {
            // Not split: a secret may hold spaces.
            let rest = line.trim_start().get(name.len()..).unwrap_or_default();
            return match rest.trim() {
                "" => Command::Error("usage: login SECRET".into()),
                secret => Command::Login(Secret::new(secret)),
            };
        }
        let args: Vec<&str> = words.collect();
        let name_lc = name.to_ascii_lowercase();
        let no_args = |cmd: Command| {
            if args.is_empty() {
                cmd
            } else {
                Command::Error(format!(
                    "{name} takes no argument (got {:?})",
                    args.join(" ")
                ))
            }
        };
        match name_lc.as_str() {
            "block" if args.is_empty() => Command::List,
            "block" => block(&args),
            "save" => no_args(Command::Save),
            "whois" if args.is_empty() => Command::Error("ip address missing".into()),
            "whois" => one_ip(&args).map_or_else(Command::Error, Command::Whois),
            "unblock" if args.is_empty() => Command::Error("ip address missing".into()),
            "unblock" => unblock(&args),
            "flush" => no_args(Command::Flush),
            "restore" => no_args(Command::Restore),
            "ping" => no_args(Command::Ping),
            "uptime" => no_args(Command::Uptime),
            "wl" => no_args(Command::Wl),
            "check-firewall" => no_args(Command::CheckFirewall),
            "status" => match args.as_slice() {
                [] => Command::Status(StatusView::Summary),
                ["--all"] => Command::Status(StatusView::All),
                ["--allow"] => Command::Status(StatusView::Allow),
                ["--deny"] => Command::Status(StatusView::Deny),
                ["--dynamic"] => Command::Status(StatusView::Dynamic),
                _ => Command::Error(format!(
                    "status takes --all, --allow, --deny or --dynamic (got {:?})",
                    args.join(" ")
                )),
            },
            "check" => one_ip(&args).map_or_else(Command::Error, Command::Check),
            "allow" => list_command(ListName::Allow, &args),
            "deny" => list_command(ListName::Deny, &args),
            "reload" => no_args(Command::Reload),
            "version" => no_args(Command::Version),
            "report" => no_args(Command::Report),
            "help" => Command::Help,
            "exit" | "quit" => Command::Quit,
            _ => Command::Error(format!("Invalid command: {}", line.trim())),
        }
    }
}

/// `unblock IP` or `unblock NET` (a network ban).
fn unblock(args: &[&str]) -> Command {
    let [target] = args else {
        return Command::Error(format!("expected one address, got {:?}", args.join(" ")));
    };
    match crate::policy::lists::parse_net(target) {
        Some(net) if net.prefix_len() == net.max_prefix_len() => {
            Command::Unblock(net.addr().to_canonical())
        }
        Some(net) => Command::UnblockNet(net),
        None => Command::Error(format!("{target} don't seems like a valid address")),
    }
}

/// `block IP`, `block NET`, `block --force NET`. A network is written as
/// the lists take it (host bits dropped); a /32 (/128) is its address.
fn block(args: &[&str]) -> Command {
    let (force, target) = match args {
        ["--force", target] => (true, *target),
        [target] => (false, *target),
        _ => {
            return Command::Error(format!(
                "expected one address or network, got {:?}",
                args.join(" ")
            ));
        }
    };
    let Some(net) = crate::policy::lists::parse_net(target) else {
        return Command::Error(format!("{target} don't seems like a valid address"));
    };
    match (net.prefix_len() == net.max_prefix_len(), force) {
        (true, false) => Command::Block(net.addr().to_canonical()),
        (true, true) => Command::Error(format!(
            "error: --force is only for networks (got block --force {target})"
        )),
        (false, force) => Command::BlockNet { net, force },
    }
}

fn list_command(list: ListName, args: &[&str]) -> Command {
    let name = list.as_str();
    let net = |s: &str| {
        crate::policy::lists::parse_net(s)
            .ok_or_else(|| format!("{s} don't seems like a valid address or network"))
    };
    let force_only_for_deny = || {
        Command::Error(format!(
            "error: --force is only for deny add and deny import (got {name} {})",
            args.join(" ")
        ))
    };
    match args {
        ["list"] => Command::Lists(list, ListOp::Show),
        ["export"] => Command::Lists(list, ListOp::Export),
        ["import", rest @ ..] => {
            let (force, rest) = match rest {
                ["--force", rest @ ..] => (true, rest),
                _ => (false, rest),
            };
            if force && list == ListName::Allow {
                return force_only_for_deny();
            }
            let source = match rest {
                [] => ImportSource::Lines,
                [path] => ImportSource::File(PathBuf::from(path)),
                _ => return usage(name),
            };
            Command::Lists(list, ListOp::Import { source, force })
        }
        ["add", rest @ ..] => {
            let (force, rest) = match rest {
                ["--force", rest @ ..] => (true, rest),
                _ => (false, rest),
            };
            if force && list == ListName::Allow {
                return force_only_for_deny();
            }
            let [target, note @ ..] = rest else {
                return usage(name);
            };
            if note.contains(&"--force") {
                return Command::Error(format!(
                    "error: --force goes before the address: {name} add --force {target} ..."
                ));
            }
            match net(target) {
                Ok(net) => {
                    let note = note.join(" ");
                    let note = (!note.is_empty()).then_some(note);
                    Command::Lists(list, ListOp::Add { net, note, force })
                }
                Err(e) => Command::Error(e),
            }
        }
        ["del", target] => match net(target) {
            Ok(n) => Command::Lists(list, ListOp::Del(n)),
            Err(e) => Command::Error(e),
        },
        _ => usage(name),
    }
}

fn usage(name: &str) -> Command {
    let force = if name == "deny" { "[--force] " } else { "" };
    Command::Error(format!(
        "usage: {name} add {force}IP|CIDR [note] | {name} del IP|CIDR | {name} list | \
         {name} import {force}[FILE.csv] | {name} export"
    ))
}

/// Exactly one IPv4 or IPv6 address; the original's wording on failure.
fn one_ip(args: &[&str]) -> Result<IpAddr, String> {
    match args {
        [one] => one
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical())
            .map_err(|_| format!("{one} don't seems like a valid address")),
        _ => Err(format!("expected one address, got {:?}", args.join(" "))),
    }
}

/// `Uptime` wording of the original: `1 day 02:03:04`, `2 days ...`.
pub fn uptime_text(secs: u64) -> String {
    let days = secs / 86400;
    let rest = secs % 86400;
    let prefix = match days {
        0 => String::new(),
        1 => "1 day ".to_string(),
        n => format!("{n} days "),
    };
    format!(
        "{prefix}{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_commands() {
        assert_eq!(Command::parse("block"), Command::List);
        assert_eq!(
            Command::parse("block 203.0.113.5"),
            Command::Block("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            Command::parse("  unblock   2001:db8::1  "),
            Command::Unblock("2001:db8::1".parse().unwrap())
        );
        assert_eq!(Command::parse("QUIT"), Command::Quit);
        assert_eq!(Command::parse(""), Command::Nothing);
        assert_eq!(Command::parse("wl"), Command::Wl);
        assert_eq!(Command::parse("check-firewall"), Command::CheckFirewall);
        assert_eq!(
            Command::parse("status --deny"),
            Command::Status(StatusView::Deny)
        );
        assert_eq!(
            Command::parse("allow add 198.51.100.0/24 office VPN"),
            Command::Lists(
                ListName::Allow,
                ListOp::Add {
                    net: "198.51.100.0/24".parse().unwrap(),
                    note: Some("office VPN".into()),
                    force: false
                }
            )
        );
        assert_eq!(
            Command::parse("deny del 2001:db8::/32"),
            Command::Lists(
                ListName::Deny,
                ListOp::Del("2001:db8::/32".parse().unwrap())
            )
        );
        assert!(
            matches!(Command::parse("deny add nonsense"), Command::Error(e) if e.contains("nonsense"))
        );
        assert!(matches!(
            Command::parse("status --bogus"),
            Command::Error(_)
        ));
    }

    #[test]
    fn the_2024_originals_commands() {
        let net: IpNet = "198.51.100.0/24".parse().unwrap();
        assert_eq!(
            Command::parse("block 198.51.100.0/24"),
            Command::BlockNet { net, force: false }
        );
        // Host bits are dropped, as ipset does.
        assert_eq!(
            Command::parse("block --force 198.51.100.7/24"),
            Command::BlockNet { net, force: true }
        );
        assert_eq!(
            Command::parse("block 203.0.113.5/32"),
            Command::Block("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            Command::parse("block ::ffff:203.0.113.5"),
            Command::Block("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            Command::parse("block 2001:db8::/48"),
            Command::BlockNet {
                net: "2001:db8::/48".parse().unwrap(),
                force: false
            }
        );
        assert!(matches!(
            Command::parse("block --force 203.0.113.5"),
            Command::Error(e) if e.starts_with("error: --force is only for networks")
        ));
        assert_eq!(
            Command::parse("block 198.51.100.0/33"),
            Command::Error("198.51.100.0/33 don't seems like a valid address".into())
        );
        assert_eq!(Command::parse("save"), Command::Save);
        assert!(matches!(Command::parse("save now"), Command::Error(e) if e.contains("now")));
        assert_eq!(
            Command::parse("whois 193.0.6.139"),
            Command::Whois("193.0.6.139".parse().unwrap())
        );
        assert_eq!(
            Command::parse("whois"),
            Command::Error("ip address missing".into())
        );
        assert_eq!(
            Command::parse("whois example.org"),
            Command::Error("example.org don't seems like a valid address".into())
        );
    }

    #[test]
    fn errors_name_the_offending_text() {
        assert_eq!(
            Command::parse("block 300.1.1.1"),
            Command::Error("300.1.1.1 don't seems like a valid address".into())
        );
        assert_eq!(
            Command::parse("unblock"),
            Command::Error("ip address missing".into())
        );
        assert_eq!(
            Command::parse("frobnicate now"),
            Command::Error("Invalid command: frobnicate now".into())
        );
        assert!(matches!(Command::parse("flush all"), Command::Error(e) if e.contains("all")));
        assert!(matches!(
            Command::parse("block 1.2.3.4 5.6.7.8"),
            Command::Error(_)
        ));
    }

    #[test]
    fn force_and_import_forms_are_typed() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            Command::parse("deny add --force 10.0.0.0/8 whole net"),
            Command::Lists(
                ListName::Deny,
                ListOp::Add {
                    net,
                    note: Some("whole net".into()),
                    force: true
                }
            )
        );
        assert!(matches!(
            Command::parse("deny add 10.0.0.0/8 --force"),
            Command::Error(e) if e.contains("--force goes before")
        ));
        assert!(matches!(
            Command::parse("allow add --force 10.0.0.0/8"),
            Command::Error(e) if e.starts_with("error: --force is only for deny")
        ));
        assert!(
            matches!(Command::parse("deny add --force"), Command::Error(e) if e.starts_with("usage:"))
        );
        assert_eq!(
            Command::parse("deny import"),
            Command::Lists(
                ListName::Deny,
                ListOp::Import {
                    source: ImportSource::Lines,
                    force: false
                }
            )
        );
        assert_eq!(
            Command::parse("deny import --force bulk.csv"),
            Command::Lists(
                ListName::Deny,
                ListOp::Import {
                    source: ImportSource::File("bulk.csv".into()),
                    force: true
                }
            )
        );
        assert!(
            matches!(Command::parse("allow import a b"), Command::Error(e) if e.starts_with("usage:"))
        );
    }

    #[test]
    fn login_keeps_the_whole_secret_and_never_shows_it() {
        assert_eq!(
            Command::parse("  LOGIN  two words "),
            Command::Login(Secret::new("two words"))
        );
        assert!(matches!(Command::parse("login"), Command::Error(e) if e == "usage: login SECRET"));
        assert!(!format!("{:?}", Command::parse("login hunter2")).contains("hunter2"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(
            line in proptest::arbitrary::any::<String>(),
            bytes in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..300),
        ) {
            let _ = Command::parse(&line);
            let _ = Command::parse(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn arbitrary_words_never_panic(
            words in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("deny".to_string()),
                    proptest::strategy::Just("allow".to_string()),
                    proptest::strategy::Just("add".to_string()),
                    proptest::strategy::Just("import".to_string()),
                    proptest::strategy::Just("--force".to_string()),
                    proptest::strategy::Just("login".to_string()),
                    proptest::strategy::Just("10.0.0.0/8".to_string()),
                    proptest::strategy::Just("block".to_string()),
                    proptest::strategy::Just("whois".to_string()),
                    proptest::strategy::Just("save".to_string()),
                    proptest::strategy::Just("198.51.100.7/24".to_string()),
                    "\\PC{0,12}",
                ],
                0..6,
            ),
        ) {
            let _ = Command::parse(&words.join(" "));
        }
    }

    #[test]
    fn uptime_wording() {
        assert_eq!(uptime_text(5), "00:00:05");
        assert_eq!(uptime_text(86400 + 3723), "1 day 01:02:03");
        assert_eq!(uptime_text(3 * 86400), "3 days 00:00:00");
    }
}
