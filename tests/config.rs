//! `/etc/sipban.conf` and the white list, read from fixture files: the
//! original SIPban's format loads unchanged, missing keys take the original's
//! defaults, and every bad value, broken line or repeated section or key is
//! an error naming file:line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sipban::config::{BackendKind, Config, Loaded};
use sipban::firewall::{Action, Block, Ownership, Rate, RateLimit, Scope, SetType, SipPorts};
use sipban::policy::Whitelist;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// A fixture's settings and warnings. Parsed from its bytes rather than
/// loaded: a checkout's files are 0644, and the file-mode warning that
/// would add is tested on its own (`group_or_world_readable_...`).
fn load(name: &str) -> Loaded {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap();
    Config::parse(&bytes, &path).unwrap_or_else(|e| panic!("{name} must load: {e}"))
}

/// The full error message for an invalid fixture.
fn error(name: &str) -> String {
    match Config::load(&fixture(name)) {
        Ok(loaded) => panic!("{name} must not load, got {:?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

/// Same settings (the source file aside), secret included.
fn assert_same_settings(a: &Config, b: &Config) {
    let strip = |c: &Config| Config {
        source: None,
        ..c.clone()
    };
    assert_eq!(format!("{:?}", strip(a)), format!("{:?}", strip(b)));
    assert_eq!(a.ami.secret.expose(), b.ami.secret.expose());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_are_the_original_shipped_values() {
    let c = Config::default();
    assert_eq!(c.source, None);
    assert_eq!(c.ami.host, "127.0.0.1");
    assert_eq!(c.ami.port, 5038);
    assert_eq!(c.ami.user, "sipban");
    assert_eq!(c.ami.secret.expose(), "getout");
    assert_eq!(c.ami.ping, Some(Duration::from_secs(600)));
    assert_eq!(c.control.address, ip("127.0.0.1"));
    assert_eq!(c.control.port, 4451);
    assert_eq!(c.ban_time, Duration::from_secs(86400));
    assert_eq!(c.iptables.path, "/sbin/");
    assert_eq!(c.iptables.chain, "sipban-udp");
    // No scope of the original's: the set backends' SIP ports, on `auto`.
    assert_eq!(c.iptables.scope, None);
    assert_eq!(c.firewall.backend, BackendKind::Auto);
    assert_eq!(c.scope(), Scope::default());
    assert_eq!(c.scope().sip.to_string(), "udp/5060, tcp/5060, tcp/5061");
    assert_eq!(c.scope().block, Block::Sip);
    assert!(!c.limits.any(), "every limit is off by default");
    assert_eq!(c.limits.sip_ban_after, Some(Duration::from_secs(30)));
    assert_eq!(
        c.iptables.rule,
        Action::Reject(Some("icmp-port-unreachable".into()))
    );
    assert_eq!(
        c.iptables.rule.to_string(),
        "REJECT --reject-with icmp-port-unreachable"
    );
    assert_eq!(
        c.iptables.rule6.to_string(),
        "REJECT --reject-with icmp6-port-unreachable"
    );
    assert_eq!(c.iptables.white_list, Path::new("/etc/sipban.wl"));
    assert_eq!(c.iptables.dump, Path::new("/etc/sipban.dump"));
    assert_eq!(c.log_file, Path::new("/var/log/sipban.log"));
}

#[test]
fn original_readme_example_loads_as_the_defaults() {
    let loaded = load("original.conf");
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(
        c.source.as_deref(),
        Some(fixture("original.conf").as_path())
    );
    // Quotes are stripped, "#rule = DROP" is a comment.
    assert_eq!(c.ami.port, 5038);
    assert_eq!(c.ami.secret.expose(), "getout");
    assert_eq!(c.control.port, 4451);
    assert_eq!(
        c.iptables.rule.to_string(),
        "REJECT --reject-with icmp-port-unreachable"
    );
    assert_same_settings(c, &Config::default());
}

#[test]
fn newer_original_loads_with_scope_drop_and_its_flood_rule() {
    let loaded = load("newer-original.conf");
    let c = &loaded.config;
    assert_eq!(c.ami.host, "192.0.2.5");
    assert_eq!(c.ami.port, 5039);
    assert_eq!(c.ami.user, "sipban-pbx");
    assert_eq!(c.ami.secret.expose(), "n3w-s3cret");
    assert_eq!(c.ami.ping, Some(Duration::from_secs(300)));
    assert_eq!(c.control.port, 4452);
    assert_eq!(c.control.address, ip("127.0.0.1"));
    assert_eq!(c.ban_time, Duration::from_secs(3600));
    assert_eq!(c.iptables.path, "/usr/sbin/");
    assert_eq!(c.iptables.chain, "sipban-all");
    assert_eq!(c.iptables.scope, Some(Scope::original()));
    assert_eq!(c.scope(), Scope::original());
    assert_eq!(c.iptables.rule, Action::Drop);
    assert_eq!(c.iptables.rule6, Action::Drop);
    assert_eq!(c.iptables.white_list, Path::new("/etc/sipban/white.wl"));
    assert_eq!(c.iptables.dump, Path::new("/var/lib/sipban/sipban.dump"));
    assert_eq!(c.log_file, Path::new("/var/log/sipban/sipban.log"));

    // The newer SIPban's [flood] rule applies (ChallengeSent flood). Its
    // scope still bans what it says, UDP only, and a warning says so.
    let p = fixture("newer-original.conf").display().to_string();
    assert_eq!(
        loaded.warnings,
        vec![format!(
            "{p}:23: [iptables] scope = \"-p udp --dport 5060\" bans on udp/5060 only; Asterisk \
             also serves SIP over TCP 5060 and TLS 5061: remove scope to ban on [firewall] \
             ports (default udp/5060, tcp/5060, tcp/5061)"
        )]
    );
    let flood = c.policy.flood.as_ref().expect("[flood] applied");
    assert_eq!((flood.count, flood.interval), (5, Duration::from_secs(10)));
    assert_eq!(c.policy.ban_time, Duration::from_secs(3600));
}

#[test]
fn minimal_keeps_a_hash_inside_quotes_and_defaults_the_rest() {
    let loaded = load("minimal.conf");
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    assert_eq!(c.ami.secret.expose(), "s3cr#t");
    let expected = Config {
        ami: sipban::config::AmiConfig {
            secret: sipban::ami::Secret::new("s3cr#t"),
            ..Config::default().ami
        },
        ..Config::default()
    };
    assert_same_settings(c, &expected);
}

#[test]
fn empty_file_is_all_defaults() {
    let loaded = load("empty.conf");
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(
        loaded.config.source.as_deref(),
        Some(fixture("empty.conf").as_path())
    );
    assert_same_settings(&loaded.config, &Config::default());
}

#[test]
fn derived_rule6_follows_rule() {
    let parse = |text: &str| Config::parse(text, Path::new("t.conf")).unwrap().config;
    let c = parse("[iptables]\nrule = \"DROP\"\n");
    assert_eq!(c.iptables.rule6, Action::Drop);
    let c = parse("[iptables]\nrule = \"REJECT --reject-with tcp-reset\"\n");
    assert_eq!(
        c.iptables.rule6.to_string(),
        "REJECT --reject-with tcp-reset"
    );
    // An explicit rule6 wins over the derived one.
    let c = parse("[iptables]\nrule = \"REJECT\"\nrule6 = \"DROP\"\n");
    assert_eq!(c.iptables.rule, Action::Reject(None));
    assert_eq!(c.iptables.rule6, Action::Drop);
}

#[test]
fn unknown_keys_and_sections_are_warnings_naming_file_and_line() {
    let loaded = load("unknown-keys.conf");
    let p = fixture("unknown-keys.conf").display().to_string();
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    let mut expected = vec![
        format!("{p}:1: key \"verbose\" outside any section is ignored"),
        format!("{p}:4: unknown key [ami] colour is ignored"),
        format!("{p}:6: unknown section [extra] is ignored"),
        format!("{p}:11: unknown key [log] level is ignored"),
    ];
    expected.sort();
    assert_eq!(warnings, expected);
    // The known keys around them still apply.
    assert_eq!(loaded.config.log_file, Path::new("/tmp/sipban.log"));
}

#[test]
fn invalid_values_name_file_line_section_key_and_value() {
    let cases = [
        (
            "bad-ami-port.conf",
            r#"4: [ami] port = "abc": not a port number (1-65535)"#,
        ),
        (
            "bad-control-port.conf",
            r#"6: [control] port = "70000": not a port number (1-65535)"#,
        ),
        (
            "bad-rule.conf",
            r#"4: [iptables] rule = "ACCEPT": expected DROP, REJECT or REJECT --reject-with TYPE"#,
        ),
        (
            "bad-ban-word.conf",
            r#"3: [timer] ban = "soon": not a duration (e.g. 600, 10m, 1h, 1d)"#,
        ),
        (
            "bad-ban-zero.conf",
            r#"6: [timer] ban = "0": a ban must last at least one second"#,
        ),
        (
            "bad-chain-space.conf",
            r#"2: [iptables] chain = "sipban udp": a chain name is 1-28 letters, digits, '-' or '_'"#,
        ),
        (
            "bad-chain-long.conf",
            r#"4: [iptables] chain = "sipban-udp-chain-name-too-long": a chain name is 1-28 letters, digits, '-' or '_'"#,
        ),
        (
            "bad-control-address.conf",
            r#"3: [control] address = "localhost": not an IP address"#,
        ),
        (
            "bad-scope.conf",
            r#"3: [iptables] scope = "-p udp --dport 5060 -j ACCEPT": -j is not allowed in a scope: sipban adds the jump itself"#,
        ),
        (
            "bad-scope-two-protocols.conf",
            r#"3: [iptables] scope = "-p udp -p tcp --dport 5060": names two protocols (-p udp, -p tcp): one rule matches one protocol; remove scope and set [firewall] ports (e.g. udp/5060, tcp/5060, tcp/5061)"#,
        ),
        (
            "bad-scope-negation.conf",
            r#"2: [iptables] scope = "-p udp ! -s 10.0.0.0/8 --dport 5060": a negation (!) cannot be expressed exactly by the set backends; list the ports to cover in [firewall] ports instead"#,
        ),
        (
            "bad-scope-and-ports.conf",
            r#"6: [firewall] ports = "udp/5060, tcp/5060, tcp/5061": [iptables] scope is set too (line 3): both say what a ban blocks; remove scope (ports replaces it) or remove ports"#,
        ),
    ];
    for (name, tail) in cases {
        let expected = format!("{}:{tail}", fixture(name).display());
        assert_eq!(error(name), expected, "{name}");
    }
}

#[test]
fn section_header_without_bracket_is_a_syntax_error_with_its_line() {
    assert_eq!(
        error("bad-section.conf"),
        format!(
            "{}:5: section header \"[timer\" has no closing ']'",
            fixture("bad-section.conf").display()
        )
    );
}

#[test]
fn a_repeated_section_is_an_error_naming_both_lines() {
    // configparser merged the two [ami] sections silently.
    assert_eq!(
        error("dup-section.conf"),
        format!(
            "{}:9: section [ami] appears twice (first at line 1)",
            fixture("dup-section.conf").display()
        )
    );
}

#[test]
fn a_repeated_key_is_an_error_naming_both_lines() {
    // configparser kept the last value (5039) without a word.
    assert_eq!(
        error("dup-key.conf"),
        format!(
            "{}:12: [ami] port is set twice (first at line 4)",
            fixture("dup-key.conf").display()
        )
    );
}

#[test]
fn invalid_utf8_is_an_error_naming_its_line() {
    // A Latin-1 comment on line 7; read_to_string failed without a line.
    assert_eq!(
        error("not-utf8.conf"),
        format!("{}:7: not valid UTF-8", fixture("not-utf8.conf").display())
    );
}

#[test]
fn console_on_the_network_without_a_secret_is_refused_at_the_address_line() {
    assert_eq!(
        error("control-open-no-secret.conf"),
        format!(
            "{}:8: [control] address = \"0.0.0.0\": the console would be reachable from \
             the network without a password; set [control] secret or use 127.0.0.1",
            fixture("control-open-no-secret.conf").display()
        )
    );
    let parse = |text: &str| Config::parse(text, Path::new("t.conf"));
    for open in ["::", "192.0.2.1", "2001:db8::1"] {
        let text = format!("[control]\naddress = \"{open}\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("t.conf:2: [control] address = "), "{err}");
    }
    // Loopback needs no secret, IPv4, IPv6 and IPv4-mapped alike.
    for lo in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
        let text = format!("[control]\naddress = \"{lo}\"\n");
        let c = parse(&text).unwrap().config;
        assert_eq!(c.control.address, ip(lo));
        assert!(c.control.secret.is_none());
    }
}

#[test]
fn console_secret_idle_timeout_and_import_dir_are_read() {
    let loaded = load("control-open-with-secret.conf");
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config.control;
    assert_eq!(c.address, ip("::"));
    assert_eq!(c.secret.as_ref().map(|s| s.expose()), Some("c0ns0le#pw"));
    assert_eq!(c.idle_timeout, Duration::from_secs(600));
    assert_eq!(
        c.import_dir.as_deref(),
        Some(Path::new("/var/lib/sipban/import"))
    );
    // Masked in the listing and in Debug output; the rest is listed.
    let shown = loaded.config.to_string();
    assert!(shown.contains("\nsecret = \"********\"\n"), "{shown}");
    assert!(shown.contains("\nidle_timeout = 600\n"), "{shown}");
    assert!(
        shown.contains("\nimport_dir = \"/var/lib/sipban/import\"\n"),
        "{shown}"
    );
    for text in [shown, format!("{:?}", loaded.config)] {
        assert!(!text.contains("c0ns0le"), "{text}");
    }
    // Defaults: no secret, 300 s, no import directory.
    let d = Config::default().control;
    assert!(d.secret.is_none() && d.import_dir.is_none());
    assert_eq!(d.idle_timeout, Duration::from_secs(300));
}

#[test]
fn bad_console_settings_name_their_line() {
    let cases = [
        (
            "control-empty-secret.conf",
            r#"3: [control] secret = "": an empty secret is no password; set one or remove the key"#,
        ),
        (
            "bad-idle-timeout.conf",
            r#"3: [control] idle_timeout = "0": an idle timeout must last at least one second"#,
        ),
        (
            "bad-import-dir.conf",
            r#"2: [control] import_dir = "import": must be an absolute path"#,
        ),
    ];
    for (name, tail) in cases {
        let expected = format!("{}:{tail}", fixture(name).display());
        assert_eq!(error(name), expected, "{name}");
    }
}

#[cfg(unix)]
#[test]
fn group_or_world_readable_config_with_a_secret_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let warning = |path: &Path| {
        format!(
            "{p} is readable by other users and holds secrets: chmod 600 {p}",
            p = path.display()
        )
    };
    let cases = [
        ("ami-pass", "[ami]\npass = \"s3cret\"\n", 0o644, true),
        ("ami-pass-group", "[ami]\npass = \"s3cret\"\n", 0o640, true),
        (
            "ami-pass-private",
            "[ami]\npass = \"s3cret\"\n",
            0o600,
            false,
        ),
        ("console", "[control]\nsecret = \"pw\"\n", 0o604, true),
        ("no-secret", "[control]\nport = 4451\n", 0o644, false),
    ];
    for (name, text, mode, warned) in cases {
        let path = dir.path().join(format!("{name}.conf"));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let loaded = Config::load(&path).unwrap();
        let expected = if warned { vec![warning(&path)] } else { vec![] };
        assert_eq!(loaded.warnings, expected, "{name} {mode:o}");
    }
}

#[test]
fn an_oversized_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.conf");
    let line = "# padding padding padding padding padding padding padding padding\n";
    std::fs::write(&path, line.repeat(20_000)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: larger than 1048576 bytes; not a sipban config",
            path.display()
        )
    );
}

#[test]
fn key_without_equals_sign_is_reported_on_its_own_line() {
    // `port` alone on line 3: an empty value, which is not a port. The
    // message must point at line 3, not line 0.
    assert_eq!(
        error("bad-key-without-value.conf"),
        format!(
            "{}:3: [ami] port = \"\": not a port number (1-65535)",
            fixture("bad-key-without-value.conf").display()
        )
    );
}

#[test]
fn unknown_key_without_equals_sign_warns_on_its_own_line() {
    // A common slip: `key: value` instead of `key = value`.
    let loaded = Config::parse("[ami]\ncolour: blue\n", Path::new("t.conf")).unwrap();
    assert_eq!(
        loaded.warnings,
        vec!["t.conf:2: unknown key [ami] colour: blue is ignored".to_string()]
    );
}

#[test]
fn chain_name_of_exactly_28_characters_is_accepted() {
    let name = "a".repeat(28);
    let text = format!("[iptables]\nchain = \"{name}\"\n");
    let c = Config::parse(&text, Path::new("t.conf")).unwrap().config;
    assert_eq!(c.iptables.chain, name);
}

#[test]
fn missing_config_file_is_an_io_error_naming_the_path() {
    let err = Config::load(Path::new("/nonexistent/sipban.conf")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("cannot read config /nonexistent/sipban.conf: "),
        "{msg}"
    );
}

#[test]
fn debug_output_never_contains_the_secret() {
    for (name, secret) in [
        ("original.conf", "getout"),
        ("newer-original.conf", "n3w-s3cret"),
        ("minimal.conf", "s3cr#t"),
    ] {
        let loaded = load(name);
        assert_eq!(loaded.config.ami.secret.expose(), secret);
        for text in [
            format!("{:?}", loaded.config),
            format!("{:#?}", loaded.config),
            format!("{:?}", loaded),
            format!("{:?}", loaded.config.ami),
        ] {
            assert!(!text.contains(secret), "{name}: secret in {text}");
            assert!(text.contains("MASKED"), "{name}: {text}");
        }
        // The effective-settings listing masks it too.
        let shown = loaded.config.to_string();
        assert!(!shown.contains(secret), "{name}: secret in {shown}");
        assert!(shown.contains("pass = \"********\""), "{shown}");
    }
}

#[test]
fn shipped_sample_config_is_the_defaults_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/sipban.conf");
    let loaded = Config::parse(std::fs::read(&path).unwrap(), &path).unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(loaded.config.source.as_deref(), Some(path.as_path()));
    assert_same_settings(&loaded.config, &Config::default());
}

