//! The limits in iptables, for the ipset and chain backends, per family:
//! a chain of their own (`<chain>-limit`) jumped from the hook chain just
//! after our ban rules (a banned or denied source is dropped before it is
//! counted), whose first rule returns for the exempt networks (an ipset
//! `hash:net`, `<set>-allow`), then one hashlimit rule per protocol and
//! protection; SIP packets over the rate go to `<chain>-over`, which counts
//! them per source in an ipset with counters (`<set>-over`) and drops them.
//! The DNS protection is one rule at the top of filter INPUT (after
//! reassembly). Both chains are refilled in one `iptables-restore
//! --noflush` commit.
//!
//! ```text
//! -A sipban-udp-limit -m set --match-set sipban-udp-v4-allow src -j RETURN
//! -A sipban-udp-limit -p udp --dport 5060 -m hashlimit --hashlimit-above 50/sec --hashlimit-burst 100 --hashlimit-mode srcip --hashlimit-name sbs4-... -j sipban-udp-over
//! -A sipban-udp-over -m set --match-set sipban-udp-v4-over src -j DROP
//! -A sipban-udp-over -j SET --add-set sipban-udp-v4-over src
//! -A sipban-udp-over -j DROP
//! ```
//!
//! The element added by `SET` starts counting with the packet that added
//! it; adding it again (`--exist`) would reset its counter, hence the match
//! first and the add only for a new source.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;

use ipnet::IpNet;
use iptables::IPTables;

use super::{DNS_MAX_BYTES, Limits, OverLimitReader, RateLimit, tftp_ports};
use crate::firewall::exec::run;
use crate::firewall::ipset_tool::{self, MAX_NAME, fit, set_exists};
use crate::firewall::rule::Hook;
use crate::firewall::scope::Scope;
use crate::firewall::{Depth, FirewallError};

/// Longest iptables chain name.
const MAX_CHAIN: usize = 28;
/// How long an over-limit counter survives without excess (seconds).
const OVER_KEEP: &str = "120";
/// Sources the over-limit set holds.
const OVER_MAX: &str = "65536";

/// The DNS protection rule in filter INPUT.
fn dns_rule() -> String {
    format!(
        "-p udp --sport 53 -m length --length {}:65535 -j DROP",
        DNS_MAX_BYTES + 1
    )
}

/// The limits of one backend, both families.
#[derive(Clone, Debug)]
pub struct IptLimits {
    pub scope: Scope,
    pub limits: Limits,
    pub hook: Hook,
    pub chain: String,
    pub over_chain: String,
    /// Per family (IPv4, IPv6): the exempt networks and the over-limit
    /// counts.
    pub allow: [String; 2],
    pub over: [String; 2],
    pub ipset: String,
}

impl IptLimits {
    /// `base`: our chain's name (`sipban-udp`); `sets`: the ban sets' names
    /// per family (`sipban-udp-v4`, `sipban-udp-v6`), which the limits'
    /// sets are named after.
    pub fn new(
        base: &str,
        sets: [&str; 2],
        scope: Scope,
        limits: Limits,
        hook: Hook,
        ipset: String,
    ) -> IptLimits {
        IptLimits {
            chain: fit(base, "limit", MAX_CHAIN),
            over_chain: fit(base, "over", MAX_CHAIN),
            allow: sets.map(|s| fit(s, "allow", MAX_NAME)),
            over: sets.map(|s| fit(s, "over", MAX_NAME)),
            scope,
            limits,
            hook,
            ipset,
        }
    }

    fn table_hook(&self) -> (&'static str, &'static str) {
        match self.hook {
            Hook::Raw => ("raw", "PREROUTING"),
            Hook::Filter => ("filter", "INPUT"),
        }
    }

    fn fam(v6: bool) -> usize {
        usize::from(v6)
    }

    /// hashlimit table names: 15 bytes at most, one per protection and
    /// family and settings (a table keeps the settings it was made with,
    /// so changed settings get a fresh one).
    fn hashlimit_name(kind: char, v6: bool, limit: &RateLimit) -> String {
        let key = format!("{kind}{v6}{}{}", limit.rate, limit.burst);
        // FNV-1a: stable across runs and builds.
        let mut h: u32 = 0x811c_9dc5;
        for b in key.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        format!("sb{kind}{}-{:08x}", if v6 { 6 } else { 4 }, h)
    }

