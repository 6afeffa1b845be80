//! Reading a dump so that one bad entry costs that entry, not the dump.
//!
//! Our writer puts one ban per line, so the JSON dump is read line by line:
//! a bogus address, a mangled line or a file cut short by a full disk
//! loses only the lines concerned, each reported with file:line. A JSON
//! dump in another layout (reformatted by hand, say) is parsed whole and
//! its entries checked one by one. The original SIPban's `ip,expiry` lines
//! are read the same tolerant way, and so is the 2024 version's dump, the
//! output of `ipset save` ([`ipset_save`]).

mod ipset_save;

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use crate::bans::networks::NetBan;

use super::{Dump, DumpEntry, LEGACY_REASON, MAX_REASON};
use crate::clock::UnixTime;

/// Warnings kept word for word; beyond, only counted.
const WARNINGS_SHOWN: usize = 20;

/// Offending text quoted in a warning, at most this many characters.
const QUOTE: usize = 60;

/// Parses a dump in any of the formats (see the module docs); never fails.
/// An `ipset save` dump's remaining timeouts count from the system clock.
pub fn parse_dump(text: &str, path: &Path) -> Dump {
    parse_dump_at(text, path, crate::clock::Clock::system().now())
}

/// As [`parse_dump`], an `ipset save` dump's remaining timeouts counting
/// from `now` (the other formats hold absolute expiries).
pub fn parse_dump_at(text: &str, path: &Path, now: UnixTime) -> Dump {
    let mut w = Warnings::new(path);
    let mut dump = if text.trim_start().starts_with('{') {
        if text.lines().any(|l| l.trim() == "\"bans\": [") {
            by_lines(text, &mut w)
        } else {
            whole(text, &mut w)
        }
    } else if ipset_save::is_ipset_save(text) {
        ipset_save::read(text, now, &mut w)
    } else {
        legacy(text, &mut w)
    };
    dump.warnings = w.finish();
    dump
}

/// The bans of a dump (warnings dropped).
pub fn parse(text: &str, path: &Path) -> Vec<DumpEntry> {
    parse_dump(text, path).bans
}

struct Warnings<'a> {
    path: &'a Path,
    shown: Vec<String>,
    more: usize,
}

impl<'a> Warnings<'a> {
    fn new(path: &'a Path) -> Self {
        Warnings {
            path,
            shown: Vec::new(),
            more: 0,
        }
    }

    fn at(&mut self, line: usize, what: impl std::fmt::Display) {
        if self.shown.len() < WARNINGS_SHOWN {
            self.shown
                .push(format!("{}:{line}: {what}", self.path.display()));
        } else {
            self.more += 1;
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.shown.push(format!(
                "{}: ... and {} more skipped",
                self.path.display(),
                self.more
            ));
        }
        self.shown
    }
}

/// `text` quoted for a warning: at most [`QUOTE`] characters.
fn quote(text: &str) -> String {
    let mut q: String = text.chars().take(QUOTE).collect();
    if q.len() < text.len() {
        q.push_str("...");
    }
    format!("{q:?}")
}

/// Our own layout: header keys, then one ban per line.
fn by_lines(text: &str, w: &mut Warnings<'_>) -> Dump {
    let mut dump = Dump::default();
    let mut in_bans = false;
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let t = raw.trim();
        let t = t.strip_suffix(',').unwrap_or(t).trim_end();
        match t {
            "" | "{" | "}" => continue,
            "\"bans\": [" => {
                in_bans = true;
                continue;
            }
            "]" => {
                in_bans = false;
                continue;
            }
            _ => {}
        }
        if in_bans {
            match entry_from(serde_json::from_str::<Value>(t).ok().as_ref()) {
                Ok(e) => dump.bans.push(e),
                Err(why) => w.at(line, format_args!("ban {} skipped: {why}", quote(t))),
            }
            continue;
        }
        // A header line: `"key": value`.
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&format!("{{{t}}}")) else {
            w.at(line, format_args!("{} is not a dump header line", quote(t)));
            continue;
        };
        for (key, value) in map {
            header(&mut dump, &key, value, line, w);
        }
    }
    dump
}

