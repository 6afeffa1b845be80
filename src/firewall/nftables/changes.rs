//! Ban set elements: a batch of changes as one transaction (over netlink
//! when it can be, else as an nft script) and the sets' listings.

use super::*;

/// Elements per `add element` statement (one transaction holds them all).
pub(super) const CHUNK: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Add(Duration),
    /// Present already: delete + add in one transaction renews the timeout.
    Refresh(Duration),
    Delete,
}

impl NftBackend {
    /// [`Backend::commit`]: the pending changes as one transaction, fitted
    /// to the kernel or one by one if it refuses them.
    pub(super) fn commit_pending(&mut self) -> Result<(), FirewallError> {
        let changes = std::mem::take(&mut self.pending);
        if changes.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        if self.apply_changes(&changes).is_err() {
            // Usually drift: elements the kernel already dropped make the
            // deletes (and refreshes) fail. Fit the batch to what the kernel
            // holds and retry it whole; only then go one by one, so one bad
            // element cannot block the others.
            let fitted = self.fit_to_kernel(&changes);
            if fitted.as_ref().is_some_and(|f| f.is_empty()) {
                return Ok(());
            }
            if let Some(fitted) = fitted
                && self.apply_changes(&fitted).is_ok()
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

    /// Script lines for `changes`: deletes first, then adds, so a refresh
    /// (delete + add) renews the timeout within one transaction.
    pub(super) fn script(&self, changes: &[(IpAddr, Change)]) -> String {
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

    /// One transaction for `changes`, in the order of [`Self::script`]:
    /// over netlink when it can be used ([`elements`]: no text for
    /// libnftables to parse), else as that script. Only in sets of our own
    /// making: an administrator's set may be an interval set, whose
    /// elements need an end that only nft adds.
    pub(super) fn apply_changes(
        &mut self,
        changes: &[(IpAddr, Change)],
    ) -> Result<(), FirewallError> {
        let table = self.table();
        if self.s.mode != Ownership::SetOnly
            && let Some((family, name)) = elements::table_family(&table)
            && let Some(nl) = self.nft.elements()
        {
            let mut batch = nl.batch(family, name);
            for delete in [true, false] {
                for v6 in [false, true] {
                    let set = if v6 { &self.s.set6 } else { &self.s.set4 };
                    for (ip, change) in changes.iter().filter(|(ip, _)| ip.is_ipv6() == v6) {
                        match (delete, change) {
                            (true, Change::Delete | Change::Refresh(_)) => batch.delete(set, *ip),
                            (false, Change::Add(t) | Change::Refresh(t)) => {
                                batch.add(set, *ip, kernel_timeout(*t))
                            }
                            _ => {}
                        }
                    }
                }
            }
            match nl.apply(batch) {
                Ok(()) => return Ok(()),
                Err(ElementsError::Refused(detail)) => {
                    return Err(FirewallError::Command {
                        what: format!("nft element batch in {table}"),
                        detail,
                    });
                }
                Err(ElementsError::Netlink(e)) => {
                    tracing::warn!("NFT => netlink element writer failed ({e}); using nft scripts");
                    self.nft.drop_elements();
                }
            }
        }
        self.apply(&self.script(changes))
    }

    /// The batch without deletes of absent elements, with refreshes of
    /// absent ones turned into adds. `None` if the sets cannot be listed.
    pub(super) fn fit_to_kernel(
        &mut self,
        changes: &[(IpAddr, Change)],
    ) -> Option<Vec<(IpAddr, Change)>> {
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
    pub(super) fn track(&mut self, changes: &[(IpAddr, Change)], failures: &[(IpAddr, String)]) {
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
}

/// Lists our ban sets with `nft -j list set`, on the lister thread.
pub(super) struct NftLister {
    pub(super) nft: Nft,
    pub(super) table: String,
    pub(super) sets: [String; 2],
}

impl Lister for NftLister {
    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        let mut out = Vec::new();
        for set in &self.sets {
            out.extend(list_held(&mut self.nft, &self.table, set)?);
        }
        Ok(out)
    }
}

/// The elements of one of our ban sets, with their remaining timeouts.
pub(super) fn list_held(nft: &mut Nft, table: &str, set: &str) -> Result<Vec<Held>, FirewallError> {
    let what = format!("list set {table} {set}");
    let json = nft.run(&what)?;
    parse_held(&json).map_err(|detail| FirewallError::Command {
        what: format!("nft {what}"),
        detail,
    })
}
