//! ipset backend: one `hash:ip` set per family with per-element timeouts
//! (`hash:net` for the 2024 original's set, [`SetType`]), and iptables
//! rules matching the set (`-m set --match-set NAME src`), one per family
//! and protocol of the scope, in `raw` PREROUTING by default. `[limits]`
//! go in chains of their own after them ([`super::limits::ipt`]). Element changes
//! go to the kernel over netlink, one send per batch ([`ipset_netlink`]);
//! without it, as one `ipset restore` per batch. Sets, listings and rules
//! use the tools.
//!
//! Permanent deny entries go to `hash:net` sets `<set4>-deny` /
//! `<set6>-deny` (no timeout) with their own `--match-set ... src` rule per
//! family beside the ban rule; a family's deny set and rule exist only
//! while it has deny entries. A new deny list is loaded into a temporary
//! set and swapped in (`ipset swap`, atomic), all in one `ipset restore`:
//! the netlink module speaks `hash:ip` element changes only, and a deny
//! list changes rarely. In set-only mode the administrator's `hash:net`
//! sets named by `deny4` / `deny6` are brought to the list by adding the
//! missing entries, then deleting the dropped ones (no temporary set is
//! created there, and entries in both lists are never absent).
//!
//! [`ipset_netlink`]: super::ipset_netlink

mod deny_sets;
mod elements;
mod lister;
mod objects;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use iptables::IPTables;

use super::deny::DenyList;
use super::exec::{run, tool, works};
use super::ipset_netlink::IpsetNetlink;
use super::limits::ipt::IptLimits;
use super::limits::{FloodWatch, Limits};
use super::rule::Hook;
use super::sets::{Ownership, SetSettings, SetType, adopt_known};
use super::{Backend, Depth, FirewallError, Held, Lister};
use lister::{IpsetLister, parse_saved};

pub struct IpsetBackend {
    s: SetSettings,
    ipset: String,
    ipt4: Option<IPTables>,
    ipt6: Option<IPTables>,
    pending: Vec<(IpAddr, Option<Duration>)>,
    /// Set-only mode: the elements we added (what is removed on stop, and
    /// all that reconcile may touch). Unused when we own the sets.
    known: HashSet<IpAddr>,
    /// Netlink to the kernel's ipset subsystem, for element changes.
    nl: Option<IpsetNetlink>,
    /// The socket is opened on first use, on the thread that applies
    /// changes: it belongs to that thread's network namespace. Once an
    /// open failed (or `spawn_only`), `ipset restore` for good.
    nl_tried: bool,
    /// The last deny list given, put back by `repair`.
    deny: DenyList,
    /// Set-only mode: `set_denied` was called, so the configured deny
    /// sets' content is ours (emptied on stop).
    deny_given: bool,
    /// Set-only mode without deny sets: said once that they are not
    /// enforced.
    deny_warned: bool,
    set_type: SetType,
    /// `[limits]`, after our rules in the hook.
    limits: IptLimits,
    /// The networks exempt from the limits, put back by `repair`.
    allow: DenyList,
}

fn iptables(dir: &str, name: &str) -> Result<IPTables, FirewallError> {
    let cmd = tool(dir, name);
    run(&cmd, &["--version"], None)?;
    let cmd: &'static str = Box::leak(cmd.into_boxed_str());
    Ok(IPTables {
        cmd,
        has_check: true,
        has_wait: true,
        is_numeric: true,
    })
}

fn ipt_err(what: String) -> impl FnOnce(Box<dyn std::error::Error>) -> FirewallError {
    move |e| FirewallError::Command {
        what,
        detail: e.to_string().trim().to_string(),
    }
}

impl IpsetBackend {
    pub fn new(s: SetSettings) -> Self {
        Self::with_runner(s, false)
    }

    /// `spawn_only`: run `ipset restore` per batch even if netlink works
    /// (the fallback path).
    pub fn with_runner(s: SetSettings, spawn_only: bool) -> Self {
        let base = s.set4.strip_suffix("-v4").unwrap_or(&s.set4);
        let limits = IptLimits::new(
            base,
            [&s.set4, &s.set6],
            s.scope.clone(),
            Limits::OFF,
            s.hook,
            tool(&s.bin_dir, "ipset"),
        );
        IpsetBackend {
            limits,
            allow: DenyList::default(),
            set_type: SetType::Ip,
            ipset: tool(&s.bin_dir, "ipset"),
            s,
            ipt4: None,
            ipt6: None,
            pending: Vec::new(),
            known: HashSet::new(),
            nl: None,
            nl_tried: spawn_only,
            deny: DenyList::default(),
            deny_given: false,
            deny_warned: false,
        }
    }

    /// Ban sets of another type: `hash:net` fills the 2024 original's set
    /// (its elements are the same single addresses; the administrator may
    /// add networks by hand).
    pub fn with_set_type(mut self, set_type: SetType) -> Self {
        self.set_type = set_type;
        self
    }

