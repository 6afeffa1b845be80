//! The set-based firewall backends (ipset and nftables) against the real
//! kernel: objects and elements as `ipset`/`nft`/`iptables` show them,
//! kernel timeouts that outlive the daemon, takeover after a crash, drift
//! repair, set-only mode, batching, real packets through a veth pair,
//! conntrack, and the binary without a `[firewall]` section (`auto`).
//!
//! Every scenario runs once per backend (see `each_backend!` at the end of
//! the helpers): `ipset::NAME`, `nftables::NAME` (libnftables in-process)
//! and `nftables_tool::NAME` (the `nft` tool per batch).
//!
//! Every test runs in network namespaces it creates itself, so the machine's
//! own firewall is never touched: either the test thread unshares a private
//! namespace (threads and child processes it starts inherit it), or the test
//! creates named namespaces (`ip netns add`) and enters them with `setns`.
//! Every firewall command run from this file first checks that the calling
//! thread is in the namespace it entered. A test that cannot create or enter
//! its namespace fails; none is ever skipped.
//!
//! Needs root, ipset, nft, iptables, ip6tables, conntrack and iproute2.

mod netns;
mod support;

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::{
    ChildGuard, NamedNetns, assert_blocked, assert_private, assert_reaches, capture_logs,
    eventually, in_private_netns, logs, nft_script, ruleset_snapshot, run, run_ok, runtime,
    wait_exit,
};
use serde_json::Value;
use sipban::bans::{BanManager, DumpEntry, Upsert};
use sipban::clock::Clock;
use sipban::daemon::{Daemon, Settings};
use sipban::firewall::sets::{KERNEL_GRACE, KERNEL_MAX_TIMEOUT};
use sipban::firewall::{
    Action, ApplierOptions, Backend, Depth, Firewall, Hook, IpsetBackend, NftBackend, Ownership,
    Scope, SetSettings,
};
use support::{ConsoleClient, FakeAmi};

const V4: &str = "203.0.113.7";
const V6: &str = "2001:db8::7";
const REJECT: &str = "REJECT --reject-with icmp-port-unreachable";
const MIN: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    sorted(list.iter().map(|s| ip(s)).collect())
}

// ---------------------------------------------------------------------------
// The two backends
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `spawn`: run `ipset restore` per batch (the fallback) instead of
    /// our netlink module.
    Ipset { spawn: bool },
    /// `spawn`: run the `nft` tool per batch (the fallback without
    /// libnftables) instead of libnftables in-process.
    Nft { spawn: bool },
}

/// nftables as `backend = nftables` runs it: in-process.
const NFT: Kind = Kind::Nft { spawn: false };
/// ipset as `backend = ipset` runs it: over netlink.
const IPSET: Kind = Kind::Ipset { spawn: false };

/// Table and set names a backend works with.
#[derive(Clone, Copy, Debug)]
struct Names {
    /// nftables `FAMILY NAME` (unused by ipset).
    table: &'static str,
    set4: &'static str,
    set6: &'static str,
}

/// What sipban creates in own mode (the defaults of `[firewall]`).
const OWN: Names = Names {
    table: "inet sipban",
    set4: "sipban-udp-v4",
    set6: "sipban-udp-v6",
};

/// The administrator's own sets for set-only mode.
const ADMIN: Names = Names {
    table: "inet filter",
    set4: "blocked4",
    set6: "blocked6",
};

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ipset { .. } => "ipset",
            Kind::Nft { .. } => "nftables",
        }
    }

    /// The tool that takes the elements.
    fn tool(self) -> &'static str {
        match self {
            Kind::Ipset { .. } => "ipset",
            Kind::Nft { .. } => "nft",
        }
    }

    fn backend(self, s: SetSettings) -> Box<dyn Backend> {
        match self {
            Kind::Ipset { spawn } => Box::new(IpsetBackend::with_runner(s, spawn)),
            Kind::Nft { spawn } => Box::new(NftBackend::with_runner(s, spawn)),
        }
    }

    /// Own mode with the shipped defaults: udp/5060, tcp/5060 and tcp/5061,
    /// rule REJECT (which raw turns into DROP).
    fn own(self, hook: Hook) -> Box<dyn Backend> {
        self.backend(settings(OWN, hook, Ownership::Own, ""))
    }

    fn set_only(self) -> Box<dyn Backend> {
        self.backend(settings(ADMIN, Hook::Raw, Ownership::SetOnly, ""))
    }
}

fn settings(names: Names, hook: Hook, mode: Ownership, bin_dir: &str) -> SetSettings {
    let action4 = Action::parse(REJECT, false).expect("IPv4 action");
    SetSettings {
        bin_dir: bin_dir.into(),
        table: names.table.into(),
        set4: names.set4.into(),
        set6: names.set6.into(),
        scope: Scope::default(),
        action6: action4.to_ipv6(),
        action4,
        hook,
        mode,
        deny4: None,
        deny6: None,
    }
}

fn split_table(table: &str) -> (&str, &str) {
    let mut w = table.split_whitespace();
    (w.next().unwrap(), w.next().unwrap())
}

/// Elements of one set with their remaining kernel timeout in seconds;
/// `None` if the set does not exist.
fn set_elements(kind: Kind, table: &str, set: &str) -> Option<Vec<(IpAddr, Option<u64>)>> {
    match kind {
        Kind::Ipset { .. } => {
            let out = run("ipset", &["save", set]);
            if !out.status.success() {
                return None;
            }
            let mut elems = Vec::new();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let w: Vec<&str> = line.split_whitespace().collect();
                if w.first() != Some(&"add") {
                    continue;
                }
                assert_eq!(w.get(1), Some(&set), "ipset save {set}: {line}");
                let addr = w[2].parse().unwrap_or_else(|_| panic!("element {line}"));
                let timeout = w
                    .iter()
                    .position(|x| *x == "timeout")
                    .map(|i| w[i + 1].parse::<u64>().expect("timeout"));
                elems.push((addr, timeout));
            }
            Some(elems)
        }
        Kind::Nft { .. } => {
            let (fam, name) = split_table(table);
            let out = run("nft", &["-j", "list", "set", fam, name, set]);
            if !out.status.success() {
                return None;
            }
            let v: Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
            let mut elems = Vec::new();
            for item in v["nftables"].as_array().expect("nftables array") {
                let Some(list) = item["set"]["elem"].as_array() else {
                    continue;
                };
                for e in list {
                    let (val, expires) = match e.as_str() {
                        Some(s) => (s.to_string(), None),
                        None => (
                            e["elem"]["val"].as_str().expect("elem val").to_string(),
                            e["elem"]["expires"].as_u64(),
                        ),
                    };
                    elems.push((val.parse().expect("element address"), expires));
                }
            }
            Some(elems)
        }
    }
}

/// Addresses in one set (which must exist), sorted.
fn members(kind: Kind, names: Names, set: &str) -> Vec<IpAddr> {
    let elems = set_elements(kind, names.table, set)
        .unwrap_or_else(|| panic!("{}: set {set} does not exist", kind.name()));
    sorted(elems.into_iter().map(|(ip, _)| ip).collect())
}

/// Everything both sets hold, sorted.
fn held(kind: Kind, names: Names) -> Vec<IpAddr> {
    let mut all = members(kind, names, names.set4);
    all.extend(members(kind, names, names.set6));
    sorted(all)
}

/// Remaining kernel timeout of `ip`, which must be in its set.
fn remaining(kind: Kind, names: Names, ip: IpAddr) -> u64 {
    let set = if ip.is_ipv4() { names.set4 } else { names.set6 };
    let elems = set_elements(kind, names.table, set).expect("set exists");
    let (_, t) = elems
        .iter()
        .find(|(e, _)| *e == ip)
        .unwrap_or_else(|| panic!("{ip} not in {set}: {elems:?}"));
    t.unwrap_or_else(|| panic!("{ip} in {set} has no timeout"))
}

