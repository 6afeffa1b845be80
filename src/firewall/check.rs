//! The drift check without stalling the bans. Listing 100k set elements
//! takes about half a second; done by the applier, every ban queued
//! meanwhile would wait for it. So the applier only repairs our objects,
//! then a lister thread of its own reads the elements while the applier
//! goes on committing bans. The applier notes every address it changes
//! while the listing runs: the listing may have caught those mid-change,
//! so the comparison leaves them out (the applier's own last change to
//! them is what the store wants), and compares the rest.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::applier::Op;
use super::{FirewallError, Held, Reconciled};

/// How closely a drift check compares the kernel with the bans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// The periodic check: our objects, and element counts where the
    /// kernel gives them without a listing (ipset); the elements are
    /// listed, off the applier, only when a count disagrees or the backend
    /// has none (nftables). Deny and exempt entries are compared by count
    /// (ipset) or not at all (nftables).
    Quick,
    /// On demand (`check-firewall`, start-up): every element compared.
    Full,
}

/// Reads our ban elements without changing anything, on a thread of its
/// own (it opens its own handles there).
pub trait Lister: Send + 'static {
    /// Every element of our ban sets, with the kernel's remaining timeout.
    fn held(&mut self) -> Result<Vec<Held>, FirewallError>;
    /// How many elements the ban sets hold, where the kernel tells it
    /// without a listing.
    fn count(&mut self) -> Result<Option<usize>, FirewallError> {
        Ok(None)
    }
}

/// What the lister found.
pub(super) enum Listing {
    /// The count matched: no listing was needed.
    Counted,
    Elements(Vec<Held>),
}

pub(super) struct Job {
    id: u64,
    depth: Depth,
    expected: usize,
}

/// Starts the lister thread; it answers by queueing [`Op::Listed`] to the
/// applier and ends when the applier drops its sender or has ended.
pub(super) fn spawn(
    mut lister: Box<dyn Lister>,
    applier: mpsc::WeakUnboundedSender<Op>,
) -> Option<std_mpsc::Sender<Job>> {
    let (tx, rx) = std_mpsc::channel::<Job>();
    let started = std::thread::Builder::new()
        .name("sipban-fw-list".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                let result = list(lister.as_mut(), job.depth, job.expected);
                let Some(applier) = applier.upgrade() else {
                    return;
                };
                if applier.send(Op::Listed(job.id, result)).is_err() {
                    return;
                }
            }
        });
    match started {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!("FIREWALL => no lister thread ({e}); drift checks list on the applier");
            None
        }
    }
}

fn list(lister: &mut dyn Lister, depth: Depth, expected: usize) -> Result<Listing, FirewallError> {
    if depth == Depth::Quick && lister.count()? == Some(expected) {
        return Ok(Listing::Counted);
    }
    lister.held().map(Listing::Elements)
}

/// A reconcile between its repair and its comparison.
pub(super) struct Request {
    pub(super) desired: Vec<(IpAddr, Duration)>,
    pub(super) repaired: Vec<String>,
    pub(super) reply: oneshot::Sender<Result<Reconciled, FirewallError>>,
}

/// A reconcile waiting for its listing.
struct Waiting {
    request: Request,
    /// Addresses the applier changed since the listing began.
    touched: HashSet<IpAddr>,
}

/// The applier's side: reconciles in flight and what they must leave out.
#[derive(Default)]
pub(super) struct Checks {
    lister: Option<std_mpsc::Sender<Job>>,
    waiting: HashMap<u64, Waiting>,
    next: u64,
}

impl Checks {
    pub(super) fn new(lister: Option<std_mpsc::Sender<Job>>) -> Checks {
        Checks {
            lister,
            ..Checks::default()
        }
    }

    /// The applier changed `ip`: listings in flight may not show it right.
    pub(super) fn touch(&mut self, ip: IpAddr) {
        for w in self.waiting.values_mut() {
            w.touched.insert(ip);
        }
    }

    /// Hands the listing to the lister thread. Gives the request back when
    /// there is none (the applier lists itself).
    pub(super) fn start(&mut self, depth: Depth, request: Request) -> Option<Request> {
        let Some(lister) = &self.lister else {
            return Some(request);
        };
        self.next += 1;
        let id = self.next;
        let job = Job {
            id,
            depth,
            expected: request.desired.len(),
        };
        if lister.send(job).is_err() {
            tracing::warn!("FIREWALL => the lister thread has ended; listing on the applier");
            self.lister = None;
            return Some(request);
        }
        self.waiting.insert(
            id,
            Waiting {
                request,
                touched: HashSet::new(),
            },
        );
        None
    }

    /// The listing of reconcile `id` came back: the request, and the
    /// addresses to leave out of the comparison.
    pub(super) fn finish(&mut self, id: u64) -> Option<(Request, HashSet<IpAddr>)> {
        let w = self.waiting.remove(&id)?;
        Some((w.request, w.touched))
    }
}
