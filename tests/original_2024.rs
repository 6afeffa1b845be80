//! A drop-in for both versions of the original SIPban: its legacy config
//! and the 2024 ipset version's (`[ipset]`, `[iptables] interface`), each
//! started with a dump in each of its formats (`ip,expiry` lines and
//! `ipset save` output); the 2024 console's `save`, `block NET` and
//! `whois IP` against the real daemon (fake Asterisk, dry-run firewall),
//! whois against small whois servers on loopback.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sipban::bans::PERMANENT;
use sipban::clock::Clock;
use sipban::config::{BackendKind, Config};
use sipban::console::whois::{self, WhoisServer, WhoisSettings};
use sipban::daemon::{Daemon, PolicySettings, Settings};
use sipban::firewall::{Action, Block, DryRun, DryRunLog, Hook, Interface, Scope, SetType};
use sipban::policy::Whitelist;
use support::{ConsoleClient, FakeAmi};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The manual clock's start: the fixtures' legacy expiries are after it.
const T0: u64 = 1_800_000_000;

const WEEK: u64 = 604_800;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config_fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures/config").join(name)
}

fn dump_fixture(name: &str) -> String {
    std::fs::read_to_string(manifest().join("tests/fixtures/dumps").join(name)).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `fixture` with every file it names moved into `dir` (lines rewritten
/// in place, so line numbers stay), plus `extra` lines appended to their
/// sections (`("control", "whois_server = ...")`). Written 0600, as
/// `install -m 600` does.
fn fixture_copy(dir: &Path, name: &str, extra: &[(&str, String)]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(config_fixture(name)).unwrap();
    let moved = [
        ("iptables", "white_list", dir.join("sipban.wl")),
        ("iptables", "dump", dir.join("iptables.dump")),
        ("ipset", "dump", dir.join("ipset.dump")),
        ("log", "file", dir.join("sipban.log")),
    ];
    let mut section = String::new();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            section = name.trim().to_lowercase();
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
    let mut sections: Vec<(&str, String)> = vec![(
        "lists",
        format!("deny = \"{}\"", dir.join("sipban.deny").display()),
    )];
    sections.extend(extra.iter().cloned());
    for (s, line) in sections {
        let header = format!("[{s}]\n");
        match out.find(&header) {
            Some(at) => out.insert_str(at + header.len(), &format!("{line}\n")),
            None => out.push_str(&format!("\n{header}{line}\n")),
        }
    }
    let path = dir.join("sipban.conf");
    std::fs::write(&path, out).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

// ---------------------------------------------------------------------------
// The 2024 config
// ---------------------------------------------------------------------------

/// The fixture as `Config::load` reads it once installed 0600 (git keeps
/// no such mode).
fn load_fixture(name: &str) -> sipban::config::Loaded {
    let path = config_fixture(name);
    Config::parse(std::fs::read(&path).unwrap(), &path).unwrap()
}

#[test]
fn the_2024_config_loads_as_the_original_runs_it() {
    let loaded = load_fixture("original-2024.conf");
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let c = &loaded.config;
    // The ban time is the set's timeout: no [timer] in this file.
    assert_eq!(c.ban_time, Duration::from_secs(WEEK));
    assert_eq!(c.policy.ban_time, Duration::from_secs(WEEK));
    // The dump is [ipset] dump: no [iptables] dump either.
    assert_eq!(c.iptables.dump, Path::new("/etc/sipban.dump"));
    // The original's set and rule: filter INPUT, -i eno1, the whole
    // traffic (scope = ""), DROP.
    assert_eq!(c.firewall.backend, BackendKind::Ipset);
    assert_eq!(c.firewall.set4, "sipban");
    assert_eq!(c.firewall.hook, Hook::Filter);
    assert_eq!(c.firewall.set_type, SetType::Net, "the original's hash:net");
    let scope = c.scope();
    assert_eq!(scope.block, Block::All);
    assert_eq!(scope.interface, Some(Interface::parse("eno1").unwrap()));
    assert_eq!(c.iptables.interface.as_deref(), Some("eno1"));
    assert_eq!(c.iptables.rule, Action::Drop);
    assert_eq!(c.iptables.chain, "sipban");
    let ipset = c.ipset.as_ref().expect("[ipset] read");
    assert_eq!(
        (ipset.path.as_str(), ipset.set_name.as_str(), ipset.timeout),
        ("/sbin/", "sipban", Duration::from_secs(WEEK))
    );
    // The rest of the file, as before.
    assert_eq!(c.ami.ping, Some(Duration::from_secs(60)));
    assert_eq!(c.control.address, ip("127.0.0.1"));
    let flood = c.policy.flood.as_ref().expect("[flood] applied");
    assert_eq!((flood.count, flood.interval), (5, Duration::from_secs(10)));
    assert_eq!(c.control.whois_server, WhoisServer::default());
}

/// `text` as a config file; the path only names it.
fn parse(text: &str) -> Result<sipban::config::Loaded, sipban::config::ConfigError> {
    Config::parse(text, Path::new("/etc/sipban.conf"))
}

#[test]
fn the_originals_keys_give_way_to_ours_and_say_so() {
    let loaded = parse(
        "[timer]\nban = 3600\n[iptables]\ndump = \"/var/lib/sipban.dump\"\n\
         [ipset]\ndump = \"/etc/sipban.dump\"\ntimeout = 604800\n",
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.ban_time, Duration::from_secs(3600));
    assert_eq!(c.iptables.dump, Path::new("/var/lib/sipban.dump"));
    assert_eq!(
        loaded.warnings,
        [
            "/etc/sipban.conf:7: [ipset] timeout = 604800 is not the ban time: [timer] ban = 3600 is",
            "/etc/sipban.conf:6: [ipset] dump = \"/etc/sipban.dump\" is not read or written: [iptables] dump = \"/var/lib/sipban.dump\" is",
        ]
    );
    // [policy] ban_time wins too, and is named.
    let loaded = parse("[ipset]\ntimeout = 600\n[policy]\nban_time = 1h\n").unwrap();
    assert_eq!(loaded.config.ban_time, Duration::from_secs(3600));
    assert!(loaded.warnings[0].contains("[policy] ban_time = 3600 is"));
    // The same values: nothing to say.
    let loaded = parse("[timer]\nban = 600\n[ipset]\ntimeout = 600\n").unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn firewall_keys_win_over_the_originals_set() {
    let c = parse(
        "[iptables]\nscope = \"-p udp --dport 5060\"\ninterface = \"eno1\"\n\
         [firewall]\nbackend = nftables\n[ipset]\nset_name = \"blocked\"\n",
    )
    .unwrap()
    .config;
    assert_eq!(c.firewall.backend, BackendKind::Nftables);
    assert_eq!(c.firewall.set4, "sipban-udp-v4");
    assert_eq!(c.firewall.hook, Hook::Raw);
    // An explicit scope is kept, with the interface.
    let scope = c.scope();
    assert_eq!(scope.sip, Scope::parse("-p udp --dport 5060").unwrap().sip);
    assert_eq!(scope.interface, Some(Interface::parse("eno1").unwrap()));
    let c = parse("[firewall]\nset4 = \"mine\"\nhook = raw\n[ipset]\n")
        .unwrap()
        .config;
    assert_eq!(c.firewall.backend, BackendKind::Ipset);
    assert_eq!(
        (c.firewall.set4.as_str(), c.firewall.hook),
        ("mine", Hook::Raw)
    );
    // An [ipset] section with no keys: the 2024 original's shipped values.
    assert_eq!(c.ban_time, Duration::from_secs(WEEK));
    assert_eq!(c.iptables.dump, Path::new("/etc/sipban.dump"));
    assert_eq!(
        c.scope().block,
        Block::All,
        "the original matched all traffic"
    );
    // No [ipset]: sipban's defaults, interface or not.
    let c = parse("[iptables]\ninterface = \"eth1\"\n").unwrap().config;
    assert_eq!(c.firewall.backend, BackendKind::Auto);
    assert_eq!(c.ban_time, Duration::from_secs(86400));
    let scope = c.scope();
    assert_eq!(scope.interface, Some(Interface::parse("eth1").unwrap()));
    assert_eq!(scope.sip, Scope::default().sip);
    // interface = "" is every interface.
    let c = parse("[iptables]\ninterface = \"\"\n").unwrap().config;
    assert_eq!(c.iptables.interface, None);
    assert_eq!(c.scope(), Scope::default());
}

#[test]
fn bad_values_of_the_originals_keys_name_file_line_and_key() {
    for (text, want) in [
        (
            "[ipset]\ntimeout = 0\n",
            "/etc/sipban.conf:2: [ipset] timeout = \"0\": a ban must last at least one second",
        ),
        (
            "[ipset]\ntimeout = \"a week\"\n",
            "/etc/sipban.conf:2: [ipset] timeout = \"a week\": not a duration (e.g. 600, 10m, 1h, 1d)",
        ),
        (
            "[ipset]\nset_name = \"sip ban\"\n",
            "/etc/sipban.conf:2: [ipset] set_name = \"sip ban\": a name is 1-31 letters, digits, '-', '_' or '.'",
        ),
        (
            "[ipset]\ndump = \"\"\n",
            "/etc/sipban.conf:2: [ipset] dump = \"\": empty path",
        ),
        (
            "[iptables]\ninterface = \"eno1; reboot\"\n",
            "/etc/sipban.conf:2: [iptables] interface = \"eno1; reboot\": \"eno1; reboot\" is not an interface name",
        ),
        (
            "[iptables]\nscope = \"-i eth0\"\ninterface = \"eno1\"\n",
            "/etc/sipban.conf:3: [iptables] interface = \"eno1\": conflicts with the interface eth0 named elsewhere",
        ),
        (
            "[control]\nwhois_server = \"whois.iana.org:0\"\n",
            "/etc/sipban.conf:2: [control] whois_server = \"whois.iana.org:0\": \"whois.iana.org:0\" is not a whois server",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{text:?}:\n{err}\nwanted {want}");
    }
}

#[test]
fn the_effective_2024_settings_load_back_the_same() {
    let c = load_fixture("original-2024.conf").config;
    let listed = c.to_string();
    for line in [
        "[ipset]",
        "set_name = \"sipban\"",
        "timeout = 604800",
        "ban = 604800",
        "interface = \"eno1\"",
        "scope = \"\"",
        "block = \"all\"",
        "set_type = \"hash:net\"",
        "backend = \"ipset\"",
        "set4 = \"sipban\"",
        "hook = \"filter\"",
        "whois_server = \"whois.iana.org:43\"",
    ] {
        assert!(listed.lines().any(|l| l == line), "{line:?} in\n{listed}");
    }
    let back = parse(&listed.replace("********", "getout")).unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    assert_eq!(back.config.to_string(), listed);
}

#[test]
fn check_config_on_the_2024_config_warns_of_no_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = fixture_copy(dir.path(), "original-2024.conf", &[]);
    std::fs::write(
        dir.path().join("ipset.dump"),
        dump_fixture("ipset-save.dump"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipban"))
        .args(["--check-config", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("unknown"), "{stderr}");
    // The only warning: the white list this temp dir does not have.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("sipban.wl not found"), "{stderr}");
    let dump = format!("dump = \"{}\"", dir.path().join("ipset.dump").display());
    for line in [
        "ban = 604800",
        dump.as_str(),
        "backend = \"ipset\"",
        "set4 = \"sipban\"",
        "hook = \"filter\"",
        "scope = \"\"",
        "set_type = \"hash:net\"",
        "rule = \"DROP\"",
        "[ipset]",
        "# config OK",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} in\n{stdout}");
    }
    // The [iptables] dump line and the [ipset] one name the same file.
    assert_eq!(stdout.lines().filter(|l| *l == dump).count(), 2, "{stdout}");
}

// ---------------------------------------------------------------------------
// The daemon on each config, with a dump in each format
// ---------------------------------------------------------------------------

/// A daemon started as the binary starts it, from `conf`, with its console
/// on port 0 and its AMI link to a fake Asterisk.
struct Running {
    _ami: FakeAmi,
    daemon: Daemon,
    fw: DryRunLog,
}

async fn start(conf: &Path, tweak: impl FnOnce(&mut Settings)) -> Running {
    let ami = FakeAmi::start().await;
    let config = Config::load(conf).unwrap().config;
    let hosts = vec![ip("127.0.0.1")];
    let mut s = Settings::from_config(&config, Whitelist::default(), hosts);
    s.console = "127.0.0.1:0".parse().unwrap();
    s.ami.port = ami.addr.port();
    s.conntrack = None;
    s.firewall_check = None;
    tweak(&mut s);
    let dry = DryRun::new();
    let fw = dry.log();
    let policy = PolicySettings::from_config(&config);
    let daemon = Daemon::start_with(s, Box::new(dry), Clock::manual(T0), Some(policy))
        .await
        .expect("daemon starts");
    Running {
        _ami: ami,
        daemon,
        fw,
    }
}

/// What the daemon holds: (address, expiry, reason), by address.
fn bans(r: &Running) -> Vec<(IpAddr, u64, String)> {
    let mut out: Vec<_> = r
        .daemon
        .bans
        .list()
        .into_iter()
        .map(|b| (b.ip, b.expires, b.reason))
        .collect();
    out.sort();
    out
}

const LEGACY: &str = "Sipban previous block";

fn legacy_dump_bans() -> Vec<(IpAddr, u64, String)> {
    // 198.51.100.99 expired before T0: not restored.
    let mut want = vec![
        (ip("203.0.113.7"), 1_800_003_600, LEGACY.to_string()),
        (ip("203.0.113.8"), 1_800_086_400, LEGACY.to_string()),
        (ip("2001:db8::7"), 1_800_007_200, LEGACY.to_string()),
    ];
    want.sort();
    want
}

fn ipset_dump_bans() -> Vec<(IpAddr, u64, String)> {
    // A permanent ban: the store keeps it until the end of its clock.
    let forever = (T0 + sipban::config::MAX_DURATION).min(u64::from(u32::MAX));
    let mut want = vec![
        // Remaining timeouts count from now, as `ipset restore` does.
        (ip("203.0.113.7"), T0 + 3600, LEGACY.to_string()),
        (ip("203.0.113.8"), T0 + 86_400, LEGACY.to_string()),
        // timeout 0: it never lapsed in the kernel.
        (ip("192.0.2.44"), forever, format!("{LEGACY}{PERMANENT}")),
    ];
    want.sort();
    want
}

/// Starts the daemon on `config` with `dump` where that config reads its
/// dump, and checks the bans, the ban time and the dump path.
async fn restores(config: &str, dump_file: &str, dump: &str, ban_time: u64) {
    let dir = tempfile::tempdir().unwrap();
    let conf = fixture_copy(dir.path(), config, &[]);
    let path = dir.path().join(dump_file);
    std::fs::write(&path, dump_fixture(dump)).unwrap();
    let r = start(&conf, |_| {}).await;
    let want = if dump == "legacy.dump" {
        legacy_dump_bans()
    } else {
        ipset_dump_bans()
    };
    assert_eq!(bans(&r), want, "{config} with {dump}");
    let mut kernel = r.fw.banned();
    kernel.sort();
    let mut held: Vec<IpAddr> = want.iter().map(|b| b.0).collect();
    held.sort();
    assert_eq!(kernel, held, "{config} with {dump}: the kernel");
    if dump != "legacy.dump" {
        // The /30 of the hash:net set: a network ban, in the kernel with
        // the deny entries.
        let nets = r.daemon.bans.networks();
        assert_eq!(nets.len(), 1, "{nets:?}");
        assert_eq!(
            nets[0].net,
            "198.51.100.0/30".parse::<ipnet::IpNet>().unwrap()
        );
        assert_eq!(
            (nets[0].expiry, nets[0].reason.as_str()),
            (T0 + 600_000, LEGACY)
        );
        let denied = r.fw.denied();
        assert!(
            denied.iter().any(|n| n.contains(&ip("198.51.100.3"))),
            "{denied:?}"
        );
    }
    assert_eq!(r.daemon.bans.ban_time(), Duration::from_secs(ban_time));
    assert_eq!(r.daemon.bans.dump_path(), Some(&path));
    // A new ban lasts the config's ban time.
    r.daemon.bans.ban(ip("192.0.2.200"), "Invalid Account");
    let b = r.daemon.bans.get(ip("192.0.2.200")).unwrap();
    assert_eq!(b.expires, T0 + ban_time);
    // The dump is ours from now on, and holds them all.
    r.daemon.stop().await.unwrap();
    let back = sipban::bans::persist::read(&path).unwrap().unwrap();
    assert_eq!(back.len(), want.len() + 1, "{config} with {dump}");
    assert!(std::fs::read_to_string(&path).unwrap().starts_with('{'));
}

#[tokio::test]
async fn the_legacy_config_with_a_legacy_dump() {
    restores("original.conf", "iptables.dump", "legacy.dump", 86_400).await;
}

#[tokio::test]
async fn the_legacy_config_with_an_ipset_save_dump() {
    restores("original.conf", "iptables.dump", "ipset-save.dump", 86_400).await;
}

#[tokio::test]
async fn the_2024_config_with_its_ipset_save_dump() {
    restores("original-2024.conf", "ipset.dump", "ipset-save.dump", WEEK).await;
}

#[tokio::test]
async fn the_2024_config_with_a_legacy_dump() {
    restores("original-2024.conf", "ipset.dump", "legacy.dump", WEEK).await;
}

// ---------------------------------------------------------------------------
// The 2024 console: save, block NET, whois
// ---------------------------------------------------------------------------

async fn console(r: &Running) -> ConsoleClient {
    ConsoleClient::connect(r.daemon.console_addr).await.0
}

/// The 2024 config with an allow list, started.
async fn start_2024(dir: &Path, allow: &str, extra: &[(&str, String)]) -> Running {
    let conf = fixture_copy(dir, "original-2024.conf", extra);
    std::fs::write(dir.join("sipban.wl"), allow).unwrap();
    start(&conf, |_| {}).await
}

#[tokio::test]
async fn save_writes_the_dump_now_and_names_the_set() {
    let dir = tempfile::tempdir().unwrap();
    let r = start_2024(dir.path(), "", &[]).await;
    let mut c = console(&r).await;
    assert_eq!(c.command("block 203.0.113.9").await, "203.0.113.9 block");
    let dump = dir.path().join("ipset.dump");
    std::fs::remove_file(&dump).ok();
    assert_eq!(c.command("save").await, "ipset sipban saved");
    let saved = sipban::bans::persist::read(&dump).unwrap().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].ip, ip("203.0.113.9"));
    assert_eq!(saved[0].expiry, T0 + WEEK);
    assert!(c.command("save now").await.contains("takes no argument"));
    let help = c.command("help").await;
    for cmd in ["save ", "whois ", "block [--force] {ip/cidr}"] {
        assert!(help.contains(cmd), "{cmd:?} in\n{help}");
    }
    r.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn save_without_an_ipset_section_names_the_dump_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = fixture_copy(dir.path(), "original.conf", &[]);
    let r = start(&conf, |_| {}).await;
    let mut c = console(&r).await;
    assert_eq!(
        c.command("save").await,
        format!(
            "0 bans saved to {}",
            dir.path().join("iptables.dump").display()
        )
    );
    r.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn block_of_a_network_bans_every_address_of_it_behind_the_deny_guard() {
    let dir = tempfile::tempdir().unwrap();
    let r = start_2024(dir.path(), "192.0.2.128/25 office\n", &[]).await;
    let mut c = console(&r).await;
    // The original's form; host bits dropped as ipset drops them.
    assert_eq!(
        c.command("block 198.51.100.7/28").await,
        "198.51.100.0/28 block"
    );
    let listed = c.command("block").await;
    assert!(listed.ends_with(" 198.51.100.0/28"), "{listed}");
    let covered = |a: &str| r.fw.denied().iter().any(|n| n.contains(&ip(a)));
    let nets = r.daemon.bans.networks();
    assert_eq!(nets.len(), 1);
    assert_eq!(
        (nets[0].expiry, nets[0].reason.as_str()),
        (T0 + WEEK, "Manual block")
    );
    for last in [0, 7, 15] {
        assert!(covered(&format!("198.51.100.{last}")), "in the kernel");
    }
    assert!(!covered("198.51.100.16"));
    assert_eq!(
        c.command("block 198.51.100.0/28").await,
        "198.51.100.0/28 previously blocked"
    );
    // The deny guard, as deny add has it.
    assert_eq!(
        c.command("block 0.0.0.0/0").await,
        "error: 0.0.0.0/0 is wider than /8; not blocked (block --force 0.0.0.0/0 blocks it anyway)"
    );
    let reply = c.command("block 127.0.0.0/24").await;
    assert!(
        reply.starts_with("error: 127.0.0.0/24 covers loopback"),
        "{reply}"
    );
    let reply = c.command("block 192.0.2.0/24").await;
    assert!(
        reply.starts_with("error: 192.0.2.0/24 overlaps the allow list entry 192.0.2.128/25"),
        "{reply}"
    );
    assert!(r.daemon.bans.get(ip("192.0.2.1")).is_none());
    // Forced: banned, but the allow list still wins.
    assert_eq!(
        c.command("block --force 192.0.2.0/24").await,
        "192.0.2.0/24 block\n192.0.2.0/24: protected addresses left out: 192.0.2.128/25"
    );
    assert!(covered("192.0.2.127"));
    assert!(!covered("192.0.2.130"), "the allow list wins in the kernel");
    // A network as wide as the guard allows is one ban, not a million.
    assert_eq!(c.command("block 10.0.0.0/12").await, "10.0.0.0/12 block");
    assert!(covered("10.15.255.255"));
    assert_eq!(
        c.command("unblock 10.0.0.0/12").await,
        "10.0.0.0/12 unblocked"
    );
    assert!(!covered("10.15.255.255"));
    assert_eq!(
        c.command("unblock 10.0.0.0/12").await,
        "10.0.0.0/12 is not previously blocked"
    );
    assert_eq!(
        c.command("block 198.51.100.0/33").await,
        "198.51.100.0/33 don't seems like a valid address"
    );
    // On disk before the answer: in the journal, then in the dump.
    r.daemon.stop().await.unwrap();
    let saved = sipban::bans::persist::read_dump(&dir.path().join("ipset.dump"))
        .unwrap()
        .unwrap();
    let mut nets: Vec<String> = saved.nets.iter().map(|n| n.net.to_string()).collect();
    nets.sort();
    assert_eq!(nets, ["192.0.2.0/24", "198.51.100.0/28"]);
}

/// A whois server on loopback: answers each query with `answer(query)`,
/// and records the queries.
struct FakeWhois {
    server: WhoisServer,
    queries: Arc<Mutex<Vec<String>>>,
}

impl FakeWhois {
    async fn start(answer: impl Fn(&str) -> String + Send + Sync + 'static) -> FakeWhois {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&queries);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                while !buf.ends_with(b"\r\n") && sock.read(&mut byte).await.unwrap_or(0) == 1 {
                    buf.push(byte[0]);
                }
                let query = String::from_utf8_lossy(&buf).into_owned();
                seen.lock().unwrap().push(query.clone());
                let _ = sock.write_all(answer(query.trim_end()).as_bytes()).await;
                // The answer ends when the server closes (RFC 3912).
            }
        });
        FakeWhois {
            server: WhoisServer {
                host: "127.0.0.1".into(),
                port,
            },
            queries,
        }
    }

    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

const REGISTRY_ANSWER: &str = "% This is the RIPE Database query service.\r\n\
    % The objects are in RPSL format.\r\n\r\n\
    inetnum:        193.0.0.0 - 193.0.23.255\r\n\
    netname:        RIPE-NCC\r\n\
    country:        NL\r\n";

/// The IANA, referring to `registry`.
fn iana_referring_to(registry: &WhoisServer) -> impl Fn(&str) -> String + use<> {
    let refer = registry.to_string();
    move |_| {
        format!(
            "% IANA WHOIS server\n\nrefer:        {refer}\n\ninetnum:      193.0.0.0 - 193.255.255.255\norganisation: RIPE NCC\n"
        )
    }
}

#[tokio::test]
async fn whois_asks_the_iana_then_the_registry_it_refers_to() {
    let registry = FakeWhois::start(|_| REGISTRY_ANSWER.to_string()).await;
    let iana = FakeWhois::start(iana_referring_to(&registry.server)).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = [("control", format!("whois_server = \"{}\"", iana.server))];
    let r = start_2024(dir.path(), "", &extra).await;
    let mut c = console(&r).await;
    let reply = c.command("whois 193.0.6.139").await;
    assert_eq!(
        reply,
        format!(
            "WHOIS information: 193.0.6.139\n\n  inetnum:        193.0.0.0 - 193.0.23.255\n  \
             netname:        RIPE-NCC\n  country:        NL\n\n\
             answered by {} (referred by {})",
            registry.server, iana.server
        )
    );
    // One query line each, as RFC 3912 has it.
    assert_eq!(iana.queries(), ["193.0.6.139\r\n"]);
    assert_eq!(registry.queries(), ["193.0.6.139\r\n"]);
    assert_eq!(c.command("whois").await, "ip address missing");
    assert_eq!(
        c.command("whois pbx.example").await,
        "pbx.example don't seems like a valid address"
    );
    r.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn whois_without_a_network_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let extra = [("control", format!("whois_server = \"127.0.0.1:{port}\""))];
    let r = start_2024(dir.path(), "", &extra).await;
    let mut c = console(&r).await;
    let reply = c.command("whois 192.0.2.1").await;
    assert!(
        reply.starts_with(&format!(
            "No response from WHOIS servers: 127.0.0.1:{port}: "
        )),
        "{reply}"
    );
    assert!(sipban::client::is_error_reply(&reply));
    // The registry the IANA refers to being down is the same answer.
    let dead = WhoisServer {
        host: "127.0.0.1".into(),
        port: closed_port().await,
    };
    let iana = FakeWhois::start(iana_referring_to(&dead)).await;
    let settings = WhoisSettings {
        server: iana.server.clone(),
        timeout: Duration::from_secs(5),
    };
    let reply = whois::reply(
        ip("192.0.2.1"),
        whois::lookup(&settings, ip("192.0.2.1")).await,
    );
    assert!(
        reply.starts_with(&format!("No response from WHOIS servers: {dead}: ")),
        "{reply}"
    );
    r.daemon.stop().await.unwrap();
}

#[tokio::test]
async fn whois_gives_up_on_a_silent_server_and_caps_a_huge_answer() {
    // Accepts, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            open.push(sock);
        }
    });
    let settings = WhoisSettings {
        server: WhoisServer {
            host: "127.0.0.1".into(),
            port,
        },
        timeout: Duration::from_millis(200),
    };
    let reply = whois::reply(
        ip("192.0.2.1"),
        whois::lookup(&settings, ip("192.0.2.1")).await,
    );
    assert_eq!(
        reply,
        format!("No response from WHOIS servers: 127.0.0.1:{port}: no answer within 0.2 s\n")
    );
    held.abort();
    // A registry that answers forever: cut at the cap, no referral loop.
    let huge = FakeWhois::start(|_| "netname: X\n".repeat(20_000)).await;
    let settings = WhoisSettings {
        server: huge.server.clone(),
        timeout: Duration::from_secs(5),
    };
    let lookup = whois::lookup(&settings, ip("192.0.2.1")).await.unwrap();
    assert!(lookup.answer.cut);
    assert_eq!(lookup.answer.text.len(), whois::MAX_ANSWER);
    let reply = whois::reply(ip("192.0.2.1"), Ok(lookup));
    assert!(reply.contains("... and "), "{reply}");
    assert!(reply.contains("answer cut at 64 KiB"), "{reply}");
    assert!(reply.lines().count() <= whois::MAX_LINES + 8);
}

