//! What the SIP seen on the wire means, as events for the same policy the
//! AMI feeds (kinds [`EventKind::Scanner`], [`EventKind::SipFailure`],
//! [`EventKind::SipRequest`], [`EventKind::RequestFlood`]):
//!
//! - a request whose User-Agent names a scanner ([`SignalConfig::scanner`]);
//! - a 401/407 not followed within `auth_window` by a success on the same
//!   Call-ID, one failure per challenge (PJSIP answers a wrong password,
//!   an unknown user and an ACL-denied endpoint alike with 401, so counting
//!   challenges is all the wire allows; a good phone's 401 is followed by
//!   its 200 within milliseconds); a REGISTER or INVITE answered 403 or 404
//!   (chan_sip's wrong password and unknown user), except a 404 to an
//!   INVITE that carried credentials (a known phone dialling a number that
//!   does not exist);
//! - each new REGISTER/INVITE dialog naming a test account
//!   ([`SignalConfig::test_accounts`], the policy's), for the test-account
//!   rule (which the policy still applies, with its proven accounts); requests per source over `max_requests` in `request_window`
//!   (a TLS connection attempt counts as one request: TLS is not
//!   decrypted).
//!
//! The account is the From user (what Asterisk reports as AccountID), else
//! the To user. Requests go from the packet's source, answers to its
//! destination: the Via and Contact hosts are the attacker's text (svmap
//! writes 127.0.0.1). When the capture says which way a packet went, the
//! PBX's own requests (to a trunk) and the answers it gets are left alone.
//! Time is the packet's; nothing here reads a clock.

mod config;
mod dialogs;
mod rate;

use std::collections::HashMap;

// Randomly seeded foldhash, as in `dialogs.rs`.
use foldhash::fast::RandomState;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use config::{SCANNER_AGENTS, SignalConfig};
use dialogs::{Dialogs, Matured};
use rate::Rates;

use crate::event::{EventKind, Origin, SecurityEvent, SipDetail};
use crate::sensor::sip::{Message, Method, SipText};

/// Bytes kept of a User-Agent, an account and an unknown method.
const AGENT_MAX: usize = 128;
const ACCOUNT_MAX: usize = 64;
const METHOD_MAX: usize = 32;
/// A scanner or a flood is reported again after this long (the ban may
/// have been lifted while it goes on).
const REPORT_AGAIN: Duration = Duration::from_secs(60);

/// Which way a packet went, when the capture knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A capture file: requests are taken as coming in, answers as going out.
    Unknown,
    Incoming,
    Outgoing,
}

/// One packet's circumstances.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Since the Unix epoch.
    pub at: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// `UDP`, `TCP` or `TLS`.
    pub transport: &'static str,
    pub direction: Direction,
}

/// Counters for `status` and the replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalStats {
    pub requests: u64,
    pub answers: u64,
    pub scanners: u64,
    pub failures: u64,
    pub floods: u64,
    /// Not tracked because a table was full.
    pub untracked: u64,
    /// Dialogs and rated sources held now.
    pub dialogs: usize,
    pub rated: usize,
}

pub struct Signals {
    config: SignalConfig,
    dialogs: Dialogs,
    rates: Option<Rates>,
    reported: HashMap<(IpAddr, u8), Duration, RandomState>,
    stats: SignalStats,
    matured: Vec<Matured>,
}

impl Signals {
    pub fn new(config: SignalConfig) -> Self {
        Signals {
            dialogs: Dialogs::new(config.auth_window, config.max_sources),
            rates: config
                .max_requests
                .map(|m| Rates::new(m, config.request_window, config.max_sources)),
            reported: HashMap::default(),
            stats: SignalStats::default(),
            matured: Vec::new(),
            config,
        }
    }

    pub fn config(&self) -> &SignalConfig {
        &self.config
    }

    pub fn stats(&self) -> SignalStats {
        let mut s = self.stats;
        s.untracked = self
            .dialogs
            .full
            .saturating_add(self.rates.as_ref().map_or(0, |r| r.full));
        s.dialogs = self.dialogs.len();
        s.rated = self.rates.as_ref().map_or(0, |r| r.len());
        s
    }

