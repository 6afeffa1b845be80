//! Restore: the dump, then the journal written after it, and at start what
//! the kernel still holds. A kill -9 leaves bans the disk may not have yet
//! (a ban is in the kernel a moment before it is journaled): the set
//! backends keep them with their remaining timeouts and the chain backend
//! keeps its rules, so the new run adopts them instead of deleting what it
//! does not know. An address the journal says was unbanned is not adopted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::journal::{self, Record};
use super::networks::NetBan;
use super::persist::{self, Dump};
use super::{ADOPTED, Ban, BanManager, DumpEntry, DumpError, LOG_EACH, Upsert};
use crate::firewall::Depth;
use crate::firewall::sets::KERNEL_GRACE;

/// Result of a restore.
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
    /// Bans found in the kernel and on no disk (a crashed run's), adopted.
    pub adopted: usize,
    /// Network bans put back.
    pub networks: usize,
    /// The policy's history saved with the bans, for the caller to load.
    pub history: Option<serde_json::Value>,
    /// Entries of the dump or journal that had to be skipped (file:line).
    pub warnings: Vec<String>,
}

/// The dump and its journals as one list of bans.
struct OnDisk {
    entries: Vec<DumpEntry>,
    /// Bans of whole networks.
    networks: Vec<NetBan>,
    /// Unbanned according to the journal: not to be adopted.
    unbanned: HashSet<IpAddr>,
    history: Option<serde_json::Value>,
    warnings: Vec<String>,
}

/// Reads the dump, then the journals from the generation it names on;
/// `now` for the remaining timeouts of an `ipset save` dump.
/// `Ok(None)`: neither a dump nor a journal.
fn read_disk(path: PathBuf, now: crate::clock::UnixTime) -> Result<Option<OnDisk>, DumpError> {
    let dump = persist::read_dump_at(&path, now)?;
    let found = dump.is_some();
    let Dump {
        bans,
        history,
        journal: from,
        warnings,
        nets,
    } = dump.unwrap_or_default();
    let replayed = journal::replay(&path, from);
    if !found && replayed.records.is_empty() {
        return Ok(None);
    }
    let mut order: Vec<IpAddr> = Vec::with_capacity(bans.len());
    let mut by_ip: HashMap<IpAddr, DumpEntry> = HashMap::with_capacity(bans.len());
    for e in bans {
        match by_ip.get_mut(&e.ip) {
            Some(old) if old.expiry >= e.expiry => {}
            Some(old) => *old = e,
            None => {
                order.push(e.ip);
                by_ip.insert(e.ip, e);
            }
        }
    }
    let mut unbanned = HashSet::new();
    let mut networks: BTreeMap<IpNet, NetBan> = nets.into_iter().map(|b| (b.net, b)).collect();
    for r in replayed.records {
        match r {
            Record::BanNet(b) => {
                networks.insert(b.net, b);
            }
            Record::UnbanNet(net) => {
                networks.remove(&net);
            }
            Record::Ban(b) => {
                let e = DumpEntry::from(b);
                unbanned.remove(&e.ip);
                let ip = e.ip;
                if by_ip.insert(ip, e).is_none() {
                    order.push(ip);
                }
            }
            Record::Unban(ip) => {
                by_ip.remove(&ip);
                unbanned.insert(ip);
            }
        }
    }
    let entries = order
        .into_iter()
        .filter_map(|ip| by_ip.remove(&ip))
        .collect();
    let mut all_warnings = warnings;
    all_warnings.extend(replayed.warnings);
    Ok(Some(OnDisk {
        entries,
        networks: networks.into_values().collect(),
        unbanned,
        history,
        warnings: all_warnings,
    }))
}

