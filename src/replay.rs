//! `sipban replay FILE`: a recorded AMI stream through the real codec,
//! event mapping, policy and ban store, with the dry-run firewall. Shows what
//! the daemon would ban, and why, without an Asterisk.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ami::codec::{AmiFrame, CodecError, decode_all};
use crate::ami::security;
use crate::bans::{BanManager, Upsert};
use crate::clock::Clock;
use crate::firewall::{DryRun, Firewall, FirewallError};
use crate::policy::{Policy, Verdict};

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub messages: usize,
    pub security_events: usize,
    /// In order of the first ban: ip, reason, and the event that caused it.
    pub banned: Vec<(IpAddr, String, String)>,
    /// Per protected source: why, and how many attack events it sent.
    pub spared: BTreeMap<IpAddr, (String, usize)>,
    /// Sources that sent only non-attack events (e.g. good registrations).
    pub harmless: BTreeMap<IpAddr, usize>,
    pub warnings: Vec<String>,
    /// What the dry-run firewall holds at the end.
    pub firewall: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
}

/// `EventTV: 2026-11-21T12:53:36.458+0000` as unix seconds.
fn event_time(tv: &str) -> Option<u64> {
    chrono::DateTime::parse_from_str(tv, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .and_then(|t| u64::try_from(t.timestamp()).ok())
}

pub async fn replay(
    bytes: &[u8],
    policy: &Policy,
    ban_time: Duration,
) -> Result<ReplayReport, ReplayError> {
    let dry = DryRun::quiet();
    let log = dry.log();
    let firewall = Firewall::start(Box::new(dry)).await?;
    let clock = Clock::manual(0);
    let bans: Arc<BanManager> = BanManager::new(firewall.clone(), clock.clone(), ban_time, None);
    let mut report = ReplayReport::default();
    let mut decoded = decode_all(bytes);
    if let Err(e) = &decoded {
        report
            .warnings
            .push(format!("capture ends mid-message: {e}"));
        // Keep what decoded before the truncation.
        decoded = Ok(crate::ami::codec::decode_all(
            &bytes[..last_boundary(bytes)],
        )?);
    }
    for frame in decoded? {
        let msg = match frame {
            AmiFrame::Message(m) => m,
            AmiFrame::Banner(_) => continue,
            AmiFrame::Oversized { bytes } => {
                report
                    .warnings
                    .push(format!("oversized message dropped ({bytes} bytes)"));
                continue;
            }
        };
        report.messages += 1;
        let event = match security::from_message(&msg) {
            Ok(Some(ev)) => ev,
            Ok(None) => continue,
            Err(e) => {
                report
                    .warnings
                    .push(format!("message #{}: {e}", report.messages));
                continue;
            }
        };
        report.security_events += 1;
        if let Some(t) = event.event_time.as_deref().and_then(event_time) {
            clock.set(t);
            bans.expire_due();
        }
        match policy.judge(&event, clock.now_ms()) {
            Verdict::Ban {
                reason,
                ban_for,
                permanent,
            } => {
                let reason = if permanent {
                    format!("{reason}{}", crate::bans::PERMANENT)
                } else {
                    reason
                };
                if bans.ban_for(event.source, &reason, ban_for) == Upsert::New {
                    let why = format!(
                        "{} {} account {:?} via {}{}",
                        event.service,
                        event.kind,
                        event.account,
                        event.transport.as_deref().unwrap_or("?"),
                        event
                            .event_time
                            .as_deref()
                            .map(|t| format!(" at {t}"))
                            .unwrap_or_default()
                    );
                    report.banned.push((event.source, reason, why));
                }
            }
            Verdict::Spared(p) => {
                report
                    .spared
                    .entry(event.source)
                    .or_insert((p.to_string(), 0))
                    .1 += 1;
            }
            Verdict::Ignore => {
                if bans.get(event.source).is_none() && !report.spared.contains_key(&event.source) {
                    *report.harmless.entry(event.source).or_default() += 1;
                }
            }
        }
    }
    firewall.sync().await;
    report.harmless.retain(|ip, _| bans.get(*ip).is_none());
    report.firewall = log.banned();
    let _ = firewall.shutdown().await;
    Ok(report)
}

/// End of the last complete message, so a truncated capture still replays.
fn last_boundary(bytes: &[u8]) -> usize {
    let s = String::from_utf8_lossy(bytes);
    let crlf = s.rfind("\r\n\r\n").map(|i| i + 4);
    let lf = s.rfind("\n\n").map(|i| i + 2);
    crlf.max(lf).unwrap_or(0).min(bytes.len())
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} AMI messages, {} security events",
            self.messages, self.security_events
        );
        for (ip, reason, why) in &self.banned {
            let _ = writeln!(out, "BLOCK => {ip} ({reason})  <- {why}");
        }
        for (ip, (why, n)) in &self.spared {
            let _ = writeln!(out, "SPARED => {ip} ({why}; {n} attack events)");
        }
        for (ip, n) in &self.harmless {
            let _ = writeln!(out, "NOT BANNED => {ip} ({n} events, none an attack)");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "WARNING: {w}");
        }
        let _ = writeln!(
            out,
            "{} addresses would be banned (dry run: firewall untouched)",
            self.firewall.len()
        );
        f.write_str(&out)
    }
}