#[test]
fn effective_settings_listing_reloads_to_the_same_config() {
    let loaded = load("newer-original.conf");
    let listing = loaded.config.to_string();
    let again = Config::parse(&listing, Path::new("listing.conf")).unwrap();
    // The only warning is the advice about the scope, as for the file.
    assert_eq!(again.warnings.len(), 1, "{:?}", again.warnings);
    assert!(
        again.warnings[0].contains("bans on udp/5060 only"),
        "{:?}",
        again.warnings
    );
    // Everything but the masked secret round-trips.
    let expected = Config {
        ami: sipban::config::AmiConfig {
            secret: sipban::ami::Secret::new("********"),
            ..loaded.config.ami.clone()
        },
        ..loaded.config.clone()
    };
    assert_same_settings(&again.config, &expected);
}

#[test]
fn good_white_list_entries_and_lookups() {
    let path = fixture("whitelist/good.wl");
    let (wl, found) = Whitelist::load(&path).unwrap();
    assert!(found);
    let entries: Vec<String> = wl.entries().iter().map(|n| n.to_string()).collect();
    assert_eq!(
        entries,
        [
            "192.0.2.10/32",
            "198.51.100.0/24",
            "2001:db8::7/128",
            "2001:db8:1::/48",
            "10.1.0.0/16",
        ]
    );
    let find = |s: &str| wl.find(ip(s)).map(|n| n.to_string());
    assert_eq!(find("192.0.2.10").as_deref(), Some("192.0.2.10/32"));
    assert_eq!(find("192.0.2.11"), None);
    assert_eq!(find("198.51.100.200").as_deref(), Some("198.51.100.0/24"));
    assert_eq!(find("198.51.101.1"), None);
    assert_eq!(find("2001:db8::7").as_deref(), Some("2001:db8::7/128"));
    assert_eq!(find("2001:db8::8"), None);
    assert_eq!(
        find("2001:db8:1:abcd::1").as_deref(),
        Some("2001:db8:1::/48")
    );
    assert_eq!(find("2001:db8:2::1"), None);
    // Host bits in the CIDR are cleared: 10.1.2.3/16 covers 10.1.0.0/16.
    assert_eq!(find("10.1.255.255").as_deref(), Some("10.1.0.0/16"));
    assert_eq!(find("10.2.0.1"), None);
    // An IPv4-mapped IPv6 source is its IPv4 host.
    assert_eq!(
        find("::ffff:198.51.100.9").as_deref(),
        Some("198.51.100.0/24")
    );
    assert_eq!(find("203.0.113.50"), None);
}

