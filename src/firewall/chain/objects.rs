//! Our chain, its jumps and the limits: set up or taken over at start,
//! repaired after drift, removed at stop.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use iptables::IPTables;

use super::deny_chain::{deny_chain_name, ensure_deny_jump, fill_deny, remove_deny};
use super::rules::{ban_source, list_rules, parse_net, refill_chain};
use super::{ChainBackend, Family, HOOK, IptResult, TABLE, err, open};
use crate::firewall::{Depth, FirewallError};

impl ChainBackend {
    pub(super) fn init_family(&self, fam: &mut Family) -> Result<(), FirewallError> {
        let ipt = open(&self.settings.path, fam.label)?;
        let chain = &self.settings.chain;
        let exists = ipt
            .chain_exists(TABLE, chain)
            .map_err(err(format!("{} -S {chain}", fam.label)))?;
        // A crashed run's bans are kept (the restart adopts them), rebuilt
        // with today's rule in one commit, so no packet sees the chain
        // without them.
        let mut kept: Vec<IpAddr> = Vec::new();
        if exists {
            let mut seen = HashSet::new();
            for ip in list_rules(&ipt, chain)?
                .iter()
                .filter_map(|r| ban_source(r, chain))
            {
                if seen.insert(ip) {
                    kept.push(ip);
                }
            }
        }
        refill_chain(&ipt, chain, &kept, &fam.action)?;
        if exists {
            tracing::info!(
                "CHAIN => {chain} taken over ({}, {} bans kept)",
                fam.label,
                kept.len()
            );
        } else {
            tracing::info!("CHAIN => {chain} created ({})", fam.label);
        }
        // A crashed run's deny entries: unreferenced now that our chain is
        // rebuilt; the deny list in force comes with `set_denied`.
        let deny = self.deny_chain();
        if remove_deny(&ipt, chain, &deny)? {
            tracing::info!("CHAIN => stale {deny} removed ({})", fam.label);
        }
        // Exactly our jumps, at the top of INPUT: an earlier run's (another
        // scope, duplicates) go first.
        remove_jumps(&ipt, |l| self.is_jump(l))?;
        for jump in self.jump_rules().iter().rev() {
            ipt.insert(TABLE, HOOK, jump, 1)
                .map_err(err(format!("{} -I {HOOK} 1 {jump}", fam.label)))?;
        }
        let v6 = fam.label == "ip6tables";
        if self.limits.remove(&ipt, v6)? {
            tracing::info!("CHAIN => stale limits removed ({})", fam.label);
        }
        self.install_limits(&ipt, v6)?;
        fam.known = kept.into_iter().collect();
        fam.ipt = Some(ipt);
        Ok(())
    }

    pub(super) fn repair_objects(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        let chain = self.settings.chain.clone();
        let jumps = self.jump_rules();
        let mut repaired = Vec::new();
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.as_ref() else {
                continue;
            };
            let label = fam.label;
            let fail = |what: &str| err(format!("{label} {what}"));
            let exists = ipt.chain_exists(TABLE, &chain).map_err(fail("-L"))?;
            if !exists {
                ipt.new_chain(TABLE, &chain).map_err(fail("-N"))?;
                fam.known.clear();
                repaired.push(format!("{label} chain {chain}"));
            }
            let rules = list_rules(ipt, &chain)?;
            if rules.last().map(|r| r.trim()) != Some(format!("-A {chain} -j RETURN").as_str()) {
                ipt.delete_all(TABLE, &chain, "-j RETURN")
                    .map_err(fail("-D RETURN"))?;
                ipt.append(TABLE, &chain, "-j RETURN")
                    .map_err(fail("-A RETURN"))?;
                repaired.push(format!("{label} RETURN rule"));
            }
            for jump in &jumps {
                if !ipt.exists(TABLE, HOOK, jump).map_err(fail("-C INPUT"))? {
                    ipt.insert(TABLE, HOOK, jump, 1).map_err(fail("-I INPUT"))?;
                    repaired.push(format!("{label} INPUT jump"));
                }
            }
            let v6 = label == "ip6tables";
            let drift = self.limits.drift(ipt, v6, self.allow.family(v6), depth);
            if !drift.is_empty() {
                self.limits.remove(ipt, v6)?;
                self.limits.install(ipt, v6, self.allow.family(v6), &|l| {
                    l.starts_with("-A ") && l.ends_with(&format!(" -j {chain}"))
                })?;
                repaired.extend(drift);
            }
            let nets = self.deny.family(v6);
            if nets.is_empty() {
                continue;
            }
            let deny = deny_chain_name(&chain);
            let exists = ipt.chain_exists(TABLE, &deny).map_err(fail("-L"))?;
            let filled = exists && {
                let rules = list_rules(ipt, &deny)?;
                let listed: Vec<IpNet> = rules.iter().filter_map(|r| parse_net(r)).collect();
                let appended = rules.iter().filter(|r| r.starts_with("-A ")).count();
                appended == listed.len() && self.deny.matches(v6, &listed)
            };
            if !filled {
                fill_deny(ipt, &deny, nets, &fam.action)?;
                repaired.push(if exists {
                    format!("{label} deny entries of {deny}")
                } else {
                    format!("{label} chain {deny}")
                });
            }
            if ensure_deny_jump(ipt, &chain, &deny)? {
                repaired.push(format!("{label} jump to {deny}"));
            }
        }
        Ok(repaired)
    }

    pub(super) fn remove_objects(&mut self) -> Result<(), FirewallError> {
        let chain = self.settings.chain.clone();
        let mut first_error = None;
        let jump_suffix = format!(" -j {chain}");
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.take() else {
                continue;
            };
            let v6 = fam.label == "ip6tables";
            let limits: IptResult = self
                .limits
                .remove(&ipt, v6)
                .map(|_| ())
                .map_err(|e| e.to_string().into());
            let jumps: IptResult =
                remove_jumps(&ipt, |l| l.starts_with("-A ") && l.ends_with(&jump_suffix))
                    .map_err(|e| e.to_string().into());
            let steps: [(&str, IptResult); 3] = [
                ("remove limits of", limits),
                ("-D INPUT jumps to", jumps),
                ("-F", ipt.flush_chain(TABLE, &chain)),
            ];
            let deny = deny_chain_name(&chain);
            let deny_step: (&str, IptResult) = (
                "remove deny chain of",
                remove_deny(&ipt, &chain, &deny)
                    .map(|_| ())
                    .map_err(|e| e.to_string().into()),
            );
            let last: (&str, IptResult) = ("-X", ipt.delete_chain(TABLE, &chain));
            for (what, result) in steps.into_iter().chain([deny_step, last]) {
                if let Err(e) = result {
                    let e = FirewallError::Command {
                        what: format!("{} {what} {chain}", fam.label),
                        detail: e.to_string().trim().to_string(),
                    };
                    tracing::error!("CHAIN => {e}");
                    first_error.get_or_insert(e);
                }
            }
            fam.known.clear();
            tracing::info!("CHAIN => {chain} erased ({})", fam.label);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Deletes every INPUT rule `ours` recognises in `-S INPUT` lines.
pub(super) fn remove_jumps(
    ipt: &IPTables,
    ours: impl Fn(&str) -> bool,
) -> Result<(), FirewallError> {
    for line in list_rules(ipt, HOOK)?.iter().filter(|l| ours(l)) {
        let Some(rule) = line.strip_prefix(&format!("-A {HOOK} ")) else {
            continue;
        };
        ipt.delete(TABLE, HOOK, rule)
            .map_err(err(format!("{} -D {HOOK} {rule}", ipt.cmd)))?;
    }
    Ok(())
}
