//! `sipban replay FILE...`: a recorded AMI stream through the real codec
//! and event mapping, and/or a packet capture through the SIP sensor, then
//! the policy and ban store with the dry-run firewall. Shows what the
//! daemon would ban, and why, without an Asterisk. Given both (a capture
//! and the AMI stream recorded with it), their events go to the policy in
//! time order, as they would live: the same attempt reported by both
//! counts once ([`crate::policy::correlate`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::Path;

use crate::ami::codec::{AmiFrame, CodecError, decode_all};
use crate::ami::security;
use crate::bans::{BanManager, Upsert};
use crate::clock::Clock;
use crate::event::SecurityEvent;
use crate::firewall::{DryRun, Firewall, FirewallError};
use crate::policy::{Policy, Verdict};
use crate::sensor::pcap_file::{CaptureError, CaptureReader};
use crate::sensor::pipeline::{Pipeline, PipelineStats};
use crate::sensor::signals::{Direction, SignalConfig};

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub messages: usize,
    pub security_events: usize,
    /// The capture's figures, when one was replayed.
    pub sensor: Option<PipelineStats>,
    pub sensor_events: usize,
    /// Sensor failures left out: the AMI had reported the source.
    pub duplicates: u64,
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
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

/// A packet capture and what the sensor looks for in it.
pub struct CaptureInput<'a> {
    pub path: &'a Path,
    pub signals: SignalConfig,
    pub tls_ports: Vec<u16>,
}

/// `EventTV: 2026-11-21T12:53:36.458+0000` as unix milliseconds.
fn event_ms(tv: &str) -> Option<u64> {
    chrono::DateTime::parse_from_str(tv, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

/// An AMI stream alone.
pub async fn replay(
    bytes: &[u8],
    policy: &Policy,
    ban_time: Duration,
) -> Result<ReplayReport, ReplayError> {
    replay_all(Some(bytes), None, policy, ban_time).await
}

/// An AMI stream, a capture, or both together.
pub async fn replay_all(
    ami: Option<&[u8]>,
    capture: Option<CaptureInput<'_>>,
    policy: &Policy,
    ban_time: Duration,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport::default();
    let mut events = match ami {
        Some(bytes) => ami_events(bytes, &mut report)?,
        None => Vec::new(),
    };
    if let Some(c) = capture {
        let sensed = sensor_events(&c, &mut report)?;
        report.sensor_events = sensed.len();
        events.extend(sensed);
        // In time order; the AMI's first at the same millisecond (it
        // reports within a millisecond of the answer the sensor saw).
        events.sort_by_key(|(ms, _)| *ms);
    }
    judge_all(events, policy, ban_time, report).await
}

/// The security events of an AMI stream, each with its time (the one
/// before it when it has none).
fn ami_events(
    bytes: &[u8],
    report: &mut ReplayReport,
) -> Result<Vec<(u64, SecurityEvent)>, ReplayError> {
    let mut out = Vec::new();
    let mut last_ms = 0;
    let mut decoded = decode_all(bytes);
    if let Err(e) = &decoded {
        report
            .warnings
            .push(format!("capture ends mid-message: {e}"));
        // Keep what decoded before the truncation.
        decoded = Ok(crate::ami::codec::decode_all(
            bytes.get(..last_boundary(bytes)).unwrap_or_default(),
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
        if let Some(ms) = event.event_time.as_deref().and_then(event_ms) {
            last_ms = ms;
        }
        out.push((last_ms, event));
    }
    Ok(out)
}

/// The sensor's events from a capture file, the failures still pending at
/// its end settled.
fn sensor_events(
    c: &CaptureInput<'_>,
    report: &mut ReplayReport,
) -> Result<Vec<(u64, SecurityEvent)>, ReplayError> {
    let mut pipeline = Pipeline::new(c.signals.clone(), c.tls_ports.clone());
    let mut sensed = Vec::new();
    let mut last = Duration::ZERO;
    for record in CaptureReader::open(c.path)? {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.warnings.push(e.to_string());
                continue;
            }
        };
        last = last.max(record.timestamp);
        pipeline.frame(
            record.timestamp,
            record.link,
            &record.data,
            Direction::Unknown,
            &mut sensed,
        );
    }
    pipeline.tick(last.saturating_add(pipeline.settle_time()), &mut sensed);
    report.sensor = Some(pipeline.stats());
    Ok(sensed
        .into_iter()
        .map(|e| {
            let ms = e.event_time.as_deref().and_then(event_ms).unwrap_or(0);
            (ms, e)
        })
        .collect())
}

async fn judge_all(
    events: Vec<(u64, SecurityEvent)>,
    policy: &Policy,
    ban_time: Duration,
    mut report: ReplayReport,
) -> Result<ReplayReport, ReplayError> {
    let dry = DryRun::quiet();
    let log = dry.log();
    let firewall = Firewall::start(Box::new(dry)).await?;
    let clock = Clock::manual(0);
    let bans: Arc<BanManager> = BanManager::new(firewall.clone(), clock.clone(), ban_time, None);
    for (ms, event) in events {
        if ms > 0 {
            clock.set(ms / 1000);
            bans.expire_due();
        }
        match policy.judge(&event, if ms > 0 { ms } else { clock.now_ms() }) {
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
                    report.banned.push((event.source, reason, event.describe()));
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
    report.duplicates = policy.sensor_duplicates();
    report.harmless.retain(|ip, _| bans.get(*ip).is_none());
    report.firewall = log.banned();
    let _ = firewall.shutdown().await;
    Ok(report)
}

/// Whether `head` (a file's first bytes) opens a pcap or pcapng capture.
pub fn is_packet_capture(head: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    MAGICS.iter().any(|m| head.starts_with(m))
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
        if self.messages > 0 || self.sensor.is_none() {
            let _ = writeln!(
                out,
                "{} AMI messages, {} security events",
                self.messages, self.security_events
            );
        }
        if let Some(s) = &self.sensor {
            let _ = writeln!(
                out,
                "{} packets, {} SIP messages, {} sensor events ({} failures already reported by the AMI, not counted again)",
                s.frames, s.messages, self.sensor_events, self.duplicates
            );
        }
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
