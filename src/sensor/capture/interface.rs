//! Which interface a capture listens on, and its index in the calling
//! thread's network namespace.

use std::ffi::CString;
use std::fmt;
use std::io;

use super::CaptureError;

/// One interface by name, or all of them (`any`, or an empty list).
///
/// On `Any` a packet routed between two interfaces is seen on both, and a
/// packet over loopback twice (outgoing, then incoming).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interface {
    Any,
    Named(String),
}

impl Interface {
    /// `""` and `any` (any case) are all interfaces; anything else a name,
    /// checked when the capture opens.
    pub fn parse(name: &str) -> Interface {
        let name = name.trim();
        if name.is_empty() || name.eq_ignore_ascii_case("any") {
            Interface::Any
        } else {
            Interface::Named(name.to_string())
        }
    }

    /// The interfaces of a configured list: all of them when the list is
    /// empty or names `any` (a capture on every interface already sees the
    /// named ones), else each name once, in order.
    pub fn from_list<I, S>(names: I) -> Vec<Interface>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<Interface> = Vec::new();
        for name in names {
            match Interface::parse(name.as_ref()) {
                Interface::Any => return vec![Interface::Any],
                named => {
                    if !out.contains(&named) {
                        out.push(named);
                    }
                }
            }
        }
        if out.is_empty() {
            out.push(Interface::Any);
        }
        out
    }

    /// The index to bind to (0 = all interfaces).
    pub(crate) fn index(&self) -> Result<libc::c_int, CaptureError> {
        let Interface::Named(name) = self else {
            return Ok(0);
        };
        let unknown = || CaptureError::UnknownInterface {
            interface: self.clone(),
        };
        if !valid_name(name) {
            return Err(unknown());
        }
        let c_name = CString::new(name.as_bytes()).map_err(|_| unknown())?;
        // SAFETY: `c_name` is a NUL-terminated string alive for the call.
        let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if index == 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => unknown(),
                _ => CaptureError::Io {
                    interface: self.clone(),
                    op: "look up the interface",
                    source: e,
                },
            });
        }
        libc::c_int::try_from(index).map_err(|_| unknown())
    }
}

/// The kernel's rule for a device name (`dev_valid_name`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interface::Any => f.write_str("any interface"),
            // The name comes from a config file: no control bytes to a log.
            Interface::Named(name) => write!(f, "interface {}", name.escape_debug()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_lists() {
        assert_eq!(Interface::parse(" ANY "), Interface::Any);
        assert_eq!(Interface::parse(""), Interface::Any);
        assert_eq!(Interface::parse("eth0"), Interface::Named("eth0".into()));
        let none: [&str; 0] = [];
        assert_eq!(Interface::from_list(none), vec![Interface::Any]);
        assert_eq!(Interface::from_list(["eth0", "any"]), vec![Interface::Any]);
        assert_eq!(
            Interface::from_list(["eth0", "eth1", "eth0"]),
            vec![
                Interface::Named("eth0".into()),
                Interface::Named("eth1".into())
            ]
        );
    }

    #[test]
    fn invalid_names_are_unknown_interfaces() {
        for bad in ["a/b", "a:1", "a b", "..", ".", "0123456789abcdef", "a\0b"] {
            let i = Interface::Named(bad.into());
            assert!(
                matches!(i.index(), Err(CaptureError::UnknownInterface { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(Interface::Any.index().ok(), Some(0));
    }

    #[test]
    fn display_names_the_interface() {
        assert_eq!(Interface::Any.to_string(), "any interface");
        assert_eq!(
            Interface::Named("eth0\x1b[2J".into()).to_string(),
            "interface eth0\\u{1b}[2J"
        );
    }
}
