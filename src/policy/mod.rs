//! Policy: what a security event means. Pure logic, no I/O: the never-ban
//! checks come first (white list, loopback, the AMI host), then the event
//! type decides. Thresholds and escalation will live here too.

pub mod correlate;
pub mod detector;
pub mod lists;
pub mod whitelist;

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use ipnet::IpNet;

use crate::event::{EventKind, Origin, SecurityEvent};
use correlate::AmiSightings;
use detector::{Detector, DetectorConfig, InvalidSetting};
use lists::{AddressList, ListVerdict, Lists};
pub use whitelist::{ListError, Whitelist};

/// Why an address must never be banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protected {
    Loopback,
    Unspecified,
    AmiHost,
    /// The allow list (the original's white list) entry covering it.
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

/// Why a deny entry would do more harm than good. Deny entries go to the
/// firewall as they are (the allow list does not carve holes in them), so
/// one covering an office, loopback or Asterisk itself cuts it off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DenyConflict {
    /// Wider than /8 (IPv4) or /32 (IPv6): `0.0.0.0/0` cuts all SIP.
    TooWide {
        net: IpNet,
        widest: u8,
    },
    Loopback {
        net: IpNet,
    },
    AmiHost {
        net: IpNet,
        host: IpAddr,
    },
    /// Overlaps (covers, or lies inside) this allow list entry.
    Allowed {
        net: IpNet,
        entry: IpNet,
    },
}

/// The widest deny entries accepted without `--force`.
pub const WIDEST_DENY_V4: u8 = 8;
pub const WIDEST_DENY_V6: u8 = 32;

impl std::fmt::Display for DenyConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyConflict::TooWide { net, widest } => {
                write!(f, "{net} is wider than /{widest}")
            }
            DenyConflict::Loopback { net } => write!(f, "{net} covers loopback"),
            DenyConflict::AmiHost { net, host } => {
                write!(f, "{net} covers the AMI host {host}")
            }
            DenyConflict::Allowed { net, entry } if net == entry => {
                write!(f, "{net} is on the allow list")
            }
            DenyConflict::Allowed { net, entry } => {
                write!(f, "{net} overlaps the allow list entry {entry}")
            }
        }
    }
}

/// Whether the two networks share an address.
fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ban {
        reason: String,
        /// `None`: the configured ban time.
        ban_for: Option<Duration>,
        /// Promote to the permanent deny list.
        permanent: bool,
    },
    /// Would have been banned, but the source is protected.
    Spared(Protected),
    /// Not an attack (e.g. ChallengeSent, SuccessfulAuth), or not yet.
    Ignore,
}

/// The never-ban rules, the allow/deny lists and the detector. The lists can
/// be swapped at run time (reload) while events are being judged.
#[derive(Debug)]
pub struct Policy {
    lists: RwLock<Arc<Lists>>,
    ami_hosts: Vec<IpAddr>,
    detector: Mutex<Detector>,
    /// What the AMI reported lately, so the sensor does not count an
    /// attempt again ([`correlate`]).
    sightings: Mutex<AmiSightings>,
    /// The original's rule (first counted event bans, no escalation): the
    /// detector is not fed, so no per-source state or history is kept.
    original: bool,
}

/// Sources whose last AMI report is remembered for the sensor's
/// correlation, and how long one is worth keeping (longer than any
/// `[sip] auth_window` plus [`correlate::SLACK_MS`]).
const SIGHTINGS_CAP: usize = 100_000;
const SIGHTINGS_KEEP_MS: u64 = 120_000;

/// Whether `c` bans exactly like the original SIPban.
fn is_original(c: &DetectorConfig) -> bool {
    c.max_failures <= 1
        && c.flood.is_none()
        && c.enumeration.is_none()
        && c.services.is_none()
        && c.ban_time_factor <= 1.0
        && c.block_threshold.is_none()
}

