//! Permanent deny entries (addresses and CIDR networks) in every firewall
//! backend against the real kernel: what `iptables -S`, `ipset list` and
//! `nft -j list` show, kept apart from the timed bans (`list()` and the
//! bans' reconcile never see them), replaced as a whole, cleared, repaired
//! after drift, taken over after a crash, removed on shutdown, set-only
//! mode, and real packets through a veth pair.
//!
//! Every scenario runs once per backend (see `each_backend!`): `chain`,
//! `ipset` (netlink), `ipset_tool` (`ipset restore`), `nftables`
//! (libnftables in-process) and `nftables_tool` (the `nft` tool).
//!
//! Every test runs in network namespaces it creates itself, so the
//! machine's own firewall is never touched: the test thread unshares a
//! private namespace (threads and child processes it starts inherit it), or
//! creates named namespaces (`ip netns add`) and enters them with `setns`.
//! Every firewall command run from this file first checks that the calling
//! thread is in the namespace it entered. A test that cannot create or
//! enter its namespace fails; none is ever skipped.
//!
//! Needs root, iptables, ip6tables, ipset, nft and iproute2.

mod netns;
#[path = "support/mod.rs"]
mod support;

use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netns::{
    NamedNetns, assert_blocked, assert_reaches, capture_logs, in_private_netns, logs, nft_script,
    ruleset_snapshot, run, run_ok, runtime,
};
use serde_json::Value;
use sipban::firewall::chain::ChainSettings;
use sipban::firewall::{
    Action, Backend, ChainBackend, Firewall, FirewallError, Hook, IpsetBackend, NftBackend,
    Ownership, Scope, SetSettings,
};

const V4: &str = "203.0.113.7";
const V6: &str = "2001:db8::7";
const REJECT: &str = "REJECT --reject-with icmp-port-unreachable";
const MIN: Duration = Duration::from_secs(60);

/// The deny list of most scenarios: a /24 written with host bits, a /32, a
/// /24 with a /32 inside it, a /48 and a /128.
const LIST: &[&str] = &[
    "198.51.100.77/24",
    "192.0.2.9",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "2001:db8:5::/48",
    "2001:db8::99/128",
];
/// What the kernel holds for [`LIST`]: host bits cleared, the /32 inside
/// the /24 folded into it.
const LIST4: &[&str] = &["10.1.2.0/24", "192.0.2.9/32", "198.51.100.0/24"];
const LIST6: &[&str] = &["2001:db8::99/128", "2001:db8:5::/48"];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .unwrap_or_else(|_| panic!("not a network: {s}"))
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| net(s)).collect()
}

fn sorted_nets(mut v: Vec<IpNet>) -> Vec<IpNet> {
    v.sort();
    v
}

fn sorted(mut v: Vec<IpAddr>) -> Vec<IpAddr> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// The backends
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// iptables rules per ban in chain `sipban-udp`, filter INPUT, REJECT.
    Chain,
    /// `spawn`: `ipset restore` per batch instead of netlink.
    Ipset { spawn: bool },
    /// `spawn`: the `nft` tool per batch instead of libnftables.
    Nft { spawn: bool },
}

const CHAIN: &str = "sipban-udp";
const DENY_CHAIN: &str = "sipban-udp-deny";
const SET4: &str = "sipban-udp-v4";
const SET6: &str = "sipban-udp-v6";
const DENY4: &str = "sipban-udp-v4-deny";
const DENY6: &str = "sipban-udp-v6-deny";

fn set_settings(
    table: &str,
    set4: &str,
    set6: &str,
    mode: Ownership,
    deny: Option<(&str, &str)>,
) -> SetSettings {
    let action4 = Action::parse(REJECT, false).expect("IPv4 action");
    SetSettings {
        bin_dir: String::new(),
        table: table.into(),
        set4: set4.into(),
        set6: set6.into(),
        scope: Scope::original(),
        action6: action4.to_ipv6(),
        action4,
        hook: Hook::Raw,
        mode,
        deny4: deny.map(|d| d.0.to_string()),
        deny6: deny.map(|d| d.1.to_string()),
    }
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Chain => "chain",
            Kind::Ipset { .. } => "ipset",
            Kind::Nft { .. } => "nftables",
        }
    }

    fn sets(self, s: SetSettings) -> Box<dyn Backend> {
        match self {
            Kind::Chain => panic!("the chain backend has no sets"),
            Kind::Ipset { spawn } => Box::new(IpsetBackend::with_runner(s, spawn)),
            Kind::Nft { spawn } => Box::new(NftBackend::with_runner(s, spawn)),
        }
    }

    /// Own mode with the original's scope `-p udp --dport 5060` (one rule per
    /// set: the deny logic, not the ports, is tested here), rule
    /// REJECT (which raw turns into DROP for the set backends).
    fn own(self) -> Box<dyn Backend> {
        match self {
            Kind::Chain => {
                let action_v4 = Action::parse(REJECT, false).expect("IPv4 action");
                Box::new(ChainBackend::new(ChainSettings {
                    path: String::new(),
                    chain: CHAIN.into(),
                    scope: Scope::original(),
                    action_v6: action_v4.to_ipv6(),
                    action_v4,
                }))
            }
            _ => self.sets(set_settings(
                "inet sipban",
                SET4,
                SET6,
                Ownership::Own,
                None,
            )),
        }
    }

    /// Whether the kernel answers a denied source with an ICMP error.
    fn rejects(self) -> bool {
        self == Kind::Chain
    }
}