    /// The rules of the limit and over chains, as `-A CHAIN ...` lines.
    pub fn chain_rules(&self, v6: bool) -> (Vec<String>, Vec<String>) {
        let l = &self.limits;
        let f = Self::fam(v6);
        let mut limit = Vec::new();
        let line = |chain: &str, args: &[String]| format!("-A {chain} {}", args.join(" "));
        if l.per_source() {
            limit.push(format!(
                "-A {} -m set --match-set {} src -j RETURN",
                self.chain, self.allow[f]
            ));
        }
        if let (Some(rl), Some(tcp)) = (&l.tcp_connect, self.scope.sip.tcp()) {
            for mut args in self.scope.ipt_for(tcp) {
                args.push("--syn".into());
                args.extend(rl.ipt(&Self::hashlimit_name('c', v6, rl)));
                args.extend(["-j".into(), "DROP".into()]);
                limit.push(line(&self.chain, &args));
            }
        }
        if let Some(rl) = &l.sip {
            let target = if l.counted() {
                self.over_chain.clone()
            } else {
                "DROP".into()
            };
            for mut args in self.scope.ipt_sip_matches() {
                args.extend(rl.ipt(&Self::hashlimit_name('s', v6, rl)));
                args.extend(["-j".into(), target.clone()]);
                limit.push(line(&self.chain, &args));
            }
        }
        if let Some(rl) = &l.tftp {
            for mut args in self.scope.ipt_for(&tftp_ports()) {
                args.extend(rl.ipt(&Self::hashlimit_name('t', v6, rl)));
                args.extend(["-j".into(), "DROP".into()]);
                limit.push(line(&self.chain, &args));
            }
        }
        let mut over = Vec::new();
        if l.counted() {
            let set = &self.over[f];
            let c = &self.over_chain;
            over.push(format!("-A {c} -m set --match-set {set} src -j DROP"));
            over.push(format!("-A {c} -j SET --add-set {set} src"));
            over.push(format!("-A {c} -j DROP"));
        }
        (limit, over)
    }

    /// Creates this family's objects (sets, chains, jump, DNS rule) with
    /// the exempt set holding `allow`; `ours` tells our rules in the hook
    /// chain, which the jump goes after.
    pub fn install(
        &self,
        ipt: &IPTables,
        v6: bool,
        allow: &[IpNet],
        ours: &dyn Fn(&str) -> bool,
    ) -> Result<(), FirewallError> {
        if !self.limits.any() {
            return Ok(());
        }
        let f = Self::fam(v6);
        let family = if v6 { "inet6" } else { "inet" };
        if self.limits.per_source() {
            ipset_tool::swap_fill(&self.ipset, &self.allow[f], family, allow)?;
        }
        if self.limits.counted() && !set_exists(&self.ipset, &self.over[f]) {
            run(
                &self.ipset,
                &[
                    "create",
                    &self.over[f],
                    "hash:ip",
                    "family",
                    family,
                    "timeout",
                    OVER_KEEP,
                    "counters",
                    "maxelem",
                    OVER_MAX,
                ],
                None,
            )?;
        }
        let (limit, over) = self.chain_rules(v6);
        if !limit.is_empty() {
            let (table, hook) = self.table_hook();
            let mut script = format!("*{table}\n:{} - [0:0]\n", self.chain);
            if !over.is_empty() {
                let _ = writeln!(script, ":{} - [0:0]", self.over_chain);
            }
            for l in over.iter().chain(&limit) {
                let _ = writeln!(script, "{l}");
            }
            script.push_str("COMMIT\n");
            run(
                &format!("{}-restore", ipt.cmd),
                &["-w", "--noflush"],
                Some(script.as_bytes()),
            )?;
            let jump = format!("-j {}", self.chain);
            if !ipt
                .exists(table, hook, &jump)
                .map_err(err(format!("{} -C {hook} {jump}", ipt.cmd)))?
            {
                let pos = after_ours(ipt, table, hook, ours)?;
                ipt.insert(table, hook, &jump, pos).map_err(err(format!(
                    "{} -t {table} -I {hook} {pos} {jump}",
                    ipt.cmd
                )))?;
            }
        }
        if self.limits.dns {
            let rule = dns_rule();
            if !ipt
                .exists("filter", "INPUT", &rule)
                .map_err(err(format!("{} -C INPUT {rule}", ipt.cmd)))?
            {
                ipt.insert("filter", "INPUT", &rule, 1)
                    .map_err(err(format!("{} -I INPUT 1 {rule}", ipt.cmd)))?;
            }
        }
        Ok(())
    }

