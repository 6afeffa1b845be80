//! List files written off the runtime, and the deny list put in force.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::bans::BanManager;
use crate::policy::Policy;
use crate::policy::lists::AddressList;

/// Writes a list file off the async runtime (atomic, see
/// [`crate::atomic_file`]).
pub async fn save_list(list: AddressList, path: PathBuf) -> Result<(), String> {
    match tokio::task::spawn_blocking(move || list.save(&path)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Puts the deny list in force in the firewall (permanent, CIDR as well),
/// and the protected networks as the limits' exemptions (both follow the
/// allow list).
pub async fn enforce_deny_list(bans: &BanManager, policy: &Policy) {
    if let Err(e) = bans
        .firewall()
        .set_allowed(policy.kernel_allow_nets())
        .await
    {
        tracing::error!("ALLOW LIST => not exempt from the limits in the firewall: {e}");
    }
    let nets = policy.kernel_deny_nets(&bans.banned_networks());
    let n = nets.len();
    match bans.firewall().set_denied(nets).await {
        Ok(()) if n > 0 => tracing::info!("DENY LIST => {n} entries in the firewall"),
        Ok(()) => {}
        Err(e) => tracing::error!("DENY LIST => not in the firewall: {e}"),
    }
}

/// Puts the deny entries in force again whenever the banned networks change
/// (a `block NET`, an unblock, an expiry), until shutdown.
pub(super) async fn follow_network_bans(
    bans: Arc<BanManager>,
    policy: Arc<Policy>,
    mut changed: tokio::sync::watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return;
                }
                enforce_deny_list(&bans, &policy).await;
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
