//! `/etc/sipban.conf`, the original SIPban's format unchanged: INI sections,
//! values optionally in double quotes, `#` comments. Every key is optional
//! and defaults to the original's shipped value. A bad value is an error
//! naming file:line, section, key and value; an unknown key is a warning.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use configparser::ini::{Ini, IniDefault};
use thiserror::Error;

use crate::ami::Secret;
use crate::event::EventKind;
use crate::firewall::{Action, Hook, Ownership, Scope};
use crate::policy::detector::{DetectorConfig, EnumRule, FloodRule};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Syntax { path: PathBuf, detail: String },
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
}

#[derive(Clone, Debug)]
pub struct IptablesConfig {
    pub path: String,
    pub chain: String,
    pub scope: Scope,
    pub rule: Action,
    pub rule6: Action,
    pub white_list: PathBuf,
    pub dump: PathBuf,
}

/// Which firewall backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// nftables if `nft` works, else ipset, else chain.
    Auto,
    Nftables,
    Ipset,
    /// The original's rule-per-IP chain (the default, for compatibility).
    Chain,
}

impl BackendKind {
    fn parse(s: &str) -> Result<BackendKind, String> {
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
    /// `[policy]` (and the newer SIPban's `[flood]`); defaults = the original.
    pub policy: DetectorConfig,
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
            },
            ban_time: Duration::from_secs(86400),
            iptables: IptablesConfig {
                path: "/sbin/".into(),
                chain: "sipban-udp".into(),
                scope: Scope::default(),
                rule: Action::Reject(Some("icmp-port-unreachable".into())),
                rule6: Action::Reject(Some("icmp6-port-unreachable".into())),
                white_list: "/etc/sipban.wl".into(),
                dump: "/etc/sipban.dump".into(),
            },
            firewall: FirewallConfig {
                backend: BackendKind::Chain,
                hook: Hook::Raw,
                mode: Ownership::Own,
                table: "inet sipban".into(),
                set4: "sipban-udp-v4".into(),
                set6: "sipban-udp-v6".into(),
                deny4: None,
                deny6: None,
                check_interval: Some(Duration::from_secs(60)),
                conntrack: true,
            },
            policy: DetectorConfig::default(),
            lists: ListsConfig {
                allow: "/etc/sipban.wl".into(),
                deny: "/etc/sipban.deny".into(),
            },
            log_file: "/var/log/sipban.log".into(),
        }
    }
}

/// Keys we know, per section. `[flood]` is the newer SIPban's ChallengeSent
/// flood rule (`[policy] flood_count`/`flood_interval` are the same).
const KNOWN: &[(&str, &[&str])] = &[
    ("ami", &["host", "port", "user", "pass", "ping"]),
    ("control", &["port", "address"]),
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
        ],
    ),
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
];

