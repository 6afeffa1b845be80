//! Fills a [`Config`] from a parsed file: which keys exist, each value
//! through its parser, and the checks that span keys (the policy's ranges,
//! a console reachable from the network).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::firewall_keys;
use super::ini::Ini;
use super::values::*;
use super::{BadValue, Config, ConfigError};
use crate::ami::Secret;
use crate::firewall::Action;
use crate::policy::detector::{EnumRule, FloodRule};

/// Keys we know, per section. `[flood]` is the newer SIPban's ChallengeSent
/// flood rule (`[policy] flood_count`/`flood_interval` are the same).
const KNOWN: &[(&str, &[&str])] = &[
    ("ami", &["host", "port", "user", "pass", "ping"]),
    (
        "control",
        &[
            "port",
            "address",
            "secret",
            "idle_timeout",
            "import_dir",
            "whois_server",
        ],
    ),
    ("timer", &["ban"]),
    (
        "iptables",
        &[
            "path",
            "chain",
            "scope",
            "rule",
            "rule6",
            "white_list",
            "dump",
            "interface",
        ],
    ),
    ("ipset", &["path", "set_name", "dump", "timeout"]),
    ("log", &["file"]),
    (
        "firewall",
        &[
            "backend",
            "hook",
            "mode",
            "table",
            "set4",
            "set6",
            "deny4",
            "deny6",
            "check_interval",
            "conntrack",
            "ports",
            "block",
            "interface",
            "set_type",
        ],
    ),
    (
        "limits",
        &[
            "sip_rate",
            "sip_burst",
            "sip_ban_after",
            "tftp_rate",
            "tftp_burst",
            "tcp_connect_rate",
            "tcp_connect_burst",
            "dns_protection",
        ],
    ),
    ("flood", &["count", "interval"]),
    (
        "policy",
        &[
            "max_failures",
            "find_time",
            "ban_time",
            "events",
            "services",
            "flood_count",
            "flood_interval",
            "enumeration",
            "enumeration_window",
            "test_accounts",
            "ban_time_factor",
            "max_ban_time",
            "block_threshold",
            "forget_after",
        ],
    ),
    ("lists", &["allow", "deny"]),
    (
        "sip",
        &[
            "enabled",
            "interfaces",
            "ports",
            "tls_ports",
            "user_agents",
            "auth_window",
            "max_requests",
            "request_window",
        ],
    ),
];

/// Keys whose value is a password: a file holding one must be private.
const SECRET_KEYS: &[(&str, &str)] = &[("ami", "pass"), ("control", "secret")];

/// True when the file sets a password (`[ami] pass`, `[control] secret`).
pub(super) fn holds_secrets(ini: &Ini) -> bool {
    SECRET_KEYS.iter().any(|(s, k)| ini.get(s, k).is_some())
}

/// An unknown section or key is ignored with a warning naming its line.
pub(super) fn unknown_keys(ini: &Ini, path: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let at = |line: usize| format!("{}:{line}", path.display());
    for section in ini.sections() {
        let Some(name) = &section.name else {
            for key in &section.keys {
                warnings.push(format!(
                    "{}: key {:?} outside any section is ignored",
                    at(key.line),
                    key.name
                ));
            }
            continue;
        };
        match KNOWN.iter().find(|(s, _)| s == name) {
            None => warnings.push(format!(
                "{}: unknown section [{name}] is ignored",
                at(section.line)
            )),
            Some((_, known)) => {
                for key in section
                    .keys
                    .iter()
                    .filter(|k| !known.contains(&k.name.as_str()))
                {
                    warnings.push(format!(
                        "{}: unknown key [{name}] {} is ignored",
                        at(key.line),
                        key.name
                    ));
                }
            }
        }
    }
    warnings
}

/// Reads values out of the file and names the line of a bad one.
pub(super) struct Fields<'a> {
    pub(super) ini: &'a Ini,
    pub(super) path: &'a Path,
}

