//! When a ban may be called done. Every change of the ban store gets a
//! number; the firewall applier reports the highest number the kernel has
//! ([`crate::firewall::Firewall::committed`]) and the journal the highest
//! one on disk ([`super::journal::Journal::durable`]). A new ban's
//! `BLOCK =>` line is written, a report counts it and a console `block`
//! is answered only once both have reached its number: whatever sipban
//! says it banned survives a kill -9 at any instant.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Queue capacity kept once a storm's confirmations are done.
const KEEP_CAPACITY: usize = 1024;

/// Called once per new ban when it is confirmed (the report counts it).
pub type ConfirmHook = Box<dyn Fn(IpAddr) + Send + Sync>;

struct Pending {
    seq: u64,
    ip: IpAddr,
    /// The store's shared copy: a storm allocates no reason per ban.
    reason: Arc<str>,
}

/// New bans waiting for their confirmation, and the confirmed number.
pub struct Confirmations {
    pending: Mutex<VecDeque<Pending>>,
    confirmed: watch::Sender<u64>,
    hook: std::sync::OnceLock<ConfirmHook>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations {
            pending: Mutex::new(VecDeque::new()),
            confirmed: watch::Sender::new(0),
            hook: std::sync::OnceLock::new(),
        }
    }
}

impl Confirmations {
    /// Queues the `BLOCK =>` line of change `seq` (numbers must grow).
    pub fn push(&self, seq: u64, ip: IpAddr, reason: Arc<str>) {
        self.lock().push_back(Pending { seq, ip, reason });
    }

    pub fn set_hook(&self, hook: ConfirmHook) {
        let _ = self.hook.set(hook);
    }

    /// Waits until change `seq` is in the kernel and on disk.
    pub async fn wait(&self, seq: u64) {
        let mut rx = self.confirmed.subscribe();
        let _ = rx.wait_for(|c| *c >= seq).await;
    }

    /// The highest confirmed change number.
    pub fn confirmed(&self) -> u64 {
        *self.confirmed.borrow()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Confirms everything up to `through`: logs the `BLOCK =>` lines.
    pub fn confirm(&self, through: u64) {
        let done: Vec<Pending> = {
            let mut pending = self.lock();
            let n = pending.iter().take_while(|p| p.seq <= through).count();
            let done = pending.drain(..n).collect();
            // A storm's queue would keep its peak size for good.
            if pending.is_empty() && pending.capacity() > KEEP_CAPACITY {
                pending.shrink_to(KEEP_CAPACITY);
            }
            done
        };
        for p in &done {
            tracing::info!("BLOCK => {} ({})", p.ip, p.reason);
            if let Some(hook) = self.hook.get() {
                hook(p.ip);
            }
        }
        self.confirmed.send_if_modified(|c| {
            let moved = through > *c;
            *c = (*c).max(through);
            moved
        });
    }

    /// Confirms as the kernel (`kernel`) and the disk (`disk`; `None`: no
    /// journal) catch up, until shutdown. A watch whose sender is gone (the
    /// thread ended) no longer holds anything back.
    pub async fn run(
        &self,
        mut kernel: watch::Receiver<u64>,
        mut disk: Option<watch::Receiver<u64>>,
        shutdown: CancellationToken,
    ) {
        let mut kernel_open = true;
        loop {
            let k = if kernel_open {
                *kernel.borrow_and_update()
            } else {
                u64::MAX
            };
            let d = match &mut disk {
                Some(rx) => *rx.borrow_and_update(),
                None => u64::MAX,
            };
            self.confirm(k.min(d));
            tokio::select! {
                r = kernel.changed(), if kernel_open => {
                    if r.is_err() {
                        kernel_open = false;
                    }
                }
                r = async {
                    match &mut disk {
                        Some(rx) => rx.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if r.is_err() {
                        tracing::error!("JOURNAL => writer stopped; bans are confirmed by the kernel alone");
                        disk = None;
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ban_is_confirmed_when_both_kernel_and_disk_have_it() {
        let c = Arc::new(Confirmations::default());
        let counted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = std::sync::Arc::clone(&counted);
        c.set_hook(Box::new(move |_| {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let (k_tx, k_rx) = watch::channel(0);
        let (d_tx, d_rx) = watch::channel(0);
        let stop = CancellationToken::new();
        let runner = {
            let (c, stop) = (std::sync::Arc::clone(&c), stop.clone());
            tokio::spawn(async move { c.run(k_rx, Some(d_rx), stop).await })
        };
        c.push(1, "192.0.2.1".parse().unwrap(), "r".into());
        c.push(2, "192.0.2.2".parse().unwrap(), "r".into());
        k_tx.send(2).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(c.confirmed(), 0, "the disk has nothing yet");
        d_tx.send(1).unwrap();
        c.wait(1).await;
        assert_eq!(counted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The journal thread goes away: the kernel alone confirms.
        drop(d_tx);
        c.wait(2).await;
        assert_eq!(counted.load(std::sync::atomic::Ordering::SeqCst), 2);
        stop.cancel();
        runner.await.unwrap();
    }
}
