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
use crate::firewall::{Hook, Scope};

/// Longest interface name (`IFNAMSIZ` - 1).
const MAX_INTERFACE: usize = 15;

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

/// The original's set and rule, for keys `[firewall]` does not set.
///
/// TODO(kernel): the original's set is `hash:net`; once the firewall
/// settings have a set type, set it to `hash:net` here.
fn ipset_backend(f: &Fields, c: &mut Config, set_name: &str) -> Result<(), ConfigError> {
    c.firewall.backend = BackendKind::Ipset;
    if f.value("firewall", "set4").is_none() {
        c.firewall.set4 = set_name.to_string();
    }
    if f.value("firewall", "hook").is_none() {
        c.firewall.hook = Hook::Filter;
    }
    if f.value("iptables", "scope").is_none() {
        let all = Scope::parse("").map_err(|e| f.bad("iptables", "scope", e.0))?;
        let iface = c.iptables.interface.as_deref();
        c.iptables.scope =
            with_interface(&all, iface).map_err(|why| f.bad("iptables", "interface", why))?;
    }
    Ok(())
}

/// `[iptables] interface`: `-i NAME` in front of the scope. An empty value
/// means every interface, as no key does.
fn interface(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    f.set("iptables", "interface", &mut c.iptables.interface, |v| {
        parse_interface(v)
    })?;
    let iface = c.iptables.interface.as_deref();
    c.iptables.scope = with_interface(&c.iptables.scope, iface)
        .map_err(|why| f.bad("iptables", "interface", why))?;
    Ok(())
}

/// A Linux interface name as iptables takes it: 1-15 letters, digits, `-`,
/// `_`, `.`, `:`, `@`, optionally ending in `+` (every name with that
/// prefix); empty for none.
pub(crate) fn parse_interface(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let stem = v.strip_suffix('+').unwrap_or(v);
    let ok = v.len() <= MAX_INTERFACE
        && !stem.is_empty()
        && !stem.starts_with(['-', '!'])
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c));
    if ok {
        Ok(Some(v.to_string()))
    } else {
        Err(
            "an interface name is 1-15 letters, digits, '-', '_', '.', ':' or '@', \
             optionally ending in '+'"
                .into(),
        )
    }
}

/// `scope` with `-i iface` in front. A scope that already names that
/// interface is kept (the effective settings load back the same); one that
/// names another is a conflict.
fn with_interface(scope: &Scope, iface: Option<&str>) -> Result<Scope, String> {
    let Some(iface) = iface else {
        return Ok(scope.clone());
    };
    let args = scope.args();
    let named = args
        .iter()
        .position(|w| w == "-i" || w == "--in-interface")
        .and_then(|i| args.get(i + 1));
    match named {
        Some(name) if name == iface => Ok(scope.clone()),
        Some(name) => Err(format!(
            "conflicts with -i {name} in [iptables] scope; name the interface once"
        )),
        None => Scope::parse(&format!("-i {iface} {scope}")).map_err(|e| e.0),
    }
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
    fn the_interface_goes_in_front_of_the_scope_once() {
        let scope = Scope::parse("-p udp --dport 5060").unwrap();
        let with = with_interface(&scope, Some("eno1")).unwrap();
        assert_eq!(with.to_string(), "-i eno1 -p udp --dport 5060");
        assert_eq!(with_interface(&with, Some("eno1")).unwrap(), with);
        assert!(with_interface(&with, Some("eth1")).is_err());
        assert_eq!(with_interface(&scope, None).unwrap(), scope);
    }
}
