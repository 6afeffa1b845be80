//! Our table's objects: table, sets, chain and rules, the deny sets and
//! the limit objects, as nft scripts; what is missing or wrong in them.

use super::*;
use crate::firewall::nft_listing::chain_rules_using;

impl NftBackend {
    /// [`Backend::repair`]: our objects put back where they drifted.
    pub(super) fn repair_objects(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        if self.s.mode == Ownership::SetOnly {
            self.check_sets()?;
            if !self.deny_given {
                return Ok(Vec::new());
            }
            let drift = self.deny_drift(None, depth);
            if !drift.is_empty() {
                let script = self.deny_script()?;
                self.apply(&script)?;
            }
            return Ok(drift);
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
            match self.nft.run_terse(&format!("list chain {t} {CHAIN}")) {
                Err(_) => missing.push(format!("chain {CHAIN}")),
                Ok(json) => {
                    let ours = [&self.s.set4, &self.s.set6];
                    let want = self.rules_per_set();
                    if ours.iter().any(|set| rules_using(&json, set).len() != want) {
                        missing.push(format!("rules of chain {CHAIN}"));
                    }
                }
            }
        }
        if !missing.is_empty() {
            let script = self.setup_script()?;
            self.apply(&script)?;
        }
        if !self.deny.is_empty() {
            let chain = self.nft.run_terse(&format!("list chain {t} {CHAIN}"))?;
            let drift = self.deny_drift(Some(&chain), depth);
            if !drift.is_empty() {
                let script = self.deny_script()?;
                self.apply(&script)?;
                missing.extend(drift);
            }
        }
        missing.extend(self.repair_limits(depth)?);
        Ok(missing)
    }

    /// Table, sets, chain and rules. Existing sets (and their elements) are
    /// kept; the chain is rebuilt so a changed hook or scope takes effect.
    pub(super) fn setup_script(&mut self) -> Result<String, FirewallError> {
        let t = self.table();
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
        for v6 in [false, true] {
            let set = if v6 { &self.s.set6 } else { &self.s.set4 };
            for rule in self.rule_lines(v6, set) {
                let _ = writeln!(sc, "{rule}");
            }
        }
        // Deny sets and rules for the families that have deny entries (the
        // elements are put in by `deny_script`); a crashed run's deny sets,
        // unreferenced once the chain is rebuilt, go.
        for v6 in [false, true] {
            let Some(set) = self.s.deny_set(v6) else {
                continue;
            };
            let pre = self.prefilter(v6, &set);
            if !self.deny.family(v6).is_empty() {
                let _ = writeln!(sc, "{}", deny_set_decl(&t, &set, v6));
                if let Some(pre) = &pre {
                    let _ = writeln!(sc, "{}", prefilter::decl(&t, pre));
                }
                for rule in self.deny_rule_lines(v6, &set) {
                    let _ = writeln!(sc, "{rule}");
                }
            } else {
                for set in std::iter::once(&set).chain(&pre) {
                    if self.nft.ok(&format!("list set {t} {set}")) {
                        let _ = writeln!(sc, "delete set {t} {set}");
                    }
                }
            }
        }
        Ok(sc)
    }

    /// `add rule` lines dropping (or rejecting) sources in `set`: one per
    /// protocol of the scope (or one for every packet, `block = all`).
    pub(super) fn rule_lines(&self, v6: bool, set: &str) -> Vec<String> {
        self.lines(v6, set, &format!("{} saddr", family(v6)))
    }

    /// The same for our deny set of the family, keyed by address and
    /// protocol ([`deny_set_decl`]).
    pub(super) fn deny_rule_lines(&self, v6: bool, set: &str) -> Vec<String> {
        let key = format!("{} {DENY_KEY}", family(v6));
        let lookup = match self.prefilter(v6, set) {
            Some(pre) => format!("{} {key}", prefilter::matches(&pre)),
            None => key,
        };
        self.lines(v6, set, &lookup)
    }

    /// Own mode, IPv4: the prefilter in front of deny set `set`.
    pub(super) fn prefilter(&self, v6: bool, set: &str) -> Option<String> {
        (!v6 && self.s.mode == Ownership::Own).then(|| prefilter::name(set))
    }

    /// One rule per match of the scope: `lookup` (`ip saddr`, ...) in `set`.
    fn lines(&self, v6: bool, set: &str, lookup: &str) -> Vec<String> {
        let t = self.table();
        let action = if v6 { &self.s.action6 } else { &self.s.action4 };
        let action = action.at(self.s.hook).to_nft();
        self.s
            .scope
            .nft_ban_matches()
            .into_iter()
            .map(|m| {
                let sep = if m.is_empty() { "" } else { " " };
                format!("add rule {t} {CHAIN} {m}{sep}{lookup} @{set} {action}")
            })
            .collect()
    }