/// A loaded config plus the warnings met while reading it.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
        let mut defaults = IniDefault::default();
        // Quotes and '#' inside values are handled below; configparser would
        // cut a secret like "ab#cd" at the '#'.
        defaults.enable_inline_comments = false;
        defaults.comment_symbols = vec!['#', ';'];
        defaults.delimiters = vec!['='];
        let mut ini = Ini::new_from_defaults(defaults);
        let map = ini
            .read(text.to_string())
            .map_err(|detail| ConfigError::Syntax {
                path: path.to_path_buf(),
                detail,
            })?;
        let reader = Reader { text, path };
        let mut warnings = Vec::new();

        for (section, keys) in &map {
            let known = KNOWN.iter().find(|(s, _)| s == section).map(|(_, k)| *k);
            match known {
                None if section == "default" => {
                    for key in keys.keys() {
                        warnings.push(format!(
                            "{}:{}: key {key:?} outside any section is ignored",
                            path.display(),
                            reader.line(section, key)
                        ));
                    }
                }
                None => warnings.push(format!(
                    "{}:{}: unknown section [{section}] is ignored",
                    path.display(),
                    reader.section_line(section)
                )),
                Some(known) => {
                    for key in keys.keys().filter(|k| !known.contains(&k.as_str())) {
                        warnings.push(format!(
                            "{}:{}: unknown key [{section}] {key} is ignored",
                            path.display(),
                            reader.line(section, key)
                        ));
                    }
                }
            }
        }

        let get = |section: &str, key: &str| -> Option<String> {
            let raw = map.get(section)?.get(key)?.clone().unwrap_or_default();
            Some(unquote(&raw))
        };
        let mut c = Config {
            source: Some(path.to_path_buf()),
            ..Config::default()
        };
        // Parse one key with `f`; on error, name where it is.
        macro_rules! set {
            ($section:literal, $key:literal, $field:expr, $f:expr) => {
                if let Some(value) = get($section, $key) {
                    $field = $f(value.as_str()).map_err(|why: String| {
                        ConfigError::Value(Box::new(BadValue {
                            path: path.to_path_buf(),
                            line: reader.line($section, $key),
                            section: $section.into(),
                            key: $key.into(),
                            value: value.clone(),
                            why,
                        }))
                    })?;
                }
            };
        }
        set!("ami", "host", c.ami.host, parse_host);
        set!("ami", "port", c.ami.port, parse_port);
        set!("ami", "user", c.ami.user, |v: &str| parse_field(v, false));
        set!("ami", "pass", c.ami.secret, |v: &str| parse_field(v, true)
            .map(Secret::new));
        set!("ami", "ping", c.ami.ping, |v: &str| parse_duration(v)
            .map(|d| Some(d).filter(|d| !d.is_zero())));
        set!("control", "port", c.control.port, parse_port);
        set!("control", "address", c.control.address, |v: &str| v
            .parse::<IpAddr>()
            .map_err(|_| "not an IP address".to_string()));
        set!("timer", "ban", c.ban_time, |v: &str| parse_duration(v)
            .and_then(|d| {
                if d.is_zero() {
                    Err("a ban must last at least one second".to_string())
                } else {
                    Ok(d)
                }
            }));
        set!(
            "iptables",
            "path",
            c.iptables.path,
            |v: &str| Ok::<_, String>(v.to_string())
        );
        set!("iptables", "chain", c.iptables.chain, parse_chain);
        set!("iptables", "scope", c.iptables.scope, |v: &str| {
            Scope::parse(v).map_err(|e| e.0)
        });
        set!("iptables", "rule", c.iptables.rule, |v: &str| {
            Action::parse(v, false).map_err(|e| e.0)
        });
        c.iptables.rule6 = c.iptables.rule.to_ipv6();
        set!("iptables", "rule6", c.iptables.rule6, |v: &str| {
            Action::parse(v, true).map_err(|e| e.0)
        });
        set!("iptables", "white_list", c.iptables.white_list, parse_path);
        set!("iptables", "dump", c.iptables.dump, parse_path);
        set!("log", "file", c.log_file, parse_path);
        c.firewall.set4 = format!("{}-v4", c.iptables.chain);
        c.firewall.set6 = format!("{}-v6", c.iptables.chain);
        set!(
            "firewall",
            "backend",
            c.firewall.backend,
            BackendKind::parse
        );
        set!("firewall", "hook", c.firewall.hook, |v: &str| Hook::parse(
            v
        )
        .map_err(|e| e.0));
        set!("firewall", "mode", c.firewall.mode, Ownership::parse);
        set!("firewall", "table", c.firewall.table, parse_table);
        set!("firewall", "set4", c.firewall.set4, parse_set_name);
        set!("firewall", "set6", c.firewall.set6, parse_set_name);
        set!("firewall", "deny4", c.firewall.deny4, |v: &str| {
            parse_set_name(v).map(Some)
        });
        set!("firewall", "deny6", c.firewall.deny6, |v: &str| {
            parse_set_name(v).map(Some)
        });
        set!(
            "firewall",
            "check_interval",
            c.firewall.check_interval,
            |v: &str| { parse_duration(v).map(|d| Some(d).filter(|d| !d.is_zero())) }
        );
        set!("firewall", "conntrack", c.firewall.conntrack, parse_bool);

        // Policy. `[policy] ban_time` is an alias of `[timer] ban`.
        set!("policy", "ban_time", c.ban_time, |v: &str| parse_duration(
            v
        )
        .and_then(|d| {
            if d.is_zero() {
                Err("a ban must last at least one second".to_string())
            } else {
                Ok(d)
            }
        }));
        let p = &mut c.policy;
        p.ban_time = c.ban_time;
        set!("policy", "max_failures", p.max_failures, parse_count);
        set!("policy", "find_time", p.find_time, parse_duration);
        set!("policy", "events", p.counted_events, parse_events);
        set!("policy", "services", p.services, parse_services);
        let mut flood = FloodRule {
            count: 30,
            interval: Duration::from_secs(10),
        };
        let flood_keys = [("flood", "count"), ("policy", "flood_count")];
        let has_flood = flood_keys.iter().any(|(sec, k)| get(sec, k).is_some());
        set!("flood", "count", flood.count, parse_count);
        set!("flood", "interval", flood.interval, parse_duration);
        set!("policy", "flood_count", flood.count, parse_count);
        set!("policy", "flood_interval", flood.interval, parse_duration);
        if has_flood {
            p.flood = Some(flood);
        }
        let mut scan = EnumRule {
            max_accounts: 10,
            window: Duration::from_secs(600),
        };
        let has_scan = get("policy", "enumeration").is_some();
        set!("policy", "enumeration", scan.max_accounts, parse_count);
        set!("policy", "enumeration_window", scan.window, parse_duration);
        if has_scan {
            p.enumeration = Some(scan);
        }
        set!("policy", "test_accounts", p.test_accounts, |v: &str| Ok::<
            _,
            String,
        >(
            v.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        ));
        set!("policy", "ban_time_factor", p.ban_time_factor, |v: &str| v
            .parse::<f64>()
            .map_err(|_| "not a number".to_string()));
        set!("policy", "max_ban_time", p.max_ban_time, |v: &str| {
            parse_duration(v).map(Some)
        });
        set!("policy", "block_threshold", p.block_threshold, |v: &str| {
            parse_count(v).map(Some)
        });
        set!("policy", "forget_after", p.forget_after, parse_duration);
        if let Err(e) = c.policy.validate() {
            // Name the key the operator wrote (the detector's names match).
            let key = e.key.split('.').next_back().unwrap_or(e.key);
            let (section, key) = match key {
                "count" | "interval" if get("flood", key).is_some() => ("flood", key.to_string()),
                "count" => ("policy", "flood_count".to_string()),
                "interval" => ("policy", "flood_interval".to_string()),
                "max_accounts" => ("policy", "enumeration".to_string()),
                "window" => ("policy", "enumeration_window".to_string()),
                "counted_events" => ("policy", "events".to_string()),
                "ban_time" if get("policy", "ban_time").is_none() => ("timer", "ban".to_string()),
                k => ("policy", k.to_string()),
            };
            return Err(ConfigError::Value(Box::new(BadValue {
                path: path.to_path_buf(),
                line: reader.line(section, &key),
                section: section.into(),
                value: get(section, &key).unwrap_or_default(),
                key,
                why: e.message,
            })));
        }

        c.lists.allow = c.iptables.white_list.clone();
        set!("lists", "allow", c.lists.allow, parse_path);
        set!("lists", "deny", c.lists.deny, parse_path);
        Ok(Loaded {
            config: c,
            warnings,
        })
    }
}

