//! Allow and deny lists: file and CSV formats, lookups, allow-over-deny,
//! atomic save, reload that keeps the old lists on error, and a 50k-entry
//! list checked against a naive linear reference.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use sipban::policy::lists::{
    AddressList, ListEntry, ListKind, ListVerdict, ListWarning, Lists, WarningKind,
};
use sipban::policy::whitelist::Whitelist;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lists")
        .join(name)
}

fn read(name: &str) -> (String, PathBuf) {
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    (text, path)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn list(text: &str) -> AddressList {
    AddressList::parse(text, Path::new("test.list")).unwrap()
}

fn texts(warnings: &[ListWarning]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}

/// What must survive a round trip: networks and notes, in order.
fn content(l: &AddressList) -> Vec<(IpNet, Option<String>)> {
    l.entries()
        .iter()
        .map(|e| (e.net, e.note.clone()))
        .collect()
}

fn found(l: &AddressList, addr: &str) -> Option<String> {
    l.find(ip(addr)).map(|e| e.net.to_string())
}

#[test]
fn good_list_fixture() {
    let (text, path) = read("good.list");
    let l = AddressList::parse(&text, &path).unwrap();
    let got: Vec<(String, Option<&str>, usize)> = l
        .entries()
        .iter()
        .map(|e| (e.net.to_string(), e.note.as_deref(), e.line))
        .collect();
    let want: Vec<(String, Option<&str>, usize)> = vec![
        ("198.51.100.0/24".into(), Some("office LAN"), 4),
        ("192.0.2.10/32".into(), Some("pbx, the main one"), 5),
        ("2001:db8:1::/48".into(), None, 6),
        ("2001:db8::7/128".into(), Some("v6 phone"), 7),
        ("203.0.113.9/32".into(), Some("mapped host"), 8),
        ("192.0.2.0/25".into(), Some("host bits set"), 9),
        ("10.0.0.0/8".into(), Some("indented, spaces"), 11),
        ("2001:db8:2::/64".into(), Some("v6 host bits"), 12),
        ("192.0.2.128/25".into(), Some("mapped network"), 13),
    ];
    assert_eq!(got, want);
    // Host bits and the repeated /24 are warnings naming their lines.
    let p = path.display();
    assert_eq!(
        texts(l.warnings()),
        [
            format!("{p}:9: 192.0.2.77/25 has host bits set; it means 192.0.2.0/25"),
            format!(
                "{p}:10: 198.51.100.0/24 is listed twice (first at line 4); this line is ignored"
            ),
            format!("{p}:12: 2001:db8:2::5/64 has host bits set; it means 2001:db8:2::/64"),
        ]
    );
    // The repeated /24 on line 10 is ignored (first wins) and reported.
    assert_eq!(l.duplicates().len(), 1);
    assert_eq!(l.duplicates()[0].line, 10);
    assert_eq!(
        l.duplicates()[0].note.as_deref(),
        Some("duplicate, ignored")
    );
    assert_eq!(
        l.find(ip("198.51.100.1")).unwrap().note.as_deref(),
        Some("office LAN")
    );
    // The commented-out address is not listed.
    assert_eq!(found(&l, "192.0.2.200"), Some("192.0.2.128/25".into()));
    assert_eq!(found(&l, "192.0.2.11"), Some("192.0.2.0/25".into()));
    assert_eq!(found(&l, "192.0.2.10"), Some("192.0.2.10/32".into()));
}

#[test]
fn bad_fixtures_name_file_and_line() {
    let cases = [
        (
            "bad.list",
            r#"4: "10.0.0.300 # typo" is not an IP address or CIDR"#,
        ),
        (
            "bad-two-addresses.list",
            r#"2: "192.0.2.1 192.0.2.2" is not an IP address or CIDR"#,
        ),
    ];
    for (name, tail) in cases {
        let (text, path) = read(name);
        let err = AddressList::parse(&text, &path).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:{tail}", path.display()));
    }
    let cases = [
        (
            "bad.csv",
            r#"3: "192.0.2.2,\"open note": unterminated quoted field (notes cannot span lines)"#,
        ),
        (
            "bad-address.csv",
            r#"3: "not-an-ip,b" is not an IP address or CIDR"#,
        ),
        (
            "bad-note.csv",
            r#"2: note "one # hash" may not contain '#' (it starts a comment in the list file)"#,
        ),
        (
            "bad-columns.csv",
            r#"2: "192.0.2.1,a,b": expected address,note (quote notes holding commas)"#,
        ),
    ];
    for (name, tail) in cases {
        let (text, path) = read(name);
        let err = AddressList::from_csv(&text, &path).unwrap_err();
        assert_eq!(err.to_string(), format!("{}:{tail}", path.display()));
    }
}

#[test]
fn bad_lines_inline() {
    for bad in [
        "1.2.3.4/33",
        "hello",
        "2001:db8::/129",
        "1.2.3.4,note",
        "1.2.3.4 10.0.0.0/8 route",
        "192.0.2.1/",
        "::ffff:1.2.3.4/129",
    ] {
        let err = AddressList::parse(&format!("10.0.0.1\n{bad}\n"), Path::new("/etc/x"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("/etc/x:2: {bad:?} is not an IP address or CIDR"),
            "{bad}"
        );
    }
}

/// The old white list file is the allow list: the shipped white list and
/// the white list's own test input read the same networks through either
/// parser.
#[test]
fn white_list_files_read_unchanged() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/sipban.wl");
    let inputs = [
        std::fs::read_to_string(&shipped).unwrap(),
        "# office\n198.51.100.0/24\n\n192.0.2.10   # pbx\n2001:db8:1::/48\n2001:db8::7\n".into(),
        "192.0.2.77/24\n::ffff:198.51.100.1\n".into(),
    ];
    for text in inputs {
        let wl = Whitelist::parse(&text, &shipped).unwrap();
        let al = AddressList::parse(&text, &shipped).unwrap();
        let nets: Vec<IpNet> = al.entries().iter().map(|e| e.net).collect();
        assert_eq!(nets, wl.entries(), "{text}");
        assert!(al.entries().iter().all(|e| e.note.is_none()));
    }
}

#[test]
fn crlf_bom_and_tabs() {
    let l = list("\u{feff}# exported on Windows\r\n192.0.2.1\tfront desk\r\n\r\n2001:db8::/32\r\n");
    assert_eq!(
        content(&l),
        [
            (net("192.0.2.1/32"), Some("front desk".to_string())),
            (net("2001:db8::/32"), None)
        ]
    );
}

#[test]
fn mapped_ipv6_is_ipv4_both_ways() {
    let l = list("::ffff:192.0.2.1 mapped entry\n198.51.100.0/24 plain\n");
    assert_eq!(l.entries()[0].net, net("192.0.2.1/32"));
    assert_eq!(found(&l, "192.0.2.1"), Some("192.0.2.1/32".into()));
    assert_eq!(found(&l, "::ffff:192.0.2.1"), Some("192.0.2.1/32".into()));
    assert_eq!(
        found(&l, "::ffff:198.51.100.9"),
        Some("198.51.100.0/24".into())
    );
    assert_eq!(found(&l, "::ffff:198.51.101.9"), None);
    // A mapped entry and its IPv4 twin are one network.
    let l = list("192.0.2.1 first\n::ffff:192.0.2.1 twin\n");
    assert_eq!(l.len(), 1);
    assert_eq!(l.duplicates().len(), 1);
}

#[test]
fn host_bits_are_cleared() {
    let l = list("192.0.2.77/24\n2001:db8::1/32\n");
    assert_eq!(l.entries()[0].net.to_string(), "192.0.2.0/24");
    assert_eq!(l.entries()[1].net.to_string(), "2001:db8::/32");
    assert!(l.get(net("192.0.2.0/24")).is_some());
    assert!(l.get(net("192.0.2.99/24")).is_some());
}

#[test]
fn longest_prefix_wins() {
    let l = list(
        "10.0.0.0/8 eight\n10.1.2.3 host\n10.1.0.0/16 sixteen\n10.1.2.0/24 twentyfour\n\
         0.0.0.0/0 everything v4\n\
         2001:db8::/32 thirtytwo\n2001:db8:1:2::/64 sixtyfour\n2001:db8:1::/48 fortyeight\n\
         2001:db8:1:2::9 host6\n",
    );
    let note = |a: &str| l.find(ip(a)).and_then(|e| e.note.as_deref());
    assert_eq!(note("10.1.2.3"), Some("host"));
    assert_eq!(note("10.1.2.4"), Some("twentyfour"));
    assert_eq!(note("10.1.3.4"), Some("sixteen"));
    assert_eq!(note("10.2.3.4"), Some("eight"));
    assert_eq!(note("11.2.3.4"), Some("everything v4"));
    assert_eq!(note("2001:db8:1:2::9"), Some("host6"));
    assert_eq!(note("2001:db8:1:2::a"), Some("sixtyfour"));
    assert_eq!(note("2001:db8:1:3::a"), Some("fortyeight"));
    assert_eq!(note("2001:db8:2::a"), Some("thirtytwo"));
    // 0.0.0.0/0 is IPv4 only.
    assert_eq!(note("2001:db9::1"), None);
}

#[test]
fn allow_wins_over_deny_v4_and_v6() {
    let lists = Lists {
        allow: list(
            "198.51.100.7 the office router\n2001:db8:5::7 office v6\n203.0.0.0/16 partner\n",
        ),
        deny: list(
            "198.51.100.0/24 hostile net\n2001:db8:5::/48 hostile v6\n203.0.113.9 one bad host\n\
             2001:db8::/32 wide v6\n",
        ),
    };
    let allowed = |a: &str| match lists.verdict(ip(a)) {
        ListVerdict::Allowed(e) => Some(e.net.to_string()),
        _ => None,
    };
    let denied = |a: &str| match lists.verdict(ip(a)) {
        ListVerdict::Denied(e) => Some(e.net.to_string()),
        _ => None,
    };
    assert_eq!(allowed("198.51.100.7"), Some("198.51.100.7/32".into()));
    assert_eq!(
        allowed("::ffff:198.51.100.7"),
        Some("198.51.100.7/32".into())
    );
    assert_eq!(denied("198.51.100.8"), Some("198.51.100.0/24".into()));
    assert_eq!(allowed("2001:db8:5::7"), Some("2001:db8:5::7/128".into()));
    assert_eq!(denied("2001:db8:5::8"), Some("2001:db8:5::/48".into()));
    assert_eq!(denied("2001:db8:6::8"), Some("2001:db8::/32".into()));
    // A less specific allow still beats a more specific deny.
    assert_eq!(allowed("203.0.113.9"), Some("203.0.0.0/16".into()));
    assert_eq!(lists.verdict(ip("192.0.2.1")), ListVerdict::Neither);
    assert_eq!(lists.verdict(ip("2001:db9::1")), ListVerdict::Neither);
    assert_eq!(
        Lists::default().verdict(ip("192.0.2.1")),
        ListVerdict::Neither
    );
}

#[test]
fn good_csv_fixture() {
    let (text, path) = read("good.csv");
    let l = AddressList::from_csv(&text, &path).unwrap();
    let got: Vec<(String, Option<&str>, usize)> = l
        .entries()
        .iter()
        .map(|e| (e.net.to_string(), e.note.as_deref(), e.line))
        .collect();
    let want: Vec<(String, Option<&str>, usize)> = vec![
        ("198.51.100.0/24".into(), Some("office LAN"), 2),
        ("192.0.2.10/32".into(), Some("pbx, the main one"), 3),
        ("2001:db8::7/128".into(), Some(r#"the "blue" phone"#), 4),
        ("10.0.0.0/8".into(), None, 5),
        ("2001:db8:1::/48".into(), None, 6),
        (
            "203.0.113.0/24".into(),
            Some("quoted address, spaces around"),
            8,
        ),
        ("192.0.2.99/32".into(), Some("mapped"), 9),
    ];
    assert_eq!(got, want);
    // The header is optional.
    let body = text.split_once('\n').unwrap().1;
    let headless = AddressList::from_csv(body, &path).unwrap();
    assert_eq!(content(&headless), content(&l));
}

#[test]
fn csv_round_trip() {
    let mut l = list(
        "198.51.100.0/24 office, second floor\n192.0.2.1\n2001:db8::/48 the \"lab\" net\n\
         203.0.113.5 say \"hi\", then leave\n2001:db8:1::1 plain\n",
    );
    l.add(net("192.0.2.9/32"), Some(r#"a "quoted", comma'd note"#))
        .unwrap();
    l.add(net("10.0.0.0/8"), Some(",leading comma")).unwrap();
    let csv = l.to_csv();
    assert!(csv.starts_with("address,note\n"), "{csv}");
    assert!(
        csv.contains("\n198.51.100.0/24,\"office, second floor\"\n"),
        "{csv}"
    );
    assert!(csv.contains("\n192.0.2.1,\n"), "{csv}");
    assert!(
        csv.contains("\n2001:db8::/48,\"the \"\"lab\"\" net\"\n"),
        "{csv}"
    );
    assert!(csv.contains("\n2001:db8:1::1,plain\n"), "{csv}");
    let back = AddressList::from_csv(&csv, Path::new("export.csv")).unwrap();
    assert_eq!(content(&back), content(&l));
    // And again: the export is stable.
    assert_eq!(back.to_csv(), csv);
    // The good fixture survives csv -> list -> csv -> list.
    let (text, path) = read("good.csv");
    let first = AddressList::from_csv(&text, &path).unwrap();
    let second = AddressList::from_csv(&first.to_csv(), &path).unwrap();
    assert_eq!(content(&first), content(&second));
}

#[test]
fn save_then_parse_round_trip_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sipban.deny");
    let (text, fpath) = read("good.list");
    let mut l = AddressList::parse(&text, &fpath).unwrap();
    assert!(
        l.add(net("203.0.113.0/24"), Some("added at run time"))
            .unwrap()
    );
    assert!(l.remove(net("2001:db8:1::/48")));
    l.save(&path).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("# "), "{written}");
    assert!(
        written.contains("\n192.0.2.10 pbx, the main one\n"),
        "{written}"
    );
    assert!(
        written.contains("\n198.51.100.0/24 office LAN\n"),
        "{written}"
    );
    let (back, found) = AddressList::load(&path).unwrap();
    assert!(found);
    assert_eq!(content(&back), content(&l));
    assert!(back.duplicates().is_empty());
    // Only the file itself: no temp file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    // An operator's later edit still parses.
    std::fs::write(&path, format!("{written}192.0.2.250 added by hand # why\n")).unwrap();
    let (edited, _) = AddressList::load(&path).unwrap();
    assert_eq!(edited.len(), l.len() + 1);
    // The empty list saves and loads too.
    AddressList::new().save(&path).unwrap();
    assert!(AddressList::load(&path).unwrap().0.is_empty());
}

#[cfg(unix)]
#[test]
fn save_follows_a_symlink_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.list");
    let link = dir.path().join("sipban.allow");
    std::fs::write(&real, "192.0.2.1\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let mut l = AddressList::load(&link).unwrap().0;
    l.add(net("192.0.2.2/32"), None).unwrap();
    l.save(&link).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(AddressList::load(&real).unwrap().0.len(), 2);
    // A private list stays private.
    let mode = std::fs::metadata(&real).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn add_and_remove() {
    let mut l = list("192.0.2.0/24 net\n");
    assert!(
        !l.add(net("192.0.2.9/24"), Some("same net, other note"))
            .unwrap()
    );
    assert_eq!(l.entries()[0].note.as_deref(), Some("net"));
    assert!(
        l.add(net("::ffff:192.0.2.9/128"), Some("  a host  "))
            .unwrap()
    );
    let added = l.get(net("192.0.2.9/32")).unwrap();
    assert_eq!(
        added,
        &ListEntry {
            net: net("192.0.2.9/32"),
            note: Some("a host".into()),
            line: 0
        }
    );
    assert_eq!(found(&l, "192.0.2.9"), Some("192.0.2.9/32".into()));
    assert!(l.add(net("2001:db8::/64"), Some("")).unwrap());
    assert_eq!(l.entries()[2].note, None);
    for bad in [
        "has # hash",
        "two\nlines",
        "192.0.2.7 looks like a second address",
    ] {
        let err = l.add(net("198.51.100.1/32"), Some(bad)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("note {bad:?} may not")),
            "{err}"
        );
    }
    assert_eq!(l.len(), 3);
    // Removal is exact: a covering network stays.
    assert!(!l.remove(net("192.0.2.0/25")));
    assert!(l.remove(net("::ffff:192.0.2.9/128")));
    assert_eq!(found(&l, "192.0.2.9"), Some("192.0.2.0/24".into()));
    assert!(l.remove(net("192.0.2.0/24")));
    assert!(l.remove(net("2001:db8::1/64")));
    assert!(l.is_empty());
    assert_eq!(found(&l, "192.0.2.9"), None);
}

#[test]
fn load_reports_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow");
    let deny = dir.path().join("deny");
    let loaded = Lists::load(&allow, &deny).unwrap();
    assert_eq!(loaded.missing, [allow.clone(), deny.clone()]);
    assert!(loaded.lists.allow.is_empty() && loaded.lists.deny.is_empty());
    std::fs::write(&deny, "192.0.2.0/24 bad net\n").unwrap();
    let loaded = Lists::load(&allow, &deny).unwrap();
    assert_eq!(loaded.missing, std::slice::from_ref(&allow));
    assert_eq!(loaded.lists.deny.len(), 1);
    // A directory is not a missing file: it is an error.
    let err = Lists::load(dir.path(), &deny).unwrap_err();
    assert!(err.to_string().starts_with("cannot read "), "{err}");
}

#[test]
fn reload_keeps_the_old_lists_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow");
    let deny = dir.path().join("deny");
    std::fs::write(&allow, "192.0.2.7 router\n").unwrap();
    std::fs::write(&deny, "192.0.2.0/24 bad net\n").unwrap();
    let mut lists = Lists::load(&allow, &deny).unwrap().lists;
    let before = |l: &Lists| (content(&l.allow), content(&l.deny));
    let old = before(&lists);

    // A bad deny line: neither list changes, even though allow parsed.
    std::fs::write(&allow, "192.0.2.8 new router\n").unwrap();
    std::fs::write(&deny, "192.0.2.0/24 bad net\n198.51.100.0/33\n").unwrap();
    let err = lists.reload(&allow, &deny).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: \"198.51.100.0/33\" is not an IP address or CIDR",
            deny.display()
        )
    );
    assert_eq!(before(&lists), old);
    assert!(matches!(
        lists.verdict(ip("192.0.2.7")),
        ListVerdict::Allowed(_)
    ));

    // A bad allow line likewise.
    std::fs::write(&deny, "203.0.113.0/24\n").unwrap();
    std::fs::write(&allow, "# ok\n\n192.0.2.300\n").unwrap();
    let err = lists.reload(&allow, &deny).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: ", allow.display())),
        "{err}"
    );
    assert_eq!(before(&lists), old);

    // Fixed: both are replaced; a deleted file becomes an empty list.
    std::fs::write(&allow, "192.0.2.8 new router\n").unwrap();
    let reloaded = lists.reload(&allow, &deny).unwrap();
    assert!(reloaded.missing.is_empty() && reloaded.warnings.is_empty());
    assert!(matches!(
        lists.verdict(ip("192.0.2.8")),
        ListVerdict::Allowed(_)
    ));
    assert!(matches!(
        lists.verdict(ip("192.0.2.7")),
        ListVerdict::Neither
    ));
    assert!(matches!(
        lists.verdict(ip("203.0.113.1")),
        ListVerdict::Denied(_)
    ));
    std::fs::remove_file(&deny).unwrap();
    assert_eq!(
        lists.reload(&allow, &deny).unwrap().missing,
        std::slice::from_ref(&deny)
    );
    assert!(lists.deny.is_empty());
}

