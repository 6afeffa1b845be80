//! nftables backend: our own table (`inet sipban`) with one IPv4 and one
//! IPv6 set (`flags timeout`, per-element timeouts) and one chain hooked at
//! prerouting, raw priority by default. Each batch is one nftables
//! transaction, in-process through libnftables when available
//! ([`super::libnft`]).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::exec::{tool, works};
use super::libnft::Nft;
use super::rule::Hook;
use super::sets::{Ownership, SetSettings, kernel_timeout};
use super::{Backend, FirewallError};

/// Our chain inside our table.
const CHAIN: &str = "sipban";
/// Elements per `add element` statement (one transaction holds them all).
const CHUNK: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Add(Duration),
    /// Present already: delete + add in one transaction renews the timeout.
    Refresh(Duration),
    Delete,
}

pub struct NftBackend {
    s: SetSettings,
    nft: Nft,
    pending: Vec<(IpAddr, Change)>,
    /// Set-only mode: the elements we added (the set is shared with the
    /// administrator's own). Unused when we own the sets.
    known: HashSet<IpAddr>,
}

impl NftBackend {
    pub fn new(s: SetSettings) -> Self {
        Self::with_runner(s, false)
    }

    /// `spawn_only`: run the `nft` tool per batch even if libnftables is
    /// there (for comparison in the benchmark).
    pub fn with_runner(s: SetSettings, spawn_only: bool) -> Self {
        NftBackend {
            nft: Nft::new(tool(&s.bin_dir, "nft"), spawn_only),
            s,
            pending: Vec::new(),
            known: HashSet::new(),
        }
    }

    pub fn available(bin_dir: &str) -> bool {
        works(&tool(bin_dir, "nft"), &["list", "tables"])
    }

    fn table(&self) -> String {
        match self.s.mode {
            Ownership::Own => format!("inet {}", own_table_name(&self.s.table)),
            Ownership::SetOnly => self.s.table.clone(),
        }
    }

    fn apply(&mut self, script: &str) -> Result<(), FirewallError> {
        self.nft.run(script).map(|_| ())
    }

    /// Table, sets, chain and rules. Existing sets (and their elements) are
    /// kept; the chain is rebuilt so a changed hook or scope takes effect.
    fn setup_script(&mut self) -> Result<String, FirewallError> {
        let t = self.table();
        let bad = |e: super::rule::RuleError| FirewallError::Command {
            what: "nftables scope".into(),
            detail: e.0,
        };
        let scope = self.s.scope.to_nft().map_err(bad)?;
        let (hook, prio) = match self.s.hook {
            Hook::Raw => ("prerouting", "raw"),
            Hook::Filter => ("input", "filter"),
        };
        let mut sc = String::new();
        let _ = writeln!(sc, "add table {t}");
        let _ = writeln!(
            sc,
            "add set {t} {} {{ type ipv4_addr; flags timeout; }}",
            self.s.set4
        );
        let _ = writeln!(
            sc,
            "add set {t} {} {{ type ipv6_addr; flags timeout; }}",
            self.s.set6
        );
        if self.nft.ok(&format!("list chain {t} {CHAIN}")) {
            let _ = writeln!(sc, "flush chain {t} {CHAIN}");
            let _ = writeln!(sc, "delete chain {t} {CHAIN}");
        }
        let _ = writeln!(
            sc,
            "add chain {t} {CHAIN} {{ type filter hook {hook} priority {prio}; policy accept; }}"
        );
        let sep = if scope.is_empty() { "" } else { " " };
        for (family, set, action) in [
            ("ip", &self.s.set4, &self.s.action4),
            ("ip6", &self.s.set6, &self.s.action6),
        ] {
            let _ = writeln!(
                sc,
                "add rule {t} {CHAIN} {scope}{sep}{family} saddr @{set} {}",
                action.at(self.s.hook).to_nft()
            );
        }
        Ok(sc)
    }