/// Finds where a key is in the file, for error messages.
struct Reader<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Reader<'_> {
    fn section_line(&self, section: &str) -> usize {
        self.text
            .lines()
            .position(|l| section_name(l).is_some_and(|s| s.eq_ignore_ascii_case(section)))
            .map_or(0, |i| i + 1)
    }

    fn line(&self, section: &str, key: &str) -> usize {
        let _ = self.path;
        let mut current = "default".to_string();
        let mut found = 0;
        for (i, l) in self.text.lines().enumerate() {
            if let Some(s) = section_name(l) {
                current = s.to_lowercase();
                continue;
            }
            let t = l.trim();
            if t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            // configparser also takes a line without '=' as a key.
            let k = t.split_once('=').map_or(t, |(k, _)| k).trim();
            if current == section && !t.is_empty() && k.eq_ignore_ascii_case(key) {
                // The last occurrence wins, as in configparser.
                found = i + 1;
            }
        }
        found
    }
}

fn section_name(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('[')?.split(']').next().map(str::trim)
}

/// `"value"` -> `value`; an unquoted value loses a trailing ` # comment`.
fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix('"')
        && let Some(end) = rest.find('"')
    {
        return rest[..end].to_string();
    }
    match raw.find(" #") {
        Some(i) => raw[..i].trim_end().to_string(),
        None => raw.to_string(),
    }
}

