//! What a ban blocks, as a typed match: the SIP ports by protocol
//! (`[firewall] ports`, or the original's `[iptables] scope` parsed), whether
//! a ban covers only those or every packet (`[firewall] block`), and an
//! optional input interface. Every backend renders the same match, so a
//! scope one of them cannot express exactly is refused when the config is
//! read instead of being narrowed silently (nftables used to install
//! `-p udp -p tcp` as TCP only).

use std::fmt;

use super::rule::RuleError;

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
const MULTIPORT_SLOTS: usize = 15;

/// Most entries in `[firewall] ports`: more is a typo, not a PBX.
pub const MAX_PORT_ENTRIES: usize = 64;

/// The SIP ports, one entry per protocol (udp, tcp, sctp in that order),
/// ranges sorted and merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipPorts(Vec<ProtoPorts>);

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
fn merge(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
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

/// `[firewall] block`: what a ban covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Block {
    /// Only the SIP ports.
    #[default]
    Sip,
    /// Every port and protocol from the banned source (fail2ban's
    /// allports actions).
    All,
}

impl Block {
    pub fn parse(s: &str) -> Result<Block, RuleError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sip" => Ok(Block::Sip),
            "all" => Ok(Block::All),
            _ => Err(RuleError("expected sip or all".into())),
        }
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::Sip => "sip",
            Block::All => "all",
        })
    }
}

/// An input interface name (`eth0`; iptables' trailing `+` wildcard
/// allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface(String);

/// `IFNAMSIZ` - 1.
const MAX_IFNAME: usize = 15;

