//! Firewall backends behind one small interface, and the single applier
//! thread that owns the backend. Everyone else only queues changes; the
//! applier folds them and commits them in batches, off the async runtime
//! (firewall tools are blocking processes).

mod applier;
mod batch;
pub mod chain;
mod check;
pub mod conntrack;
pub mod deny;
pub mod dryrun;
pub mod exec;
pub mod ipset;
pub mod ipset_netlink;
pub mod ipset_tool;
pub mod libnft;
pub mod limits;
mod netlink;
pub mod nft_listing;
pub mod nftables;
pub mod rule;
pub mod scope;
pub mod sets;

use std::collections::HashSet;
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use applier::{Op, applier};
pub use chain::ChainBackend;
pub use check::{Depth, Lister};
pub use deny::DenyList;
pub use dryrun::{DryRun, DryRunLog, DryRunOp};
pub use ipset::IpsetBackend;
pub use limits::{FloodWatch, Limits, Rate, RateLimit};
pub use nftables::NftBackend;
pub use rule::{Action, Hook};
pub use scope::{Block, Interface, Protocol, Scope, SipPorts};
pub use sets::{Ownership, SetSettings, SetType};

#[derive(Debug, Error)]
pub enum FirewallError {
    #[error("{tool} is not usable: {detail}")]
    Unavailable { tool: String, detail: String },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{} element(s) failed: {}", .0.len(), describe(.0))]
    Elements(Vec<(IpAddr, String)>),
    #[error("the firewall applier has stopped")]
    Stopped,
}

fn describe(failures: &[(IpAddr, String)]) -> String {
    failures
        .iter()
        .take(5)
        .map(|(ip, e)| format!("{ip}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A ban as the kernel holds it, for taking over after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub ip: IpAddr,
    /// The kernel's remaining timeout, where the backend has one (sets).
    pub remaining: Option<Duration>,
}

/// One firewall type. `add`/`delete` only queue; `commit` applies the queue.
/// Implementations must make `add` of a present IP and `delete` of an absent
/// one harmless, so state can be re-applied after drift or a crash.
pub trait Backend: Send + 'static {
    fn name(&self) -> &'static str;
    /// Creates our objects, or takes over (empties) what an earlier run left.
    fn init(&mut self) -> Result<(), FirewallError>;
    /// `timeout` is the remaining ban time (for backends with kernel timeouts).
    fn add(&mut self, ip: IpAddr, timeout: Duration);
    /// `ip` is present and its ban was extended: renew its kernel timeout.
    fn refresh(&mut self, ip: IpAddr, timeout: Duration) {
        self.add(ip, timeout)
    }
    fn delete(&mut self, ip: IpAddr);
    fn commit(&mut self) -> Result<(), FirewallError>;
    /// Most changes worth one commit. A backend that applies changes one
    /// by one (the chain) keeps batches small, so bans are confirmed as
    /// they reach the kernel rather than all at the end of a storm.
    fn batch_limit(&self) -> usize {
        MAX_BATCH
    }
    /// The banned addresses the kernel holds right now.
    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError>;
    /// As [`Backend::list`], with the kernel's remaining timeouts where it
    /// keeps them, so a restart can adopt what a crashed run left.
    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        Ok(self
            .list()?
            .into_iter()
            .map(|ip| Held {
                ip,
                remaining: None,
            })
            .collect())
    }
    /// Recreates our objects if someone removed them (drift); returns what
    /// was repaired. Elements are re-added by the caller's reconcile; the
    /// deny entries are put back here, from the last [`Backend::set_denied`]
    /// (compared entry by entry only at [`Depth::Full`]: the periodic check
    /// costs what our objects cost, not what the elements do).
    fn repair(&mut self, depth: Depth) -> Result<Vec<String>, FirewallError> {
        let _ = depth;
        Ok(Vec::new())
    }
    /// A reader of the ban elements for the lister thread, so a drift
    /// check's listing never holds up the bans. Taken once, after `init`.
    /// `None`: the applier lists with [`Backend::list`].
    fn lister(&mut self) -> Option<Box<dyn Lister>> {
        None
    }
    /// A listing from the lister: brings the backend's own bookkeeping to
    /// it and returns the addresses in it that are ours. `touched` were
    /// changed by the applier while the listing ran; the bookkeeping of
    /// those is current, not the listing.
    fn adopt_listing(&mut self, held: Vec<Held>, touched: &HashSet<IpAddr>) -> Vec<IpAddr> {
        let _ = touched;
        held.into_iter().map(|h| h.ip).collect()
    }
    /// The permanent deny entries (addresses and CIDR networks) the kernel
    /// holds are exactly `nets` from now on: a replacement, not an
    /// addition; an empty list removes them all. Called after `init` and on
    /// every change of the deny list. They live apart from the timed bans:
    /// `list` never returns them and reconciling the bans never removes
    /// them; `repair` puts them back; `shutdown` removes them.
    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError>;
    /// The networks exempt from the per-source limits (`[limits]`) are
    /// exactly `nets` from now on (the allow list, loopback, the AMI host):
    /// a replacement, like [`Backend::set_denied`], and put back by
    /// `repair`. Backends without limits ignore it.
    fn set_allowed(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        let _ = nets;
        Ok(())
    }
    /// What reads the kernel's per-source over-limit counts, when the
    /// backend counts them (`[limits] sip_rate` with `sip_ban_after`).
    /// Taken once, before `init`; the reader opens its own handles on the
    /// thread that uses it.
    fn flood_watch(&mut self) -> Option<FloodWatch> {
        None
    }
    /// Removes everything `init` created, leaving the firewall as found.
    fn shutdown(&mut self) -> Result<(), FirewallError>;
}