    /// What the periodic check of our objects expects now.
    pub(super) fn expected(&self) -> Expected {
        let own = self.s.mode == Ownership::Own;
        let mut sets = vec![self.s.set4.clone(), self.s.set6.clone()];
        for v6 in [false, true] {
            let in_use = if own {
                !self.deny.family(v6).is_empty()
            } else {
                self.deny_given
            };
            if let Some(set) = self.s.deny_set(v6).filter(|_| in_use) {
                sets.extend(self.prefilter(v6, &set));
                sets.push(set);
            }
        }
        Expected {
            bin: tool(&self.s.bin_dir, "nft"),
            table: self.table(),
            sets,
            rules_per_set: own.then(|| self.rules_per_set()),
            limits: (own && self.limits.limits.any()).then(|| self.limits.clone()),
        }
    }

    /// Rules one set needs in our chain.
    pub(super) fn rules_per_set(&self) -> usize {
        self.s.scope.nft_ban_matches().len()
    }

    /// One transaction making the deny sets hold exactly `self.deny`: per
    /// family, `flush set` + `add element` (own mode: the set and its rule
    /// created if missing, both removed when the family has no entries).
    pub(super) fn deny_script(&mut self) -> Result<String, FirewallError> {
        let t = self.table();
        let own = self.s.mode == Ownership::Own;
        let chain = if own {
            self.nft.run_terse(&format!("list chain {t} {CHAIN}")).ok()
        } else {
            None
        };
        let mut sc = String::new();
        for v6 in [false, true] {
            let Some(set) = self.s.deny_set(v6) else {
                continue;
            };
            let nets = self.deny.family(v6);
            let rules = chain
                .as_deref()
                .map(|json| rules_using(json, &set))
                .unwrap_or_default();
            let pre = self.prefilter(v6, &set);
            if own && nets.is_empty() {
                if self.nft.ok(&format!("list set {t} {set}")) {
                    for handle in rules {
                        let _ = writeln!(sc, "delete rule {t} {CHAIN} handle {handle}");
                    }
                    let _ = writeln!(sc, "delete set {t} {set}");
                }
                if let Some(pre) = pre.filter(|p| self.nft.ok(&format!("list set {t} {p}"))) {
                    let _ = writeln!(sc, "delete set {t} {pre}");
                }
                continue;
            }
            if own {
                let _ = writeln!(sc, "{}", deny_set_decl(&t, &set, v6));
            }
            if let Some(pre) = &pre {
                let _ = writeln!(sc, "{}", prefilter::decl(&t, pre));
                sc.push_str(&prefilter::fill(&t, pre, &prefilter::values(nets)));
            }
            let _ = writeln!(sc, "flush set {t} {set}");
            let elements: Vec<String> = if own {
                nets.iter()
                    .map(|n| format!("{} . 0-255", text(n)))
                    .collect()
            } else {
                nets.iter().map(text).collect()
            };
            for chunk in elements.chunks(CHUNK) {
                let _ = writeln!(sc, "add element {t} {set} {{ {} }}", chunk.join(", "));
            }
            if own && rules.len() != self.rules_per_set() {
                for handle in rules {
                    let _ = writeln!(sc, "delete rule {t} {CHAIN} handle {handle}");
                }
                for rule in self.deny_rule_lines(v6, &set) {
                    let _ = writeln!(sc, "{rule}");
                }
            }
        }
        Ok(sc)
    }

    /// What is missing or wrong in the deny sets and rules (`chain`: our
    /// chain's listing, own mode); their entries are compared only at
    /// [`Depth::Full`] (nftables gives no count without the listing).
    pub(super) fn deny_drift(&mut self, chain: Option<&str>, depth: Depth) -> Vec<String> {
        let t = self.table();
        let mut drift = Vec::new();
        for v6 in [false, true] {
            let Some(set) = self.s.deny_set(v6) else {
                continue;
            };
            if self.s.mode == Ownership::Own && self.deny.family(v6).is_empty() {
                continue;
            }
            let listing = match depth {
                Depth::Full => self.nft.run(&format!("list set {t} {set}")),
                Depth::Quick => self.nft.run_terse(&format!("list set {t} {set}")),
            };
            match listing {
                Err(_) => drift.push(format!("set {set}")),
                Ok(_) if depth == Depth::Quick => {}
                Ok(json) => {
                    let held = parse_spans(&json);
                    if !held.is_some_and(|h| self.deny.matches_spans(v6, &h)) {
                        drift.push(format!("deny entries of set {set}"));
                    }
                }
            }
            if let Some(pre) = self.prefilter(v6, &set) {
                let want = prefilter::values(self.deny.family(v6));
                let held = match depth {
                    Depth::Full => self.nft.run(&format!("list set {t} {pre}")).ok(),
                    Depth::Quick => self.nft.run_terse(&format!("list set {t} {pre}")).ok(),
                };
                match held {
                    None => drift.push(format!("set {pre}")),
                    Some(_) if depth == Depth::Quick => {}
                    Some(json) if prefilter::parse(&json) != Some(want) => {
                        drift.push(format!("entries of set {pre}"));
                    }
                    Some(_) => {}
                }
            }
            if let Some(json) = chain
                && rules_using(json, &set).len() != self.rules_per_set()
            {
                drift.push(format!("rules for set {set}"));
            }
        }
        drift
    }