    /// One SIP message; events go to `out`, in time order (failures that
    /// matured by `seen.at` first).
    pub fn message(&mut self, seen: &Seen, msg: &Message<'_>, out: &mut Vec<SecurityEvent>) {
        self.tick(seen.at, out);
        match msg.status() {
            None => self.request(seen, msg, out),
            Some(status) => self.answer(seen, msg, status, out),
        }
    }

    /// A TLS connection attempt (a SYN to a TLS port): one request.
    pub fn connection(&mut self, seen: &Seen, out: &mut Vec<SecurityEvent>) {
        self.tick(seen.at, out);
        if seen.direction == Direction::Outgoing {
            return;
        }
        self.stats.requests = self.stats.requests.saturating_add(1);
        self.rate(seen, &SipDetail::default, out);
    }

    /// Failures whose window has passed by `now`.
    pub fn tick(&mut self, now: Duration, out: &mut Vec<SecurityEvent>) {
        let mut matured = std::mem::take(&mut self.matured);
        self.dialogs.mature(now, &mut matured);
        for m in matured.drain(..) {
            let detail = SipDetail {
                user_agent: m.dialog.agent.clone(),
                method: m.dialog.method.clone(),
                answered_ms: Some(millis(m.answered)),
                scanner: None,
            };
            let addr = SocketAddr::new(m.requester, m.dialog.port);
            for _ in 0..m.failures {
                self.stats.failures = self.stats.failures.saturating_add(1);
                out.push(event(
                    EventKind::SipFailure,
                    addr,
                    m.dialog.transport,
                    &m.dialog.account,
                    now,
                    detail.clone(),
                ));
            }
        }
        self.matured = matured;
    }

    fn request(&mut self, seen: &Seen, msg: &Message<'_>, out: &mut Vec<SecurityEvent>) {
        if seen.direction == Direction::Outgoing {
            return;
        }
        self.stats.requests = self.stats.requests.saturating_add(1);
        // Owned text only when an event or a new dialog needs it: a flood
        // is mostly requests that need none.
        let detail = || SipDetail {
            user_agent: msg.user_agent.map(|a| a.to_sanitized(AGENT_MAX)),
            method: msg.method().map(method_name),
            answered_ms: None,
            scanner: None,
        };
        let scanner = msg
            .user_agent
            .and_then(|ua| self.config.scanner(ua.as_bytes()))
            .map(str::to_string);
        if let Some(name) = scanner
            && self.first_report(seen, 0)
        {
            let detail = SipDetail {
                scanner: Some(name),
                ..detail()
            };
            self.stats.scanners = self.stats.scanners.saturating_add(1);
            out.push(event(
                EventKind::Scanner,
                seen.src,
                seen.transport,
                &account(msg),
                seen.at,
                detail,
            ));
        }
        self.rate(seen, &detail, out);
        let Some(call_id) = msg.call_id else {
            return;
        };
        let key = self.dialogs.key(seen.src.ip(), call_id.as_bytes());
        let Some((d, new)) = self.dialogs.entry(key, seen.at) else {
            return;
        };
        let method = msg.method();
        if new {
            d.agent = msg.user_agent.map(|a| a.to_sanitized(AGENT_MAX));
            d.account = account(msg);
        }
        if new || d.method.as_deref() != method.and_then(|m| m.as_str()) {
            d.method = method.map(method_name);
        }
        d.transport = seen.transport;
        d.port = seen.src.port();
        d.credentialed = msg.authorization;
        let named = new
            && matches!(method, Some(Method::Register | Method::Invite))
            && self.config.test_accounts.contains(&d.account);
        let account = if named {
            d.account.clone()
        } else {
            String::new()
        };
        if msg.authorization {
            self.dialogs.answered(key);
        }
        if named {
            out.push(event(
                EventKind::SipRequest,
                seen.src,
                seen.transport,
                &account,
                seen.at,
                detail(),
            ));
        }
    }

