//! The limits in nftables, inside our own table: meters (dynamic sets
//! with a `limit rate over` per source) in a chain of their own, `limit`,
//! hooked where the bans are at the next priority (so a banned or denied
//! source is dropped before it is counted), the exempt networks in interval
//! sets `<set4>-allow` / `<set6>-allow`, the over-limit SIP packets counted
//! per source in `<set>-over` (a dynamic set with a counter per element),
//! and the DNS protection in a chain `sipban-dns` at the input hook (after
//! reassembly, so a fragmented answer is measured whole).
//!
//! ```text
//! chain sipban-limit {
//!     type filter hook prerouting priority -299; policy accept;
//!     ip saddr @sipban-udp-v4-allow return
//!     udp dport { 5060 } update @sipban-udp-v4-sip { ip saddr limit rate over 50/second burst 100 packets } update @sipban-udp-v4-over { ip saddr } drop
//!     ...
//! }
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use super::{DNS_MAX_BYTES, Limits, OverLimitReader, RateLimit, tftp_ports};
use crate::firewall::FirewallError;
use crate::firewall::deny::{DenyList, text};
use crate::firewall::libnft::Nft;
use crate::firewall::rule::Hook;
use crate::firewall::scope::Scope;

/// The chain holding the per-source limits.
pub const LIMIT_CHAIN: &str = "sipban-limit";
/// The chain holding the DNS protection.
pub const DNS_CHAIN: &str = "sipban-dns";
/// Sources one meter tracks. Beyond it a new source is not limited (the
/// kernel cannot add its bucket), so a flood from more sources than this
/// is left to the bans.
pub const METER_SIZE: u32 = 65_536;
/// How long a source's over-limit counter survives without excess: longer
/// than any read period, so counts add up between reads.
pub const OVER_KEEP: Duration = Duration::from_secs(120);

/// One meter or set of ours, by what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Allow,
    Sip,
    Over,
    Tftp,
    Tcp,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Allow, Kind::Sip, Kind::Over, Kind::Tftp, Kind::Tcp];

    fn suffix(self) -> &'static str {
        match self {
            Kind::Allow => "allow",
            Kind::Sip => "sip",
            Kind::Over => "over",
            Kind::Tftp => "tftp",
            Kind::Tcp => "tcp",
        }
    }
}

/// The limits of one nftables table.
#[derive(Clone, Debug)]
pub struct NftLimits {
    /// `inet NAME`.
    pub table: String,
    pub set4: String,
    pub set6: String,
    pub scope: Scope,
    pub limits: Limits,
    pub hook: Hook,
}

/// Our chains, sets and rule counts in a `list table` listing.
#[derive(Debug, Default)]
pub struct Objects {
    pub sets: HashSet<String>,
    pub chains: HashSet<String>,
    pub rules: HashMap<String, usize>,
}

impl Objects {
    /// From `nft -j -t list table ...`.
    pub fn parse(json: &str) -> Objects {
        let mut o = Objects::default();
        let Ok(v) = serde_json::from_str::<Value>(json) else {
            return o;
        };
        for item in v["nftables"].as_array().into_iter().flatten() {
            if let Some(name) = item["set"]["name"].as_str() {
                o.sets.insert(name.to_string());
            }
            if let Some(name) = item["chain"]["name"].as_str() {
                o.chains.insert(name.to_string());
            }
            if let Some(chain) = item["rule"]["chain"].as_str() {
                *o.rules.entry(chain.to_string()).or_default() += 1;
            }
        }
        o
    }
}

impl NftLimits {
    fn name(&self, kind: Kind, v6: bool) -> String {
        let base = if v6 { &self.set6 } else { &self.set4 };
        format!("{base}-{}", kind.suffix())
    }

