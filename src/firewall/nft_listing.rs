//! Reading `nft -j list` output. A set of 100k elements lists as about
//! 7 MB of JSON; as a `serde_json::Value` tree that is tens of megabytes
//! for a moment, every drift check. The ban sets are therefore read
//! streaming, each element straight into a [`Held`]; the small listings
//! (deny sets, chains) keep the tree.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::Held;

/// Addresses in `nft -j list set` output with their remaining timeout
/// (`expires`, seconds) where the element has one. Elements of another
/// shape (intervals, concatenations) are skipped.
pub fn parse_held(json: &str) -> Result<Vec<Held>, String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(json);
    de.deserialize_map(Top(&mut out))
        .and_then(|()| de.end())
        .map_err(|e| format!("unreadable nft listing: {e}"))?;
    Ok(out)
}

/// Addresses in `nft -j list set` output (none if it cannot be read).
pub fn parse_elements(json: &str) -> Vec<IpAddr> {
    parse_held(json)
        .unwrap_or_default()
        .into_iter()
        .map(|h| h.ip)
        .collect()
}

/// `{"nftables": [...]}`.
struct Top<'o>(&'o mut Vec<Held>);

/// `[{"metainfo": ...}, {"set": ...}]`.
struct Items<'o>(&'o mut Vec<Held>);

/// `{"set": {...}}` or any other object.
struct Item<'o>(&'o mut Vec<Held>);

/// `{"family": ..., "name": ..., "elem": [...]}`.
struct Set<'o>(&'o mut Vec<Held>);

/// `[element, ...]`.
struct Elems<'o>(&'o mut Vec<Held>);

/// Walks the keys of a map, handing the value of `key` to `seed` and
/// skipping the others.
fn one_key<'de, A, S>(mut map: A, key: &str, seed: S) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    S: DeserializeSeed<'de, Value = ()>,
{
    let mut seed = Some(seed);
    while let Some(k) = map.next_key::<Cow<'de, str>>()? {
        match seed.take() {
            Some(s) if k == key => map.next_value_seed(s)?,
            other => {
                seed = other;
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// The map levels: each hands one key's value on and skips the rest.
macro_rules! map_level {
    ($ty:ident, $key:literal, $next:ident, $expect:literal) => {
        impl<'de> DeserializeSeed<'de> for $ty<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for $ty<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($expect)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
                one_key(map, $key, $next(self.0))
            }
        }
    };
}

map_level!(Top, "nftables", Items, "an nft JSON listing");
map_level!(Item, "set", Set, "a listing item");
map_level!(Set, "elem", Elems, "a set");

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the nftables array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Item(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Elems<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elems<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("set elements")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Elem<'de>>()? {
            let (val, expires) = match e {
                Elem::Plain(val) => (val, None),
                Elem::Timed {
                    elem:
                        Timed {
                            val: Val::Addr(val),
                            expires,
                        },
                } => (val, expires),
                _ => continue,
            };
            if let Ok(ip) = val.parse::<IpAddr>() {
                self.0.push(Held {
                    ip,
                    remaining: expires.map(Duration::from_secs),
                });
            }
        }
        Ok(())
    }
}

/// One element: `"192.0.2.1"` or `{"elem": {"val": ..., "expires": N}}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Elem<'a> {
    Plain(#[serde(borrow)] Cow<'a, str>),
    Timed {
        #[serde(borrow)]
        elem: Timed<'a>,
    },
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct Timed<'a> {
    #[serde(borrow)]
    val: Val<'a>,
    #[serde(default)]
    expires: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Val<'a> {
    Addr(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

/// Handles of the rules in an `nft -j list chain` listing that look up
/// `@set`.
pub fn rules_using(json: &str, set: &str) -> Vec<u64> {
    rules_looking_up(json, None, set)
}

/// How many rules of `chain` in an `nft -j list table` listing look up
/// `@set`.
pub fn chain_rules_using(json: &str, chain: &str, set: &str) -> usize {
    rules_looking_up(json, Some(chain), set).len()
}

fn rules_looking_up(json: &str, chain: Option<&str>, set: &str) -> Vec<u64> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let needle = Value::String(format!("@{set}")).to_string();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let rule = item.get("rule")?;
            if chain.is_some_and(|c| rule["chain"].as_str() != Some(c)) {
                return None;
            }
            rule["expr"]
                .to_string()
                .contains(&needle)
                .then(|| rule["handle"].as_u64())
                .flatten()
        })
        .collect()
}

