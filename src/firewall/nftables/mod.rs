//! nftables backend: our own table (`inet sipban`) with one IPv4 and one
//! IPv6 set (`flags timeout`, per-element timeouts) and one chain hooked at
//! prerouting, raw priority by default. Each batch is one nftables
//! transaction, in-process through libnftables when available
//! ([`super::libnft`]).
//!
//! Permanent deny entries go to interval sets `<set4>-deny` / `<set6>-deny`
//! (address . protocol, `flags interval`, no timeouts: a concatenation is
//! looked up in constant time) with their own rule each in our chain;
//! a family's deny set and rule exist only while it has deny entries. A new
//! deny list is one transaction: `flush set` and `add element` together, so
//! no packet ever sees the set half filled. Overlaps are removed before
//! (see [`super::deny`]): interval sets refuse overlapping elements unless
//! `auto-merge` is set, and auto-merge would list merged neighbours instead
//! of the entries given. In set-only mode the administrator's interval sets
//! named by `deny4` / `deny6` are refilled the same way.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::deny::{DenyList, text};
use super::exec::{tool, works};
use super::libnft::Nft;
use super::libnft::elements::{self, ElementsError};
use super::limits::nft::{NftLimits, Objects};
use super::limits::{FloodWatch, Limits};
use super::nft_listing::{parse_elements, parse_held, parse_spans, rules_using};
use super::rule::Hook;
use super::sets::{Ownership, SetSettings, adopt_known, kernel_timeout};
use super::{Backend, Depth, FirewallError, Held, Lister, ObjectCheck};

mod changes;
mod objects;
mod prefilter;

use changes::{CHUNK, Change, NftLister, list_held};

/// Our chain inside our table.
const CHAIN: &str = "sipban";

pub struct NftBackend {
    s: SetSettings,
    nft: Nft,
    pending: Vec<(IpAddr, Change)>,
    /// Set-only mode: the elements we added (the set is shared with the
    /// administrator's own). Unused when we own the sets.
    known: HashSet<IpAddr>,
    /// The last deny list given, put back by `repair`.
    deny: DenyList,
    /// Set-only mode: `set_denied` was called, so the configured deny sets'
    /// content is ours (emptied on stop).
    deny_given: bool,
    /// Set-only mode without deny sets: said once that they are not
    /// enforced.
    deny_warned: bool,
    /// Own mode: the deny list applied last was empty, so no deny objects
    /// exist (init removes a crashed run's). An empty list then needs no
    /// kernel work: listing our chain costs ~0.5 s with 100k bans.
    deny_empty: bool,
    /// `[limits]`, in our table (own mode only).
    limits: NftLimits,
    /// The networks exempt from the limits, put back by `repair`.
    allow: DenyList,
}

impl NftBackend {
    pub fn new(s: SetSettings) -> Self {
        Self::with_runner(s, false)
    }

    /// `spawn_only`: run the `nft` tool per batch even if libnftables is
    /// there (for comparison in the benchmark).
    pub fn with_runner(s: SetSettings, spawn_only: bool) -> Self {
        let limits = NftLimits {
            table: format!("inet {}", own_table_name(&s.table)),
            set4: s.set4.clone(),
            set6: s.set6.clone(),
            scope: s.scope.clone(),
            limits: Limits::OFF,
            hook: s.hook,
        };
        NftBackend {
            nft: Nft::new(tool(&s.bin_dir, "nft"), spawn_only),
            limits,
            allow: DenyList::default(),
            s,
            pending: Vec::new(),
            known: HashSet::new(),
            deny: DenyList::default(),
            deny_given: false,
            deny_warned: false,
            deny_empty: true,
        }
    }

    /// With the per-source limits and static protections of `[limits]`
    /// (own mode only: init refuses them in set-only mode).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits.limits = limits;
        self
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
}