#[test]
fn bad_white_list_names_file_and_line() {
    let path = fixture("whitelist/bad.wl");
    let err = Whitelist::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:5: \"192.0.2.300   # typo\" is not an IP address or CIDR",
            path.display()
        )
    );
}

#[test]
fn missing_white_list_is_empty_and_reported() {
    let (wl, found) = Whitelist::load(&fixture("whitelist/none.wl")).unwrap();
    assert!(!found);
    assert!(wl.entries().is_empty());
}

#[test]
fn shipped_sample_white_list_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/sipban.wl");
    let (wl, found) = Whitelist::load(&path).unwrap();
    assert!(found);
    let entries: Vec<String> = wl.entries().iter().map(|n| n.to_string()).collect();
    assert_eq!(entries, ["127.0.0.1/32"]);
    // The commented examples are not entries.
    assert_eq!(wl.find(ip("192.0.2.10")), None);
}

/// A config from text, which must load.
fn parse(text: &str) -> Config {
    Config::parse(text, Path::new("t.conf"))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .config
}

/// The error of a config that must not load.
fn refused(text: &str) -> String {
    match Config::parse(text, Path::new("t.conf")) {
        Ok(l) => panic!("{text} loaded: {:?}", l.config),
        Err(e) => e.to_string(),
    }
}

