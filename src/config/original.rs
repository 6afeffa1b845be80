//! The 2024 original's sections: `[ipset]` (`path`, `set_name`, `dump`,
//! `timeout`) and `[iptables] interface`, honoured as that version does.
//!
//! - the ban time is `[ipset] timeout` unless `[timer] ban` (or `[policy]
//!   ban_time`) is set;
//! - the dump is `[ipset] dump` unless `[iptables] dump` is set;
//! - without `[firewall] backend`, the ipset backend fills the set
//!   `set_name` from filter INPUT (the original's `-i IFACE -m set
//!   --match-set NAME src -j RULE`), so an admin's own scripts on that set
//!   keep working; its scope is empty unless `[iptables] scope` is set (the
//!   original matched all traffic on the interface);
//! - `interface` restricts the rule to that input interface, as `-i NAME`
//!   in front of the scope, whatever the backend.
//!
//! A key of these that another key overrides is a warning ([`unused`]).

use std::path::Path;
use std::time::Duration;

use super::from_ini::Fields;
use super::ini::Ini;
use super::values::{parse_path, parse_positive_duration, parse_set_name};
use super::{BackendKind, Config, ConfigError, IpsetConfig};
use crate::firewall::{Block, Hook, Interface, SetType};

/// Reads `[ipset]` and `[iptables] interface` and applies them (see the
/// module docs). Runs after `[iptables]` and `[firewall]`, before
/// `[policy]` (whose `ban_time` still wins).
pub(super) fn sections(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    interface(f, c)?;
    if !f
        .ini
        .sections()
        .iter()
        .any(|s| s.name.as_deref() == Some("ipset"))
    {
        return Ok(());
    }
    let mut ipset = IpsetConfig::default();
    f.set("ipset", "path", &mut ipset.path, |v| Ok(v.to_string()))?;
    f.set("ipset", "set_name", &mut ipset.set_name, parse_set_name)?;
    f.set("ipset", "dump", &mut ipset.dump, parse_path)?;
    f.set("ipset", "timeout", &mut ipset.timeout, |v| {
        parse_positive_duration(v, "a ban")
    })?;
    if f.value("timer", "ban").is_none() {
        c.ban_time = ipset.timeout;
    }
    if f.value("iptables", "dump").is_none() {
        c.iptables.dump = ipset.dump.clone();
    }
    if f.value("firewall", "backend").is_none() {
        ipset_backend(f, c, &ipset.set_name)?;
    }
    c.ipset = Some(ipset);
    Ok(())
}

/// The original's set and rule, for keys `[firewall]` does not set: a
/// `hash:net` set named `set_name`, filled from filter INPUT, matching all
/// traffic (on the interface) unless a scope or ports say otherwise.
fn ipset_backend(f: &Fields, c: &mut Config, set_name: &str) -> Result<(), ConfigError> {
    c.firewall.backend = BackendKind::Ipset;
    if f.value("firewall", "set4").is_none() {
        c.firewall.set4 = set_name.to_string();
    }
    if f.value("firewall", "hook").is_none() {
        c.firewall.hook = Hook::Filter;
    }
    if f.value("firewall", "set_type").is_none() {
        c.firewall.set_type = SetType::Net;
    }
    let said = ["scope"].iter().any(|k| f.value("iptables", k).is_some())
        || ["ports", "block"]
            .iter()
            .any(|k| f.value("firewall", k).is_some());
    if !said {
        c.firewall.block = Block::All;
    }
    Ok(())
}

/// `[iptables] interface`: the input interface of every rule, whatever the
/// backend (`[firewall] interface` says the same in sipban's own words). An
/// empty value means every interface, as no key does.
fn interface(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    f.set("iptables", "interface", &mut c.iptables.interface, |v| {
        parse_interface(v)
    })?;
    let Some(name) = c.iptables.interface.clone() else {
        return Ok(());
    };
    let iface = Interface::parse(&name).map_err(|e| f.bad("iptables", "interface", e.0))?;
    let elsewhere = c
        .firewall
        .interface
        .clone()
        .or_else(|| c.iptables.scope.as_ref().and_then(|s| s.interface.clone()));
    match elsewhere {
        Some(other) if other != iface => Err(f.bad(
            "iptables",
            "interface",
            format!("conflicts with the interface {other} named elsewhere; name it once"),
        )),
        _ => {
            c.firewall.interface = Some(iface);
            Ok(())
        }
    }
}

/// A Linux interface name as iptables takes it: 1-15 letters, digits, `-`,
/// `_`, `.`, optionally ending in `+` (every name with that prefix); empty
/// for none.
pub(crate) fn parse_interface(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    Interface::parse(v)
        .map(|_| Some(v.to_string()))
        .map_err(|e| e.0)
}

/// Warnings for `[ipset]` keys another key overrides.
pub(super) fn unused(ini: &Ini, path: &Path, c: &Config) -> Vec<String> {
    let Some(ipset) = &c.ipset else {
        return Vec::new();
    };
    let at = |key: &str| {
        let line = ini.get("ipset", key).map_or(0, |k| k.line);
        format!("{}:{line}", path.display())
    };
    let secs = |d: Duration| d.as_secs();
    let mut out = Vec::new();
    if ini.get("ipset", "timeout").is_some() && ipset.timeout != c.ban_time {
        let by = if ini.get("policy", "ban_time").is_some() {
            "[policy] ban_time"
        } else {
            "[timer] ban"
        };
        out.push(format!(
            "{}: [ipset] timeout = {} is not the ban time: {by} = {} is",
            at("timeout"),
            secs(ipset.timeout),
            secs(c.ban_time)
        ));
    }
    if ini.get("ipset", "dump").is_some() && ipset.dump != c.iptables.dump {
        out.push(format!(
            "{}: [ipset] dump = {:?} is not read or written: [iptables] dump = {:?} is",
            at("dump"),
            ipset.dump.display().to_string(),
            c.iptables.dump.display().to_string()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert_eq!(parse_interface("eno1"), Ok(Some("eno1".into())));
        assert_eq!(parse_interface("ppp+"), Ok(Some("ppp+".into())));
        assert_eq!(parse_interface("eth0.100"), Ok(Some("eth0.100".into())));
        assert_eq!(parse_interface(""), Ok(None));
        for bad in [
            "+",
            "-eno1",
            "!eno1",
            "a b",
            "a/b",
            "averyveryverylong",
            "é",
        ] {
            assert!(parse_interface(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_interface_is_the_firewall_interface_named_once() {
        let base = "[ami]\nport = 5038\n";
        let parse = |extra: &str| Config::parse(format!("{base}{extra}"), Path::new("t"));
        let c = parse("[iptables]\ninterface = eno1\n").unwrap().config;
        assert_eq!(
            c.firewall.interface,
            Some(Interface::parse("eno1").unwrap())
        );
        assert!(
            parse("[iptables]\ninterface = eno1\nscope = \"-i eno1 -p udp --dport 5060\"\n")
                .is_ok()
        );
        let e = parse("[iptables]\ninterface = eno1\nscope = \"-i eth1 -p udp --dport 5060\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[iptables] interface") && e.contains("eth1"),
            "{e}"
        );
    }
}