impl Fields<'_> {
    pub(super) fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.ini.get(section, key).map(|k| k.value.as_str())
    }

    /// `why` about `[section] key`, at its line (0 if not in the file).
    pub(super) fn bad(&self, section: &str, key: &str, why: String) -> ConfigError {
        let found = self.ini.get(section, key);
        ConfigError::Value(Box::new(BadValue {
            path: self.path.to_path_buf(),
            line: found.map_or(0, |k| k.line),
            section: section.into(),
            key: key.into(),
            value: found.map(|k| k.value.clone()).unwrap_or_default(),
            why,
        }))
    }

    /// Parses `[section] key` into `field` if the file sets it.
    pub(super) fn set<T>(
        &self,
        section: &str,
        key: &str,
        field: &mut T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        if let Some(value) = self.value(section, key) {
            *field = parse(value).map_err(|why| self.bad(section, key, why))?;
        }
        Ok(())
    }
}

pub(super) fn config(ini: &Ini, path: &Path) -> Result<Config, ConfigError> {
    let f = Fields { ini, path };
    let mut c = Config {
        source: Some(path.to_path_buf()),
        ..Config::default()
    };
    f.set("ami", "host", &mut c.ami.host, parse_host)?;
    f.set("ami", "port", &mut c.ami.port, parse_port)?;
    f.set("ami", "user", &mut c.ami.user, |v| parse_field(v, false))?;
    f.set("ami", "pass", &mut c.ami.secret, |v| {
        parse_field(v, true).map(Secret::new)
    })?;
    f.set("ami", "ping", &mut c.ami.ping, parse_optional_duration)?;
    control(&f, &mut c)?;
    f.set("timer", "ban", &mut c.ban_time, |v| {
        parse_positive_duration(v, "a ban")
    })?;
    iptables(&f, &mut c)?;
    f.set("log", "file", &mut c.log_file, parse_path)?;
    firewall_keys::firewall(&f, &mut c)?;
    firewall_keys::limits(&f, &mut c)?;
    super::original::sections(&f, &mut c)?;
    policy(&f, &mut c)?;
    super::sip_keys::sip(&f, &mut c)?;
    // The sensor reports requests to the policy's test accounts.
    c.sip.signals.test_accounts = c.policy.test_accounts.clone();
    c.lists.allow = c.iptables.white_list.clone();
    f.set("lists", "allow", &mut c.lists.allow, parse_path)?;
    f.set("lists", "deny", &mut c.lists.deny, parse_path)?;
    Ok(c)
}

/// `[control]`. The console has a password only if `secret` is set, so a
/// listen address other than loopback requires one.
fn control(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    let ctl = &mut c.control;
    f.set("control", "port", &mut ctl.port, parse_port)?;
    f.set("control", "address", &mut ctl.address, |v| {
        v.parse::<IpAddr>()
            .map_err(|_| "not an IP address".to_string())
    })?;
    f.set("control", "secret", &mut ctl.secret, |v| {
        parse_console_secret(v).map(Some)
    })?;
    f.set("control", "idle_timeout", &mut ctl.idle_timeout, |v| {
        parse_positive_duration(v, "an idle timeout")
    })?;
    f.set("control", "import_dir", &mut ctl.import_dir, |v| {
        parse_absolute_dir(v).map(Some)
    })?;
    f.set(
        "control",
        "whois_server",
        &mut ctl.whois_server,
        crate::console::whois::WhoisServer::parse,
    )?;
    if !ctl.address.to_canonical().is_loopback() && ctl.secret.is_none() {
        return Err(f.bad(
            "control",
            "address",
            "the console would be reachable from the network without a password; \
             set [control] secret or use 127.0.0.1"
                .into(),
        ));
    }
    Ok(())
}