fn parse_port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(0) | Err(_) => Err("not a port number (1-65535)".into()),
        Ok(p) => Ok(p),
    }
}

fn parse_host(v: &str) -> Result<String, String> {
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err("not a host name or address".into());
    }
    Ok(v.to_string())
}

fn parse_field(v: &str, may_be_empty: bool) -> Result<String, String> {
    if !may_be_empty && v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.contains(['\r', '\n']) {
        return Err("must not contain line breaks".into());
    }
    Ok(v.to_string())
}

fn parse_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(v))
}

/// iptables chain names: up to 28 characters of letters, digits, `-`, `_`.
fn parse_chain(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 28
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !v.starts_with('-');
    if ok {
        Ok(v.to_string())
    } else {
        Err("a chain name is 1-28 letters, digits, '-' or '_'".into())
    }
}

fn parse_count(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "not a whole number".to_string())
}

/// `InvalidAccountID, InvalidPassword, ...` (Asterisk's event names).
fn parse_events(v: &str) -> Result<std::collections::BTreeSet<EventKind>, String> {
    let mut out = std::collections::BTreeSet::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventKind::from_name(name) {
            EventKind::Other(n) => return Err(format!("unknown security event {n:?}")),
            kind => {
                out.insert(kind);
            }
        }
    }
    Ok(out)
}

/// `all`, or `SIP, PJSIP, IAX2, AMI`.
fn parse_services(v: &str) -> Result<Option<std::collections::BTreeSet<String>>, String> {
    if v.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let set: std::collections::BTreeSet<String> = v
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    if set.is_empty() {
        return Err("name at least one service, or all".into());
    }
    Ok(Some(set))
}

/// `FAMILY NAME` (`inet sipban`); a bare name means `inet NAME`.
fn parse_table(v: &str) -> Result<String, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    let (family, name) = match words.as_slice() {
        [name] => ("inet", *name),
        [family, name] => (*family, *name),
        _ => return Err("expected FAMILY NAME, e.g. inet sipban".into()),
    };
    if !matches!(family, "inet" | "ip" | "ip6") {
        return Err("family must be inet, ip or ip6".into());
    }
    parse_set_name(name).map(|n| format!("{family} {n}"))
}

/// ipset/nftables names: up to 31 letters, digits, `-`, `_`, `.`.
fn parse_set_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.len() <= 31
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !v.starts_with('-');
    if ok {
        Ok(v.to_string())
    } else {
        Err("a name is 1-31 letters, digits, '-', '_' or '.'".into())
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err("expected yes or no".into()),
    }
}

/// Longest accepted duration: keeps every `now + duration` far from overflow.
pub const MAX_DURATION: u64 = 100 * 365 * 86400;

