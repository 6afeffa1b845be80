//! Firewall backends behind one small interface, and the single applier
//! thread that owns the backend. Everyone else only queues changes; the
//! applier folds them and commits them in batches, off the async runtime
//! (firewall tools are blocking processes).

pub mod chain;
pub mod conntrack;
pub mod deny;
pub mod dryrun;
pub mod exec;
pub mod ipset;
pub mod ipset_netlink;
pub mod libnft;
pub mod nftables;
pub mod rule;
pub mod sets;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use ipnet::IpNet;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use chain::ChainBackend;
pub use deny::DenyList;
pub use dryrun::{DryRun, DryRunLog, DryRunOp};
pub use ipset::IpsetBackend;
pub use nftables::NftBackend;
pub use rule::{Action, Hook, Scope};
pub use sets::{Ownership, SetSettings};

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
    /// deny entries are put back here, from the last [`Backend::set_denied`].
    fn repair(&mut self) -> Result<Vec<String>, FirewallError> {
        Ok(Vec::new())
    }
    /// The permanent deny entries (addresses and CIDR networks) the kernel
    /// holds are exactly `nets` from now on: a replacement, not an
    /// addition; an empty list removes them all. Called after `init` and on
    /// every change of the deny list. They live apart from the timed bans:
    /// `list` never returns them and reconciling the bans never removes
    /// them; `repair` puts them back; `shutdown` removes them.
    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError>;
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

enum Op {
    Add(IpAddr, Duration),
    Refresh(IpAddr, Duration),
    Delete(IpAddr),
    Reconcile(
        Vec<(IpAddr, Duration)>,
        oneshot::Sender<Result<Reconciled, FirewallError>>,
    ),
    Barrier(oneshot::Sender<()>),
    /// Everything queued before is in the batch being built: once it is
    /// committed, [`Firewall::committed`] reaches this number.
    Mark(u64),
    List(oneshot::Sender<Result<Vec<IpAddr>, FirewallError>>),
    Held(oneshot::Sender<Result<Vec<Held>, FirewallError>>),
    Deny(Vec<IpNet>, oneshot::Sender<Result<(), FirewallError>>),
    Shutdown(oneshot::Sender<Result<(), FirewallError>>),
}

/// A batch this large leaves freed memory worth handing back.
const TRIM_AFTER: usize = 1000;

/// Largest batch handed to one `commit`.
const MAX_BATCH: usize = 10_000;

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
                    applier(backend, rx, flusher, marks_tx);
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
    /// first): the start-up takeover after a crash, and the drift check.
    pub async fn reconcile(
        &self,
        desired: Vec<(IpAddr, Duration)>,
    ) -> Result<Reconciled, FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.send_reconcile(desired, tx);
        rx.await.map_err(|_| FirewallError::Stopped)?
    }

    /// Queues a reconcile without waiting (keeps order with adds/deletes
    /// queued under the same lock).
    pub fn send_reconcile(
        &self,
        desired: Vec<(IpAddr, Duration)>,
        reply: oneshot::Sender<Result<Reconciled, FirewallError>>,
    ) {
        if let Err(mpsc::error::SendError(Op::Reconcile(_, reply))) =
            self.tx.send(Op::Reconcile(desired, reply))
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

    /// Commits what is queued, then removes our objects; the thread ends.
    pub async fn shutdown(&self) -> Result<(), FirewallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Op::Shutdown(tx))
            .map_err(|_| FirewallError::Stopped)?;
        rx.await.map_err(|_| FirewallError::Stopped)?
    }
}

/// Net effect of the queued changes to one IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    Add(Duration),
    Delete,
    /// Deleted then added again: present before and after, new timeout.
    Readd(Duration),
}

/// Folds queued adds/deletes: an add then a delete of the same IP cancel; a
/// repeated add keeps the longest timeout. Order of first appearance is kept.
#[derive(Default)]
struct Batch {
    order: Vec<IpAddr>,
    net: HashMap<IpAddr, Net>,
}

impl Batch {
    fn push_add(&mut self, ip: IpAddr, t: Duration) {
        let next = match self.net.get(&ip) {
            None => Net::Add(t),
            Some(Net::Add(old)) => Net::Add((*old).max(t)),
            Some(Net::Delete) => Net::Readd(t),
            Some(Net::Readd(old)) => Net::Readd((*old).max(t)),
        };
        self.set(ip, Some(next));
    }

    fn push_refresh(&mut self, ip: IpAddr, t: Duration) {
        let next = match self.net.get(&ip) {
            Some(Net::Add(old)) => Net::Add((*old).max(t)),
            Some(Net::Readd(old)) => Net::Readd((*old).max(t)),
            None | Some(Net::Delete) => Net::Readd(t),
        };
        self.set(ip, Some(next));
    }

    fn push_delete(&mut self, ip: IpAddr) {
        let next = match self.net.get(&ip) {
            Some(Net::Add(_)) => None,
            _ => Some(Net::Delete),
        };
        self.set(ip, next);
    }

    fn set(&mut self, ip: IpAddr, net: Option<Net>) {
        match net {
            Some(n) => {
                if self.net.insert(ip, n).is_none() {
                    self.order.push(ip);
                }
            }
            None => {
                self.net.remove(&ip);
            }
        }
    }

