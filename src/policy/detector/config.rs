//! The detector's settings and their validation, and the escalation
//! formula (ban length by ban number).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::event::EventKind;

use super::account::normalize_account;

/// Longest accepted duration (the config file's own limit): keeps every
/// `now + duration` far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86400);
/// sipPROT's Block Threshold range is 1-20.
pub const BLOCK_THRESHOLD_RANGE: std::ops::RangeInclusive<u32> = 1..=20;
/// Upper bounds that keep per-source memory small.
pub const MAX_FAILURES_LIMIT: u32 = 1000;
pub const FLOOD_COUNT_LIMIT: u32 = 1000;
pub const MAX_ACCOUNTS_LIMIT: u32 = 1000;
/// Sources are numbered with u32 in the detector's table.
pub const MAX_SOURCES_LIMIT: usize = 100_000_000;
/// Longest sliding window (`find_time`, the flood interval, the
/// enumeration window): window times are held as u32 milliseconds, and a
/// month is already far beyond any attacker's patience.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86400);

/// ChallengeSent flood: more than `count` within a sliding `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodRule {
    pub count: u32,
    pub interval: Duration,
}

/// Extension scanning: more than `max_accounts` distinct AccountIDs in
/// counted events within a sliding `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnumRule {
    pub max_accounts: u32,
    pub window: Duration,
}

/// Settings of the detector. [`Default`] is the original SIPban; see
/// [`DetectorConfig::recommended`] for the values the shipped config
/// suggests.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Counted events within `find_time` that ban (1 = the first bans).
    pub max_failures: u32,
    /// Sliding window for `max_failures`.
    pub find_time: Duration,
    /// Which events are failures. ChallengeSent and SuccessfulAuth cannot be
    /// (they accompany every good login).
    pub counted_events: BTreeSet<EventKind>,
    /// Services watched (`SIP`, `PJSIP`, `IAX2`, `AMI`, ...), compared without
    /// case; `None` watches all.
    pub services: Option<BTreeSet<String>>,
    pub flood: Option<FloodRule>,
    pub enumeration: Option<EnumRule>,
    /// AccountIDs that ban at once (see the module documentation for which
    /// events).
    pub test_accounts: Vec<String>,
    /// Length of a first ban.
    pub ban_time: Duration,
    /// Each re-ban multiplies the ban time by this (at least 1).
    pub ban_time_factor: f64,
    /// Cap of an escalated ban; `None` = no cap but [`MAX_DURATION`].
    pub max_ban_time: Option<Duration>,
    /// Dynamic bans before the next one is permanent (1-20); `None` = never.
    pub block_threshold: Option<u32>,
    /// A source's history is forgotten this long after its last ban ended.
    pub forget_after: Duration,
    /// Most sources tracked at once. Beyond it, a source that can no longer
    /// reach a threshold is evicted first (see the module documentation).
    pub max_sources: usize,
    /// Most history entries kept (oldest by last ban dropped beyond).
    pub max_history: usize,
    /// How long an idle source's details stay available to
    /// [`Detector::source_info`](super::Detector::source_info) (the console's `check` and `report`).
    pub source_retention: Duration,
}

impl DetectorConfig {
    /// The three events the original bans on.
    pub fn original_counted_events() -> BTreeSet<EventKind> {
        BTreeSet::from([
            EventKind::InvalidAccountId,
            EventKind::InvalidPassword,
            EventKind::ChallengeResponseFailed,
        ])
    }

    /// What counts by default: the original's three, and `RateLimit` (a
    /// source the kernel found over `[limits] sip_rate` for
    /// `sip_ban_after`; only reported when the limit is on, and it bans at
    /// once whatever `max_failures`: the persistence is already measured).
    pub fn default_counted_events() -> BTreeSet<EventKind> {
        let mut events = Self::original_counted_events();
        events.extend(Self::sensor_counted_events());
        events.insert(EventKind::RateLimit);
        events
    }

    /// The sensor's events that count (only reported with `[sip] enabled`):
    /// its failures go through `max_failures` as Asterisk's do, a scanner
    /// and a request flood ban at once. `SipRequest` is not among them: it
    /// is looked at for the test accounts only.
    pub fn sensor_counted_events() -> [EventKind; 3] {
        [
            EventKind::SipFailure,
            EventKind::Scanner,
            EventKind::RequestFlood,
        ]
    }