    /// Script lines for `changes`: deletes first, then adds, so a refresh
    /// (delete + add) renews the timeout within one transaction.
    fn script(&self, changes: &[(IpAddr, Change)]) -> String {
        let t = self.table();
        let mut adds: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut dels: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for (ip, change) in changes {
            let fam = usize::from(ip.is_ipv6());
            match change {
                Change::Add(timeout) => {
                    adds[fam].push(format!("{ip} timeout {}s", kernel_timeout(*timeout)));
                }
                Change::Refresh(timeout) => {
                    dels[fam].push(ip.to_string());
                    adds[fam].push(format!("{ip} timeout {}s", kernel_timeout(*timeout)));
                }
                Change::Delete => dels[fam].push(ip.to_string()),
            }
        }
        let mut sc = String::new();
        for (verb, lists) in [("delete", &dels), ("add", &adds)] {
            for (fam, list) in lists.iter().enumerate() {
                let set = if fam == 0 { &self.s.set4 } else { &self.s.set6 };
                for chunk in list.chunks(CHUNK) {
                    let _ = writeln!(sc, "{verb} element {t} {set} {{ {} }}", chunk.join(", "));
                }
            }
        }
        sc
    }

    /// The batch without deletes of absent elements, with refreshes of
    /// absent ones turned into adds. `None` if the sets cannot be listed.
    fn fit_to_kernel(&mut self, changes: &[(IpAddr, Change)]) -> Option<Vec<(IpAddr, Change)>> {
        let t = self.table();
        let mut present = HashSet::new();
        for set in [self.s.set4.clone(), self.s.set6.clone()] {
            let json = self.nft.run(&format!("list set {t} {set}")).ok()?;
            present.extend(parse_elements(&json));
        }
        Some(
            changes
                .iter()
                .filter_map(|&(ip, change)| match change {
                    Change::Delete if !present.contains(&ip) => None,
                    Change::Refresh(t) if !present.contains(&ip) => Some((ip, Change::Add(t))),
                    other => Some((ip, other)),
                })
                .collect(),
        )
    }

    /// Set-only mode: remember which elements are ours.
    fn track(&mut self, changes: &[(IpAddr, Change)], failures: &[(IpAddr, String)]) {
        if self.s.mode != Ownership::SetOnly {
            return;
        }
        for (ip, change) in changes {
            if failures.iter().any(|(f, _)| f == ip) {
                continue;
            }
            match change {
                Change::Add(_) | Change::Refresh(_) => self.known.insert(*ip),
                Change::Delete => self.known.remove(ip),
            };
        }
    }

    fn check_sets(&mut self) -> Result<(), FirewallError> {
        let t = self.table();
        for set in [self.s.set4.clone(), self.s.set6.clone()] {
            if !self.nft.ok(&format!("list set {t} {set}")) {
                return Err(FirewallError::Command {
                    what: format!("set-only mode: nft set {t} {set}"),
                    detail: "set does not exist; create it (flags timeout) in your ruleset".into(),
                });
            }
        }
        Ok(())
    }
}

/// `inet sipban` -> `sipban`; a bare name stays.
fn own_table_name(table: &str) -> &str {
    table.split_whitespace().last().unwrap_or("sipban")
}

