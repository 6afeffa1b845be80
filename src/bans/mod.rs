//! The ban store and everything that keeps it honest over time: the expiry
//! task (sleeps until the earliest expiry, no polling scans), the journal
//! and the dump (a ban is on disk within milliseconds, compacted into the
//! dump within a second) and restore.
//!
//! Every change is numbered. Under the store's lock it is queued to the
//! firewall applier (so the kernel sees changes in the store's order) and
//! to the journal; [`confirm`] waits until both have it before a new ban's
//! `BLOCK =>` line is written or a console `block` is answered. The store's
//! mutex is a `std::sync::Mutex` that is never held across an `.await`.

pub mod confirm;
mod dumping;
pub mod journal;
pub mod networks;
pub mod persist;
mod restore;
pub mod store;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, UnixTime};
use crate::firewall::sets::{KERNEL_GRACE, KERNEL_MAX_TIMEOUT, REFRESH_STEP};
use crate::firewall::{Depth, Firewall, FirewallError, Reconciled};
use confirm::Confirmations;
use journal::{Journal, Record};
pub use persist::{DumpEntry, DumpError};
pub use restore::Restored;
pub use store::{Ban, BanStore, PERMANENT, Upsert};

/// Restored bans logged one by one; beyond this, a count.
const LOG_EACH: usize = 100;

/// How long after a change the dump is written (the journal holds the
/// change meanwhile).
pub const DUMP_DELAY: Duration = Duration::from_millis(200);

/// A long ban's kernel timeout is renewed this long (seconds) before the
/// kernel would drop it.
const RENEW_MARGIN: u64 = 86_400;

/// Reason of a ban found in the kernel after a crash and not on disk.
pub const ADOPTED: &str = "Adopted from the firewall";

/// Why a ban ended, as written in `UNBLOCK => ip (why)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnbanReason {
    Timeout,
    Manual,
}

impl UnbanReason {
    fn text(self) -> &'static str {
        match self {
            UnbanReason::Timeout => "Timeout Unblock",
            UnbanReason::Manual => "Manual Unblock",
        }
    }
}

pub struct BanManager {
    store: Mutex<BanStore>,
    /// Bans of whole networks (few; apart from the per-address store).
    networks: Mutex<networks::NetBans>,
    /// Bumped when the banned networks change (see `networks_changed`).
    networks_changed: tokio::sync::watch::Sender<u64>,
    /// Number of the last change (taken under the store's lock).
    seq: AtomicU64,
    firewall: Firewall,
    clock: Clock,
    ban_time: Duration,
    dump_path: Option<PathBuf>,
    journal: Option<Journal>,
    confirmations: Arc<Confirmations>,
    /// Ends the confirmation task with the manager.
    closing: CancellationToken,
    /// Wakes the expiry task when a new earliest deadline appears.
    expiry_changed: Notify,
    /// Wakes the dump writer.
    dirty: Notify,
    /// Held while a dump is written (see `dump`).
    dumping: tokio::sync::Mutex<()>,
    /// Counts changes, for observers that wait for a ban (tests, benchmark).
    changes: tokio::sync::watch::Sender<u64>,
    /// Serialised extra state dumped with the bans (the policy's history).
    history: std::sync::OnceLock<HistoryProvider>,
}

/// Gives a writer of the state to dump alongside the bans (one line of
/// JSON), or `None` for none.
pub type HistoryProvider = Box<dyn Fn() -> Option<persist::HistoryWriter> + Send + Sync>;

impl Drop for BanManager {
    fn drop(&mut self) {
        self.closing.cancel();
    }
}