    /// Removes this family's objects, in either hook (an earlier run may
    /// have used the other); true if there was any.
    pub fn remove(&self, ipt: &IPTables, v6: bool) -> Result<bool, FirewallError> {
        let mut found = false;
        let fail = |what: String| err(format!("{} {what}", ipt.cmd));
        for (table, hook) in [("raw", "PREROUTING"), ("filter", "INPUT")] {
            let jump = format!("-j {}", self.chain);
            if ipt.exists(table, hook, &jump).unwrap_or(false) {
                found = true;
                ipt.delete_all(table, hook, &jump)
                    .map_err(fail(format!("-t {table} -D {hook} {jump}")))?;
            }
            for chain in [&self.chain, &self.over_chain] {
                if ipt.chain_exists(table, chain).unwrap_or(false) {
                    found = true;
                    ipt.flush_chain(table, chain)
                        .map_err(fail(format!("-t {table} -F {chain}")))?;
                }
            }
            for chain in [&self.chain, &self.over_chain] {
                if ipt.chain_exists(table, chain).unwrap_or(false) {
                    ipt.delete_chain(table, chain)
                        .map_err(fail(format!("-t {table} -X {chain}")))?;
                }
            }
        }
        let rule = dns_rule();
        if ipt.exists("filter", "INPUT", &rule).unwrap_or(false) {
            found = true;
            ipt.delete_all("filter", "INPUT", &rule)
                .map_err(fail(format!("-D INPUT {rule}")))?;
        }
        let f = Self::fam(v6);
        for set in [&self.allow[f], &self.over[f]] {
            if set_exists(&self.ipset, set) {
                found = true;
                run(&self.ipset, &["destroy", set], None)?;
            }
        }
        Ok(found)
    }

    /// What is missing or wrong in this family's objects (the exempt set's
    /// entries by count at [`Depth::Quick`]).
    pub fn drift(&self, ipt: &IPTables, v6: bool, allow: &[IpNet], depth: Depth) -> Vec<String> {
        let mut out = Vec::new();
        if !self.limits.any() {
            return out;
        }
        let f = Self::fam(v6);
        let (table, hook) = self.table_hook();
        let (limit, over) = self.chain_rules(v6);
        for (chain, want) in [(&self.chain, &limit), (&self.over_chain, &over)] {
            if want.is_empty() {
                continue;
            }
            match list(ipt, table, chain) {
                Some(rules)
                    if rules.iter().filter(|r| r.starts_with("-A ")).count() == want.len() => {}
                Some(_) => out.push(format!("{} rules of {chain}", ipt.cmd)),
                None => out.push(format!("{} chain {chain}", ipt.cmd)),
            }
        }
        if !limit.is_empty()
            && !ipt
                .exists(table, hook, &format!("-j {}", self.chain))
                .unwrap_or(false)
        {
            out.push(format!("{} jump to {}", ipt.cmd, self.chain));
        }
        if self.limits.dns && !ipt.exists("filter", "INPUT", &dns_rule()).unwrap_or(false) {
            out.push(format!("{} DNS protection rule", ipt.cmd));
        }
        if self.limits.per_source() {
            let want = crate::firewall::DenyList::new(allow);
            match ipset_tool::holds(&self.ipset, &self.allow[f], &want, v6, depth) {
                Ok(true) => {}
                Ok(false) => out.push(format!("entries of ipset {}", self.allow[f])),
                Err(_) => out.push(format!("ipset {}", self.allow[f])),
            }
        }
        if self.limits.counted() && !set_exists(&self.ipset, &self.over[f]) {
            out.push(format!("ipset {}", self.over[f]));
        }
        out
    }

    /// Makes the exempt set hold exactly `allow`.
    pub fn set_allowed(&self, v6: bool, allow: &[IpNet]) -> Result<(), FirewallError> {
        if !self.limits.per_source() {
            return Ok(());
        }
        let family = if v6 { "inet6" } else { "inet" };
        ipset_tool::swap_fill(&self.ipset, &self.allow[Self::fam(v6)], family, allow)
    }

    /// A reader of the over-limit counts (`ipv6`: whether ip6tables is
    /// there to count IPv6 ones).
    pub fn reader(&self, ipv6: bool) -> Option<Box<dyn OverLimitReader>> {
        let mut sets = vec![self.over[0].clone()];
        if ipv6 {
            sets.push(self.over[1].clone());
        }
        self.limits.counted().then(|| {
            Box::new(IpsetOverReader {
                ipset: self.ipset.clone(),
                sets,
            }) as Box<dyn OverLimitReader>
        })
    }
}

fn err(what: String) -> impl FnOnce(Box<dyn std::error::Error>) -> FirewallError {
    move |e| FirewallError::Command {
        what,
        detail: e.to_string().trim().to_string(),
    }
}

/// `iptables -t TABLE -S CHAIN`, `None` if it does not exist.
fn list(ipt: &IPTables, table: &str, chain: &str) -> Option<Vec<String>> {
    let out = Command::new(ipt.cmd)
        .args(["-w", "-t", table, "-S", chain])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
}

/// The position just after the last of our rules in `hook` (1 if none).
fn after_ours(
    ipt: &IPTables,
    table: &str,
    hook: &str,
    ours: &dyn Fn(&str) -> bool,
) -> Result<i32, FirewallError> {
    let rules = list(ipt, table, hook).ok_or_else(|| FirewallError::Command {
        what: format!("{} -t {table} -S {hook}", ipt.cmd),
        detail: "cannot list the chain".into(),
    })?;
    let appended: Vec<&String> = rules.iter().filter(|r| r.starts_with("-A ")).collect();
    let last = appended.iter().rposition(|r| ours(r)).map_or(0, |i| i + 1);
    Ok(i32::try_from(last + 1).unwrap_or(1))
}

