//! What a ban blocks, as a typed match: the SIP ports by protocol
//! (`[firewall] ports`, or the original's `[iptables] scope` parsed), whether
//! a ban covers only those or every packet (`[firewall] block`), and an
//! optional input interface. Every backend renders the same match, so a
//! scope one of them cannot express exactly is refused when the config is
//! read instead of being narrowed silently (nftables used to install
//! `-p udp -p tcp` as TCP only).

mod ports;

use std::fmt;

use super::rule::RuleError;
use ports::merge;
pub use ports::{MAX_PORT_ENTRIES, PortRange, ProtoPorts, Protocol, SipPorts};

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

    /// Words an operator's scope is made of, good and bad.
    const WORDS: &[&str] = &[
        "-p",
        "--protocol",
        "udp",
        "tcp",
        "sctp",
        "icmp",
        "-m",
        "multiport",
        "conntrack",
        "--dport",
        "--dports",
        "5060",
        "5060:5070",
        "5060,5061",
        "0",
        "99999",
        "-i",
        "eth0",
        "ppp+",
        "!",
        "-s",
        "10.0.0.0/8",
        "-j",
        "ACCEPT",
    ];

    proptest! {
        #[test]
        fn scope_shaped_words_never_panic_and_print_back(
            picks in proptest::collection::vec(0..WORDS.len(), 0..10)
        ) {
            let text: Vec<&str> = picks.iter().map(|&i| WORDS[i]).collect();
            match Scope::parse(&text.join(" ")) {
                Ok(sc) => {
                    let words = sc.legacy_words().unwrap();
                    prop_assert_eq!(Scope::parse(&words).unwrap(), sc);
                }
                Err(e) => prop_assert!(!e.0.is_empty()),
            }
        }

        #[test]
        fn interface_names_are_bounded_and_print_back(name in "\\PC{0,24}") {
            if let Ok(i) = Interface::parse(&name) {
                prop_assert!(i.name().len() <= MAX_IFNAME);
                prop_assert_eq!(Interface::parse(i.name()).unwrap(), i.clone());
                prop_assert!(!i.nft().contains('\\') && i.nft().matches('"').count() == 2);
            }
        }

        #[test]
        fn arbitrary_scopes_never_panic_and_print_back(s in "\\PC{0,80}") {
            if let Ok(sc) = Scope::parse(&s) {
                // What is accepted prints back as the same scope.
                let words = sc.legacy_words().unwrap();
                prop_assert_eq!(Scope::parse(&words).unwrap(), sc.clone());
                for rule in sc.ipt_ban_matches() {
                    prop_assert!(rule.iter().all(|w| !w.is_empty() && !w.contains(' ')));
                }
            }
        }
    }
}
