//! The SIP ports by protocol (`[firewall] ports`, `udp/5060, tcp/5061,
//! udp/10000-20000`) and their nftables and iptables forms.

use std::fmt;

use crate::firewall::rule::RuleError;

/// A transport a SIP server listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Protocol::Udp),
            "tcp" => Some(Protocol::Tcp),
            "sctp" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Destination ports `first..=last` (1-65535).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Option<PortRange> {
        (first >= 1 && first <= last).then_some(PortRange { first, last })
    }

    pub fn single(port: u16) -> Option<PortRange> {
        PortRange::new(port, port)
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    /// `5060`, `10000-20000` (also `10000:20000`, iptables' spelling).
    pub fn parse(s: &str) -> Result<PortRange, RuleError> {
        let bad = || {
            RuleError(format!(
                "bad port {s:?} (1-65535, or a range like 10000-20000)"
            ))
        };
        let port = |p: &str| p.trim().parse::<u16>().map_err(|_| bad());
        let range = match s.split_once(['-', ':']) {
            Some((a, b)) => PortRange::new(port(a)?, port(b)?),
            None => PortRange::single(port(s)?),
        };
        range.ok_or_else(bad)
    }

    /// Ports a range takes in iptables' multiport (at most 15 per rule).
    fn slots(self) -> usize {
        if self.first == self.last { 1 } else { 2 }
    }

    fn ipt(self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}:{}", self.first, self.last)
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// The ports of one protocol; `None` is every port (`-p udp` alone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtoPorts {
    pub proto: Protocol,
    pub ports: Option<Vec<PortRange>>,
}

impl ProtoPorts {
    /// nftables match: `udp dport { 5060, 10000-20000 }` or `meta l4proto udp`.
    pub fn nft(&self) -> String {
        match &self.ports {
            None => format!("meta l4proto {}", self.proto),
            Some(ports) => {
                let list: Vec<String> = ports.iter().map(PortRange::to_string).collect();
                format!("{} dport {{ {} }}", self.proto, list.join(", "))
            }
        }
    }

    /// iptables arguments, one list per rule: `-p udp --dport 5060`, or
    /// `-p tcp -m multiport --dports 5060,5061` (several rules past the 15
    /// ports multiport takes).
    pub fn ipt(&self) -> Vec<Vec<String>> {
        let p = self.proto.name().to_string();
        let Some(ports) = &self.ports else {
            return vec![vec!["-p".into(), p]];
        };
        if let [one] = ports.as_slice() {
            return vec![vec!["-p".into(), p, "--dport".into(), one.ipt()]];
        }
        let mut rules = Vec::new();
        let mut chunk: Vec<String> = Vec::new();
        let mut used = 0;
        for r in ports {
            if used + r.slots() > MULTIPORT_SLOTS {
                rules.push(std::mem::take(&mut chunk));
                used = 0;
            }
            used += r.slots();
            chunk.push(r.ipt());
        }
        rules.push(chunk);
        rules
            .into_iter()
            .map(|c| {
                vec![
                    "-p".into(),
                    p.clone(),
                    "-m".into(),
                    "multiport".into(),
                    "--dports".into(),
                    c.join(","),
                ]
            })
            .collect()
    }
}

/// Ports one iptables multiport match takes (a range counts twice).
pub(super) const MULTIPORT_SLOTS: usize = 15;

/// Most entries in `[firewall] ports`: more is a typo, not a PBX.
pub const MAX_PORT_ENTRIES: usize = 64;

/// The SIP ports, one entry per protocol (udp, tcp, sctp in that order),
/// ranges sorted and merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipPorts(pub(super) Vec<ProtoPorts>);

impl SipPorts {
    /// What Asterisk serves by default: SIP over UDP and TCP on 5060, TLS on
    /// 5061.
    pub fn standard() -> SipPorts {
        Self::from_entries(vec![
            (Protocol::Udp, PortRange::single(5060)),
            (Protocol::Tcp, PortRange::single(5060)),
            (Protocol::Tcp, PortRange::single(5061)),
        ])
    }

    /// The original SIPban's `-p udp --dport 5060`.
    pub fn original() -> SipPorts {
        Self::from_entries(vec![(Protocol::Udp, PortRange::single(5060))])
    }

