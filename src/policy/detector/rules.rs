//! The rules: whether one more event from a source completes a ban, and
//! the reason given for it (the most specific rule first, see the module
//! documentation).

use crate::event::{EventKind, SecurityEvent};

use super::account;
use super::config::{DetectorConfig, human, window_ms};
use super::table::Family;
use super::window::{self, Tick};

/// A ban that needs no per-source state: the original rule
/// (`max_failures = 1`: every counted failure bans), a test account, or an
/// event that is a verdict already: `RateLimit` (the kernel measured the
/// persistence), `Scanner` and `RequestFlood` (the sensor did). A
/// `SipRequest` is no failure: only its test account can ban.
pub(super) fn at_once(
    config: &DetectorConfig,
    event: &SecurityEvent,
    test_account: Option<&str>,
) -> Option<String> {
    let kind = &event.kind;
    let verdict = matches!(
        kind,
        EventKind::RateLimit | EventKind::Scanner | EventKind::RequestFlood
    );
    if verdict || (config.max_failures == 1 && *kind != EventKind::SipRequest) {
        Some(event.reason())
    } else {
        test_account.map(|a| format!("test account {a}"))
    }
}

/// A counted event (its account already noted): enumeration, then the
/// failure threshold.
pub(super) fn failure(
    config: &DetectorConfig,
    fam: &mut Family,
    slot: u32,
    kind: &EventKind,
    now: Tick,
) -> Option<String> {
    let reached = window::threshold_reached(fam.ring_mut(slot), now, window_ms(config.find_time));
    let enumerated = config.enumeration.and_then(|e| {
        let n = fam
            .accounts(slot)
            .map_or(0, |set| account::within(set, now, window_ms(e.window)));
        (n > e.max_accounts as usize).then_some((n, e.window))
    });
    if let Some((n, w)) = enumerated {
        Some(format!("enumeration: {n} accounts in {}", human(w)))
    } else if reached {
        Some(format!(
            "{} failures in {}, last {}",
            config.max_failures,
            human(config.find_time),
            kind.reason()
        ))
    } else {
        None
    }
}

/// A ChallengeSent: the flood rule, if on.
pub(super) fn challenge(
    config: &DetectorConfig,
    fam: &mut Family,
    slot: u32,
    now: Tick,
) -> Option<String> {
    let f = config.flood?;
    let times = fam.challenges_mut(slot);
    window::flood_reached(times, now, f.count as usize, window_ms(f.interval)).then(|| {
        format!(
            "ChallengeSent flood: {} in {}",
            f.count.saturating_add(1),
            human(f.interval)
        )
    })
}

/// Events that may name a test account (see the module documentation).
pub(super) fn names_tried_account(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InvalidAccountId
            | EventKind::InvalidPassword
            | EventKind::ChallengeResponseFailed
            | EventKind::SipFailure
            | EventKind::SipRequest
    )
}
