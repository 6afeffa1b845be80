//! Writing the dump: the journal's compaction. A snapshot of the store and
//! a new journal generation are taken in one critical section, so every
//! change is either in the snapshot or in the newer journal; once the dump
//! is durable, the older journal files go. A dump that cannot be written
//! (a full disk) is retried with backoff and reported once a minute, not at
//! every change; nothing is lost meanwhile (the journal and the kernel hold
//! the bans). A dump follows a change by [`DUMP_DELAY`], or by ten times
//! the last dump's duration when that is longer (at most 10 s).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{BanManager, DUMP_DELAY, DumpError, LOG_EACH, persist};

/// Longest wait between two attempts while the dump cannot be written.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Longest wait between a change and the dump holding it.
const PAUSE_MAX: Duration = Duration::from_secs(10);

/// How often a dump that keeps failing is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);

impl BanManager {
    /// Writes the dump now; returns the number of bans written.
    pub async fn dump(&self) -> Result<usize, DumpError> {
        let Some(path) = self.dump_path.clone() else {
            return Ok(0);
        };
        // One dump at a time: two would share the temp file, and an older
        // snapshot renamed last would hold less than the journal pruned for
        // the newer one.
        let _one = self.dumping.lock().await;
        let (rows, reasons, nets, generation) = {
            let store = self.lock();
            let nets = self.networks_lock().list();
            let generation = self.journal.as_ref().map_or(0, |j| j.rotate());
            let (rows, reasons) = store.dump_rows();
            (rows, reasons, nets, generation)
        };
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
                persist::Header {
                    written: now,
                    journal: generation,
                    history,
                    nets,
                },
            );
            // Freed before the trim, or glibc keeps their pages.
            drop(rows);
            crate::release_freed_memory();
            result
        })
        .await
        .map_err(|e| DumpError::Write {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })??;
        if let Some(j) = &self.journal {
            j.prune(generation);
        }
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

    /// Writes the dump shortly after changes until shutdown.
    pub async fn run_dump_writer(self: Arc<Self>, shutdown: CancellationToken) {
        if self.dump_path.is_none() {
            return;
        }
        let mut failing: Option<Failing> = None;
        let mut took = Duration::ZERO;
        loop {
            let retry = failing.as_ref().map(|f| f.retry_in);
            tokio::select! {
                _ = self.dirty.notified() => {}
                _ = sleep_opt(retry) => {}
                _ = shutdown.cancelled() => return,
            }
            // Coalesce a burst of changes into one write; a big dump waits
            // ten times as long as it takes (the journal holds the changes
            // meanwhile), so a long storm does not rewrite it all the time.
            tokio::time::sleep(DUMP_DELAY.max(took * 10).min(PAUSE_MAX)).await;
            let started = Instant::now();
            let result = self.dump().await;
            took = started.elapsed();
            match result {
                Ok(_) => {
                    if let Some(f) = failing.take() {
                        tracing::info!(
                            "DUMP => written again after {} failed attempts",
                            f.attempts
                        );
                    }
                }
                Err(e) => {
                    let f = failing.get_or_insert_with(Failing::default);
                    f.attempts += 1;
                    f.retry_in = (f.retry_in * 2).clamp(Duration::from_secs(1), RETRY_MAX);
                    if f.reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                        f.reported = Some(Instant::now());
                        tracing::error!(
                            "DUMP => {e} ({} attempts so far; retrying, the bans are kept in the journal and the kernel)",
                            f.attempts
                        );
                    }
                }
            }
        }
    }
}

#[derive(Default)]
struct Failing {
    attempts: u64,
    retry_in: Duration,
    reported: Option<Instant>,
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
