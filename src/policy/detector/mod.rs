//! Detection policy: when a stream of security events from one source adds
//! up to a ban, and for how long. Pure logic: no I/O, no clock reads. Every
//! call takes `now_ms`, wall-clock milliseconds since the Unix epoch (wall
//! clock rather than a monotonic one because the [`History`] is persisted and
//! must mean the same after a restart). `now_ms` should not go backwards; a
//! step back is tolerated (ages saturate at zero, i.e. "just now").
//!
//! The never-ban checks (loopback, the AMI host, the allow list) are not
//! made here: the caller asks [`super::Policy::protection`] first and only
//! feeds events from addresses that may be banned, so that every
//! [`Decision`] returned is a ban that really happens (it is recorded in the
//! history at once).
//!
//! Everything an event carries is the attacker's text: nothing here slices
//! a string by byte position or indexes a slice (the lints below make that
//! a build error), and what is kept from an event is bounded (an account
//! name to [`MAX_ACCOUNT_BYTES`], services are compared in place).
//!
//! # Rules
//! Events whose `Service` is not watched ([`DetectorConfig::services`]) are
//! ignored entirely. For the others, per source address:
//!
//! 1. **Failures** ([`DetectorConfig::counted_events`]): `max_failures` counted
//!    events within a sliding `find_time` ban. The default, 1, is the original
//!    SIPban: the first InvalidAccountID / InvalidPassword /
//!    ChallengeResponseFailed bans, with the original's reason text
//!    (`Invalid Password`, ...). Note that PJSIP reports one attempt with an
//!    unknown user as up to three counted events (InvalidAccountID for the
//!    REGISTER and again for the answer, plus ChallengeResponseFailed with
//!    AccountID `<unknown>`), a wrong password as one.
//! 2. **Test accounts** ([`DetectorConfig::test_accounts`], default `100`,
//!    `1000`): an InvalidAccountID, InvalidPassword or ChallengeResponseFailed
//!    (if counted) naming one bans at once. Not ChallengeSent (a real phone
//!    on such an extension gets one at every registration), nor other kinds
//!    such as FailedACL (a misplaced real phone, not a scanner). InvalidPassword
//!    is included because chan_sip (`alwaysauthreject=yes`) reports unknown
//!    users that way. Safety valve: a test account seen in a SuccessfulAuth
//!    is a real extension of this PBX, so from then on its failures go through
//!    the normal threshold (a stale phone on extension 100 does not bypass
//!    `max_failures`). An operator whose PBX has such extensions should still
//!    remove them from the list, since that knowledge starts empty at start.
//! 3. **Enumeration** ([`DetectorConfig::enumeration`]): more than
//!    `max_accounts` distinct AccountIDs named in counted events within a
//!    sliding `window` ban at once (svwar). Only failures count: ChallengeSent
//!    and SuccessfulAuth name the accounts of every good phone, and an office
//!    behind one NAT address has many. Empty and `<unknown>` AccountIDs are
//!    no account.
//! 4. **ChallengeSent flood** ([`DetectorConfig::flood`]): more than `count`
//!    ChallengeSent within a sliding `interval` bans (the newer SIPban's rule,
//!    whose window was fixed and restarted, so a burst split across two
//!    windows escaped).
//!
//! When one event satisfies several rules, the reason names the most specific
//! one: the original rule (`max_failures = 1`) keeps the original's wording,
//! then test account, enumeration, failure count.
//!
//! A ban ends a source's counting state: what matters from then on is in
//! the history and the ban store. Further events from it (in flight before
//! the firewall rule took effect) neither decide nor count towards the next
//! ban, until the ban ends (its computed expiry, or [`Detector::unbanned`]).
//! Escalation therefore counts bans, not packets.
//!
//! # Escalation
//! The n-th ban of a source lasts `ban_time * ban_time_factor^(n-1)`, capped
//! by `max_ban_time` ([`DetectorConfig::ban_time_for`]). With
//! `block_threshold = N` (1-20, sipPROT's Block Threshold: "how many times an
//! IP will be dynamically blocked before it is permanently blocked"), bans 1
//! to N are dynamic and ban N+1 is `permanent` (the caller moves the source
//! to the deny list). A source's history is forgotten `forget_after` after
//! its last ban ended (a permanent one: after it was issued; the deny list,
//! not the history, keeps it blocked), so its next ban is number 1 again.
//!
//! # Memory bound
//! - Sources tracked (not banned): at most `max_sources` (default 1 000 000).
//!   Per source 28 bytes, its address in a map (about 20 bytes for IPv4,
//!   40 for IPv6) and `4 * (max_failures - 1)` bytes of failure times: about
//!   60 bytes with `max_failures = 3` (`benches/policy.rs` measures it).
//!   Only where a rule needs it: with the flood rule, the ChallengeSent
//!   times still inside its interval (at most `flood.count`); with the
//!   enumeration rule, 8 bytes per account named (at most
//!   `max_accounts + 1`), each distinct name (at most [`MAX_ACCOUNT_BYTES`])
//!   stored once for all sources. A scanner under the recommended rules
//!   holds about 240 bytes.
//! - Beyond `max_sources`, a source that can no longer reach a threshold is
//!   evicted first, and a warning (at most once a minute) gives the figures
//!   (`POLICY => detector full (1000000 sources): 1200 idle and 35 live
//!   sources evicted in the last minute`); see `sources.rs`.
//!   [`Detector::purge`] drops sources idle for `source_retention` (or the
//!   longest window, if longer).
//! - History: at most `max_history` entries (16 bytes each plus the map's
//!   key); beyond that the oldest tenth by last ban is dropped in one pass
//!   (amortized O(1)). A source dropped that way starts again at ban
//!   number 1.
//!
//! # Recommended settings
//! See [`DetectorConfig::recommended`]: 10 failures in 60 s, ChallengeSent
//! flood 30 in 10 s, enumeration 10 accounts in 10 min, test accounts 100 and
//! 1000, ban 1 h doubling per re-ban up to 1 week, permanent after 5 dynamic
//! bans, history forgotten after 30 days.

