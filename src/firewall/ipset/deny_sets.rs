//! The deny sets: `hash:net` sets of their own beside the ban sets, filled
//! by a swap in own mode, brought to the list entry by entry in set-only
//! mode.

use std::collections::HashSet;
use std::fmt::Write as _;

use ipnet::IpNet;

use super::{IpsetBackend, ipt_err};
use crate::firewall::deny;
use crate::firewall::exec::run;
use crate::firewall::ipset_tool::{self, swap_name};
use crate::firewall::sets::Ownership;
use crate::firewall::{Depth, FirewallError};

impl IpsetBackend {
    /// Own mode: our deny set of a family.
    pub(super) fn own_deny_set(&self, v6: bool) -> Option<String> {
        (self.s.mode == Ownership::Own)
            .then(|| self.s.deny_set(v6))
            .flatten()
    }

    /// Entries of a `hash:net` set as `ipset save` lists them.
    pub(super) fn saved_nets(&self, set: &str) -> Result<Vec<IpNet>, FirewallError> {
        ipset_tool::saved_nets(&self.ipset, set)
    }

    /// Own mode: loads the family's deny entries into a temporary set and
    /// swaps it in, in one `ipset restore`; creates the set if missing.
    pub(super) fn fill_own_deny(&self, v6: bool, set: &str) -> Result<(), FirewallError> {
        let family = if v6 { "inet6" } else { "inet" };
        ipset_tool::swap_fill(&self.ipset, set, family, self.deny.family(v6))
    }

    /// Set-only mode: brings the administrator's deny set to the list, adds
    /// first, then deletes.
    pub(super) fn fill_admin_deny(&self, v6: bool, set: &str) -> Result<(), FirewallError> {
        let want: HashSet<IpNet> = deny::without_zero_prefix(self.deny.family(v6))
            .into_iter()
            .collect();
        let held: HashSet<IpNet> = self.saved_nets(set)?.into_iter().collect();
        let mut script = String::new();
        for net in want.difference(&held) {
            let _ = writeln!(script, "add {set} {net}");
        }
        for net in held.difference(&want) {
            let _ = writeln!(script, "del {set} {net}");
        }
        if script.is_empty() {
            return Ok(());
        }
        self.restore(&script)
    }

    /// Own mode: makes the family's deny set and rule match the list (both
    /// removed when it has no entries).
    pub(super) fn apply_own_deny(&self, v6: bool) -> Result<(), FirewallError> {
        let Some(set) = self.own_deny_set(v6) else {
            return Ok(());
        };
        if self.deny.family(v6).is_empty() {
            self.remove_rules_of(v6, &set)?;
            if self.set_exists(&set) {
                run(&self.ipset, &["destroy", &set], None)?;
            }
            return Ok(());
        }
        let ipt = if v6 { &self.ipt6 } else { &self.ipt4 };
        if ipt.is_none() {
            tracing::warn!(
                "IPSET => ip6tables not available: {} IPv6 deny entries not enforced",
                self.deny.family(v6).len()
            );
            return Ok(());
        }
        self.fill_own_deny(v6, &set)?;
        self.apply_own_deny_rule(v6, &set).map(|_| ())
    }

    /// Own mode: inserts the deny set's match rule at the top of the hook
    /// unless it is there; returns what was made.
    pub(super) fn apply_own_deny_rule(
        &self,
        v6: bool,
        set: &str,
    ) -> Result<Option<String>, FirewallError> {
        let ipt = if v6 { &self.ipt6 } else { &self.ipt4 };
        let Some(ipt) = ipt else {
            return Ok(None);
        };
        let (table, chain) = self.table_chain();
        let mut made = None;
        for rule in self.match_rules(v6, set) {
            let present = ipt
                .exists(table, chain, &rule)
                .map_err(ipt_err(format!("{} -C {chain} {rule}", ipt.cmd)))?;
            if present {
                continue;
            }
            ipt.insert(table, chain, &rule, 1).map_err(ipt_err(format!(
                "{} -t {table} -I {chain} 1 {rule}",
                ipt.cmd
            )))?;
            made = Some(format!("{} -t {table} {chain} rule for {set}", ipt.cmd));
        }
        Ok(made)
    }

    /// Own mode: destroys deny sets (and half-done swaps) nothing refers
    /// to any more.
    pub(super) fn destroy_deny_sets(&self) -> Result<usize, FirewallError> {
        let mut destroyed = 0;
        for v6 in [false, true] {
            let Some(set) = self.own_deny_set(v6) else {
                continue;
            };
            for name in [swap_name(&set), set] {
                if self.set_exists(&name) {
                    run(&self.ipset, &["destroy", &name], None)?;
                    destroyed += 1;
                }
            }
        }
        Ok(destroyed)
    }

    /// What differs between the deny sets and the list: sets missing or
    /// not holding exactly the entries (by count at [`Depth::Quick`]; rules
    /// are checked by the caller).
    pub(super) fn deny_drift(&self, v6: bool, set: &str, depth: Depth) -> Option<String> {
        if !self.set_exists(set) {
            return Some(format!("ipset {set}"));
        }
        match ipset_tool::holds(&self.ipset, set, &self.deny, v6, depth) {
            Ok(true) => None,
            _ => Some(format!("deny entries of ipset {set}")),
        }
    }
}