/// `tool -S chain` (filter table), `None` if the chain does not exist.
fn chain_rules(tool: &str, chain: &str) -> Option<Vec<String>> {
    let out = run(tool, &["-w", "-S", chain]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// The source network of an iptables `-s NET` rule.
fn source(rule: &str) -> Option<IpNet> {
    let mut w = rule.split_whitespace();
    w.find(|x| *x == "-s")?;
    Some(net(w.next()?))
}

/// `ipset list NAME`, `None` if the set does not exist.
fn ipset_list(set: &str) -> Option<String> {
    let out = run("ipset", &["list", set]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `nft -j list set inet sipban NAME` (or another table), `None` if the set
/// does not exist.
fn nft_set(table: &str, set: &str) -> Option<Value> {
    let mut args = vec!["-j", "list", "set"];
    args.extend(table.split_whitespace());
    args.push(set);
    let out = run("nft", &args);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    v["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .find_map(|i| i.get("set").cloned())
}

/// Elements of an interval set in `nft -j` output; of our own deny sets
/// (address . protocol) the address part, every protocol checked.
fn nft_elements(set: &Value) -> Vec<IpNet> {
    set["elem"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| match e.get("concat") {
            Some(c) => {
                assert_eq!(c[1], serde_json::json!({"range": [0, 255]}), "{e}");
                &c[0]
            }
            None => e,
        })
        .map(|e| match e.as_str() {
            Some(s) => net(s),
            None => {
                let p = &e["prefix"];
                net(&format!(
                    "{}/{}",
                    p["addr"].as_str().expect("prefix addr"),
                    p["len"]
                ))
            }
        })
        .collect()
}

/// Lines of `nft list chain inet sipban sipban`, `None` if it is not there.
fn nft_chain_lines() -> Option<Vec<String>> {
    let out = run("nft", &["list", "chain", "inet", "sipban", "sipban"]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    })
}

/// The deny entries of one family in the kernel, sorted; `None` when the
/// family's deny object (chain or set) does not exist. Checks the object's
/// shape on the way.
fn deny_held(kind: Kind, v6: bool) -> Option<Vec<IpNet>> {
    match kind {
        Kind::Chain => {
            let tool = if v6 { "ip6tables" } else { "iptables" };
            let rules = chain_rules(tool, DENY_CHAIN)?;
            let action = if v6 {
                "REJECT --reject-with icmp6-port-unreachable"
            } else {
                REJECT
            };
            let mut held = Vec::new();
            for r in rules.iter().filter(|r| r.starts_with("-A ")) {
                let n = source(r).unwrap_or_else(|| panic!("{tool} deny rule {r}"));
                assert_eq!(
                    *r,
                    format!("-A {DENY_CHAIN} -s {n} -j {action}"),
                    "{tool} -S {DENY_CHAIN}"
                );
                held.push(n);
            }
            Some(sorted_nets(held))
        }
        Kind::Ipset { .. } => {
            let set = if v6 { DENY6 } else { DENY4 };
            let listing = ipset_list(set)?;
            assert!(listing.contains("Type: hash:net"), "{listing}");
            let family = if v6 { "family inet6 " } else { "family inet " };
            assert!(listing.contains(family), "{listing}");
            assert!(
                !listing.contains(" timeout "),
                "deny set with timeouts: {listing}"
            );
            let members = listing
                .split("Members:")
                .nth(1)
                .expect("Members: in ipset list");
            Some(sorted_nets(
                members
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(net)
                    .collect(),
            ))
        }
        Kind::Nft { .. } => {
            let set = nft_set("inet sipban", if v6 { DENY6 } else { DENY4 });
            if !v6 && set.is_none() {
                assert_eq!(nft_prefilter(), None, "a prefilter without its deny set");
            }
            let set = set?;
            let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
            assert_eq!(set["type"], serde_json::json!([ty, "inet_proto"]), "{set}");
            assert_eq!(set["flags"], serde_json::json!(["interval"]), "{set}");
            let held = sorted_nets(nft_elements(&set));
            if !v6 {
                assert_eq!(
                    nft_prefilter(),
                    Some(first_16_bits(&held)),
                    "the IPv4 prefilter against the deny entries {held:?}"
                );
            }
            Some(held)
        }
    }
}

/// The values of our IPv4 deny set's prefilter, `None` if it does not
/// exist.
fn nft_prefilter() -> Option<Vec<u64>> {
    let set = nft_set("inet sipban", &format!("{DENY4}-hi16"))?;
    assert_eq!(set["type"], "integer", "{set}");
    let mut v: Vec<u64> = set["elem"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_u64().expect("an integer element"))
        .collect();
    v.sort_unstable();
    Some(v)
}

/// The first 16 bits of every address in `nets` (IPv4), sorted.
fn first_16_bits(nets: &[IpNet]) -> Vec<u64> {
    let mut v: Vec<u64> = nets
        .iter()
        .filter_map(|n| match n {
            IpNet::V4(n) => Some(n),
            IpNet::V6(_) => None,
        })
        .flat_map(|n| (u32::from(n.network()) >> 16)..=(u32::from(n.broadcast()) >> 16))
        .map(u64::from)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The rules sending traffic to a family's deny entries: the jump in our
/// chain (which must sit just before its RETURN), the `--match-set` rules,
/// the nftables rules.
fn deny_wiring(kind: Kind, v6: bool) -> usize {
    match kind {
        Kind::Chain => {
            let tool = if v6 { "ip6tables" } else { "iptables" };
            let rules = chain_rules(tool, CHAIN).expect("our chain exists");
            let jump = format!("-A {CHAIN} -j {DENY_CHAIN}");
            let n = rules.iter().filter(|r| **r == jump).count();
            if n > 0 {
                let len = rules.len();
                assert_eq!(
                    rules[len - 2..],
                    [jump, format!("-A {CHAIN} -j RETURN")],
                    "{tool} -S {CHAIN}: the jump to the deny chain is not just before RETURN"
                );
            }
            n
        }
        Kind::Ipset { .. } => {
            let (tool, set) = if v6 {
                ("ip6tables", DENY6)
            } else {
                ("iptables", DENY4)
            };
            let want = format!(
                "-A PREROUTING -p udp -m udp --dport 5060 -m set --match-set {set} src -j DROP"
            );
            let mut n = 0;
            for (table, chain) in [("raw", "PREROUTING"), ("filter", "INPUT")] {
                for l in run_ok(tool, &["-w", "-t", table, "-S", chain]).lines() {
                    if l.contains(&format!("--match-set {set} src")) {
                        assert_eq!(l, want, "{tool} -t {table} -S {chain}");
                        n += 1;
                    }
                }
            }
            n
        }
        Kind::Nft { .. } => {
            let (fam, set) = if v6 { ("ip6", DENY6) } else { ("ip", DENY4) };
            // IPv4: the prefilter of the first 16 bits goes first.
            let pre = if v6 {
                String::new()
            } else {
                format!("@nh,96,16 @{set}-hi16 ")
            };
            let want = format!("udp dport 5060 {pre}{fam} saddr . meta l4proto @{set} drop");
            nft_chain_lines()
                .expect("our chain exists")
                .iter()
                .filter(|l| **l == want)
                .count()
        }
    }
}

/// The kernel's deny entries are exactly `want4` / `want6`, each family
/// with entries wired by exactly one rule, a family without entries with no
/// deny object at all.
fn assert_denied(kind: Kind, want4: &[&str], want6: &[&str]) {
    for (v6, want) in [(false, want4), (true, want6)] {
        let fam = if v6 { "IPv6" } else { "IPv4" };
        if want.is_empty() {
            assert_eq!(
                deny_held(kind, v6),
                None,
                "{}: {fam} deny object left",
                kind.name()
            );
            assert_eq!(
                deny_wiring(kind, v6),
                0,
                "{}: {fam} deny rule left",
                kind.name()
            );
        } else {
            assert_eq!(
                deny_held(kind, v6),
                Some(sorted_nets(nets(want))),
                "{}: {fam} deny entries",
                kind.name()
            );
            assert_eq!(
                deny_wiring(kind, v6),
                1,
                "{}: {fam} deny rule count",
                kind.name()
            );
        }
    }
}

/// The timed bans in the kernel, sorted.
fn bans_held(kind: Kind) -> Vec<IpAddr> {
    let mut out = Vec::new();
    match kind {
        Kind::Chain => {
            for tool in ["iptables", "ip6tables"] {
                let rules = chain_rules(tool, CHAIN).expect("our chain exists");
                out.extend(rules.iter().filter_map(|r| source(r)).map(|n| n.addr()));
            }
        }
        Kind::Ipset { .. } => {
            for set in [SET4, SET6] {
                for l in run_ok("ipset", &["save", set]).lines() {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    if w.first() == Some(&"add") {
                        out.push(ip(w[2]));
                    }
                }
            }
        }
        Kind::Nft { .. } => {
            for set in [SET4, SET6] {
                let s = nft_set("inet sipban", set).expect("ban set exists");
                for e in s["elem"].as_array().into_iter().flatten() {
                    let v = e.as_str().or_else(|| e["elem"]["val"].as_str());
                    out.push(ip(v.expect("element address")));
                }
            }
        }
    }
    sorted(out)
}

/// None of our objects is left anywhere.
fn assert_all_gone(kind: Kind) {
    for tool in ["iptables-save", "ip6tables-save"] {
        let saved = run_ok(tool, &[]);
        assert!(
            !saved.contains("sipban"),
            "{}: {tool} still mentions sipban:\n{saved}",
            kind.name()
        );
    }
    let sets = run_ok("ipset", &["list", "-n"]);
    assert!(!sets.contains("sipban"), "ipsets left: {sets}");
    let ruleset = run_ok("nft", &["list", "ruleset"]);
    assert!(!ruleset.contains("sipban"), "nft ruleset:\n{ruleset}");
}

/// Someone removes the deny objects: the IPv4 ones entirely (rule/jump and
/// set/chain), the IPv6 ones emptied.
fn sabotage_deny(kind: Kind) {
    match kind {
        Kind::Chain => {
            run_ok("iptables", &["-w", "-D", CHAIN, "-j", DENY_CHAIN]);
            run_ok("iptables", &["-w", "-F", DENY_CHAIN]);
            run_ok("iptables", &["-w", "-X", DENY_CHAIN]);
            run_ok("ip6tables", &["-w", "-F", DENY_CHAIN]);
        }
        Kind::Ipset { .. } => {
            let rule = format!(
                "PREROUTING -p udp -m udp --dport 5060 -m set --match-set {DENY4} src -j DROP"
            );
            let mut args = vec!["-w", "-t", "raw", "-D"];
            args.extend(rule.split_whitespace());
            run_ok("iptables", &args);
            run_ok("ipset", &["destroy", DENY4]);
            run_ok("ipset", &["flush", DENY6]);
        }
        Kind::Nft { .. } => {
            let v: Value = serde_json::from_str(&run_ok(
                "nft",
                &["-j", "list", "chain", "inet", "sipban", "sipban"],
            ))
            .unwrap();
            let needle = format!("\"@{DENY4}\"");
            let handle = v["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|i| i.get("rule"))
                .find(|r| r["expr"].to_string().contains(&needle))
                .and_then(|r| r["handle"].as_u64())
                .expect("the IPv4 deny rule");
            nft_script(&format!(
                "delete rule inet sipban sipban handle {handle}\n\
                 delete set inet sipban {DENY4}\n\
                 delete set inet sipban {DENY4}-hi16\n\
                 flush set inet sipban {DENY6}\n"
            ));
        }
    }
}

/// Someone removes everything of ours: table, sets, rules, chains.
fn sabotage_everything(kind: Kind) {
    match kind {
        Kind::Chain => {
            for tool in ["iptables", "ip6tables"] {
                run_ok(tool, &["-w", "-F", "INPUT"]);
                run_ok(tool, &["-w", "-F", CHAIN]);
                run_ok(tool, &["-w", "-F", DENY_CHAIN]);
                run_ok(tool, &["-w", "-X", DENY_CHAIN]);
                run_ok(tool, &["-w", "-X", CHAIN]);
            }
        }
        Kind::Ipset { .. } => {
            for tool in ["iptables", "ip6tables"] {
                run_ok(tool, &["-w", "-t", "raw", "-F", "PREROUTING"]);
            }
            for set in [SET4, SET6, DENY4, DENY6] {
                run_ok("ipset", &["destroy", set]);
            }
        }
        Kind::Nft { .. } => {
            run_ok("nft", &["delete", "table", "inet", "sipban"]);
        }
    }
}

/// Runs each scenario once per backend.
macro_rules! each_backend {
    ($($scenario:ident),* $(,)?) => {
        mod chain {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Chain)
            })*
        }
        each_set_backend!($($scenario),*);
    };
}

/// Runs each scenario once per set backend (set-only mode).
macro_rules! each_set_backend {
    ($($scenario:ident),* $(,)?) => {
        mod ipset {
            $(#[test]
            fn $scenario() {
                super::$scenario(super::Kind::Ipset { spawn: false })
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
                super::$scenario(super::Kind::Nft { spawn: false })
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
    deny_entries_are_enforced_apart_from_the_bans,
    deny_drift_is_repaired_with_the_last_list,
    stale_deny_entries_of_a_crashed_run_are_taken_over,
    denied_network_is_cut_off_on_the_wire,
    the_allow_list_wins_over_the_deny_list_on_the_wire,
    a_large_deny_list_is_replaced_in_one_go,
);

mod set_only {
    each_set_backend!(
        without_deny_sets_set_denied_is_ok_and_creates_nothing,
        fills_the_administrators_deny_sets_and_nothing_else,
        init_fails_without_the_configured_deny_sets,
    );
    use super::{
        Kind, fills_the_administrators_deny_sets_and_nothing_else,
        init_fails_without_the_configured_deny_sets,
        without_deny_sets_set_denied_is_ok_and_creates_nothing,
    };
}

// ---------------------------------------------------------------------------
// 1. Enforced, apart from the bans, replaced, cleared, removed on shutdown
// ---------------------------------------------------------------------------

fn deny_entries_are_enforced_apart_from_the_bans(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own()).await.expect("backend starts");
        fw.add(ip(V4), MIN);
        fw.add(ip(V6), MIN);
        fw.sync().await;
        // Nothing denied yet: no deny object at all.
        assert_denied(kind, &[], &[]);
        // An empty list at start (no deny list) creates nothing either.
        fw.set_denied(Vec::new()).await.expect("empty deny list");
        assert_denied(kind, &[], &[]);

        fw.set_denied(nets(LIST)).await.expect("set_denied");
        assert_denied(kind, LIST4, LIST6);
        // The bans are untouched, and list() knows nothing of deny entries.
        assert_eq!(bans_held(kind), sorted(vec![ip(V4), ip(V6)]));
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip(V4), ip(V6)])
        );

        // A ban added after the deny entries lands with the bans.
        fw.add(ip("203.0.113.8"), MIN);
        fw.sync().await;
        assert_eq!(
            sorted(fw.list().await.expect("list")),
            sorted(vec![ip(V4), ip("203.0.113.8"), ip(V6)])
        );
        assert_denied(kind, LIST4, LIST6);

        // Reconciling the bans to nothing removes the bans only.
        let report = fw.reconcile(Vec::new()).await.expect("reconcile");
        assert_eq!((report.added, report.removed), (0, 3), "{report:?}");
        assert!(report.repaired.is_empty(), "{report:?}");
        assert_eq!(bans_held(kind), Vec::<IpAddr>::new());
        assert_denied(kind, LIST4, LIST6);
        assert!(
            fw.reconcile(Vec::new()).await.expect("reconcile").in_sync(),
            "deny entries must not look like drift"
        );

        // Setting the same list again changes nothing.
        fw.set_denied(nets(LIST)).await.expect("same list again");
        assert_denied(kind, LIST4, LIST6);

        // A new list replaces the old: dropped entries go, new ones come.
        fw.set_denied(nets(&["192.0.2.9", "192.0.2.128/25", "2001:db8:6::/64"]))
            .await
            .expect("replace");
        assert_denied(
            kind,
            &["192.0.2.9/32", "192.0.2.128/25"],
            &["2001:db8:6::/64"],
        );

        // Only one family left: the other family's objects go.
        fw.set_denied(nets(&["2001:db8:7::1"]))
            .await
            .expect("IPv6 only");
        assert_denied(kind, &[], &["2001:db8:7::1/128"]);
        fw.set_denied(nets(&["192.0.2.0/24"]))
            .await
            .expect("IPv4 only");
        assert_denied(kind, &["192.0.2.0/24"], &[]);

        // Empty clears.
        fw.set_denied(Vec::new()).await.expect("clear");
        assert_denied(kind, &[], &[]);

        // Shutdown removes all, deny entries included.
        fw.set_denied(nets(LIST)).await.expect("set_denied");
        fw.add(ip(V4), MIN);
        fw.sync().await;
        fw.shutdown().await.expect("shutdown");
        assert_all_gone(kind);
        assert!(matches!(
            fw.set_denied(nets(LIST)).await,
            Err(FirewallError::Stopped)
        ));
    });
}

// ---------------------------------------------------------------------------
// 2. Drift
// ---------------------------------------------------------------------------

fn deny_drift_is_repaired_with_the_last_list(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own()).await.expect("backend starts");
        let bans = vec![(ip(V4), MIN), (ip(V6), MIN)];
        assert_eq!(
            fw.reconcile(bans.clone()).await.expect("reconcile").added,
            2
        );
        // An older list, then the one in force.
        fw.set_denied(nets(&["192.0.2.0/24", "2001:db8:9::/48"]))
            .await
            .expect("set_denied");
        fw.set_denied(nets(LIST)).await.expect("set_denied");
        assert!(
            fw.reconcile(bans.clone())
                .await
                .expect("reconcile")
                .in_sync()
        );

        // The deny objects removed by hand: the check puts back the last
        // list, and reports it.
        sabotage_deny(kind);
        assert_eq!(
            deny_held(kind, false),
            None,
            "sabotage left the IPv4 deny object"
        );
        let report = fw.reconcile(bans.clone()).await.expect("reconcile repairs");
        assert!(!report.repaired.is_empty(), "{report:?}");
        assert!(
            report.repaired.iter().any(|r| r.contains("deny")),
            "repaired {:?} does not name the deny objects",
            report.repaired
        );
        assert_eq!((report.added, report.removed), (0, 0), "{report:?}");
        assert_denied(kind, LIST4, LIST6);
        assert_eq!(bans_held(kind), sorted(vec![ip(V4), ip(V6)]));
        let report = fw.reconcile(bans.clone()).await.expect("reconcile");
        assert!(report.in_sync(), "after the repair: {report:?}");

        // One deny entry removed, a stranger added.
        match kind {
            Kind::Chain => {
                run_ok(
                    "iptables",
                    &[
                        "-w",
                        "-D",
                        DENY_CHAIN,
                        "-s",
                        "192.0.2.9/32",
                        "-j",
                        "REJECT",
                        "--reject-with",
                        "icmp-port-unreachable",
                    ],
                );
                run_ok(
                    "ip6tables",
                    &[
                        "-w",
                        "-A",
                        DENY_CHAIN,
                        "-s",
                        "2001:db8:77::/48",
                        "-j",
                        "DROP",
                    ],
                );
            }
            Kind::Ipset { .. } => {
                run_ok("ipset", &["del", DENY4, "192.0.2.9"]);
                run_ok("ipset", &["add", DENY6, "2001:db8:77::/48"]);
            }
            Kind::Nft { .. } => {
                run_ok(
                    "nft",
                    &[
                        "delete",
                        "element",
                        "inet",
                        "sipban",
                        DENY4,
                        "{ 192.0.2.9 . 0-255 }",
                    ],
                );
                run_ok(
                    "nft",
                    &[
                        "add",
                        "element",
                        "inet",
                        "sipban",
                        DENY6,
                        "{ 2001:db8:77::/48 . 0-255 }",
                    ],
                );
            }
        }
        let report = fw.reconcile(bans.clone()).await.expect("reconcile");
        assert!(!report.repaired.is_empty(), "{report:?}");
        assert_denied(kind, LIST4, LIST6);

        // nftables: the IPv4 prefilter emptied (every IPv4 deny entry
        // silently lost) is drift too.
        if let Kind::Nft { .. } = kind {
            nft_script(&format!("flush set inet sipban {DENY4}-hi16\n"));
            let report = fw.reconcile(bans.clone()).await.expect("reconcile");
            assert!(
                report.repaired.iter().any(|r| r.contains("-hi16")),
                "{report:?}"
            );
            assert_denied(kind, LIST4, LIST6);
        }

        // Everything of ours removed: bans and deny entries come back.
        sabotage_everything(kind);
        let report = fw.reconcile(bans.clone()).await.expect("reconcile repairs");
        assert_eq!(report.added, 2, "{report:?}");
        assert_denied(kind, LIST4, LIST6);
        assert_eq!(bans_held(kind), sorted(vec![ip(V4), ip(V6)]));
        assert!(
            fw.reconcile(bans.clone())
                .await
                .expect("reconcile")
                .in_sync()
        );

        fw.shutdown().await.expect("shutdown");
        assert_all_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 3. Takeover after a crash
// ---------------------------------------------------------------------------

fn stale_deny_entries_of_a_crashed_run_are_taken_over(kind: Kind) {
    in_private_netns(async move {
        let first = Firewall::start(kind.own()).await.expect("first run starts");
        first.add(ip(V4), MIN);
        first.set_denied(nets(LIST)).await.expect("set_denied");
        assert_denied(kind, LIST4, LIST6);
        drop(first); // kill -9

        let fw = Firewall::start(kind.own())
            .await
            .expect("second run takes over");
        // The crashed run's deny entries are gone until the list in force
        // is given; no duplicate objects or rules.
        assert_denied(kind, &[], &[]);
        fw.set_denied(nets(&["198.51.100.0/24", "2001:db8:5::/48"]))
            .await
            .expect("set_denied");
        assert_denied(kind, &["198.51.100.0/24"], &["2001:db8:5::/48"]);
        fw.shutdown().await.expect("shutdown");
        assert_all_gone(kind);
    });
}

/// `n` distinct entries: IPv4 /32s in 10.0.0.0/8 starting at `from`, every
/// tenth a /24 holding the next ones (so overlaps too), then IPv6 /64s.
fn large_list(n: u32, from: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            let k = from + i;
            if i % 4 == 3 {
                let a = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x100, k as u16, 0, 0, 0, 0);
                IpNet::new(IpAddr::V6(a), 64).unwrap()
            } else {
                let a = std::net::Ipv4Addr::from(0x0a00_0000 + k * 3);
                let len = if i % 10 == 0 { 24 } else { 32 };
                IpNet::new(IpAddr::V4(a), len).unwrap().trunc()
            }
        })
        .collect()
}

