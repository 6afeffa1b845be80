//! Reading the ban sets for the drift check, on the lister thread.

use std::net::IpAddr;
use std::time::Duration;

use crate::firewall::exec::run;
use crate::firewall::ipset_tool;
use crate::firewall::{FirewallError, Held, Lister};

/// An `add SET 192.0.2.1 timeout 3597` line of `ipset save SET`.
pub(super) fn parse_saved(line: &str, set: &str) -> Option<Held> {
    let mut w = line.split_whitespace();
    if w.next() != Some("add") || w.next() != Some(set) {
        return None;
    }
    let ip = w.next()?.parse::<IpAddr>().ok()?;
    let mut remaining = None;
    while let Some(word) = w.next() {
        if word == "timeout" {
            remaining = w
                .next()
                .and_then(|t| t.parse().ok())
                .map(Duration::from_secs);
        }
    }
    Some(Held { ip, remaining })
}

/// Counts our ban sets by their headers and lists them with `ipset save`,
/// on the lister thread.
pub(super) struct IpsetLister {
    pub(super) ipset: String,
    pub(super) sets: [String; 2],
}

impl Lister for IpsetLister {
    fn held(&mut self) -> Result<Vec<Held>, FirewallError> {
        let mut out = Vec::new();
        for set in &self.sets {
            let saved = run(&self.ipset, &["save", set], None)?;
            out.extend(saved.lines().filter_map(|l| parse_saved(l, set)));
        }
        Ok(out)
    }

    fn count(&mut self) -> Result<Option<usize>, FirewallError> {
        let mut n = 0;
        for set in &self.sets {
            n += ipset_tool::entries(&self.ipset, set)?;
        }
        Ok(Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_elements_with_timeouts() {
        let h = parse_saved("add v4 192.0.2.1 timeout 3597", "v4").unwrap();
        assert_eq!(h.ip, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(h.remaining, Some(Duration::from_secs(3597)));
        let h = parse_saved("add v6 2001:db8::1", "v6").unwrap();
        assert_eq!(h.remaining, None);
        assert!(parse_saved("add other 192.0.2.1 timeout 5", "v4").is_none());
        assert!(parse_saved("create v4 hash:ip family inet", "v4").is_none());
        assert!(parse_saved("add v4 not-an-ip timeout 5", "v4").is_none());
    }
}