#![deny(
    clippy::string_slice,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod account;
mod config;
mod history;
mod rules;
mod sources;
mod table;
mod window;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use crate::event::{EventKind, Origin, SecurityEvent};

pub use account::{MAX_ACCOUNT_BYTES, normalize_account};
pub use config::{
    BLOCK_THRESHOLD_RANGE, DetectorConfig, EnumRule, FLOOD_COUNT_LIMIT, FloodRule, InvalidSetting,
    MAX_ACCOUNTS_LIMIT, MAX_DURATION, MAX_FAILURES_LIMIT, MAX_SOURCES_LIMIT, MAX_WINDOW, human,
};
pub use history::{History, HistoryEntry};
pub use sources::Evictions;

use history::{BanRecord, HistoryTable, secs};
use sources::{At, Room, Sources};
use window::Epoch;

/// A ban the detector decided. It is already counted in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub ip: IpAddr,
    /// Why, for `BLOCK => ip (reason)`: `Invalid Password` (original rule),
    /// `10 failures in 60s, last Invalid Password`, `ChallengeSent flood: 31
    /// in 10s`, `enumeration: 11 accounts in 10m`, `test account 100`.
    pub reason: String,
    /// Escalated length (also set, for information, when `permanent`).
    pub ban_for: Duration,
    /// The source passed `block_threshold`: deny it permanently.
    pub permanent: bool,
    /// 1 for a first ban, 2 for the next, ...
    pub ban_number: u32,
    /// With the enumeration rule: the accounts the source named in counted
    /// events, least recent first (at most `max_accounts + 1`). Empty
    /// without it (no rule needs them, so they are not kept).
    pub accounts: Vec<String>,
}

/// What the detector knows about a source it is counting (not one that is
/// banned), for `check IP` and `report`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceInfo {
    /// To the second.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// Every watched event, of any kind.
    pub events: u64,
    /// Counted events (failures) among them.
    pub failures: u64,
    /// As in [`Decision::accounts`].
    pub accounts_tried: Vec<String>,
}

/// What [`Detector::purge`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub sources: usize,
    pub history: usize,
}