    /// The sets this configuration uses.
    fn wanted(&self) -> Vec<(Kind, bool, String)> {
        let l = &self.limits;
        let on = |k: Kind| match k {
            Kind::Allow => l.per_source(),
            Kind::Sip => l.sip.is_some(),
            Kind::Over => l.counted(),
            Kind::Tftp => l.tftp.is_some(),
            Kind::Tcp => l.tcp_connect.is_some() && self.scope.sip.tcp().is_some(),
        };
        let mut out = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|k| on(*k)) {
            for v6 in [false, true] {
                out.push((kind, v6, self.name(kind, v6)));
            }
        }
        out
    }

    fn set_decl(&self, kind: Kind, v6: bool, name: &str) -> String {
        let t = &self.table;
        let ty = if v6 { "ipv6_addr" } else { "ipv4_addr" };
        let meter = |keep: Duration, extra: &str| {
            format!(
                "add set {t} {name} {{ type {ty}; size {METER_SIZE}; flags dynamic,timeout; \
                 timeout {}s;{extra} }}",
                keep.as_secs()
            )
        };
        let keep = |l: Option<RateLimit>| l.map_or(Duration::from_secs(60), |l| l.keep());
        match kind {
            Kind::Allow => format!("add set {t} {name} {{ type {ty}; flags interval; }}"),
            Kind::Sip => meter(keep(self.limits.sip), ""),
            Kind::Over => meter(OVER_KEEP, " counter;"),
            Kind::Tftp => meter(keep(self.limits.tftp), ""),
            Kind::Tcp => meter(keep(self.limits.tcp_connect), ""),
        }
    }

    /// The rules of the limit chain.
    fn limit_rules(&self) -> Vec<String> {
        let l = &self.limits;
        let mut rules = Vec::new();
        let fam = |v6: bool| if v6 { "ip6" } else { "ip" };
        if l.per_source() {
            for v6 in [false, true] {
                let allow = self.name(Kind::Allow, v6);
                rules.push(format!("{} saddr @{allow} return", fam(v6)));
            }
        }
        let meter = |m: &str, kind: Kind, limit: &RateLimit, v6: bool, count: bool| {
            let mut r = format!(
                "{m} update @{} {{ {} saddr {} }}",
                self.name(kind, v6),
                fam(v6),
                limit.nft()
            );
            if count {
                let _ = write!(
                    r,
                    " update @{} {{ {} saddr }}",
                    self.name(Kind::Over, v6),
                    fam(v6)
                );
            }
            r.push_str(" drop");
            r.trim_start().to_string()
        };
        if let (Some(limit), Some(tcp)) = (&l.tcp_connect, self.scope.sip.tcp()) {
            let m = format!(
                "{} tcp flags & (fin|syn|rst|ack) == syn",
                self.scope.nft_for(tcp)
            );
            for v6 in [false, true] {
                rules.push(meter(&m, Kind::Tcp, limit, v6, false));
            }
        }
        if let Some(limit) = &l.sip {
            for m in self.scope.nft_sip_matches() {
                for v6 in [false, true] {
                    rules.push(meter(&m, Kind::Sip, limit, v6, l.counted()));
                }
            }
        }
        if let Some(limit) = &l.tftp {
            let m = self.scope.nft_for(&tftp_ports());
            for v6 in [false, true] {
                rules.push(meter(&m, Kind::Tftp, limit, v6, false));
            }
        }
        rules
    }

    fn dns_rules(&self) -> Vec<String> {
        if !self.limits.dns {
            return Vec::new();
        }
        vec![format!("udp sport 53 meta length > {DNS_MAX_BYTES} drop")]
    }

    /// One transaction: removes whatever limit objects `present` lists (an
    /// earlier run's, perhaps with other settings) and creates this
    /// configuration's, the exempt sets filled with `allow`.
    pub fn setup(&self, present: &Objects, allow: &DenyList) -> String {
        let t = &self.table;
        let mut sc = String::new();
        for chain in [LIMIT_CHAIN, DNS_CHAIN] {
            if present.chains.contains(chain) {
                let _ = writeln!(sc, "flush chain {t} {chain}\ndelete chain {t} {chain}");
            }
        }
        for kind in Kind::ALL {
            for v6 in [false, true] {
                let name = self.name(kind, v6);
                if present.sets.contains(&name) {
                    let _ = writeln!(sc, "delete set {t} {name}");
                }
            }
        }
        for (kind, v6, name) in self.wanted() {
            let _ = writeln!(sc, "{}", self.set_decl(kind, v6, &name));
        }
        sc.push_str(&self.allow_elements(allow));
        let prio = match self.hook {
            Hook::Raw => ("prerouting", -299),
            Hook::Filter => ("input", 1),
        };
        let limit_rules = self.limit_rules();
        if !limit_rules.is_empty() {
            let _ = writeln!(
                sc,
                "add chain {t} {LIMIT_CHAIN} {{ type filter hook {} priority {}; policy accept; }}",
                prio.0, prio.1
            );
            for r in limit_rules {
                let _ = writeln!(sc, "add rule {t} {LIMIT_CHAIN} {r}");
            }
        }
        let dns_rules = self.dns_rules();
        if !dns_rules.is_empty() {
            let _ = writeln!(
                sc,
                "add chain {t} {DNS_CHAIN} {{ type filter hook input priority -1; policy accept; }}"
            );
            for r in dns_rules {
                let _ = writeln!(sc, "add rule {t} {DNS_CHAIN} {r}");
            }
        }
        sc
    }

    /// `add element` lines putting `allow` in the (just created or flushed)
    /// exempt sets.
    fn allow_elements(&self, allow: &DenyList) -> String {
        let mut sc = String::new();
        if !self.limits.per_source() {
            return sc;
        }
        for v6 in [false, true] {
            let nets: Vec<String> = allow.family(v6).iter().map(text).collect();
            for chunk in nets.chunks(10_000) {
                let _ = writeln!(
                    sc,
                    "add element {} {} {{ {} }}",
                    self.table,
                    self.name(Kind::Allow, v6),
                    chunk.join(", ")
                );
            }
        }
        sc
    }

    /// One transaction making the exempt sets hold exactly `allow`.
    pub fn allow_script(&self, allow: &DenyList) -> String {
        if !self.limits.per_source() {
            return String::new();
        }
        let mut sc = String::new();
        for v6 in [false, true] {
            let _ = writeln!(
                sc,
                "flush set {} {}",
                self.table,
                self.name(Kind::Allow, v6)
            );
        }
        sc.push_str(&self.allow_elements(allow));
        sc
    }

    /// What is missing from `present` (our table's listing).
    pub fn missing(&self, present: &Objects) -> Vec<String> {
        let mut out = Vec::new();
        for (_, _, name) in self.wanted() {
            if !present.sets.contains(&name) {
                out.push(format!("set {name}"));
            }
        }
        for (chain, want) in [
            (LIMIT_CHAIN, self.limit_rules().len()),
            (DNS_CHAIN, self.dns_rules().len()),
        ] {
            if want == 0 {
                continue;
            }
            if !present.chains.contains(chain) {
                out.push(format!("chain {chain}"));
            } else if present.rules.get(chain).copied().unwrap_or(0) != want {
                out.push(format!("rules of chain {chain}"));
            }
        }
        out
    }

    /// The exempt sets of each family, for comparing with the allow list.
    pub fn allow_sets(&self) -> Option<[String; 2]> {
        self.limits
            .per_source()
            .then(|| [self.name(Kind::Allow, false), self.name(Kind::Allow, true)])
    }

    /// A reader of the over-limit counts, with its own nftables context.
    pub fn reader(&self, bin: String) -> Option<Box<dyn OverLimitReader>> {
        self.limits.counted().then(|| {
            Box::new(NftOverReader {
                nft: Nft::new(bin, false),
                table: self.table.clone(),
                sets: [self.name(Kind::Over, false), self.name(Kind::Over, true)],
            }) as Box<dyn OverLimitReader>
        })
    }
}