impl Policy {
    /// The original SIPban's policy: white list, first event bans for
    /// `ban_time`.
    pub fn new(whitelist: Whitelist, ami_hosts: Vec<IpAddr>, ban_time: Duration) -> Self {
        let mut allow = AddressList::new();
        for net in whitelist.entries() {
            let _ = allow.add(*net, None);
        }
        let lists = Lists {
            allow,
            deny: AddressList::new(),
        };
        Policy {
            lists: RwLock::new(Arc::new(lists)),
            ami_hosts: ami_hosts.into_iter().map(|ip| ip.to_canonical()).collect(),
            detector: Mutex::new(Detector::original(ban_time)),
            sightings: Mutex::new(AmiSightings::new(SIGHTINGS_CAP, SIGHTINGS_KEEP_MS)),
            original: true,
        }
    }

    /// Whether `kind` counts as an attack (a banned source reporting one
    /// more gets its ban extended).
    pub fn is_attack(&self, kind: &crate::event::EventKind) -> bool {
        self.detector().config().counted_events.contains(kind)
    }

    pub fn with(
        lists: Lists,
        ami_hosts: Vec<IpAddr>,
        detector: DetectorConfig,
    ) -> Result<Self, InvalidSetting> {
        Ok(Policy {
            lists: RwLock::new(Arc::new(lists)),
            ami_hosts: ami_hosts.into_iter().map(|ip| ip.to_canonical()).collect(),
            original: is_original(&detector),
            detector: Mutex::new(Detector::new(detector)?),
            sightings: Mutex::new(AmiSightings::new(SIGHTINGS_CAP, SIGHTINGS_KEEP_MS)),
        })
    }

    pub fn lists(&self) -> Arc<Lists> {
        match self.lists.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set_lists(&self, lists: Lists) {
        let mut guard = match self.lists.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(lists);
    }

    /// Re-reads both list files; on error the old lists stay in force,
    /// whole. Returns the (allow, deny) entry counts.
    pub fn reload_lists(
        &self,
        allow: &std::path::Path,
        deny: &std::path::Path,
    ) -> Result<(usize, usize), lists::ListError> {
        let loaded = Lists::load(allow, deny)?;
        let n = (loaded.lists.allow.len(), loaded.lists.deny.len());
        self.set_lists(loaded.lists);
        Ok(n)
    }

    /// The AMI host's addresses (never banned).
    pub fn ami_hosts(&self) -> &[IpAddr] {
        &self.ami_hosts
    }

    /// Every network a deny entry or network ban must leave open: the
    /// allow list, loopback and the AMI host.
    pub fn protected_nets(&self) -> Vec<IpNet> {
        let mut holes = self.lists().allow.nets();
        holes.extend(
            ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok()),
        );
        holes.extend(self.ami_hosts.iter().map(|ip| IpNet::from(*ip)));
        holes
    }

    /// The deny entries as the firewall must hold them: the deny list and
    /// `banned` (networks under a timed ban) minus every protected network
    /// (allow list, loopback, the AMI host), so the allow list wins in the
    /// kernel too.
    pub fn kernel_deny_nets(&self, banned: &[IpNet]) -> Vec<IpNet> {
        let lists = self.lists();
        let holes = self.protected_nets();
        let mut deny = lists.deny.nets();
        deny.extend_from_slice(banned);
        crate::cidr::subtract(&deny, &holes)
    }