impl Interface {
    pub fn parse(s: &str) -> Result<Interface, RuleError> {
        let name = s.strip_suffix('+').unwrap_or(s);
        let ok = !name.is_empty()
            && s.len() <= MAX_IFNAME
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(Interface(s.to_string()))
        } else {
            Err(RuleError(format!(
                "{s:?} is not an interface name (1-15 letters, digits, '-', '_', '.'; \
                 a trailing '+' matches every name starting so)"
            )))
        }
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    fn nft(&self) -> String {
        match self.0.strip_suffix('+') {
            Some(prefix) => format!("iifname \"{prefix}*\""),
            None => format!("iifname \"{}\"", self.0),
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a ban blocks, and where the rate limits apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The SIP ports: what a ban blocks unless `block` is all, and what the
    /// SIP rate limits watch.
    pub sip: SipPorts,
    pub block: Block,
    pub interface: Option<Interface>,
}

impl Default for Scope {
    /// The set backends' default: udp/5060, tcp/5060, tcp/5061.
    fn default() -> Self {
        Scope {
            sip: SipPorts::standard(),
            block: Block::Sip,
            interface: None,
        }
    }
}

impl Scope {
    /// The original SIPban's `-p udp --dport 5060`.
    pub fn original() -> Scope {
        Scope {
            sip: SipPorts::original(),
            ..Scope::default()
        }
    }

    /// Parses the original's `[iptables] scope` (iptables words). Only what
    /// every backend expresses exactly is accepted: `-p udp|tcp|sctp`,
    /// `-m udp|tcp|sctp|multiport`, `--dport N[:M]`, `--dports A,B[:C]`,
    /// `-i IFACE`. An empty scope matches every packet (`block = all`).
    pub fn parse(s: &str) -> Result<Scope, RuleError> {
        let mut proto: Option<Protocol> = None;
        let mut matched: Option<Protocol> = None;
        let mut ports: Option<Vec<PortRange>> = None;
        let mut interface: Option<Interface> = None;
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| RuleError(format!("{w} needs a value")))
            };
            match w {
                "-j" | "--jump" | "-g" | "--goto" => {
                    return Err(RuleError(format!(
                        "{w} is not allowed in a scope: sipban adds the jump itself"
                    )));
                }
                "!" => {
                    return Err(RuleError(
                        "a negation (!) cannot be expressed exactly by the set backends; \
                         list the ports to cover in [firewall] ports instead"
                            .into(),
                    ));
                }
                "-p" | "--protocol" => {
                    let v = value()?;
                    let p = Protocol::parse(v).ok_or_else(|| {
                        RuleError(format!("protocol {v:?}: a scope matches udp, tcp or sctp"))
                    })?;
                    if let Some(first) = proto {
                        return Err(RuleError(format!(
                            "names two protocols (-p {first}, -p {p}): one rule matches one \
                             protocol; remove scope and set [firewall] ports (e.g. \
                             udp/5060, tcp/5060, tcp/5061)"
                        )));
                    }
                    proto = Some(p);
                }
                "-m" | "--match" => {
                    let v = value()?;
                    if v == "multiport" {
                        continue;
                    }
                    let p = Protocol::parse(v).ok_or_else(|| {
                        RuleError(format!(
                            "match {v:?} cannot be expressed exactly by the set backends \
                             (a scope understands -p, -m udp|tcp|sctp|multiport, --dport, \
                             --dports, -i)"
                        ))
                    })?;
                    matched = Some(p);
                }
                "--dport" | "--destination-port" | "--dports" | "--destination-ports" => {
                    if ports.is_some() {
                        return Err(RuleError(format!("{w}: the ports are given twice")));
                    }
                    let list = value()?
                        .split(',')
                        .map(PortRange::parse)
                        .collect::<Result<Vec<_>, _>>()?;
                    ports = Some(merge(list));
                }
                "-i" | "--in-interface" => {
                    if interface.is_some() {
                        return Err(RuleError("-i is given twice".into()));
                    }
                    interface = Some(Interface::parse(value()?)?);
                }
                other => {
                    return Err(RuleError(format!(
                        "{other:?} cannot be expressed exactly by the set backends (a scope \
                         understands -p, -m udp|tcp|sctp|multiport, --dport, --dports, -i); \
                         use [firewall] ports, block and interface instead"
                    )));
                }
            }
        }
        if let (Some(m), Some(p)) = (matched, proto)
            && m != p
        {
            return Err(RuleError(format!("-m {m} does not match -p {p}")));
        }
        let proto = proto.or(matched);
        match (proto, ports) {
            (None, Some(_)) => Err(RuleError("a port needs -p udp|tcp|sctp".into())),
            (None, None) => Ok(Scope {
                sip: SipPorts::standard(),
                block: Block::All,
                interface,
            }),
            (Some(proto), ports) => Ok(Scope {
                sip: SipPorts(vec![ProtoPorts { proto, ports }]),
                block: Block::Sip,
                interface,
            }),
        }
    }

    /// The scope as `[iptables] scope` words, when it has that form (at
    /// most one protocol): what `--check-config` prints back.
    pub fn legacy_words(&self) -> Option<String> {
        let mut words: Vec<String> = Vec::new();
        if let Some(i) = &self.interface {
            words.extend(["-i".to_string(), i.to_string()]);
        }
        if self.block == Block::All {
            return Some(words.join(" "));
        }
        let [one] = self.sip.protocols() else {
            return None;
        };
        let [rule] = one.ipt().try_into().ok()?;
        words.extend(rule);
        Some(words.join(" "))
    }

    fn nft_prefix(&self) -> String {
        self.interface
            .as_ref()
            .map(Interface::nft)
            .unwrap_or_default()
    }

    fn with_prefix(&self, m: String) -> String {
        let prefix = self.nft_prefix();
        match (prefix.is_empty(), m.is_empty()) {
            (true, _) => m,
            (false, true) => prefix,
            (false, false) => format!("{prefix} {m}"),
        }
    }

    /// nftables matches of what a ban blocks, one per rule (empty text:
    /// every packet).
    pub fn nft_ban_matches(&self) -> Vec<String> {
        match self.block {
            Block::All => vec![self.with_prefix(String::new())],
            Block::Sip => self.nft_sip_matches(),
        }
    }

    /// nftables matches of the SIP ports, one per protocol.
    pub fn nft_sip_matches(&self) -> Vec<String> {
        self.sip
            .protocols()
            .iter()
            .map(|p| self.with_prefix(p.nft()))
            .collect()
    }

    fn ipt_prefix(&self) -> Vec<String> {
        match &self.interface {
            Some(i) => vec!["-i".into(), i.to_string()],
            None => Vec::new(),
        }
    }

    /// iptables arguments of what a ban blocks, one list per rule.
    pub fn ipt_ban_matches(&self) -> Vec<Vec<String>> {
        match self.block {
            Block::All => vec![self.ipt_prefix()],
            Block::Sip => self.ipt_sip_matches(),
        }
    }

    /// iptables arguments of the SIP ports, one list per rule.
    pub fn ipt_sip_matches(&self) -> Vec<Vec<String>> {
        self.sip
            .protocols()
            .iter()
            .flat_map(|p| p.ipt())
            .map(|rule| {
                let mut args = self.ipt_prefix();
                args.extend(rule);
                args
            })
            .collect()
    }

    /// nftables and iptables forms of one protocol's ports with this
    /// scope's interface (the static protections' own ports).
    pub fn nft_for(&self, ports: &ProtoPorts) -> String {
        self.with_prefix(ports.nft())
    }

    pub fn ipt_for(&self, ports: &ProtoPorts) -> Vec<Vec<String>> {
        ports
            .ipt()
            .into_iter()
            .map(|rule| {
                let mut args = self.ipt_prefix();
                args.extend(rule);
                args
            })
            .collect()
    }
}

