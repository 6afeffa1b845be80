//! Typed forms of the `[iptables] rule` and `scope` settings, so nothing
//! free-form from the config reaches a firewall command line unchecked.

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

/// Which INPUT traffic jumps to our chain, e.g. `-p udp --dport 5060`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, RuleError> {
        let words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        for w in &words {
            if matches!(w.as_str(), "-j" | "--jump" | "-g" | "--goto") {
                return Err(RuleError(format!(
                    "{w} is not allowed in a scope: sipban adds the jump itself"
                )));
            }
            let ok = w
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:,/!+".contains(c));
            if !ok {
                return Err(RuleError(format!("unexpected characters in {w:?}")));
            }
        }
        Ok(Scope(words))
    }

    pub fn args(&self) -> &[String] {
        &self.0
    }
}

impl Default for Scope {
    fn default() -> Self {
        Scope(vec![
            "-p".into(),
            "udp".into(),
            "--dport".into(),
            "5060".into(),
        ])
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
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
    fn scopes() {
        assert_eq!(
            Scope::parse("-p udp --dport 5060").unwrap(),
            Scope::default()
        );
        assert!(Scope::parse("-p udp -m multiport --dports 5060,5061").is_ok());
        assert!(Scope::parse("-p udp -j ACCEPT").is_err());
        assert!(Scope::parse("-p udp $(reboot)").is_err());
    }
}
