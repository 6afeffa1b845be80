//! The original SIPban's design: one iptables rule per banned IP in our own
//! chain (`sipban-udp`), entered from the top of INPUT by one jump per
//! protocol of the scope (the original's `-p udp --dport 5060 -j
//! sipban-udp` by default), ended by RETURN. IPv6 goes through ip6tables.
//! `[limits]` go in chains of their own after the jumps
//! ([`super::limits::ipt`]).
//!
//! Permanent deny entries live in a second chain, `<chain>-deny`
//! (`sipban-udp-deny`), one `-s NET -j <rule>` rule per entry, entered by a
//! `-j sipban-udp-deny` rule just before our chain's final RETURN. Kept
//! apart like this, `list` (our chain's `-s` rules) never sees them and
//! reconciling the bans never deletes them; the deny chain is refilled as a
//! whole by one `iptables-restore --noflush` (declaring the chain flushes
//! it in the same commit), so a replacement is atomic and 50k entries are
//! one call, not 50k. The deny chain and its jump exist only while the
//! family has deny entries.

mod deny_chain;
mod objects;
mod rules;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;
use iptables::IPTables;

use super::deny::DenyList;
use super::exec::{run, tool};
use super::limits::ipt::IptLimits;
use super::limits::{FloodWatch, Limits};
use super::rule::Action;
use super::rule::Hook;
use super::scope::Scope;
use super::{Backend, Depth, FirewallError};
use deny_chain::{deny_chain_name, ensure_deny_jump, fill_deny, remove_deny};
use rules::{ban_script, ban_source, list_rules};

pub(super) const TABLE: &str = "filter";

/// What the iptables crate returns.
pub(super) type IptResult = Result<(), Box<dyn std::error::Error>>;
pub(super) const HOOK: &str = "INPUT";

/// Changes per commit: large enough that a storm costs a few commits,
/// small enough that the first bans of a storm are confirmed early.
const BATCH: usize = 4096;

#[derive(Clone, Debug)]
pub struct ChainSettings {
    /// Directory of the iptables binaries (`[iptables] path`); empty = $PATH.
    pub path: String,
    pub chain: String,
    pub scope: Scope,
    pub action_v4: Action,
    pub action_v6: Action,
}

pub(super) struct Family {
    label: &'static str,
    ipt: Option<IPTables>,
    action: Action,
    /// Bans we put in the chain, so adds are idempotent and inserts go just
    /// before the final RETURN.
    known: HashSet<IpAddr>,
}

pub struct ChainBackend {
    settings: ChainSettings,
    v4: Family,
    v6: Family,
    pending: Vec<(IpAddr, bool)>,
    /// The last deny list given, put back by `repair`.
    deny: DenyList,
    /// `[limits]`, after the jumps in INPUT.
    limits: IptLimits,
    /// The networks exempt from the limits, put back by `repair`.
    allow: DenyList,
}

pub(super) fn err(what: String) -> impl FnOnce(Box<dyn std::error::Error>) -> FirewallError {
    move |e| FirewallError::Command {
        what,
        detail: e.to_string().trim().to_string(),
    }
}

