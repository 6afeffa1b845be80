//! The 2024 original's dump: the output of `ipset save NAME`, read with
//! the same tolerance as the other formats (one bad line costs that line,
//! named with file:line).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::super::{Dump, DumpEntry, LEGACY_REASON};
use super::{Warnings, quote};
use crate::bans::networks::NetBan as NetworkEntry;
use crate::clock::UnixTime;
use crate::config::MAX_DURATION;

/// True when the first line that is not blank or a comment is an `ipset
/// save` command (`create` or `add`).
pub(super) fn is_ipset_save(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .is_some_and(|w| w == "create" || w == "add")
}

/// `ipset save NAME`: `create NAME hash:net family inet hashsize 4096 ...
/// timeout 604800`, then `add NAME IP[/LEN] timeout N` lines, `N` the
/// seconds left when it was saved. As the original's `ipset restore`, the
/// ban gets those seconds again from `now`.
/// An entry without a timeout (or `timeout 0`) never lapsed in the kernel:
/// it is a permanent ban. `nomatch` entries are exceptions, not bans, and
/// the entries of sets of other types (`hash:ip,port`, ...) are not bans
/// of a source either: both are skipped and named.
pub(super) fn read(text: &str, now: UnixTime, w: &mut Warnings<'_>) -> Dump {
    let mut dump = Dump::default();
    // Set name -> its type, from the create lines.
    let mut types: HashMap<&str, &str> = HashMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = words(line);
        match words.as_slice() {
            ["create", set, kind, ..] => {
                types.insert(set, kind);
            }
            ["add", set, entry, options @ ..] => {
                let kind = types.get(set).copied();
                match ipset_entry(kind, entry, options, now) {
                    Ok(Saved::Address(e)) => dump.bans.push(e),
                    Ok(Saved::Network(n)) => dump.nets.push(n),
                    Err(why) => w.at(idx + 1, format_args!("{}: {why}; skipped", quote(line))),
                }
            }
            _ => w.at(
                idx + 1,
                format_args!(
                    "{}: not an ipset save line (create or add); skipped",
                    quote(line)
                ),
            ),
        }
    }
    dump
}

enum Saved {
    Address(DumpEntry),
    Network(NetworkEntry),
}

/// One `add SET ENTRY [OPTIONS]` line's entry and options.
fn ipset_entry(
    kind: Option<&str>,
    entry: &str,
    options: &[&str],
    now: UnixTime,
) -> Result<Saved, String> {
    if let Some(kind) = kind.filter(|k| !matches!(*k, "hash:ip" | "hash:net")) {
        return Err(format!(
            "the set is {}, not hash:ip or hash:net: not a ban of a source",
            quote(kind)
        ));
    }
    let net = match entry.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(
            entry
                .parse::<IpAddr>()
                .map_err(|_| format!("{} is not an address or network", quote(entry)))?,
        ),
    };
    let net = crate::cidr::normalize(net);
    let mut remaining: Option<u64> = None;
    let mut opts = options.iter();
    while let Some(opt) = opts.next() {
        match *opt {
            "timeout" => {
                let t = opts.next().ok_or("timeout without a value")?;
                remaining = Some(
                    t.parse()
                        .map_err(|_| format!("timeout {} is not a number of seconds", quote(t)))?,
                );
            }
            "nomatch" => return Err("a nomatch entry is an exception, not a ban".into()),
            // Options with a value that is not ours.
            "packets" | "bytes" | "comment" | "skbmark" | "skbprio" | "skbqueue" => {
                opts.next();
            }
            _ => {}
        }
    }
    let (expiry, reason) = match remaining {
        Some(secs) if secs > 0 => (
            now.saturating_add(secs.min(MAX_DURATION)),
            LEGACY_REASON.to_string(),
        ),
        _ => (
            now.saturating_add(MAX_DURATION),
            format!("{LEGACY_REASON}{}", crate::bans::PERMANENT),
        ),
    };
    if net.prefix_len() == net.max_prefix_len() {
        Ok(Saved::Address(DumpEntry {
            ip: net.addr().to_canonical(),
            expiry,
            reason,
            count: 1,
        }))
    } else {
        Ok(Saved::Network(NetworkEntry {
            net,
            expiry,
            reason,
            count: 1,
        }))
    }
}

