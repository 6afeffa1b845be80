//! Events to verdicts to bans; a repeat offender to the deny list; the
//! detector's idle state dropped now and then.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lists::{enforce_deny_list, save_list};
use crate::bans::BanManager;
use crate::clock::Clock;
use crate::event::SecurityEvent;
use crate::policy::{Policy, Verdict};

/// Applies policy to each event as it arrives.
pub(super) async fn judge_events(
    mut events: mpsc::Receiver<SecurityEvent>,
    policy: Arc<Policy>,
    bans: Arc<BanManager>,
    deny_path: Option<PathBuf>,
    stats: Arc<crate::stats::Stats>,
) {
    while let Some(event) = events.recv().await {
        let now_ms = bans.clock().now_ms();
        stats.event(now_ms, event.kind.name(), event.source, &event.account);
        if let Some(agent) = event.sip.as_ref().and_then(|s| s.user_agent.as_deref()) {
            stats.user_agent(now_ms, agent);
        }
        let verdict = policy.judge(&event, now_ms);
        // The sensor's bans say what it saw (the BLOCK line gives the reason).
        if let Verdict::Ban { reason, .. } = &verdict
            && event.origin == crate::event::Origin::Sensor
            && bans.get(event.source).is_none_or(|b| !b.active)
        {
            tracing::info!(
                "SENSOR => {} ({reason}) <- {}",
                event.source,
                event.describe()
            );
        }
        match verdict {
            Verdict::Ban {
                reason,
                ban_for,
                permanent: false,
            } => {
                bans.ban_for(event.source, &reason, ban_for);
            }
            Verdict::Ban {
                reason,
                permanent: true,
                ..
            } => promote(&policy, &bans, deny_path.as_deref(), event.source, &reason).await,
            Verdict::Spared(why) => tracing::info!(
                "WHITE LIST => {} not blocked ({}, {} account {:?}; {why})",
                event.source,
                event.kind.reason(),
                event.service,
                event.account
            ),
            // The original's semantics: a banned source that keeps
            // attacking has its ban extended (never a second rule).
            Verdict::Ignore
                if policy.is_attack(&event.kind)
                    && bans.get(event.source).is_some_and(|b| b.active) =>
            {
                bans.ban_for(event.source, &event.reason(), None);
            }
            Verdict::Ignore => {}
        }
    }
}

/// A repeat offender moves to the permanent deny list (saved to its file)
/// and stays banned.
async fn promote(
    policy: &Policy,
    bans: &BanManager,
    deny_path: Option<&std::path::Path>,
    ip: IpAddr,
    reason: &str,
) {
    let note = format!(
        "permanent {} after: {}",
        crate::clock::stamp(bans.clock().now()).trim_matches(['[', ']']),
        reason.replace('#', "")
    );
    let mut lists = (*policy.lists()).clone();
    let _ = lists.deny.add(ipnet::IpNet::from(ip), Some(&note));
    if let Some(path) = deny_path
        && let Err(e) = save_list(lists.deny.clone(), path.to_path_buf()).await
    {
        tracing::error!("DENY LIST => not saved: {e}");
    }
    policy.set_lists(lists);
    tracing::info!("DENY => {ip} added to the deny list ({reason})");
    enforce_deny_list(bans, policy).await;
    bans.ban_permanently(ip, reason);
}

/// Drops idle per-source state and forgotten history once a minute.
pub(super) async fn purge_detector(policy: Arc<Policy>, clock: Clock, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                policy.detector().purge(clock.now_ms());
            }
            _ = shutdown.cancelled() => return,
        }
    }
}
