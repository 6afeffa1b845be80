//! `block NET` (the 2024 original's `block 198.51.100.0/24`): a network
//! ban, behind the same guard as `deny add` (nothing wider than /8 or /32,
//! nothing covering loopback, the AMI host or an allowed network) unless
//! `--force`. Forced or not, the allow list wins: the protected addresses
//! inside are left out of the ban.

use ipnet::IpNet;

use super::server::ConsoleContext;
use crate::bans::Upsert;

/// The reason network bans get, as the original logs a manual block.
const REASON: &str = "Manual block";

pub async fn block_network(ctx: &ConsoleContext, net: IpNet, force: bool) -> String {
    if let Some(why) = ctx.policy.deny_conflict(net) {
        if !force {
            return format!("error: {why}; not blocked (block --force {net} blocks it anyway)\n");
        }
        tracing::warn!("BLOCK => {net} blocked with --force: {why}");
    }
    // The kernel holds the ban minus the protected networks: say which.
    let open = crate::cidr::subtract(&[net], &ctx.policy.protected_nets());
    if open.is_empty() {
        return format!("error: every address of {net} is protected; not blocked\n");
    }
    let (outcome, seq) = match ctx.bans.ban_network(net, REASON) {
        Ok(done) => done,
        Err(e) => return format!("error: {e}; {net} not blocked\n"),
    };
    // Answered once the ban is in the kernel and on disk.
    crate::daemon::enforce_deny_list(&ctx.bans, &ctx.policy).await;
    ctx.bans.durable(seq).await;
    if outcome == Upsert::Extended {
        return format!("{net} previously blocked\n");
    }
    let mut out = format!("{net} block\n");
    if open.as_slice() != [net] {
        let kept: Vec<String> = crate::cidr::subtract(&[net], &open)
            .iter()
            .map(IpNet::to_string)
            .collect();
        out.push_str(&format!(
            "{net}: protected addresses left out: {}\n",
            kept.join(", ")
        ));
    }
    out
}

/// `unblock NET`: lifts a network ban, answered once the kernel and the
/// disk have it.
pub async fn unblock_network(ctx: &ConsoleContext, net: IpNet) -> String {
    match ctx.bans.unban_network(net) {
        Some(seq) => {
            crate::daemon::enforce_deny_list(&ctx.bans, &ctx.policy).await;
            ctx.bans.durable(seq).await;
            format!("{net} unblocked\n")
        }
        None => format!("{net} is not previously blocked\n"),
    }
}