#[test]
fn host_bits_are_a_warning_naming_the_line_and_the_network_meant() {
    let path = fixture("host-bits.wl");
    let (l, exists) = AddressList::load_as(&path, ListKind::Allow).unwrap();
    assert!(exists);
    let p = path.display();
    assert_eq!(
        texts(l.warnings()),
        [
            format!("{p}:3: 10.0.0.1/8 has host bits set; it means 10.0.0.0/8"),
            format!("{p}:4: 2001:db8:1::1/48 has host bits set; it means 2001:db8:1::/48"),
        ]
    );
    assert_eq!(
        l.warnings()[0].kind,
        WarningKind::HostBits {
            written: "10.0.0.1/8".into(),
            means: net("10.0.0.0/8")
        }
    );
    // Still read as the network it means, in the white list too.
    assert_eq!(found(&l, "10.200.0.1"), Some("10.0.0.0/8".into()));
    let (wl, _) = Whitelist::load(&path).unwrap();
    assert_eq!(texts(wl.warnings()), texts(l.warnings()));
    // A plain address or a clean network is no warning, nor is CSV's.
    assert!(
        list("192.0.2.1\n10.0.0.0/8\n::ffff:192.0.2.0/120\n")
            .warnings()
            .is_empty()
    );
    let csv =
        AddressList::from_csv_as("192.0.2.1/24,x\n", Path::new("a.csv"), ListKind::Deny).unwrap();
    assert_eq!(
        texts(csv.warnings()),
        ["a.csv:1: 192.0.2.1/24 has host bits set; it means 192.0.2.0/24"]
    );
}

