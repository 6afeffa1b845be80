//! `/etc/sipban.conf`, the original SIPban's format unchanged: INI sections,
//! values optionally in double quotes, `#` comments. Every key is optional
//! and defaults to the original's shipped value. A bad value, a broken
//! line or a section or key given twice is an error naming file:line; an
//! unknown key is a warning.
//!
//! - [`ini`]: bytes to sections and keys with their lines;
//! - [`values`]: one value to a typed setting;
//! - `from_ini`: the keys of each section into a [`Config`];
//! - `original`: the 2024 original's `[ipset]` section and `[iptables]
//!   interface`, and what they mean for the rest;
//! - `firewall_keys`: `[firewall]`, `[limits]` and the original's
//!   `[iptables] scope`, with the checks between them;
//! - `sip_keys`: `[sip]`, the SIP sensor;
//! - `display`: the effective settings, as `--check-config` prints them.

mod display;
mod firewall_keys;
mod from_ini;
pub mod ini;
mod original;
mod sip_keys;
pub mod values;

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::ami::Secret;
use crate::console::whois::WhoisServer;
use crate::firewall::{
    Action, Block, Hook, Interface, Limits, Ownership, Scope, SetType, SipPorts,
};
use crate::policy::detector::DetectorConfig;

pub use ini::SyntaxError;
pub use sip_keys::SipConfig;
pub use values::{MAX_DURATION, parse_duration};

/// Largest config file read: a real one is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {max} bytes; not a sipban config", max = MAX_CONFIG_BYTES)]
    TooLarge { path: PathBuf },
    /// A line the INI reader refuses (see [`SyntaxError`]).
    #[error("{path}:{line}: {error}")]
    Syntax {
        path: PathBuf,
        line: usize,
        error: SyntaxError,
    },
    #[error(transparent)]
    Value(Box<BadValue>),
}

/// A value that does not parse, and where it is.
#[derive(Debug, Error)]
#[error("{path}:{line}: [{section}] {key} = {value:?}: {why}")]
pub struct BadValue {
    pub path: PathBuf,
    pub line: usize,
    pub section: String,
    pub key: String,
    pub value: String,
    pub why: String,
}

#[derive(Clone, Debug)]
pub struct AmiConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub secret: Secret,
    /// `None`: no periodic ping (`ping = 0`).
    pub ping: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub address: IpAddr,
    pub port: u16,
    /// `[control] secret`: a `login SECRET` is required before any command.
    /// Required when `address` is not loopback.
    pub secret: Option<Secret>,
    /// A session idle this long is closed.
    pub idle_timeout: Duration,
    /// `[control] import_dir`: the only directory `allow|deny import PATH`
    /// may read from (`None`: imports come from the client only).
    pub import_dir: Option<PathBuf>,
    /// `[control] whois_server`: where the console's `whois` starts (the
    /// IANA, which refers to the regional registry).
    pub whois_server: WhoisServer,
}

#[derive(Clone, Debug)]
pub struct IptablesConfig {
    pub path: String,
    pub chain: String,
    /// The original's `scope`, when the file sets it (else `[firewall]
    /// ports` and the backend's default apply: see [`Config::scope`]).
    pub scope: Option<Scope>,
    pub rule: Action,
    pub rule6: Action,
    pub white_list: PathBuf,
    pub dump: PathBuf,
    /// `[iptables] interface` (the 2024 original's): bans apply to traffic
    /// coming in on this interface only; part of `scope` as `-i NAME`.
    pub interface: Option<String>,
}

/// `[ipset]`, the 2024 original's section: its set, the tool's directory,
/// its dump and its ban time (see `original` for what each maps to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpsetConfig {
    pub path: String,
    pub set_name: String,
    pub dump: PathBuf,
    /// The set's timeout: the ban time unless `[timer] ban` says otherwise.
    pub timeout: Duration,
}

impl Default for IpsetConfig {
    /// The 2024 original's shipped values.
    fn default() -> Self {
        IpsetConfig {
            path: "/sbin/".into(),
            set_name: "sipban".into(),
            dump: "/etc/sipban.dump".into(),
            timeout: Duration::from_secs(604_800),
        }
    }
}

/// Which firewall backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// nftables if `nft` works, else ipset, else chain (the default).
    Auto,
    Nftables,
    Ipset,
    /// The original's rule-per-IP chain, with its exact jump by default.
    Chain,
}

impl BackendKind {
    pub fn parse(s: &str) -> Result<BackendKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendKind::Auto),
            "nftables" | "nft" => Ok(BackendKind::Nftables),
            "ipset" => Ok(BackendKind::Ipset),
            "chain" | "iptables" => Ok(BackendKind::Chain),
            _ => Err("expected auto, nftables, ipset or chain".into()),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Auto => "auto",
            BackendKind::Nftables => "nftables",
            BackendKind::Ipset => "ipset",
            BackendKind::Chain => "chain",
        })
    }
}

