//! `[firewall]`, `[limits]` and the original's `[iptables] scope`: what a
//! ban blocks, the backend, the kernel-side limits, and the checks between
//! them (a scope and ports together, a limit the mode cannot hold).

use std::path::Path;

use super::from_ini::Fields;
use super::ini::Ini;
use super::values::*;
use super::{BackendKind, Config, ConfigError, IptablesConfig};
use crate::firewall::limits::MAX_BURST;
use crate::firewall::{
    Block, Hook, Interface, Ownership, Protocol, Rate, RateLimit, Scope, SetType, SipPorts,
};

/// `[iptables] scope`: parsed into the typed match every backend renders,
/// or refused with what no backend can express exactly.
pub(super) fn scope(f: &Fields, ipt: &mut IptablesConfig) -> Result<(), ConfigError> {
    f.set("iptables", "scope", &mut ipt.scope, |v| {
        Scope::parse(v).map(Some).map_err(|e| e.0)
    })
}

pub(super) fn firewall(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    let fw = &mut c.firewall;
    fw.set4 = format!("{}-v4", c.iptables.chain);
    fw.set6 = format!("{}-v6", c.iptables.chain);
    f.set("firewall", "backend", &mut fw.backend, BackendKind::parse)?;
    f.set("firewall", "hook", &mut fw.hook, |v| {
        Hook::parse(v).map_err(|e| e.0)
    })?;
    f.set("firewall", "mode", &mut fw.mode, Ownership::parse)?;
    f.set("firewall", "table", &mut fw.table, parse_table)?;
    f.set("firewall", "set4", &mut fw.set4, parse_set_name)?;
    f.set("firewall", "set6", &mut fw.set6, parse_set_name)?;
    f.set("firewall", "deny4", &mut fw.deny4, |v| {
        parse_set_name(v).map(Some)
    })?;
    f.set("firewall", "deny6", &mut fw.deny6, |v| {
        parse_set_name(v).map(Some)
    })?;
    f.set(
        "firewall",
        "check_interval",
        &mut fw.check_interval,
        parse_optional_duration,
    )?;
    f.set("firewall", "conntrack", &mut fw.conntrack, parse_bool)?;
    if fw.backend == BackendKind::Chain {
        fw.ports = SipPorts::original();
    }
    f.set("firewall", "ports", &mut fw.ports, |v| {
        SipPorts::parse(v).map_err(|e| e.0)
    })?;
    if let Some(scope) = &c.iptables.scope {
        fw.ports = scope.sip.clone();
        fw.block = scope.block;
    }
    f.set("firewall", "block", &mut fw.block, |v| {
        Block::parse(v).map_err(|e| e.0)
    })?;
    f.set("firewall", "interface", &mut fw.interface, |v| {
        Interface::parse(v).map(Some).map_err(|e| e.0)
    })?;
    f.set("firewall", "set_type", &mut fw.set_type, SetType::parse)?;
    let line = |section, key| f.ini.get(section, key).map_or(0, |k| k.line);
    if f.value("firewall", "ports").is_some() && c.iptables.scope.is_some() {
        return Err(f.bad(
            "firewall",
            "ports",
            format!(
                "[iptables] scope is set too (line {}): both say what a ban blocks; \
                 remove scope (ports replaces it) or remove ports",
                line("iptables", "scope")
            ),
        ));
    }
    if fw.interface.is_some()
        && c.iptables
            .scope
            .as_ref()
            .is_some_and(|s| s.interface.is_some())
    {
        return Err(f.bad(
            "firewall",
            "interface",
            format!(
                "[iptables] scope names an interface too (-i, line {}); keep one",
                line("iptables", "scope")
            ),
        ));
    }
    if fw.set_type != SetType::Ip && fw.backend != BackendKind::Ipset {
        return Err(f.bad(
            "firewall",
            "set_type",
            format!(
                "{} sets are the ipset backend's; set [firewall] backend = ipset",
                fw.set_type
            ),
        ));
    }
    Ok(())
}

/// `off` (or `no`, `0`) or a rate such as `50/second`.
fn parse_rate(v: &str) -> Result<Option<Rate>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "no" | "0" | "none" => Ok(None),
        _ => Rate::parse(v).map(Some),
    }
}

fn parse_burst(v: &str) -> Result<u32, String> {
    match parse_count(v)? {
        n @ 1..=MAX_BURST => Ok(n),
        _ => Err(format!("a burst is 1-{MAX_BURST} packets")),
    }
}

/// `[limits]`: every protection off unless set.
pub(super) fn limits(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    let l = &mut c.limits;
    let limit = |rate_key: &str, burst_key: &str, default: RateLimit| {
        let mut rate = None;
        f.set("limits", rate_key, &mut rate, parse_rate)?;
        let mut burst = default.burst;
        f.set("limits", burst_key, &mut burst, parse_burst)?;
        Ok::<_, ConfigError>(rate.map(|rate| RateLimit { rate, burst }))
    };
    l.sip = limit("sip_rate", "sip_burst", RateLimit::SIP)?;
    l.tftp = limit("tftp_rate", "tftp_burst", RateLimit::TFTP)?;
    l.tcp_connect = limit(
        "tcp_connect_rate",
        "tcp_connect_burst",
        RateLimit::TCP_CONNECT,
    )?;
    f.set(
        "limits",
        "sip_ban_after",
        &mut l.sip_ban_after,
        parse_optional_duration,
    )?;
    f.set("limits", "dns_protection", &mut l.dns, parse_bool)?;
    if l.any() && c.firewall.mode == Ownership::SetOnly {
        return Err(f.bad(
            "firewall",
            "mode",
            "set-only mode cannot hold [limits]: their rules live in sipban's own \
             table and chains (use mode = own, or put the limits in your ruleset)"
                .into(),
        ));
    }
    if l.tcp_connect.is_some() && c.scope().sip.tcp().is_none() {
        return Err(f.bad(
            "limits",
            "tcp_connect_rate",
            "no tcp port to limit: add one to [firewall] ports (e.g. tcp/5060, tcp/5061)".into(),
        ));
    }
    Ok(())
}

/// Settings that are valid but probably not what the operator wants.
pub(super) fn advice(ini: &Ini, c: &Config, path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(key), Some(scope)) = (ini.get("iptables", "scope"), &c.iptables.scope) {
        let tcp = scope
            .sip
            .protocols()
            .iter()
            .any(|p| p.proto == Protocol::Tcp);
        if !tcp && scope.block != Block::All && c.firewall.backend != BackendKind::Chain {
            out.push(format!(
                "{}:{}: [iptables] scope = {:?} bans on {} only; Asterisk also serves SIP over \
                 TCP 5060 and TLS 5061: remove scope to ban on [firewall] ports (default \
                 udp/5060, tcp/5060, tcp/5061)",
                path.display(),
                key.line,
                key.value,
                scope.sip
            ));
        }
    }
    out
}
