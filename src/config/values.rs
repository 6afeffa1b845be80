//! Value parsers: one config value (already unquoted) to a typed setting,
//! or the reason it is refused, which the caller puts after
//! `file:line: [section] key = "value": `.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::ami::Secret;
use crate::event::EventKind;

/// Longest accepted duration: keeps every `now + duration` far from overflow.
pub const MAX_DURATION: u64 = 100 * 365 * 86400;

/// `600`, `600s`, `10m`, `1h`, `1d`, `1w`, at most [`MAX_DURATION`].
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let unit_at = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at_checked(unit_at).unwrap_or((v, ""));
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

/// A duration of at least one second; `what` names it in the error.
pub(crate) fn parse_positive_duration(v: &str, what: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        return Err(format!("{what} must last at least one second"));
    }
    Ok(d)
}

/// A duration where `0` means "off".
pub(crate) fn parse_optional_duration(v: &str) -> Result<Option<Duration>, String> {
    parse_duration(v).map(|d| Some(d).filter(|d| !d.is_zero()))
}

pub(crate) fn parse_port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(0) | Err(_) => Err("not a port number (1-65535)".into()),
        Ok(p) => Ok(p),
    }
}

pub(crate) fn parse_host(v: &str) -> Result<String, String> {
    if v.is_empty() || v.contains(char::is_whitespace) {
        return Err("not a host name or address".into());
    }
    Ok(v.to_string())
}

pub(crate) fn parse_field(v: &str, may_be_empty: bool) -> Result<String, String> {
    if !may_be_empty && v.is_empty() {
        return Err("must not be empty".into());
    }
    if v.contains(['\r', '\n']) {
        return Err("must not contain line breaks".into());
    }
    Ok(v.to_string())
}

/// The console password: typed after `login`, so it must be typeable.
pub(crate) fn parse_console_secret(v: &str) -> Result<Secret, String> {
    if v.is_empty() {
        return Err("an empty secret is no password; set one or remove the key".into());
    }
    if v.contains(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if v.trim() != v {
        return Err("must not start or end with a space".into());
    }
    Ok(Secret::new(v))
}

pub(crate) fn parse_path(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(v))
}

/// A directory that bounds what the daemon reads: relative paths would
/// depend on its working directory.
pub(crate) fn parse_absolute_dir(v: &str) -> Result<PathBuf, String> {
    let path = parse_path(v)?;
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    Ok(path)
}

/// iptables chain names: up to 28 characters of letters, digits, `-`, `_`.
pub(crate) fn parse_chain(v: &str) -> Result<String, String> {
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

pub(crate) fn parse_count(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "not a whole number".to_string())
}

/// `InvalidAccountID, InvalidPassword, ...` (Asterisk's event names).
pub(crate) fn parse_events(v: &str) -> Result<BTreeSet<EventKind>, String> {
    let mut out = BTreeSet::new();
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
pub(crate) fn parse_services(v: &str) -> Result<Option<BTreeSet<String>>, String> {
    if v.trim().eq_ignore_ascii_case("all") {
        return Ok(None);
    }
    let set: BTreeSet<String> = v
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect();
    if set.is_empty() {
        return Err("name at least one service, or all".into());
    }
    Ok(Some(set))
}

/// `100, 1000`: account names, blanks dropped.
pub(crate) fn parse_accounts(v: &str) -> Result<Vec<String>, String> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect())
}

pub(crate) fn parse_factor(v: &str) -> Result<f64, String> {
    v.parse::<f64>().map_err(|_| "not a number".to_string())
}

/// `FAMILY NAME` (`inet sipban`); a bare name means `inet NAME`.
pub(crate) fn parse_table(v: &str) -> Result<String, String> {
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
pub(crate) fn parse_set_name(v: &str) -> Result<String, String> {
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

pub(crate) fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err("expected yes or no".into()),
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
        assert_eq!(parse_duration("2 w"), Ok(Duration::from_secs(14 * 86400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-5").is_err());
        assert!(parse_duration("5é").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("18446744073709551615").is_err());
        assert!(parse_duration("99999999999999w").is_err());
        assert!(parse_duration("100y").is_err());
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert!(parse_positive_duration("0", "a ban").is_err());
    }

    #[test]
    fn console_secrets_must_be_typeable() {
        assert_eq!(
            parse_console_secret("s3cr#t w0rd").unwrap().expose(),
            "s3cr#t w0rd"
        );
        for bad in ["", " lead", "trail ", "tab\there", "cr\rhere"] {
            assert!(parse_console_secret(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn import_dir_must_be_absolute() {
        assert!(parse_absolute_dir("/var/lib/sipban/import").is_ok());
        assert!(parse_absolute_dir("import").is_err());
        assert!(parse_absolute_dir("").is_err());
    }
}