/// `[firewall]`: new in sipban; every key optional.
#[derive(Clone, Debug)]
pub struct FirewallConfig {
    pub backend: BackendKind,
    pub hook: Hook,
    pub mode: Ownership,
    /// nftables table, `FAMILY NAME`.
    pub table: String,
    /// Set names; default `<chain>-v4` / `<chain>-v6`.
    pub set4: String,
    pub set6: String,
    /// Set-only mode: the administrator's interval/`hash:net` sets for the
    /// deny list (`None`: deny entries are not put in the firewall).
    pub deny4: Option<String>,
    pub deny6: Option<String>,
    /// How often the firewall is checked for drift; `None` disables.
    pub check_interval: Option<Duration>,
    /// Delete a new ban's conntrack entries.
    pub conntrack: bool,
    /// `ports`: the SIP ports, unless `[iptables] scope` is set. Not set:
    /// the original's udp/5060 for an explicit `backend = chain`, else
    /// udp/5060, tcp/5060 and tcp/5061 (resolved when the file is read).
    pub ports: SipPorts,
    /// `block`: what a ban covers. Not set: the SIP ports, or every packet
    /// if `[iptables] scope` is empty (as the 2024 original's).
    pub block: Block,
    /// `interface`: only traffic arriving there is banned and limited.
    pub interface: Option<Interface>,
    /// `set_type`: the ipset backend's ban sets (`hash:net` for the 2024
    /// original's set).
    pub set_type: SetType,
}

/// `[lists]`: the allow list (the original's white list) and the deny list.
#[derive(Clone, Debug)]
pub struct ListsConfig {
    pub allow: PathBuf,
    pub deny: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    pub ami: AmiConfig,
    pub control: ControlConfig,
    pub ban_time: Duration,
    pub iptables: IptablesConfig,
    pub firewall: FirewallConfig,
    /// `[ipset]`, when the file has the section (the 2024 original).
    pub ipset: Option<IpsetConfig>,
    /// `[limits]`: per-source rate limits and static protections.
    pub limits: Limits,
    /// `[policy]` (and the newer SIPban's `[flood]`); defaults = the original.
    pub policy: DetectorConfig,
    /// `[sip]`: the SIP sensor (off by default).
    pub sip: SipConfig,
    pub lists: ListsConfig,
    pub log_file: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            source: None,
            ami: AmiConfig {
                host: "127.0.0.1".into(),
                port: 5038,
                user: "sipban".into(),
                secret: Secret::new("getout"),
                ping: Some(Duration::from_secs(600)),
            },
            control: ControlConfig {
                address: IpAddr::from([127, 0, 0, 1]),
                port: 4451,
                secret: None,
                idle_timeout: Duration::from_secs(300),
                import_dir: None,
                whois_server: WhoisServer::default(),
            },
            ban_time: Duration::from_secs(86400),
            iptables: IptablesConfig {
                path: "/sbin/".into(),
                chain: "sipban-udp".into(),
                scope: None,
                rule: Action::Reject(Some("icmp-port-unreachable".into())),
                rule6: Action::Reject(Some("icmp6-port-unreachable".into())),
                white_list: "/etc/sipban.wl".into(),
                dump: "/etc/sipban.dump".into(),
                interface: None,
            },
            firewall: FirewallConfig {
                backend: BackendKind::Auto,
                hook: Hook::Raw,
                mode: Ownership::Own,
                table: "inet sipban".into(),
                set4: "sipban-udp-v4".into(),
                set6: "sipban-udp-v6".into(),
                deny4: None,
                deny6: None,
                check_interval: Some(Duration::from_secs(60)),
                conntrack: true,
                ports: SipPorts::standard(),
                block: Block::Sip,
                interface: None,
                set_type: SetType::Ip,
            },
            ipset: None,
            limits: Limits::default(),
            policy: DetectorConfig::default(),
            sip: SipConfig::default(),
            lists: ListsConfig {
                allow: "/etc/sipban.wl".into(),
                deny: "/etc/sipban.deny".into(),
            },
            log_file: "/var/log/sipban.log".into(),
        }
    }
}

impl Config {
    /// What a ban blocks and where the limits apply: `[iptables] scope`
    /// if set, else `[firewall] ports`; `[firewall] block` and `interface`
    /// on top.
    pub fn scope(&self) -> Scope {
        let mut scope = match &self.iptables.scope {
            Some(s) => s.clone(),
            None => Scope {
                sip: self.firewall.ports.clone(),
                ..Scope::default()
            },
        };
        scope.block = self.firewall.block;
        if let Some(i) = &self.firewall.interface {
            scope.interface = Some(i.clone());
        }
        scope
    }
}

/// A loaded config plus the warnings met while reading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and parses `path`. Besides [`parse`](Self::parse)'s warnings,
    /// a file that sets a password and is readable by group or others is a
    /// warning.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let metadata = file.metadata().map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let (mut loaded, ini) = Self::parse_ini(&bytes, path)?;
        if from_ini::holds_secrets(&ini) && readable_by_others(&metadata) {
            loaded.warnings.push(format!(
                "{p} is readable by other users and holds secrets: chmod 600 {p}",
                p = path.display()
            ));
        }
        Ok(loaded)
    }

    /// Parses a config file's bytes; `path` only names the file in errors
    /// and warnings.
    pub fn parse(bytes: impl AsRef<[u8]>, path: &Path) -> Result<Loaded, ConfigError> {
        Self::parse_ini(bytes.as_ref(), path).map(|(loaded, _)| loaded)
    }

    fn parse_ini(bytes: &[u8], path: &Path) -> Result<(Loaded, ini::Ini), ConfigError> {
        let ini = ini::Ini::parse(bytes).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line,
            error: e.error,
        })?;
        let config = from_ini::config(&ini, path)?;
        let mut warnings = from_ini::unknown_keys(&ini, path);
        warnings.extend(original::unused(&ini, path, &config));
        warnings.extend(firewall_keys::advice(&ini, &config, path));
        Ok((Loaded { config, warnings }, ini))
    }
}

#[cfg(unix)]
fn readable_by_others(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o044 != 0
}

#[cfg(not(unix))]
fn readable_by_others(_: &std::fs::Metadata) -> bool {
    false
}