#[test]
fn what_a_ban_blocks_by_backend_and_keys() {
    // backend = chain alone: the original's exact jump.
    let c = parse("[firewall]\nbackend = chain\n");
    assert_eq!(c.scope(), Scope::original());
    // Every other backend: the SIP ports Asterisk serves.
    for b in ["auto", "nftables", "ipset"] {
        let c = parse(&format!("[firewall]\nbackend = {b}\n"));
        assert_eq!(c.scope(), Scope::default(), "{b}");
    }
    let c = parse(
        "[firewall]\nbackend = chain\nports = \"udp/5060, udp/10000-10010, tcp/5061\"\n\
         block = all\ninterface = eth0\n",
    );
    let sc = c.scope();
    assert_eq!(
        sc.sip,
        SipPorts::parse("udp/5060, udp/10000-10010, tcp/5061").unwrap()
    );
    assert_eq!(sc.block, Block::All);
    assert_eq!(sc.interface.as_ref().map(|i| i.name()), Some("eth0"));
    // The original's scope with -i, and block on top of it.
    let c =
        parse("[iptables]\nscope = \"-i ppp0 -p udp --dport 5060\"\n\n[firewall]\nblock = all\n");
    assert_eq!(c.scope().block, Block::All);
    assert_eq!(c.scope().interface.as_ref().map(|i| i.name()), Some("ppp0"));
    // An empty scope is every packet, as the 2024 original's.
    let c = parse("[iptables]\nscope = \"\"\n");
    assert_eq!(c.scope().block, Block::All);
    // The ipset backend can fill the 2024 original's hash:net set.
    let c =
        parse("[firewall]\nbackend = ipset\nset_type = hash:net\nset4 = sipban\nhook = filter\n");
    assert_eq!(c.firewall.set_type, SetType::Net);
    assert_eq!(c.firewall.set4, "sipban");
}