#[test]
fn an_allow_entry_covering_everything_is_an_error() {
    // 0.0.0.0/0 in the allow list turned the daemon off without a word.
    let path = fixture("allow-everything.wl");
    let want = format!(
        "{}:4: \"0.0.0.0/0 everyone\" would allow every address: nothing would ever be banned",
        path.display()
    );
    let err = AddressList::load_as(&path, ListKind::Allow).unwrap_err();
    assert_eq!(err.to_string(), want);
    assert_eq!(Whitelist::load(&path).unwrap_err().to_string(), want);
    let deny = fixture("good.list");
    assert_eq!(Lists::load(&path, &deny).unwrap_err().to_string(), want);
    let csv = fixture("allow-everything.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        AddressList::from_csv_as(&text, &csv, ListKind::Allow)
            .unwrap_err()
            .to_string(),
        format!(
            "{}:3: \"::/0,everyone\" would allow every address: nothing would ever be banned",
            csv.display()
        )
    );
    // Every spelling of "everything", each family.
    for all in ["::/0", "10.1.2.3/0", "::ffff:0:0/96", "::ffff:1.2.3.4/96"] {
        let err = AddressList::parse_as(all, Path::new("a"), ListKind::Allow).unwrap_err();
        assert!(
            err.to_string().ends_with("nothing would ever be banned"),
            "{all}: {err}"
        );
    }
    assert!(ListKind::Allow.refuses(net("0.0.0.0/0")).is_some());
    assert!(ListKind::Allow.refuses(net("0.0.0.0/1")).is_none());
    assert!(ListKind::Deny.refuses(net("::/0")).is_none());
}