/// What a reconcile found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Objects (table, set, chain, rule) that were missing and recreated.
    pub repaired: Vec<String>,
    /// Bans missing from the kernel, added again.
    pub added: usize,
    /// Kernel entries we do not hold, removed.
    pub removed: usize,
}

impl Reconciled {
    pub fn in_sync(&self) -> bool {
        self.repaired.is_empty() && self.added == 0 && self.removed == 0
    }
}

impl std::fmt::Display for Reconciled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.in_sync() {
            return f.write_str("firewall in sync");
        }
        if !self.repaired.is_empty() {
            write!(f, "repaired {}; ", self.repaired.join(", "))?;
        }
        write!(
            f,
            "{} bans re-added, {} stale entries removed",
            self.added, self.removed
        )
    }
}

/// Options of the applier.
#[derive(Clone, Debug, Default)]
pub struct ApplierOptions {
    /// `conntrack` tool used to delete a new ban's flows; `None` disables.
    pub conntrack: Option<String>,
}

/// A batch this large leaves freed memory worth handing back.
pub(crate) const TRIM_AFTER: usize = 1000;

/// Largest batch handed to one `commit`.
pub(crate) const MAX_BATCH: usize = 10_000;

/// Handle to the applier thread. Cloning is cheap; sends never block.
#[derive(Clone, Debug)]
pub struct Firewall {
    tx: mpsc::UnboundedSender<Op>,
    name: &'static str,
    /// The highest [`Firewall::mark`] whose changes were committed.
    committed: tokio::sync::watch::Receiver<u64>,
}

impl Firewall {
    /// Runs `backend.init()` and starts the applier thread.
    pub async fn start(backend: Box<dyn Backend>) -> Result<Firewall, FirewallError> {
        Self::start_with(backend, ApplierOptions::default()).await
    }

    pub async fn start_with(
        mut backend: Box<dyn Backend>,
        options: ApplierOptions,
    ) -> Result<Firewall, FirewallError> {
        let name = backend.name();
        let (tx, rx) = mpsc::unbounded_channel();
        let me = tx.downgrade();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (marks_tx, committed) = tokio::sync::watch::channel(0);
        thread::Builder::new()
            .name("sipban-firewall".into())
            .spawn(move || {
                let init = backend.init();
                let ok = init.is_ok();
                let _ = ready_tx.send(init);
                if ok {
                    let flusher = options
                        .conntrack
                        .and_then(conntrack::ConntrackFlusher::start);
                    applier(backend, rx, me, flusher, marks_tx);
                }
            })
            .map_err(|e| FirewallError::Command {
                what: "starting the firewall thread".into(),
                detail: e.to_string(),
            })?;
        ready_rx.await.map_err(|_| FirewallError::Stopped)??;
        Ok(Firewall {
            tx,
            name,
            committed,
        })
    }

    /// Numbers the changes queued so far: once they are committed (or
    /// failed and were logged), [`Firewall::committed`] reaches `seq`.
    /// Numbers must grow.
    pub fn mark(&self, seq: u64) {
        let _ = self.tx.send(Op::Mark(seq));
    }

    /// Follows the highest mark whose changes the kernel has.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Completes when the applier thread has ended (after `shutdown`, or
    /// because it died).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// What the kernel holds, with remaining timeouts (see [`Backend::held`]).
    pub async fn held(&self) -> Result<Vec<Held>, FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Held(tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    pub fn backend_name(&self) -> &'static str {
        self.name
    }