/// A JSON dump in another layout: parsed whole, entries checked one by one.
fn whole(text: &str, w: &mut Warnings<'_>) -> Dump {
    let mut dump = Dump::default();
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            w.at(e.line(), format_args!("not a valid sipban dump: {e}"));
            return dump;
        }
    };
    let Value::Object(map) = v else {
        w.at(1, "not a valid sipban dump: not a JSON object");
        return dump;
    };
    for (key, value) in map {
        if key == "bans" {
            let Value::Array(items) = value else {
                w.at(1, "\"bans\" is not a list");
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                match entry_from(Some(item)) {
                    Ok(e) => dump.bans.push(e),
                    Err(why) => w.at(1, format_args!("ban #{} skipped: {why}", i + 1)),
                }
            }
        } else {
            header(&mut dump, &key, value, 1, w);
        }
    }
    dump
}

fn header(dump: &mut Dump, key: &str, value: Value, line: usize, w: &mut Warnings<'_>) {
    match key {
        "journal" => match value.as_u64() {
            Some(g) => dump.journal = g,
            None => w.at(
                line,
                "\"journal\" is not a number: journals replayed from the first",
            ),
        },
        "nets" => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match net_entry_from(item) {
                        Ok(b) => dump.nets.push(b),
                        Err(why) => {
                            w.at(line, format_args!("network ban #{} skipped: {why}", i + 1))
                        }
                    }
                }
            }
            _ => w.at(line, "\"nets\" is not a list: network bans ignored"),
        },
        "history" if value.is_object() => dump.history = Some(value),
        "history" => w.at(line, "\"history\" is not an object: ban history ignored"),
        // `version`, `written` and anything newer: nothing to restore.
        _ => {}
    }
}

/// The fields a ban and a network ban share: expiry, reason (bounded),
/// count (1 if absent).
fn ban_fields(map: &serde_json::Map<String, Value>) -> Result<(UnixTime, String, u32), String> {
    let expiry = map
        .get("expiry")
        .and_then(Value::as_u64)
        .ok_or("\"expiry\" is not a unix time")?;
    let reason = match map.get("reason") {
        None => String::new(),
        Some(Value::String(r)) => bounded(r),
        Some(_) => return Err("\"reason\" is not text".into()),
    };
    let count = match map.get("count") {
        None => 1,
        Some(c) => c
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .ok_or("\"count\" is not a count")?,
    };
    Ok((expiry, reason, count))
}

/// A dump entry from its JSON, checked field by field.
pub(crate) fn entry_from(v: Option<&Value>) -> Result<DumpEntry, String> {
    let Some(Value::Object(map)) = v else {
        return Err("not a JSON object".into());
    };
    let ip = map.get("ip").and_then(Value::as_str).ok_or("no \"ip\"")?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{} is not an IP address", quote(ip)))?;
    let (expiry, reason, count) = ban_fields(map)?;
    Ok(DumpEntry {
        ip: ip.to_canonical(),
        expiry,
        reason,
        count,
    })
}

/// A network ban from its JSON (`{"net": "198.51.100.0/24", "expiry": N,
/// "reason": "...", "count": N}`), checked field by field.
pub(crate) fn net_entry_from(v: &Value) -> Result<NetBan, String> {
    let Value::Object(map) = v else {
        return Err("not a JSON object".into());
    };
    let net = map.get("net").and_then(Value::as_str).ok_or("no \"net\"")?;
    let net: IpNet = net
        .parse()
        .map_err(|_| format!("{} is not a network", quote(net)))?;
    let (expiry, reason, count) = ban_fields(map)?;
    Ok(NetBan {
        net: crate::cidr::normalize(net),
        expiry,
        reason,
        count,
    })
}

/// `reason` cut to [`MAX_REASON`] bytes at a character boundary.
pub(crate) fn bounded(reason: &str) -> String {
    let mut out = String::new();
    for c in reason.chars() {
        if out.len() + c.len_utf8() > MAX_REASON {
            break;
        }
        out.push(c);
    }
    out
}

/// The original's `# [date]` then `ip,expiry` lines.
fn legacy(text: &str, w: &mut Warnings<'_>) -> Dump {
    let mut dump = Dump::default();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match legacy_line(line) {
            Ok(e) => dump.bans.push(e),
            Err(why) => w.at(idx + 1, format_args!("{}: {why}; skipped", quote(line))),
        }
    }
    dump
}

