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

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use iptables::IPTables;

use super::deny::{self, DenyList};
use super::exec::{run, tool, works};
use super::ipset_netlink::{self, Change, IpsetNetlink};
use super::ipset_tool::{self, MAXELEM, swap_name};
use super::limits::ipt::IptLimits;
use super::limits::{FloodWatch, Limits};
use super::rule::Hook;
use super::sets::{Ownership, SetSettings, SetType, adopt_known, kernel_timeout};
use super::{Backend, Depth, FirewallError, Held, Lister};

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

/// An `add SET 192.0.2.1 timeout 3597` line of `ipset save SET`.
fn parse_saved(line: &str, set: &str) -> Option<Held> {
    let mut w = line.split_whitespace();
    if w.next() != Some("add") || w.next() != Some(set) {
        return None;
    }
    let ip = w.next()?.parse::<IpAddr>().ok()?;
    let mut remaining = None;
    while let Some(word) = w.next() {
        if word == "timeout" {
            remaining = w
                .next()
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs);
        }
    }
    Some(Held { ip, remaining })
}

/// Counts our ban sets by their headers and lists them with `ipset save`,
/// on the lister thread.
struct IpsetLister {
    ipset: String,
    sets: [String; 2],
}

impl Lister for IpsetLister {
    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        let mut out = Vec::new();
        for set in &self.sets {
            let saved = run(&self.ipset, &["save", set], None)?;
            out.extend(saved.lines().filter_map(|l| parse_saved(l, set)));
        }
        Ok(out)
    }

    fn count(&mut self) -> Result<Option<usize>, FirewallError> {
        let mut n = 0;
        for set in &self.sets {
            n += ipset_tool::entries(&self.ipset, set)?;
        }
        Ok(Some(n))
    }
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

    /// A ban set taken over keeps its type (its elements are the bans); a
    /// configured type it does not have is said, not silently ignored.
    fn check_set_types(&self) {
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

    fn set_exists(&self, set: &str) -> bool {
        ipset_tool::set_exists(&self.ipset, set)
    }

    fn create_sets(&self) -> Result<Vec<String>, FirewallError> {
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
    fn remove_our_rules(&self) -> Result<usize, FirewallError> {
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
    fn remove_rules_of(&self, v6: bool, set: &str) -> Result<usize, FirewallError> {
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

    /// Own mode: our deny set of a family.
    fn own_deny_set(&self, v6: bool) -> Option<String> {
        (self.s.mode == Ownership::Own)
            .then(|| self.s.deny_set(v6))
            .flatten()
    }

    /// Entries of a `hash:net` set as `ipset save` lists them.
    fn saved_nets(&self, set: &str) -> Result<Vec<IpNet>, FirewallError> {
        ipset_tool::saved_nets(&self.ipset, set)
    }

    /// Own mode: loads the family's deny entries into a temporary set and
    /// swaps it in, in one `ipset restore`; creates the set if missing.
    fn fill_own_deny(&self, v6: bool, set: &str) -> Result<(), FirewallError> {
        let family = if v6 { "inet6" } else { "inet" };
        ipset_tool::swap_fill(&self.ipset, set, family, self.deny.family(v6))
    }

    /// Set-only mode: brings the administrator's deny set to the list, adds
    /// first, then deletes.
    fn fill_admin_deny(&self, v6: bool, set: &str) -> Result<(), FirewallError> {
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
    fn apply_own_deny(&self, v6: bool) -> Result<(), FirewallError> {
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
    fn apply_own_deny_rule(&self, v6: bool, set: &str) -> Result<Option<String>, FirewallError> {
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
    fn destroy_deny_sets(&self) -> Result<usize, FirewallError> {
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
    fn deny_drift(&self, v6: bool, set: &str, depth: Depth) -> Option<String> {
        if !self.set_exists(set) {
            return Some(format!("ipset {set}"));
        }
        match ipset_tool::holds(&self.ipset, set, &self.deny, v6, depth) {
            Ok(true) => None,
            _ => Some(format!("deny entries of ipset {set}")),
        }
    }

    /// Ensures our match rules (one per family and protocol) at the top of
    /// the hook.
    fn ensure_rules(&self, force: bool) -> Result<Vec<String>, FirewallError> {
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

    fn restore(&self, script: &str) -> Result<(), FirewallError> {
        run(&self.ipset, &["-exist", "restore"], Some(script.as_bytes())).map(|_| ())
    }

    /// The netlink socket, opened on first use.
    fn netlink(&mut self) -> Option<&mut IpsetNetlink> {
        if !self.nl_tried {
            self.nl_tried = true;
            match IpsetNetlink::open() {
                Ok(nl) => {
                    tracing::debug!("IPSET => netlink, protocol {}", nl.protocol());
                    self.nl = Some(nl);
                }
                Err(e) => tracing::info!(
                    "IPSET => no netlink to the kernel's ipset ({e}); running {} restore per batch",
                    self.ipset
                ),
            }
        }
        self.nl.as_mut()
    }

    /// Applies changes over netlink: the refused ones, or `None` when
    /// netlink is not there or failed (then the caller uses the tool; every
    /// change is idempotent, so a batch half applied can be applied again).
    fn apply_netlink(
        &mut self,
        changes: &[(IpAddr, Option<Duration>)],
    ) -> Option<Vec<(IpAddr, String)>> {
        self.netlink()?;
        let batch: Vec<Change<'_>> = changes
            .iter()
            .map(|(ip, add)| Change {
                set: if ip.is_ipv4() {
                    &self.s.set4
                } else {
                    &self.s.set6
                },
                ip: *ip,
                // kernel_timeout() is at most KERNEL_MAX_TIMEOUT (< 2^31).
                timeout: add.map(|t| kernel_timeout(t) as u32),
            })
            .collect();
        let nl = self.nl.as_mut()?;
        match nl.apply(&batch) {
            // Every message refused as malformed: either this kernel does
            // not take our messages, or the set is of another type (set-only
            // mode). The tool tells which: if it applies the first change,
            // the rest of the batch and all after go through it.
            Ok(refused)
                if ipset_netlink::protocol_rejected(&refused, batch.len())
                    && self.restore(&self.line(changes[0].0, changes[0].1)).is_ok() =>
            {
                tracing::info!(
                    "IPSET => the kernel rejects our netlink messages ({}); running {} restore \
                     per batch",
                    refused[0].message,
                    self.ipset
                );
                self.nl = None;
                None
            }
            Ok(refused) => Some(
                refused
                    .into_iter()
                    .map(|r| (changes[r.index].0, r.message))
                    .collect(),
            ),
            Err(e) => {
                // Opened again on the next batch.
                tracing::warn!(
                    "IPSET => netlink failed ({e}); this batch goes through {} restore",
                    self.ipset
                );
                self.nl = None;
                self.nl_tried = false;
                None
            }
        }
    }

    /// One `ipset restore` for the batch; if it fails, one per element so
    /// one bad element cannot block the others.
    fn apply_restore(&self, changes: &[(IpAddr, Option<Duration>)]) -> Vec<(IpAddr, String)> {
        let mut script = String::with_capacity(changes.len() * 48);
        for (ip, add) in changes {
            script.push_str(&self.line(*ip, *add));
        }
        match self.restore(&script) {
            Ok(()) => Vec::new(),
            Err(_) => changes
                .iter()
                .filter_map(|(ip, add)| {
                    self.restore(&self.line(*ip, *add))
                        .err()
                        .map(|e| (*ip, e.to_string()))
                })
                .collect(),
        }
    }

    /// Applies changes in order; returns the failed ones with why.
    fn apply(&mut self, changes: &[(IpAddr, Option<Duration>)]) -> Vec<(IpAddr, String)> {
        match self.apply_netlink(changes) {
            Some(failures) => failures,
            None => self.apply_restore(changes),
        }
    }

    fn line(&self, ip: IpAddr, add: Option<Duration>) -> String {
        match add {
            Some(t) => format!(
                "add {} {ip} timeout {}\n",
                self.set_of(&ip),
                kernel_timeout(t)
            ),
            None => format!("del {} {ip}\n", self.set_of(&ip)),
        }
    }
}

impl Backend for IpsetBackend {
    fn name(&self) -> &'static str {
        "ipset"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_elements_with_timeouts() {
        let h = parse_saved("add v4 192.0.2.1 timeout 3597", "v4").unwrap();
        assert_eq!(h.ip, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(h.remaining, Some(Duration::from_secs(3597)));
        let h = parse_saved("add v6 2001:db8::1", "v6").unwrap();
        assert_eq!(h.remaining, None);
        assert!(parse_saved("add other 192.0.2.1 timeout 5", "v4").is_none());
        assert!(parse_saved("create v4 hash:ip family inet", "v4").is_none());
        assert!(parse_saved("add v4 not-an-ip timeout 5", "v4").is_none());
    }
}
