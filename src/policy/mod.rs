//! Policy: what a security event means. Pure logic, no I/O: the never-ban
//! checks come first (white list, loopback, the AMI host), then the event
//! type decides. Thresholds and escalation will live here too.

pub mod detector;
pub mod lists;
pub mod whitelist;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::event::{EventKind, SecurityEvent};
pub use whitelist::{ListError, Whitelist};

/// Why an address must never be banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protected {
    Loopback,
    Unspecified,
    AmiHost,
    WhiteList(IpNet),
}

impl std::fmt::Display for Protected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Protected::Loopback => f.write_str("loopback"),
            Protected::Unspecified => f.write_str("unspecified/multicast address"),
            Protected::AmiHost => f.write_str("the AMI host"),
            Protected::WhiteList(net) => write!(f, "white list {net}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ban {
        reason: String,
    },
    /// Would have been banned, but the source is protected.
    Spared(Protected),
    /// Not an attack (e.g. ChallengeSent, SuccessfulAuth).
    Ignore,
}

/// The never-ban rules plus the event rules. The white list can be swapped
/// at run time (reload) while events are being judged.
#[derive(Debug)]
pub struct Policy {
    whitelist: RwLock<Arc<Whitelist>>,
    ami_hosts: Vec<IpAddr>,
}

impl Policy {
    pub fn new(whitelist: Whitelist, ami_hosts: Vec<IpAddr>) -> Self {
        Policy {
            whitelist: RwLock::new(Arc::new(whitelist)),
            ami_hosts: ami_hosts.into_iter().map(|ip| ip.to_canonical()).collect(),
        }
    }

    pub fn whitelist(&self) -> Arc<Whitelist> {
        match self.whitelist.read() {
            Ok(w) => Arc::clone(&w),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_whitelist(&self, wl: Whitelist) {
        let mut guard = match self.whitelist.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(wl);
    }

    /// Why `ip` must never be banned, if it must not.
    pub fn protection(&self, ip: IpAddr) -> Option<Protected> {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Some(Protected::Loopback);
        }
        if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
            return Some(Protected::Unspecified);
        }
        if self.ami_hosts.contains(&ip) {
            return Some(Protected::AmiHost);
        }
        self.whitelist().find(ip).map(Protected::WhiteList)
    }

    pub fn judge(&self, event: &SecurityEvent) -> Verdict {
        if !bans_on_first_event(&event.kind) {
            return Verdict::Ignore;
        }
        match self.protection(event.source) {
            Some(p) => Verdict::Spared(p),
            None => Verdict::Ban {
                reason: event.kind.reason().to_string(),
            },
        }
    }
}

/// The original SIPban's rule: these ban on the first event, whatever the
/// service (a brute force on the manager port is an attack too).
/// ChallengeSent and SuccessfulAuth accompany every good login.
fn bans_on_first_event(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::InvalidAccountId
            | EventKind::InvalidPassword
            | EventKind::ChallengeResponseFailed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, ip: &str) -> SecurityEvent {
        SecurityEvent {
            kind,
            service: "PJSIP".into(),
            account: "1001".into(),
            source: ip.parse().unwrap(),
            port: 5060,
            transport: Some("UDP".into()),
            event_time: None,
        }
    }

    fn policy() -> Policy {
        let wl = Whitelist::parse("198.51.100.0/24\n2001:db8:1::/48\n", "t".as_ref()).unwrap();
        Policy::new(wl, vec!["192.0.2.1".parse().unwrap()])
    }

    #[test]
    fn attacks_ban_on_first_event() {
        let p = policy();
        for kind in [
            EventKind::InvalidAccountId,
            EventKind::InvalidPassword,
            EventKind::ChallengeResponseFailed,
        ] {
            assert!(matches!(
                p.judge(&event(kind, "203.0.113.5")),
                Verdict::Ban { .. }
            ));
        }
    }

    #[test]
    fn good_logins_never_ban() {
        let p = policy();
        for kind in [EventKind::ChallengeSent, EventKind::SuccessfulAuth] {
            assert_eq!(p.judge(&event(kind, "203.0.113.5")), Verdict::Ignore);
        }
    }

    #[test]
    fn protected_sources_are_spared() {
        let p = policy();
        let judge = |ip| p.judge(&event(EventKind::InvalidPassword, ip));
        assert_eq!(judge("127.0.0.1"), Verdict::Spared(Protected::Loopback));
        assert_eq!(judge("::1"), Verdict::Spared(Protected::Loopback));
        assert_eq!(judge("192.0.2.1"), Verdict::Spared(Protected::AmiHost));
        assert!(matches!(
            judge("198.51.100.9"),
            Verdict::Spared(Protected::WhiteList(_))
        ));
        assert!(matches!(
            judge("2001:db8:1::9"),
            Verdict::Spared(Protected::WhiteList(_))
        ));
        assert!(matches!(judge("2001:db8:2::9"), Verdict::Ban { .. }));
    }
}