    fn len(&self) -> usize {
        self.net.len()
    }

    /// The folded changes in order.
    fn drain(&mut self) -> Vec<(IpAddr, Net)> {
        let mut net = std::mem::take(&mut self.net);
        std::mem::take(&mut self.order)
            .into_iter()
            .filter_map(|ip| net.remove(&ip).map(|n| (ip, n)))
            .collect()
    }
}

fn commit(
    backend: &mut dyn Backend,
    batch: &mut Batch,
    flusher: Option<&conntrack::ConntrackFlusher>,
) {
    if batch.len() == 0 {
        return;
    }
    let mut new = Vec::new();
    let big = batch.len() >= TRIM_AFTER;
    for (ip, net) in batch.drain() {
        match net {
            Net::Add(t) => {
                backend.add(ip, t);
                new.push(ip);
            }
            Net::Readd(t) => backend.refresh(ip, t),
            Net::Delete => backend.delete(ip),
        }
    }
    let failed: HashSet<IpAddr> = match backend.commit() {
        Ok(()) => HashSet::new(),
        Err(FirewallError::Elements(failures)) => {
            for (ip, e) in &failures {
                tracing::error!("FIREWALL => {ip}: {e}");
            }
            failures.into_iter().map(|(ip, _)| ip).collect()
        }
        Err(e) => {
            tracing::error!("FIREWALL => {e}");
            new.iter().copied().collect()
        }
    };
    if let Some(flusher) = flusher {
        for ip in new.into_iter().filter(|ip| !failed.contains(ip)) {
            flusher.flush(ip);
        }
    }
    if big {
        crate::release_freed_memory();
    }
}

fn reconcile(
    backend: &mut dyn Backend,
    desired: Vec<(IpAddr, Duration)>,
) -> Result<Reconciled, FirewallError> {
    let repaired = backend.repair()?;
    let kernel: HashSet<IpAddr> = backend.list()?.into_iter().collect();
    let wanted: HashSet<IpAddr> = desired.iter().map(|(ip, _)| *ip).collect();
    let mut report = Reconciled {
        repaired,
        ..Reconciled::default()
    };
    for (ip, t) in desired.into_iter().filter(|(ip, _)| !kernel.contains(ip)) {
        backend.add(ip, t);
        report.added += 1;
    }
    for ip in kernel.iter().filter(|ip| !wanted.contains(ip)) {
        backend.delete(*ip);
        report.removed += 1;
    }
    backend.commit()?;
    Ok(report)
}

fn applier(
    mut backend: Box<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    flusher: Option<conntrack::ConntrackFlusher>,
    marks: tokio::sync::watch::Sender<u64>,
) {
    let flusher = flusher.as_ref();
    let limit = backend.batch_limit().clamp(1, MAX_BATCH);
    let mut batch = Batch::default();
    // The highest mark taken into `batch` (or committed before it).
    let mut mark = 0;
    let commit_all = |backend: &mut dyn Backend, batch: &mut Batch, mark: u64| {
        commit(backend, batch, flusher);
        marks.send_if_modified(|m| {
            let moved = mark > *m;
            *m = (*m).max(mark);
            moved
        });
    };
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        // Take what is already queued (a storm), up to the batch limit; an
        // isolated event is committed at once.
        while let Some(op) = next.take() {
            match op {
                Op::Add(ip, t) => batch.push_add(ip, t),
                Op::Refresh(ip, t) => batch.push_refresh(ip, t),
                Op::Delete(ip) => batch.push_delete(ip),
                Op::Mark(seq) => mark = mark.max(seq),
                Op::Barrier(done) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = done.send(());
                }
                Op::Reconcile(desired, reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = reply.send(reconcile(backend.as_mut(), desired));
                }
                Op::List(reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = reply.send(backend.list());
                }
                Op::Held(reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = reply.send(backend.held());
                }
                Op::Deny(nets, reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let result = backend.set_denied(&nets);
                    if let Err(e) = &result {
                        tracing::error!("FIREWALL => deny entries: {e}");
                    }
                    let _ = reply.send(result);
                }
                Op::Shutdown(reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = reply.send(backend.shutdown());
                    return;
                }
            }
            if batch.len() < limit {
                next = rx.try_recv().ok();
            }
        }
        commit_all(backend.as_mut(), &mut batch, mark);
    }
    // Every handle is gone without a shutdown: leave the bans in place.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn add_then_delete_cancels_and_longest_add_wins() {
        let mut b = Batch::default();
        b.push_add(ip("192.0.2.1"), Duration::from_secs(10));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(10));
        b.push_delete(ip("192.0.2.1"));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(30));
        b.push_add(ip("192.0.2.2"), Duration::from_secs(20));
        b.push_delete(ip("192.0.2.3"));
        b.push_add(ip("192.0.2.3"), Duration::from_secs(5));
        assert_eq!(
            b.drain(),
            vec![
                (ip("192.0.2.2"), Net::Add(Duration::from_secs(30))),
                (ip("192.0.2.3"), Net::Readd(Duration::from_secs(5))),
            ]
        );
        assert_eq!(b.len(), 0);
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