#[test]
fn keys_that_contradict_each_other_are_errors_naming_both() {
    assert_eq!(
        refused("[iptables]\nscope = \"-i eth0 -p udp\"\n\n[firewall]\ninterface = eth1\n"),
        "t.conf:5: [firewall] interface = \"eth1\": [iptables] scope names an interface too (-i, line 2); keep one"
    );
    assert_eq!(
        refused("[firewall]\nset_type = hash:net\n"),
        "t.conf:2: [firewall] set_type = \"hash:net\": hash:net sets are the ipset backend's; set [firewall] backend = ipset"
    );
    assert_eq!(
        refused("[firewall]\nports = \"udp/5060\"\n\n[limits]\ntcp_connect_rate = 5/second\n"),
        "t.conf:5: [limits] tcp_connect_rate = \"5/second\": no tcp port to limit: add one to [firewall] ports (e.g. tcp/5060, tcp/5061)"
    );
    assert_eq!(
        refused("[firewall]\nmode = set-only\n\n[limits]\nsip_rate = 50/second\n"),
        "t.conf:2: [firewall] mode = \"set-only\": set-only mode cannot hold [limits]: their rules live in sipban's own table and chains (use mode = own, or put the limits in your ruleset)"
    );
    for (text, why) in [
        ("[firewall]\nports = \"5060\"\n", "is not PROTOCOL/PORT"),
        ("[firewall]\nports = \"icmp/1\"\n", "udp, tcp or sctp"),
        ("[firewall]\nblock = some\n", "expected sip or all"),
        (
            "[firewall]\ninterface = \"eth0 eth1\"\n",
            "not an interface name",
        ),
        ("[limits]\nsip_rate = fast\n", "not a rate"),
        ("[limits]\nsip_rate = 0/second\n", "the count is 1-10000"),
        ("[limits]\nsip_burst = 0\n", "a burst is 1-10000 packets"),
        ("[limits]\ndns_protection = maybe\n", "expected yes or no"),
    ] {
        let e = refused(text);
        assert!(e.starts_with("t.conf:2: ["), "{e}");
        assert!(e.contains(why), "{text}: {e}");
    }
}