/// Elements of an interval set in `nft -j list set` output, as inclusive
/// ranges; `None` if one cannot be read.
pub fn parse_spans(json: &str) -> Option<Vec<(IpAddr, IpAddr)>> {
    fn span(v: &Value) -> Option<(IpAddr, IpAddr)> {
        if let Some(s) = v.as_str() {
            let ip: IpAddr = s.parse().ok()?;
            return Some((ip, ip));
        }
        if let Some(p) = v.get("prefix") {
            let addr: IpAddr = p["addr"].as_str()?.parse().ok()?;
            let net = IpNet::new(addr, u8::try_from(p["len"].as_u64()?).ok()?).ok()?;
            return Some((net.network(), net.broadcast()));
        }
        if let Some(c) = v.get("concat").and_then(Value::as_array) {
            // Our deny sets: address . protocol range.
            return span(c.first()?);
        }
        if let Some(r) = v.get("range").and_then(Value::as_array) {
            let a = r.first()?.as_str()?.parse().ok()?;
            let b = r.get(1)?.as_str()?.parse().ok()?;
            return Some((a, b));
        }
        span(&v.get("elem")?["val"])
    }
    let v = serde_json::from_str::<Value>(json).ok()?;
    let mut out = Vec::new();
    for item in v["nftables"].as_array()? {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            out.push(span(e)?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn elements_from_json_listing() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},{"set":{"family":"inet","name":"v4","table":"sipban","type":"ipv4_addr","handle":2,"flags":["timeout"],"elem":[{"elem":{"val":"1.2.3.4","timeout":60,"expires":59}},"5.6.7.8",{"elem":{"val":{"prefix":{"addr":"10.0.0.0","len":8}}}},{"elem":{"val":"2001:db8::1","expires":7,"counter":{"packets":1}}}]}}]}"#;
        assert_eq!(
            parse_elements(json),
            vec![
                "1.2.3.4".parse::<IpAddr>().unwrap(),
                "5.6.7.8".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ]
        );
        assert!(parse_elements("not json").is_empty());
        let held = parse_held(json).unwrap();
        assert_eq!(held[0].remaining, Some(Duration::from_secs(59)));
        assert_eq!(held[1].remaining, None);
        assert_eq!(held[2].remaining, Some(Duration::from_secs(7)));
        assert!(parse_held("{\"nftables\":[{\"set\":{\"elem\":[\"1.2.3.4\"").is_err());
        assert!(parse_held("{\"nftables\":[]} trailing").is_err());
        assert_eq!(
            parse_held(r#"{"nftables":[{"set":{"name":"e"}}]}"#),
            Ok(vec![])
        );
        // Escaped text is read too (a borrowed `&str` would refuse it).
        let escaped = r#"{"nftables":[{"set":{"elem":["1.2.3.\u0034"]}}]}"#;
        assert_eq!(
            parse_elements(escaped),
            vec!["1.2.3.4".parse::<IpAddr>().unwrap()]
        );
    }

    /// The streaming reader agrees with reading the whole tree.
    #[test]
    fn streaming_matches_the_tree_on_a_large_listing() {
        let mut json = String::from(r#"{"nftables":[{"metainfo":{}},{"set":{"name":"v4","elem":["#);
        for i in 0..5000u32 {
            if i > 0 {
                json.push(',');
            }
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            json.push_str(&format!(
                r#"{{"elem":{{"val":"{ip}","timeout":3600,"expires":{}}}}}"#,
                i % 3600
            ));
        }
        json.push_str("]}}]}");
        let held = parse_held(&json).unwrap();
        assert_eq!(held.len(), 5000);
        let tree: Value = serde_json::from_str(&json).unwrap();
        let elems = tree["nftables"][1]["set"]["elem"].as_array().unwrap();
        for (h, e) in held.iter().zip(elems) {
            assert_eq!(h.ip.to_string(), e["elem"]["val"].as_str().unwrap());
            assert_eq!(
                h.remaining.map(|d| d.as_secs()),
                e["elem"]["expires"].as_u64()
            );
        }
    }

    #[test]
    fn interval_elements_and_rules_from_json_listings() {
        let set = r#"{"nftables":[{"metainfo":{}},{"set":{"name":"d4","flags":["interval"],"elem":[{"prefix":{"addr":"10.0.0.0","len":24}},"10.0.1.5",{"range":["10.0.2.1","10.0.2.9"]},{"elem":{"val":{"prefix":{"addr":"10.0.3.0","len":30}},"counter":{}}}]}}]}"#;
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            parse_spans(set).unwrap(),
            vec![
                (a("10.0.0.0"), a("10.0.0.255")),
                (a("10.0.1.5"), a("10.0.1.5")),
                (a("10.0.2.1"), a("10.0.2.9")),
                (a("10.0.3.0"), a("10.0.3.3")),
            ]
        );
        assert_eq!(
            parse_spans(r#"{"nftables":[{"set":{"name":"e"}}]}"#),
            Some(vec![])
        );
        assert!(parse_spans(r#"{"nftables":[{"set":{"elem":[{"x":1}]}}]}"#).is_none());
        // Our deny sets: address . protocol (as nft 1.0.6 lists them).
        let concat = r#"{"nftables":[{"set":{"name":"d","type":["ipv4_addr","inet_proto"],"elem":[{"concat":[{"prefix":{"addr":"100.64.0.0","len":24}},{"range":[0,255]}]},{"concat":["10.0.0.1",{"range":[0,255]}]},{"concat":[{"range":["10.1.0.0","10.1.0.9"]},{"range":[0,255]}]}]}}]}"#;
        assert_eq!(
            parse_spans(concat).unwrap(),
            vec![
                (a("100.64.0.0"), a("100.64.0.255")),
                (a("10.0.0.1"), a("10.0.0.1")),
                (a("10.1.0.0"), a("10.1.0.9")),
            ]
        );
        let chain = r#"{"nftables":[{"chain":{"name":"sipban"}},{"rule":{"handle":5,"expr":[{"match":{"right":"@v4"}}]}},{"rule":{"handle":6,"expr":[{"match":{"right":"@v4-deny"}}]}}]}"#;
        assert_eq!(rules_using(chain, "v4"), vec![5]);
        assert_eq!(rules_using(chain, "v4-deny"), vec![6]);
        assert!(rules_using(chain, "v6").is_empty());
    }

    proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panic(s in "\\PC{0,300}") {
            let _ = parse_held(&s);
            let _ = parse_spans(&s);
            let _ = rules_using(&s, "v4");
        }

        #[test]
        fn listing_shaped_input_never_panics(
            elems in proptest::collection::vec(
                prop_oneof![
                    "\"[0-9.:a-f]{0,20}\"",
                    "\\{\"elem\":\\{\"val\":\"[0-9.]{0,15}\",\"expires\":[0-9]{1,25}\\}\\}",
                    "\\{\"elem\":\\{\"val\":[0-9\\[\\]{}]{0,6}\\}\\}",
                    "[0-9\\[\\]{}\",:]{0,12}",
                ],
                0..20,
            )
        ) {
            let json = format!(r#"{{"nftables":[{{"set":{{"elem":[{}]}}}}]}}"#, elems.join(","));
            let _ = parse_held(&json);
        }
    }
}
