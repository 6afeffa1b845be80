//! Typed forms of the `[iptables] rule` setting and of the hook, so nothing
//! free-form from the config reaches a firewall command line unchecked
//! (the scope is [`super::scope`]).

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct RuleError(pub String);

/// What happens to a banned source's packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Drop,
    /// `REJECT`, optionally `--reject-with TYPE`.
    Reject(Option<String>),
}

const REJECT_V4: &[&str] = &[
    "icmp-net-unreachable",
    "icmp-host-unreachable",
    "icmp-port-unreachable",
    "icmp-proto-unreachable",
    "icmp-net-prohibited",
    "icmp-host-prohibited",
    "icmp-admin-prohibited",
    "tcp-reset",
];

const REJECT_V6: &[&str] = &[
    "icmp6-no-route",
    "no-route",
    "icmp6-adm-prohibited",
    "adm-prohibited",
    "icmp6-addr-unreachable",
    "addr-unreach",
    "icmp6-port-unreachable",
    "port-unreach",
    "tcp-reset",
];

impl Action {
    /// Parses `DROP`, `REJECT` or `REJECT --reject-with TYPE` for one family.
    pub fn parse(s: &str, ipv6: bool) -> Result<Action, RuleError> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            [w] if w.eq_ignore_ascii_case("DROP") => Ok(Action::Drop),
            [w] if w.eq_ignore_ascii_case("REJECT") => Ok(Action::Reject(None)),
            [w, flag, kind] if w.eq_ignore_ascii_case("REJECT") && *flag == "--reject-with" => {
                let allowed = if ipv6 { REJECT_V6 } else { REJECT_V4 };
                if allowed.contains(kind) {
                    Ok(Action::Reject(Some(kind.to_string())))
                } else {
                    Err(RuleError(format!(
                        "unknown --reject-with type {kind:?} for {} (known: {})",
                        if ipv6 { "IPv6" } else { "IPv4" },
                        allowed.join(", ")
                    )))
                }
            }
            _ => Err(RuleError(
                "expected DROP, REJECT or REJECT --reject-with TYPE".to_string(),
            )),
        }
    }

    /// The IPv6 counterpart of an IPv4 action (ICMP types differ).
    pub fn to_ipv6(&self) -> Action {
        match self {
            Action::Drop => Action::Drop,
            Action::Reject(None) => Action::Reject(None),
            Action::Reject(Some(kind)) => {
                let v6 = match kind.as_str() {
                    "icmp-net-unreachable" => "icmp6-no-route",
                    "icmp-host-unreachable" => "icmp6-addr-unreachable",
                    "icmp-port-unreachable" | "icmp-proto-unreachable" => "icmp6-port-unreachable",
                    "tcp-reset" => "tcp-reset",
                    _ => "icmp6-adm-prohibited",
                };
                Action::Reject(Some(v6.to_string()))
            }
        }
    }

    /// iptables arguments after `-j`.
    pub fn args(&self) -> Vec<String> {
        match self {
            Action::Drop => vec!["DROP".into()],
            Action::Reject(None) => vec!["REJECT".into()],
            Action::Reject(Some(k)) => vec!["REJECT".into(), "--reject-with".into(), k.clone()],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.args().join(" "))
    }
}

/// Where the set backends drop banned traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Before connection tracking (nftables prerouting at raw priority,
    /// iptables `raw` PREROUTING): a flood creates no conntrack entries and
    /// no earlier ESTABLISHED rule can let a banned source through. Only
    /// DROP is possible there.
    Raw,
    /// nftables input hook / iptables `filter` INPUT: REJECT possible.
    Filter,
}

impl Hook {
    pub fn parse(s: &str) -> Result<Hook, RuleError> {
        match s.to_ascii_lowercase().as_str() {
            "raw" | "prerouting" => Ok(Hook::Raw),
            "filter" | "input" => Ok(Hook::Filter),
            _ => Err(RuleError("expected raw or filter".into())),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hook::Raw => "raw",
            Hook::Filter => "filter",
        })
    }
}

impl Action {
    /// The action usable at `hook`: REJECT exists only in the filter hook,
    /// so in raw it becomes DROP.
    pub fn at(&self, hook: Hook) -> Action {
        match hook {
            Hook::Raw => Action::Drop,
            Hook::Filter => self.clone(),
        }
    }

    /// nftables statement (inet family) for this action.
    pub fn to_nft(&self) -> String {
        match self {
            Action::Drop => "drop".into(),
            Action::Reject(None) => "reject".into(),
            Action::Reject(Some(kind)) => match kind.as_str() {
                "tcp-reset" => "reject with tcp reset".into(),
                "icmp-net-unreachable" | "icmp6-no-route" | "no-route" => {
                    "reject with icmpx type no-route".into()
                }
                "icmp-host-unreachable" | "icmp6-addr-unreachable" | "addr-unreach" => {
                    "reject with icmpx type host-unreachable".into()
                }
                "icmp-port-unreachable"
                | "icmp-proto-unreachable"
                | "icmp6-port-unreachable"
                | "port-unreach" => "reject with icmpx type port-unreachable".into(),
                _ => "reject with icmpx type admin-prohibited".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        assert_eq!(Action::parse("DROP", false), Ok(Action::Drop));
        let r = Action::parse("REJECT --reject-with icmp-port-unreachable", false).unwrap();
        assert_eq!(r.to_string(), "REJECT --reject-with icmp-port-unreachable");
        assert_eq!(
            r.to_ipv6().to_string(),
            "REJECT --reject-with icmp6-port-unreachable"
        );
        assert!(Action::parse("ACCEPT", false).is_err());
        assert!(Action::parse("REJECT --reject-with icmp-port-unreachable", true).is_err());
        assert!(Action::parse("DROP; rm -rf /", false).is_err());
    }

    #[test]
    fn actions_by_hook_and_in_nft() {
        let reject = Action::parse("REJECT --reject-with icmp-port-unreachable", false).unwrap();
        assert_eq!(reject.at(Hook::Raw), Action::Drop);
        assert_eq!(
            reject.at(Hook::Filter).to_nft(),
            "reject with icmpx type port-unreachable"
        );
        assert_eq!(Action::Drop.to_nft(), "drop");
        assert_eq!(Hook::parse("RAW"), Ok(Hook::Raw));
        assert!(Hook::parse("mangle").is_err());
    }
}
