//! The applier thread: it owns the backend, takes what is queued (a storm
//! in large batches, an isolated change at once), commits it, and reports
//! the highest change number the kernel has.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};

use super::batch::{Batch, Net};
use super::check::{self, Checks, Depth, Listing, Request};
use super::{Backend, FirewallError, Held, MAX_BATCH, Reconciled, TRIM_AFTER, conntrack};

/// A request to the applier thread.
pub(super) enum Op {
    Add(IpAddr, Duration),
    Refresh(IpAddr, Duration),
    Delete(IpAddr),
    Reconcile(
        Vec<(IpAddr, Duration)>,
        Depth,
        oneshot::Sender<Result<Reconciled, FirewallError>>,
    ),
    /// The lister thread's answer for a reconcile in flight.
    Listed(u64, Result<Listing, FirewallError>),
    Barrier(oneshot::Sender<()>),
    /// Everything queued before is in the batch being built: once it is
    /// committed, [`Firewall::committed`] reaches this number.
    Mark(u64),
    List(oneshot::Sender<Result<Vec<IpAddr>, FirewallError>>),
    Held(oneshot::Sender<Result<Vec<Held>, FirewallError>>),
    Deny(Vec<IpNet>, oneshot::Sender<Result<(), FirewallError>>),
    Allow(Vec<IpNet>, oneshot::Sender<Result<(), FirewallError>>),
    Shutdown(oneshot::Sender<Result<(), FirewallError>>),
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

/// Repairs our objects, then compares the elements: listed here when the
/// backend has no lister, else by the lister thread (the comparison
/// follows in [`listed`]). A backend whose object check is a listing too
/// has it run there first ([`Backend::object_check`]).
fn reconcile(backend: &mut dyn Backend, checks: &mut Checks, depth: Depth, request: Request) {
    let objects = match depth {
        Depth::Quick if checks.has_lister() => backend.object_check(),
        _ => None,
    };
    let deferred = objects.is_some();
    let request = if deferred {
        Some(request)
    } else {
        repaired(backend, depth, request)
    };
    let Some(request) = request else {
        return;
    };
    let Some(request) = checks.start(depth, request, objects) else {
        return;
    };
    // No lister thread after all (it has ended): the deferred repair too.
    let request = if deferred {
        repaired(backend, depth, request)
    } else {
        Some(request)
    };
    if let Some(request) = request {
        list_here(backend, request);
    }
}

/// The request with what [`Backend::repair`] repaired; `None` (the error
/// answered) if it failed.
fn repaired(backend: &mut dyn Backend, depth: Depth, request: Request) -> Option<Request> {
    match backend.repair(depth) {
        Ok(repaired) => Some(Request {
            repaired,
            ..request
        }),
        Err(e) => {
            let _ = request.reply.send(Err(e));
            None
        }
    }
}

/// Lists the elements on the applier and compares.
fn list_here(backend: &mut dyn Backend, request: Request) {
    match backend.list() {
        Ok(kernel) => compare(backend, request, kernel, &HashSet::new()),
        Err(e) => {
            let _ = request.reply.send(Err(e));
        }
    }
}

fn listed(
    backend: &mut dyn Backend,
    checks: &mut Checks,
    id: u64,
    listing: Result<Listing, FirewallError>,
) {
    let Some((request, touched)) = checks.finish(id) else {
        return;
    };
    match listing {
        Err(e) => {
            let _ = request.reply.send(Err(e));
        }
        Ok(Listing::Counted) => {
            let _ = request.reply.send(Ok(Reconciled {
                repaired: request.repaired,
                ..Reconciled::default()
            }));
        }
        Ok(Listing::Elements(held)) => {
            let kernel = backend.adopt_listing(held, &touched);
            compare(backend, request, kernel, &touched);
        }
        Ok(Listing::Repair(wrong)) => {
            tracing::debug!("FIREWALL => drift in {}", wrong.join(", "));
            if let Some(request) = repaired(backend, Depth::Quick, request) {
                list_here(backend, request);
            }
        }
    }
}

/// Makes the kernel hold the desired bans, leaving out `touched` (changed
/// while the listing ran: the applier's own last change is current).
fn compare(
    backend: &mut dyn Backend,
    request: Request,
    kernel: Vec<IpAddr>,
    touched: &HashSet<IpAddr>,
) {
    let kernel: HashSet<IpAddr> = kernel.into_iter().collect();
    let wanted: HashSet<IpAddr> = request.desired.iter().map(|(ip, _)| *ip).collect();
    let mut report = Reconciled {
        repaired: request.repaired,
        ..Reconciled::default()
    };
    for (ip, t) in request.desired {
        if !kernel.contains(&ip) && !touched.contains(&ip) {
            backend.add(ip, t);
            report.added += 1;
        }
    }
    for ip in kernel.iter() {
        if !wanted.contains(ip) && !touched.contains(ip) {
            backend.delete(*ip);
            report.removed += 1;
        }
    }
    let result = backend.commit().map(|()| report);
    let _ = request.reply.send(result);
}

pub(super) fn applier(
    mut backend: Box<dyn Backend>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    me: mpsc::WeakUnboundedSender<Op>,
    flusher: Option<conntrack::ConntrackFlusher>,
    marks: tokio::sync::watch::Sender<u64>,
) {
    let flusher = flusher.as_ref();
    let mut checks = Checks::new(backend.lister().and_then(|l| check::spawn(l, me)));
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
                Op::Add(ip, t) => {
                    checks.touch(ip);
                    batch.push_add(ip, t);
                }
                Op::Refresh(ip, t) => {
                    checks.touch(ip);
                    batch.push_refresh(ip, t);
                }
                Op::Delete(ip) => {
                    checks.touch(ip);
                    batch.push_delete(ip);
                }
                Op::Mark(seq) => mark = mark.max(seq),
                Op::Barrier(done) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let _ = done.send(());
                }
                Op::Reconcile(desired, depth, reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let request = Request {
                        desired,
                        repaired: Vec::new(),
                        reply,
                    };
                    reconcile(backend.as_mut(), &mut checks, depth, request);
                }
                Op::Listed(id, listing) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    listed(backend.as_mut(), &mut checks, id, listing);
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
                Op::Allow(nets, reply) => {
                    commit_all(backend.as_mut(), &mut batch, mark);
                    let result = backend.set_allowed(&nets);
                    if let Err(e) = &result {
                        tracing::error!("FIREWALL => exempt networks: {e}");
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