    /// The networks exempt from the kernel's per-source limits: every
    /// protected network (the allow list, loopback, the AMI host), which
    /// the firewall holds apart from the deny entries.
    pub fn kernel_allow_nets(&self) -> Vec<IpNet> {
        let mut nets = self.lists().allow.nets();
        nets.extend(
            ["127.0.0.0/8", "::1/128"]
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok()),
        );
        nets.extend(self.ami_hosts.iter().map(|ip| IpNet::from(*ip)));
        nets
    }

    /// True when running the original's rule (no detector state).
    pub fn is_original(&self) -> bool {
        self.original
    }

    /// The detector (per-source state, history); never held across await.
    fn sightings(&self) -> MutexGuard<'_, AmiSightings> {
        self.sightings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sensor failures not counted because the AMI had reported the source
    /// around the same answer.
    pub fn sensor_duplicates(&self) -> u64 {
        self.sightings().duplicates()
    }

    pub fn detector(&self) -> MutexGuard<'_, Detector> {
        self.detector.lock().unwrap_or_else(|p| p.into_inner())
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
        self.lists()
            .allow
            .find(ip)
            .map(|e| Protected::WhiteList(e.net))
    }

    /// Why `net` must not go on the deny list without an explicit force,
    /// if it must not; the console and the API refuse it with this reason.
    pub fn deny_conflict(&self, net: IpNet) -> Option<DenyConflict> {
        let net = lists::normalize(net);
        let widest = match net {
            IpNet::V4(_) => WIDEST_DENY_V4,
            IpNet::V6(_) => WIDEST_DENY_V6,
        };
        if net.prefix_len() < widest {
            return Some(DenyConflict::TooWide { net, widest });
        }
        let loopback = match net {
            // At least a /8 here: loopback when inside 127.0.0.0/8.
            IpNet::V4(n) => n.network().octets().first() == Some(&127),
            IpNet::V6(n) => {
                n.contains(&std::net::Ipv6Addr::LOCALHOST)
                    || n.contains(&std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped())
            }
        };
        if loopback {
            return Some(DenyConflict::Loopback { net });
        }
        if let Some(&host) = self.ami_hosts.iter().find(|h| net.contains(*h)) {
            return Some(DenyConflict::AmiHost { net, host });
        }
        let lists = self.lists();
        let allowed = match lists.allow.find(net.network()) {
            // The most specific allow entry holding the network's start.
            Some(e) => Some(e.net),
            // Or one inside the network.
            None => lists
                .allow
                .entries()
                .iter()
                .map(|e| e.net)
                .find(|e| overlaps(net, *e)),
        };
        allowed.map(|entry| DenyConflict::Allowed { net, entry })
    }

    /// `now_ms`: wall-clock milliseconds (the detector's windows).
    pub fn judge(&self, event: &SecurityEvent, now_ms: u64) -> Verdict {
        match (event.origin, &event.kind) {
            (Origin::Ami, _) => self.sightings().note(event.source, now_ms),
            (Origin::Sensor, EventKind::SipFailure) => {
                let answered = event.sip.as_ref().and_then(|s| s.answered_ms);
                if self
                    .sightings()
                    .reported(event.source, answered.unwrap_or(now_ms))
                {
                    return Verdict::Ignore;
                }
            }
            _ => {}
        }
        if let Some(p) = self.protection(event.source) {
            // Only attack events are worth a log line about sparing.
            let attack = self
                .detector()
                .config()
                .counted_events
                .contains(&event.kind);
            return if attack {
                Verdict::Spared(p)
            } else {
                Verdict::Ignore
            };
        }
        let lists = self.lists();
        if let ListVerdict::Denied(e) = lists.verdict(event.source)
            && self
                .detector()
                .config()
                .counted_events
                .contains(&event.kind)
        {
            return Verdict::Ban {
                reason: format!("deny list {}", e.net),
                ban_for: None,
                permanent: false,
            };
        }
        if self.original {
            // Every counted event bans (or extends the ban), as the
            // original did; nothing to remember per source.
            let d = self.detector();
            let c = d.config();
            let watched = c.counted_events.contains(&event.kind);
            return if watched {
                Verdict::Ban {
                    reason: event.reason(),
                    ban_for: Some(c.ban_time),
                    permanent: false,
                }
            } else {
                Verdict::Ignore
            };
        }
        match self.detector().observe(event, now_ms) {
            Some(d) => Verdict::Ban {
                reason: d.reason,
                ban_for: Some(d.ban_for),
                permanent: d.permanent,
            },
            None => Verdict::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::event::EventKind;

    fn event(kind: EventKind, ip: &str) -> SecurityEvent {
        SecurityEvent {
            kind,
            service: "PJSIP".into(),
            account: "1001".into(),
            source: ip.parse().unwrap(),
            port: 5060,
            transport: Some("UDP".into()),
            event_time: None,
            origin: Default::default(),
            sip: None,
        }
    }

    fn policy() -> Policy {
        let wl = Whitelist::parse("198.51.100.0/24\n2001:db8:1::/48\n", "t".as_ref()).unwrap();
        Policy::new(
            wl,
            vec!["192.0.2.1".parse().unwrap()],
            Duration::from_secs(60),
        )
    }

    #[test]
    fn attacks_ban_on_first_event() {
        let p = policy();
        // One source each: a banned source's further events are no news.
        for (kind, src) in [
            (EventKind::InvalidAccountId, "203.0.113.5"),
            (EventKind::InvalidPassword, "203.0.113.6"),
            (EventKind::ChallengeResponseFailed, "203.0.113.7"),
        ] {
            assert!(matches!(p.judge(&event(kind, src), 0), Verdict::Ban { .. }));
        }
    }

    #[test]
    fn good_logins_never_ban() {
        let p = policy();
        for kind in [EventKind::ChallengeSent, EventKind::SuccessfulAuth] {
            assert_eq!(p.judge(&event(kind, "203.0.113.5"), 0), Verdict::Ignore);
        }
    }

    #[test]
    fn deny_entries_that_would_cut_off_what_must_stay_reachable() {
        let p = policy();
        let conflict = |s: &str| {
            p.deny_conflict(lists::parse_net(s).unwrap())
                .map(|c| c.to_string())
        };
        assert_eq!(
            conflict("0.0.0.0/0").as_deref(),
            Some("0.0.0.0/0 is wider than /8")
        );
        assert_eq!(
            conflict("2000::/3").as_deref(),
            Some("2000::/3 is wider than /32")
        );
        assert_eq!(
            conflict("127.0.0.0/8").as_deref(),
            Some("127.0.0.0/8 covers loopback")
        );
        assert_eq!(
            conflict("127.1.2.3").as_deref(),
            Some("127.1.2.3/32 covers loopback")
        );
        assert_eq!(conflict("::1").as_deref(), Some("::1/128 covers loopback"));
        // IPv4-mapped loopback is loopback.
        assert_eq!(
            conflict("::ffff:127.0.0.1").as_deref(),
            Some("127.0.0.1/32 covers loopback")
        );
        assert_eq!(
            conflict("192.0.0.0/8").as_deref(),
            Some("192.0.0.0/8 covers the AMI host 192.0.2.1")
        );
        // Covering an allowed network, inside one, or the same.
        assert_eq!(
            conflict("198.0.0.0/8").as_deref(),
            Some("198.0.0.0/8 overlaps the allow list entry 198.51.100.0/24")
        );
        assert_eq!(
            conflict("198.51.100.7").as_deref(),
            Some("198.51.100.7/32 overlaps the allow list entry 198.51.100.0/24")
        );
        assert_eq!(
            conflict("198.51.100.0/24").as_deref(),
            Some("198.51.100.0/24 is on the allow list")
        );
        assert_eq!(
            conflict("2001:db8::/32").as_deref(),
            Some("2001:db8::/32 overlaps the allow list entry 2001:db8:1::/48")
        );
        for fine in [
            "10.0.0.0/8",
            "203.0.113.7",
            "198.51.101.0/24",
            "2001:db8:2::/48",
        ] {
            assert_eq!(conflict(fine), None, "{fine}");
        }
    }

    #[test]
    fn the_kernel_exempts_every_protected_network_from_its_limits() {
        let p = policy();
        let nets: Vec<String> = p
            .kernel_allow_nets()
            .iter()
            .map(|n| n.to_string())
            .collect();
        for want in [
            "198.51.100.0/24",
            "2001:db8:1::/48",
            "127.0.0.0/8",
            "::1/128",
            "192.0.2.1/32",
        ] {
            assert!(nets.iter().any(|n| n == want), "{want}: {nets:?}");
        }
    }

    #[test]
    fn a_persistent_flooder_is_banned_for_rate_limit() {
        let p = policy();
        let ev = event(EventKind::RateLimit, "203.0.113.9");
        match p.judge(&ev, 0) {
            Verdict::Ban { reason, .. } => assert_eq!(reason, "rate limit"),
            other => panic!("{other:?}"),
        }
        // Allowed sources are exempt in the kernel; were one reported, it
        // is spared.
        let ev = event(EventKind::RateLimit, "198.51.100.9");
        assert!(matches!(p.judge(&ev, 0), Verdict::Spared(_)));
    }

    #[test]
    fn protected_sources_are_spared() {
        let p = policy();
        let judge = |ip| p.judge(&event(EventKind::InvalidPassword, ip), 0);
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