    pub fn add(&self, ip: IpAddr, timeout: Duration) {
        if self.tx.send(Op::Add(ip, timeout)).is_err() {
            tracing::error!("FIREWALL => applier stopped; ban of {ip} not applied");
        }
    }

    /// A banned `ip` got a later expiry: renew its kernel timeout.
    pub fn refresh(&self, ip: IpAddr, timeout: Duration) {
        let _ = self.tx.send(Op::Refresh(ip, timeout));
    }

    pub fn delete(&self, ip: IpAddr) {
        if self.tx.send(Op::Delete(ip)).is_err() {
            tracing::error!("FIREWALL => applier stopped; unban of {ip} not applied");
        }
    }

    /// Waits until everything queued before this call has been committed.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Op::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn list(&self) -> Result<Vec<IpAddr>, FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::List(tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Makes the kernel hold exactly `desired` (repairing our objects
    /// first), every element compared: the start-up takeover after a
    /// crash, and `check-firewall`.
    pub async fn reconcile(
        &self,
        desired: Vec<(IpAddr, Duration)>,
    ) -> Result<Reconciled, FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.send_reconcile(desired, Depth::Full, tx);
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Queues a reconcile without waiting (keeps order with adds/deletes
    /// queued under the same lock).
    pub fn send_reconcile(
        &self,
        desired: Vec<(IpAddr, Duration)>,
        depth: Depth,
        reply: oneshot::Sender<Result<Reconciled, FirewallError>>,
    ) {
        if let Err(mpsc::error::SendError(Op::Reconcile(_, _, reply))) =
            self.tx.send(Op::Reconcile(desired, depth, reply))
        {
            let _ = reply.send(Err(FirewallError::Stopped));
        }
    }

    /// Makes the firewall's permanent deny entries exactly `nets`
    /// (addresses and CIDR networks; host bits are cleared, overlaps
    /// removed, an empty list clears them), ordered after every change
    /// queued before; returns once the kernel holds them.
    pub async fn set_denied(&self, nets: Vec<IpNet>) -> Result<(), FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Deny(nets, tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Makes the networks exempt from the per-source limits exactly `nets`
    /// (see [`Backend::set_allowed`]), ordered after every change queued
    /// before; returns once the kernel holds them.
    pub async fn set_allowed(&self, nets: Vec<IpNet>) -> Result<(), FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Allow(nets, tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Commits what is queued, then removes our objects; the thread ends.
    pub async fn shutdown(&self) -> Result<(), FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Shutdown(tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn applier_commits_in_order_with_dry_run() {
        let dry = DryRun::new();
        let log = dry.log();
        let fw = Firewall::start(Box::new(dry)).await.unwrap();
        fw.add(ip("192.0.2.1"), Duration::from_secs(60));
        fw.add(ip("2001:db8::1"), Duration::from_secs(60));
        fw.delete(ip("192.0.2.1"));
        fw.sync().await;
        let listed = fw.list().await.unwrap();
        assert_eq!(listed, vec![ip("2001:db8::1")]);
        fw.shutdown().await.unwrap();
        assert!(log.ops().contains(&DryRunOp::Shutdown));
        assert!(fw.list().await.is_err());
    }

    #[tokio::test]
    async fn deny_entries_are_ordered_with_the_bans_and_kept_apart() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let dry = DryRun::quiet();
        let log = dry.log();
        let fw = Firewall::start(Box::new(dry)).await.unwrap();
        fw.add(ip("192.0.2.1"), Duration::from_secs(60));
        fw.set_denied(vec![
            net("198.51.100.77/24"),
            net("198.51.100.5/32"),
            net("2001:db8::/48"),
        ])
        .await
        .unwrap();
        let want = vec![net("198.51.100.0/24"), net("2001:db8::/48")];
        assert_eq!(log.denied(), want);
        let ops = log.ops();
        let add = ops
            .iter()
            .position(|o| *o == DryRunOp::Add(ip("192.0.2.1")));
        let deny = ops.iter().position(|o| *o == DryRunOp::Deny(want.clone()));
        assert!(add.unwrap() < deny.unwrap(), "{ops:?}");
        assert_eq!(fw.list().await.unwrap(), vec![ip("192.0.2.1")]);
        assert!(fw.reconcile(Vec::new()).await.unwrap().removed == 1);
        assert_eq!(log.denied(), want);
        fw.set_denied(Vec::new()).await.unwrap();
        assert!(log.denied().is_empty());
        fw.shutdown().await.unwrap();
        assert!(fw.set_denied(want).await.is_err());
    }
}