    /// The values the shipped config recommends (the tests replay the
    /// cadences behind them):
    /// - 10 failures in 60 s: fail2ban's 5 a minute counted log lines, one per
    ///   attempt; AMI reports an unknown user's attempt as up to 3 events, so
    ///   10 spares a deleted extension still retrying every 20-30 s while
    ///   svcrack (about 150 guesses a second) is stopped within 0.1 s.
    /// - ChallengeSent flood 30 in 10 s (the original SIPban's count, now in a
    ///   sliding window): one phone makes 1 a minute plus 3 at boot; twenty
    ///   behind one NAT address registering every 120 s make at most about 20
    ///   in 10 s even when their registrations line up. The newer SIPban's 5
    ///   bans such an office.
    /// - Enumeration 10 accounts in 10 min: svwar tries hundreds; an office
    ///   has at most a few stale accounts; 10 min catches a slow scan that
    ///   stays under the failure threshold.
    /// - Ban 1 h doubling up to 1 week, permanent after 5 dynamic bans (1 h,
    ///   2 h, 4 h, 8 h, 16 h), history forgotten after 30 days: a false
    ///   positive costs an office one hour, not the original's day; a
    ///   returning attacker ends on the deny list.
    pub fn recommended() -> Self {
        DetectorConfig {
            max_failures: 10,
            find_time: Duration::from_secs(60),
            flood: Some(FloodRule {
                count: 30,
                interval: Duration::from_secs(10),
            }),
            enumeration: Some(EnumRule {
                max_accounts: 10,
                window: Duration::from_secs(600),
            }),
            ban_time: Duration::from_secs(3600),
            ban_time_factor: 2.0,
            max_ban_time: Some(Duration::from_secs(7 * 86400)),
            block_threshold: Some(5),
            forget_after: Duration::from_secs(30 * 86400),
            ..DetectorConfig::default()
        }
    }

    /// Checks every range; the first problem found is returned.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let bad = |key, message: String| Err(InvalidSetting { key, message });
        if !(1..=MAX_FAILURES_LIMIT).contains(&self.max_failures) {
            return bad(
                "max_failures",
                format!("{} is outside 1..={MAX_FAILURES_LIMIT}", self.max_failures),
            );
        }
        sliding("find_time", self.find_time)?;
        for kind in [
            EventKind::ChallengeSent,
            EventKind::SuccessfulAuth,
            EventKind::SipRequest,
        ] {
            if self.counted_events.contains(&kind) {
                return bad(
                    "counted_events",
                    format!(
                        "{kind} cannot count as a failure: it accompanies every good login \
                         (use the flood rule for ChallengeSent)"
                    ),
                );
            }
        }
        if let Some(services) = &self.services {
            if services.is_empty() {
                return bad(
                    "services",
                    "empty: nothing would be watched (leave it unset to watch all)".into(),
                );
            }
            if let Some(s) = services
                .iter()
                .find(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
            {
                return bad("services", format!("{s:?} is not a service name"));
            }
        }
        if let Some(f) = &self.flood {
            if !(1..=FLOOD_COUNT_LIMIT).contains(&f.count) {
                return bad(
                    "flood.count",
                    format!("{} is outside 1..={FLOOD_COUNT_LIMIT}", f.count),
                );
            }
            sliding("flood.interval", f.interval)?;
        }
        if let Some(e) = &self.enumeration {
            if !(1..=MAX_ACCOUNTS_LIMIT).contains(&e.max_accounts) {
                return bad(
                    "enumeration.max_accounts",
                    format!("{} is outside 1..={MAX_ACCOUNTS_LIMIT}", e.max_accounts),
                );
            }
            sliding("enumeration.window", e.window)?;
        }
        if let Some(a) = self
            .test_accounts
            .iter()
            .find(|a| normalize_account(a).is_none())
        {
            return bad("test_accounts", format!("{a:?} is not an account"));
        }
        window("ban_time", self.ban_time)?;
        if !self.ban_time_factor.is_finite() || !(1.0..=100.0).contains(&self.ban_time_factor) {
            return bad(
                "ban_time_factor",
                format!("{} is outside 1.0..=100.0", self.ban_time_factor),
            );
        }
        if let Some(max) = self.max_ban_time {
            window("max_ban_time", max)?;
            if max < self.ban_time {
                return bad(
                    "max_ban_time",
                    format!(
                        "{} is shorter than ban_time ({})",
                        human(max),
                        human(self.ban_time)
                    ),
                );
            }
        }
        if let Some(t) = self.block_threshold
            && !BLOCK_THRESHOLD_RANGE.contains(&t)
        {
            return bad(
                "block_threshold",
                format!(
                    "{t} is outside {}..={}",
                    BLOCK_THRESHOLD_RANGE.start(),
                    BLOCK_THRESHOLD_RANGE.end()
                ),
            );
        }
        window("forget_after", self.forget_after)?;
        if self.max_sources == 0 {
            return bad("max_sources", "must be at least 1".into());
        }
        if self.max_sources > MAX_SOURCES_LIMIT {
            return bad(
                "max_sources",
                format!("{} is more than {MAX_SOURCES_LIMIT}", self.max_sources),
            );
        }
        if self.max_history == 0 {
            return bad("max_history", "must be at least 1".into());
        }
        if self.source_retention > MAX_DURATION {
            return bad("source_retention", "longer than 100 years".into());
        }
        Ok(())
    }

    /// Length of the `n`-th ban (n >= 1): `ban_time * factor^(n-1)`, capped
    /// by `max_ban_time`, whole seconds.
    pub fn ban_time_for(&self, n: u32) -> Duration {
        let cap = self.max_ban_time.unwrap_or(MAX_DURATION).min(MAX_DURATION);
        let exp = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.ban_time.as_secs_f64() * self.ban_time_factor.powi(exp);
        if !secs.is_finite() || secs >= cap.as_secs_f64() {
            return cap;
        }
        Duration::from_secs(secs.round() as u64).clamp(self.ban_time.min(cap), cap)
    }

