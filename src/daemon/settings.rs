//! What the daemon is started with, already validated: from the config, or
//! built by tests.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::ami::{AmiSettings, Backoff};
use crate::config::Config;
use crate::console::whois::WhoisSettings;
use crate::firewall::exec::tool;
use crate::policy::Whitelist;
use crate::policy::detector::DetectorConfig;

/// Everything the daemon needs, already validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub ami: AmiSettings,
    pub console: SocketAddr,
    /// `login SECRET` required before console commands.
    pub console_secret: Option<crate::ami::Secret>,
    /// Idle console sessions are closed after this.
    pub console_idle: Duration,
    /// The only directory console imports may read from.
    pub import_dir: Option<PathBuf>,
    pub ban_time: Duration,
    pub dump: Option<PathBuf>,
    pub whitelist: Whitelist,
    /// Re-read on SIGHUP.
    pub whitelist_path: Option<PathBuf>,
    /// Addresses of the AMI host: never banned.
    pub ami_hosts: Vec<IpAddr>,
    pub chain: String,
    /// Drift check period; `None` disables.
    pub firewall_check: Option<Duration>,
    /// `conntrack` tool for deleting a new ban's flows; `None` disables.
    pub conntrack: Option<String>,
    /// The 2024 original's set name (`[ipset] set_name`), for the
    /// console's `save` reply.
    pub ipset_name: Option<String>,
    /// Where the console's `whois` asks.
    pub whois: WhoisSettings,
    /// `[sip] enabled`: what the SIP sensor captures.
    pub sensor: Option<crate::sensor::live::LiveSettings>,
}

impl Settings {
    pub fn from_config(c: &Config, whitelist: Whitelist, ami_hosts: Vec<IpAddr>) -> Settings {
        Settings {
            ami: AmiSettings {
                host: c.ami.host.clone(),
                port: c.ami.port,
                username: c.ami.user.clone(),
                secret: c.ami.secret.clone(),
                ping_interval: c.ami.ping,
                reply_timeout: Duration::from_secs(10),
                backoff: Backoff::default(),
            },
            console: SocketAddr::new(c.control.address, c.control.port),
            console_secret: c.control.secret.clone(),
            console_idle: c.control.idle_timeout,
            import_dir: c.control.import_dir.clone(),
            ban_time: c.ban_time,
            dump: Some(c.iptables.dump.clone()),
            whitelist,
            whitelist_path: Some(c.iptables.white_list.clone()),
            ami_hosts,
            chain: c.iptables.chain.clone(),
            firewall_check: c.firewall.check_interval,
            conntrack: c
                .firewall
                .conntrack
                .then(|| tool(&c.iptables.path, "conntrack")),
            ipset_name: c.ipset.as_ref().map(|i| i.set_name.clone()),
            whois: WhoisSettings {
                server: c.control.whois_server.clone(),
                ..WhoisSettings::default()
            },
            sensor: c.sip.enabled.then(|| crate::sensor::live::LiveSettings {
                interfaces: c.sip.interfaces.clone(),
                ports: c.sip.capture_ports(&c.scope().sip),
                tls_ports: c.sip.tls_ports.clone(),
                signals: c.sip.signals.clone(),
            }),
        }
    }
}

/// The detection policy and list files (`[policy]`, `[lists]`). Without
/// it, [`Daemon::start`](super::Daemon::start) runs the original's policy on `Settings::whitelist`.
#[derive(Clone, Debug)]
pub struct PolicySettings {
    pub detector: DetectorConfig,
    pub allow: PathBuf,
    pub deny: PathBuf,
}

impl PolicySettings {
    pub fn from_config(c: &Config) -> PolicySettings {
        PolicySettings {
            detector: c.policy.clone(),
            allow: c.lists.allow.clone(),
            deny: c.lists.deny.clone(),
        }
    }
}
