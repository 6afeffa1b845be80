//! What the ipset and chain backends do with the `ipset` tool itself:
//! existence checks, and refilling a `hash:net` set atomically (the deny
//! sets, the limits' exempt sets): the new content goes into a temporary
//! set, swapped in, all in one `ipset restore`.

use std::fmt::Write as _;

use ipnet::IpNet;

use super::deny;
use super::exec::{run, works};
use super::{Depth, FirewallError};

/// Longest ipset name (`IPSET_MAXNAMELEN` - 1).
pub const MAX_NAME: usize = 31;

/// `maxelem` of our sets.
pub const MAXELEM: &str = "2000000";

pub fn set_exists(ipset: &str, set: &str) -> bool {
    works(ipset, &["list", set, "-t"])
}

/// How many entries `set` holds, from its header (`ipset list -t`): the
/// kernel counts them, nothing is listed.
pub fn entries(ipset: &str, set: &str) -> Result<usize, FirewallError> {
    let header = run(ipset, &["list", set, "-t"], None)?;
    parse_entries(&header).ok_or_else(|| FirewallError::Command {
        what: format!("{ipset} list {set} -t"),
        detail: "no \"Number of entries\" in its header".into(),
    })
}

fn parse_entries(header: &str) -> Option<usize> {
    header
        .lines()
        .find_map(|l| l.trim().strip_prefix("Number of entries:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether `set` holds exactly `nets` (as [`swap_fill`] puts them): at
/// [`Depth::Quick`] by count, at [`Depth::Full`] entry by entry.
pub fn holds(
    ipset: &str,
    set: &str,
    want: &deny::DenyList,
    v6: bool,
    depth: Depth,
) -> Result<bool, FirewallError> {
    match depth {
        Depth::Quick => {
            Ok(entries(ipset, set)? == deny::without_zero_prefix(want.family(v6)).len())
        }
        Depth::Full => Ok(want.matches(v6, &saved_nets(ipset, set)?)),
    }
}

/// The temporary set a new content is loaded into before the swap.
pub fn swap_name(set: &str) -> String {
    let mut cut = set.len().min(MAX_NAME - 4);
    while !set.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-new", set.get(..cut).unwrap_or_default())
}

/// `base-suffix`, `base` shortened so the whole fits in `max` bytes.
pub fn fit(base: &str, suffix: &str, max: usize) -> String {
    let mut cut = base.len().min(max.saturating_sub(suffix.len() + 1));
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{suffix}", base.get(..cut).unwrap_or_default())
}

/// Makes the `hash:net` set `set` (created if missing) hold exactly
/// `nets` of `family` (`inet`/`inet6`), in one `ipset restore` with a swap:
/// no packet sees it half filled.
pub fn swap_fill(
    ipset: &str,
    set: &str,
    family: &str,
    nets: &[IpNet],
) -> Result<(), FirewallError> {
    if set.len() > MAX_NAME {
        return Err(FirewallError::Command {
            what: format!("ipset {set}"),
            detail: format!("set name longer than {MAX_NAME} characters"),
        });
    }
    let tmp = swap_name(set);
    if set_exists(ipset, &tmp) {
        run(ipset, &["destroy", &tmp], None)?;
    }
    let nets = deny::without_zero_prefix(nets);
    let mut script = String::with_capacity(128 + nets.len() * 40);
    let create = |name: &str| format!("create {name} hash:net family {family} maxelem {MAXELEM}");
    if !set_exists(ipset, set) {
        let _ = writeln!(script, "{}", create(set));
    }
    let _ = writeln!(script, "{}", create(&tmp));
    for net in &nets {
        let _ = writeln!(script, "add {tmp} {net}");
    }
    let _ = writeln!(script, "swap {tmp} {set}");
    let _ = writeln!(script, "destroy {tmp}");
    let result = run(ipset, &["restore"], Some(script.as_bytes())).map(|_| ());
    if result.is_err() && set_exists(ipset, &tmp) {
        let _ = run(ipset, &["destroy", &tmp], None);
    }
    result
}

/// Entries of a `hash:net` set as `ipset save` lists them.
pub fn saved_nets(ipset: &str, set: &str) -> Result<Vec<IpNet>, FirewallError> {
    let saved = run(ipset, &["save", set], None)?;
    Ok(saved
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("add") && w.next() == Some(set))
                .then(|| deny::parse_net(w.next()?))
                .flatten()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_names_fit_ipset_limit() {
        assert_eq!(swap_name("sipban-udp-v4-deny"), "sipban-udp-v4-deny-new");
        let long = "a-very-long-chain-name-v4-deny";
        assert_eq!(long.len(), 30);
        let tmp = swap_name(long);
        assert!(tmp.len() <= MAX_NAME, "{tmp}");
        assert_ne!(tmp, long);
    }

    #[test]
    fn entries_from_the_header() {
        let header = "Name: t1\nType: hash:ip\nRevision: 6\nHeader: family inet hashsize 1024 \
                      maxelem 65536 timeout 100\nSize in memory: 344\nReferences: 0\n\
                      Number of entries: 17\n";
        assert_eq!(parse_entries(header), Some(17));
        assert_eq!(parse_entries("Name: t1\n"), None);
        assert_eq!(parse_entries("Number of entries: many\n"), None);
    }

    #[test]
    fn fitted_names() {
        assert_eq!(
            fit("sipban-udp-v4", "allow", MAX_NAME),
            "sipban-udp-v4-allow"
        );
        let long = "a".repeat(31);
        let f = fit(&long, "allow", MAX_NAME);
        assert_eq!(f.len(), MAX_NAME);
        assert!(f.ends_with("-allow"));
    }
}
