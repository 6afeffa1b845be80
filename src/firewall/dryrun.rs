//! A backend that touches nothing: it logs what it would do and records the
//! calls, for `--dry-run`, `replay` and the daemon's integration tests.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;

use super::deny::{DenyList, text};
use super::{Backend, FirewallError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DryRunOp {
    Init,
    Add(IpAddr),
    /// Kernel timeout renewed for a present ban.
    Refresh(IpAddr),
    Delete(IpAddr),
    /// The permanent deny entries replaced by these (normalised: host bits
    /// cleared, sorted, overlaps removed; empty clears them).
    Deny(Vec<IpNet>),
    Shutdown,
}

/// Shared view of what the dry-run backend was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DryRunLog(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    ops: VecDeque<DryRunOp>,
    /// Banned addresses and the timeout they were given.
    banned: BTreeMap<IpAddr, Duration>,
    denied: Vec<IpNet>,
}

/// Calls remembered (the oldest are forgotten), so a long `--dry-run`
/// does not grow without bound.
const KEEP_OPS: usize = 10_000;

impl DryRunLog {
    pub fn ops(&self) -> Vec<DryRunOp> {
        self.lock().ops.iter().cloned().collect()
    }

    fn record(&self, op: DryRunOp) {
        let mut log = self.lock();
        match &op {
            DryRunOp::Add(ip) => {
                log.banned.entry(*ip).or_insert(Duration::ZERO);
            }
            DryRunOp::Delete(ip) => {
                log.banned.remove(ip);
            }
            DryRunOp::Deny(nets) => log.denied = nets.clone(),
            DryRunOp::Shutdown => {
                log.banned.clear();
                log.denied.clear();
            }
            DryRunOp::Init | DryRunOp::Refresh(_) => {}
        }
        if log.ops.len() == KEEP_OPS {
            log.ops.pop_front();
        }
        log.ops.push_back(op);
    }

    /// What the "kernel" would hold now.
    pub fn banned(&self) -> Vec<IpAddr> {
        self.lock().banned.keys().copied().collect()
    }

    fn held(&self) -> Vec<super::Held> {
        self.lock()
            .banned
            .iter()
            .map(|(ip, t)| super::Held {
                ip: *ip,
                remaining: Some(*t),
            })
            .collect()
    }

    fn set_timeout(&self, ip: IpAddr, t: Duration) {
        if let Some(held) = self.lock().banned.get_mut(&ip) {
            *held = t;
        }
    }

    /// The deny entries the "kernel" would hold now.
    pub fn denied(&self) -> Vec<IpNet> {
        self.lock().denied.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct DryRun {
    log: DryRunLog,
    pending: Vec<DryRunOp>,
    /// Timeouts given with the pending adds and refreshes.
    timeouts: Vec<(IpAddr, Duration)>,
    /// Log each call (off for `replay`, which prints its own report).
    quiet: bool,
}

impl DryRun {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn quiet() -> Self {
        DryRun {
            quiet: true,
            ..Self::default()
        }
    }

    pub fn log(&self) -> DryRunLog {
        self.log.clone()
    }

    /// A backend whose "kernel" is `log`'s: what a previous run left there
    /// is still held, as a real kernel keeps a killed daemon's bans (tests
    /// of the takeover after a crash).
    pub fn with_log(log: DryRunLog) -> Self {
        DryRun {
            log,
            ..Self::default()
        }
    }
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "dry-run"
    }

    fn init(&mut self) -> Result<(), FirewallError> {
        if !self.quiet {
            tracing::info!("DRY-RUN => firewall untouched; bans are only logged");
        }
        self.log.record(DryRunOp::Init);
        Ok(())
    }

    fn add(&mut self, ip: IpAddr, timeout: Duration) {
        if !self.quiet {
            tracing::info!("DRY-RUN => would ban {ip} for {}s", timeout.as_secs());
        }
        self.pending.push(DryRunOp::Add(ip));
        self.timeouts.push((ip, timeout));
    }

    fn refresh(&mut self, ip: IpAddr, timeout: Duration) {
        if !self.quiet {
            tracing::info!("DRY-RUN => would renew {ip} for {}s", timeout.as_secs());
        }
        self.pending.push(DryRunOp::Refresh(ip));
        self.timeouts.push((ip, timeout));
    }

    fn delete(&mut self, ip: IpAddr) {
        if !self.quiet {
            tracing::info!("DRY-RUN => would unban {ip}");
        }
        self.pending.push(DryRunOp::Delete(ip));
    }

    fn commit(&mut self) -> Result<(), FirewallError> {
        for op in self.pending.drain(..) {
            self.log.record(op);
        }
        for (ip, t) in self.timeouts.drain(..) {
            self.log.set_timeout(ip, t);
        }
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(self.log.banned())
    }

    fn held(&mut self) -> Result<Vec<super::Held>, FirewallError> {
        Ok(self.log.held())
    }

    fn set_denied(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        let list = DenyList::new(nets).nets();
        if !self.quiet {
            if list.is_empty() {
                tracing::info!("DRY-RUN => would clear the deny entries");
            } else {
                let shown: Vec<String> = list.iter().take(10).map(text).collect();
                let more = list.len().saturating_sub(shown.len());
                tracing::info!(
                    "DRY-RUN => would deny {} entries permanently: {}{}",
                    list.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
        }
        self.log.record(DryRunOp::Deny(list));
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        self.log.record(DryRunOp::Shutdown);
        Ok(())
    }
}