    fn answer(
        &mut self,
        seen: &Seen,
        msg: &Message<'_>,
        status: u16,
        out: &mut Vec<SecurityEvent>,
    ) {
        if seen.direction == Direction::Incoming {
            return;
        }
        self.stats.answers = self.stats.answers.saturating_add(1);
        let Some(call_id) = msg.call_id else {
            return;
        };
        let key = self.dialogs.key(seen.dst.ip(), call_id.as_bytes());
        match status {
            401 | 407 => self.dialogs.challenged(key, seen.at),
            100 => {}
            403 | 404 => {
                let answers = msg.cseq.map(|c| c.method);
                let dialing = matches!(answers, Some(Method::Register | Method::Invite));
                let known = self.dialogs.get(&key).cloned().unwrap_or_default();
                let phone_dialling =
                    status == 404 && matches!(answers, Some(Method::Invite)) && known.credentialed;
                self.dialogs.settled(key);
                if dialing && !phone_dialling {
                    self.stats.failures = self.stats.failures.saturating_add(1);
                    let account = if known.account.is_empty() {
                        account(msg)
                    } else {
                        known.account
                    };
                    let detail = SipDetail {
                        user_agent: known.agent,
                        method: answers.map(method_name),
                        answered_ms: Some(millis(seen.at)),
                        scanner: None,
                    };
                    out.push(event(
                        EventKind::SipFailure,
                        seen.dst,
                        seen.transport,
                        &account,
                        seen.at,
                        detail,
                    ));
                }
            }
            _ => self.dialogs.settled(key),
        }
    }

    fn rate(&mut self, seen: &Seen, detail: &dyn Fn() -> SipDetail, out: &mut Vec<SecurityEvent>) {
        let Some(rates) = &mut self.rates else {
            return;
        };
        if rates.request(seen.src.ip(), seen.at) && self.first_report(seen, 1) {
            self.stats.floods = self.stats.floods.saturating_add(1);
            out.push(event(
                EventKind::RequestFlood,
                seen.src,
                seen.transport,
                "",
                seen.at,
                detail(),
            ));
        }
    }

    /// Whether signal `what` about the packet's source is new (or old
    /// enough to say again). Bounded like the other tables: when full,
    /// reports older than [`REPORT_AGAIN`] go, else it just says yes.
    fn first_report(&mut self, seen: &Seen, what: u8) -> bool {
        let key = (seen.src.ip().to_canonical(), what);
        if let Some(t) = self.reported.get_mut(&key) {
            if seen.at.saturating_sub(*t) < REPORT_AGAIN {
                return false;
            }
            *t = seen.at;
            return true;
        }
        if self.reported.len() >= self.config.max_sources {
            self.reported
                .retain(|_, t| seen.at.saturating_sub(*t) < REPORT_AGAIN);
        }
        if self.reported.len() < self.config.max_sources {
            self.reported.insert(key, seen.at);
        }
        true
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn method_name(m: Method<'_>) -> String {
    match m.as_str() {
        Some(name) => name.to_string(),
        None => match m {
            Method::Other(text) => text.to_sanitized(METHOD_MAX),
            _ => String::new(),
        },
    }
}

fn account(msg: &Message<'_>) -> String {
    msg.from_user()
        .or_else(|| msg.to_user())
        .map(|u: SipText<'_>| u.to_sanitized(ACCOUNT_MAX))
        .unwrap_or_default()
}

/// `EventTV`'s shape, so the log, the replay and the AMI's events read alike.
fn event_time(at: Duration) -> Option<String> {
    let t = chrono::DateTime::from_timestamp(i64::try_from(at.as_secs()).ok()?, at.subsec_nanos())?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
}

fn event(
    kind: EventKind,
    from: SocketAddr,
    transport: &str,
    account: &str,
    at: Duration,
    detail: SipDetail,
) -> SecurityEvent {
    SecurityEvent {
        kind,
        service: "SIP".into(),
        account: account.to_string(),
        source: from.ip().to_canonical(),
        port: from.port(),
        transport: Some(transport.to_string()),
        event_time: event_time(at),
        origin: Origin::Sensor,
        sip: Some(Box::new(detail)),
    }
}