fn a_large_deny_list_is_replaced_in_one_go(kind: Kind) {
    in_private_netns(async move {
        let fw = Firewall::start(kind.own()).await.expect("backend starts");
        fw.add(ip(V4), MIN);
        let first = large_list(20_000, 0);
        let want = sipban::firewall::DenyList::new(&first);
        let started = Instant::now();
        fw.set_denied(first.clone()).await.expect("20k entries");
        let took = started.elapsed();
        for v6 in [false, true] {
            assert_eq!(
                deny_held(kind, v6),
                Some(sorted_nets(want.family(v6).to_vec())),
                "{}: {} entries",
                kind.name(),
                if v6 { "IPv6" } else { "IPv4" }
            );
        }
        assert!(
            took < Duration::from_secs(30),
            "{}: 20k deny entries took {took:?}",
            kind.name()
        );
        // Half of it again plus 10k new.
        let second = large_list(20_000, 10_000);
        let want = sipban::firewall::DenyList::new(&second);
        fw.set_denied(second).await.expect("replace");
        for v6 in [false, true] {
            assert_eq!(
                deny_held(kind, v6),
                Some(sorted_nets(want.family(v6).to_vec()))
            );
        }
        assert!(fw.reconcile(vec![(ip(V4), MIN)]).await.unwrap().in_sync());
        assert_eq!(fw.list().await.expect("list"), vec![ip(V4)]);
        fw.shutdown().await.expect("shutdown");
        assert_all_gone(kind);
    });
}