#[test]
fn a_deny_entry_covering_everything_is_read_with_a_warning() {
    let allow = fixture("good.list");
    let deny = fixture("deny-everything.deny");
    let loaded = Lists::load(&allow, &deny).unwrap();
    assert!(matches!(
        loaded.lists.verdict(ip("2001:db9::1")),
        ListVerdict::Denied(_)
    ));
    let d = deny.display();
    let a = allow.display();
    // Allow list's warnings first, then the deny list's.
    assert_eq!(
        texts(&loaded.warnings),
        [
            format!("{a}:9: 192.0.2.77/25 has host bits set; it means 192.0.2.0/25"),
            format!(
                "{a}:10: 198.51.100.0/24 is listed twice (first at line 4); this line is ignored"
            ),
            format!("{a}:12: 2001:db8:2::5/64 has host bits set; it means 2001:db8:2::/64"),
            format!(
                "{d}:3: ::/0 covers every IPv6 address: every such source not on the allow \
                 list is banned for good"
            ),
        ]
    );
    let l = list("0.0.0.0/0\n");
    assert_eq!(
        texts(l.warnings()),
        [
            "test.list:1: 0.0.0.0/0 covers every IPv4 address: every such source not on the \
          allow list is banned for good"
        ]
    );
}

#[test]
fn a_non_utf8_list_names_its_line() {
    let path = fixture("not-utf8.list");
    for kind in [ListKind::Allow, ListKind::Deny] {
        let err = AddressList::load_as(&path, kind).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:3: not valid UTF-8", path.display())
        );
    }
}