/// `TOOL -t TABLE -S CHAIN` lines that mention `needle`.
fn rules_with(tool: &str, table: &str, chain: &str, needle: &str) -> Vec<String> {
    run_ok(tool, &["-w", "-t", table, "-S", chain])
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The match rules the ipset backend should have for a family and hook
/// (with the REJECT rule of [`settings`] and the default SIP ports: one
/// rule per protocol).
fn ipset_rules(v6: bool, hook: Hook, set: &str) -> Vec<String> {
    let chain = match hook {
        Hook::Raw => "PREROUTING",
        Hook::Filter => "INPUT",
    };
    let action = match (hook, v6) {
        (Hook::Raw, _) => "DROP",
        (Hook::Filter, false) => "REJECT --reject-with icmp-port-unreachable",
        (Hook::Filter, true) => "REJECT --reject-with icmp6-port-unreachable",
    };
    [
        "-p udp -m udp --dport 5060",
        "-p tcp -m multiport --dports 5060,5061",
    ]
    .iter()
    .map(|m| format!("-A {chain} {m} -m set --match-set {set} src -j {action}"))
    .collect()
}

fn hook_place(hook: Hook) -> (&'static str, &'static str) {
    match hook {
        Hook::Raw => ("raw", "PREROUTING"),
        Hook::Filter => ("filter", "INPUT"),
    }
}

fn ipset_names() -> Vec<String> {
    run_ok("ipset", &["list", "-n"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn nft_tables() -> Vec<String> {
    run_ok("nft", &["list", "tables"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The body of `nft list chain`: hook line and rules, trimmed.
fn nft_chain(fam: &str, table: &str, chain: &str) -> Option<Vec<String>> {
    let out = run("nft", &["list", "chain", fam, table, chain]);
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.ends_with('{') && *l != "}")
            .map(str::to_string)
            .collect(),
    )
}

/// `type` and `flags` of an nftables set.
fn nft_set_header(fam: &str, table: &str, set: &str) -> (String, Vec<String>) {
    let v: Value =
        serde_json::from_str(&run_ok("nft", &["-j", "list", "set", fam, table, set])).unwrap();
    let s = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .expect("a set in the listing")
        .clone();
    let flags = s["flags"]
        .as_array()
        .map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (s["type"].as_str().unwrap().to_string(), flags)
}

/// Own mode: sets, and the match rules exactly where `hook` puts them and
/// nowhere else.
fn assert_own_objects(kind: Kind, hook: Hook) {
    match kind {
        Kind::Ipset { .. } => {
            let names = ipset_names();
            for (set, family) in [(OWN.set4, "family inet "), (OWN.set6, "family inet6 ")] {
                assert!(names.iter().any(|n| n == set), "ipset {set}: {names:?}");
                let header = run_ok("ipset", &["list", set, "-t"]);
                assert!(header.contains("Type: hash:ip"), "{header}");
                assert!(header.contains(family), "{header}");
                assert!(header.contains(" timeout "), "{header}");
            }
            for (tool, v6, set) in [("iptables", false, OWN.set4), ("ip6tables", true, OWN.set6)] {
                for h in [Hook::Raw, Hook::Filter] {
                    let (table, chain) = hook_place(h);
                    let want = if h == hook {
                        ipset_rules(v6, h, set)
                    } else {
                        Vec::new()
                    };
                    assert_eq!(
                        rules_with(tool, table, chain, "--match-set"),
                        want,
                        "{tool} -t {table} -S {chain}"
                    );
                }
            }
        }
        Kind::Nft { .. } => {
            assert!(
                nft_tables().iter().any(|t| t == "table inet sipban"),
                "{:?}",
                nft_tables()
            );
            let (hook_line, verdict) = match hook {
                Hook::Raw => (
                    "type filter hook prerouting priority raw; policy accept;",
                    "drop",
                ),
                // REJECT icmp-port-unreachable: the icmpx default, listed
                // as a bare `reject`.
                Hook::Filter => (
                    "type filter hook input priority filter; policy accept;",
                    "reject",
                ),
            };
            assert_eq!(
                nft_chain("inet", "sipban", "sipban"),
                Some(vec![
                    hook_line.to_string(),
                    format!("udp dport 5060 ip saddr @sipban-udp-v4 {verdict}"),
                    format!("tcp dport {{ 5060, 5061 }} ip saddr @sipban-udp-v4 {verdict}"),
                    format!("udp dport 5060 ip6 saddr @sipban-udp-v6 {verdict}"),
                    format!("tcp dport {{ 5060, 5061 }} ip6 saddr @sipban-udp-v6 {verdict}"),
                ]),
                "nft list chain inet sipban sipban"
            );
            for (set, ty) in [(OWN.set4, "ipv4_addr"), (OWN.set6, "ipv6_addr")] {
                let (t, flags) = nft_set_header("inet", "sipban", set);
                assert_eq!(t, ty, "type of {set}");
                assert!(
                    flags.iter().any(|f| f == "timeout"),
                    "{set} flags {flags:?}"
                );
            }
        }
    }
}

/// Own mode after shutdown: none of our objects is left anywhere.
fn assert_own_gone(kind: Kind) {
    let names = ipset_names();
    assert!(
        !names.iter().any(|n| n.contains("sipban")),
        "ipsets left: {names:?}"
    );
    for tool in ["iptables-save", "ip6tables-save"] {
        let saved = run_ok(tool, &[]);
        assert!(
            !saved.contains("sipban"),
            "{tool} still mentions sipban:\n{saved}"
        );
    }
    let tables = nft_tables();
    assert!(
        !tables.iter().any(|t| t.contains("sipban")),
        "{}: nft tables left: {tables:?}",
        kind.name()
    );
    let ruleset = run_ok("nft", &["list", "ruleset"]);
    assert!(!ruleset.contains("sipban"), "nft ruleset:\n{ruleset}");
}

/// Adds an element by hand (as an administrator would).
fn hand_add(kind: Kind, names: Names, addr: &str) {
    let v6 = ip(addr).is_ipv6();
    let set = if v6 { names.set6 } else { names.set4 };
    match kind {
        Kind::Ipset { .. } => {
            run_ok("ipset", &["add", set, addr]);
        }
        Kind::Nft { .. } => {
            let (fam, table) = split_table(names.table);
            run_ok(
                "nft",
                &["add", "element", fam, table, set, &format!("{{ {addr} }}")],
            );
        }
    }
}

fn hand_delete(kind: Kind, names: Names, addr: &str) {
    let set = if ip(addr).is_ipv6() {
        names.set6
    } else {
        names.set4
    };
    match kind {
        Kind::Ipset { .. } => {
            run_ok("ipset", &["del", set, addr]);
        }
        Kind::Nft { .. } => {
            let (fam, table) = split_table(names.table);
            run_ok(
                "nft",
                &[
                    "delete",
                    "element",
                    fam,
                    table,
                    set,
                    &format!("{{ {addr} }}"),
                ],
            );
        }
    }
}

/// The administrator's ruleset for set-only mode: sets `blocked4` (maximum
/// `max4` elements) and `blocked6`, wired into rules of their own, with an
/// SSH rule beside them.
fn admin_ruleset(kind: Kind, max4: Option<usize>) {
    match kind {
        Kind::Ipset { .. } => {
            let max = max4.unwrap_or(65536).to_string();
            run_ok(
                "ipset",
                &[
                    "create", "blocked4", "hash:ip", "family", "inet", "timeout", "0", "maxelem",
                    &max,
                ],
            );
            run_ok(
                "ipset",
                &[
                    "create", "blocked6", "hash:ip", "family", "inet6", "timeout", "0",
                ],
            );
            for (tool, set) in [("iptables", "blocked4"), ("ip6tables", "blocked6")] {
                run_ok(
                    tool,
                    &[
                        "-w", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
                    ],
                );
                run_ok(
                    tool,
                    &[
                        "-w",
                        "-A",
                        "INPUT",
                        "-m",
                        "set",
                        "--match-set",
                        set,
                        "src",
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
        Kind::Nft { .. } => {
            let size = max4.map(|n| format!(" size {n};")).unwrap_or_default();
            nft_script(&format!(
                "table inet filter {{\n\
                 \tset blocked4 {{ type ipv4_addr; flags timeout;{size} }}\n\
                 \tset blocked6 {{ type ipv6_addr; flags timeout; }}\n\
                 \tchain input {{\n\
                 \t\ttype filter hook input priority filter; policy accept;\n\
                 \t\ttcp dport 22 accept\n\
                 \t\tip saddr @blocked4 drop\n\
                 \t\tip6 saddr @blocked6 drop\n\
                 \t}}\n\
                 }}\n"
            ));
        }
    }
}

/// A directory holding a wrapper for the backend's tool that logs each
/// invocation's arguments and then runs the real tool: used as `bin_dir` to
/// count the kernel transactions a batch costs when the tool is spawned.
struct ToolLog {
    dir: tempfile::TempDir,
    kind: Kind,
}

impl ToolLog {
    fn new(kind: Kind) -> ToolLog {
        let real = Path::new("/usr/sbin").join(kind.tool());
        assert!(real.exists(), "{} not found", real.display());
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("calls");
        let wrapper = dir.path().join(kind.tool());
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n[ -e '{}' ] && sleep 0.3\nexec '{}' \"$@\"\n",
                log.display(),
                dir.path().join("slow").display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        ToolLog { dir, kind }
    }

    fn bin_dir(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Element changes handed to the tool (`ipset restore`, `nft -f -`),
    /// failed ones included.
    fn transactions(&self) -> usize {
        let what = match self.kind {
            Kind::Ipset { .. } => "-exist restore",
            Kind::Nft { .. } => "-f -",
        };
        self.calls().iter().filter(|c| *c == what).count()
    }

    fn reset(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("calls"));
    }

    /// While on, every call waits 0.3 s before running the tool: the
    /// applier is busy, and what is queued meanwhile becomes one batch.
    fn slow(&self, on: bool) {
        let flag = self.dir.path().join("slow");
        if on {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }
}

/// `nft monitor` in this thread's namespace: counts committed nftables
/// transactions (each ends with `# new generation`), whoever makes them,
/// in-process libnftables included. Marks are tables `inet markN`.
struct NftMonitor {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
    marks: usize,
}

impl NftMonitor {
    fn start() -> NftMonitor {
        assert_private();
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("monitor");
        let child = Command::new("nft")
            .arg("monitor")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("nft monitor");
        let mut m = NftMonitor {
            child,
            out,
            _dir: dir,
            marks: 0,
        };
        // Listening once it reports a change of ours.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            m.marks += 1;
            let line = m.add_mark();
            let seen = Instant::now() + Duration::from_millis(200);
            while Instant::now() < seen && !m.lines().contains(&line) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if m.lines().contains(&line) {
                return m;
            }
            assert!(Instant::now() < deadline, "nft monitor reports nothing");
        }
    }

    fn add_mark(&self) -> String {
        let name = format!("mark{}", self.marks);
        run_ok("nft", &["add", "table", "inet", &name]);
        format!("add table inet {name}")
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    }

    /// Transactions committed since the previous mark.
    fn mark(&mut self) -> usize {
        let prev = format!("add table inet mark{}", self.marks);
        self.marks += 1;
        let this = self.add_mark();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines = self.lines();
            if let Some(end) = lines.iter().position(|l| *l == this) {
                let start = lines
                    .iter()
                    .position(|l| *l == prev)
                    .expect("previous mark");
                let gens = lines[start..end]
                    .iter()
                    .filter(|l| l.starts_with("# new generation"))
                    .count();
                // The first is the previous mark's own.
                return gens - 1;
            }
            assert!(Instant::now() < deadline, "nft monitor fell behind");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NftMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the kernel transactions of a backend: the tool's invocations when
/// it is spawned, committed generations for in-process libnftables.
enum Transactions {
    Tool(ToolLog),
    Monitor(NftMonitor),
    /// ipset over netlink: no tool runs to count; the log proves that no
    /// batch fell back to `ipset restore`.
    Netlink(ToolLog),
}

impl Transactions {
    fn new(kind: Kind) -> Transactions {
        match kind {
            Kind::Nft { spawn: false } => Transactions::Monitor(NftMonitor::start()),
            Kind::Ipset { spawn: false } => Transactions::Netlink(ToolLog::new(kind)),
            _ => Transactions::Tool(ToolLog::new(kind)),
        }
    }

    /// Backend settings that go through the counter.
    fn settings(&self, names: Names, mode: Ownership) -> SetSettings {
        let dir = match self {
            Transactions::Tool(t) | Transactions::Netlink(t) => t.bin_dir(),
            Transactions::Monitor(_) => String::new(),
        };
        settings(names, Hook::Raw, mode, &dir)
    }

    fn reset(&mut self) {
        match self {
            Transactions::Tool(t) | Transactions::Netlink(t) => t.reset(),
            Transactions::Monitor(m) => {
                m.mark();
            }
        }
    }

    /// Transactions since `reset`; `None` over netlink, after checking that
    /// the tool was not used instead.
    fn count(&mut self) -> Option<usize> {
        match self {
            Transactions::Tool(t) => Some(t.transactions()),
            Transactions::Monitor(m) => Some(m.mark()),
            Transactions::Netlink(t) => {
                assert_eq!(t.transactions(), 0, "a batch fell back to ipset restore");
                None
            }
        }
    }
}

/// `n` distinct documentation addresses: all of 203.0.113.0/24 and
/// 198.51.100.0/24 first, then 2001:db8:10::/64.
fn many(n: usize) -> Vec<IpAddr> {
    let v4 = (0..=255u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(203, 0, 113, i)))
        .chain((0..=255u8).map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i))));
    let v6 = (1..).map(|i: u32| {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0x10,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ))
    });
    v4.chain(v6).take(n).collect()
}

/// Runs each scenario once per backend: `ipset::NAME`, `nftables::NAME`
/// (libnftables in-process, as shipped) and `nftables_tool::NAME` (the
/// `nft` tool per batch, the fallback without libnftables).
macro_rules! each_backend {
    ($($scenario:ident),* $(,)?) => {
        mod ipset {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::IPSET)
            })*
        }
        mod ipset_tool {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Ipset { spawn: true })
            })*
        }
        mod nftables {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::NFT)
            })*
        }
        mod nftables_tool {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Nft { spawn: true })
            })*
        }
    };
}

