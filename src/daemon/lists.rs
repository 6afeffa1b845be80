//! List files written off the runtime, and the deny list put in force.

use std::path::PathBuf;

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
    let nets = policy.kernel_deny_nets();
    let n = nets.len();
    match bans.firewall().set_denied(nets).await {
        Ok(()) if n > 0 => tracing::info!("DENY LIST => {n} entries in the firewall"),
        Ok(()) => {}
        Err(e) => tracing::error!("DENY LIST => not in the firewall: {e}"),
    }
}
