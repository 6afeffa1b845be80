//! Element changes: one netlink send per batch, or one `ipset restore`
//! where netlink cannot be used.

use std::net::IpAddr;
use std::time::Duration;

use super::IpsetBackend;
use crate::firewall::FirewallError;
use crate::firewall::exec::run;
use crate::firewall::ipset_netlink::{self, Change, IpsetNetlink};
use crate::firewall::sets::kernel_timeout;

impl IpsetBackend {
    pub(super) fn restore(&self, script: &str) -> Result<(), FirewallError> {
        run(&self.ipset, &["-exist", "restore"], Some(script.as_bytes())).map(|_| ())
    }

    /// The netlink socket, opened on first use.
    pub(super) fn netlink(&mut self) -> Option<&mut IpsetNetlink> {
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
    pub(super) fn apply_netlink(
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
    pub(super) fn apply_restore(
        &self,
        changes: &[(IpAddr, Option<Duration>)],
    ) -> Vec<(IpAddr, String)> {
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
    pub(super) fn apply(
        &mut self,
        changes: &[(IpAddr, Option<Duration>)],
    ) -> Vec<(IpAddr, String)> {
        match self.apply_netlink(changes) {
            Some(failures) => failures,
            None => self.apply_restore(changes),
        }
    }

    pub(super) fn line(&self, ip: IpAddr, add: Option<Duration>) -> String {
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
