//! The values of Via, CSeq and Content-Length.
//!
//! Each reads what it can and gives `None` for a value it cannot make sense
//! of: a bad CSeq does not make the Call-ID unreadable.

use super::method::{Method, is_token};
use super::text::{SipText, is_ws, parse_decimal, split_at_first, split_once, trim};
use super::uri::{host_port, param};

/// The first (topmost) Via: who says it sent the request. Never trust its
/// host for a ban: scanners put `127.0.0.1` there; the packet's source is
/// the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    pub transport: Transport<'a>,
    /// Without the brackets of an IPv6 reference.
    pub host: Option<SipText<'a>>,
    pub port: Option<u16>,
    /// A retransmission repeats the branch: the same attempt, not a new one.
    pub branch: Option<SipText<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other(SipText<'a>),
}

impl<'a> Transport<'a> {
    fn of(name: &'a [u8]) -> Self {
        const NAMES: [(&[u8], Transport<'static>); 6] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Transport::Other(SipText::new(name)), |&(_, t)| t)
    }
}

impl<'a> Via<'a> {
    /// `SIP/2.0/UDP host:port;branch=...;rport`, with whitespace allowed
    /// around the slashes (RFC 3261 §20.42); only the first value of a
    /// comma-separated list.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let value = trim(value);
        // sent-protocol: name / version / transport.
        let (_name, rest) = split_once(value, b'/')?;
        let (_version, rest) = split_once(rest, b'/')?;
        let rest = trim_start(rest);
        let (transport, rest) = split_at_first(rest, |b| is_ws(b) || b == b';' || b == b',');
        if !is_token(transport) {
            return None;
        }
        let rest = trim_start(rest);
        let (sent_by, params) = split_sent_by(rest);
        let (host, port) = host_port(sent_by);
        Some(Via {
            transport: Transport::of(transport),
            host,
            port,
            branch: param(params, b"branch"),
        })
    }
}

/// `host[:port]` up to its params, or up to the next Via value. The
/// brackets of an IPv6 reference may hold colons but nothing else.
fn split_sent_by(rest: &[u8]) -> (&[u8], &[u8]) {
    let mut in_brackets = false;
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            b';' | b',' => {
                return (
                    rest.get(..i).unwrap_or_default(),
                    rest.get(i..).unwrap_or_default(),
                );
            }
            b if is_ws(b) && !in_brackets => {
                // `host ;branch=..` or `host , next`: params may follow spaces.
                let after = trim_start(rest.get(i..).unwrap_or_default());
                let params = if after.starts_with(b";") {
                    after
                } else {
                    &[][..]
                };
                return (rest.get(..i).unwrap_or_default(), params);
            }
            _ => {}
        }
    }
    (rest, &[])
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let (_, rest) = split_at_first(bytes, |b| !is_ws(b));
    rest
}

/// `CSeq: 2 REGISTER`: the transaction's number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// RFC 3261 allows up to 2^31 - 1; any `u32` is read.
    pub seq: u32,
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let value = trim(value);
        let (seq, method) = split_at_first(value, is_ws);
        let seq = u32::try_from(parse_decimal(seq, 10)?).ok()?;
        let method = trim(method);
        is_token(method).then(|| CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

/// The Content-Length value: decimal digits only (leading zeros allowed);
/// more than 19 digits or anything else is unreadable.
pub(super) fn content_length(value: &[u8]) -> Option<usize> {
    parse_decimal(trim(value), 19).and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<SipText<'_>> {
        Some(SipText::new(s.as_bytes()))
    }

    #[test]
    fn vias() {
        let v = Via::parse(b" SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1620776056;rport").unwrap();
        assert_eq!(
            v,
            Via {
                transport: Transport::Udp,
                host: t("127.0.0.1"),
                port: Some(5060),
                branch: t("z9hG4bK-1620776056")
            }
        );
        let v = Via::parse(b"SIP/2.0/TCP [2001:db8:113::14]:37196;branch=z9hG4bKb65310edc0;rport")
            .unwrap();
        assert_eq!(
            (v.transport, v.host, v.port),
            (Transport::Tcp, t("2001:db8:113::14"), Some(37196))
        );
        let v =
            Via::parse(b"SIP / 2.0 / tls  host.example ;branch=b1 , SIP/2.0/UDP other;branch=b2")
                .unwrap();
        assert_eq!(
            (v.transport, v.host, v.port, v.branch),
            (Transport::Tls, t("host.example"), None, t("b1"))
        );
        let v = Via::parse(b"SIP/2.0/UDP a,SIP/2.0/UDP b;branch=no").unwrap();
        assert_eq!((v.host, v.branch), (t("a"), None));
        let v = Via::parse(b"SIP/2.0/XYZ h").unwrap();
        assert_eq!(v.transport, Transport::Other(SipText::new(b"XYZ")));
        let v = Via::parse(b"SIP/2.0/UDP").unwrap();
        assert_eq!((v.host, v.branch), (None, None));
        assert_eq!(Via::parse(b"SIP/2.0 UDP host"), None);
        // Spaces may follow a slash, so this is transport `host`, no sent-by.
        let v = Via::parse(b"SIP/2.0/ host").unwrap();
        assert_eq!(
            (v.transport, v.host),
            (Transport::Other(SipText::new(b"host")), None)
        );
        assert_eq!(Via::parse(b""), None);
    }

    #[test]
    fn cseqs() {
        assert_eq!(
            CSeq::parse(b" 2 REGISTER"),
            Some(CSeq {
                seq: 2,
                method: Method::Register
            })
        );
        assert_eq!(
            CSeq::parse(b"1\tACK "),
            Some(CSeq {
                seq: 1,
                method: Method::Ack
            })
        );
        assert_eq!(
            CSeq::parse(b"4294967295 FOO").map(|c| c.seq),
            Some(u32::MAX)
        );
        assert_eq!(CSeq::parse(b"4294967296 INVITE"), None);
        assert_eq!(CSeq::parse(b"x INVITE"), None);
        assert_eq!(CSeq::parse(b"1"), None);
        assert_eq!(CSeq::parse(b"1 IN VITE"), None);
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"  0"), Some(0));
        assert_eq!(content_length(b" 0118 "), Some(118));
        assert_eq!(content_length(b" -1"), None);
        assert_eq!(content_length(b" 1 2"), None);
        assert_eq!(content_length(b""), None);
        assert_eq!(content_length(b"99999999999999999999"), None);
    }
}
