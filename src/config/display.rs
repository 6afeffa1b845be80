//! The effective settings, as `--check-config` prints them: the file's own
//! format, every key with the value in force, secrets masked, so the
//! listing loads back as the same config.

use std::fmt;
use std::time::Duration;

use super::Config;

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// A value in double quotes, as the shipped file writes them. The format
/// has no escapes: a value holding a `"` was written without quotes, so it
/// is listed without them.
fn q(value: &dyn fmt::Display) -> String {
    let value = value.to_string();
    if value.contains('"') {
        value
    } else {
        format!("\"{value}\"")
    }
}

impl fmt::Display for Config {
    /// The effective settings, secret masked, in the file's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self;
        writeln!(f, "[ami]")?;
        writeln!(f, "host = {}", q(&c.ami.host))?;
        writeln!(f, "port = {}", q(&c.ami.port))?;
        writeln!(f, "user = {}", q(&c.ami.user))?;
        writeln!(f, "pass = {}", q(&c.ami.secret))?;
        writeln!(f, "ping = {}", c.ami.ping.map_or(0, secs))?;
        writeln!(f, "\n[control]")?;
        writeln!(f, "address = {}", q(&c.control.address))?;
        writeln!(f, "port = {}", q(&c.control.port))?;
        if let Some(secret) = &c.control.secret {
            writeln!(f, "secret = {}", q(secret))?;
        }
        writeln!(f, "idle_timeout = {}", secs(c.control.idle_timeout))?;
        if let Some(dir) = &c.control.import_dir {
            writeln!(f, "import_dir = {}", q(&dir.display()))?;
        }
        writeln!(f, "whois_server = {}", q(&c.control.whois_server))?;
        writeln!(f, "\n[timer]")?;
        writeln!(f, "ban = {}", secs(c.ban_time))?;
        writeln!(f, "\n[iptables]")?;
        writeln!(f, "path = {}", q(&c.iptables.path))?;
        writeln!(f, "chain = {}", q(&c.iptables.chain))?;
        let scope_words = c.iptables.scope.as_ref().and_then(|s| s.legacy_words());
        if let Some(words) = &scope_words {
            writeln!(f, "scope = {}", q(words))?;
        }
        // A scope that one `scope` string cannot say (more ports than one
        // multiport rule takes) is listed as what it bans: `[firewall]`
        // ports and interface.
        let scope_as_ports = c.iptables.scope.as_ref().filter(|_| scope_words.is_none());
        writeln!(f, "rule = {}", q(&c.iptables.rule))?;
        writeln!(f, "rule6 = {}", q(&c.iptables.rule6))?;
        writeln!(f, "white_list = {}", q(&c.iptables.white_list.display()))?;
        writeln!(f, "dump = {}", q(&c.iptables.dump.display()))?;
        if let Some(iface) = &c.iptables.interface {
            writeln!(f, "interface = {}", q(iface))?;
        }
        if let Some(ipset) = &c.ipset {
            writeln!(f, "\n[ipset]")?;
            writeln!(f, "path = {}", q(&ipset.path))?;
            writeln!(f, "set_name = {}", q(&ipset.set_name))?;
            writeln!(f, "dump = {}", q(&ipset.dump.display()))?;
            writeln!(f, "timeout = {}", secs(ipset.timeout))?;
        }
        writeln!(f, "\n[firewall]")?;
        writeln!(f, "backend = {}", q(&c.firewall.backend))?;
        writeln!(f, "hook = {}", q(&c.firewall.hook))?;
        writeln!(f, "mode = {}", q(&c.firewall.mode))?;
        writeln!(f, "table = {}", q(&c.firewall.table))?;
        writeln!(f, "set4 = {}", q(&c.firewall.set4))?;
        writeln!(f, "set6 = {}", q(&c.firewall.set6))?;
        if let Some(d) = &c.firewall.deny4 {
            writeln!(f, "deny4 = {}", q(d))?;
        }
        if let Some(d) = &c.firewall.deny6 {
            writeln!(f, "deny6 = {}", q(d))?;
        }
        writeln!(
            f,
            "check_interval = {}",
            c.firewall.check_interval.map_or(0, secs)
        )?;
        let yn = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "conntrack = {}", yn(c.firewall.conntrack))?;
        if c.iptables.scope.is_none() || scope_as_ports.is_some() {
            writeln!(f, "ports = {}", q(&c.firewall.ports))?;
        }
        writeln!(f, "block = {}", q(&c.firewall.block))?;
        let interface = c
            .firewall
            .interface
            .as_ref()
            .or(scope_as_ports.and_then(|s| s.interface.as_ref()));
        if let Some(i) = interface {
            writeln!(f, "interface = {}", q(i))?;
        }
        writeln!(f, "set_type = {}", q(&c.firewall.set_type))?;
        let l = &c.limits;
        let rate = |r: &Option<crate::firewall::RateLimit>| {
            r.map_or("off".to_string(), |r| r.rate.to_string())
        };
        let burst =
            |r: &Option<crate::firewall::RateLimit>, default: u32| r.map_or(default, |r| r.burst);
        use crate::firewall::RateLimit;
        writeln!(f, "\n[limits]")?;
        writeln!(f, "sip_rate = {}", q(&rate(&l.sip)))?;
        writeln!(f, "sip_burst = {}", burst(&l.sip, RateLimit::SIP.burst))?;
        writeln!(f, "sip_ban_after = {}", l.sip_ban_after.map_or(0, secs))?;
        writeln!(f, "tftp_rate = {}", q(&rate(&l.tftp)))?;
        writeln!(f, "tftp_burst = {}", burst(&l.tftp, RateLimit::TFTP.burst))?;
        writeln!(f, "tcp_connect_rate = {}", q(&rate(&l.tcp_connect)))?;
        writeln!(
            f,
            "tcp_connect_burst = {}",
            burst(&l.tcp_connect, RateLimit::TCP_CONNECT.burst)
        )?;
        writeln!(f, "dns_protection = {}", yn(l.dns))?;
        let p = &c.policy;
        writeln!(f, "\n[policy]")?;
        writeln!(f, "max_failures = {}", p.max_failures)?;
        writeln!(f, "find_time = {}", secs(p.find_time))?;
        let events: Vec<&str> = p.counted_events.iter().map(|e| e.name()).collect();
        writeln!(f, "events = {}", q(&events.join(", ")))?;
        match &p.services {
            None => writeln!(f, "services = \"all\"")?,
            Some(s) => {
                let s: Vec<&str> = s.iter().map(String::as_str).collect();
                writeln!(f, "services = {}", q(&s.join(", ")))?;
            }
        }
        if let Some(fl) = &p.flood {
            writeln!(f, "flood_count = {}", fl.count)?;
            writeln!(f, "flood_interval = {}", secs(fl.interval))?;
        }
        if let Some(e) = &p.enumeration {
            writeln!(f, "enumeration = {}", e.max_accounts)?;
            writeln!(f, "enumeration_window = {}", secs(e.window))?;
        }
        writeln!(f, "test_accounts = {}", q(&p.test_accounts.join(", ")))?;
        writeln!(f, "ban_time_factor = {}", p.ban_time_factor)?;
        if let Some(m) = p.max_ban_time {
            writeln!(f, "max_ban_time = {}", secs(m))?;
        }
        if let Some(b) = p.block_threshold {
            writeln!(f, "block_threshold = {b}")?;
        }
        writeln!(f, "forget_after = {}", secs(p.forget_after))?;
        let sip = &c.sip;
        writeln!(f, "\n[sip]")?;
        writeln!(f, "enabled = {}", yn(sip.enabled))?;
        let names: Vec<String> = sip
            .interfaces
            .iter()
            .map(|i| match i {
                crate::sensor::capture::Interface::Any => "any".to_string(),
                crate::sensor::capture::Interface::Named(n) => n.clone(),
            })
            .collect();
        let names = if names.is_empty() {
            "any".to_string()
        } else {
            names.join(", ")
        };
        writeln!(f, "interfaces = {}", q(&names))?;
        match &sip.ports {
            Some(p) => writeln!(f, "ports = {}", q(p))?,
            None => writeln!(
                f,
                "# ports = {} (the firewall's SIP ports)",
                q(&c.scope().sip)
            )?,
        }
        let tls: Vec<String> = sip.tls_ports.iter().map(u16::to_string).collect();
        let tls = if tls.is_empty() {
            "none".to_string()
        } else {
            tls.join(", ")
        };
        writeln!(f, "tls_ports = {}", q(&tls))?;
        let g = &sip.signals;
        let agents = if g.user_agents.is_empty() {
            "none".to_string()
        } else {
            g.user_agents.join(", ")
        };
        writeln!(f, "user_agents = {}", q(&agents))?;
        writeln!(f, "auth_window = {}", secs(g.auth_window))?;
        match g.max_requests {
            Some(n) => writeln!(f, "max_requests = {n}")?,
            None => writeln!(f, "max_requests = off")?,
        }
        writeln!(f, "request_window = {}", secs(g.request_window))?;
        writeln!(f, "\n[lists]")?;
        writeln!(f, "allow = {}", q(&c.lists.allow.display()))?;
        writeln!(f, "deny = {}", q(&c.lists.deny.display()))?;
        writeln!(f, "\n[log]")?;
        writeln!(f, "file = {}", q(&c.log_file.display()))
    }
}