fn iptables(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    let ipt = &mut c.iptables;
    f.set("iptables", "path", &mut ipt.path, |v| Ok(v.to_string()))?;
    f.set("iptables", "chain", &mut ipt.chain, parse_chain)?;
    firewall_keys::scope(f, ipt)?;
    f.set("iptables", "rule", &mut ipt.rule, |v| {
        Action::parse(v, false).map_err(|e| e.0)
    })?;
    ipt.rule6 = ipt.rule.to_ipv6();
    f.set("iptables", "rule6", &mut ipt.rule6, |v| {
        Action::parse(v, true).map_err(|e| e.0)
    })?;
    f.set("iptables", "white_list", &mut ipt.white_list, parse_path)?;
    f.set("iptables", "dump", &mut ipt.dump, parse_path)?;
    Ok(())
}

/// `[policy]` and the newer SIPban's `[flood]`; `[policy] ban_time` is an
/// alias of `[timer] ban`.
fn policy(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    f.set("policy", "ban_time", &mut c.ban_time, |v| {
        parse_positive_duration(v, "a ban")
    })?;
    let p = &mut c.policy;
    p.ban_time = c.ban_time;
    f.set("policy", "max_failures", &mut p.max_failures, parse_count)?;
    f.set("policy", "find_time", &mut p.find_time, parse_duration)?;
    f.set("policy", "events", &mut p.counted_events, parse_events)?;
    f.set("policy", "services", &mut p.services, parse_services)?;
    let mut flood = FloodRule {
        count: 30,
        interval: Duration::from_secs(10),
    };
    let has_flood =
        f.value("flood", "count").is_some() || f.value("policy", "flood_count").is_some();
    f.set("flood", "count", &mut flood.count, parse_count)?;
    f.set("flood", "interval", &mut flood.interval, parse_duration)?;
    f.set("policy", "flood_count", &mut flood.count, parse_count)?;
    f.set(
        "policy",
        "flood_interval",
        &mut flood.interval,
        parse_duration,
    )?;
    if has_flood {
        p.flood = Some(flood);
    }
    let mut scan = EnumRule {
        max_accounts: 10,
        window: Duration::from_secs(600),
    };
    f.set("policy", "enumeration", &mut scan.max_accounts, parse_count)?;
    f.set(
        "policy",
        "enumeration_window",
        &mut scan.window,
        parse_duration,
    )?;
    if f.value("policy", "enumeration").is_some() {
        p.enumeration = Some(scan);
    }
    f.set(
        "policy",
        "test_accounts",
        &mut p.test_accounts,
        parse_accounts,
    )?;
    f.set(
        "policy",
        "ban_time_factor",
        &mut p.ban_time_factor,
        parse_factor,
    )?;
    f.set("policy", "max_ban_time", &mut p.max_ban_time, |v| {
        parse_duration(v).map(Some)
    })?;
    f.set("policy", "block_threshold", &mut p.block_threshold, |v| {
        parse_count(v).map(Some)
    })?;
    f.set(
        "policy",
        "forget_after",
        &mut p.forget_after,
        parse_duration,
    )?;
    if let Err(e) = c.policy.validate() {
        // Name the key the operator wrote (the detector's names match).
        let key = e.key.split('.').next_back().unwrap_or(e.key);
        let (section, key) = match key {
            "count" | "interval" if f.value("flood", key).is_some() => ("flood", key),
            "count" => ("policy", "flood_count"),
            "interval" => ("policy", "flood_interval"),
            "max_accounts" => ("policy", "enumeration"),
            "window" => ("policy", "enumeration_window"),
            "counted_events" => ("policy", "events"),
            "ban_time" if f.value("policy", "ban_time").is_some() => ("policy", "ban_time"),
            "ban_time" if f.value("timer", "ban").is_none() && c.ipset.is_some() => {
                ("ipset", "timeout")
            }
            "ban_time" => ("timer", "ban"),
            k => ("policy", k),
        };
        return Err(f.bad(section, key, e.message));
    }
    Ok(())
}
