//! SIP and tel URIs, and the name-addr form of From/To/Contact.
//!
//! Only what tells who is addressed is taken: the scheme, the user part
//! (the extension or account being tried), the host and port. Everything
//! is looked for, not required: a scanner's `From: "x"<sip:100@1.1.1.1>`
//! (no space before `<`), a bare `sip:host` with no user, an IPv6 host in
//! brackets, or a URI cut short all give what can be read and `None` for
//! the rest.

use super::text::{SipText, parse_decimal, split_at_first, split_once, trim};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme<'a> {
    Sip,
    Sips,
    Tel,
    /// Another scheme, or none (`*` in a Contact, or junk).
    Other(SipText<'a>),
}

/// A URI as far as it could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme<'a>,
    /// The user part (`100` in `sip:100@host`, the number of a `tel:` URI),
    /// without a password; still %-escaped as sent. `None` when the URI has
    /// no user (`sip:203.0.113.1`) or it is empty.
    pub user: Option<SipText<'a>>,
    /// The host, without the brackets of an IPv6 reference.
    pub host: Option<SipText<'a>>,
    pub port: Option<u16>,
    /// The whole URI as sent.
    pub raw: SipText<'a>,
}

impl<'a> Uri<'a> {
    /// Reads one URI (already cut out of its surroundings).
    pub fn parse(raw: &'a [u8]) -> Self {
        let raw = trim(raw);
        let (scheme, rest) = match split_once(raw, b':') {
            Some((name, rest)) if is_scheme_name(name) => (scheme_of(name), rest),
            _ => (Scheme::Other(SipText::new(&[])), raw),
        };
        let mut uri = Uri {
            scheme,
            user: None,
            host: None,
            port: None,
            raw: SipText::new(raw),
        };
        match scheme {
            Scheme::Tel => {
                // tel:+1-201-555-0123;phone-context=...: the number is the user.
                let (number, _) = split_at_first(rest, |b| b == b';' || b == b'?');
                uri.user = non_empty(number);
            }
            Scheme::Sip | Scheme::Sips => {
                let (user, hostport) = match split_once(rest, b'@') {
                    Some((userinfo, hostport)) => {
                        // user[:password]
                        let (user, _) = split_at_first(userinfo, |b| b == b':');
                        (non_empty(user), hostport)
                    }
                    None => (None, rest),
                };
                let (hostport, _) = split_at_first(hostport, |b| b == b';' || b == b'?');
                let (host, port) = host_port(hostport);
                uri.user = user;
                uri.host = host;
                uri.port = port;
            }
            Scheme::Other(_) => {}
        }
        uri
    }
}

fn is_scheme_name(name: &[u8]) -> bool {
    name.first().is_some_and(u8::is_ascii_alphabetic)
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn scheme_of(name: &[u8]) -> Scheme<'_> {
    if name.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if name.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if name.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other(SipText::new(name))
    }
}