    /// `None` as the range: every port of the protocol.
    fn from_entries(entries: Vec<(Protocol, Option<PortRange>)>) -> SipPorts {
        let mut out: Vec<ProtoPorts> = Vec::new();
        for proto in [Protocol::Udp, Protocol::Tcp, Protocol::Sctp] {
            let mine: Vec<Option<PortRange>> = entries
                .iter()
                .filter(|(p, _)| *p == proto)
                .map(|(_, r)| *r)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let ports = if mine.iter().any(Option::is_none) {
                None
            } else {
                Some(merge(mine.into_iter().flatten().collect()))
            };
            out.push(ProtoPorts { proto, ports });
        }
        SipPorts(out)
    }

    /// `udp/5060, tcp/5060, tcp/5061`, ranges `udp/10000-20000`, every
    /// port of a protocol `udp/*`.
    pub fn parse(s: &str) -> Result<SipPorts, RuleError> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Err(RuleError("name at least one port, e.g. udp/5060".into()));
        }
        if items.len() > MAX_PORT_ENTRIES {
            return Err(RuleError(format!(
                "{} entries; at most {MAX_PORT_ENTRIES}",
                items.len()
            )));
        }
        let mut entries = Vec::new();
        for item in items {
            let Some((proto, port)) = item.split_once('/') else {
                return Err(RuleError(format!(
                    "{item:?} is not PROTOCOL/PORT (e.g. udp/5060, tcp/5061, udp/10000-20000)"
                )));
            };
            let proto = Protocol::parse(proto.trim())
                .ok_or_else(|| RuleError(format!("{item:?}: the protocol is udp, tcp or sctp")))?;
            let range = match port.trim() {
                "*" => None,
                p => Some(PortRange::parse(p)?),
            };
            entries.push((proto, range));
        }
        Ok(Self::from_entries(entries))
    }

    pub fn protocols(&self) -> &[ProtoPorts] {
        &self.0
    }

    /// The TCP entry (new-connection limits apply to it).
    pub fn tcp(&self) -> Option<&ProtoPorts> {
        self.0.iter().find(|p| p.proto == Protocol::Tcp)
    }
}

impl Default for SipPorts {
    fn default() -> Self {
        Self::standard()
    }
}

impl fmt::Display for SipPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        for p in &self.0 {
            match &p.ports {
                None => items.push(format!("{}/*", p.proto)),
                Some(ports) => items.extend(ports.iter().map(|r| format!("{}/{r}", p.proto))),
            }
        }
        f.write_str(&items.join(", "))
    }
}

/// Sorted, overlapping ranges merged (neighbours stay apart, as written:
/// `5060, 5061` is two ports, not `5060-5061`).
pub(super) fn merge(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.first <= last.last => {
                last.last = last.last.max(r.last);
            }
            _ => out.push(r),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ports_parse_merge_and_print_back() {
        let p = SipPorts::parse("tcp/5061, udp/5060 , tcp/5060").unwrap();
        assert_eq!(p, SipPorts::standard());
        assert_eq!(p.to_string(), "udp/5060, tcp/5060, tcp/5061");
        assert_eq!(SipPorts::parse(&p.to_string()).unwrap(), p);
        let r = SipPorts::parse("udp/10000-20000, UDP/5060, sctp/*, udp/15000:25000").unwrap();
        assert_eq!(r.to_string(), "udp/5060, udp/10000-25000, sctp/*");
        for bad in [
            "",
            " , ",
            "5060",
            "icmp/1",
            "udp/0",
            "udp/65536",
            "udp/6000-5000",
            "udp/",
            "udp/x",
        ] {
            assert!(SipPorts::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_port_lists_never_panic(s in "\\PC{0,80}") {
            if let Ok(p) = SipPorts::parse(&s) {
                prop_assert_eq!(SipPorts::parse(&p.to_string()).unwrap(), p);
            }
        }

        #[test]
        fn port_lists_round_trip_and_fit_multiport(list in proptest::collection::vec(
            (0..3usize, 1u16..=65535, 0u16..100), 1..20)) {
            let text: Vec<String> = list
                .iter()
                .map(|(p, a, n)| {
                    let proto = ["udp", "tcp", "sctp"][*p];
                    format!("{proto}/{a}-{}", a.saturating_add(*n))
                })
                .collect();
            let ports = SipPorts::parse(&text.join(", ")).unwrap();
            prop_assert_eq!(SipPorts::parse(&ports.to_string()).unwrap(), ports.clone());
            for p in ports.protocols() {
                for rule in p.ipt() {
                    let slots: usize = rule
                        .last()
                        .unwrap()
                        .split(',')
                        .map(|r| if r.contains(':') { 2 } else { 1 })
                        .sum();
                    prop_assert!(slots <= MULTIPORT_SLOTS);
                }
            }
        }
    }
}
