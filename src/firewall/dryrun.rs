//! A backend that touches nothing: it logs what it would do and records the
//! calls, for `--dry-run`, `replay` and the daemon's integration tests.

use std::collections::{BTreeSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Backend, FirewallError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DryRunOp {
    Init,
    Add(IpAddr),
    /// Kernel timeout renewed for a present ban.
    Refresh(IpAddr),
    Delete(IpAddr),
    Shutdown,
}

/// Shared view of what the dry-run backend was asked to do.
#[derive(Clone, Debug, Default)]
pub struct DryRunLog(Arc<Mutex<(VecDeque<DryRunOp>, BTreeSet<IpAddr>)>>);

/// Calls remembered (the oldest are forgotten), so a long `--dry-run`
/// does not grow without bound.
const KEEP_OPS: usize = 10_000;

impl DryRunLog {
    pub fn ops(&self) -> Vec<DryRunOp> {
        self.lock().0.iter().cloned().collect()
    }

    fn record(&self, op: DryRunOp) {
        let mut log = self.lock();
        match &op {
            DryRunOp::Add(ip) => {
                log.1.insert(*ip);
            }
            DryRunOp::Delete(ip) => {
                log.1.remove(ip);
            }
            DryRunOp::Shutdown => log.1.clear(),
            DryRunOp::Init | DryRunOp::Refresh(_) => {}
        }
        if log.0.len() == KEEP_OPS {
            log.0.pop_front();
        }
        log.0.push_back(op);
    }

    /// What the "kernel" would hold now.
    pub fn banned(&self) -> Vec<IpAddr> {
        self.lock().1.iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (VecDeque<DryRunOp>, BTreeSet<IpAddr>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct DryRun {
    log: DryRunLog,
    pending: Vec<DryRunOp>,
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
    }

    fn refresh(&mut self, ip: IpAddr, timeout: Duration) {
        if !self.quiet {
            tracing::info!("DRY-RUN => would renew {ip} for {}s", timeout.as_secs());
        }
        self.pending.push(DryRunOp::Refresh(ip));
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
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<IpAddr>, FirewallError> {
        Ok(self.log.banned())
    }

    fn shutdown(&mut self) -> Result<(), FirewallError> {
        self.log.record(DryRunOp::Shutdown);
        Ok(())
    }
}