each_backend!(
    own_mode_add_delete_ipv6_and_shutdown,
    filter_hook_with_reject,
    kernel_timeout_lapses_with_the_daemon_gone,
    long_ban_is_clamped_to_the_kernel_maximum,
    extended_ban_refreshes_the_kernel_timeout,
    takeover_after_a_crash,
    takeover_after_a_crash_with_a_changed_hook,
    restore_takes_over_leftovers_in_one_transaction,
    drift_is_repaired,
    a_drift_check_listing_never_holds_up_bans,
    daemon_bans_and_repairs_drift_by_itself,
    set_only_touches_nothing_but_the_sets,
    set_only_leaves_the_admins_elements_alone,
    set_only_init_fails_without_the_sets,
    ten_thousand_adds_in_a_few_transactions,
    one_bad_element_does_not_block_the_batch,
    banned_source_is_dropped_before_conntrack,
    ban_deletes_existing_conntrack_entries,
);

// ---------------------------------------------------------------------------
// 1. Objects, elements, IPv6, shutdown
// ---------------------------------------------------------------------------

fn own_mode_add_delete_ipv6_and_shutdown(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");
        assert_eq!(fw.backend_name(), kind.name());
        // Raw hook: the configured REJECT becomes DROP, before conntrack.
        assert_own_objects(kind, Hook::Raw);
        assert_eq!(held(kind, OWN), Vec::<IpAddr>::new());

        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        assert_eq!(members(kind, OWN, OWN.set4), ips(&[V4]));
        assert_eq!(members(kind, OWN, OWN.set6), ips(&[V6]));
        // The ban's time plus the grace the daemon has to remove it itself.
        for a in [V4, V6] {
            let t = remaining(kind, OWN, ip(a));
            assert!(
                (55..=60 + KERNEL_GRACE).contains(&t),
                "{a}: kernel timeout {t}"
            );
        }

        // Adding again, in one batch or in several (how the applier splits
        // them is up to timing), never duplicates.
        fw.add(ip(V4), MIN);
        fw.add(ip(V4), Duration::from_secs(600));
        fw.sync().await;
        fw.add(ip(V6), MIN);
        fw.sync().await;
        for (set, want) in [(OWN.set4, V4), (OWN.set6, V6)] {
            let elems = set_elements(kind, OWN.table, set).unwrap();
            assert_eq!(elems.len(), 1, "{set}: {elems:?}");
            assert_eq!(elems[0].0, ip(want));
        }
        // A refresh sets the new remaining time, shorter or not.
        fw.refresh(ip(V4), Duration::from_secs(300));
        fw.sync().await;
        assert_eq!(members(kind, OWN, OWN.set4), ips(&[V4]));
        let t = remaining(kind, OWN, ip(V4));
        assert!(
            (290..=300 + KERNEL_GRACE).contains(&t),
            "{V4}: kernel timeout {t}"
        );
        assert_own_objects(kind, Hook::Raw);

        // A second address of each family, in the right set.
        fw.add(ip("198.51.100.3"), MIN);
        fw.add(ip("2001:db8::3"), MIN);
        fw.sync().await;
        assert_eq!(members(kind, OWN, OWN.set4), ips(&[V4, "198.51.100.3"]));
        assert_eq!(members(kind, OWN, OWN.set6), ips(&[V6, "2001:db8::3"]));

        // list() is what the kernel holds, including an element added by
        // hand.
        assert_eq!(sorted(fw.list().await.expect("list")), held(kind, OWN));
        hand_add(kind, OWN, "198.51.100.9");
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            ips(&[V4, "198.51.100.3", "198.51.100.9", V6, "2001:db8::3"])
        );

        fw.delete(ip(V4));
        fw.delete(ip("2001:db8::3"));
        fw.delete(ip("198.51.100.9"));
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&["198.51.100.3", V6]));
        // Deleting what is not there is harmless.
        fw.delete(ip(V4));
        fw.delete(ip("198.51.100.200"));
        fw.delete(ip("2001:db8::99"));
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&["198.51.100.3", V6]));
        // Deleted, then banned again.
        fw.add(ip(V4), MIN);
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&[V4, "198.51.100.3", V6]));
        assert_eq!(sorted(fw.list().await.expect("list")), held(kind, OWN));

        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
        assert!(fw.list().await.is_err(), "the applier stopped");
    });
}