impl fmt::Display for Scope {
    /// `[iptables] scope` words when the scope has that form, else
    /// `ports (block B) on IFACE`, for log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(words) = self.legacy_words() {
            return f.write_str(&words);
        }
        write!(f, "{} (block {})", self.sip, self.block)?;
        if let Some(i) = &self.interface {
            write!(f, " on {i}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

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

    #[test]
    fn the_original_scope_and_its_common_forms() {
        assert_eq!(
            Scope::parse("-p udp --dport 5060").unwrap(),
            Scope::original()
        );
        assert_eq!(
            Scope::parse("-p udp -m udp --dport 5060").unwrap(),
            Scope::original()
        );
        let s1 =
            Scope::parse("-i eth0 -p udp -m multiport --dports 5060,5061,10000:10010").unwrap();
        assert_eq!(
            s1.nft_ban_matches(),
            vec!["iifname \"eth0\" udp dport { 5060, 5061, 10000-10010 }"]
        );
        assert_eq!(
            s1.legacy_words().unwrap(),
            "-i eth0 -p udp -m multiport --dports 5060,5061,10000:10010"
        );
        let tcp = Scope::parse("-p tcp").unwrap();
        assert_eq!(tcp.nft_ban_matches(), vec!["meta l4proto tcp"]);
        assert_eq!(tcp.legacy_words().unwrap(), "-p tcp");
        let all = Scope::parse("").unwrap();
        assert_eq!(all.block, Block::All);
        assert_eq!(all.nft_ban_matches(), vec![""]);
        assert_eq!(all.ipt_ban_matches(), vec![Vec::<String>::new()]);
        assert_eq!(all.legacy_words().unwrap(), "");
        let eth = Scope::parse("-i eth0").unwrap();
        assert_eq!(eth.ipt_ban_matches(), vec![s(&["-i", "eth0"])]);
        assert_eq!(eth.nft_ban_matches(), vec!["iifname \"eth0\""]);
        assert_eq!(
            Scope::parse("-i ppp+ -p udp --dport 5060")
                .unwrap()
                .nft_ban_matches(),
            vec!["iifname \"ppp*\" udp dport { 5060 }"]
        );
    }

    #[test]
    fn scopes_no_backend_can_express_exactly_are_refused() {
        let err = |s: &str| Scope::parse(s).unwrap_err().0;
        assert!(err("-p udp -p tcp --dport 5060").contains("names two protocols"));
        assert!(err("! -p udp").contains("negation"));
        assert!(err("-p udp ! --dport 5060").contains("negation"));
        assert!(err("-s 10.0.0.0/8 -p udp").contains("\"-s\" cannot be expressed"));
        assert!(err("-p udp -m conntrack --ctstate NEW").contains("match \"conntrack\""));
        assert!(err("-p udp -m tcp").contains("-m tcp does not match -p udp"));
        assert!(err("--dport 5060").contains("a port needs -p"));
        assert!(err("-p udp --dport 99999").contains("bad port"));
        assert!(err("-p udp --dport 5060 --dport 5061").contains("twice"));
        assert!(err("-p udp -j ACCEPT").contains("sipban adds the jump"));
        assert!(err("-p icmp").contains("udp, tcp or sctp"));
        assert!(err("-p").contains("-p needs a value"));
        assert!(err("-i 'eth0'").contains("not an interface"));
        assert!(err("-p udp $(reboot)").contains("cannot be expressed"));
    }

    #[test]
    fn one_rule_per_protocol_and_multiport_chunks() {
        let sc = Scope::default();
        assert_eq!(
            sc.nft_ban_matches(),
            vec!["udp dport { 5060 }", "tcp dport { 5060, 5061 }"]
        );
        assert_eq!(
            sc.ipt_ban_matches(),
            vec![
                s(&["-p", "udp", "--dport", "5060"]),
                s(&["-p", "tcp", "-m", "multiport", "--dports", "5060,5061"]),
            ]
        );
        let many: Vec<String> = (0..20).map(|i| format!("udp/{}", 6000 + 2 * i)).collect();
        let sc = Scope {
            sip: SipPorts::parse(&many.join(",")).unwrap(),
            ..Scope::default()
        };
        let rules = sc.ipt_ban_matches();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].last().unwrap().split(',').count(), 15);
        assert_eq!(rules[1].last().unwrap().split(',').count(), 5);
        let all = Scope {
            block: Block::All,
            interface: Some(Interface::parse("eth1").unwrap()),
            ..Scope::default()
        };
        assert_eq!(all.ipt_ban_matches(), vec![s(&["-i", "eth1"])]);
        assert_eq!(
            all.nft_sip_matches(),
            vec![
                "iifname \"eth1\" udp dport { 5060 }",
                "iifname \"eth1\" tcp dport { 5060, 5061 }"
            ]
        );
        assert_eq!(all.legacy_words().unwrap(), "-i eth1");
        assert_eq!(Scope::default().legacy_words(), None);
    }

    proptest! {
        #[test]
        fn arbitrary_scopes_and_ports_never_panic(s in "\\PC{0,80}") {
            if let Ok(sc) = Scope::parse(&s) {
                // What is accepted prints back as the same scope.
                let words = sc.legacy_words().unwrap();
                prop_assert_eq!(Scope::parse(&words).unwrap(), sc.clone());
                for rule in sc.ipt_ban_matches() {
                    prop_assert!(rule.iter().all(|w| !w.is_empty() && !w.contains(' ')));
                }
            }
            if let Ok(p) = SipPorts::parse(&s) {
                prop_assert_eq!(SipPorts::parse(&p.to_string()).unwrap(), p);
            }
        }

        #[test]
        fn port_lists_round_trip(list in proptest::collection::vec(
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
            let sc = Scope { sip: ports, ..Scope::default() };
            for rule in sc.ipt_ban_matches() {
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
