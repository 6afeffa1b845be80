//! Settings shared by the set-based backends (ipset, nftables).

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use super::Held;
use super::rule::{Action, Hook};
use super::scope::Scope;

/// The longest per-element timeout both ipset and older kernels' nftables
/// accept (ipset's limit, about 24.8 days). A longer ban has its kernel
/// timeout renewed a day before it lapses (the ban store's renewals).
pub const KERNEL_MAX_TIMEOUT: u64 = 2_147_483;

/// Who owns the firewall objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// sipban creates its table/sets/rules and removes them on stop.
    Own,
    /// sipban only fills sets the administrator created and wired into
    /// their own ruleset (firewalld, shorewall, docker, ...).
    SetOnly,
}

impl Ownership {
    pub fn parse(s: &str) -> Result<Ownership, String> {
        match s.to_ascii_lowercase().as_str() {
            "own" => Ok(Ownership::Own),
            "set-only" | "set_only" | "setonly" => Ok(Ownership::SetOnly),
            _ => Err("expected own or set-only".into()),
        }
    }
}

impl std::fmt::Display for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ownership::Own => "own",
            Ownership::SetOnly => "set-only",
        })
    }
}

/// The ipset type of the ban sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetType {
    /// `hash:ip`: one address per element (the default).
    #[default]
    Ip,
    /// `hash:net`, as the 2024 original SIPban's set: the same elements
    /// (a host is a /32), and the administrator may add networks by hand.
    Net,
}

impl SetType {
    pub fn parse(s: &str) -> Result<SetType, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ip" | "hash:ip" => Ok(SetType::Ip),
            "net" | "hash:net" => Ok(SetType::Net),
            _ => Err("expected hash:ip or hash:net".into()),
        }
    }

    /// The ipset type name.
    pub fn ipset(self) -> &'static str {
        match self {
            SetType::Ip => "hash:ip",
            SetType::Net => "hash:net",
        }
    }
}

impl std::fmt::Display for SetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.ipset())
    }
}

#[derive(Clone, Debug)]
pub struct SetSettings {
    /// Directory of the firewall tools (`[iptables] path`).
    pub bin_dir: String,
    /// nftables table as `FAMILY NAME` (own mode: always `inet NAME`).
    pub table: String,
    pub set4: String,
    pub set6: String,
    pub scope: Scope,
    pub action4: Action,
    pub action6: Action,
    pub hook: Hook,
    pub mode: Ownership,
    /// Set-only mode: the administrator's sets for the permanent deny
    /// entries (nftables: `type ipv4_addr; flags interval;`, ipset:
    /// `hash:net family inet`), wired into their ruleset like `set4`;
    /// sipban replaces their whole content with the deny list. `None`: deny
    /// entries of that family are not enforced in the firewall in set-only
    /// mode (a warning says so once). Unused in own mode, where the sets
    /// are ours: `<set4>-deny` / `<set6>-deny`.
    pub deny4: Option<String>,
    pub deny6: Option<String>,
}

impl SetSettings {
    /// The deny set of a family: ours in own mode, the administrator's (if
    /// configured) in set-only mode.
    pub fn deny_set(&self, v6: bool) -> Option<String> {
        match self.mode {
            Ownership::Own => Some(format!("{}-deny", if v6 { &self.set6 } else { &self.set4 })),
            Ownership::SetOnly => {
                if v6 {
                    self.deny6.clone()
                } else {
                    self.deny4.clone()
                }
            }
        }
    }
}

/// When a ban is extended past what the kernel holds, the kernel timeout is
/// renewed with this much extra (seconds), so a flood re-reported every
/// second costs one firewall operation a minute, not one per event.
pub const REFRESH_STEP: u64 = 60;

/// Seconds the kernel keeps an element past the daemon's own expiry: while
/// the daemon runs it always removes the element itself (its batched delete
/// finds it); if the daemon is dead, the ban lapses at most this late.
pub const KERNEL_GRACE: u64 = 2;

/// Remaining ban time as a kernel timeout in whole seconds.
pub fn kernel_timeout(t: Duration) -> u64 {
    (t.as_secs() + KERNEL_GRACE).clamp(1, KERNEL_MAX_TIMEOUT)
}

/// Set-only mode's reading of a listing: the sets also hold the
/// administrator's entries, so ours are the listed addresses we added.
/// `known` forgets what the kernel no longer holds (timed out), except
/// what the applier changed while the listing ran (`touched`).
pub(super) fn adopt_known(
    known: &mut HashSet<IpAddr>,
    held: Vec<Held>,
    touched: &HashSet<IpAddr>,
) -> Vec<IpAddr> {
    let listed: HashSet<IpAddr> = held.iter().map(|h| h.ip).collect();
    known.retain(|ip| listed.contains(ip) || touched.contains(ip));
    held.into_iter()
        .map(|h| h.ip)
        .filter(|ip| known.contains(ip))
        .collect()
}
