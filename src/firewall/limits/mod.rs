//! Per-source limits in the kernel (`[limits]`): a packet rate on the SIP
//! ports (the SIPVicious mitigation every guide gives: hashlimit 50/s,
//! burst 100, per source), sipPROT's static protections (a TFTP rate for
//! provisioning servers, a rate of new TCP/TLS connections to the SIP ports,
//! large DNS answers dropped against CVE-2015-7547), and the count of
//! packets each source sent over the SIP rate, which [`watch`] turns into a
//! `rate limit` event for the policy when a source keeps exceeding it.
//!
//! Allowed networks (the allow list, loopback, the AMI host) are exempt:
//! the backends hold them in sets of their own ([`super::Backend::set_allowed`]).
//!
//! - [`nft`]: the nftables form (meters in our table);
//! - [`ipt`]: the iptables form (hashlimit, ipsets for the exempt networks
//!   and the counts), shared by the ipset and chain backends;
//! - [`watch`]: reads the counts and reports persistent flooders.

pub mod ipt;
pub mod nft;
pub mod watch;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::FirewallError;
use super::scope::{PortRange, ProtoPorts, Protocol};

/// The unit of a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn secs(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86400,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }

    /// hashlimit's spelling.
    fn ipt(self) -> &'static str {
        match self {
            Per::Second => "sec",
            Per::Minute => "min",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// Highest count of a rate and largest burst: hashlimit's own bounds (its
/// older revisions cap both at 10,000).
pub const MAX_RATE: u32 = 10_000;
pub const MAX_BURST: u32 = 10_000;

/// Packets per unit of time, e.g. `50/second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Per,
}

impl Rate {
    /// `50/second` (also `50/s`, `50/sec`), `10/minute` (`/min`, `/m`),
    /// `/hour` (`/h`), `/day` (`/d`).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let bad = || "not a rate (e.g. 50/second, 10/minute)".to_string();
        let (count, unit) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            "d" | "day" => Per::Day,
            _ => return Err("the unit is second, minute, hour or day".into()),
        };
        if !(1..=MAX_RATE).contains(&count) {
            return Err(format!("the count is 1-{MAX_RATE}"));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.name())
    }
}

/// A per-source rate with its burst (packets let through at once before
/// the rate applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub rate: Rate,
    pub burst: u32,
}

impl RateLimit {
    /// The article's SIP limit: 50/second, burst 100.
    pub const SIP: RateLimit = RateLimit {
        rate: Rate {
            count: 50,
            per: Per::Second,
        },
        burst: 100,
    };
    /// sipPROT's TFTP limit: 10/minute, burst 100.
    pub const TFTP: RateLimit = RateLimit {
        rate: Rate {
            count: 10,
            per: Per::Minute,
        },
        burst: 100,
    };
    /// New TCP/TLS connections: 10/minute, burst 20 (a phone opens one
    /// and keeps it; a reconnecting office a few).
    pub const TCP_CONNECT: RateLimit = RateLimit {
        rate: Rate {
            count: 10,
            per: Per::Minute,
        },
        burst: 20,
    };

    /// How long the kernel keeps a source's bucket: the time an empty one
    /// takes to fill again (at least a minute), so a source pausing for
    /// less cannot start over with a full burst.
    pub fn keep(&self) -> Duration {
        let refill = u64::from(self.burst) * self.rate.per.secs() / u64::from(self.rate.count);
        Duration::from_secs(refill.clamp(60, 7 * 86400))
    }

    /// nftables statement inside a meter: `limit rate over 50/second burst
    /// 100 packets`.
    pub fn nft(&self) -> String {
        format!("limit rate over {} burst {} packets", self.rate, self.burst)
    }

    /// hashlimit match arguments, per source address, in the table `name`.
    pub fn ipt(&self, name: &str) -> Vec<String> {
        let expire_ms = self.keep().as_millis().min(u128::from(u32::MAX));
        [
            "-m",
            "hashlimit",
            "--hashlimit-above",
            &format!("{}/{}", self.rate.count, self.rate.per.ipt()),
            "--hashlimit-burst",
            &self.burst.to_string(),
            "--hashlimit-mode",
            "srcip",
            "--hashlimit-name",
            name,
            "--hashlimit-htable-expire",
            &expire_ms.to_string(),
        ]
        .map(str::to_string)
        .to_vec()
    }
}

