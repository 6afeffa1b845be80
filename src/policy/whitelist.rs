//! The white list file: one IP or CIDR per line (IPv4 or IPv6), an optional
//! note after it, `#` starts a comment, blank lines are ignored. A bad line
//! is an error naming file:line; so is an entry covering every address.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::lists::{AddressList, ListKind};
pub use super::lists::{ListError, ListWarning, parse_net};

/// The networks of the white list, in file order (for `wl`). The file is
/// the allow list, so it is read by the allow list's parser: the same
/// format (notes after the address included) and the same errors.
#[derive(Clone, Debug, Default)]
pub struct Whitelist {
    nets: Vec<IpNet>,
    warnings: Vec<ListWarning>,
}

impl Whitelist {
    pub fn from_nets(nets: Vec<IpNet>) -> Self {
        Whitelist {
            nets,
            warnings: Vec::new(),
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ListError> {
        AddressList::parse_as(text, path, ListKind::Allow).map(Self::from_list)
    }

    /// Reads `path`; a missing file is an empty list (the original behaved so)
    /// and the caller is told, so it can warn.
    pub fn load(path: &Path) -> Result<(Self, bool), ListError> {
        AddressList::load_as(path, ListKind::Allow)
            .map(|(list, found)| (Self::from_list(list), found))
    }

    fn from_list(list: AddressList) -> Self {
        Whitelist {
            nets: list.nets(),
            warnings: list.warnings().to_vec(),
        }
    }

    /// Lines to warn about (host bits set, repeated entries), in file order.
    pub fn warnings(&self) -> &[ListWarning] {
        &self.warnings
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
    fn notes_after_the_address_are_accepted() {
        let w = wl("198.51.100.0/24 head office\n");
        assert_eq!(w.entries()[0].to_string(), "198.51.100.0/24");
    }

    #[test]
    fn host_bits_are_cleared_with_a_warning() {
        let w = wl("192.0.2.77/24\n");
        assert_eq!(w.entries()[0].to_string(), "192.0.2.0/24");
        let warnings: Vec<String> = w.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            ["test.wl:1: 192.0.2.77/24 has host bits set; it means 192.0.2.0/24"]
        );
    }

    #[test]
    fn an_entry_allowing_everything_is_refused() {
        for all in ["0.0.0.0/0", "::/0", "10.0.0.1/0", "::ffff:0:0/96"] {
            let err = Whitelist::parse(
                &format!("192.0.2.1\n{all} everyone\n"),
                Path::new("/etc/sipban.wl"),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "/etc/sipban.wl:2: \"{all} everyone\" would allow every address: nothing would ever be banned"
                )
            );
        }
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