/// Per-source state, the rules and the ban history.
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    /// Trimmed `config.services` (a handful: a scan beats hashing an
    /// upper-cased copy of every event's service).
    services: Option<Vec<String>>,
    /// Normalized `config.test_accounts`.
    test_accounts: HashSet<String>,
    /// Test accounts seen in a SuccessfulAuth: real extensions here (a
    /// subset of `test_accounts`, so bounded by the config).
    proven_accounts: HashSet<String>,
    epoch: Epoch,
    sources: Sources,
    history: HistoryTable,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Result<Self, InvalidSetting> {
        let mut d = Self::original(config.ban_time);
        d.reconfigure(config)?;
        Ok(d)
    }

    /// The original SIPban's rules ([`DetectorConfig::default`]) with the
    /// configured ban time (validated by the config: at least 1 s).
    pub fn original(ban_time: Duration) -> Self {
        let config = DetectorConfig {
            ban_time: ban_time.clamp(Duration::from_secs(1), MAX_DURATION),
            ..DetectorConfig::default()
        };
        Detector {
            services: None,
            test_accounts: config.test_accounts.iter().cloned().collect(),
            proven_accounts: HashSet::new(),
            epoch: Epoch::default(),
            sources: Sources::new(config.ring_len()),
            history: HistoryTable::default(),
            config,
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Applies new settings (reload), keeping state and history; per-source
    /// state is trimmed to the new limits. On error nothing changes.
    pub fn reconfigure(&mut self, config: DetectorConfig) -> Result<(), InvalidSetting> {
        config.validate()?;
        self.services = config
            .services
            .as_ref()
            .map(|s| s.iter().map(|s| s.trim().to_string()).collect());
        self.test_accounts = config
            .test_accounts
            .iter()
            .filter_map(|a| normalize_account(a))
            .map(str::to_string)
            .collect();
        self.proven_accounts
            .retain(|a| self.test_accounts.contains(a));
        self.sources.set_ring_len(config.ring_len());
        self.sources
            .trim_challenges(config.flood.map_or(0, |f| f.count as usize));
        self.sources.trim_accounts(config.accounts_cap());
        self.config = config;
        self.sources.fit(self.room(self.epoch.last(), true));
        if self.history.len() > self.config.max_history {
            let excess = self.history.len() - self.config.max_history;
            self.history.drop_oldest(excess);
        }
        Ok(())
    }

    fn room(&self, now: window::Tick, live_ok: bool) -> Room {
        Room {
            cap: self.config.max_sources,
            now,
            window_ms: self.config.longest_window_ms(),
            live_ok,
        }
    }

    fn watches(&self, service: &str) -> bool {
        match &self.services {
            None => true,
            Some(list) => {
                let service = service.trim();
                list.iter().any(|s| s.eq_ignore_ascii_case(service))
            }
        }
    }

    /// The tick of `now_ms`, moving the epoch (and every stored time) when
    /// it nears the end of u32 range.
    fn tick(&mut self, now_ms: u64) -> window::Tick {
        let (now, shifted) = self.epoch.tick(now_ms, self.config.longest_window_ms());
        if let Some(delta) = shifted {
            self.sources.rebase(delta);
        }
        now
    }

    /// Feeds one event; returns a ban if this event completes one.
    pub fn observe(&mut self, event: &SecurityEvent, now_ms: u64) -> Option<Decision> {
        // `[policy] services` names Asterisk's services; the kernel's
        // rate-limit reports and the sensor's are no service's.
        if event.origin == Origin::Ami && !self.watches(&event.service) {
            return None;
        }
        let ip = event.source.to_canonical();
        let account = normalize_account(&event.account);
        if event.kind == EventKind::SuccessfulAuth
            && let Some(a) = account
            && self.test_accounts.contains(a)
            && !self.proven_accounts.contains(a)
        {
            self.proven_accounts.insert(a.to_string());
        }
        let forget_ms = ms(self.config.forget_after);
        if self
            .history
            .get(ip)
            .is_some_and(|r| r.active(now_ms, forget_ms))
        {
            // In flight before the firewall rule: the ban is already made.
            return None;
        }
        let now = self.tick(now_ms);
        let now_s = secs(now_ms);
        let counted = self.config.counted_events.contains(&event.kind);
        let challenge = event.kind == EventKind::ChallengeSent;
        let request = event.kind == EventKind::SipRequest;
        let test = ((counted || request) && rules::names_tried_account(&event.kind))
            .then_some(account)
            .flatten()
            .filter(|a| self.test_accounts.contains(*a) && !self.proven_accounts.contains(*a));
        let accounts_cap = self.config.accounts_cap();
        if request && test.is_none() {
            // A request is only ever looked at for the test accounts.
            return None;
        }

        if (counted || request)
            && let Some(reason) = rules::at_once(&self.config, event, test)
        {
            // No state needed to decide; a tracked source's ends here.
            let (first_seen, accounts) = match self.sources.find(ip) {
                Some(at) => {
                    if let Some(a) = account.filter(|_| accounts_cap > 0) {
                        let (fam, names) = self.sources.family_mut(at.v6);
                        account::note(fam.accounts_mut(at.slot), names, a, now, accounts_cap);
                    }
                    let seen = self.details(at);
                    self.sources.remove(at);
                    seen
                }
                None => {
                    let named = account.filter(|_| accounts_cap > 0);
                    (now_s, named.map(str::to_string).into_iter().collect())
                }
            };
            return Some(self.ban(ip, reason, first_seen, accounts, now_ms));
        }

        // Counted here means max_failures > 1: it goes into a window.
        let windowed = counted || (challenge && self.config.flood.is_some());
        let admitted = self.sources.admit(ip, now_s, self.room(now, windowed));
        if let Some(warning) = self.sources.report(now_ms, self.config.max_sources) {
            tracing::warn!("{warning}");
        }
        let at = admitted?;
        let (fam, names) = self.sources.family_mut(at.v6);
        if let Some(s) = fam.slot_mut(at.slot) {
            s.events = s.events.saturating_add(1);
            s.first_seen = s.first_seen.min(now_s);
            s.last_seen = s.last_seen.max(now_s);
            if counted {
                s.failures = s.failures.saturating_add(1);
            }
        }
        let reason = if counted {
            if let Some(a) = account.filter(|_| accounts_cap > 0) {
                account::note(fam.accounts_mut(at.slot), names, a, now, accounts_cap);
            }
            rules::failure(&self.config, fam, at.slot, &event.kind, now)
        } else if challenge {
            rules::challenge(&self.config, fam, at.slot, now)
        } else {
            None
        };
        match reason {
            Some(reason) => {
                let (first_seen, accounts) = self.details(at);
                self.sources.remove(at);
                Some(self.ban(ip, reason, first_seen, accounts, now_ms))
            }
            None => {
                if windowed {
                    if let Some(s) = fam.slot_mut(at.slot) {
                        s.live = now;
                    }
                    fam.make_newest(at.slot);
                }
                None
            }
        }
    }

    /// First seen and accounts named, for a decision.
    fn details(&self, at: At) -> (u32, Vec<String>) {
        let fam = self.sources.family(at.v6);
        let first_seen = fam.slot(at.slot).map_or(0, |s| s.first_seen);
        let accounts = fam
            .accounts(at.slot)
            .map(|set| account::names_of(set, &self.sources.names))
            .unwrap_or_default();
        (first_seen, accounts)
    }

    fn ban(
        &mut self,
        ip: IpAddr,
        reason: String,
        first_seen: u32,
        accounts: Vec<String>,
        now_ms: u64,
    ) -> Decision {
        let forget_ms = ms(self.config.forget_after);
        if self.history.get(ip).is_none() && self.history.len() >= self.config.max_history {
            let batch = (self.config.max_history / 10).max(1);
            self.history.drop_oldest(batch);
        }
        let now = secs(now_ms);
        let fresh = BanRecord {
            ban_count: 0,
            first_seen,
            last_ban: now,
            until: now,
            permanent: false,
        };
        let rec = self.history.get_or_insert(ip, fresh);
        if rec.ban_count == 0 || rec.forgettable(now_ms, forget_ms) {
            *rec = fresh;
        }
        rec.ban_count = rec.ban_count.saturating_add(1);
        let n = u32::from(rec.ban_count);
        let permanent = self.config.block_threshold.is_some_and(|t| n > t);
        let ban_for = self.config.ban_time_for(n);
        rec.first_seen = rec.first_seen.min(first_seen);
        rec.last_ban = now;
        rec.permanent = permanent;
        rec.until = if permanent {
            u32::MAX
        } else {
            let secs = u32::try_from(ban_for.as_secs()).unwrap_or(u32::MAX);
            now.saturating_add(secs)
        };
        Decision {
            ip,
            reason,
            ban_for,
            permanent,
            ban_number: n,
            accounts,
        }
    }

    /// The caller lifted `ip`'s ban early (console `unblock`, removed from
    /// the deny list): its events count again. Its ban count is kept, so a
    /// new offence escalates from there. `false` if it had no history.
    pub fn unbanned(&mut self, ip: IpAddr, now_ms: u64) -> bool {
        match self.history.get_mut(ip.to_canonical()) {
            Some(rec) => {
                rec.permanent = false;
                rec.until = rec.until.min(secs(now_ms));
                true
            }
            None => false,
        }
    }

    /// Drops sources idle for `source_retention` (or the longest window) and
    /// history forgotten after `forget_after`, and frees flood times that
    /// left their window. Call it now and then (e.g. every minute); the
    /// limits hold without it.
    pub fn purge(&mut self, now_ms: u64) -> Purged {
        let now = self.tick(now_ms);
        let idle_ms = ms(self.config.idle_after());
        let window_ms = self.config.longest_window_ms();
        let sources = self.sources.purge(now, window_ms, |last_seen_s| {
            now_ms.saturating_sub(u64::from(last_seen_s) * 1000) >= idle_ms
        });
        if let Some(f) = self.config.flood {
            self.sources
                .expire_challenges(now, config::window_ms(f.interval));
        }
        let forget_ms = ms(self.config.forget_after);
        let before = self.history.len();
        self.history.retain(|r| !r.forgettable(now_ms, forget_ms));
        if let Some(warning) = self.sources.report(now_ms, self.config.max_sources) {
            tracing::warn!("{warning}");
        }
        Purged {
            sources,
            history: before - self.history.len(),
        }
    }

    /// Details of a source being counted (`None` once it is banned).
    pub fn source_info(&self, ip: IpAddr) -> Option<SourceInfo> {
        let at = self.sources.find(ip.to_canonical())?;
        let fam = self.sources.family(at.v6);
        let s = fam.slot(at.slot)?;
        Some(SourceInfo {
            first_seen_ms: u64::from(s.first_seen) * 1000,
            last_seen_ms: u64::from(s.last_seen) * 1000,
            events: u64::from(s.events),
            failures: u64::from(s.failures),
            accounts_tried: self.details(at).1,
        })
    }

    /// `ip`'s ban history, if it has one still remembered at `now_ms`.
    pub fn history_of(&self, ip: IpAddr, now_ms: u64) -> Option<HistoryEntry> {
        let ip = ip.to_canonical();
        let r = self.history.get(ip)?;
        (!r.forgettable(now_ms, ms(self.config.forget_after))).then(|| r.entry(ip))
    }

    /// The whole history, sorted by address, for persisting.
    pub fn history(&self) -> History {
        History {
            entries: self.history.entries(),
        }
    }

    /// Merges a persisted history (after a restart). Entries already
    /// forgotten at `now_ms`, or with no ban, are skipped; where both sides
    /// know an address, the one with the later ban wins. Returns how many
    /// entries were taken.
    pub fn load_history(&mut self, history: History, now_ms: u64) -> usize {
        let forget_ms = ms(self.config.forget_after);
        let taken = self.history.load(&history.entries, now_ms, forget_ms);
        if self.history.len() > self.config.max_history {
            let excess = self.history.len() - self.config.max_history;
            self.history.drop_oldest(excess);
        }
        taken
    }

    /// Sources currently tracked (at most `max_sources`; banned ones are
    /// not).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// History entries held (at most `max_history`).
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Sources evicted so far because `max_sources` was reached.
    pub fn evictions(&self) -> Evictions {
        self.sources.evictions()
    }
}