// ---------------------------------------------------------------------------
// 4. Set-only mode
// ---------------------------------------------------------------------------

/// The administrator's ruleset: ban sets `blocked4`/`blocked6` and, with
/// `deny`, deny sets `denied4`/`denied6`, wired into rules of their own.
fn admin_ruleset(kind: Kind, deny: bool) {
    match kind {
        Kind::Chain => unreachable!("no set-only mode"),
        Kind::Ipset { .. } => {
            let mut sets = vec![
                ("blocked4", "hash:ip", "inet"),
                ("blocked6", "hash:ip", "inet6"),
            ];
            if deny {
                sets.push(("denied4", "hash:net", "inet"));
                sets.push(("denied6", "hash:net", "inet6"));
            }
            for (set, ty, family) in sets {
                let mut args = vec!["create", set, ty, "family", family];
                if ty == "hash:ip" {
                    args.extend(["timeout", "0"]);
                }
                run_ok("ipset", &args);
                let tool = if family == "inet" {
                    "iptables"
                } else {
                    "ip6tables"
                };
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
            let deny_sets = if deny {
                "\tset denied4 { type ipv4_addr; flags interval; }\n\
                 \tset denied6 { type ipv6_addr; flags interval; }\n"
            } else {
                ""
            };
            let deny_rules = if deny {
                "\t\tip saddr @denied4 drop\n\t\tip6 saddr @denied6 drop\n"
            } else {
                ""
            };
            nft_script(&format!(
                "table inet filter {{\n\
                 \tset blocked4 {{ type ipv4_addr; flags timeout; }}\n\
                 \tset blocked6 {{ type ipv6_addr; flags timeout; }}\n\
                 {deny_sets}\
                 \tchain input {{\n\
                 \t\ttype filter hook input priority filter; policy accept;\n\
                 \t\ttcp dport 22 accept\n\
                 \t\tip saddr @blocked4 drop\n\
                 \t\tip6 saddr @blocked6 drop\n\
                 {deny_rules}\
                 \t}}\n\
                 }}\n"
            ));
        }
    }
}

fn set_only(kind: Kind, deny: Option<(&str, &str)>) -> Box<dyn Backend> {
    kind.sets(set_settings(
        "inet filter",
        "blocked4",
        "blocked6",
        Ownership::SetOnly,
        deny,
    ))
}

/// Entries of one of the administrator's sets, sorted.
fn admin_set(kind: Kind, set: &str) -> Vec<IpNet> {
    let held = match kind {
        Kind::Chain => unreachable!("no set-only mode"),
        Kind::Ipset { .. } => run_ok("ipset", &["save", set])
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.first() == Some(&"add")).then(|| net(w[2]))
            })
            .collect(),
        Kind::Nft { .. } => {
            let s = nft_set("inet filter", set).unwrap_or_else(|| panic!("set {set}"));
            s["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| match e.as_str().or_else(|| e["elem"]["val"].as_str()) {
                    Some(a) => net(a),
                    None => nft_elements(&serde_json::json!({ "elem": [e] }))[0],
                })
                .collect()
        }
    };
    sorted_nets(held)
}

