//! `block NET` (the 2024 original's `block 198.51.100.0/24`): a network
//! ban, behind the same guard as `deny add` (nothing wider than /8 or /32,
//! nothing covering loopback, the AMI host or an allowed network) unless
//! `--force`. Forced or not, the allow list wins: the protected addresses
//! inside are left out of the ban.

use ipnet::IpNet;

use super::server::ConsoleContext;
use crate::bans::{Upsert, networks};
use crate::policy::Policy;

/// The reason network bans get, as the original logs a manual block.
const REASON: &str = "Manual block";

pub async fn block_network(ctx: &ConsoleContext, net: IpNet, force: bool) -> String {
    if let Some(why) = ctx.policy.deny_conflict(net) {
        if !force {
            return format!("error: {why}; not blocked (block --force {net} blocks it anyway)\n");
        }
        tracing::warn!("BLOCK => {net} blocked with --force: {why}");
    }
    if !networks::fits(net) {
        return format!(
            "error: {net} is wider than a network ban can be yet (/{} for IPv4, /{} for IPv6); \
             not blocked (deny add {net} bans it for good)\n",
            networks::WIDEST_V4,
            networks::WIDEST_V6
        );
    }
    let holes = protected_nets(&ctx.policy);
    let pieces = crate::cidr::subtract(&[net], &holes);
    if pieces.is_empty() {
        return format!("error: every address of {net} is protected; not blocked\n");
    }
    let mut new = false;
    for piece in &pieces {
        // Answered once the ban is in the kernel and on disk.
        if ctx.bans.ban_network(*piece, REASON).await != Upsert::Extended {
            new = true;
        }
    }
    if !new {
        return format!("{net} previously blocked\n");
    }
    let mut out = format!("{net} block\n");
    if pieces.as_slice() != [net] {
        let kept: Vec<String> = crate::cidr::subtract(&[net], &pieces)
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

/// Every address a ban must not cover: the allow list, loopback and the
/// AMI host (as for the deny list in the kernel).
fn protected_nets(policy: &Policy) -> Vec<IpNet> {
    let mut holes = policy.lists().allow.nets();
    holes.extend(
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|n| n.parse::<IpNet>().ok()),
    );
    holes.extend(policy.ami_hosts().iter().map(|ip| IpNet::from(*ip)));
    holes
}
