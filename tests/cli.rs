//! The `sipban` binary as an admin runs it: `--version`, `--check-config`
//! and `replay`. Configs that name files point into a private temp dir, so
//! nothing here reads or writes /etc or /var.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use sipban::config::Config;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/config").join(name)
}

fn capture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/ami").join(name)
}

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sipban-cli-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `name` private (0600), as `install -m 600` does: configs
    /// hold the AMI secret, and a readable one is a warning.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A config whose white list, deny list, dump and log all live in this
    /// dir (the white list only if `white_list` is given; else a missing
    /// file here).
    fn config(&self, white_list: Option<&Path>, extra: &str) -> PathBuf {
        let wl = white_list.map_or_else(|| self.path("missing.wl"), Path::to_path_buf);
        let text = format!(
            "{extra}\n[iptables]\nwhite_list = \"{}\"\ndump = \"{}\"\n\n[log]\nfile = \"{}\"\n\n\
             [lists]\ndeny = \"{}\"\n",
            wl.display(),
            self.path("sipban.dump").display(),
            self.path("sipban.log").display(),
            self.path("sipban.deny").display()
        );
        self.write("sipban.conf", &text)
    }

    /// `fixture` with its white list, dump and log moved into this dir.
    /// Their lines are rewritten in place and missing sections appended,
    /// so the fixture's own line numbers stay the same (a section or key
    /// given twice is an error, so they cannot simply be appended).
    fn fixture_copy(&self, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(fixture(name)).unwrap();
        let moved = [
            ("iptables", "white_list", self.path("missing.wl")),
            ("iptables", "dump", self.path("sipban.dump")),
            ("log", "file", self.path("sipban.log")),
            ("lists", "deny", self.path("sipban.deny")),
        ];
        let mut section = String::new();
        let mut seen = Vec::new();
        let mut out = String::new();
        for line in text.lines() {
            let t = line.trim();
            if let Some(name) = t.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
                section = name.trim().to_lowercase();
                seen.push(section.clone());
            }
            let key = t.split_once('=').map(|(k, _)| k.trim().to_lowercase());
            match moved
                .iter()
                .find(|(s, k, _)| *s == section && key.as_deref() == Some(*k))
            {
                Some((_, k, path)) => out.push_str(&format!("{k} = \"{}\"\n", path.display())),
                None => out.push_str(&format!("{line}\n")),
            }
        }
        for (s, k, path) in &moved {
            if seen.contains(&s.to_string()) {
                assert!(
                    out.contains(&format!("\n{k} = \"{}\"\n", path.display())),
                    "{name}: [{s}] without {k}: add it to the fixture"
                );
            } else {
                if !out.contains(&format!("\n[{s}]\n")) {
                    out.push_str(&format!("\n[{s}]\n"));
                }
                out.push_str(&format!("{k} = \"{}\"\n", path.display()));
            }
        }
        self.write(name, &out)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn sipban(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .args(args)
        .current_dir(manifest_dir())
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run sipban");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Run {
    fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Failed cleanly: exit status 1, no panic.
    fn assert_failed(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// The `BLOCK => ip (...)` lines for `ip`.
    fn blocks(&self, ip: &str) -> usize {
        let prefix = format!("BLOCK => {ip} ");
        self.stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .count()
    }

    fn block_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("BLOCK => "))
            .collect()
    }

    fn spared_lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("SPARED => "))
            .collect()
    }
}

const ATTACKERS: [&str; 5] = [
    "203.0.113.11",
    "203.0.113.12",
    "203.0.113.13",
    "203.0.113.14",
    "2001:db8:113::11",
];
const OFFICE_PHONE: &str = "203.0.113.50";