fn without_deny_sets_set_denied_is_ok_and_creates_nothing(kind: Kind) {
    capture_logs();
    in_private_netns(async move {
        admin_ruleset(kind, false);
        let before = ruleset_snapshot();
        let fw = Firewall::start(set_only(kind, None))
            .await
            .expect("set-only backend starts");
        fw.add(ip(V4), MIN);
        fw.set_denied(nets(LIST))
            .await
            .expect("set-only without deny sets: Ok");
        fw.set_denied(nets(LIST)).await.expect("and again");
        assert_eq!(ruleset_snapshot(), before, "set_denied created something");
        assert_eq!(admin_set(kind, "blocked4"), nets(&["203.0.113.7/32"]));
        assert_eq!(admin_set(kind, "blocked6"), Vec::<IpNet>::new());
        assert!(
            logs().contains("deny entries are not enforced in the firewall"),
            "no warning logged"
        );
        fw.shutdown().await.expect("shutdown");
        assert_eq!(ruleset_snapshot(), before, "shutdown changed the ruleset");
        assert_eq!(admin_set(kind, "blocked4"), Vec::<IpNet>::new());
    });
}

fn fills_the_administrators_deny_sets_and_nothing_else(kind: Kind) {
    in_private_netns(async move {
        admin_ruleset(kind, true);
        let before = ruleset_snapshot();
        let fw = Firewall::start(set_only(kind, Some(("denied4", "denied6"))))
            .await
            .expect("set-only backend starts");
        fw.add(ip(V4), MIN);
        fw.set_denied(nets(LIST)).await.expect("set_denied");
        assert_eq!(admin_set(kind, "denied4"), nets(LIST4));
        assert_eq!(admin_set(kind, "denied6"), sorted_nets(nets(LIST6)));
        assert_eq!(
            ruleset_snapshot(),
            before,
            "set_denied changed more than the sets"
        );
        assert_eq!(fw.list().await.expect("list"), vec![ip(V4)]);

        fw.set_denied(nets(&["192.0.2.9", "2001:db8:6::/64"]))
            .await
            .expect("replace");
        assert_eq!(admin_set(kind, "denied4"), nets(&["192.0.2.9/32"]));
        assert_eq!(admin_set(kind, "denied6"), nets(&["2001:db8:6::/64"]));

        // Emptied by hand: the check fills it again.
        match kind {
            Kind::Ipset { .. } => {
                run_ok("ipset", &["flush", "denied4"]);
            }
            _ => nft_script("flush set inet filter denied4\n"),
        }
        let report = fw.reconcile(vec![(ip(V4), MIN)]).await.expect("reconcile");
        assert!(
            report.repaired.iter().any(|r| r.contains("denied4")),
            "{report:?}"
        );
        assert_eq!(admin_set(kind, "denied4"), nets(&["192.0.2.9/32"]));
        assert!(fw.reconcile(vec![(ip(V4), MIN)]).await.unwrap().in_sync());

        fw.set_denied(Vec::new()).await.expect("clear");
        assert_eq!(admin_set(kind, "denied4"), Vec::<IpNet>::new());
        assert_eq!(admin_set(kind, "denied6"), Vec::<IpNet>::new());
        fw.set_denied(nets(LIST)).await.expect("set_denied");

        fw.shutdown().await.expect("shutdown");
        assert_eq!(ruleset_snapshot(), before, "shutdown changed the ruleset");
        for set in ["blocked4", "denied4", "denied6"] {
            assert_eq!(
                admin_set(kind, set),
                Vec::<IpNet>::new(),
                "{set} after stop"
            );
        }
    });
}

