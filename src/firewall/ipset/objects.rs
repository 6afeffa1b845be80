//! Our sets and match rules: created or taken over at start, repaired
//! after drift, removed at stop.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use super::{IpsetBackend, ipt_err, iptables};
use crate::firewall::exec::run;
use crate::firewall::ipset_tool::{self, MAXELEM};
use crate::firewall::sets::Ownership;
use crate::firewall::{Depth, FirewallError};

impl IpsetBackend {
    /// A ban set taken over keeps its type (its elements are the bans); a
    /// configured type it does not have is said, not silently ignored.
    pub(super) fn check_set_types(&self) {
        for set in [&self.s.set4, &self.s.set6] {
            let Ok(header) = run(&self.ipset, &["list", set, "-t"], None) else {
                continue;
            };
            let want = format!("Type: {}", self.set_type.ipset());
            if !header.lines().any(|l| l.trim() == want) {
                tracing::warn!(
                    "IPSET => set {set} exists with another type than the configured {}; it is \
                     kept with its bans (destroy it while sipban is stopped to change the type)",
                    self.set_type
                );
            }
        }
    }

    pub(super) fn set_exists(&self, set: &str) -> bool {
        ipset_tool::set_exists(&self.ipset, set)
    }

    pub(super) fn create_sets(&self) -> Result<Vec<String>, FirewallError> {
        let mut made = Vec::new();
        for (set, family) in [(&self.s.set4, "inet"), (&self.s.set6, "inet6")] {
            if !self.set_exists(set) {
                run(
                    &self.ipset,
                    &[
                        "create",
                        set,
                        self.set_type.ipset(),
                        "family",
                        family,
                        "timeout",
                        "0",
                        "maxelem",
                        MAXELEM,
                        "-exist",
                    ],
                    None,
                )?;
                made.push(format!("ipset {set}"));
            }
        }
        Ok(made)
    }

    /// Removes every rule matching one of our sets (deny sets included), in
    /// either hook: a run with another hook, scope or action may have left
    /// its own (a crash).
    pub(super) fn remove_our_rules(&self) -> Result<usize, FirewallError> {
        let mut removed = 0;
        for v6 in [false, true] {
            let set = if v6 { &self.s.set6 } else { &self.s.set4 };
            removed += self.remove_rules_of(v6, set)?;
            if let Some(deny) = self.own_deny_set(v6) {
                removed += self.remove_rules_of(v6, &deny)?;
            }
        }
        Ok(removed)
    }

