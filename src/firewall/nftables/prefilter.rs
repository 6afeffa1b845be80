//! A cheap first test in front of our IPv4 deny set: a set of the first 16
//! bits of every denied network, read straight off the IPv4 header
//! (`@nh,96,16`). A 16-bit key makes the kernel use its bitmap set (one
//! bit test, 8 KiB at most), so a packet from outside every denied /16
//! never reaches the interval lookup. That lookup (pipapo or red-black
//! tree) costs 6-9 points of SIP throughput at 5,000 networks where a hash
//! or bitmap costs 1-4 (`SIPBAN_BENCH=packets`); the office's phones and
//! carriers rarely share a /16 with a denied network, attackers that do
//! still meet the full lookup. IPv6 has no such cheap key (its first bits
//! are the same for nearly everyone), so its deny set is looked up alone.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::IpNet;
use serde_json::Value;

/// Elements per `add element` line, as for the deny sets.
const CHUNK: usize = 4096;

/// The prefilter of our deny set `set`.
pub(super) fn name(set: &str) -> String {
    format!("{set}-hi16")
}

/// `add set` of the prefilter (kept with its elements if it exists).
pub(super) fn decl(t: &str, name: &str) -> String {
    format!("add set {t} {name} {{ typeof @nh,96,16; }}")
}

/// The match that goes in front of the deny lookup of an IPv4 rule.
pub(super) fn matches(name: &str) -> String {
    format!("meta nfproto ipv4 @nh,96,16 @{name}")
}

/// The first 16 bits of every address the IPv4 networks cover: one value
/// for a /16 or longer, 2^(16-len) for a shorter one (at most 65,536).
pub(super) fn values(nets: &[IpNet]) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for net in nets {
        let IpNet::V4(n) = net else { continue };
        let first = (u32::from(n.network()) >> 16) as u16;
        let last = (u32::from(n.broadcast()) >> 16) as u16;
        out.extend(first..=last);
    }
    out
}

/// `flush set` and `add element` lines making the prefilter hold `values`.
pub(super) fn fill(t: &str, name: &str, values: &BTreeSet<u16>) -> String {
    let mut sc = String::new();
    let _ = writeln!(sc, "flush set {t} {name}");
    let all: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    for chunk in all.chunks(CHUNK) {
        let _ = writeln!(sc, "add element {t} {name} {{ {} }}", chunk.join(", "));
    }
    sc
}

/// The values an `nft -j list set` listing of the prefilter holds; `None`
/// if one cannot be read.
pub(super) fn parse(json: &str) -> Option<BTreeSet<u16>> {
    let v = serde_json::from_str::<Value>(json).ok()?;
    let mut out = BTreeSet::new();
    for item in v["nftables"].as_array()? {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            out.insert(u16::try_from(e.as_u64()?).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn one_value_per_slash16_and_a_range_for_shorter_networks() {
        let v = values(&nets(&[
            "100.64.1.0/24",
            "100.64.2.7/32",
            "10.0.0.0/15",
            "2001:db8::/32",
        ]));
        let want: BTreeSet<u16> = [0x0a00, 0x0a01, 0x6440].into_iter().collect();
        assert_eq!(v, want);
        assert_eq!(values(&nets(&["0.0.0.0/0"])).len(), 65_536);
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"set": {"family": "inet", "name": "x-hi16", "table": "sipban", "type": "integer",
             "elem": [25664, 2560]}}]}"#;
        let want: BTreeSet<u16> = [2560, 25664].into_iter().collect();
        assert_eq!(parse(json), Some(want));
        let empty = r#"{"nftables": [{"set": {"name": "x-hi16", "type": "integer"}}]}"#;
        assert_eq!(parse(empty), Some(BTreeSet::new()));
        assert_eq!(parse(r#"{"nftables": [{"set": {"elem": [70000]}}]}"#), None);
    }

    #[test]
    fn script_lines() {
        let v: BTreeSet<u16> = [1, 2].into_iter().collect();
        assert_eq!(
            fill("inet sipban", "d-hi16", &v),
            "flush set inet sipban d-hi16\nadd element inet sipban d-hi16 { 1, 2 }\n"
        );
        assert_eq!(
            decl("inet sipban", "d-hi16"),
            "add set inet sipban d-hi16 { typeof @nh,96,16; }"
        );
    }
}