fn init_fails_without_the_configured_deny_sets(kind: Kind) {
    in_private_netns(async move {
        admin_ruleset(kind, false);
        let before = ruleset_snapshot();
        let err = Firewall::start(set_only(kind, Some(("denied4", "denied6"))))
            .await
            .expect_err("set-only mode without its deny sets must not start");
        let msg = err.to_string();
        assert!(
            msg.contains("denied4") && msg.contains("does not exist"),
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
// 5. Real packets
// ---------------------------------------------------------------------------

const PBX4: &str = "10.9.0.1:5060";
const PBX6: &str = "[2001:db8::1]:5060";

/// A pbx and an attacker namespace joined by a veth pair: pbx has
/// 10.9.0.1/16 and 2001:db8::1/32; the attacker 10.9.1.7 (inside the
/// denied 10.9.1.0/24), 10.9.2.7 (outside it), 2001:db8:1::7 (inside the
/// denied 2001:db8:1::/48) and 2001:db8:2::7.
fn wire() -> (NamedNetns, NamedNetns) {
    netns::wire(
        "sd",
        &["10.9.0.1/16", "2001:db8::1/32"],
        &[
            "10.9.1.7/16",
            "10.9.2.7/16",
            "2001:db8:1::7/32",
            "2001:db8:2::7/32",
        ],
    )
}

/// Sockets inside and outside the denied networks, made on a thread inside
/// the attacker's namespace (sockets stay where they were created).
fn attacker_sockets(atk: &NamedNetns) -> [UdpSocket; 4] {
    netns::attacker_sockets(
        atk,
        PBX4.parse().unwrap(),
        PBX6.parse().unwrap(),
        ["10.9.1.7", "10.9.2.7", "2001:db8:1::7", "2001:db8:2::7"],
    )
}

fn listeners() -> (UdpSocket, UdpSocket) {
    netns::listeners(PBX4.parse().unwrap(), PBX6.parse().unwrap())
}

fn denied_network_is_cut_off_on_the_wire(kind: Kind) {
    let (pbx, atk) = wire();
    let [bad4, good4, bad6, good6] = attacker_sockets(&atk);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = listeners();
        let fw = Firewall::start(kind.own()).await.expect("backend starts");
        let silent = !kind.rejects();
        for (from, to, what) in [
            (&bad4, &listen4, "IPv4 inside"),
            (&good4, &listen4, "IPv4 outside"),
            (&bad6, &listen6, "IPv6 inside"),
            (&good6, &listen6, "IPv6 outside"),
        ] {
            assert_reaches(from, to, &format!("{what}, before the deny list"));
        }

        fw.set_denied(nets(&["10.9.1.0/24", "2001:db8:1::/48"]))
            .await
            .expect("set_denied");
        assert_blocked(&bad4, &listen4, silent, "inside the denied /24");
        assert_blocked(&bad6, &listen6, silent, "inside the denied /48");
        assert_reaches(&good4, &listen4, "a neighbour outside the denied /24");
        assert_reaches(&good6, &listen6, "a neighbour outside the denied /48");

        fw.set_denied(Vec::new()).await.expect("clear");
        assert_reaches(&bad4, &listen4, "after the deny list was cleared (IPv4)");
        assert_reaches(&bad6, &listen6, "after the deny list was cleared (IPv6)");

        // Shorter than /16: every /16 it covers in the nftables prefilter.
        fw.set_denied(nets(&["10.8.0.0/15"])).await.expect("a /15");
        assert_blocked(&bad4, &listen4, silent, "inside a denied /15");
        assert_blocked(&good4, &listen4, silent, "inside a denied /15");

        fw.set_denied(nets(&["10.9.1.7"]))
            .await
            .expect("a single address");
        assert_blocked(&bad4, &listen4, silent, "a denied /32");
        assert_reaches(&good4, &listen4, "beside a denied /32");
        fw.shutdown().await.expect("shutdown");
        assert_all_gone(kind);
        assert_reaches(&bad4, &listen4, "after shutdown");
    });
}

/// The allow list wins in the kernel as it does in the policy: the whole
/// daemon with a denied /16 (/32 for IPv6) and an allowed /24 (/48) inside
/// it; packets from the allowed network arrive, the rest of the denied one
/// is cut off.
fn the_allow_list_wins_over_the_deny_list_on_the_wire(kind: Kind) {
    use sipban::clock::Clock;
    use sipban::daemon::{Daemon, PolicySettings};
    use sipban::policy::Whitelist;
    use sipban::policy::detector::DetectorConfig;

    let (pbx, atk) = wire();
    let [allowed4, denied4, allowed6, denied6] = attacker_sockets(&atk);
    pbx.enter();
    runtime().block_on(async move {
        let (listen4, listen6) = listeners();
        // Every path works first (and the neighbour caches are warm, so a
        // REJECT's ICMP error is not held up by address resolution).
        for (from, to) in [
            (&allowed4, &listen4),
            (&denied4, &listen4),
            (&allowed6, &listen6),
            (&denied6, &listen6),
        ] {
            assert_reaches(from, to, "before the daemon");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let (allow, deny) = (dir.path().join("allow"), dir.path().join("deny"));
        std::fs::write(&allow, "10.9.1.0/24 office\n2001:db8:1::/48 office\n").unwrap();
        std::fs::write(&deny, "10.9.0.0/16\n2001:db8::/32\n").unwrap();
        let ami = support::FakeAmi::start().await;
        let settings = support::settings(&ami, &dir.path().join("dump"), Whitelist::default());
        let policy = PolicySettings {
            detector: DetectorConfig::default(),
            allow,
            deny,
        };
        let daemon = Daemon::start_with(
            settings,
            kind.own(),
            Clock::manual(1_800_000_000),
            Some(policy),
        )
        .await
        .expect("daemon starts");
        assert_reaches(&allowed4, &listen4, "the allowed /24 inside the denied /16");
        assert_reaches(&allowed6, &listen6, "the allowed /48 inside the denied /32");
        netns::assert_cut_off(&denied4, &listen4, "the denied /16 around it");
        netns::assert_cut_off(&denied6, &listen6, "the denied /32 around it");
        daemon.stop().await.expect("stop");
        assert_all_gone(kind);
    });
}