/// splitmix64: a reproducible generator without extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

/// An address in a dense IPv4 region (few first octets) so that /16, /24
/// and /32 entries nest and overlap.
fn dense_v4(rng: &mut Rng) -> u32 {
    let first = [10u32, 172, 192, 203][rng.below(4) as usize];
    (first << 24) | (rng.next() as u32 & 0x00ff_ffff)
}

/// Likewise for IPv6: 2001:db8:X:Y::/64 with X from a small range.
fn dense_v6(rng: &mut Rng) -> u128 {
    let base = 0x2001_0db8u128 << 96;
    base | (u128::from(rng.below(64) as u16) << 80) | (rng.u128() & ((1u128 << 80) - 1))
}

fn v4net(addr: u32, len: u8) -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::from(addr)), len)
        .unwrap()
        .trunc()
}

fn v6net(addr: u128, len: u8) -> IpNet {
    IpNet::new(IpAddr::V6(Ipv6Addr::from(addr)), len)
        .unwrap()
        .trunc()
}

/// The naive reference: every entry of the family as (network, mask,
/// length), scanned one by one.
struct Naive {
    v4: Vec<(u32, u32, u8)>,
    v6: Vec<(u128, u128, u8)>,
}

impl Naive {
    fn new(nets: &[IpNet]) -> Self {
        let mut n = Naive {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        for net in nets {
            match net {
                IpNet::V4(v) => {
                    n.v4.push((v.network().into(), v.netmask().into(), v.prefix_len()))
                }
                IpNet::V6(v) => {
                    n.v6.push((v.network().into(), v.netmask().into(), v.prefix_len()))
                }
            }
        }
        // Longest first, so the first match is the most specific.
        n.v4.sort_by_key(|e| std::cmp::Reverse(e.2));
        n.v6.sort_by_key(|e| std::cmp::Reverse(e.2));
        n
    }

    /// The longest match: the first in a scan of the family's entries,
    /// longest prefixes first.
    fn find(&self, ip: IpAddr) -> Option<IpNet> {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4
                    .iter()
                    .find(|&&(network, mask, _)| a & mask == network)
                    .map(|&(network, _, len)| v4net(network, len))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6
                    .iter()
                    .find(|&&(network, mask, _)| a & mask == network)
                    .map(|&(network, _, len)| v6net(network, len))
            }
        }
    }
}