    /// With the per-source limits and static protections of `[limits]`
    /// (own mode only: init refuses them in set-only mode).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits.limits = limits;
        self
    }

    /// Whether this machine can run the backend.
    pub fn available(bin_dir: &str) -> bool {
        works(&tool(bin_dir, "ipset"), &["list", "-n"])
            && works(&tool(bin_dir, "iptables"), &["--version"])
    }

    fn set_of(&self, ip: &IpAddr) -> &str {
        if ip.is_ipv4() {
            &self.s.set4
        } else {
            &self.s.set6
        }
    }

    fn table_chain(&self) -> (&'static str, &'static str) {
        match self.s.hook {
            Hook::Raw => ("raw", "PREROUTING"),
            Hook::Filter => ("filter", "INPUT"),
        }
    }

    fn rules(&self, v6: bool) -> Vec<String> {
        self.match_rules(v6, if v6 { &self.s.set6 } else { &self.s.set4 })
    }

    /// The rules dropping (or rejecting) sources in `set`: one per protocol
    /// of the scope (one for every packet with `block = all`).
    fn match_rules(&self, v6: bool, set: &str) -> Vec<String> {
        let action = if v6 { &self.s.action6 } else { &self.s.action4 };
        self.s
            .scope
            .ipt_ban_matches()
            .into_iter()
            .map(|mut args| {
                args.extend(["-m", "set", "--match-set", set, "src", "-j"].map(str::to_string));
                args.push(action.at(self.s.hook).to_string());
                args.join(" ")
            })
            .collect()
    }

    /// Whether a `-S` line of the hook chain is one of our rules (bans or
    /// deny entries), which the limits' jump goes after.
    fn is_ours(&self, line: &str) -> bool {
        let sets = [Some(self.s.set4.clone()), Some(self.s.set6.clone())]
            .into_iter()
            .chain([self.own_deny_set(false), self.own_deny_set(true)])
            .flatten();
        let mut sets = sets;
        sets.any(|set| line.contains(&format!("--match-set {set} src")))
    }
}

impl Backend for IpsetBackend {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        self.init_objects()
    }

    fn add(&mut self, ip: IpAddr, timeout: Duration) {
        self.pending.push((ip, Some(timeout)));
    }

    fn delete(&mut self, ip: IpAddr) {
        self.pending.push((ip, None));
    }

    fn commit(&mut self) -> Result<(), FirewallError> {
        let changes = std::mem::take(&mut self.pending);
        if changes.is_empty() {
            return Ok(());
        }
        // One bad element must not block the others.
        let failures = self.apply(&changes);
        if self.s.mode == Ownership::SetOnly {
            for (ip, add) in &changes {
                if failures.iter().any(|(f, _)| f == ip) {
                    continue;
                }
                if add.is_some() {
                    self.known.insert(*ip);
                } else {
                    self.known.remove(ip);
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FirewallError::Elements(failures))
        }
    }

    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(self.held()?.into_iter().map(|h| h.ip).collect())
    }

    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        let mut out = Vec::new();
        for set in [&self.s.set4, &self.s.set6] {
            let saved = run(&self.ipset, &["save", set], None)?;
            out.extend(saved.lines().filter_map(|l| parse_saved(l, set)));
        }
        if self.s.mode == Ownership::SetOnly {
            // The administrator's own entries are not ours to reconcile away.
            out.retain(|h| self.known.contains(&h.ip));
            self.known = out.iter().map(|h| h.ip).collect();
        }
        Ok(out)
    }

    fn lister(&mut self) -> Option<Box<dyn Lister>> {
        Some(Box::new(IpsetLister {
            ipset: self.ipset.clone(),
            sets: [self.s.set4.clone(), self.s.set6.clone()],
        }))
    }

    fn adopt_listing(&mut self, held: Vec<Held>, touched: &HashSet<IpAddr>) -> Vec<IpAddr> {
        match self.s.mode {
            Ownership::Own => held.into_iter().map(|h| h.ip).collect(),
            Ownership::SetOnly => adopt_known(&mut self.known, held, touched),
        }
    }

    fn repair(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        self.repair_objects(depth)
    }

    fn set_allowed(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        self.allow = DenyList::new(nets);
        if self.s.mode == Ownership::SetOnly {
            return Ok(());
        }
        let mut first = None;
        for (ipt, v6) in [(&self.ipt4, false), (&self.ipt6, true)] {
            if ipt.is_some()
                && let Err(e) = self.limits.set_allowed(v6, self.allow.family(v6))
            {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn flood_watch(&mut self) -> Option<FloodWatch> {
        if self.s.mode == Ownership::SetOnly {
            return None;
        }
        Some(FloodWatch {
            reader: self.limits.reader(true)?,
            ban_after: self.limits.limits.sip_ban_after?,
        })
    }

    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        self.deny = DenyList::new(nets);
        if self.s.mode == Ownership::SetOnly {
            self.deny_given = true;
            let mut first = None;
            let mut unenforced = 0;
            for (v6, set) in [(false, &self.s.deny4), (true, &self.s.deny6)] {
                match set {
                    Some(set) => {
                        if let Err(e) = self.fill_admin_deny(v6, set) {
                            first.get_or_insert(e);
                        }
                    }
                    None => unenforced += self.deny.family(v6).len(),
                }
            }
            if unenforced > 0 && !self.deny_warned {
                self.deny_warned = true;
                tracing::warn!(
                    "IPSET => set-only mode without deny4/deny6 sets: {unenforced} deny entries \
                     are not enforced in the firewall (name hash:net sets of your ruleset there)"
                );
            }
            return first.map_or(Ok(()), Err);
        }
        let mut first = None;
        for v6 in [false, true] {
            if let Err(e) = self.apply_own_deny(v6) {
                first.get_or_insert(e);
            }
        }
        tracing::info!(
            "IPSET => {} deny entries in {} / {}",
            self.deny.len(),
            self.s.deny_set(false).unwrap_or_default(),
            self.s.deny_set(true).unwrap_or_default()
        );
        first.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        self.remove_objects()
    }
}