    /// Puts back missing limit objects (all of them, in one transaction)
    /// and, at [`Depth::Full`], the exempt networks if they differ.
    pub(super) fn repair_limits(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        if !self.limits.limits.any() {
            return Ok(Vec::new());
        }
        let t = self.table();
        let present = Objects::parse(&self.nft.run_terse(&format!("list table {t}"))?);
        let missing = self.limits.missing(&present);
        if !missing.is_empty() {
            let script = self.limits.setup(&present, &self.allow);
            self.apply(&script)?;
            return Ok(missing);
        }
        let Some(sets) = self.limits.allow_sets().filter(|_| depth == Depth::Full) else {
            return Ok(missing);
        };
        let mut drifted = Vec::new();
        for (v6, set) in sets.iter().enumerate() {
            let json = self.nft.run(&format!("list set {t} {set}"))?;
            let held = parse_spans(&json);
            if !held.is_some_and(|h| self.allow.matches_spans(v6 == 1, &h)) {
                drifted.push(format!("exempt networks of set {set}"));
            }
        }
        if !drifted.is_empty() {
            let script = self.limits.allow_script(&self.allow);
            self.apply(&script)?;
        }
        Ok(drifted)
    }

    pub(super) fn check_sets(&mut self) -> Result<(), FirewallError> {
        let t = self.table();
        let bans = [self.s.set4.clone(), self.s.set6.clone()]
            .into_iter()
            .map(|s| (s, "flags timeout"));
        let denies = [self.s.deny4.clone(), self.s.deny6.clone()]
            .into_iter()
            .flatten()
            .map(|s| (s, "flags interval"));
        for (set, flags) in bans.chain(denies) {
            if !self.nft.ok(&format!("list set {t} {set}")) {
                return Err(FirewallError::Command {
                    what: format!("set-only mode: nft set {t} {set}"),
                    detail: format!("set does not exist; create it ({flags}) in your ruleset"),
                });
            }
        }
        Ok(())
    }
}

/// `add set` of a deny set: an interval set of the family, no timeouts.
/// Our deny sets' key: the address and, matching every protocol, the
/// protocol. A concatenation makes the kernel look it up with pipapo, in a
/// time that does not grow with the list; a plain interval set is a
/// red-black tree, about 10 points of SIP throughput at 5,000 networks
/// (`SIPBAN_BENCH=packets`).
const DENY_KEY: &str = "saddr . meta l4proto";

fn family(v6: bool) -> &'static str {
    if v6 { "ip6" } else { "ip" }
}

/// `add set` of one of our deny sets: an interval set of the family's
/// addresses and the protocol (elements `NET . 0-255`), no timeouts.
pub(super) fn deny_set_decl(t: &str, set: &str, v6: bool) -> String {
    let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
    format!("add set {t} {set} {{ type {ty} . inet_proto; flags interval; }}")
}

/// What the periodic check of our objects expects, taken on the applier
/// and checked on the lister thread ([`Expected::check`]).
pub(super) struct Expected {
    pub(super) bin: String,
    pub(super) table: String,
    /// Sets that must exist: the ban sets and the deny sets in use.
    pub(super) sets: Vec<String>,
    /// Own mode: our chain, with this many rules for each of `sets`.
    pub(super) rules_per_set: Option<usize>,
    pub(super) limits: Option<NftLimits>,
}

impl Expected {
    /// What is missing or wrong, from one listing of the table by the
    /// `nft` tool (terse: without elements, though nft fetches them).
    pub(super) fn check(self) -> Result<Vec<String>, FirewallError> {
        let mut nft = Nft::new(self.bin, true);
        let Ok(json) = nft.run_terse(&format!("list table {}", self.table)) else {
            return Ok(vec![format!("table {}", self.table)]);
        };
        let present = Objects::parse(&json);
        let mut wrong: Vec<String> = self
            .sets
            .iter()
            .filter(|set| !present.sets.contains(*set))
            .map(|set| format!("set {set}"))
            .collect();
        if let Some(want) = self.rules_per_set {
            if !present.chains.contains(CHAIN) {
                wrong.push(format!("chain {CHAIN}"));
            } else {
                for set in &self.sets {
                    if chain_rules_using(&json, CHAIN, set) != want {
                        wrong.push(format!("rules for set {set}"));
                    }
                }
            }
        }
        if let Some(limits) = &self.limits {
            wrong.extend(limits.missing(&present));
        }
        Ok(wrong)
    }
}