fn filter_hook_with_reject(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Filter))
            .await
            .expect("backend starts");
        // Filter hook: REJECT kept, in filter INPUT / hook input, not raw.
        assert_own_objects(kind, Hook::Filter);
        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&[V4, V6]));
        assert_own_objects(kind, Hook::Filter);
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 2. Kernel timeouts
// ---------------------------------------------------------------------------

fn kernel_timeout_lapses_with_the_daemon_gone(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");
        let added = Instant::now();
        fw.add(ip(V4), Duration::from_secs(2));
        fw.add(ip(V6), Duration::from_secs(2));
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&[V4, V6]));
        for a in [V4, V6] {
            let t = remaining(kind, OWN, ip(a));
            assert!(t <= 2 + KERNEL_GRACE, "{a}: kernel timeout {t}");
        }
        // kill -9: the handle goes without a shutdown; the applier thread
        // ends and leaves everything in the kernel.
        drop(fw);
        eventually(
            "the kernel to expire both elements",
            Duration::from_secs(2 + KERNEL_GRACE + 2),
            || held(kind, OWN).is_empty(),
        )
        .await;
        assert!(
            added.elapsed() >= Duration::from_millis((2 + KERNEL_GRACE) * 1000 - 500),
            "elements vanished after {:?}, before their timeout",
            added.elapsed()
        );
        // Nobody cleaned up: the objects are still in place.
        assert_own_objects(kind, Hook::Raw);
    });
}

fn long_ban_is_clamped_to_the_kernel_maximum(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");
        let hundred_days = Duration::from_secs(100 * 86_400);
        fw.add(ip(V4), hundred_days);
        fw.add(ip(V6), hundred_days);
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&[V4, V6]));
        for a in [V4, V6] {
            let t = remaining(kind, OWN, ip(a));
            assert!(
                (KERNEL_MAX_TIMEOUT - 10..=KERNEL_MAX_TIMEOUT).contains(&t),
                "{a}: kernel timeout {t}, expected about {KERNEL_MAX_TIMEOUT}"
            );
        }
        fw.shutdown().await.expect("shutdown");
    });
}

/// A source reported again while banned has its ban extended; the kernel
/// element must follow, or the kernel lets it in when the old timeout
/// lapses while the daemon still counts it as banned.
fn extended_ban_refreshes_the_kernel_timeout(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");
        let clock = Clock::manual(1_800_000_000);
        let bans = BanManager::new(fw.clone(), clock.clone(), Duration::from_secs(3600), None);
        // Two bans with 10 s left, restored from the dump.
        let now = clock.now();
        let entries = [V4, V6]
            .iter()
            .map(|a| DumpEntry {
                ip: ip(a),
                expiry: now + 10,
                reason: "Invalid Password".into(),
                count: 1,
            })
            .collect();
        bans.restore_entries(entries, |_| None).await;
        assert_eq!(held(kind, OWN), ips(&[V4, V6]));
        for a in [V4, V6] {
            let t = remaining(kind, OWN, ip(a));
            assert!(t <= 10 + KERNEL_GRACE, "{a}: kernel timeout {t}");
        }

        // Reported again: banned for the full hour from now.
        assert_eq!(bans.ban(ip(V4), "Invalid Password"), Upsert::Extended);
        fw.sync().await;
        let t = remaining(kind, OWN, ip(V4));
        assert!(
            t >= 3590,
            "ban extended to 3600 s, but the kernel element lapses in {t} s"
        );
        // The element vanished from the kernel meanwhile: it comes back.
        hand_delete(kind, OWN, V6);
        assert_eq!(bans.ban(ip(V6), "Invalid Password"), Upsert::Extended);
        fw.sync().await;
        assert_eq!(held(kind, OWN), ips(&[V4, V6]));
        let t = remaining(kind, OWN, ip(V6));
        assert!(t >= 3590, "{V6}: kernel timeout {t}");
        assert!(
            bans.check_firewall(Depth::Full)
                .await
                .expect("check")
                .in_sync()
        );
        fw.shutdown().await.expect("shutdown");
    });
}

// ---------------------------------------------------------------------------
// 3. Takeover after a crash
// ---------------------------------------------------------------------------

