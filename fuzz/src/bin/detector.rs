//! An arbitrary run of security events through the detector with every
//! rule on (failure threshold, ChallengeSent flood, enumeration, test
//! accounts, escalation to permanent) and caps small enough that eviction
//! and history trimming run all the time; purges, and the history
//! persisted (JSON) and loaded back, in between. The clock steps forwards
//! and sometimes back.
//!
//! Only the detector's public API is used (`new`, `observe`, `purge`,
//! `history`, `load_history`, `source_info`, `normalize_account`).
//!
//! Checked: no panic; every decision and source stays within the
//! documented caps; `normalize_account` returns a trimmed part of its
//! input; the history survives JSON and a reload.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use sipban::event::{EventKind, Origin, SecurityEvent};
use sipban::policy::detector::{
    Detector, DetectorConfig, EnumRule, FloodRule, History, normalize_account,
};

const KINDS: [EventKind; 14] = [
    EventKind::InvalidAccountId,
    EventKind::InvalidPassword,
    EventKind::ChallengeResponseFailed,
    EventKind::ChallengeSent,
    EventKind::SuccessfulAuth,
    EventKind::FailedAcl,
    EventKind::RequestBadFormat,
    EventKind::RequestNotAllowed,
    EventKind::UnexpectedAddress,
    EventKind::RateLimit,
    EventKind::Scanner,
    EventKind::SipFailure,
    EventKind::SipRequest,
    EventKind::RequestFlood,
];

const SERVICES: [&str; 5] = ["PJSIP", "SIP", " sip ", "IAX2", "AMI"];

/// Small values in range for every rule; the fuzzer picks within them.
fn config(u: &mut Unstructured<'_>) -> Result<DetectorConfig> {
    let secs = |u: &mut Unstructured<'_>, lo: u64, hi: u64| -> Result<Duration> {
        Ok(Duration::from_secs(u.int_in_range(lo..=hi)?))
    };
    let ban_time = secs(u, 1, 120)?;
    Ok(DetectorConfig {
        max_failures: u.int_in_range(1..=5)?,
        find_time: secs(u, 1, 120)?,
        counted_events: DetectorConfig::original_counted_events()
            .into_iter()
            .chain(u.arbitrary::<bool>()?.then_some(EventKind::FailedAcl))
            .collect(),
        services: if u.arbitrary()? {
            None
        } else {
            Some(BTreeSet::from(["PJSIP".to_string(), "sip".to_string()]))
        },
        flood: Some(FloodRule {
            count: u.int_in_range(1..=5)?,
            interval: secs(u, 1, 60)?,
        }),
        enumeration: Some(EnumRule {
            max_accounts: u.int_in_range(1..=12)?,
            window: secs(u, 1, 600)?,
        }),
        test_accounts: vec!["100".into(), "1000".into(), "sip:2000@pbx".into()],
        ban_time,
        ban_time_factor: f64::from(u.int_in_range(10..=40u8)?) / 10.0,
        max_ban_time: Some(ban_time * u.int_in_range(1..=50)?),
        block_threshold: Some(u.int_in_range(1..=3)?),
        forget_after: secs(u, 1, 7200)?,
        max_sources: u.int_in_range(1..=8)?,
        max_history: u.int_in_range(1..=6)?,
        source_retention: secs(u, 0, 600)?,
    })
}

/// Mostly a few colliding addresses; sometimes any (IPv4-mapped IPv6
/// included, which the detector folds into IPv4).
fn address(u: &mut Unstructured<'_>) -> Result<IpAddr> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        1 => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        2 => IpAddr::V6(Ipv4Addr::new(203, 0, 113, u.int_in_range(0..=3)?).to_ipv6_mapped()),
        3 => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            u.int_in_range(0..=3)?,
        )),
        _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, u.int_in_range(0..=3)?)),
    })
}

