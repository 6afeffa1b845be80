//! The white list file: one IP or CIDR per line (IPv4 or IPv6), `#` starts a
//! comment, blank lines are ignored. A bad line is an error naming file:line.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ListError {
    #[error("{path}:{line}: {text:?} is not an IP address or CIDR")]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parsed entries, kept in file order for `wl`.
#[derive(Clone, Debug, Default)]
pub struct Whitelist {
    nets: Vec<IpNet>,
}

impl Whitelist {
    pub fn from_nets(nets: Vec<IpNet>) -> Self {
        Whitelist { nets }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ListError> {
        let mut nets = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let net = parse_net(entry).ok_or_else(|| ListError::BadLine {
                path: path.to_path_buf(),
                line: idx + 1,
                text: raw.trim().to_string(),
            })?;
            nets.push(net);
        }
        Ok(Whitelist { nets })
    }

    /// Reads `path`; a missing file is an empty list (the original behaved so)
    /// and the caller is told, so it can warn.
    pub fn load(path: &Path) -> Result<(Self, bool), ListError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::parse(&text, path)?, true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::default(), false)),
            Err(source) => Err(ListError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The entry covering `ip`, if any.
    pub fn find(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = ip.to_canonical();
        self.nets.iter().copied().find(|net| net.contains(&ip))
    }

    pub fn entries(&self) -> &[IpNet] {
        &self.nets
    }
}

/// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`; host bits in a CIDR are
/// cleared (`192.0.2.7/24` covers `192.0.2.0/24`).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>()
        .ok()
        .map(|ip| IpNet::from(ip.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wl(text: &str) -> Whitelist {
        Whitelist::parse(text, Path::new("test.wl")).unwrap()
    }

    #[test]
    fn cidr_v4_and_v6_and_single_addresses() {
        let w =
            wl("# office\n198.51.100.0/24\n\n192.0.2.10   # pbx\n2001:db8:1::/48\n2001:db8::7\n");
        assert_eq!(w.entries().len(), 4);
        let hit = |s: &str| w.find(s.parse().unwrap());
        assert_eq!(hit("198.51.100.77").unwrap().to_string(), "198.51.100.0/24");
        assert_eq!(hit("192.0.2.10").unwrap().to_string(), "192.0.2.10/32");
        assert!(hit("192.0.2.11").is_none());
        assert_eq!(
            hit("2001:db8:1:ffff::1").unwrap().to_string(),
            "2001:db8:1::/48"
        );
        assert!(hit("2001:db8::7").is_some());
        assert!(hit("2001:db8::8").is_none());
        // IPv4-mapped IPv6 is the IPv4 host.
        assert!(hit("::ffff:198.51.100.1").is_some());
    }

    #[test]
    fn host_bits_are_cleared() {
        let w = wl("192.0.2.77/24\n");
        assert_eq!(w.entries()[0].to_string(), "192.0.2.0/24");
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let err =
            Whitelist::parse("10.0.0.1\n\n10.0.0.300\n", Path::new("/etc/sipban.wl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/sipban.wl:3: \"10.0.0.300\" is not an IP address or CIDR"
        );
        for bad in ["1.2.3.4/33", "hello", "1.2.3.4 5.6.7.8", "2001:db8::/129"] {
            assert!(Whitelist::parse(bad, Path::new("x")).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_file_is_empty_and_reported() {
        let (w, found) = Whitelist::load(Path::new("/nonexistent/sipban.wl")).unwrap();
        assert!(!found);
        assert!(w.entries().is_empty());
    }
}
