//! Asterisk's address format in security events:
//! `IPV4|IPV6 / [transport /] address / port`, e.g. `IPV4/UDP/192.0.2.1/5060`
//! or `IPV6/UDP/2001:db8::1/5060` (no brackets).

use std::net::IpAddr;

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAddress {
    pub ip: IpAddr,
    pub port: u16,
    pub transport: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("cannot parse address {raw:?}: {why}")]
pub struct AddressError {
    pub raw: String,
    pub why: &'static str,
}

impl std::str::FromStr for RemoteAddress {
    type Err = AddressError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let fail = |why| AddressError {
            raw: raw.to_string(),
            why,
        };
        let parts: Vec<&str> = raw.trim().split('/').collect();
        if parts.len() < 3 {
            return Err(fail("expected FAMILY/[TRANSPORT/]ADDRESS/PORT"));
        }
        let family = parts[0];
        if !family.eq_ignore_ascii_case("IPV4") && !family.eq_ignore_ascii_case("IPV6") {
            return Err(fail("family is not IPV4 or IPV6"));
        }
        // Address and port are taken from the end: the transport segment is
        // optional depending on the Asterisk version.
        let port = parts[parts.len() - 1]
            .parse::<u16>()
            .map_err(|_| fail("port is not a number 0-65535"))?;
        let addr = parts[parts.len() - 2];
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr.parse().map_err(|_| fail("not an IP address"))?;
        let transport = match parts.len() {
            3 => None,
            4 => Some(parts[1].to_string()).filter(|t| !t.is_empty()),
            _ => return Err(fail("too many '/' segments")),
        };
        Ok(RemoteAddress {
            // An IPv4-mapped IPv6 source is the IPv4 host: ban it as IPv4.
            ip: ip.to_canonical(),
            port,
            transport,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RemoteAddress, AddressError> {
        s.parse()
    }

    #[test]
    fn ipv4_with_transport() {
        let a = parse("IPV4/UDP/203.0.113.11/5060").unwrap();
        assert_eq!(a.ip, "203.0.113.11".parse::<IpAddr>().unwrap());
        assert_eq!(a.port, 5060);
        assert_eq!(a.transport.as_deref(), Some("UDP"));
    }

    #[test]
    fn ipv6_without_brackets() {
        let a = parse("IPV6/UDP/::1/48740").unwrap();
        assert_eq!(a.ip, "::1".parse::<IpAddr>().unwrap());
        let a = parse("IPV6/TCP/2001:db8:113::11/5061").unwrap();
        assert_eq!(a.ip, "2001:db8:113::11".parse::<IpAddr>().unwrap());
        assert_eq!(a.port, 5061);
    }

    #[test]
    fn no_transport_segment() {
        let a = parse("IPV4/192.0.2.7/5060").unwrap();
        assert_eq!(a.ip, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(a.transport, None);
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let a = parse("IPV6/UDP/::ffff:198.51.100.9/5060").unwrap();
        assert_eq!(a.ip, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert!(a.ip.is_ipv4());
    }

    #[test]
    fn bracketed_ipv6_tolerated() {
        let a = parse("IPV6/UDP/[2001:db8::5]/5060").unwrap();
        assert_eq!(a.ip, "2001:db8::5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_is_an_error_with_the_raw_value() {
        for raw in [
            "",
            "garbage",
            "IPV4/UDP/not-an-ip/5060",
            "IPV4/UDP/1.2.3.4/port",
            "IPV4/UDP/1.2.3.4/70000",
            "IPX/UDP/1.2.3.4/5060",
            "IPV4/UDP/extra/1.2.3.4/5060",
            "IPV4/UDP/1.2.3.4",
        ] {
            let err = parse(raw).unwrap_err();
            assert_eq!(err.raw, raw);
            assert!(err.to_string().contains(&format!("{raw:?}")));
        }
    }
}