#[test]
fn version_prints_the_crate_version() {
    let run = sipban(&["--version"]);
    run.assert_ok();
    assert_eq!(
        run.stdout.trim(),
        format!("sipban {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_effective_settings_with_the_secret_masked() {
    let tmp = TempDir::new("check-newer");
    let conf = tmp.fixture_copy("newer-original.conf");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!("# effective settings of {}\n", conf.display())),
        "{out}"
    );
    for line in [
        "[ami]",
        "host = \"192.0.2.5\"",
        "port = \"5039\"",
        "user = \"sipban-pbx\"",
        "pass = \"********\"",
        "ping = 300",
        "port = \"4452\"",
        "ban = 3600",
        "path = \"/usr/sbin/\"",
        "chain = \"sipban-all\"",
        "scope = \"-p udp --dport 5060\"",
        "rule = \"DROP\"",
        "rule6 = \"DROP\"",
        "# white list: 0 entries",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} missing in\n{out}");
    }
    assert!(out.ends_with("# config OK\n"), "{out}");
    assert!(!out.contains("n3w-s3cret"), "{out}");
    assert!(!run.stderr.contains("n3w-s3cret"), "{}", run.stderr);
    // [flood] is applied (the newer SIPban's rule); the missing white list
    // is a warning, not an error.
    assert!(out.lines().any(|l| l == "flood_count = 5"), "{out}");
    assert!(
        run.stderr.contains(&format!(
            "white list {} not found",
            tmp.path("missing.wl").display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn check_config_accepts_every_valid_fixture() {
    for (name, secret) in [
        ("original.conf", "getout"),
        ("newer-original.conf", "n3w-s3cret"),
        ("minimal.conf", "s3cr#t"),
        ("empty.conf", "getout"),
        ("unknown-keys.conf", "getout"),
    ] {
        let tmp = TempDir::new("check-valid");
        let conf = tmp.fixture_copy(name);
        let run = sipban(&["--check-config", "-c", s(&conf)]);
        run.assert_ok();
        assert!(
            run.stdout.ends_with("# config OK\n"),
            "{name}: {}",
            run.stdout
        );
        assert!(
            run.stdout.lines().any(|l| l == "pass = \"********\""),
            "{name}: {}",
            run.stdout
        );
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(secret), "{name}: secret shown in\n{text}");
        }
    }
}

#[test]
fn check_config_with_the_real_white_list_counts_its_entries() {
    let tmp = TempDir::new("check-good-wl");
    let wl = fixture("whitelist/good.wl");
    let conf = tmp.config(Some(&wl), "");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    assert!(
        run.stdout.lines().any(|l| l == "# white list: 5 entries"),
        "{}",
        run.stdout
    );
    // Its last line has host bits set: read, with a warning.
    assert_eq!(
        run.stderr,
        format!(
            "warning: {}:10: 10.1.2.3/16 has host bits set; it means 10.1.0.0/16\n",
            wl.display()
        )
    );
}

#[test]
fn check_config_rejects_each_invalid_fixture_with_a_one_line_error() {
    for (name, line) in [
        ("bad-ami-port.conf", 4),
        ("bad-control-port.conf", 6),
        ("bad-rule.conf", 4),
        ("bad-ban-word.conf", 3),
        ("bad-ban-zero.conf", 6),
        ("bad-chain-space.conf", 2),
        ("bad-chain-long.conf", 4),
        ("bad-control-address.conf", 3),
        ("bad-scope.conf", 3),
        ("bad-scope-two-protocols.conf", 3),
        ("bad-scope-negation.conf", 2),
        ("bad-scope-and-ports.conf", 6),
    ] {
        let path = fixture(name);
        let run = sipban(&["--check-config", "-c", s(&path)]);
        run.assert_failed();
        let expected = Config::load(&path).unwrap_err().to_string();
        assert!(
            expected.starts_with(&format!("{}:{line}: [", path.display())),
            "{expected}"
        );
        assert_eq!(run.stderr, format!("sipban: {expected}\n"), "{name}");
        assert_eq!(run.stdout, "", "{name}");
    }
}

#[test]
fn a_scope_no_backend_expresses_exactly_stops_the_start_too() {
    // The daemon reads the config before it touches anything (and
    // --dry-run never touches the firewall): the same one-line error.
    for (name, why) in [
        (
            "bad-scope-two-protocols.conf",
            "names two protocols (-p udp, -p tcp)",
        ),
        (
            "bad-scope-negation.conf",
            "a negation (!) cannot be expressed exactly",
        ),
    ] {
        let tmp = TempDir::new("start-bad-scope");
        let conf = tmp.fixture_copy(name);
        let run = sipban(&["-c", s(&conf), "--dry-run", "--foreground"]);
        run.assert_failed();
        assert!(
            run.stderr
                .starts_with(&format!("sipban: {}:", conf.display())),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("[iptables] scope = "), "{}", run.stderr);
        assert!(run.stderr.contains(why), "{}", run.stderr);
        assert!(
            !tmp.path("sipban.log").exists(),
            "started far enough to log"
        );
    }
}

#[test]
fn check_config_lists_the_ports_block_and_limits_in_force() {
    let tmp = TempDir::new("check-ports");
    let conf = tmp.config(
        None,
        "[firewall]\nports = \"udp/5060, tcp/5061\"\nblock = all\n\n\
         [limits]\nsip_rate = 50/second\ntftp_rate = 10/minute\n",
    );
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    for line in [
        "backend = \"auto\"",
        "ports = \"udp/5060, tcp/5061\"",
        "block = \"all\"",
        "[limits]",
        "sip_rate = \"50/second\"",
        "sip_burst = 100",
        "sip_ban_after = 30",
        "tftp_rate = \"10/minute\"",
        "tcp_connect_rate = \"off\"",
        "dns_protection = no",
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{line:?} missing in\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("scope = "), "{}", run.stdout);
}

#[test]
fn check_config_rejects_a_section_header_without_bracket() {
    let path = fixture("bad-section.conf");
    let run = sipban(&["--check-config", "-c", s(&path)]);
    run.assert_failed();
    assert_eq!(
        run.stderr,
        format!(
            "sipban: {}:5: section header \"[timer\" has no closing ']'\n",
            path.display()
        )
    );
}

#[test]
fn check_config_fails_on_a_bad_white_list_naming_its_line() {
    let tmp = TempDir::new("check-bad-wl");
    let wl = fixture("whitelist/bad.wl");
    let conf = tmp.config(Some(&wl), "[ami]\npass = \"getout\"\n");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_failed();
    assert_eq!(
        run.stderr,
        format!(
            "sipban: {}:5: \"192.0.2.300   # typo\" is not an IP address or CIDR\n",
            wl.display()
        )
    );
    assert!(!run.stdout.contains("# config OK"), "{}", run.stdout);
}

#[test]
fn check_config_accepts_notes_in_the_white_list() {
    // The white list is the allow list: the daemon reads notes after the
    // address, so the check must too.
    let tmp = TempDir::new("check-wl-notes");
    let wl = tmp.write("notes.wl", "198.51.100.0/24 head office\n2001:db8::7 pbx\n");
    let conf = tmp.config(Some(&wl), "[ami]\npass = \"getout\"\n");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    assert!(
        run.stdout.contains("# config OK"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("# white list: 2 entries"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_config_fails_clearly_on_a_missing_config() {
    let run = sipban(&["--check-config", "-c", "/nonexistent.conf"]);
    run.assert_failed();
    assert!(
        run.stderr
            .starts_with("sipban: cannot read config /nonexistent.conf: "),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("No such file"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn replay_blocks_each_attacker_once_and_never_the_office_phone() {
    let tmp = TempDir::new("replay-mixed");
    let conf = tmp.config(None, "");
    let cap = capture("mixed-doc-range.ami");
    let run = sipban(&["-c", s(&conf), "replay", s(&cap)]);
    run.assert_ok();
    for ip in ATTACKERS {
        assert_eq!(run.blocks(ip), 1, "{ip} in\n{}", run.stdout);
    }
    assert_eq!(run.blocks(OFFICE_PHONE), 0, "{}", run.stdout);
    assert_eq!(run.block_lines().len(), ATTACKERS.len(), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("5 addresses would be banned (dry run: firewall untouched)"),
        "{}",
        run.stdout
    );
    // A replay is a dry run: no dump and no log written.
    assert!(!tmp.path("sipban.dump").exists());
    assert!(!tmp.path("sipban.log").exists());
}

#[test]
fn replay_of_only_good_registrations_blocks_nothing() {
    let tmp = TempDir::new("replay-office");
    let conf = tmp.config(None, "");
    let cap = capture("office-legit.ami");
    let run = sipban(&["-c", s(&conf), "replay", s(&cap)]);
    run.assert_ok();
    assert_eq!(run.block_lines(), Vec::<&str>::new(), "{}", run.stdout);
    assert!(
        run.stdout.contains("0 addresses would be banned"),
        "{}",
        run.stdout
    );
}

#[test]
fn replay_spares_white_listed_attackers_and_still_blocks_the_rest() {
    let tmp = TempDir::new("replay-wl");
    let wl = tmp.write("office.wl", "# the office network\n203.0.113.0/24\n");
    let conf = tmp.config(Some(&wl), "");
    let cap = capture("mixed-doc-range.ami");
    let run = sipban(&["-c", s(&conf), "replay", s(&cap)]);
    run.assert_ok();
    assert_eq!(
        run.block_lines()
            .iter()
            .filter(|l| l.starts_with("BLOCK => 203.0.113."))
            .count(),
        0,
        "{}",
        run.stdout
    );
    assert_eq!(run.blocks("2001:db8:113::11"), 1, "{}", run.stdout);
    assert_eq!(run.block_lines().len(), 1, "{}", run.stdout);
    let spared = run.spared_lines();
    for ip in &ATTACKERS[..4] {
        let prefix = format!("SPARED => {ip} (white list 203.0.113.0/24; ");
        assert_eq!(
            spared.iter().filter(|l| l.starts_with(&prefix)).count(),
            1,
            "{ip} in\n{}",
            run.stdout
        );
    }
    // The office phone sent no attack, so it has nothing to be spared from.
    assert_eq!(spared.len(), 4, "{}", run.stdout);
    assert!(
        run.stdout.contains("1 addresses would be banned"),
        "{}",
        run.stdout
    );
}

#[test]
fn replay_of_a_missing_capture_fails_naming_it() {
    let tmp = TempDir::new("replay-missing");
    let conf = tmp.config(None, "");
    let cap = tmp.path("no-such-capture.ami");
    let run = sipban(&["-c", s(&conf), "replay", s(&cap)]);
    run.assert_failed();
    assert!(
        run.stderr
            .contains(&format!("sipban: cannot read {}: ", cap.display())),
        "{}",
        run.stderr
    );
    assert_eq!(run.block_lines(), Vec::<&str>::new());
}

#[test]
fn replay_with_a_huge_ban_time_does_not_panic() {
    // `ban` is any number of seconds the config accepts; the largest must
    // either be refused with a config error or work, never crash.
    let tmp = TempDir::new("replay-huge-ban");
    let conf = tmp.config(None, "[timer]\nban = 18446744073709551615\n");
    let cap = capture("mixed-doc-range.ami");
    let run = sipban(&["-c", s(&conf), "replay", s(&cap)]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    match run.code {
        Some(0) => {
            for ip in ATTACKERS {
                assert_eq!(run.blocks(ip), 1, "{ip} in\n{}", run.stdout);
            }
        }
        _ => {
            run.assert_failed();
            assert!(
                run.stderr
                    .starts_with(&format!("sipban: {}:2: [timer] ban = ", conf.display())),
                "{}",
                run.stderr
            );
        }
    }
}

#[test]
fn replay_takes_the_config_after_the_capture() {
    // README's `sipban replay FILE -c PATH` was refused: -c only worked
    // before the subcommand.
    let tmp = TempDir::new("replay-c-after");
    let wl = tmp.write("office.wl", "203.0.113.0/24 the office\n");
    let conf = tmp.config(Some(&wl), "");
    let cap = capture("mixed-doc-range.ami");
    for args in [
        vec!["replay", s(&cap), "-c", s(&conf)],
        vec!["replay", s(&cap), "--config", s(&conf)],
        vec!["replay", "-c", s(&conf), s(&cap)],
        vec!["-c", s(&conf), "replay", s(&cap)],
    ] {
        let run = sipban(&args);
        run.assert_ok();
        // The config's white list applied: only the IPv6 attacker is left.
        assert_eq!(run.block_lines().len(), 1, "{args:?}\n{}", run.stdout);
        assert_eq!(run.blocks("2001:db8:113::11"), 1, "{}", run.stdout);
    }
}

#[test]
fn global_flags_work_after_the_subcommand() {
    let tmp = TempDir::new("flags-after");
    let conf = tmp.config(None, "");
    let cap = capture("office-legit.ami");
    let run = sipban(&["replay", s(&cap), "-v", "-c", s(&conf), "--dry-run"]);
    run.assert_ok();
    assert!(
        run.stdout.contains("0 addresses would be banned"),
        "{}",
        run.stdout
    );
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    let run = sipban(&["-c", s(&conf), "--check-config"]);
    run.assert_ok();
    // `-c` without its value is a usage error, not a crash.
    let run = sipban(&["replay", s(&cap), "-c"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

/// A console that answers every command with `echo: <line>` and records
/// the lines, for `connections` sessions.
fn echo_console(connections: usize) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let prompt = sipban::console::PROMPT;
    let handle = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writer
                .write_all(format!("Sipban test console\n{prompt}").as_bytes())
                .unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_string();
            let _ = writer.write_all(format!("echo: {line}\n{prompt}").as_bytes());
            lines.push(line);
        }
        lines
    });
    (port, handle)
}

#[test]
fn client_commands_take_trailing_config_and_console_options() {
    // `sipban status -c /etc/x.conf` sent "status -c /etc/x.conf" to the
    // console found in /etc/sipban.conf.
    let tmp = TempDir::new("client-trailing");
    let (port, console) = echo_console(5);
    let conf = tmp.config(None, &format!("[control]\nport = {port}\n"));
    let addr = format!("127.0.0.1:{port}");
    let config_eq = format!("--config={}", conf.display());
    let runs: [(Vec<&str>, &str); 5] = [
        (vec!["status", "-c", s(&conf)], "status"),
        (vec!["status", "--all", "-c", s(&conf)], "status --all"),
        (
            vec!["check", "203.0.113.7", "--console", &addr],
            "check 203.0.113.7",
        ),
        (
            vec![
                "deny",
                "add",
                "198.51.100.0/24",
                "scanner",
                "net",
                &config_eq,
            ],
            "deny add 198.51.100.0/24 scanner net",
        ),
        // Only trailing ones are ours; the rest is passed on as typed.
        (
            vec![
                "deny",
                "add",
                "198.51.100.0/24",
                "-c",
                "note",
                "-v",
                "-c",
                s(&conf),
            ],
            "deny add 198.51.100.0/24 -c note -v",
        ),
    ];
    for (args, line) in &runs {
        let run = sipban(args);
        run.assert_ok();
        assert_eq!(
            run.stdout,
            format!("echo: {line}\n"),
            "{args:?}\n{}",
            run.stderr
        );
    }
    let sent = console.join().unwrap();
    let want: Vec<&str> = runs.iter().map(|(_, line)| *line).collect();
    assert_eq!(sent, want);
    // A bad --console is a usage error naming the value, wherever it is.
    for args in [
        &["status", "--console", "nowhere"][..],
        &["check", "203.0.113.7", "--console", "nowhere"],
    ] {
        let run = sipban(args);
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.starts_with(
                "error: invalid value 'nowhere' for '--console <ADDR:PORT>': invalid socket address syntax\n"
            ),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn check_config_prints_list_warnings_and_fails_on_an_allow_all_entry() {
    let tmp = TempDir::new("check-list-warnings");
    let wl = tmp.write(
        "office.wl",
        "# office\n192.0.2.10\n10.0.0.1/8 head office\n",
    );
    tmp.write(
        "sipban.deny",
        "203.0.113.0/24 scanners\n203.0.113.0/24 again\n::/0\n",
    );
    let conf = tmp.config(Some(&wl), "");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    let deny = tmp.path("sipban.deny");
    let (w, d) = (wl.display(), deny.display());
    assert_eq!(
        run.stderr,
        format!(
            "warning: {w}:3: 10.0.0.1/8 has host bits set; it means 10.0.0.0/8\n\
             warning: {d}:2: 203.0.113.0/24 is listed twice (first at line 1); this line is ignored\n\
             warning: {d}:3: ::/0 covers every IPv6 address: every such source not on the allow \
             list is banned for good\n"
        )
    );
    assert!(
        run.stdout.contains("\n# deny list: 2 entries\n"),
        "{}",
        run.stdout
    );

    tmp.write("office.wl", "192.0.2.10\n0.0.0.0/0\n");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_failed();
    assert_eq!(
        run.stderr,
        format!(
            "sipban: {w}:2: \"0.0.0.0/0\" would allow every address: nothing would ever be banned\n"
        )
    );
    assert!(!run.stdout.contains("# config OK"), "{}", run.stdout);
}

#[test]
fn check_config_warns_about_a_readable_config_holding_a_secret() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("check-mode");
    let conf = tmp.config(None, "[ami]\npass = \"s3cret\"\n");
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    assert!(
        !run.stderr.contains("readable by other users"),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = sipban(&["--check-config", "-c", s(&conf)]);
    run.assert_ok();
    let c = conf.display();
    assert!(
        run.stderr.contains(&format!(
            "warning: {c} is readable by other users and holds secrets: chmod 600 {c}\n"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn a_console_on_the_network_without_a_secret_is_refused_by_check_and_daemon() {
    let tmp = TempDir::new("open-console");
    let conf = tmp.config(None, "[control]\naddress = \"0.0.0.0\"\nport = 1\n");
    let want = format!(
        "sipban: {}:2: [control] address = \"0.0.0.0\": the console would be reachable from the \
         network without a password; set [control] secret or use 127.0.0.1\n",
        conf.display()
    );
    for args in [
        vec!["--check-config", "-c", s(&conf)],
        vec!["-c", s(&conf), "--dry-run", "--foreground"],
    ] {
        let run = sipban(&args);
        run.assert_failed();
        assert_eq!(run.stderr, want, "{args:?}");
    }
    // Nothing was started: no log written.
    assert!(!tmp.path("sipban.log").exists());
}

/// A daemon started by a test, killed when the test ends however it ends.
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn get(&mut self) -> &mut std::process::Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago (the control console needs a fixed one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn daemon_with_a_huge_ping_interval_logs_in_and_does_not_drop_the_link_at_once() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpListener;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    // `ping` is any number of seconds the config accepts; the largest must
    // either be refused with a config error or work: the binary reads it,
    // logs in, and does not drop the link in the 2 s watched here. That the
    // link then lives on past the 10 s dead-link timeout, with no ping ever
    // sent, is checked in virtual time in tests/ami_link.rs.
    let tmp = TempDir::new("daemon-huge-ping");
    let ami = TcpListener::bind("127.0.0.1:0").unwrap();
    ami.set_nonblocking(true).unwrap();
    let extra = format!(
        "[ami]\nport = {}\nping = 18446744073709551615\n\n[control]\nport = {}\n",
        ami.local_addr().unwrap().port(),
        free_port()
    );
    let conf = tmp.config(None, &extra);
    let child = Command::new(env!("CARGO_BIN_EXE_sipban"))
        .args(["-c", s(&conf), "--dry-run", "--foreground"])
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sipban");
    // Killed even if an assertion below fails first.
    let mut child = KillOnDrop(Some(child));

    // Wait for the daemon to connect, or to exit on a config error.
    let deadline = Instant::now() + Duration::from_secs(15);
    let link = loop {
        match ami.accept() {
            Ok((stream, _)) => break Some(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if child.get().try_wait().unwrap().is_some() || Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    // Speak just enough AMI: banner, accept the login, then stay quiet.
    let link_dropped = link.map(|mut stream| {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"Asterisk Call Manager/9.0.0\r\n")
            .unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("login request");
            assert!(n > 0, "daemon closed before logging in");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8_lossy(&request);
        let action_id = request
            .lines()
            .find_map(|l| l.strip_prefix("ActionID: "))
            .map(|id| format!("ActionID: {id}\r\n"))
            .unwrap_or_default();
        let reply =
            format!("Response: Success\r\n{action_id}Message: Authentication accepted\r\n\r\n");
        stream.write_all(reply.as_bytes()).unwrap();
        // A healthy client keeps the link open; EOF means it gave up.
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let quiet_until = Instant::now() + Duration::from_secs(2);
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) if Instant::now() < quiet_until => {}
                Ok(_) => break false,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false;
                }
                Err(_) => break true,
            }
        }
    });

    let mut child = child.0.take().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    match link_dropped {
        Some(dropped) => assert!(!dropped, "AMI link dropped after login:\n{stderr}"),
        None => {
            // Refused at start: must be a clean config error.
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("{}:3: [ami] ping = ", conf.display())),
                "{stderr}"
            );
        }
    }
}