/// Account text as the AMI path makes it: any bytes, lossily UTF-8.
fn account(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 => "100".into(),
        1 => "<unknown>".into(),
        2 => format!("sip:{}@pbx", u.int_in_range(0..=20u16)?),
        3 => u.int_in_range(0..=30u16)?.to_string(),
        _ => {
            let len = u.int_in_range(0..=24usize)?;
            String::from_utf8_lossy(u.bytes(len)?).into_owned()
        }
    })
}

fn event(u: &mut Unstructured<'_>) -> Result<SecurityEvent> {
    let kind = match u.int_in_range(0..=KINDS.len())? {
        i if i < KINDS.len() => KINDS[i].clone(),
        _ => EventKind::Other(account(u)?),
    };
    let service = match u.int_in_range(0..=SERVICES.len())? {
        i if i < SERVICES.len() => SERVICES[i].to_string(),
        _ => account(u)?,
    };
    Ok(SecurityEvent {
        kind,
        service,
        account: account(u)?,
        source: address(u)?,
        port: u.arbitrary()?,
        transport: None,
        event_time: None,
        origin: match u.int_in_range(0..=2u8)? {
            0 => Origin::Ami,
            1 => Origin::Sensor,
            _ => Origin::Kernel,
        },
        sip: None,
    })
}

/// Checks that `normalize_account` returns a trimmed, non-empty part of
/// its input that is not `<unknown>`.
fn check_account(raw: &str) {
    if let Some(a) = normalize_account(raw) {
        assert!(!a.is_empty() && a.trim() == a, "{raw:?} -> {a:?}");
        assert!(raw.contains(a), "{raw:?} -> {a:?}");
        assert!(!a.eq_ignore_ascii_case("<unknown>"));
    }
}

/// The history as the daemon persists it: JSON next to the bans.
fn through_json(history: &History) -> History {
    let text = serde_json::to_string(history).expect("history serializes");
    serde_json::from_str(&text).expect("history deserializes")
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let config = config(u)?;
    let max_history = config.max_history;
    let accounts_cap = config
        .enumeration
        .map_or(0, |e| e.max_accounts as usize + 1)
        .max(10);
    let max_ban = config.max_ban_time.unwrap_or(Duration::MAX);
    let mut detector = Detector::new(config.clone()).expect("the fuzz config is valid");
    let mut now: u64 = 1_764_600_000_000;
    while !u.is_empty() {
        match u.int_in_range(0..=15u8)? {
            0 => {
                detector.purge(now);
            }
            1 => {
                // Persist, restart, load: the same history comes back,
                // less what was already forgotten.
                let saved = detector.history();
                assert!(saved.entries.len() <= max_history);
                let loaded = through_json(&saved);
                assert_eq!(loaded, saved);
                let mut fresh = Detector::new(config.clone()).expect("valid");
                let taken = fresh.load_history(loaded, now);
                let back = fresh.history();
                assert_eq!(back.entries.len(), taken);
                assert!(back.entries.iter().all(|e| saved.entries.contains(e)));
                // Loading the same history again takes nothing new.
                assert_eq!(fresh.load_history(saved, now), 0);
                if u.arbitrary()? {
                    detector = fresh;
                }
            }
            2 => {
                // A big step, or one back in time.
                let step: i64 = u.int_in_range(-90_000_000..=90_000_000)?;
                now = now.saturating_add_signed(step);
            }
            _ => {
                let ev = event(u)?;
                check_account(&ev.account);
                now = now.saturating_add(u.int_in_range(0..=3000)?);
                if let Some(d) = detector.observe(&ev, now) {
                    assert!(d.ban_number >= 1);
                    assert!(d.ban_for <= max_ban, "{:?} over {max_ban:?}", d.ban_for);
                    assert!(d.accounts.len() <= accounts_cap);
                    assert_eq!(d.ip, d.ip.to_canonical());
                }
                if let Some(info) = detector.source_info(ev.source) {
                    assert!(info.failures <= info.events);
                    assert!(info.first_seen_ms <= info.last_seen_ms);
                    assert!(info.accounts_tried.len() <= accounts_cap);
                }
            }
        }
    }
    assert!(detector.history().entries.len() <= max_history);
    Ok(())
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = run(&mut Unstructured::new(data));
    });
}