/// DNS answers larger than this (bytes, IP header included) are dropped
/// by the DNS protection (CVE-2015-7547: glibc's getaddrinfo overflowed
/// on larger ones).
pub const DNS_MAX_BYTES: u16 = 2048;

/// `[limits]`: every protection is off unless set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Packets per source to the SIP ports (every protocol of
    /// `[firewall] ports`, one bucket per source).
    pub sip: Option<RateLimit>,
    /// A source over the SIP rate for this long is reported to the policy
    /// (reason `rate limit`); `None`: never, it is only limited.
    pub sip_ban_after: Option<Duration>,
    /// Requests per source to TFTP (udp/69).
    pub tftp: Option<RateLimit>,
    /// New TCP connections (SYN) per source to the TCP SIP ports.
    pub tcp_connect: Option<RateLimit>,
    /// Drop DNS answers (udp from port 53) larger than [`DNS_MAX_BYTES`].
    pub dns: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sip: None,
            sip_ban_after: Some(Duration::from_secs(30)),
            tftp: None,
            tcp_connect: None,
            dns: false,
        }
    }
}

impl Limits {
    /// Every protection off, nothing counted (what a backend has unless
    /// given `[limits]`).
    pub const OFF: Limits = Limits {
        sip: None,
        sip_ban_after: None,
        tftp: None,
        tcp_connect: None,
        dns: false,
    };

    /// Whether any rule is to be installed.
    pub fn any(&self) -> bool {
        self.sip.is_some() || self.tftp.is_some() || self.tcp_connect.is_some() || self.dns
    }

    /// Whether rules exempting the allowed networks are needed.
    pub fn per_source(&self) -> bool {
        self.sip.is_some() || self.tftp.is_some() || self.tcp_connect.is_some()
    }

    /// Whether over-limit SIP packets are counted per source (and read).
    pub fn counted(&self) -> bool {
        self.sip.is_some() && self.sip_ban_after.is_some()
    }
}

/// TFTP's port.
pub fn tftp_ports() -> ProtoPorts {
    ProtoPorts {
        proto: Protocol::Udp,
        ports: PortRange::single(69).map(|p| vec![p]),
    }
}

/// Packets each source sent over the SIP rate, as the kernel counts them
/// (cumulative since the source's counter appeared; the counter disappears
/// after a while without excess, and starts again from zero).
pub trait OverLimitReader: Send {
    fn read(&mut self) -> Result<Vec<(IpAddr, u64)>, FirewallError>;
}

/// What the daemon needs to turn counts into events.
pub struct FloodWatch {
    pub reader: Box<dyn OverLimitReader>,
    /// See [`Limits::sip_ban_after`].
    pub ban_after: Duration,
}

impl fmt::Debug for FloodWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FloodWatch")
            .field("ban_after", &self.ban_after)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates() {
        let r = Rate::parse("50/second").unwrap();
        assert_eq!(r.to_string(), "50/second");
        assert_eq!(Rate::parse(" 10 / min ").unwrap().to_string(), "10/minute");
        assert_eq!(Rate::parse("3/h").unwrap().per, Per::Hour);
        for bad in [
            "",
            "50",
            "/s",
            "0/second",
            "10001/second",
            "5/week",
            "-1/s",
            "x/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            RateLimit::SIP.nft(),
            "limit rate over 50/second burst 100 packets"
        );
        let args = RateLimit::TFTP.ipt("t");
        assert_eq!(args[3], "10/min");
        // 100 requests at 10 a minute refill in 10 minutes.
        assert_eq!(RateLimit::TFTP.keep(), Duration::from_secs(600));
        assert_eq!(RateLimit::SIP.keep(), Duration::from_secs(60));
        assert_eq!(args.last().unwrap(), "600000");
    }

    proptest! {
        #[test]
        fn arbitrary_rates_never_panic_and_print_back(s in "\\PC{0,24}") {
            if let Ok(r) = Rate::parse(&s) {
                prop_assert_eq!(Rate::parse(&r.to_string()), Ok(r));
                let limit = RateLimit { rate: r, burst: MAX_BURST };
                prop_assert!(limit.keep() >= Duration::from_secs(60));
            }
        }
    }
}