/// `600`, `600s`, `10m`, `1h`, `1d`, `1w`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| "not a duration (e.g. 600, 10m, 1h, 1d)".to_string())?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return Err("unknown unit (use s, m, h, d or w)".into()),
    };
    match n.checked_mul(mult) {
        Some(secs) if secs <= MAX_DURATION => Ok(Duration::from_secs(secs)),
        _ => Err("duration too large (at most 100 years)".to_string()),
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl fmt::Display for Config {
    /// The effective settings, secret masked, in the file's own format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self;
        writeln!(f, "[ami]")?;
        writeln!(f, "host = \"{}\"", c.ami.host)?;
        writeln!(f, "port = \"{}\"", c.ami.port)?;
        writeln!(f, "user = \"{}\"", c.ami.user)?;
        writeln!(f, "pass = \"{}\"", c.ami.secret)?;
        writeln!(f, "ping = {}", c.ami.ping.map_or(0, secs))?;
        writeln!(f, "\n[control]")?;
        writeln!(f, "address = \"{}\"", c.control.address)?;
        writeln!(f, "port = \"{}\"", c.control.port)?;
        writeln!(f, "\n[timer]")?;
        writeln!(f, "ban = {}", secs(c.ban_time))?;
        writeln!(f, "\n[iptables]")?;
        writeln!(f, "path = \"{}\"", c.iptables.path)?;
        writeln!(f, "chain = \"{}\"", c.iptables.chain)?;
        writeln!(f, "scope = \"{}\"", c.iptables.scope)?;
        writeln!(f, "rule = \"{}\"", c.iptables.rule)?;
        writeln!(f, "rule6 = \"{}\"", c.iptables.rule6)?;
        writeln!(f, "white_list = \"{}\"", c.iptables.white_list.display())?;
        writeln!(f, "dump = \"{}\"", c.iptables.dump.display())?;
        writeln!(f, "\n[firewall]")?;
        writeln!(f, "backend = \"{}\"", c.firewall.backend)?;
        writeln!(f, "hook = \"{}\"", c.firewall.hook)?;
        writeln!(f, "mode = \"{}\"", c.firewall.mode)?;
        writeln!(f, "table = \"{}\"", c.firewall.table)?;
        writeln!(f, "set4 = \"{}\"", c.firewall.set4)?;
        writeln!(f, "set6 = \"{}\"", c.firewall.set6)?;
        if let Some(d) = &c.firewall.deny4 {
            writeln!(f, "deny4 = \"{d}\"")?;
        }
        if let Some(d) = &c.firewall.deny6 {
            writeln!(f, "deny6 = \"{d}\"")?;
        }
        writeln!(
            f,
            "check_interval = {}",
            c.firewall.check_interval.map_or(0, secs)
        )?;
        let yn = if c.firewall.conntrack { "yes" } else { "no" };
        writeln!(f, "conntrack = {yn}")?;
        let p = &c.policy;
        writeln!(f, "\n[policy]")?;
        writeln!(f, "max_failures = {}", p.max_failures)?;
        writeln!(f, "find_time = {}", secs(p.find_time))?;
        let events: Vec<&str> = p.counted_events.iter().map(|e| e.name()).collect();
        writeln!(f, "events = \"{}\"", events.join(", "))?;
        match &p.services {
            None => writeln!(f, "services = \"all\"")?,
            Some(s) => {
                let s: Vec<&str> = s.iter().map(String::as_str).collect();
                writeln!(f, "services = \"{}\"", s.join(", "))?;
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
        writeln!(f, "test_accounts = \"{}\"", p.test_accounts.join(", "))?;
        writeln!(f, "ban_time_factor = {}", p.ban_time_factor)?;
        if let Some(m) = p.max_ban_time {
            writeln!(f, "max_ban_time = {}", secs(m))?;
        }
        if let Some(b) = p.block_threshold {
            writeln!(f, "block_threshold = {b}")?;
        }
        writeln!(f, "forget_after = {}", secs(p.forget_after))?;
        writeln!(f, "\n[lists]")?;
        writeln!(f, "allow = \"{}\"", c.lists.allow.display())?;
        writeln!(f, "deny = \"{}\"", c.lists.deny.display())?;
        writeln!(f, "\n[log]")?;
        writeln!(f, "file = \"{}\"", c.log_file.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("18446744073709551615").is_err());
        assert!(parse_duration("99999999999999w").is_err());
        assert!(parse_duration("100y").is_err());
    }

    #[test]
    fn quotes_and_hashes_in_values() {
        assert_eq!(unquote("\"get#out\""), "get#out");
        assert_eq!(unquote("\"a b\" # note"), "a b");
        assert_eq!(unquote("600 # ten minutes"), "600");
        assert_eq!(unquote("plain"), "plain");
    }
}