#[test]
fn limits_keys() {
    let c = parse(
        "[limits]\nsip_rate = 50/second\nsip_burst = 200\nsip_ban_after = 1m\n\
         tftp_rate = 10/minute\ntcp_connect_rate = 5/s\ntcp_connect_burst = 7\n\
         dns_protection = yes\n",
    );
    let l = &c.limits;
    assert_eq!(
        l.sip,
        Some(RateLimit {
            rate: Rate::parse("50/second").unwrap(),
            burst: 200
        })
    );
    assert_eq!(l.sip_ban_after, Some(Duration::from_secs(60)));
    assert_eq!(l.tftp, Some(RateLimit::TFTP));
    assert_eq!(
        l.tcp_connect.map(|t| (t.rate.to_string(), t.burst)),
        Some(("5/second".into(), 7))
    );
    assert!(l.dns);
    // The article's numbers when only the rate is given; 0 never bans.
    let c = parse("[limits]\nsip_rate = 50/second\nsip_ban_after = 0\n");
    assert_eq!(c.limits.sip, Some(RateLimit::SIP));
    assert_eq!(c.limits.sip_ban_after, None);
    assert!(!parse("[limits]\nsip_rate = off\n").limits.any());
    // Listed by --check-config and loaded back the same.
    let listing = c.to_string();
    for line in [
        "[limits]",
        "sip_rate = \"50/second\"",
        "sip_burst = 100",
        "sip_ban_after = 0",
        "tftp_rate = \"off\"",
        "dns_protection = no",
    ] {
        assert!(listing.lines().any(|l| l == line), "{line}\n{listing}");
    }
    let masked = Config {
        source: Some("t.conf".into()),
        ami: sipban::config::AmiConfig {
            secret: sipban::ami::Secret::new("********"),
            ..c.ami.clone()
        },
        ..c.clone()
    };
    assert_same_settings(&parse(&listing), &masked);
    // set-only mode without limits is fine.
    assert_eq!(
        parse("[firewall]\nmode = set-only\n").firewall.mode,
        Ownership::SetOnly
    );
}

