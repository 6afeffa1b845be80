//! What every source turns its input into: one security event about one
//! remote address. The AMI reports Asterisk's security events; the SIP
//! sensor ([`crate::sensor`]) what it saw on the wire (a scanner's
//! User-Agent, an unanswered challenge, a request flood); the firewall's
//! flood watch ([`crate::firewall::limits::watch`]) a source that kept
//! exceeding the SIP rate limit in the kernel. Policy decides what the
//! event means; [`Origin`] says who saw it, for the log and the report.

use std::fmt;
use std::net::IpAddr;

/// The Asterisk security event types sipban knows by name (Asterisk's
/// `security_events.h`); anything else keeps its name in `Other`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    InvalidAccountId,
    InvalidPassword,
    ChallengeResponseFailed,
    ChallengeSent,
    SuccessfulAuth,
    FailedAcl,
    RequestBadFormat,
    RequestNotAllowed,
    UnexpectedAddress,
    /// Not Asterisk's: the kernel counted a source over `[limits] sip_rate`
    /// for `sip_ban_after` (a persistent flooder).
    RateLimit,
    /// The sensor: a request whose User-Agent names a scanner
    /// (`[sip] user_agents`); bans at once.
    Scanner,
    /// The sensor: a request answered 401/407 and not followed by a success
    /// within `[sip] auth_window`, or a REGISTER/INVITE answered 403/404;
    /// counted like Asterisk's failures.
    SipFailure,
    /// The sensor: a REGISTER or INVITE naming a user. Not counted; only the
    /// test-account rule looks at it.
    SipRequest,
    /// The sensor: more requests from one source than `[sip] max_requests`
    /// in `[sip] request_window`; bans at once.
    RequestFlood,
    Other(String),
}

impl EventKind {
    pub fn from_name(name: &str) -> EventKind {
        match name.trim() {
            n if n.eq_ignore_ascii_case("InvalidAccountID") => EventKind::InvalidAccountId,
            n if n.eq_ignore_ascii_case("InvalidPassword") => EventKind::InvalidPassword,
            n if n.eq_ignore_ascii_case("ChallengeResponseFailed") => {
                EventKind::ChallengeResponseFailed
            }
            n if n.eq_ignore_ascii_case("ChallengeSent") => EventKind::ChallengeSent,
            n if n.eq_ignore_ascii_case("SuccessfulAuth") => EventKind::SuccessfulAuth,
            n if n.eq_ignore_ascii_case("FailedACL") => EventKind::FailedAcl,
            n if n.eq_ignore_ascii_case("RequestBadFormat") => EventKind::RequestBadFormat,
            n if n.eq_ignore_ascii_case("RequestNotAllowed") => EventKind::RequestNotAllowed,
            n if n.eq_ignore_ascii_case("UnexpectedAddress") => EventKind::UnexpectedAddress,
            n if n.eq_ignore_ascii_case("RateLimit") => EventKind::RateLimit,
            n if n.eq_ignore_ascii_case("Scanner") => EventKind::Scanner,
            n if n.eq_ignore_ascii_case("SipFailure") => EventKind::SipFailure,
            n if n.eq_ignore_ascii_case("SipRequest") => EventKind::SipRequest,
            n if n.eq_ignore_ascii_case("RequestFlood") => EventKind::RequestFlood,
            other => EventKind::Other(other.to_string()),
        }
    }

    /// Asterisk's spelling of the event name.
    pub fn name(&self) -> &str {
        match self {
            EventKind::InvalidAccountId => "InvalidAccountID",
            EventKind::InvalidPassword => "InvalidPassword",
            EventKind::ChallengeResponseFailed => "ChallengeResponseFailed",
            EventKind::ChallengeSent => "ChallengeSent",
            EventKind::SuccessfulAuth => "SuccessfulAuth",
            EventKind::FailedAcl => "FailedACL",
            EventKind::RequestBadFormat => "RequestBadFormat",
            EventKind::RequestNotAllowed => "RequestNotAllowed",
            EventKind::UnexpectedAddress => "UnexpectedAddress",
            EventKind::RateLimit => "RateLimit",
            EventKind::Scanner => "Scanner",
            EventKind::SipFailure => "SipFailure",
            EventKind::SipRequest => "SipRequest",
            EventKind::RequestFlood => "RequestFlood",
            EventKind::Other(name) => name,
        }
    }