fn non_empty(bytes: &[u8]) -> Option<SipText<'_>> {
    let bytes = trim(bytes);
    (!bytes.is_empty()).then_some(SipText::new(bytes))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`. A bare IPv6 address (more than
/// one colon, no brackets) is all host.
pub(super) fn host_port(bytes: &[u8]) -> (Option<SipText<'_>>, Option<u16>) {
    let bytes = trim(bytes);
    if let Some(inside) = bytes.strip_prefix(b"[") {
        return match split_once(inside, b']') {
            Some((host, after)) => (non_empty(host), after.strip_prefix(b":").and_then(port)),
            // No closing bracket: keep what there is.
            None => (non_empty(inside), None),
        };
    }
    match split_once(bytes, b':') {
        Some((host, p)) if !p.contains(&b':') => (non_empty(host), port(p)),
        Some(_) => (non_empty(bytes), None),
        None => (non_empty(bytes), None),
    }
}

fn port(bytes: &[u8]) -> Option<u16> {
    parse_decimal(trim(bytes), 5).and_then(|p| u16::try_from(p).ok())
}

/// A From, To or Contact value: `"Name" <uri>;params`, `Name <uri>`,
/// `<uri>`, or a bare `uri;params` (whose `;` then start the header's
/// parameters, RFC 3261 §20.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name, without its quotes (backslash escapes kept).
    pub display_name: Option<SipText<'a>>,
    pub uri: Uri<'a>,
    /// The `tag` parameter: PJSIP's stateless 401 sets the To tag to the
    /// request's Via branch; svcrack's From tag is the hex of `user:guess`.
    pub tag: Option<SipText<'a>>,
}

impl<'a> NameAddr<'a> {
    /// Reads the first value of a From/To/Contact header.
    pub fn parse(value: &'a [u8]) -> Self {
        let value = trim(value);
        let (display_name, rest) = display_name(value);
        let (uri, params) = match split_once(rest, b'<') {
            Some((_, inner)) => match split_once(inner, b'>') {
                Some((uri, params)) => (uri, params),
                // `<` never closed: the URI runs to the end, no params.
                None => (inner, &[][..]),
            },
            None => split_at_first(rest, |b| b == b';' || b == b','),
        };
        NameAddr {
            display_name,
            uri: Uri::parse(uri),
            tag: param(params, b"tag"),
        }
    }
}

/// A quoted display name, or the tokens before `<`. Returns it and what
/// follows it.
fn display_name(value: &[u8]) -> (Option<SipText<'_>>, &[u8]) {
    if let Some(quoted) = value.strip_prefix(b"\"") {
        let mut escaped = false;
        for (i, &b) in quoted.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    let name = quoted.get(..i).unwrap_or_default();
                    let rest = quoted.get(i + 1..).unwrap_or_default();
                    return (Some(SipText::new(name)), rest);
                }
                _ => {}
            }
        }
        // Unterminated quote: no address can be found after it.
        return (Some(SipText::new(quoted)), &[]);
    }
    match split_once(value, b'<') {
        Some((name, _)) if !name.contains(&b':') => {
            let name = trim(name);
            let rest = value.get(name.len()..).unwrap_or_default();
            (non_empty(name), rest)
        }
        _ => (None, value),
    }
}

/// The value of parameter `name` in `;a=1;name=value;b`, quotes removed.
/// The search stops at a `,` (the next value of the header).
pub(super) fn param<'a>(params: &'a [u8], name: &[u8]) -> Option<SipText<'a>> {
    let (params, _) = split_at_first(params, |b| b == b',');
    params.split(|&b| b == b';').find_map(|p| {
        let (key, value) = split_once(p, b'=').unwrap_or((p, &[]));
        if !trim(key).eq_ignore_ascii_case(name) {
            return None;
        }
        let value = trim(value);
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        Some(SipText::new(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<SipText<'_>> {
        Some(SipText::new(s.as_bytes()))
    }

    #[test]
    fn uris() {
        let u = Uri::parse(b"sip:100@203.0.113.1");
        assert_eq!(
            (u.scheme, u.user, u.host, u.port),
            (Scheme::Sip, t("100"), t("203.0.113.1"), None)
        );
        let u = Uri::parse(b"sip:100@[2001:db8:113::1]");
        assert_eq!(
            (u.user, u.host, u.port),
            (t("100"), t("2001:db8:113::1"), None)
        );
        let u = Uri::parse(b"SIPS:alice:secret@[2001:db8::1]:5061;transport=tls?x=y");
        assert_eq!(
            (u.scheme, u.user, u.host, u.port),
            (Scheme::Sips, t("alice"), t("2001:db8::1"), Some(5061))
        );
        let u = Uri::parse(b"sip:203.0.113.1:5060");
        assert_eq!(
            (u.user, u.host, u.port),
            (None, t("203.0.113.1"), Some(5060))
        );
        let u = Uri::parse(b"sip:1001@203.0.113.50:5060;transport=udp");
        assert_eq!(
            (u.user, u.host, u.port),
            (t("1001"), t("203.0.113.50"), Some(5060))
        );
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(
            (u.scheme, u.user, u.host),
            (Scheme::Tel, t("+1-201-555-0123"), None)
        );
        let u = Uri::parse(b"sip:2001:db8::1");
        assert_eq!((u.user, u.host, u.port), (None, t("2001:db8::1"), None));
        let u = Uri::parse(b"sip:@host:99999");
        assert_eq!((u.user, u.host, u.port), (None, t("host"), None));
        let u = Uri::parse(b"sip:u@[2001:db8::1");
        assert_eq!((u.user, u.host), (t("u"), t("2001:db8::1")));
        let u = Uri::parse(b"*");
        assert_eq!(
            (u.scheme, u.user, u.raw),
            (Scheme::Other(SipText::new(b"")), None, SipText::new(b"*"))
        );
        let u = Uri::parse(b"http://x");
        assert_eq!(u.scheme, Scheme::Other(SipText::new(b"http")));
        assert_eq!(Uri::parse(b"").user, None);
    }

    #[test]
    fn name_addrs() {
        let a = NameAddr::parse(b"\"sipvicious\"<sip:100@1.1.1.1>;tag=6362");
        assert_eq!(
            (a.display_name, a.uri.user, a.tag),
            (t("sipvicious"), t("100"), t("6362"))
        );
        let a = NameAddr::parse(b"\"1002\" <sip:1002@[2001:db8:113::1]>;tag=3133");
        assert_eq!(
            (a.display_name, a.uri.user, a.uri.host),
            (t("1002"), t("1002"), t("2001:db8:113::1"))
        );
        let a = NameAddr::parse(b"<sip:1001@203.0.113.1>;TAG = dffe8f0c ;x");
        assert_eq!(
            (a.display_name, a.uri.user, a.tag),
            (None, t("1001"), t("dffe8f0c"))
        );
        let a = NameAddr::parse(b"Bob Smith <sip:bob@example.com>");
        assert_eq!((a.display_name, a.uri.user), (t("Bob Smith"), t("bob")));
        let a = NameAddr::parse(b"sip:100@127.0.0.1:5060;tag=1");
        assert_eq!(
            (a.uri.user, a.uri.port, a.tag),
            (t("100"), Some(5060), t("1"))
        );
        let a = NameAddr::parse(b"\"a \\\" <sip:x@y>\" <sip:real@host>");
        assert_eq!(
            (a.display_name, a.uri.user),
            (t("a \\\" <sip:x@y>"), t("real"))
        );
        let a = NameAddr::parse(b"\"unterminated <sip:x@y>");
        assert_eq!(a.uri.user, None);
        let a = NameAddr::parse(b"<sip:cut@host");
        assert_eq!((a.uri.user, a.uri.host), (t("cut"), t("host")));
        let a = NameAddr::parse(b"<sip:a@h>, <sip:b@h>;tag=not-mine");
        assert_eq!((a.uri.user, a.tag), (t("a"), None));
        let a = NameAddr::parse(b"*");
        assert_eq!(a.uri.raw, SipText::new(b"*"));
        let a = NameAddr::parse(b"");
        assert_eq!((a.display_name, a.uri.user, a.tag), (None, None, None));
    }

    #[test]
    fn params() {
        assert_eq!(param(b";branch=z9;rport", b"branch"), t("z9"));
        assert_eq!(param(b";rport;branch=\"q\"", b"BRANCH"), t("q"));
        assert_eq!(param(b";rport", b"rport"), t(""));
        assert_eq!(param(b";a=1, x;branch=2", b"branch"), None);
    }
}