fn legacy_line(line: &str) -> Result<DumpEntry, &'static str> {
    let (ip, expiry) = line.split_once(',').ok_or("expected ip,expiry")?;
    let ip: IpAddr = ip.trim().parse().map_err(|_| "not an IP address")?;
    let expiry: UnixTime = expiry
        .trim()
        .parse()
        .map_err(|_| "expiry is not a unix time")?;
    Ok(DumpEntry {
        ip: ip.to_canonical(),
        expiry,
        reason: LEGACY_REASON.to_string(),
        count: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"{
  "version": 1,
  "written": 50,
  "journal": 7,
  "history": {"entries": []},
  "bans": [
    { "ip": "192.0.2.1", "expiry": 100, "reason": "Invalid Password", "count": 3 },
    { "ip": "300.1.2.3", "expiry": 100, "reason": "x", "count": 1 },
    { "ip": "2001:db8::1", "expiry": 200, "reason": "Invalid Account", "count": 1 },
    { "ip": "::ffff:198.51.100.7", "expiry": 300, "reason": "r", "count": 1 }
  ]
}
"#;

    fn p() -> &'static Path {
        Path::new("/etc/sipban.dump")
    }

    #[test]
    fn a_bad_entry_is_skipped_with_file_and_line_and_the_rest_kept() {
        let d = parse_dump(GOOD, p());
        let ips: Vec<String> = d.bans.iter().map(|b| b.ip.to_string()).collect();
        assert_eq!(ips, ["192.0.2.1", "2001:db8::1", "198.51.100.7"]);
        assert_eq!(d.journal, 7);
        assert!(d.history.is_some());
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0].starts_with("/etc/sipban.dump:8: ban "),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings[0].contains("is not an IP address"));
    }

    #[test]
    fn a_truncated_dump_keeps_every_complete_line() {
        let cut = GOOD.find("2001:db8::1").unwrap() + 4;
        let d = parse_dump(&GOOD[..cut], p());
        assert_eq!(d.bans.len(), 1);
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[1].starts_with("/etc/sipban.dump:9: ban "));
    }

    #[test]
    fn another_json_layout_is_checked_entry_by_entry() {
        let text = r#"{"version":1,"bans":[{"ip":"192.0.2.1","expiry":5,"reason":"r","count":1},{"ip":"x","expiry":5}]}"#;
        let d = parse_dump(text, p());
        assert_eq!(d.bans.len(), 1);
        assert!(d.warnings[0].contains("ban #2 skipped"), "{:?}", d.warnings);
        let d = parse_dump("{\"version\":1,", p());
        assert!(d.bans.is_empty());
        assert!(d.warnings[0].contains("not a valid sipban dump"));
    }

    #[test]
    fn legacy_format_is_read_and_bad_lines_skipped() {
        let text = "# [2024-01-02 03:04:05]\n203.0.113.7,1700000000\nnonsense\n2001:db8::9,1700000100\n1.2.3.4,soon\n";
        let d = parse_dump(text, p());
        assert_eq!(d.bans.len(), 2);
        assert_eq!(d.bans[0].reason, LEGACY_REASON);
        assert_eq!(
            d.warnings,
            [
                "/etc/sipban.dump:3: \"nonsense\": expected ip,expiry; skipped",
                "/etc/sipban.dump:5: \"1.2.3.4,soon\": expiry is not a unix time; skipped",
            ]
        );
    }

    #[test]
    fn warnings_are_bounded_and_reasons_too() {
        let text: String = (0..1000).map(|i| format!("bad{i}\n")).collect();
        let d = parse_dump(&text, p());
        assert_eq!(d.warnings.len(), WARNINGS_SHOWN + 1);
        assert!(d.warnings.last().unwrap().contains("980 more"));
        let long = "é".repeat(500);
        assert!(bounded(&long).len() <= MAX_REASON);
        assert!(bounded(&long).chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn never_panics_and_every_ban_is_canonical(text in ".{0,400}") {
            let d = parse_dump(&text, p());
            for b in &d.bans {
                prop_assert_eq!(b.ip, b.ip.to_canonical());
                prop_assert!(b.reason.len() <= MAX_REASON);
            }
            prop_assert!(d.warnings.len() <= WARNINGS_SHOWN + 1);
        }

        #[test]
        fn a_good_dump_cut_anywhere_keeps_the_lines_before_the_cut(cut in 0usize..400) {
            let cut = GOOD.char_indices().map(|(i, _)| i).take_while(|i| *i <= cut).last().unwrap_or(0);
            let d = parse_dump(&GOOD[..cut], p());
            let whole_lines = GOOD[..cut].lines().count().saturating_sub(1);
            let expected = GOOD.lines().take(whole_lines).filter(|l| l.contains("\"ip\"") && !l.contains("300.")).count();
            prop_assert!(d.bans.len() >= expected);
        }
    }
}
