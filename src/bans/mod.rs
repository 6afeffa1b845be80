//! The ban store and everything that keeps it honest over time: the expiry
//! task (sleeps until the earliest expiry, no polling scans), the dump
//! writer (atomic, within a second of any change) and restore.
//!
//! The store's mutex is a `std::sync::Mutex` that is never held across an
//! `.await`; firewall changes are queued to the applier while holding it, so
//! the firewall sees changes in the same order as the store.

pub mod persist;
pub mod store;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, UnixTime};
use crate::firewall::sets::REFRESH_STEP;
use crate::firewall::{Firewall, FirewallError, Reconciled};
pub use persist::{DumpEntry, DumpError};
pub use store::{Ban, BanStore, PERMANENT, Upsert};

/// Restored bans logged one by one; beyond this, a count.
const LOG_EACH: usize = 100;

/// How long after a change the dump is written (kill -9 loses at most this).
pub const DUMP_DELAY: Duration = Duration::from_millis(200);

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

/// Result of a `restore`.
#[derive(Debug, Default)]
pub struct Restored {
    /// Bans that are active again (newly added or re-activated).
    pub added: Vec<Ban>,
    /// Entries whose expiry had already passed.
    pub expired: usize,
    /// Entries already active (their expiry may have been extended).
    pub present: usize,
    /// Entries for protected addresses (white list, loopback, AMI host).
    pub spared: Vec<(IpAddr, String)>,
    /// The policy's history saved with the bans, for the caller to load.
    pub history: Option<serde_json::Value>,
}

pub struct BanManager {
    store: Mutex<BanStore>,
    firewall: Firewall,
    clock: Clock,
    ban_time: Duration,
    dump_path: Option<PathBuf>,
    /// Wakes the expiry task when a new earliest deadline appears.
    expiry_changed: Notify,
    /// Wakes the dump writer.
    dirty: Notify,
    /// Counts changes, for observers that wait for a ban (tests, benchmark).
    changes: tokio::sync::watch::Sender<u64>,
    /// Serialised extra state dumped with the bans (the policy's history).
    history: std::sync::OnceLock<HistoryProvider>,
}