/// Addresses in `nft -j list set` output.
fn parse_elements(json: &str) -> Vec<IpAddr> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(elems) = item["set"]["elem"].as_array() else {
            continue;
        };
        for e in elems {
            let val = if e.is_string() { e } else { &e["elem"]["val"] };
            if let Some(ip) = val.as_str().and_then(|s| s.parse().ok()) {
                out.push(ip);
            }
        }
    }
    out
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            self.check_sets()?;
            tracing::info!(
                "NFT => filling {} {} / {} (set-only mode)",
                self.table(),
                self.s.set4,
                self.s.set6
            );
            return Ok(());
        }
        let t = self.table();
        let existed = self.nft.ok(&format!("list table {t}"));
        let script = self.setup_script()?;
        self.apply(&script)?;
        tracing::info!(
            "NFT => table {t} {} (hook {}, {})",
            if existed { "taken over" } else { "created" },
            self.s.hook,
            if self.nft.in_process() {
                "in-process libnftables"
            } else {
                "nft tool per batch"
            }
        );
        Ok(())
    }

    fn add(&mut self, ip: IpAddr, timeout: Duration) {
        self.pending.push((ip, Change::Add(timeout)));
    }

    fn refresh(&mut self, ip: IpAddr, timeout: Duration) {
        self.pending.push((ip, Change::Refresh(timeout)));
    }

    fn delete(&mut self, ip: IpAddr) {
        self.pending.push((ip, Change::Delete));
    }

    fn commit(&mut self) -> Result<(), FirewallError> {
        let changes = std::mem::take(&mut self.pending);
        if changes.is_empty() {
            return Ok(());
        }
        let script = self.script(&changes);
        let mut failures = Vec::new();
        if self.apply(&script).is_err() {
            // Usually drift: elements the kernel already dropped make the
            // deletes (and refreshes) fail. Fit the batch to what the kernel
            // holds and retry it whole; only then go one by one, so one bad
            // element cannot block the others.
            let fitted = self.fit_to_kernel(&changes);
            if fitted.as_ref().is_some_and(|f| f.is_empty()) {
                return Ok(());
            }
            if let Some(fitted) = fitted
                && self.apply(&self.script(&fitted)).is_ok()
            {
                self.track(&fitted, &[]);
                return Ok(());
            }
            for &(ip, change) in &changes {
                let one = self.script(&[(ip, change)]);
                let Err(e) = self.apply(&one) else { continue };
                let outcome = match change {
                    // Already gone (drift): nothing left to delete.
                    Change::Delete => Ok(()),
                    // Gone under us: add it afresh.
                    Change::Refresh(t) => self.apply(&self.script(&[(ip, Change::Add(t))])),
                    Change::Add(_) => Err(e),
                };
                if let Err(e) = outcome {
                    failures.push((ip, e.to_string()));
                }
            }
        }
        self.track(&changes, &failures);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Elements(failures))
        }
    }

    /// What the kernel holds; in set-only mode only the elements we added
    /// (the administrator's own entries are not ours to reconcile away).
    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        let t = self.table();
        let mut out = Vec::new();
        for set in [self.s.set4.clone(), self.s.set6.clone()] {
            let json = self.nft.run(&format!("list set {t} {set}"))?;
            out.extend(parse_elements(&json));
        }
        if self.s.mode == Ownership::SetOnly {
            out.retain(|ip| self.known.contains(ip));
            self.known = out.iter().copied().collect();
        }
        Ok(out)
    }

    fn repair(&mut self) -> Result<Vec<String>, FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            self.check_sets()?;
            return Ok(Vec::new());
        }
        let t = self.table();
        let mut missing = Vec::new();
        if !self.nft.ok(&format!("list table {t}")) {
            missing.push(format!("table {t}"));
        } else {
            for set in [self.s.set4.clone(), self.s.set6.clone()] {
                if !self.nft.ok(&format!("list set {t} {set}")) {
                    missing.push(format!("set {set}"));
                }
            }
            match self.nft.run(&format!("list chain {t} {CHAIN}")) {
                Err(_) => missing.push(format!("chain {CHAIN}")),
                Ok(json) => {
                    let rules = json.matches("\"rule\"").count();
                    if rules < 2 {
                        missing.push(format!("rules of chain {CHAIN}"));
                    }
                }
            }
        }
        if !missing.is_empty() {
            let script = self.setup_script()?;
            self.apply(&script)?;
        }
        Ok(missing)
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            let dels: Vec<_> = self.known.iter().map(|ip| (*ip, Change::Delete)).collect();
            let script = self.script(&dels);
            self.known.clear();
            return if script.is_empty() {
                Ok(())
            } else {
                self.apply(&script)
            };
        }
        let t = self.table();
        self.known.clear();
        if !self.nft.ok(&format!("list table {t}")) {
            tracing::warn!("NFT => table {t} was already gone at shutdown");
            return Ok(());
        }
        let r = self.apply(&format!("delete table {t}\n"));
        if r.is_ok() {
            tracing::info!("NFT => table {t} removed");
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_from_json_listing() {
        let json = r#"{"nftables":[{"metainfo":{}},{"set":{"family":"inet","name":"v4","elem":[{"elem":{"val":"1.2.3.4","timeout":60,"expires":59}},"5.6.7.8"]}}]}"#;
        assert_eq!(
            parse_elements(json),
            vec![
                "1.2.3.4".parse::<IpAddr>().unwrap(),
                "5.6.7.8".parse().unwrap()
            ]
        );
        assert!(parse_elements("not json").is_empty());
    }
}