/// Reads `<set>-over` with `ipset save`.
struct IpsetOverReader {
    ipset: String,
    sets: Vec<String>,
}

impl OverLimitReader for IpsetOverReader {
    fn read(&mut self) -> Result<Vec<(IpAddr, u64)>, FirewallError> {
        let mut out = Vec::new();
        for (i, set) in self.sets.iter().enumerate() {
            let saved = match run(&self.ipset, &["save", set], None) {
                Ok(saved) => saved,
                // No IPv6 counts where ip6tables is missing.
                Err(_) if i > 0 && !set_exists(&self.ipset, set) => continue,
                Err(e) => return Err(e),
            };
            out.extend(saved.lines().filter_map(|l| parse_count(l, set)));
        }
        Ok(out)
    }
}

/// `add SET 192.0.2.1 timeout 118 packets 899 bytes 26071`: the address
/// and its packets.
fn parse_count(line: &str, set: &str) -> Option<(IpAddr, u64)> {
    let mut w = line.split_whitespace();
    if w.next() != Some("add") || w.next() != Some(set) {
        return None;
    }
    let ip = w.next()?.parse::<IpAddr>().ok()?;
    let mut packets = None;
    while let Some(word) = w.next() {
        if word == "packets" {
            packets = w.next().and_then(|p| p.parse::<u64>().ok());
        }
    }
    Some((ip, packets?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::limits::Rate;

    #[test]
    fn chains_of_every_protection() {
        let l = IptLimits::new(
            "sipban-udp",
            ["sipban-udp-v4", "sipban-udp-v6"],
            Scope::default(),
            Limits {
                sip: Some(RateLimit::SIP),
                tftp: Some(RateLimit::TFTP),
                tcp_connect: Some(RateLimit {
                    rate: Rate::parse("5/second").unwrap(),
                    burst: 10,
                }),
                dns: true,
                ..Limits::default()
            },
            Hook::Raw,
            "ipset".into(),
        );
        let (limit, over) = l.chain_rules(false);
        assert_eq!(limit.len(), 5, "{limit:#?}");
        assert_eq!(
            limit[0],
            "-A sipban-udp-limit -m set --match-set sipban-udp-v4-allow src -j RETURN"
        );
        assert!(limit[1].starts_with("-A sipban-udp-limit -p tcp -m multiport --dports 5060,5061 --syn -m hashlimit --hashlimit-above 5/sec --hashlimit-burst 10 --hashlimit-mode srcip --hashlimit-name sbc4-"), "{}", limit[1]);
        assert!(limit[2].starts_with("-A sipban-udp-limit -p udp --dport 5060 -m hashlimit --hashlimit-above 50/sec --hashlimit-burst 100 "), "{}", limit[2]);
        assert!(limit[2].ends_with(" -j sipban-udp-over"), "{}", limit[2]);
        assert!(
            limit[4].contains("-p udp --dport 69 -m hashlimit --hashlimit-above 10/min"),
            "{}",
            limit[4]
        );
        assert_eq!(
            over,
            vec![
                "-A sipban-udp-over -m set --match-set sipban-udp-v4-over src -j DROP",
                "-A sipban-udp-over -j SET --add-set sipban-udp-v4-over src",
                "-A sipban-udp-over -j DROP",
            ]
        );
        // Names stay within hashlimit's 15 bytes.
        assert!(limit.iter().all(|r| {
            r.split_whitespace()
                .skip_while(|w| *w != "--hashlimit-name")
                .nth(1)
                .is_none_or(|n| n.len() <= 15)
        }));
    }

    #[test]
    fn counts_from_ipset_save() {
        assert_eq!(
            parse_count("add o4 192.0.2.1 timeout 118 packets 899 bytes 26071", "o4"),
            Some(("192.0.2.1".parse().unwrap(), 899))
        );
        assert_eq!(parse_count("add o4 192.0.2.1 timeout 118", "o4"), None);
        assert_eq!(parse_count("create o4 hash:ip family inet", "o4"), None);
        assert_eq!(parse_count("add o4 x packets 1", "o4"), None);
        assert_eq!(
            parse_count("add o6 2001:db8::1 packets 18446744073709551615", "o6").map(|c| c.1),
            Some(u64::MAX)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_save_lines_never_panic(line in "\\PC{0,80}") {
            let _ = parse_count(&line, "o4");
            let _ = parse_count(&format!("add o4 {line}"), "o4");
        }
    }
}