impl BanManager {
    /// With a dump path, changes are journaled next to it (see
    /// [`journal`]); must be called inside a Tokio runtime.
    pub fn new(
        firewall: Firewall,
        clock: Clock,
        ban_time: Duration,
        dump_path: Option<PathBuf>,
    ) -> Arc<Self> {
        let journal = dump_path.as_deref().and_then(|dump| {
            let generation = journal::next_generation(dump);
            match Journal::start(dump, generation) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::error!(
                        "JOURNAL => not started: {e}; bans are confirmed by the kernel alone"
                    );
                    None
                }
            }
        });
        let confirmations = Arc::new(Confirmations::default());
        let closing = CancellationToken::new();
        {
            let (c, kernel, closing) = (
                Arc::clone(&confirmations),
                firewall.committed(),
                closing.clone(),
            );
            let disk = journal.as_ref().map(Journal::durable);
            tokio::spawn(async move { c.run(kernel, disk, closing).await });
        }
        Arc::new(BanManager {
            store: Mutex::new(BanStore::default()),
            networks: Mutex::new(networks::NetBans::default()),
            networks_changed: tokio::sync::watch::Sender::new(0),
            seq: AtomicU64::new(0),
            firewall,
            clock,
            ban_time,
            dump_path,
            journal,
            confirmations,
            closing,
            expiry_changed: Notify::new(),
            dirty: Notify::new(),
            dumping: tokio::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
            history: std::sync::OnceLock::new(),
        })
    }

    /// Marks the state changed: dump soon, wake observers.
    fn changed(&self) {
        self.dirty.notify_one();
        self.changes.send_modify(|n| *n += 1);
    }

    /// Sets what is dumped as `history` (once).
    pub fn set_history_provider(&self, provider: HistoryProvider) {
        let _ = self.history.set(provider);
    }

    /// Called once per new ban when it is confirmed (in the kernel and on
    /// disk), e.g. to count it in the report.
    pub fn set_confirm_hook(&self, hook: confirm::ConfirmHook) {
        self.confirmations.set_hook(hook);
    }

    /// A receiver that sees every change of the ban store.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, BanStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn firewall(&self) -> &Firewall {
        &self.firewall
    }

    pub fn ban_time(&self) -> Duration {
        self.ban_time
    }

    pub fn dump_path(&self) -> Option<&PathBuf> {
        self.dump_path.as_ref()
    }

    /// Numbers a change made under the store's lock: journals `record`
    /// and marks the firewall queue, so confirmation can follow both.
    fn number(&self, record: Record) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(j) = &self.journal {
            j.append(seq, record);
        }
        self.firewall.mark(seq);
        seq
    }

    /// Bans `ip` for the configured time (or extends its ban).
    pub fn ban(&self, ip: IpAddr, reason: &str) -> Upsert {
        self.ban_for(ip, reason, None)
    }

    /// Bans `ip` for `ban_for` (the configured time if `None`).
    pub fn ban_for(&self, ip: IpAddr, reason: &str, ban_for: Option<Duration>) -> Upsert {
        self.ban_numbered(ip, reason, ban_for).0
    }

    /// As [`Self::ban_for`], and returns once the ban is in the kernel and
    /// on disk (for answers that promise it, such as the console's).
    pub async fn ban_durably(&self, ip: IpAddr, reason: &str, ban_for: Option<Duration>) -> Upsert {
        let (outcome, seq) = self.ban_numbered(ip, reason, ban_for);
        self.confirmations.wait(seq).await;
        outcome
    }

    fn ban_numbered(&self, ip: IpAddr, reason: &str, ban_for: Option<Duration>) -> (Upsert, u64) {
        let secs = ban_for.unwrap_or(self.ban_time).as_secs();
        let expires = self.clock.now().saturating_add(secs);
        self.ban_until(ip, expires, reason, 1)
    }

    /// Bans `ip` for good ([`MAX_DURATION`](crate::config::MAX_DURATION)),
    /// marked so listings tell it from a timed ban.
    pub fn ban_permanently(&self, ip: IpAddr, reason: &str) -> Upsert {
        let forever = Duration::from_secs(crate::config::MAX_DURATION);
        self.ban_for(ip, &format!("{reason}{PERMANENT}"), Some(forever))
    }

    /// Returns the outcome and the change number to wait for (the last
    /// confirmed one if nothing new had to reach the kernel).
    fn ban_until(&self, ip: IpAddr, expires: UnixTime, reason: &str, count: u32) -> (Upsert, u64) {
        let ip = ip.to_canonical();
        let now = self.clock.now();
        let (outcome, wake, seq) = {
            let mut store = self.lock();
            let earliest = store.next_deadline();
            let outcome = store.upsert(ip, expires, reason, count);
            let (after, count, kept_reason) = store
                .brief(&ip)
                .unwrap_or_else(|| (expires, count, Arc::from(reason)));
            let record = || journal::ban_record(ip, after, Arc::clone(&kept_reason), count);
            // Nothing new for the kernel: wait for what is already queued.
            let mut seq = self.seq.load(Ordering::SeqCst);
            match outcome {
                Upsert::New | Upsert::Reactivated => {
                    self.firewall
                        .add(ip, Duration::from_secs(after.saturating_sub(now)));
                    Self::hold_in_kernel(&mut store, ip, after, now);
                    seq = self.number(record());
                    self.confirmations.push(seq, ip, Arc::clone(&kept_reason));
                }
                // Keep the kernel timeout (the backstop) ahead of the ban,
                // with a minute to spare so a flood costs one refresh (and
                // one journal record) a minute rather than one per event.
                Upsert::Extended => {
                    if store.kernel_until(&ip).is_some_and(|k| after > k) {
                        let k = Self::hold_in_kernel(&mut store, ip, after + REFRESH_STEP, now);
                        self.firewall
                            .refresh(ip, Duration::from_secs(k.saturating_sub(now)));
                        seq = self.number(record());
                    }
                }
            }
            (outcome, earliest != store.next_deadline(), seq)
        };
        if outcome == Upsert::Extended {
            tracing::debug!("EXTEND => {ip} ({reason})");
        }
        if wake {
            self.expiry_changed.notify_one();
        }
        self.changed();
        (outcome, seq)
    }

    /// Records until when the kernel holds `ip` (its timeout is clamped to
    /// what the kernel can hold) and, for a ban longer than that, when to
    /// renew it: a day before the kernel would drop it, so a long ban has
    /// no gap. Returns the kernel's end.
    fn hold_in_kernel(
        store: &mut BanStore,
        ip: IpAddr,
        until: UnixTime,
        now: UnixTime,
    ) -> UnixTime {
        let most = now.saturating_add(KERNEL_MAX_TIMEOUT - KERNEL_GRACE);
        let kernel = until.min(most);
        store.set_kernel_until(&ip, kernel);
        if kernel < until {
            store.schedule_renewal(ip, kernel.saturating_sub(RENEW_MARGIN));
        }
        kernel
    }

    /// Renews the kernel timeouts that are due (bans longer than the
    /// kernel can hold at once).
    fn renew_due(&self, now: UnixTime) {
        let mut store = self.lock();
        for (ip, expires) in store.pop_renewals(now, RENEW_MARGIN) {
            let k = Self::hold_in_kernel(&mut store, ip, expires, now);
            self.firewall
                .refresh(ip, Duration::from_secs(k.saturating_sub(now)));
        }
    }

    /// Removes a ban at once. `false` if `ip` was not banned.
    pub fn unban(&self, ip: IpAddr, why: UnbanReason) -> bool {
        self.unban_numbered(ip, why).is_some()
    }

    /// As [`Self::unban`], and returns once the unban is in the kernel and
    /// on disk.
    pub async fn unban_durably(&self, ip: IpAddr, why: UnbanReason) -> bool {
        match self.unban_numbered(ip, why) {
            Some(seq) => {
                self.confirmations.wait(seq).await;
                true
            }
            None => false,
        }
    }

    fn unban_numbered(&self, ip: IpAddr, why: UnbanReason) -> Option<u64> {
        let ip = ip.to_canonical();
        let seq = {
            let mut store = self.lock();
            let removed = store.remove(&ip)?;
            if removed.active {
                self.firewall.delete(ip);
            }
            self.number(Record::Unban(ip))
        };
        tracing::info!("UNBLOCK => {ip} ({})", why.text());
        self.changed();
        Some(seq)
    }

    /// Number of bans held (active or flushed).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Active bans, soonest expiry first.
    pub fn list(&self) -> Vec<Ban> {
        self.lock()
            .by_expiry()
            .into_iter()
            .filter(|b| b.active)
            .collect()
    }

    pub fn get(&self, ip: IpAddr) -> Option<Ban> {
        self.lock().get(&ip.to_canonical())
    }

    /// Every ban, active or flushed, as it would be dumped.
    pub fn snapshot(&self) -> Vec<Ban> {
        self.lock().by_expiry()
    }

    /// Active bans with their remaining time, for the firewall.
    fn desired(store: &BanStore, now: UnixTime) -> Vec<(IpAddr, Duration)> {
        store
            .active_expiries()
            .into_iter()
            .map(|(ip, t)| (ip, Duration::from_secs(t.saturating_sub(now).max(1))))
            .collect()
    }

    /// Compares the firewall with the store and repairs any drift (our
    /// objects flushed or deleted, elements missing or extra), as closely
    /// as `depth` says.
    pub async fn check_firewall(&self, depth: Depth) -> Result<Reconciled, FirewallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let store = self.lock();
            self.firewall
                .send_reconcile(Self::desired(&store, self.clock.now()), depth, tx);
        }
        let report = rx.await.map_err(|_| FirewallError::Stopped)??;
        if !report.in_sync() {
            tracing::warn!("CHECK => firewall drifted: {report}");
        }
        Ok(report)
    }

    /// Runs the quick [`Self::check_firewall`] every `every` until shutdown.
    pub async fn run_firewall_check(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.check_firewall(Depth::Quick).await {
                        tracing::error!("CHECK => {e}");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Removes bans as they expire. Sleeps until the earliest expiry or
    /// until an earlier one is added.
    pub async fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = {
                let store = self.lock();
                [store.next_deadline(), store.next_renewal()]
            }
            .into_iter()
            .chain([self.next_network_deadline()])
            .flatten()
            .min();
            let wait = async {
                match next {
                    Some(t) => self.clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => self.expire_due(),
                _ = self.expiry_changed.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Removes every ban whose time has come. Not journaled: an expiry
    /// follows from the recorded expiry time.
    pub fn expire_due(&self) {
        let now = self.clock.now();
        self.expire_networks(now);
        self.renew_due(now);
        let expired = {
            let mut store = self.lock();
            let expired = store.pop_expired(now);
            for ban in expired.iter().filter(|b| b.active) {
                self.firewall.delete(ban.ip);
            }
            expired
        };
        for ban in &expired {
            if ban.active {
                tracing::info!("UNBLOCK => {} ({})", ban.ip, UnbanReason::Timeout.text());
            }
        }
        if !expired.is_empty() {
            self.changed();
        }
    }
}