    /// Accounts kept per source: only the enumeration rule needs them, and
    /// it needs one more than it allows.
    pub(super) fn accounts_cap(&self) -> usize {
        self.enumeration.map_or(0, |e| e.max_accounts as usize + 1)
    }

    /// Failure times a source keeps for the threshold: the previous
    /// `max_failures - 1` (the current one completes the count).
    pub(super) fn ring_len(&self) -> usize {
        self.max_failures.saturating_sub(1) as usize
    }

    /// The longest window in use, in ms (0: no rule keeps per-source
    /// state). A source whose last counting event is older can no longer
    /// reach any threshold.
    pub(super) fn longest_window_ms(&self) -> u32 {
        let mut d = Duration::ZERO;
        if self.max_failures > 1 {
            d = d.max(self.find_time);
        }
        if let Some(f) = &self.flood {
            d = d.max(f.interval);
        }
        if let Some(e) = &self.enumeration {
            d = d.max(e.window);
        }
        window_ms(d)
    }

    /// How long a source must be idle before [`super::Detector::purge`]
    /// drops its details.
    pub(super) fn idle_after(&self) -> Duration {
        let mut d = self.source_retention.max(self.find_time);
        if let Some(f) = &self.flood {
            d = d.max(f.interval);
        }
        if let Some(e) = &self.enumeration {
            d = d.max(e.window);
        }
        d
    }
}

impl Default for DetectorConfig {
    /// The original SIPban: the first InvalidAccountID / InvalidPassword /
    /// ChallengeResponseFailed of any service bans for a day, every time.
    fn default() -> Self {
        DetectorConfig {
            max_failures: 1,
            find_time: Duration::from_secs(60),
            counted_events: Self::default_counted_events(),
            services: None,
            flood: None,
            enumeration: None,
            test_accounts: vec!["100".into(), "1000".into()],
            ban_time: Duration::from_secs(86400),
            ban_time_factor: 1.0,
            max_ban_time: None,
            block_threshold: None,
            forget_after: Duration::from_secs(30 * 86400),
            max_sources: 1_000_000,
            max_history: 100_000,
            source_retention: Duration::from_secs(86400),
        }
    }
}

/// A window length in ms; validation keeps it within [`MAX_WINDOW`].
pub(super) fn window_ms(d: Duration) -> u32 {
    u32::try_from(d.min(MAX_WINDOW).as_millis()).unwrap_or(u32::MAX)
}

/// A sliding window: at least a second, at most [`MAX_WINDOW`].
fn sliding(key: &'static str, d: Duration) -> Result<(), InvalidSetting> {
    window(key, d)?;
    if d > MAX_WINDOW {
        return Err(InvalidSetting {
            key,
            message: format!(
                "{} is longer than the longest sliding window ({})",
                human(d),
                human(MAX_WINDOW)
            ),
        });
    }
    Ok(())
}

fn window(key: &'static str, d: Duration) -> Result<(), InvalidSetting> {
    if d < Duration::from_secs(1) {
        Err(InvalidSetting {
            key,
            message: format!("{} is shorter than one second", human(d)),
        })
    } else if d > MAX_DURATION {
        Err(InvalidSetting {
            key,
            message: "longer than 100 years".into(),
        })
    } else {
        Ok(())
    }
}

/// A setting out of range: `key` is its name in `[policy]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub message: String,
}

/// `60s`, `90s`, `10m`, `1h`, `1d`, `1500ms`: the config file's own units.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 120 || !s.is_multiple_of(60) {
        format!("{s}s")
    } else if s.is_multiple_of(86400) {
        format!("{}d", s / 86400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(10)), "10s");
        assert_eq!(human(Duration::from_secs(60)), "60s");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(86400)), "1d");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn sliding_windows_fit_in_u32_milliseconds() {
        let month = DetectorConfig {
            max_failures: 3,
            find_time: MAX_WINDOW,
            ..DetectorConfig::default()
        };
        assert_eq!(month.validate(), Ok(()));
        // The epoch moves at most every (u32::MAX - window) ms: weeks.
        let between_moves = u64::from(u32::MAX) - u64::from(month.longest_window_ms());
        assert!(between_moves > 7 * 86_400_000);
        let longer = DetectorConfig {
            find_time: MAX_WINDOW + Duration::from_secs(1),
            ..month
        };
        let e = longer.validate().err().unwrap_or(InvalidSetting {
            key: "",
            message: String::new(),
        });
        assert_eq!(e.key, "find_time");
        assert_eq!(
            e.to_string(),
            "find_time: 2592001s is longer than the longest sliding window (30d)"
        );
        // Windows of rules that are off do not count.
        assert_eq!(DetectorConfig::default().longest_window_ms(), 0);
        assert_eq!(DetectorConfig::recommended().longest_window_ms(), 600_000);
    }
}