/// An `IPTables` for the binary `dir/name`, checked to run.
pub(super) fn open(dir: &str, name: &str) -> Result<IPTables, FirewallError> {
    let cmd = if dir.is_empty() {
        name.to_string()
    } else {
        Path::new(dir).join(name).to_string_lossy().into_owned()
    };
    let unavailable = |detail: String| FirewallError::Unavailable {
        tool: cmd.clone(),
        detail,
    };
    let out = Command::new(&cmd)
        .arg("--version")
        .output()
        .map_err(|e| unavailable(e.to_string()))?;
    if !out.status.success() {
        return Err(unavailable(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    // The crate wants a 'static command name; one per family per run.
    let cmd: &'static str = Box::leak(cmd.into_boxed_str());
    Ok(IPTables {
        cmd,
        has_check: true,
        has_wait: true,
        is_numeric: true,
    })
}

impl ChainBackend {
    pub fn new(settings: ChainSettings) -> Self {
        let family = |label, action| Family {
            label,
            ipt: None,
            action,
            known: HashSet::new(),
        };
        let chain = &settings.chain;
        let limits = IptLimits::new(
            chain,
            [&format!("{chain}-v4"), &format!("{chain}-v6")],
            settings.scope.clone(),
            Limits::OFF,
            Hook::Filter,
            tool(&settings.path, "ipset"),
        );
        ChainBackend {
            v4: family("iptables", settings.action_v4.clone()),
            v6: family("ip6tables", settings.action_v6.clone()),
            settings,
            pending: Vec::new(),
            deny: DenyList::default(),
            limits,
            allow: DenyList::default(),
        }
    }

    /// With the per-source limits and static protections of `[limits]`
    /// (their exempt networks and counts need `ipset`).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits.limits = limits;
        self
    }

    fn deny_chain(&self) -> String {
        deny_chain_name(&self.settings.chain)
    }

    fn family(&mut self, ip: &IpAddr) -> &mut Family {
        if ip.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// The INPUT rules jumping to our chain: one per protocol of the scope.
    fn jump_rules(&self) -> Vec<String> {
        self.settings
            .scope
            .ipt_ban_matches()
            .into_iter()
            .map(|mut args| {
                args.extend(["-j".to_string(), self.settings.chain.clone()]);
                args.join(" ")
            })
            .collect()
    }

    /// Whether a `-S INPUT` line is one of our jumps (any scope).
    fn is_jump(&self, line: &str) -> bool {
        line.starts_with("-A ") && line.ends_with(&format!(" -j {}", self.settings.chain))
    }

    fn install_limits(&self, ipt: &IPTables, v6: bool) -> Result<(), FirewallError> {
        self.limits
            .install(ipt, v6, self.allow.family(v6), &|l| self.is_jump(l))
            .map_err(|e| match e {
                FirewallError::Unavailable { tool, detail } => FirewallError::Unavailable {
                    tool,
                    detail: format!("{detail} ([limits] with the chain backend needs ipset)"),
                },
                other => other,
            })
    }

    /// One family's share of a batch in one `iptables-restore --noflush`
    /// commit. If the tool refuses it (a rule deleted behind our back, the
    /// chain gone), nothing of it was applied: the changes are retried one
    /// call each, so each failure names its address.
    fn commit_family(&mut self, v6: bool, ops: &[(IpAddr, bool)]) -> Vec<(IpAddr, String)> {
        let chain = self.settings.chain.clone();
        let fam = if v6 { &mut self.v6 } else { &mut self.v4 };
        let Some(ipt) = fam.ipt.as_ref() else {
            let why = format!("{} is not available", fam.label);
            return ops.iter().map(|(ip, _)| (*ip, why.clone())).collect();
        };
        let mut known = fam.known.clone();
        let (script, strays) = ban_script(&chain, &fam.action, &mut known, ops);
        if let Some(script) = script {
            let restore = format!("{}-restore", ipt.cmd);
            if let Err(e) = run(&restore, &["-w", "--noflush"], Some(script.as_bytes())) {
                tracing::warn!("CHAIN => batch refused, applying one by one: {e}");
                return ops
                    .iter()
                    .filter_map(|&(ip, add)| self.apply(ip, add).err().map(|e| (ip, e)))
                    .collect();
            }
            fam.known = known;
        }
        // Not ours as far as we know: deleted in case it is there anyway.
        for ip in strays {
            let _ = self.apply(ip, false);
        }
        Vec::new()
    }

    fn ban_rule(fam: &Family, ip: IpAddr) -> String {
        format!("-s {ip} -j {}", fam.action)
    }

    fn apply(&mut self, ip: IpAddr, add: bool) -> Result<(), String> {
        let chain = self.settings.chain.clone();
        let fam = self.family(&ip);
        let rule = Self::ban_rule(fam, ip);
        let Some(ipt) = fam.ipt.as_ref() else {
            return Err(format!("{} is not available", fam.label));
        };
        if add {
            if fam.known.contains(&ip) {
                return Ok(());
            }
            // Just before the final RETURN; if the chain drifted, at the top.
            let pos = fam.known.len() as i32 + 1;
            ipt.insert(TABLE, &chain, &rule, pos)
                .or_else(|_| ipt.insert(TABLE, &chain, &rule, 1))
                .map_err(|e| {
                    format!("{} -I {chain} {rule}: {}", fam.label, e.to_string().trim())
                })?;
            fam.known.insert(ip);
        } else {
            let was_known = fam.known.remove(&ip);
            if let Err(e) = ipt.delete(TABLE, &chain, &rule)
                && was_known
            {
                return Err(format!(
                    "{} -D {chain} {rule}: {}",
                    fam.label,
                    e.to_string().trim()
                ));
            }
        }
        Ok(())
    }
}

impl Backend for ChainBackend {
    fn name(&self) -> &'static str {
        "chain"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        let mut v4 = std::mem::replace(
            &mut self.v4,
            Family {
                label: "iptables",
                ipt: None,
                action: Action::Drop,
                known: HashSet::new(),
            },
        );
        let r4 = self.init_family(&mut v4);
        self.v4 = v4;
        r4?;
        let mut v6 = std::mem::replace(
            &mut self.v6,
            Family {
                label: "ip6tables",
                ipt: None,
                action: Action::Drop,
                known: HashSet::new(),
            },
        );
        if let Err(e) = self.init_family(&mut v6) {
            tracing::warn!("CHAIN => IPv6 bans disabled: {e}");
        }
        self.v6 = v6;
        Ok(())
    }

    fn add(&mut self, ip: IpAddr, _timeout: Duration) {
        self.pending.push((ip, true));
    }

    fn delete(&mut self, ip: IpAddr) {
        self.pending.push((ip, false));
    }

    /// One `iptables-restore` per family per batch: its cost grows with
    /// the chain (the tool reads it back), not with the batch.
    fn batch_limit(&self) -> usize {
        BATCH
    }

    fn commit(&mut self) -> Result<(), FirewallError> {
        let pending = std::mem::take(&mut self.pending);
        let mut failures = Vec::new();
        for v6 in [false, true] {
            let ops: Vec<(IpAddr, bool)> = pending
                .iter()
                .filter(|(ip, _)| ip.is_ipv6() == v6)
                .copied()
                .collect();
            if !ops.is_empty() {
                failures.extend(self.commit_family(v6, &ops));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Elements(failures))
        }
    }

    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        let chain = self.settings.chain.clone();
        let mut out = Vec::new();
        for fam in [&mut self.v4, &mut self.v6] {
            let Some(ipt) = fam.ipt.as_ref() else {
                continue;
            };
            let rules = list_rules(ipt, &chain)?;
            let ips: Vec<IpAddr> = rules.iter().filter_map(|r| ban_source(r, &chain)).collect();
            fam.known = ips.iter().copied().collect();
            out.extend(ips);
        }
        Ok(out)
    }

    fn repair(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        self.repair_objects(depth)
    }

    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        self.deny = DenyList::new(nets);
        let chain = self.settings.chain.clone();
        let deny = self.deny_chain();
        let mut first_error = None;
        for (fam, v6) in [(&self.v4, false), (&self.v6, true)] {
            let nets = self.deny.family(v6);
            let Some(ipt) = fam.ipt.as_ref() else {
                if !nets.is_empty() {
                    tracing::warn!(
                        "CHAIN => {} not available: {} deny entries not enforced",
                        fam.label,
                        nets.len()
                    );
                }
                continue;
            };
            let result = if nets.is_empty() {
                remove_deny(ipt, &chain, &deny).map(|_| ())
            } else {
                fill_deny(ipt, &deny, nets, &fam.action)
                    .and_then(|()| ensure_deny_jump(ipt, &chain, &deny).map(|_| ()))
            };
            match result {
                Ok(()) => tracing::info!(
                    "CHAIN => {} deny entries in {deny} ({})",
                    nets.len(),
                    fam.label
                ),
                Err(e) => {
                    tracing::error!("CHAIN => {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn set_allowed(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        self.allow = DenyList::new(nets);
        let mut first = None;
        for (fam, v6) in [(&self.v4, false), (&self.v6, true)] {
            if fam.ipt.is_some()
                && let Err(e) = self.limits.set_allowed(v6, self.allow.family(v6))
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn flood_watch(&mut self) -> Option<FloodWatch> {
        Some(FloodWatch {
            reader: self.limits.reader(true)?,
            ban_after: self.limits.limits.sip_ban_after?,
        })
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        self.remove_objects()
    }
}