/// The words of an `ipset save` line; a double-quoted value (a `comment`)
/// is one word, spaces and all.
fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match (start, c) {
            (None, c) if c.is_whitespace() => {}
            (None, '"') => {
                start = Some(i);
                quoted = true;
            }
            (None, _) => start = Some(i),
            (Some(s), '"') if quoted => {
                out.extend(line.get(s..i + 1));
                start = None;
                quoted = false;
            }
            (Some(s), c) if c.is_whitespace() && !quoted => {
                out.extend(line.get(s..i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.extend(line.get(s..));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{WARNINGS_SHOWN, parse_dump_at};
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn p() -> &'static Path {
        Path::new("/etc/sipban.dump")
    }

    /// `ipset save sipban` of the 2024 original's set.
    const IPSET: &str = "create sipban hash:net family inet hashsize 4096 maxelem 65536 timeout 604800 bucketsize 12 initval 0x2b1c4f0a
add sipban 203.0.113.7 timeout 603612
add sipban 198.51.100.0/24 timeout 86000
add sipban 192.0.2.9/32 timeout 10 packets 3 bytes 180 comment \"timeout 99 fake\"
add sipban 192.0.2.10 timeout 0
add sipban 192.0.2.11
add sipban 192.0.2.12 timeout soon
add sipban 192.0.2.0/28 nomatch
add sipban 999.1.1.1 timeout 5
create ports hash:ip,port family inet
add ports 192.0.2.20,udp:5060 timeout 30
garbage here
";

    #[test]
    fn ipset_save_keeps_the_remaining_timeouts_from_now() {
        let now = 1_800_000_000;
        let d = parse_dump_at(IPSET, p(), now);
        let bans: Vec<(String, u64, &str)> = d
            .bans
            .iter()
            .map(|b| (b.ip.to_string(), b.expiry, b.reason.as_str()))
            .collect();
        let permanent = format!("{LEGACY_REASON}{}", crate::bans::PERMANENT);
        assert_eq!(
            bans,
            [
                ("203.0.113.7".to_string(), now + 603_612, LEGACY_REASON),
                // A comment holding "timeout" does not count.
                ("192.0.2.9".to_string(), now + 10, LEGACY_REASON),
                (
                    "192.0.2.10".to_string(),
                    now + MAX_DURATION,
                    permanent.as_str()
                ),
                (
                    "192.0.2.11".to_string(),
                    now + MAX_DURATION,
                    permanent.as_str()
                ),
            ]
        );
        assert_eq!(
            d.nets,
            [NetworkEntry {
                net: "198.51.100.0/24".parse().unwrap(),
                expiry: now + 86_000,
                reason: LEGACY_REASON.into(),
                count: 1
            }]
        );
        assert_eq!(
            d.warnings,
            [
                "/etc/sipban.dump:7: \"add sipban 192.0.2.12 timeout soon\": timeout \"soon\" is not a number of seconds; skipped",
                "/etc/sipban.dump:8: \"add sipban 192.0.2.0/28 nomatch\": a nomatch entry is an exception, not a ban; skipped",
                "/etc/sipban.dump:9: \"add sipban 999.1.1.1 timeout 5\": \"999.1.1.1\" is not an address or network; skipped",
                "/etc/sipban.dump:11: \"add ports 192.0.2.20,udp:5060 timeout 30\": the set is \"hash:ip,port\", not hash:ip or hash:net: not a ban of a source; skipped",
                "/etc/sipban.dump:12: \"garbage here\": not an ipset save line (create or add); skipped",
            ]
        );
    }

    #[test]
    fn the_format_is_told_by_its_first_command() {
        assert!(is_ipset_save("\n# saved\nadd s 192.0.2.1 timeout 5\n"));
        assert!(is_ipset_save("create s hash:ip\n"));
        assert!(!is_ipset_save("# [2024-01-02]\n192.0.2.1,1700000000\n"));
        assert!(!is_ipset_save("creates 1\n"));
        // A legacy dump is still read as one.
        let d = parse_dump_at("192.0.2.1,1700000000\n", p(), 5);
        assert_eq!(d.bans.len(), 1);
        assert_eq!(d.bans[0].expiry, 1_700_000_000);
    }

    #[test]
    fn quoted_words_stay_whole() {
        assert_eq!(
            words(r#"add s 1.2.3.4 comment "a b" timeout 5"#),
            ["add", "s", "1.2.3.4", "comment", "\"a b\"", "timeout", "5"]
        );
        assert_eq!(words(r#"add "open"#), ["add", "\"open"]);
        assert_eq!(words("  "), Vec::<&str>::new());
    }

    proptest! {
        #[test]
        fn ipset_save_never_panics_and_expiries_stay_in_range(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    "add sipban \\PC{0,20}( timeout [0-9]{0,25})?( nomatch)?",
                    "create \\PC{0,10} hash:(ip|net|ip,port)\\PC{0,10}",
                    "\\PC{0,40}",
                ],
                0..20,
            ),
            now in 0u64..=u64::MAX,
        ) {
            let text = format!("create sipban hash:net\n{}", lines.join("\n"));
            let d = parse_dump_at(&text, p(), now);
            for b in &d.bans {
                prop_assert_eq!(b.ip, b.ip.to_canonical());
                prop_assert!(b.expiry >= now);
                prop_assert!(b.expiry - now <= MAX_DURATION);
            }
            for n in &d.nets {
                prop_assert!(n.net.prefix_len() < n.net.max_prefix_len());
                prop_assert_eq!(n.net, n.net.trunc());
            }
            prop_assert!(d.warnings.len() <= WARNINGS_SHOWN + 1);
        }

    }
}
