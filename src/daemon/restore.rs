//! The start-up restore as the daemon reports it.

use std::sync::Arc;

use crate::bans::BanManager;
use crate::policy::Policy;

/// Restores at start: the dump, its journal and what a crashed run left in
/// the kernel (bans), and the detector's history. Entries that cannot be
/// read are skipped and named; the dump they came from is copied aside
/// (it is about to be rewritten) for inspection.
pub(super) async fn restore_at_start(bans: &Arc<BanManager>, policy: &Arc<Policy>) {
    let p = Arc::clone(policy);
    let restored = bans
        .restore_at_start(move |ip| p.protection(ip).map(|pr| pr.to_string()))
        .await;
    let restored = match restored {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("RESTORE => {e}");
            return;
        }
    };
    for w in &restored.warnings {
        tracing::warn!("RESTORE => {w}");
    }
    if !restored.warnings.is_empty()
        && let Some(path) = bans.dump_path()
    {
        keep_aside(path, bans.clock().now());
    }
    if let Some(history) = restored.history.filter(|_| !policy.is_original()) {
        match serde_json::from_value(history) {
            Ok(h) => {
                let n = policy.detector().load_history(h, bans.clock().now_ms());
                tracing::info!("RESTORE => history of {n} sources");
            }
            Err(e) => tracing::warn!("RESTORE => history ignored: {e}"),
        }
    }
}

/// Copies a dump that had bad entries to `<dump>.bad-<time>` (never over
/// an existing copy), before the next dump replaces it.
fn keep_aside(path: &std::path::Path, now: u64) {
    let aside = path.with_extension(format!("bad-{now}"));
    if aside.exists() || !path.exists() {
        return;
    }
    match std::fs::copy(path, &aside) {
        Ok(_) => tracing::warn!(
            "RESTORE => the dump as it was is kept as {} for inspection",
            aside.display()
        ),
        Err(e) => tracing::error!("RESTORE => could not keep a copy of the dump: {e}"),
    }
}