    /// Removes every rule matching `set` in either hook.
    pub(super) fn remove_rules_of(&self, v6: bool, set: &str) -> Result<usize, FirewallError> {
        let mut removed = 0;
        let ipt = if v6 { &self.ipt6 } else { &self.ipt4 };
        if let Some(ipt) = ipt {
            let needle = format!("--match-set {set} src");
            for (table, chain) in [("raw", "PREROUTING"), ("filter", "INPUT")] {
                let listing = run(ipt.cmd, &["-w", "-t", table, "-S", chain], None)?;
                let prefix = format!("-A {chain} ");
                for line in listing.lines().filter(|l| l.contains(&needle)) {
                    let Some(rule) = line.strip_prefix(&prefix) else {
                        continue;
                    };
                    ipt.delete(table, chain, rule)
                        .map_err(ipt_err(format!("{} -t {table} -D {chain} {rule}", ipt.cmd)))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Ensures our match rules (one per family and protocol) at the top of
    /// the hook.
    pub(super) fn ensure_rules(&self, force: bool) -> Result<Vec<String>, FirewallError> {
        let (table, chain) = self.table_chain();
        let mut made = Vec::new();
        if force {
            self.remove_our_rules()?;
        }
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            let Some(ipt) = ipt else { continue };
            let mut missing = false;
            for rule in self.rules(v6).iter().rev() {
                let present = ipt
                    .exists(table, chain, rule)
                    .map_err(ipt_err(format!("{} -C {chain} {rule}", ipt.cmd)))?;
                if present && !force {
                    continue;
                }
                ipt.delete_all(table, chain, rule)
                    .map_err(ipt_err(format!("{} -D {chain} {rule}", ipt.cmd)))?;
                ipt.insert(table, chain, rule, 1).map_err(ipt_err(format!(
                    "{} -t {table} -I {chain} 1 {rule}",
                    ipt.cmd
                )))?;
                missing |= !present;
            }
            if missing {
                made.push(format!("{} -t {table} {chain} rules", ipt.cmd));
            }
        }
        Ok(made)
    }

    pub(super) fn init_objects(&mut self) -> Result<(), FirewallError> {
        run(&self.ipset, &["--version"], None)?;
        if self.s.mode == Ownership::SetOnly && self.limits.limits.any() {
            return Err(FirewallError::Command {
                what: "set-only mode".into(),
                detail: "[limits] needs [firewall] mode = own (sipban adds their rules)".into(),
            });
        }
        if self.s.mode == Ownership::SetOnly {
            let denies = [&self.s.deny4, &self.s.deny6].into_iter().flatten();
            for set in [&self.s.set4, &self.s.set6].into_iter().chain(denies) {
                if !self.set_exists(set) {
                    return Err(FirewallError::Command {
                        what: format!("set-only mode: ipset {set}"),
                        detail: "set does not exist; create it and wire it into your ruleset"
                            .into(),
                    });
                }
            }
            tracing::info!(
                "IPSET => filling {} and {} (set-only mode)",
                self.s.set4,
                self.s.set6
            );
            return Ok(());
        }
        self.ipt4 = Some(iptables(&self.s.bin_dir, "iptables")?);
        match iptables(&self.s.bin_dir, "ip6tables") {
            Ok(ipt) => self.ipt6 = Some(ipt),
            Err(e) => tracing::warn!("IPSET => IPv6 bans not enforced: {e}"),
        }
        self.check_set_types();
        let made = self.create_sets()?;
        // A crashed run's limits first: their jump sits after our rules.
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            if let Some(ipt) = ipt
                && self.limits.remove(ipt, v6)?
            {
                tracing::info!("IPSET => stale limits removed ({})", ipt.cmd);
            }
        }
        self.ensure_rules(true)?;
        // A crashed run's deny sets, their rules removed just now; the deny
        // list in force comes with `set_denied`.
        if self.destroy_deny_sets()? > 0 {
            tracing::info!("IPSET => stale deny sets removed");
        }
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            if let Some(ipt) = ipt {
                self.limits
                    .install(ipt, v6, self.allow.family(v6), &|l| self.is_ours(l))?;
            }
        }
        let (table, chain) = self.table_chain();
        tracing::info!(
            "IPSET => sets {} / {} {} with their rule in {table} {chain}",
            self.s.set4,
            self.s.set6,
            if made.is_empty() {
                "taken over"
            } else {
                "created"
            }
        );
        Ok(())
    }

    pub(super) fn repair_objects(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            let denies = [&self.s.deny4, &self.s.deny6].into_iter().flatten();
            for set in [&self.s.set4, &self.s.set6].into_iter().chain(denies) {
                if !self.set_exists(set) {
                    return Err(FirewallError::Command {
                        what: format!("set-only mode: ipset {set}"),
                        detail: "set is gone; it is not ours to recreate".into(),
                    });
                }
            }
            let mut repaired = Vec::new();
            for (v6, set) in [(false, &self.s.deny4), (true, &self.s.deny6)] {
                let Some(set) = set.as_ref().filter(|_| self.deny_given) else {
                    continue;
                };
                if let Some(drift) = self.deny_drift(v6, set, depth) {
                    self.fill_admin_deny(v6, set)?;
                    repaired.push(drift);
                }
            }
            return Ok(repaired);
        }
        let mut made = self.create_sets()?;
        made.extend(self.ensure_rules(false)?);
        for v6 in [false, true] {
            let Some(set) = self.own_deny_set(v6) else {
                continue;
            };
            let ipt = if v6 { &self.ipt6 } else { &self.ipt4 };
            if self.deny.family(v6).is_empty() || ipt.is_none() {
                continue;
            }
            let drift = self.deny_drift(v6, &set, depth);
            if drift.is_some() {
                self.fill_own_deny(v6, &set)?;
            }
            made.extend(drift);
            made.extend(self.apply_own_deny_rule(v6, &set)?);
        }
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            let Some(ipt) = ipt else { continue };
            let drift = self.limits.drift(ipt, v6, self.allow.family(v6), depth);
            if !drift.is_empty() {
                self.limits.remove(ipt, v6)?;
                self.limits
                    .install(ipt, v6, self.allow.family(v6), &|l| self.is_ours(l))?;
                made.extend(drift);
            }
        }
        Ok(made)
    }

    pub(super) fn remove_objects(&mut self) -> Result<(), FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            let ours: Vec<(IpAddr, Option<Duration>)> =
                self.known.drain().map(|ip| (ip, None)).collect();
            let failures = self.apply(&ours);
            let mut flushed = Ok(());
            if std::mem::take(&mut self.deny_given) {
                // The deny sets' content is the deny list: ours to empty.
                for set in [&self.s.deny4, &self.s.deny6].into_iter().flatten() {
                    if let Err(e) = run(&self.ipset, &["flush", set], None) {
                        flushed = Err(e);
                    }
                }
            }
            return if failures.is_empty() {
                flushed
            } else {
                Err(FirewallError::Elements(failures))
            };
        }
        let mut first = None;
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            if let Some(ipt) = ipt
                && let Err(e) = self.limits.remove(ipt, v6)
            {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.remove_our_rules() {
            first.get_or_insert(e);
        }
        for set in [&self.s.set4, &self.s.set6] {
            if self.set_exists(set)
                && let Err(e) = run(&self.ipset, &["destroy", set], None)
            {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.destroy_deny_sets() {
            first.get_or_insert(e);
        }
        self.known.clear();
        let mut msg = String::new();
        let _ = write!(
            msg,
            "IPSET => sets {} / {} and rules removed",
            self.s.set4, self.s.set6
        );
        tracing::info!("{msg}");
        first.map_or(Ok(()), Err)
    }
}