    /// The reason text written in `BLOCK => ip (reason)` log lines; the first
    /// two are the original SIPban's wording.
    pub fn reason(&self) -> &str {
        match self {
            EventKind::InvalidAccountId => "Invalid Account",
            EventKind::InvalidPassword => "Invalid Password",
            EventKind::ChallengeResponseFailed => "Challenge Response Failed",
            EventKind::ChallengeSent => "Challenge Sent",
            EventKind::SuccessfulAuth => "Successful Auth",
            EventKind::FailedAcl => "Failed ACL",
            EventKind::RequestBadFormat => "Request Bad Format",
            EventKind::RequestNotAllowed => "Request Not Allowed",
            EventKind::UnexpectedAddress => "Unexpected Address",
            EventKind::RateLimit => "rate limit",
            EventKind::Scanner => "scanner User-Agent",
            EventKind::SipFailure => "SIP authentication failed",
            EventKind::SipRequest => "SIP request",
            EventKind::RequestFlood => "SIP request flood",
            EventKind::Other(name) => name,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One security event about one remote address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    pub kind: EventKind,
    /// `PJSIP`, `SIP`, `IAX2`, `AMI`, ... as Asterisk reports it.
    pub service: String,
    /// The account the remote side named (may be `<unknown>` or empty).
    pub account: String,
    pub source: IpAddr,
    pub port: u16,
    /// `UDP`, `TCP`, ... when Asterisk reported it.
    pub transport: Option<String>,
    /// Asterisk's own timestamp (`EventTV`), kept verbatim for messages;
    /// the sensor writes the packet's time the same way.
    pub event_time: Option<String>,
    /// Who saw it.
    pub origin: Origin,
    /// What the sensor read off the wire (boxed: most events carry none).
    pub sip: Option<Box<SipDetail>>,
}

impl SecurityEvent {
    /// The reason a ban on this event alone gives: the kind's, and for a
    /// scanner the name it matched.
    pub fn reason(&self) -> String {
        match (
            &self.kind,
            self.sip.as_ref().and_then(|s| s.scanner.as_deref()),
        ) {
            (EventKind::Scanner, Some(name)) => format!("scanner User-Agent {name}"),
            _ => self.kind.reason().to_string(),
        }
    }
}

impl SecurityEvent {
    /// What led to a ban, for the log and the replay: who saw it, the
    /// event, the account and transport, and for the sensor the User-Agent
    /// and method (already sanitized).
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let mut out = match self.origin {
            Origin::Ami => format!("AMI {} {}", self.service, self.kind),
            other => format!("{other} {}", self.kind),
        };
        let _ = write!(
            out,
            " account {:?} via {}",
            self.account,
            self.transport.as_deref().unwrap_or("?")
        );
        if let Some(sip) = &self.sip {
            if let Some(ua) = &sip.user_agent {
                let _ = write!(out, ", User-Agent {ua:?}");
            }
            if let Some(m) = &sip.method {
                let _ = write!(out, ", {m}");
            }
        }
        if let Some(t) = &self.event_time {
            let _ = write!(out, " at {t}");
        }
        out
    }
}

/// Who reported an event: shown with every ban, counted in `report`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Asterisk, over the Manager Interface.
    #[default]
    Ami,
    /// The SIP sensor, from live traffic or a capture file.
    Sensor,
    /// The kernel (the SIP rate limit's flood watch).
    Kernel,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Ami => "AMI",
            Origin::Sensor => "sensor",
            Origin::Kernel => "kernel",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SIP request behind a sensor event, as far as it was seen. Both texts
/// are the attacker's, already made safe to print (control characters
/// escaped, length capped: [`crate::sensor::sip::SipText::to_sanitized`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipDetail {
    pub user_agent: Option<String>,
    /// `REGISTER`, `INVITE`, ... (an unknown method as sent, sanitized).
    pub method: Option<String>,
    /// For a [`EventKind::Scanner`]: the `[sip] user_agents` entry it
    /// matched (the ban's reason names it, not the sender's text).
    pub scanner: Option<String>,
    /// For a [`EventKind::SipFailure`]: when the failing answer left the
    /// PBX (ms since the epoch), which the policy compares with what the
    /// AMI reported so one attempt is not counted twice.
    pub answered_ms: Option<u64>,
}
