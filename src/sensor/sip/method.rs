//! Request methods (RFC 3261 and its extensions).

use std::fmt;

use super::text::SipText;

/// A request method. Methods are case-sensitive (RFC 3261 §7.1): `register`
/// is not REGISTER but [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Register,
    Invite,
    Options,
    Ack,
    Bye,
    Cancel,
    Subscribe,
    Notify,
    Message,
    Info,
    Prack,
    Update,
    Refer,
    Publish,
    /// Any other token, as sent.
    Other(SipText<'a>),
}

const KNOWN: [(&str, Method<'static>); 14] = [
    ("REGISTER", Method::Register),
    ("INVITE", Method::Invite),
    ("OPTIONS", Method::Options),
    ("ACK", Method::Ack),
    ("BYE", Method::Bye),
    ("CANCEL", Method::Cancel),
    ("SUBSCRIBE", Method::Subscribe),
    ("NOTIFY", Method::Notify),
    ("MESSAGE", Method::Message),
    ("INFO", Method::Info),
    ("PRACK", Method::Prack),
    ("UPDATE", Method::Update),
    ("REFER", Method::Refer),
    ("PUBLISH", Method::Publish),
];

impl<'a> Method<'a> {
    /// The method named by `token`, as it is: the start-line and CSeq
    /// readers check first that it is an RFC 3261 token.
    pub fn from_token(token: &'a [u8]) -> Self {
        KNOWN
            .iter()
            .find(|(name, _)| name.as_bytes() == token)
            .map_or(Method::Other(SipText::new(token)), |&(_, m)| m)
    }

    /// The name of a known method; `None` for [`Method::Other`].
    pub fn as_str(&self) -> Option<&'static str> {
        KNOWN.iter().find(|(_, m)| m == self).map(|&(name, _)| name)
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.as_str()) {
            (_, Some(name)) => f.write_str(name),
            (Method::Other(text), None) => fmt::Display::fmt(text, f),
            (_, None) => Ok(()),
        }
    }
}

/// RFC 3261 `token`: what a method name may be made of.
pub(super) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_other_methods() {
        assert_eq!(Method::from_token(b"REGISTER"), Method::Register);
        assert_eq!(Method::from_token(b"PUBLISH"), Method::Publish);
        assert_eq!(
            Method::from_token(b"register"),
            Method::Other(SipText::new(b"register"))
        );
        assert_eq!(Method::Invite.to_string(), "INVITE");
        assert_eq!(Method::from_token(b"FOO\x1b").to_string(), "FOO\\x1b");
        assert_eq!(Method::Other(SipText::new(b"X")).as_str(), None);
        for (name, m) in KNOWN {
            assert_eq!(Method::from_token(name.as_bytes()), m);
            assert_eq!(m.as_str(), Some(name));
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"REGISTER"));
        assert!(is_token(b"X-Foo.bar~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"GET /"));
        assert!(!is_token(b"A:B"));
    }
}
