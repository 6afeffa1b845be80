//! `[sip]`: the passive SIP sensor. Off unless `enabled = yes`, so an
//! original config behaves as before; the ports default to the firewall's
//! SIP ports, so what is banned and what is watched agree.

use std::time::Duration;

use super::from_ini::Fields;
use super::values::*;
use super::{Config, ConfigError};
use crate::firewall::{Protocol, SipPorts};
use crate::sensor::capture::{Interface, PortMatch, Transport};
use crate::sensor::signals::SignalConfig;

/// Longest User-Agent substring and most of them: the list is scanned for
/// every request.
const MAX_AGENT: usize = 64;
const MAX_AGENTS: usize = 64;

/// `[sip]` as read.
#[derive(Clone, Debug, PartialEq)]
pub struct SipConfig {
    pub enabled: bool,
    /// Empty: every interface.
    pub interfaces: Vec<Interface>,
    /// `None`: the firewall's SIP ports.
    pub ports: Option<SipPorts>,
    /// TCP ports carrying TLS (not decrypted: connection attempts count).
    pub tls_ports: Vec<u16>,
    pub signals: SignalConfig,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            enabled: false,
            interfaces: Vec::new(),
            ports: None,
            tls_ports: vec![5061],
            signals: SignalConfig::default(),
        }
    }
}

impl SipConfig {
    /// The capture filter's ports: UDP and TCP entries of `ports` (or of
    /// `firewall`, the firewall's SIP ports), every port for `udp/*`.
    pub fn capture_ports(&self, firewall: &SipPorts) -> Vec<PortMatch> {
        let ports = self.ports.as_ref().unwrap_or(firewall);
        let mut out = Vec::new();
        for p in ports.protocols() {
            let transport = match p.proto {
                Protocol::Udp => Transport::Udp,
                Protocol::Tcp => Transport::Tcp,
                Protocol::Sctp => continue,
            };
            let ranges: Vec<(u16, u16)> = match &p.ports {
                Some(rs) => rs.iter().map(|r| (r.first(), r.last())).collect(),
                None => vec![(1, u16::MAX)],
            };
            for (first, last) in ranges {
                if let Ok(m) = PortMatch::new(transport, first, last) {
                    out.push(m);
                }
            }
        }
        out
    }
}

/// `interfaces = eth0, eth1` (empty or `any`: all).
fn parse_interfaces(v: &str) -> Result<Vec<Interface>, String> {
    let names: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for n in &names {
        let ok = n.len() <= 15
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
        if !ok {
            return Err(format!(
                "{n:?} is not an interface name (1-15 letters, digits, '-', '_', '.', '@')"
            ));
        }
    }
    // Every interface is the empty list, however it was written.
    let list = Interface::from_list(names);
    Ok(if list.contains(&Interface::Any) {
        Vec::new()
    } else {
        list
    })
}

/// `tls_ports = 5061` (comma-separated; `none` for none).
fn parse_tls_ports(v: &str) -> Result<Vec<u16>, String> {
    if matches!(v.trim().to_ascii_lowercase().as_str(), "" | "none" | "off") {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(str::trim)
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port number (1-65535)"))
        })
        .collect()
}

/// `user_agents = friendly-scanner, sipvicious` (case-insensitive
/// substrings; `none` turns the rule off).
fn parse_agents(v: &str) -> Result<Vec<String>, String> {
    if matches!(v.trim().to_ascii_lowercase().as_str(), "none" | "off") {
        return Ok(Vec::new());
    }
    let agents: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if agents.is_empty() {
        return Err("name at least one User-Agent substring, or none".into());
    }
    if agents.len() > MAX_AGENTS {
        return Err(format!("{} entries; at most {MAX_AGENTS}", agents.len()));
    }
    if let Some(a) = agents
        .iter()
        .find(|a| a.len() > MAX_AGENT || a.chars().any(|c| c.is_control()))
    {
        return Err(format!(
            "{a:?}: at most {MAX_AGENT} characters, no control characters"
        ));
    }
    Ok(agents)
}

/// `max_requests = 200` (`0` or `off`: no request-rate rule).
fn parse_max_requests(v: &str) -> Result<Option<u32>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "no" | "none" | "0" => Ok(None),
        n => parse_count(n).map(Some),
    }
}

fn window(v: &str, what: &str, max: Duration) -> Result<Duration, String> {
    let d = parse_positive_duration(v, what)?;
    if d > max {
        return Err(format!("at most {} s", max.as_secs()));
    }
    Ok(d)
}

pub(super) fn sip(f: &Fields, c: &mut Config) -> Result<(), ConfigError> {
    let s = &mut c.sip;
    f.set("sip", "enabled", &mut s.enabled, parse_bool)?;
    f.set("sip", "interfaces", &mut s.interfaces, parse_interfaces)?;
    let mut ports = None;
    f.set("sip", "ports", &mut ports, |v| {
        SipPorts::parse(v).map(Some).map_err(|e| e.to_string())
    })?;
    if ports.is_some() {
        s.ports = ports;
    }
    f.set("sip", "tls_ports", &mut s.tls_ports, parse_tls_ports)?;
    let g = &mut s.signals;
    f.set("sip", "user_agents", &mut g.user_agents, parse_agents)?;
    // A challenge answer within a minute; the correlation with the AMI
    // keeps two minutes of history, so windows stay below that.
    f.set("sip", "auth_window", &mut g.auth_window, |v| {
        window(v, "an auth window", Duration::from_secs(60))
    })?;
    f.set(
        "sip",
        "max_requests",
        &mut g.max_requests,
        parse_max_requests,
    )?;
    f.set("sip", "request_window", &mut g.request_window, |v| {
        window(v, "a request window", Duration::from_secs(3600))
    })?;
    Ok(())
}