#[test]
fn the_listing_of_each_scope_form_loads_back_the_same() {
    for text in [
        "",
        "[firewall]\nbackend = chain\n",
        "[iptables]\nscope = \"-p udp --dport 5060\"\n",
        "[iptables]\nscope = \"\"\n",
        "[iptables]\nscope = \"-i eth0 -p tcp -m multiport --dports 5060,5061\"\n",
        "[firewall]\nports = \"udp/5060, sctp/*\"\nblock = all\ninterface = \"wan+\"\n",
    ] {
        let c = parse(text);
        let again = parse(&c.to_string());
        assert_eq!(again.scope(), c.scope(), "{text}\n{c}");
        assert_eq!(again.iptables.scope, c.iptables.scope, "{text}");
    }
}

mod properties {
    use std::path::Path;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use sipban::config::Config;
    use sipban::config::ini::Ini;

    /// A known key of a known section, so values reach their parsers.
    const KEYS: &[(&str, &str)] = &[
        ("ami", "host"),
        ("ami", "port"),
        ("ami", "pass"),
        ("ami", "ping"),
        ("control", "address"),
        ("control", "secret"),
        ("control", "idle_timeout"),
        ("control", "import_dir"),
        ("timer", "ban"),
        ("iptables", "chain"),
        ("iptables", "scope"),
        ("iptables", "rule"),
        ("iptables", "rule6"),
        ("firewall", "backend"),
        ("firewall", "table"),
        ("firewall", "check_interval"),
        ("firewall", "ports"),
        ("firewall", "block"),
        ("firewall", "interface"),
        ("firewall", "set_type"),
        ("firewall", "mode"),
        ("limits", "sip_rate"),
        ("limits", "sip_burst"),
        ("limits", "sip_ban_after"),
        ("limits", "tftp_rate"),
        ("limits", "tcp_connect_rate"),
        ("limits", "dns_protection"),
        ("flood", "count"),
        ("policy", "max_failures"),
        ("policy", "find_time"),
        ("policy", "events"),
        ("policy", "services"),
        ("policy", "ban_time_factor"),
        ("policy", "block_threshold"),
    ];

    /// Lines a config is made of, good and bad.
    fn line() -> impl Strategy<Value = String> {
        let value = "[ -~é\"#]{0,24}";
        prop_oneof![
            (0..KEYS.len(), value).prop_map(|(i, v)| {
                let (section, key) = KEYS[i];
                format!("[{section}]\n{key} = {v}")
            }),
            (0..KEYS.len(), value).prop_map(|(i, v)| format!("{} = \"{v}\"", KEYS[i].1)),
            "[\\[\\]=\"#; a-z0-9_.:/-]{0,30}",
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
            let _ = Ini::parse(&bytes);
            let _ = Config::parse(&bytes, Path::new("fuzz.conf"));
        }

        #[test]
        fn config_shaped_text_never_panics(lines in vec(line(), 0..12), crlf in any::<bool>()) {
            let text = lines.join(if crlf { "\r\n" } else { "\n" });
            let parsed = Config::parse(&text, Path::new("fuzz.conf"));
            // Whatever loads lists settings that load back the same.
            if let Ok(loaded) = parsed {
                let listing = loaded.config.to_string();
                let again = Config::parse(&listing, Path::new("listing.conf"));
                prop_assert!(again.is_ok(), "{listing}\n{:?}", again.err());
            }
        }

        #[test]
        fn quoted_values_come_back_unchanged(v in "[^\"\\p{Cc}]{1,40}") {
            let text = format!("[ami]\nuser = \"{v}\"\n");
            let c = Config::parse(&text, Path::new("t.conf")).unwrap().config;
            prop_assert_eq!(c.ami.user, v);
        }

        #[test]
        fn every_error_names_the_file(lines in vec(line(), 1..8)) {
            if let Err(e) = Config::parse(lines.join("\n"), Path::new("named.conf")) {
                prop_assert!(e.to_string().starts_with("named.conf:"), "{e}");
            }
        }
    }
}