impl BanManager {
    async fn read_disk(&self) -> Result<Option<OnDisk>, DumpError> {
        let Some(path) = self.dump_path.clone() else {
            return Ok(None);
        };
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || read_disk(path, now))
            .await
            .map_err(|e| DumpError::Read {
                path: PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })?
    }

    /// Loads the dump (and the journal after it) and bans every unexpired
    /// entry; protected addresses are reported, not banned; bad entries are
    /// skipped and reported. `Ok(None)`: nothing on disk.
    pub async fn restore(
        &self,
        protected: impl Fn(IpAddr) -> Option<String>,
    ) -> Result<Option<super::Restored>, DumpError> {
        let Some(disk) = self.read_disk().await? else {
            return Ok(None);
        };
        let mut restored = self.restore_entries(disk.entries, protected).await;
        restored.networks = self.restore_networks(disk.networks);
        restored.history = disk.history;
        restored.warnings = disk.warnings;
        Ok(Some(restored))
    }

    /// The start-up restore: as [`Self::restore`], plus the bans the kernel
    /// still holds from a run that did not stop cleanly, then a fresh dump
    /// (the journals replayed are compacted into it).
    pub async fn restore_at_start(
        &self,
        protected: impl Fn(IpAddr) -> Option<String>,
    ) -> Result<Restored, DumpError> {
        let disk = self.read_disk().await?;
        let found = disk.is_some();
        let (mut entries, networks, unbanned, history, warnings) = match disk {
            Some(d) => (d.entries, d.networks, d.unbanned, d.history, d.warnings),
            None => Default::default(),
        };
        let known: HashSet<IpAddr> = entries.iter().map(|e| e.ip).collect();
        let now = self.clock.now();
        let mut adopted = 0;
        match self.firewall.held().await {
            Ok(held) => {
                for h in held {
                    let ip = h.ip.to_canonical();
                    if known.contains(&ip) || unbanned.contains(&ip) {
                        continue;
                    }
                    // A set element's timeout is the ban's end plus the
                    // grace; one within its grace is a ban already over
                    // (the reconcile below removes it). A chain rule has no
                    // timeout: it gets the ban time.
                    let left = match h.remaining {
                        Some(r) => r.saturating_sub(Duration::from_secs(KERNEL_GRACE)),
                        None => self.ban_time,
                    };
                    if left.as_secs() == 0 {
                        continue;
                    }
                    entries.push(DumpEntry {
                        ip,
                        expiry: now.saturating_add(left.as_secs().max(1)),
                        reason: ADOPTED.to_string(),
                        count: 1,
                    });
                    adopted += 1;
                }
            }
            Err(e) => tracing::error!("RESTORE => cannot list the firewall's bans: {e}"),
        }
        if adopted > 0 {
            tracing::warn!(
                "RESTORE => {adopted} bans adopted from the firewall (left by a run that did not stop cleanly)"
            );
        }
        let mut restored = self.restore_entries(entries, protected).await;
        restored.networks = self.restore_networks(networks);
        restored.adopted = adopted;
        restored.history = history;
        restored.warnings = warnings;
        // Compact what was read (and adopted) into a fresh dump; with
        // nothing on disk and nothing adopted there is nothing to write.
        if self.dump_path.is_some()
            && (found || adopted > 0)
            && let Err(e) = self.dump().await
        {
            tracing::error!("DUMP => {e}");
        }
        Ok(restored)
    }

    /// Bans every unexpired entry and then makes the firewall hold exactly
    /// the active bans in one reconcile: one batch however many entries,
    /// and after a crash the kernel's leftovers are taken over (missing
    /// ones added, stale ones removed). Not journaled: the entries come
    /// from disk (or the kernel), and a dump follows.
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
                    _ => {
                        let until = store.get(&ip).map_or(e.expiry, |b| b.expires);
                        Self::hold_in_kernel(&mut store, ip, until, now);
                        report.added.extend(store.get(&ip));
                    }
                }
            }
            self.firewall
                .send_reconcile(Self::desired(&store, now), Depth::Full, tx);
            earliest != store.next_deadline()
        };
        if wake {
            self.expiry_changed.notify_one();
        }
        self.changed();
        match rx.await {
            Ok(Ok(r)) if !r.in_sync() => tracing::info!("FIREWALL => {r}"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("FIREWALL => restore not fully applied: {e}"),
            Err(_) => tracing::error!("FIREWALL => applier stopped during restore"),
        }
        for ban in report.added.iter().take(LOG_EACH) {
            tracing::info!("BLOCK => {} ({})", ban.ip, ban.reason);
        }
        if report.added.len() > LOG_EACH {
            tracing::info!("BLOCK => ... and {} more", report.added.len() - LOG_EACH);
        }
        tracing::info!(
            "RESTORE => {} bans restored, {} expired, {} already present",
            report.added.len(),
            report.expired,
            report.present
        );
        report
    }
}
