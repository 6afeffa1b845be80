//! What every source turns its input into: one security event about one
//! remote address. The AMI reports Asterisk's security events; the
//! firewall's flood watch ([`crate::firewall::limits::watch`]) reports a
//! source that kept exceeding the SIP rate limit in the kernel. Policy
//! decides what the event means.

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
    /// Asterisk's own timestamp (`EventTV`), kept verbatim for messages.
    pub event_time: Option<String>,
}