/// `inet sipban` -> `sipban`; a bare name stays.
fn own_table_name(table: &str) -> &str {
    table.split_whitespace().last().unwrap_or("sipban")
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            if self.limits.limits.any() {
                return Err(FirewallError::Command {
                    what: "set-only mode".into(),
                    detail: "[limits] needs [firewall] mode = own (the rules live in our table)"
                        .into(),
                });
            }
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
        // A crashed run's limits go, this configuration's come.
        let present = Objects::parse(&self.nft.run_terse(&format!("list table {t}"))?);
        let limits = self.limits.setup(&present, &self.allow);
        if !limits.is_empty() {
            self.apply(&limits)?;
        }
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
        self.commit_pending()
    }

    /// What the kernel holds; in set-only mode only the elements we added
    /// (the administrator's own entries are not ours to reconcile away).
    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(self.held()?.into_iter().map(|h| h.ip).collect())
    }

    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        let t = self.table();
        let mut out = Vec::new();
        for set in [self.s.set4.clone(), self.s.set6.clone()] {
            out.extend(list_held(&mut self.nft, &t, &set)?);
        }
        if self.s.mode == Ownership::SetOnly {
            out.retain(|h| self.known.contains(&h.ip));
            self.known = out.iter().map(|h| h.ip).collect();
        }
        Ok(out)
    }

    fn object_check(&mut self) -> Option<ObjectCheck> {
        let expected = self.expected();
        Some(Box::new(move || expected.check()))
    }

    fn lister(&mut self) -> Option<Box<dyn Lister>> {
        // The tool, not a second libnftables context: one process a check
        // is cheap off the applier, and nothing relies on the library being
        // safe to use from two threads.
        Some(Box::new(NftLister {
            nft: Nft::new(tool(&self.s.bin_dir, "nft"), true),
            table: self.table(),
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
        let script = self.limits.allow_script(&self.allow);
        if script.is_empty() {
            return Ok(());
        }
        self.apply(&script)
    }

    fn flood_watch(&mut self) -> Option<FloodWatch> {
        if self.s.mode == Ownership::SetOnly {
            return None;
        }
        let reader = self.limits.reader(tool(&self.s.bin_dir, "nft"))?;
        Some(FloodWatch {
            reader,
            ban_after: self.limits.limits.sip_ban_after?,
        })
    }

    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        self.deny = DenyList::new(nets);
        let t = self.table();
        let own = self.s.mode == Ownership::Own;
        if own && self.deny.is_empty() && self.deny_empty {
            return Ok(());
        }
        if self.s.mode == Ownership::SetOnly {
            self.deny_given = true;
            let unenforced: usize = [(false, &self.s.deny4), (true, &self.s.deny6)]
                .into_iter()
                .filter(|(_, set)| set.is_none())
                .map(|(v6, _)| self.deny.family(v6).len())
                .sum();
            if unenforced > 0 && !self.deny_warned {
                self.deny_warned = true;
                tracing::warn!(
                    "NFT => set-only mode without deny4/deny6 sets: {unenforced} deny entries \
                     are not enforced in the firewall (name interval sets of your ruleset there)"
                );
            }
        }
        let script = self.deny_script()?;
        if !script.is_empty() {
            self.apply(&script)?;
        }
        self.deny_empty = self.deny.is_empty();
        tracing::info!("NFT => {} deny entries in {t}", self.deny.len());
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            let dels: Vec<_> = self.known.iter().map(|ip| (*ip, Change::Delete)).collect();
            let mut script = self.script(&dels);
            if self.deny_given {
                // The deny sets' content is the deny list: ours to empty.
                let t = self.table();
                for set in [self.s.deny4.clone(), self.s.deny6.clone()]
                    .into_iter()
                    .flatten()
                {
                    let _ = writeln!(script, "flush set {t} {set}");
                }
                self.deny_given = false;
            }
            self.known.clear();
            return if script.is_empty() {
                Ok(())
            } else {
                self.apply(&script)
            };
        }
        let t = self.table();
        self.known.clear();
        // Deleted first, asked about only if that fails: any listing
        // fetches every element (0.4 s at 100k), a delete does not.
        let r = self.apply(&format!("delete table {t}\n"));
        match r {
            Ok(()) => tracing::info!("NFT => table {t} removed"),
            Err(_) if !self.nft.ok(&format!("list table {t}")) => {
                tracing::warn!("NFT => table {t} was already gone at shutdown");
                return Ok(());
            }
            Err(_) => {}
        }
        r
    }
}