#[tokio::test]
async fn the_client_knows_save_and_whois() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let extra = [("control", format!("whois_server = \"127.0.0.1:{port}\""))];
    let r = start_2024(dir.path(), "", &extra).await;
    let addr = r.daemon.console_addr.to_string();
    let run = move |args: Vec<String>| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sipban"))
            .args(args)
            .env_remove("SIPBAN_CONSOLE_SECRET")
            .output()
            .unwrap()
    };
    let a = addr.clone();
    let saved =
        tokio::task::spawn_blocking(move || run(vec!["save".into(), "--console".into(), a]))
            .await
            .unwrap();
    assert!(saved.status.success(), "{saved:?}");
    assert_eq!(
        String::from_utf8_lossy(&saved.stdout).trim(),
        "ipset sipban saved"
    );
    let whois = tokio::task::spawn_blocking(move || {
        run(vec![
            "whois".into(),
            "192.0.2.1".into(),
            "--console".into(),
            addr,
        ])
    })
    .await
    .unwrap();
    // No network: an error reply, exit 1, on stderr.
    assert_eq!(whois.status.code(), Some(1), "{whois:?}");
    assert!(
        String::from_utf8_lossy(&whois.stderr).contains("No response from WHOIS servers"),
        "{whois:?}"
    );
    r.daemon.stop().await.unwrap();
}