fn takeover_after_a_crash(kind: Kind) {
    in_private_netns(async move {
        let (a, b, c) = (ip(V4), ip(V6), ip("198.51.100.3"));
        let first = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("first run starts");
        first.add(a, MIN);
        first.add(b, MIN);
        first.sync().await;
        drop(first); // kill -9

        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("second run takes over instead of failing on 'already exists'");
        // Exactly one set of objects, no duplicate rules.
        assert_own_objects(kind, Hook::Raw);

        let report = fw
            .reconcile(vec![(b, MIN), (c, MIN)])
            .await
            .expect("reconcile");
        assert_eq!(held(kind, OWN), sorted(vec![b, c]));
        assert_eq!(
            (report.added, report.removed),
            (1, 1),
            "report: {report} ({report:?})"
        );
        assert!(report.repaired.is_empty(), "{report:?}");
        assert_eq!(sorted(fw.list().await.expect("list")), sorted(vec![b, c]));

        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

/// A crash, then a restart with `hook` changed from raw to filter: the new
/// run must not keep the old run's match rule.
fn takeover_after_a_crash_with_a_changed_hook(kind: Kind) {
    in_private_netns(async move {
        let first = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("first run starts");
        first.add(ip(V4), MIN);
        first.sync().await;
        drop(first); // kill -9

        let fw = Firewall::start(kind.own(Hook::Filter))
            .await
            .expect("second run takes over");
        assert_own_objects(kind, Hook::Filter);
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

fn restore_takes_over_leftovers_in_one_transaction(kind: Kind) {
    in_private_netns(async move {
        let mut tx = Transactions::new(kind);
        let s = || tx.settings(OWN, Ownership::Own);
        let first = Firewall::start(kind.backend(s()))
            .await
            .expect("first run starts");
        first.add(ip("198.51.100.66"), MIN); // stale: not in the dump
        first.add(ip(V4), MIN);
        first.sync().await;
        drop(first); // kill -9

        let fw = Firewall::start(kind.backend(s()))
            .await
            .expect("second run takes over");
        let clock = Clock::manual(1_800_000_000);
        let bans = BanManager::new(fw.clone(), clock.clone(), Duration::from_secs(3600), None);
        let now = clock.now();
        let entry = |ip: IpAddr, expiry| DumpEntry {
            ip,
            expiry,
            reason: "Invalid Password".into(),
            count: 1,
        };
        let wanted = many(2_000);
        let mut entries: Vec<DumpEntry> = wanted.iter().map(|i| entry(*i, now + 600)).collect();
        entries.push(entry(ip("2001:db8::dead"), now - 1)); // expired
        tx.reset();
        let restored = bans.restore_entries(entries, |_| None).await;
        assert_eq!(restored.added.len(), 2_000);
        assert_eq!(restored.expired, 1);
        assert_eq!(
            held(kind, OWN),
            sorted(wanted.clone()),
            "after restore, the kernel holds exactly the dump's active bans"
        );
        if let Some(n) = tx.count() {
            assert_eq!(n, 1, "restoring 2,000 bans took {n} kernel transactions");
        }
        assert!(
            bans.check_firewall(Depth::Full)
                .await
                .expect("check")
                .in_sync()
        );
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 4. Drift repair
// ---------------------------------------------------------------------------

/// Someone removes our objects: ipset, both match rules deleted, the IPv4
/// set flushed and the IPv6 set destroyed; nftables, our table deleted.
fn sabotage(kind: Kind) {
    match kind {
        Kind::Ipset { .. } => {
            for (tool, set) in [("iptables", OWN.set4), ("ip6tables", OWN.set6)] {
                for rule in ipset_rules(tool == "ip6tables", Hook::Raw, set) {
                    let mut args = vec!["-w", "-t", "raw", "-D"];
                    args.extend(rule.trim_start_matches("-A ").split_whitespace());
                    run_ok(tool, &args);
                }
            }
            run_ok("ipset", &["flush", OWN.set4]);
            run_ok("ipset", &["destroy", OWN.set6]);
        }
        Kind::Nft { .. } => {
            run_ok("nft", &["delete", "table", "inet", "sipban"]);
        }
    }
}

fn drift_is_repaired(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");
        let bans = BanManager::new(
            fw.clone(),
            Clock::manual(1_800_000_000),
            Duration::from_secs(3600),
            None,
        );
        let v4b = "198.51.100.3";
        for a in [V4, v4b, V6] {
            bans.ban(ip(a), "Invalid Password");
        }
        fw.sync().await;
        let all = ips(&[V4, v4b, V6]);
        assert_eq!(held(kind, OWN), all);
        let report = bans.check_firewall(Depth::Quick).await.expect("check");
        assert!(report.in_sync(), "nothing changed, yet: {report}");
        assert_eq!(report.to_string(), "firewall in sync");

        // The periodic (quick) check finds and repairs it.
        sabotage(kind);
        let report = bans
            .check_firewall(Depth::Quick)
            .await
            .expect("check repairs");
        assert_own_objects(kind, Hook::Raw);
        assert_eq!(held(kind, OWN), all);
        assert_eq!((report.added, report.removed), (3, 0), "{report:?}");
        let repaired = &report.repaired;
        match kind {
            Kind::Ipset { .. } => {
                for what in ["ipset sipban-udp-v6", "iptables ", "ip6tables "] {
                    assert!(
                        repaired.iter().any(|r| r.contains(what)),
                        "repaired {repaired:?} lacks {what:?}"
                    );
                }
            }
            Kind::Nft { .. } => assert_eq!(repaired, &vec!["table inet sipban".to_string()]),
        }
        assert!(report.to_string().starts_with("repaired "), "{report}");
        let report = bans.check_firewall(Depth::Quick).await.expect("check");
        assert!(report.in_sync(), "after the repair: {report:?}");

        // One of ours removed by hand: the count tells the quick check.
        hand_delete(kind, OWN, v4b);
        let report = bans.check_firewall(Depth::Quick).await.expect("check");
        assert_eq!((report.added, report.removed), (1, 0), "{report:?}");
        assert_eq!(held(kind, OWN), all);

        // A stranger added and one of ours removed: the same count, so
        // only the full check (`check-firewall`) compares the elements on
        // ipset; nftables has no count and lists them every time.
        hand_add(kind, OWN, "198.51.100.77");
        hand_delete(kind, OWN, v4b);
        let quick = bans.check_firewall(Depth::Quick).await.expect("check");
        match kind {
            Kind::Ipset { .. } => {
                assert!(quick.in_sync(), "{quick:?}");
                assert_eq!(held(kind, OWN), ips(&[V4, "198.51.100.77", V6]));
            }
            Kind::Nft { .. } => {
                assert_eq!((quick.added, quick.removed), (1, 1), "{quick:?}");
                hand_add(kind, OWN, "198.51.100.77");
                hand_delete(kind, OWN, v4b);
            }
        }
        let report = bans.check_firewall(Depth::Full).await.expect("check");
        assert!(report.repaired.is_empty(), "{report:?}");
        assert_eq!((report.added, report.removed), (1, 1), "{report:?}");
        assert_eq!(held(kind, OWN), all);

        // Only the match rules flushed.
        match kind {
            Kind::Ipset { .. } => {
                run_ok("iptables", &["-w", "-t", "raw", "-F", "PREROUTING"]);
            }
            Kind::Nft { .. } => {
                run_ok("nft", &["flush", "chain", "inet", "sipban", "sipban"]);
            }
        }
        let report = bans.check_firewall(Depth::Quick).await.expect("check");
        assert_eq!(report.repaired.len(), 1, "{report:?}");
        assert_eq!((report.added, report.removed), (0, 0), "{report:?}");
        assert_own_objects(kind, Hook::Raw);
        assert!(
            bans.check_firewall(Depth::Quick)
                .await
                .expect("check")
                .in_sync()
        );

        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

/// A wrapper for the backend's tool that holds every element listing
/// (`ipset save`, `nft -j list set`) at a gate until the test opens it.
struct ListingGate {
    dir: tempfile::TempDir,
}

impl ListingGate {
    fn new(kind: Kind) -> ListingGate {
        let pattern = match kind {
            Kind::Ipset { .. } => "\"save \"*",
            Kind::Nft { .. } => "\"-j list set \"*",
        };
        ListingGate::on(kind, pattern)
    }

    /// Holds the tool's runs whose arguments match the shell `pattern`.
    fn on(kind: Kind, pattern: &str) -> ListingGate {
        let real = Path::new("/usr/sbin").join(kind.tool());
        let dir = tempfile::tempdir().expect("tempdir");
        let (started, gate) = (dir.path().join("started"), dir.path().join("gate"));
        std::fs::write(&gate, "").unwrap();
        let wrapper = dir.path().join(kind.tool());
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\ncase \"$*\" in {pattern})\n  touch '{}'\n  while [ -e '{}' ]; do sleep 0.01; done;;\nesac\nexec '{}' \"$@\"\n",
                started.display(),
                gate.display(),
                real.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        ListingGate { dir }
    }

    fn bin_dir(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn listing_started(&self) -> bool {
        self.dir.path().join("started").exists()
    }

    fn open(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("gate"));
    }
}

/// A drift check lists the elements on a thread of its own: bans queued
/// while the listing runs are committed at once, and the comparison leaves
/// out what changed meanwhile (a ban added then is not taken for a
/// stranger and removed).
fn a_drift_check_listing_never_holds_up_bans(kind: Kind) {
    bans_pass_a_check_held_at(kind, ListingGate::new(kind), Depth::Full);
}

/// nftables lists every element for any listing, even of a table's
/// names, so the periodic check of our objects runs on the lister thread
/// too: bans queued while it runs are committed at once.
#[test]
fn nftables_quick_check_of_objects_never_holds_up_bans() {
    let gate = ListingGate::on(NFT, "\"-t -j list table \"*");
    bans_pass_a_check_held_at(NFT, gate, Depth::Quick);
}

/// A `depth` check held at `gate` while a ban is queued: the ban is
/// committed at once, and the check, let go, finds all in sync.
fn bans_pass_a_check_held_at(kind: Kind, gate: ListingGate, depth: Depth) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.backend(settings(
            OWN,
            Hook::Raw,
            Ownership::Own,
            &gate.bin_dir(),
        )))
        .await
        .expect("backend starts");
        fw.add(ip(V4), MIN);
        fw.sync().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        fw.send_reconcile(vec![(ip(V4), MIN)], depth, tx);
        eventually(
            "the check's listing to start",
            Duration::from_secs(10),
            || gate.listing_started(),
        )
        .await;
        // The listing is held at the gate; a ban queued now is committed.
        let late = ip("198.51.100.9");
        fw.add(late, MIN);
        let synced = tokio::time::timeout(Duration::from_secs(10), fw.sync()).await;
        assert!(synced.is_ok(), "a ban waited for the drift check's listing");
        assert_eq!(held(kind, OWN), sorted(vec![ip(V4), late]));
        gate.open();
        let report = rx.await.expect("reply").expect("check");
        assert!(report.in_sync(), "{report:?}");
        assert_eq!(held(kind, OWN), sorted(vec![ip(V4), late]));
        fw.shutdown().await.expect("shutdown");
    });
}

fn daemon_settings(ami: &FakeAmi, check: Duration) -> Settings {
    let mut s = support::settings_without_dump(ami);
    s.ami.backoff.min = Duration::from_millis(50);
    s.firewall_check = Some(check);
    s.conntrack = Some("conntrack".into());
    s
}

/// The whole daemon: AMI events become set elements, the console's
/// `check-firewall` reports, the periodic check repairs drift by itself,
/// and stopping removes everything.
fn daemon_bans_and_repairs_drift_by_itself(kind: Kind) {
    in_private_netns(async move {
        let fake = FakeAmi::start().await;
        let daemon = Daemon::start(
            daemon_settings(&fake, Duration::from_millis(300)),
            kind.own(Hook::Raw),
            Clock::system(),
        )
        .await
        .expect("daemon starts");
        assert_own_objects(kind, Hook::Raw);
        fake.wait_logins(1).await;
        fake.send_event("InvalidPassword", "PJSIP", "1001", V4);
        fake.send_event("ChallengeResponseFailed", "PJSIP", "1001", V6);
        eventually("both bans in the sets", Duration::from_secs(5), || {
            held(kind, OWN) == ips(&[V4, V6])
        })
        .await;
        let (mut console, _banner) = ConsoleClient::connect(daemon.console_addr).await;
        let reply = console.command("check-firewall").await;
        assert!(reply.contains("firewall in sync"), "console said {reply:?}");

        sabotage(kind);
        eventually(
            "the periodic check to repair the firewall",
            Duration::from_secs(5),
            || {
                let objects = match kind {
                    Kind::Ipset { .. } => {
                        ipset_names().len() == 2
                            && !rules_with("ip6tables", "raw", "PREROUTING", "--match-set")
                                .is_empty()
                    }
                    Kind::Nft { .. } => {
                        nft_chain("inet", "sipban", "sipban").is_some_and(|c| c.len() == 5)
                    }
                };
                objects
                    && set_elements(kind, OWN.table, OWN.set4).is_some()
                    && set_elements(kind, OWN.table, OWN.set6).is_some()
                    && held(kind, OWN) == ips(&[V4, V6])
            },
        )
        .await;
        assert_own_objects(kind, Hook::Raw);
        let reply = console.command("check-firewall").await;
        assert!(reply.contains("firewall in sync"), "console said {reply:?}");
        drop(console);

        daemon.stop().await.expect("daemon stops");
        assert_own_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 5. Set-only mode
// ---------------------------------------------------------------------------

fn set_only_touches_nothing_but_the_sets(kind: Kind) {
    in_private_netns(async move {
        admin_ruleset(kind, None);
        let by_hand = "198.51.100.50";
        hand_add(kind, ADMIN, by_hand);
        let before = ruleset_snapshot();
        let tables = nft_tables();
        let sets = ipset_names();

        let fw = Firewall::start(kind.set_only())
            .await
            .expect("set-only backend starts");
        assert_eq!(ruleset_snapshot(), before, "init changed the ruleset");

        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.add(ip("2001:db8::3"), MIN);
        fw.sync().await;
        assert_eq!(members(kind, ADMIN, "blocked4"), ips(&[by_hand, V4]));
        assert_eq!(members(kind, ADMIN, "blocked6"), ips(&[V6, "2001:db8::3"]));
        for a in [V4, V6] {
            let t = remaining(kind, ADMIN, ip(a));
            assert!(
                (55..=60 + KERNEL_GRACE).contains(&t),
                "{a}: kernel timeout {t}"
            );
        }
        fw.delete(ip("2001:db8::3"));
        fw.sync().await;
        assert_eq!(members(kind, ADMIN, "blocked6"), ips(&[V6]));
        assert_eq!(
            ruleset_snapshot(),
            before,
            "bans changed more than the sets"
        );
        assert_eq!(nft_tables(), tables, "nft tables");
        assert_eq!(ipset_names(), sets, "ipsets");

        fw.shutdown().await.expect("shutdown");
        assert_eq!(
            members(kind, ADMIN, "blocked4"),
            ips(&[by_hand]),
            "shutdown must remove only our elements"
        );
        assert_eq!(members(kind, ADMIN, "blocked6"), Vec::<IpAddr>::new());
        assert_eq!(ruleset_snapshot(), before, "shutdown changed the ruleset");
    });
}

/// The administrator's own elements in a shared set are not ours: `list()`
/// reports only what sipban added, the drift check neither reports nor
/// removes them, and shutdown leaves them.
fn set_only_leaves_the_admins_elements_alone(kind: Kind) {
    in_private_netns(async move {
        admin_ruleset(kind, None);
        let by_hand = ["198.51.100.50", "2001:db8::50"];
        for a in by_hand {
            hand_add(kind, ADMIN, a);
        }
        let fw = Firewall::start(kind.set_only())
            .await
            .expect("set-only backend starts");
        let bans = BanManager::new(
            fw.clone(),
            Clock::manual(1_800_000_000),
            Duration::from_secs(3600),
            None,
        );
        bans.ban(ip(V4), "Invalid Password");
        bans.ban(ip(V6), "Invalid Password");
        fw.sync().await;
        assert_eq!(held(kind, ADMIN), ips(&[by_hand[0], by_hand[1], V4, V6]));
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            ips(&[V4, V6]),
            "list() in set-only mode: our elements"
        );
        let report = bans.check_firewall(Depth::Full).await.expect("check");
        assert!(report.in_sync(), "{report:?}");
        assert_eq!(held(kind, ADMIN), ips(&[by_hand[0], by_hand[1], V4, V6]));

        // Ours removed behind our back: put back, theirs untouched.
        hand_delete(kind, ADMIN, V4);
        let report = bans.check_firewall(Depth::Full).await.expect("check");
        assert_eq!((report.added, report.removed), (1, 0), "{report:?}");
        assert_eq!(held(kind, ADMIN), ips(&[by_hand[0], by_hand[1], V4, V6]));

        fw.shutdown().await.expect("shutdown");
        assert_eq!(
            held(kind, ADMIN),
            ips(&by_hand),
            "shutdown must remove exactly our elements"
        );
    });
}

fn set_only_init_fails_without_the_sets(kind: Kind) {
    in_private_netns(async move {
        let before = ruleset_snapshot();
        let err = Firewall::start(kind.set_only())
            .await
            .expect_err("set-only mode without the sets must not start");
        let msg = err.to_string();
        assert!(
            msg.contains("blocked4") && msg.contains("does not exist"),
            "unclear error: {msg}"
        );
        assert_eq!(
            ruleset_snapshot(),
            before,
            "a failed init created something"
        );

        // Only the IPv6 set missing.
        match kind {
            Kind::Ipset { .. } => {
                run_ok(
                    "ipset",
                    &[
                        "create", "blocked4", "hash:ip", "family", "inet", "timeout", "0",
                    ],
                );
            }
            Kind::Nft { .. } => nft_script(
                "table inet filter {\n\tset blocked4 { type ipv4_addr; flags timeout; }\n}\n",
            ),
        }
        let before = ruleset_snapshot();
        let err = Firewall::start(kind.set_only())
            .await
            .expect_err("set-only mode without the IPv6 set must not start");
        let msg = err.to_string();
        assert!(
            msg.contains("blocked6") && msg.contains("does not exist"),
            "unclear error: {msg}"
        );
        assert_eq!(
            ruleset_snapshot(),
            before,
            "a failed init created something"
        );
    });
}

// ---------------------------------------------------------------------------
// 6. Batching
// ---------------------------------------------------------------------------

fn ten_thousand_adds_in_a_few_transactions(kind: Kind) {
    in_private_netns(async move {
        let mut tx = Transactions::new(kind);
        let fw = Firewall::start(kind.backend(tx.settings(OWN, Ownership::Own)))
            .await
            .expect("backend starts");
        let all = many(10_000);
        tx.reset();
        // The applier is held by a full drift check (listings of our
        // objects, changing nothing) while the adds are queued, so they
        // wait for it: how many transactions they take is then the
        // batching's, not the race between this loop and commits (one over
        // netlink is faster than queueing a hundred adds).
        let (held, check) = tokio::sync::oneshot::channel();
        fw.send_reconcile(Vec::new(), Depth::Full, held);
        let start = Instant::now();
        for a in &all {
            fw.add(*a, Duration::from_secs(3600));
        }
        check.await.expect("reply").expect("check");
        fw.sync().await;
        let took = start.elapsed();
        let v4 = set_elements(kind, OWN.table, OWN.set4).unwrap();
        let v6 = set_elements(kind, OWN.table, OWN.set6).unwrap();
        assert_eq!((v4.len(), v6.len()), (512, 9_488));
        let mut got: Vec<IpAddr> = v4.into_iter().chain(v6).map(|(i, _)| i).collect();
        got.sort();
        assert_eq!(got, sorted(all));
        let n = tx.count();
        if let Some(n) = n {
            assert!(
                (1..=20).contains(&n),
                "10,000 adds took {n} kernel transactions"
            );
        }
        eprintln!(
            "{}: 10,000 adds in {took:?}, {n:?} transaction(s)",
            kind.name()
        );
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

/// One way to make elements fail on their own: the administrator's IPv4
/// set is full after 5 elements (`ipset ... maxelem 5`, nftables
/// `size 5`). A batch of 8 IPv4 and 2 IPv6 additions must still put the
/// first 5 and both IPv6 ones in, and log each of the 3 failures.
fn one_bad_element_does_not_block_the_batch(kind: Kind) {
    capture_logs();
    in_private_netns(async move {
        admin_ruleset(kind, Some(5));
        let fw = Firewall::start(kind.set_only())
            .await
            .expect("set-only backend starts");
        // Unique to this test: other tests' log lines cannot match.
        let v4: Vec<String> = (201..=208).map(|i| format!("198.51.100.{i}")).collect();
        let v6 = ["2001:db8:ba7c::1", "2001:db8:ba7c::2"];
        for (i, a) in v4.iter().enumerate() {
            fw.add(ip(a), MIN);
            if i == 3 {
                for b in v6 {
                    fw.add(ip(b), MIN);
                }
            }
        }
        fw.sync().await;
        let first5: Vec<&str> = v4[..5].iter().map(String::as_str).collect();
        assert_eq!(members(kind, ADMIN, "blocked4"), ips(&first5));
        assert_eq!(members(kind, ADMIN, "blocked6"), ips(&v6));
        let log = logs();
        for (i, a) in v4.iter().enumerate() {
            let needle = format!("FIREWALL => {a}:");
            let line = log.lines().find(|l| l.contains(&needle));
            if i < 5 {
                assert!(line.is_none(), "{a} was applied but logged: {line:?}");
            } else {
                let line = line.unwrap_or_else(|| panic!("no error logged for {a}:\n{log}"));
                assert!(line.contains("ERROR"), "{line}");
            }
        }
        // The batch after is not affected.
        fw.delete(ip(&v4[0]));
        fw.add(ip(&v4[5]), MIN);
        fw.sync().await;
        let mut want: Vec<&str> = v4[1..6].iter().map(String::as_str).collect();
        want.sort();
        assert_eq!(members(kind, ADMIN, "blocked4"), ips(&want));
        fw.shutdown().await.expect("shutdown");
        assert_eq!(members(kind, ADMIN, "blocked4"), Vec::<IpAddr>::new());
    });
}

/// A batch of deletes that meets elements the kernel already dropped (a
/// storm of bans expiring together after the daemon was stopped, suspended
/// or lagging for longer than `KERNEL_GRACE`, or after someone flushed the
/// set) must stay one transaction, not fall back to one tool process per
/// element: deleting what is gone is harmless by the `Backend` contract.
///
/// Counted through the tool's invocations, failed ones included, so only
/// for the spawned tools: `nft monitor` does not see failed transactions of
/// in-process libnftables.
/// The periodic (quick) check of ipset reads the sets' headers, never
/// their elements: `ipset save` of 100k elements each minute was the cost
/// it had. The full check (`check-firewall`) lists them.
#[test]
fn ipset_quick_check_reads_counts_not_elements() {
    in_private_netns(async {
        let tools = ToolLog::new(IPSET);
        let fw = Firewall::start(IPSET.backend(settings(
            OWN,
            Hook::Raw,
            Ownership::Own,
            &tools.bin_dir(),
        )))
        .await
        .expect("backend starts");
        let bans: Vec<(IpAddr, Duration)> = many(600).into_iter().map(|a| (a, MIN)).collect();
        for (a, t) in &bans {
            fw.add(*a, *t);
        }
        fw.set_denied(vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8:99::/48".parse().unwrap(),
        ])
        .await
        .expect("deny list");
        fw.sync().await;
        tools.reset();
        let (tx, rx) = tokio::sync::oneshot::channel();
        fw.send_reconcile(bans.clone(), Depth::Quick, tx);
        let report = rx.await.expect("reply").expect("quick check");
        assert!(report.in_sync(), "{report:?}");
        let calls = tools.calls();
        assert!(
            !calls.iter().any(|c| c.starts_with("save")),
            "the quick check listed elements: {calls:?}"
        );
        assert!(calls.iter().any(|c| c.contains("-t")), "{calls:?}");
        tools.reset();
        let report = fw.reconcile(bans).await.expect("full check");
        assert!(report.in_sync(), "{report:?}");
        assert!(tools.calls().iter().any(|c| c.starts_with("save")));
        fw.shutdown().await.expect("shutdown");
    });
}

#[test]
fn ipset_deleting_elements_the_kernel_already_expired_stays_batched() {
    deleting_elements_the_kernel_already_expired_stays_batched(Kind::Ipset { spawn: true });
}

#[test]
fn nftables_tool_deleting_elements_the_kernel_already_expired_stays_batched() {
    deleting_elements_the_kernel_already_expired_stays_batched(Kind::Nft { spawn: true });
}

fn deleting_elements_the_kernel_already_expired_stays_batched(kind: Kind) {
    in_private_netns(async move {
        let tools = ToolLog::new(kind);
        let fw = Firewall::start(kind.backend(settings(
            OWN,
            Hook::Raw,
            Ownership::Own,
            &tools.bin_dir(),
        )))
        .await
        .expect("backend starts");
        let all: Vec<IpAddr> = many(712)[512..].to_vec();
        for a in &all {
            fw.add(*a, Duration::from_secs(1));
        }
        fw.sync().await;
        assert_eq!(held(kind, OWN).len(), 200);
        eventually(
            "the kernel to expire the elements",
            Duration::from_secs(1 + KERNEL_GRACE + 3),
            || held(kind, OWN).is_empty(),
        )
        .await;

        // Queue the deletes while the applier is busy with another change,
        // so they reach it as one batch however the threads are scheduled.
        tools.reset();
        tools.slow(true);
        let busy = ip("198.18.255.1");
        fw.add(busy, Duration::from_secs(60));
        eventually("the applier to be busy", Duration::from_secs(5), || {
            tools.transactions() == 1
        })
        .await;
        let start = Instant::now();
        for a in all.iter().chain([&busy]) {
            fw.delete(*a);
        }
        tools.slow(false);
        fw.sync().await;
        let took = start.elapsed();
        let n = tools.transactions() - 1;
        assert!(
            n <= 3,
            "deleting 200 already expired elements took {n} {} transactions ({took:?}): \
             the batch failed and was retried element by element",
            kind.tool()
        );
        assert!(held(kind, OWN).is_empty());
        fw.shutdown().await.expect("shutdown");
    });
}

// ---------------------------------------------------------------------------
// 7./8. Real packets: attacker -> veth -> pbx:5060, and conntrack
// ---------------------------------------------------------------------------

const PBX4: &str = "203.0.113.1:5060";
const PBX6: &str = "[2001:db8::1]:5060";

/// A pbx and an attacker namespace joined by a veth pair: pbx has
/// 203.0.113.1 and 2001:db8::1; the attacker .7/.8 and ::7/::8.
fn wire() -> (NamedNetns, NamedNetns) {
    netns::wire(
        "sb",
        &["203.0.113.1/24", "2001:db8::1/64"],
        &[
            "203.0.113.7/24",
            "203.0.113.8/24",
            "2001:db8::7/64",
            "2001:db8::8/64",
        ],
    )
}

/// The four attacker sockets (.7, .8, ::7, ::8), made on a thread inside
/// the attacker's namespace (sockets stay where they were created).
fn attacker_sockets(atk: &NamedNetns) -> [UdpSocket; 4] {
    netns::attacker_sockets(
        atk,
        PBX4.parse().unwrap(),
        PBX6.parse().unwrap(),
        ["203.0.113.7", "203.0.113.8", "2001:db8::7", "2001:db8::8"],
    )
}

fn listeners() -> (UdpSocket, UdpSocket) {
    netns::listeners(PBX4.parse().unwrap(), PBX6.parse().unwrap())
}

/// Flows from `src` in this namespace's conntrack table.
fn conntrack_entries(src: &str) -> usize {
    let mut args = vec!["-L", "-s", src];
    if ip(src).is_ipv6() {
        args.extend(["-f", "ipv6"]);
    }
    run_ok("conntrack", &args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn conntrack_delete(src: &str) {
    let mut args = vec!["-D", "-s", src];
    if ip(src).is_ipv6() {
        args.extend(["-f", "ipv6"]);
    }
    // Exit 1 when there was nothing to delete.
    let _ = run("conntrack", &args);
}

/// The administrator's usual stateful rule: it also switches connection
/// tracking on in this namespace.
fn established_accept() {
    nft_script(
        "table inet admin {\n\
         \tchain input {\n\
         \t\ttype filter hook input priority filter + 10; policy accept;\n\
         \t\tct state established,related accept\n\
         \t}\n\
         }\n",
    );
}

fn banned_source_is_dropped_before_conntrack(kind: Kind) {
    let (pbx, atk) = wire();
    let [bad4, good4, bad6, good6] = attacker_sockets(&atk);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = listeners();
        established_accept();
        let fw = Firewall::start(kind.own(Hook::Raw))
            .await
            .expect("backend starts");

        assert_reaches(&bad4, &listen4, "before the ban (IPv4)");
        assert_reaches(&bad6, &listen6, "before the ban (IPv6)");
        assert!(conntrack_entries(V4) >= 1, "conntrack is not tracking");
        assert!(conntrack_entries(V6) >= 1, "conntrack is not tracking");

        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        // The flows from before the ban go (test 8 has the applier do it).
        conntrack_delete(V4);
        conntrack_delete(V6);
        assert_eq!(conntrack_entries(V4), 0);

        assert_blocked(&bad4, &listen4, true, "banned (IPv4)");
        assert_blocked(&bad6, &listen6, true, "banned (IPv6)");
        assert_eq!(
            conntrack_entries(V4),
            0,
            "a banned IPv4 flood created conntrack entries"
        );
        assert_eq!(
            conntrack_entries(V6),
            0,
            "a banned IPv6 flood created conntrack entries"
        );
        // Only the banned source is cut off, and it is tracked as usual.
        assert_reaches(&good4, &listen4, "a neighbour of the banned IPv4");
        assert_reaches(&good6, &listen6, "a neighbour of the banned IPv6");
        assert!(conntrack_entries("203.0.113.8") >= 1);
        assert!(conntrack_entries("2001:db8::8") >= 1);

        fw.delete(ip(V4));
        fw.delete(ip(V6));
        fw.sync().await;
        assert_reaches(&bad4, &listen4, "after the unban (IPv4)");
        assert_reaches(&bad6, &listen6, "after the unban (IPv6)");

        fw.add(ip(V4), MIN);
        fw.sync().await;
        assert_blocked(&bad4, &listen4, true, "banned again (IPv4)");
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
        assert_reaches(&bad4, &listen4, "after shutdown (IPv4)");
    });
}

fn ban_deletes_existing_conntrack_entries(kind: Kind) {
    let (pbx, atk) = wire();
    let [bad4, good4, bad6, good6] = attacker_sockets(&atk);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = listeners();
        established_accept();
        // No tool at that path: the flows go over netlink, in-process.
        let fw = Firewall::start_with(
            kind.own(Hook::Filter),
            ApplierOptions {
                conntrack: Some("/nonexistent/conntrack".into()),
            },
        )
        .await
        .expect("backend starts");

        for (from, listener, src) in [
            (&bad4, &listen4, V4),
            (&good4, &listen4, "203.0.113.8"),
            (&bad6, &listen6, V6),
            (&good6, &listen6, "2001:db8::8"),
        ] {
            assert_reaches(from, listener, "before the ban");
            assert!(conntrack_entries(src) >= 1, "no conntrack entry for {src}");
        }

        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        eventually(
            "the banned sources' conntrack entries to go",
            Duration::from_secs(3),
            || conntrack_entries(V4) == 0 && conntrack_entries(V6) == 0,
        )
        .await;
        // Only the banned sources' flows are deleted.
        assert!(conntrack_entries("203.0.113.8") >= 1);
        assert!(conntrack_entries("2001:db8::8") >= 1);

        // Filter hook: REJECT answers.
        assert_blocked(&bad4, &listen4, false, "banned (IPv4)");
        assert_blocked(&bad6, &listen6, false, "banned (IPv6)");
        assert_reaches(&good4, &listen4, "a neighbour of the banned IPv4");
        fw.shutdown().await.expect("shutdown");
        assert_own_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 9. The binary without a `[firewall]` section: `auto`
// ---------------------------------------------------------------------------

#[test]
fn binary_without_a_firewall_section_picks_nftables_and_cleans_up_on_sigterm() {
    let ns = NamedNetns::create("bin");
    ns.enter();
    runtime().block_on(async {
        let fake = FakeAmi::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let console_port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let wl = dir.path().join("sipban.wl");
        let dump = dir.path().join("sipban.dump");
        let log = dir.path().join("sipban.log");
        let conf = dir.path().join("sipban.conf");
        std::fs::write(&wl, "# nobody\n").unwrap();
        std::fs::write(
            &conf,
            format!(
                "[ami]\nhost = \"127.0.0.1\"\nport = \"{}\"\nuser = \"sipban\"\npass = \"getout\"\nping = 600\n\n\
                 [control]\naddress = \"127.0.0.1\"\nport = \"{console_port}\"\n\n\
                 [timer]\nban = 3600\n\n\
                 [iptables]\npath = \"/usr/sbin/\"\nchain = \"sipban-udp\"\n\
                 rule = \"REJECT --reject-with icmp-port-unreachable\"\n\
                 white_list = \"{}\"\ndump = \"{}\"\n\n\
                 [log]\nfile = \"{}\"\n",
                fake.addr.port(),
                wl.display(),
                dump.display(),
                log.display()
            ),
        )
        .unwrap();
        let stderr_path = dir.path().join("stderr.txt");
        let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        assert_private();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_sipban"), "-c"])
            .arg(&conf)
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start sipban");
        let mut daemon = ChildGuard(child);
        let pid = daemon.0.id();

        // Logged in to the fake Asterisk (in this namespace).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(fake.logins() >= 1 && fake.live() > 0) {
            if let Some(status) = daemon.0.try_wait().expect("try_wait") {
                panic!("sipban exited early ({status}): {}", stderr());
            }
            assert!(Instant::now() < deadline, "no AMI login within 10 s: {}", stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // `ip netns exec` execs the daemon: SIGTERM goes to sipban itself.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "sipban", "pid {pid} is not the daemon");
        assert_own_objects(NFT, Hook::Raw);
        assert!(
            ipset_names().is_empty(),
            "auto made ipsets: {:?}",
            ipset_names()
        );

        fake.send_event("InvalidPassword", "PJSIP", "1001", V4);
        fake.send_event("ChallengeResponseFailed", "PJSIP", "1001", V6);
        eventually("the binary's bans in the sets", Duration::from_secs(5), || {
            held(NFT, OWN) == ips(&[V4, V6])
        })
        .await;
        let t = remaining(NFT, OWN, ip(V4));
        assert!(
            (3500..=3600 + KERNEL_GRACE).contains(&t),
            "kernel timeout {t}"
        );

        // SAFETY: plain syscall; `pid` is our unreaped child.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
        let status = wait_exit(&mut daemon.0, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("sipban did not exit within 20 s of SIGTERM: {}", stderr()));
        assert!(status.success(), "sipban exited with {status}: {}", stderr());

        assert_own_gone(NFT);
        let ruleset = run_ok("nft", &["list", "ruleset"]);
        assert!(ruleset.trim().is_empty(), "left behind:\n{ruleset}");
        let entries = sipban::bans::persist::read(&dump)
            .expect("dump readable")
            .expect("dump written");
        assert_eq!(
            sorted(entries.iter().map(|e| e.ip).collect()),
            ips(&[V4, V6]),
            "dump {}",
            dump.display()
        );
        let log_text = std::fs::read_to_string(&log).expect("log file");
        for want in [
            "] SipBan Start",
            "] FIREWALL => nftables backend",
            "] BLOCK => 203.0.113.7 (Invalid Password)",
            "] SipBan Stop",
        ] {
            assert!(
                log_text.lines().any(|l| l.starts_with('[') && l.contains(want)),
                "log lacks {want:?}:\n{log_text}"
            );
        }
    });
}