/// Found by the `config` fuzz target: a legacy scope with more ports than
/// one multiport rule takes was left out of the `--check-config` listing
/// altogether, so the listing loaded back as the default ports.
#[test]
fn a_scope_beyond_one_multiport_rule_is_listed_as_its_ports() {
    let ports: Vec<String> = (1..=16).map(|p| p.to_string()).collect();
    let text = format!(
        "[iptables]\ninterface = eno1\nscope = \"-i eno1 -p udp --dport {}\"\n",
        ports.join(",")
    );
    let c = parse(&text);
    let listing = c.to_string();
    let again = parse(&listing);
    assert_eq!(again.to_string(), listing);
    assert_eq!(again.scope(), c.scope());
    assert!(listing.contains("ports = \"udp/1, udp/2,"), "{listing}");
    assert!(listing.contains("interface = \"eno1\""), "{listing}");
}

#[test]
fn sip_sensor_keys() {
    // Off by default: an original config captures nothing.
    let c = parse("[timer]\nban = 3600\n");
    assert!(!c.sip.enabled);
    let c = parse(
        "[sip]\nenabled = yes\ninterfaces = eth0, eth1\nports = udp/5060, udp/5070, tcp/5060\n\
         tls_ports = 5061, 5062\nuser_agents = Friendly-Scanner, evil agent\nauth_window = 8\n\
         max_requests = 50\nrequest_window = 5\n",
    );
    let s = &c.sip;
    assert!(s.enabled);
    assert_eq!(s.interfaces.len(), 2);
    assert_eq!(s.tls_ports, vec![5061, 5062]);
    assert_eq!(
        s.signals.user_agents,
        vec!["friendly-scanner", "evil agent"]
    );
    assert_eq!(s.signals.auth_window, Duration::from_secs(8));
    assert_eq!(s.signals.max_requests, Some(50));
    assert_eq!(s.signals.request_window, Duration::from_secs(5));
    let filter: Vec<String> = s
        .capture_ports(&c.scope().sip)
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(filter, vec!["udp/5060", "udp/5070", "tcp/5060"]);
    // Listed by --check-config and loaded back the same.
    let listing = c.to_string();
    assert!(listing.lines().any(|l| l == "[sip]"), "{listing}");
    assert_eq!(parse(&listing).sip, c.sip, "{listing}");
    // Without ports: the firewall's SIP ports; `any` is every interface.
    let c =
        parse("[sip]\nenabled = yes\ninterfaces = any\nmax_requests = off\nuser_agents = none\n");
    assert!(c.sip.interfaces.is_empty());
    assert_eq!(c.sip.signals.max_requests, None);
    assert!(c.sip.signals.user_agents.is_empty());
    let filter: Vec<String> = c
        .sip
        .capture_ports(&c.scope().sip)
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(filter, vec!["udp/5060", "tcp/5060", "tcp/5061"]);
    assert_eq!(parse(&c.to_string()).sip, c.sip);
}

#[test]
fn bad_sip_sensor_values_name_the_line_and_key() {
    for (text, line, key, why) in [
        ("[sip]\nenabled = maybe\n", 2, "enabled", "yes or no"),
        (
            "[sip]\n\ninterfaces = eth0; rm -rf\n",
            3,
            "interfaces",
            "not an interface name",
        ),
        ("[sip]\nports = udp/99999\n", 2, "ports", ""),
        (
            "[sip]\ntls_ports = 5061, x\n",
            2,
            "tls_ports",
            "not a port number",
        ),
        ("[sip]\nuser_agents = ,\n", 2, "user_agents", "at least one"),
        (
            "[sip]\nauth_window = 3600\n",
            2,
            "auth_window",
            "at most 60 s",
        ),
        (
            "[sip]\nmax_requests = lots\n",
            2,
            "max_requests",
            "whole number",
        ),
    ] {
        let e = refused(text);
        assert!(e.contains(&format!("t.conf:{line}")), "{text}: {e}");
        assert!(e.contains(key) && e.contains(why), "{text}: {e}");
    }
}