/// Reads `<set>-over` with its own nftables context (never the applier's).
struct NftOverReader {
    nft: Nft,
    table: String,
    sets: [String; 2],
}

impl OverLimitReader for NftOverReader {
    fn read(&mut self) -> Result<Vec<(IpAddr, u64)>, FirewallError> {
        let mut out = Vec::new();
        for set in &self.sets {
            let json = self.nft.run(&format!("list set {} {set}", self.table))?;
            out.extend(parse_counts(&json));
        }
        Ok(out)
    }
}

/// Elements with their counter's packets in `nft -j list set` output.
pub fn parse_counts(json: &str) -> Vec<(IpAddr, u64)> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            let elem = &e["elem"];
            let ip = elem["val"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
            let packets = elem["counter"]["packets"].as_u64();
            if let (Some(ip), Some(packets)) = (ip, packets) {
                out.push((ip, packets));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::limits::Rate;

    fn limits() -> NftLimits {
        NftLimits {
            table: "inet sipban".into(),
            set4: "s4".into(),
            set6: "s6".into(),
            scope: Scope::default(),
            limits: Limits {
                sip: Some(RateLimit::SIP),
                tftp: Some(RateLimit::TFTP),
                tcp_connect: Some(RateLimit {
                    rate: Rate::parse("5/second").unwrap(),
                    burst: 10,
                }),
                dns: true,
                ..Limits::default()
            },
            hook: Hook::Raw,
        }
    }

    #[test]
    fn rules_of_every_protection() {
        let l = limits();
        let sc = l.setup(&Objects::default(), &DenyList::default());
        for want in [
            "add set inet sipban s4-over { type ipv4_addr; size 65536; flags dynamic,timeout; timeout 120s; counter; }",
            "add set inet sipban s6-tftp { type ipv6_addr; size 65536; flags dynamic,timeout; timeout 600s; }",
            "add chain inet sipban sipban-limit { type filter hook prerouting priority -299; policy accept; }",
            "add rule inet sipban sipban-limit ip saddr @s4-allow return",
            "add rule inet sipban sipban-limit tcp dport { 5060, 5061 } tcp flags & (fin|syn|rst|ack) == syn update @s6-tcp { ip6 saddr limit rate over 5/second burst 10 packets } drop",
            "add rule inet sipban sipban-limit udp dport { 5060 } update @s4-sip { ip saddr limit rate over 50/second burst 100 packets } update @s4-over { ip saddr } drop",
            "add rule inet sipban sipban-limit udp dport { 69 } update @s4-tftp { ip saddr limit rate over 10/minute burst 100 packets } drop",
            "add rule inet sipban sipban-dns udp sport 53 meta length > 2048 drop",
        ] {
            assert!(sc.lines().any(|line| line == want), "{want}\n{sc}");
        }
        // Allow 2 + tcp 2 + sip 2 protocols x 2 families + tftp 2.
        assert_eq!(l.limit_rules().len(), 10);
        let present = Objects::parse(
            r#"{"nftables":[{"set":{"name":"s4-sip"}},{"chain":{"name":"sipban-limit"}},{"rule":{"chain":"sipban-limit"}}]}"#,
        );
        let again = l.setup(&present, &DenyList::default());
        assert!(again.starts_with("flush chain inet sipban sipban-limit\ndelete chain inet sipban sipban-limit\ndelete set inet sipban s4-sip\n"), "{again}");
        let missing = l.missing(&present);
        assert!(
            missing.contains(&"rules of chain sipban-limit".to_string()),
            "{missing:?}"
        );
        assert!(
            missing.contains(&"chain sipban-dns".to_string()),
            "{missing:?}"
        );
    }

    #[test]
    fn nothing_when_off() {
        let l = NftLimits {
            limits: Limits::default(),
            ..limits()
        };
        assert_eq!(l.setup(&Objects::default(), &DenyList::default()), "");
        assert!(l.allow_sets().is_none());
        assert!(l.reader("nft".into()).is_none());
    }

    #[test]
    fn counts_from_a_listing() {
        let json = r#"{"nftables":[{"metainfo":{}},{"set":{"name":"o","elem":[{"elem":{"val":"127.0.0.2","expires":29,"counter":{"packets":900,"bytes":26100}}},"10.0.0.1",{"elem":{"val":"2001:db8::1","counter":{"packets":1}}}]}}]}"#;
        assert_eq!(
            parse_counts(json),
            vec![
                ("127.0.0.2".parse().unwrap(), 900),
                ("2001:db8::1".parse().unwrap(), 1)
            ]
        );
        assert!(parse_counts("garbage").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_listings_never_panic(json in "\\PC{0,120}") {
            let _ = parse_counts(&json);
            let _ = Objects::parse(&json);
        }
    }
}