#[test]
fn fifty_thousand_entries_agree_with_a_linear_scan() {
    let mut rng = Rng(0x5eed_11575);
    let mut seen = HashSet::new();
    let mut nets = Vec::new();
    let mut text = String::from("# generated\n");
    while nets.len() < 50_000 {
        let n = match rng.below(100) {
            0..=4 => v4net(dense_v4(&mut rng), 16),
            5..=19 => v4net(dense_v4(&mut rng), 24),
            // /32 inside an already listed network half the time.
            20..=49 => match nets.get(rng.below(nets.len() as u64 + 1) as usize) {
                Some(IpNet::V4(v)) => v4net(
                    u32::from(v.network()) | rng.next() as u32 & !u32::from(v.netmask()),
                    32,
                ),
                _ => v4net(dense_v4(&mut rng), 32),
            },
            50..=54 => v6net(dense_v6(&mut rng), 48),
            55..=69 => v6net(dense_v6(&mut rng), 64),
            _ => match nets.get(rng.below(nets.len() as u64 + 1) as usize) {
                Some(IpNet::V6(v)) => v6net(
                    u128::from(v.network()) | rng.u128() & !u128::from(v.netmask()),
                    128,
                ),
                _ => v6net(dense_v6(&mut rng), 128),
            },
        };
        if seen.insert(n) {
            let addr = if n.prefix_len() == n.max_prefix_len() {
                n.addr().to_string()
            } else {
                n.to_string()
            };
            text.push_str(&format!("{addr} entry {}\n", nets.len()));
            nets.push(n);
        }
    }
    let list = AddressList::parse(&text, Path::new("big.list")).unwrap();
    assert_eq!(list.len(), 50_000);
    assert!(list.duplicates().is_empty());
    let naive = Naive::new(&nets);
    let position: HashMap<IpNet, usize> = nets.iter().enumerate().map(|(i, n)| (*n, i)).collect();

    let queries: Vec<IpAddr> = (0..100_000u32)
        .map(|i| match i % 6 {
            // Inside a listed network, random host bits.
            0 | 1 => match nets[rng.below(nets.len() as u64) as usize] {
                IpNet::V4(v) => IpAddr::V4(Ipv4Addr::from(
                    u32::from(v.network()) | (rng.next() as u32 & !u32::from(v.netmask())),
                )),
                IpNet::V6(v) => IpAddr::V6(Ipv6Addr::from(
                    u128::from(v.network()) | (rng.u128() & !u128::from(v.netmask())),
                )),
            },
            2 => IpAddr::V4(Ipv4Addr::from(dense_v4(&mut rng))),
            3 => IpAddr::V6(Ipv6Addr::from(dense_v6(&mut rng))),
            // IPv4-mapped IPv6, as some stacks report sources.
            4 => IpAddr::V6(Ipv4Addr::from(dense_v4(&mut rng)).to_ipv6_mapped()),
            _ if rng.below(2) == 0 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
            _ => IpAddr::V6(Ipv6Addr::from(rng.u128())),
        })
        .collect();

    // The reference is slow by design (5e9 comparisons in a debug build):
    // spread it over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = queries.len().div_ceil(threads);
    let want: Vec<Option<IpNet>> = std::thread::scope(|s| {
        let naive = &naive;
        let workers: Vec<_> = queries
            .chunks(chunk)
            .map(|qs| s.spawn(move || qs.iter().map(|q| naive.find(*q)).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });

    let mut hits = 0;
    for (q, want) in queries.iter().zip(want) {
        let got = list.find(*q);
        assert_eq!(got.map(|e| e.net), want, "lookup of {q}");
        if let Some(e) = got {
            hits += 1;
            // The entry is the one generated for that network, note included.
            let at = position.get(&e.net);
            assert_eq!(
                e.note.as_deref(),
                at.map(|i| format!("entry {i}")).as_deref()
            );
        }
    }
    // Both hits and misses were exercised.
    assert!(hits > 30_000 && hits < 95_000, "{hits} hits");
}

/// No input makes the parsers panic: random lines built from the
/// characters the formats care about.
#[test]
fn garbage_never_panics() {
    let alphabet: Vec<char> = "0123456789abcdef:./,\"# \t\r\nffff::%\u{feff}é"
        .chars()
        .collect();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(40) as usize;
        let s: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let p = Path::new("fuzz");
        if let Ok(l) = AddressList::parse(&s, p) {
            let again = AddressList::parse(&l.to_text(), p).unwrap();
            assert_eq!(content(&again), content(&l), "{s:?}");
            let csv = AddressList::from_csv(&l.to_csv(), p).unwrap();
            assert_eq!(content(&csv), content(&l), "{s:?}");
        }
        if let Ok(l) = AddressList::from_csv(&s, p) {
            let again = AddressList::parse(&l.to_text(), p).unwrap();
            assert_eq!(content(&again), content(&l), "{s:?}");
        }
    }
}

mod properties {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::path::Path;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use sipban::policy::lists::{AddressList, ListKind, WarningKind};

    use super::content;

    fn kind() -> impl Strategy<Value = ListKind> {
        prop_oneof![Just(ListKind::Allow), Just(ListKind::Deny)]
    }

    /// `address[/len] [note] [# comment]` lines, mostly valid, with
    /// mapped addresses, host bits and repeats likely.
    fn entry_line() -> impl Strategy<Value = String> {
        let addr = prop_oneof![
            any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)).to_string()),
            (0u8..4).prop_map(|n| format!("192.0.2.{n}")),
            any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)).to_string()),
            any::<[u8; 4]>().prop_map(|b| Ipv4Addr::from(b).to_ipv6_mapped().to_string()),
        ];
        let len = prop_oneof![
            Just(String::new()),
            (0u8..=130).prop_map(|l| format!("/{l}"))
        ];
        let note = "[ a-z,\"é\t]{0,12}";
        let comment = prop_oneof![Just(""), Just(" # why"), Just("#")];
        (addr, len, note, comment).prop_map(|(a, l, n, c)| format!("{a}{l} {n}{c}"))
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in "\\PC{0,200}", kind in kind()) {
            let p = Path::new("fuzz");
            let _ = AddressList::parse_as(&text, p, kind);
            let _ = AddressList::from_csv_as(&text, p, kind);
        }

        #[test]
        fn load_never_panics_on_bytes(bytes in vec(any::<u8>(), 0..300), kind in kind()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("list");
            std::fs::write(&path, &bytes).unwrap();
            match AddressList::load_as(&path, kind) {
                Ok((l, found)) => prop_assert!(found && l.len() <= bytes.len()),
                Err(e) => prop_assert!(e.to_string().starts_with(&path.display().to_string())),
            }
        }

        #[test]
        fn written_text_and_csv_read_back_the_same(
            lines in vec(entry_line(), 0..20),
            kind in kind(),
        ) {
            let p = Path::new("t");
            if let Ok(l) = AddressList::parse_as(&lines.join("\n"), p, kind) {
                let again = AddressList::parse_as(&l.to_text(), p, kind).unwrap();
                prop_assert_eq!(content(&again), content(&l));
                // What sipban writes is clean: no host bits, no repeats.
                let clean = again
                    .warnings()
                    .iter()
                    .all(|w| matches!(w.kind, WarningKind::DeniesEverything { .. }));
                prop_assert!(clean, "{:?}", again.warnings());
                let csv = AddressList::from_csv_as(&l.to_csv(), p, kind).unwrap();
                prop_assert_eq!(content(&csv), content(&l));
                // Every entry came with its line; each repeat warned once.
                let repeats = l.warnings().iter()
                    .filter(|w| matches!(w.kind, WarningKind::Repeated { .. }))
                    .count();
                prop_assert_eq!(repeats, l.duplicates().len());
            }
        }
    }
}