/// Gives the JSON of the state to dump alongside the bans.
pub type HistoryProvider = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl BanManager {
    pub fn new(
        firewall: Firewall,
        clock: Clock,
        ban_time: Duration,
        dump_path: Option<PathBuf>,
    ) -> Arc<Self> {
        Arc::new(BanManager {
            store: Mutex::new(BanStore::default()),
            firewall,
            clock,
            ban_time,
            dump_path,
            expiry_changed: Notify::new(),
            dirty: Notify::new(),
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

    /// Bans `ip` for the configured time (or extends its ban).
    pub fn ban(&self, ip: IpAddr, reason: &str) -> Upsert {
        self.ban_for(ip, reason, None)
    }

    /// Bans `ip` for `ban_for` (the configured time if `None`).
    pub fn ban_for(&self, ip: IpAddr, reason: &str, ban_for: Option<Duration>) -> Upsert {
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

    fn ban_until(&self, ip: IpAddr, expires: UnixTime, reason: &str, count: u32) -> Upsert {
        let ip = ip.to_canonical();
        let now = self.clock.now();
        let (outcome, wake) = {
            let mut store = self.lock();
            let earliest = store.next_deadline();
            let outcome = store.upsert(ip, expires, reason, count);
            let after = store.get(&ip).map_or(expires, |b| b.expires);
            match outcome {
                Upsert::New | Upsert::Reactivated => self
                    .firewall
                    .add(ip, Duration::from_secs(after.saturating_sub(now))),
                // Keep the kernel timeout (the backstop) ahead of the ban,
                // with a minute to spare so a flood costs one refresh a
                // minute rather than one per event.
                Upsert::Extended => {
                    if store.kernel_until(&ip).is_some_and(|k| after > k) {
                        let k = after + REFRESH_STEP;
                        store.set_kernel_until(&ip, k);
                        self.firewall
                            .refresh(ip, Duration::from_secs(k.saturating_sub(now)));
                    }
                }
            }
            (outcome, earliest != store.next_deadline())
        };
        match outcome {
            Upsert::New | Upsert::Reactivated => tracing::info!("BLOCK => {ip} ({reason})"),
            Upsert::Extended => tracing::debug!("EXTEND => {ip} ({reason})"),
        }
        if wake {
            self.expiry_changed.notify_one();
        }
        self.changed();
        outcome
    }

    /// Removes a ban at once. `false` if `ip` was not banned.
    pub fn unban(&self, ip: IpAddr, why: UnbanReason) -> bool {
        let ip = ip.to_canonical();
        let removed = {
            let mut store = self.lock();
            let removed = store.remove(&ip);
            if removed.as_ref().is_some_and(|b| b.active) {
                self.firewall.delete(ip);
            }
            removed
        };
        match removed {
            Some(_) => {
                tracing::info!("UNBLOCK => {ip} ({})", why.text());
                self.changed();
                true
            }
            None => false,
        }
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

    /// Writes the dump now.
    pub async fn dump(&self) -> Result<usize, DumpError> {
        let Some(path) = self.dump_path.clone() else {
            return Ok(0);
        };
        let (rows, reasons) = self.lock().dump_rows();
        let history = self.history.get().and_then(|h| h());
        let n = rows.len();
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || {
            let result = persist::write_rows(
                &path,
                rows.iter().map(|(ip, expiry, count, reason)| {
                    let r = reasons.get(usize::from(*reason)).map_or("", |r| r);
                    (*ip, *expiry, r, *count)
                }),
                now,
                history.as_deref(),
            );
            drop(rows);
            crate::release_freed_memory();
            result
        })
        .await
        .map_err(|e| DumpError::Write {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(n)
    }

    /// The original's `flush`: dump, then take every ban out of the firewall.
    /// The bans stay in the dump so `restore` (or a restart) brings them back.
    pub async fn flush(&self) -> Result<usize, DumpError> {
        self.dump().await?;
        let flushed = {
            let mut store = self.lock();
            let flushed = store.deactivate_all();
            for ip in &flushed {
                self.firewall.delete(*ip);
            }
            flushed
        };
        for ip in flushed.iter().take(LOG_EACH) {
            tracing::info!("UNBLOCK => {ip} (Flush)");
        }
        if flushed.len() > LOG_EACH {
            tracing::info!(
                "UNBLOCK => ... and {} more (Flush)",
                flushed.len() - LOG_EACH
            );
        }
        if let Some(path) = &self.dump_path {
            tracing::info!("DUMP => {} ({} bans)", path.display(), flushed.len());
        }
        self.changed();
        Ok(flushed.len())
    }

    /// Loads the dump and bans every unexpired entry; entries for protected
    /// addresses are reported, not banned. `Ok(None)`: no dump file.
    pub async fn restore(
        &self,
        protected: impl Fn(IpAddr) -> Option<String>,
    ) -> Result<Option<Restored>, DumpError> {
        let Some(path) = self.dump_path.clone() else {
            return Ok(None);
        };
        let dump = tokio::task::spawn_blocking(move || persist::read_dump(&path))
            .await
            .map_err(|e| DumpError::Read {
                path: PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let Some(dump) = dump else {
            return Ok(None);
        };
        let mut restored = self.restore_entries(dump.bans, protected).await;
        restored.history = dump.history;
        Ok(Some(restored))
    }

    /// Bans every unexpired entry and then makes the firewall hold exactly
    /// the active bans in one reconcile: one batch however many entries,
    /// and after a crash the kernel's leftovers are taken over (missing
    /// ones added, stale ones removed).
    pub async fn restore_entries(
        &self,
        entries: Vec<DumpEntry>,
        protected: impl Fn(IpAddr) -> Option<String>,
    ) -> Restored {
        let now = self.clock.now();
        let mut report = Restored::default();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let wake = {
            let mut store = self.lock();
            let earliest = store.next_deadline();
            for e in entries {
                let ip = e.ip.to_canonical();
                if e.expiry <= now {
                    report.expired += 1;
                    continue;
                }
                if let Some(why) = protected(ip) {
                    tracing::warn!("RESTORE => {ip} not restored: {why}");
                    report.spared.push((ip, why));
                    continue;
                }
                match store.upsert(ip, e.expiry, &e.reason, e.count) {
                    Upsert::Extended => report.present += 1,
                    _ => report.added.extend(store.get(&ip)),
                }
            }
            self.firewall.send_reconcile(Self::desired(&store, now), tx);
            earliest != store.next_deadline()
        };
        if wake {
            self.expiry_changed.notify_one();
        }
        self.changed();
        for ban in report.added.iter().take(LOG_EACH) {
            tracing::info!("BLOCK => {} ({})", ban.ip, ban.reason);
        }
        if report.added.len() > LOG_EACH {
            tracing::info!("BLOCK => ... and {} more", report.added.len() - LOG_EACH);
        }
        match rx.await {
            Ok(Ok(r)) if !r.in_sync() => tracing::info!("FIREWALL => {r}"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("FIREWALL => restore not fully applied: {e}"),
            Err(_) => tracing::error!("FIREWALL => applier stopped during restore"),
        }
        tracing::info!(
            "RESTORE => {} bans restored, {} expired, {} already present",
            report.added.len(),
            report.expired,
            report.present
        );
        report
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
    /// objects flushed or deleted, elements missing or extra).
    pub async fn check_firewall(&self) -> Result<Reconciled, FirewallError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let store = self.lock();
            self.firewall
                .send_reconcile(Self::desired(&store, self.clock.now()), tx);
        }
        let report = rx.await.map_err(|_| FirewallError::Stopped)??;
        if !report.in_sync() {
            tracing::warn!("CHECK => firewall drifted: {report}");
        }
        Ok(report)
    }

    /// Runs [`Self::check_firewall`] every `every` until shutdown.
    pub async fn run_firewall_check(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.check_firewall().await {
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
            let next = self.lock().next_deadline();
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

    /// Removes every ban whose time has come.
    pub fn expire_due(&self) {
        let now = self.clock.now();
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

    /// Writes the dump shortly after changes until shutdown.
    pub async fn run_dump_writer(self: Arc<Self>, shutdown: CancellationToken) {
        if self.dump_path.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = self.dirty.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            // Coalesce a burst of changes into one write.
            tokio::time::sleep(DUMP_DELAY).await;
            if let Err(e) = self.dump().await {
                tracing::error!("DUMP => {e}");
            }
        }
    }
}
