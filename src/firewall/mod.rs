//! Firewall backends behind one small interface, and the single applier
//! thread that owns the backend. Everyone else only queues changes; the
//! applier folds them and commits them in batches, off the async runtime
//! (firewall tools are blocking processes).

pub mod chain;
pub mod dryrun;
pub mod rule;

use std::collections::HashMap;
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use chain::ChainBackend;
pub use dryrun::{DryRun, DryRunLog, DryRunOp};
pub use rule::{Action, Scope};

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

/// One firewall type. `add`/`delete` only queue; `commit` applies the queue.
/// Implementations must make `add` of a present IP and `delete` of an absent
/// one harmless, so state can be re-applied after drift or a crash.
pub trait Backend: Send + 'static {
    fn name(&self) -> &'static str;
    /// Creates our objects, or takes over (empties) what an earlier run left.
    fn init(&mut self) -> Result<(), FirewallError>;
    /// `timeout` is the remaining ban time (for backends with kernel timeouts).
    fn add(&mut self, ip: IpAddr, timeout: Duration);
    fn delete(&mut self, ip: IpAddr);
    fn commit(&mut self) -> Result<(), FirewallError>;
    /// The banned addresses the kernel holds right now.
    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError>;
    /// Removes everything `init` created, leaving the firewall as found.
    fn shutdown(&mut self) -> Result<(), FirewallError>;
}

enum Op {
    Add(IpAddr, Duration),
    Delete(IpAddr),
    Barrier(oneshot::Sender<()>),
    List(oneshot::Sender<Result<Vec<IpAddr>, FirewallError>>),
    Shutdown(oneshot::Sender<Result<(), FirewallError>>),
}

/// Largest batch handed to one `commit`.
const MAX_BATCH: usize = 10_000;

/// Handle to the applier thread. Cloning is cheap; sends never block.
#[derive(Clone, Debug)]
pub struct Firewall {
    tx: mpsc::UnboundedSender<Op>,
    name: &'static str,
}

impl Firewall {
    /// Runs `backend.init()` and starts the applier thread.
    pub async fn start(mut backend: Box<dyn Backend>) -> Result<Firewall, FirewallError> {
        let name = backend.name();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        thread::Builder::new()
            .name("sipban-firewall".into())
            .spawn(move || {
                let init = backend.init();
                let ok = init.is_ok();
                let _ = ready_tx.send(init);
                if ok {
                    applier(backend, rx);
                }
            })
            .map_err(|e| FirewallError::Command {
                what: "starting the firewall thread".into(),
                detail: e.to_string(),
            })?;
        ready_rx.await.map_err(|_| FirewallError::Stopped)??;
        Ok(Firewall { tx, name })
    }

    pub fn backend_name(&self) -> &'static str {
        self.name
    }

    pub fn add(&self, ip: IpAddr, timeout: Duration) {
        if self.tx.send(Op::Add(ip, timeout)).is_err() {
            tracing::error!("FIREWALL => applier stopped; ban of {ip} not applied");
        }
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

fn commit(backend: &mut dyn Backend, batch: &mut Batch) {
    if batch.len() == 0 {
        return;
    }
    for (ip, net) in batch.drain() {
        match net {
            Net::Add(t) | Net::Readd(t) => backend.add(ip, t),
            Net::Delete => backend.delete(ip),
        }
    }
    if let Err(e) = backend.commit() {
        tracing::error!("FIREWALL => {e}");
    }
}

fn applier(mut backend: Box<dyn Backend>, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Batch::default();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        // Take what is already queued (a storm), up to the batch limit; an
        // isolated event is committed at once.
        while let Some(op) = next.take() {
            match op {
                Op::Add(ip, t) => batch.push_add(ip, t),
                Op::Delete(ip) => batch.push_delete(ip),
                Op::Barrier(done) => {
                    commit(backend.as_mut(), &mut batch);
                    let _ = done.send(());
                }
                Op::List(reply) => {
                    commit(backend.as_mut(), &mut batch);
                    let _ = reply.send(backend.list());
                }
                Op::Shutdown(reply) => {
                    commit(backend.as_mut(), &mut batch);
                    let _ = reply.send(backend.shutdown());
                    return;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        commit(backend.as_mut(), &mut batch);
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
}
