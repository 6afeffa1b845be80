//! One message: its start line, the fields read from its head, and where it
//! ends.

use thiserror::Error;

use super::fields::{CSeq, Via, content_length};
use super::header::{HeadEnd, Known, scan, strip_crs};
use super::method::{Method, is_token};
use super::text::{SipText, is_ws, parse_decimal, split_at_first, trim};
use super::uri::{NameAddr, Uri};
use super::{MAX_HEAD, MAX_MESSAGE};

/// Why bytes are not a SIP message this parser can read. All but
/// [`ParseError::Keepalive`] mean the sender is broken or hostile.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no bytes")]
    Empty,
    /// Only CR and LF bytes: a keepalive ping (`CRLFCRLF`) or pong (`CRLF`),
    /// RFC 5626 §4.4.1. Normal traffic, not a malformed message; on a stream
    /// the next message starts after these `len` bytes.
    #[error("keepalive ({len} bytes of CR/LF)")]
    Keepalive { len: usize },
    /// The start line has no line end yet: on a stream, wait for more bytes;
    /// as a datagram it is junk.
    #[error("the start line does not end")]
    Incomplete,
    #[error("bad start line: {0}")]
    StartLine(#[from] StartLineError),
    #[error("no empty line within the first {limit} bytes: head too long")]
    HeadTooLong { limit: usize },
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
}

impl ParseError {
    pub fn is_keepalive(&self) -> bool {
        matches!(self, ParseError::Keepalive { .. })
    }
}

/// What was wrong with the first line.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum StartLineError {
    /// Neither `METHOD uri SIP/x` nor `SIP/x code reason` (an HTTP probe,
    /// binary junk, an empty line).
    #[error("not SIP (no SIP version where one belongs)")]
    NotSip,
    #[error("the method is not a token")]
    Method,
    #[error("the status code is not a number from 100 to 699")]
    StatusCode,
}

/// The first line: a request or a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<'a> {
    Request { method: Method<'a>, uri: Uri<'a> },
    Response { status: u16, reason: SipText<'a> },
}

/// Where the message ends in the input, for a stream (TCP) that has to be
/// cut into messages. A datagram (UDP) is one message whatever this says:
/// its fields are good as far as they were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The whole message, head and Content-Length bytes of body, is
    /// `input[..len]`; the next message on the stream starts at `len`.
    /// Without a Content-Length the body counts as empty (a stream
    /// requires one, RFC 3261 §18.3).
    Complete { len: usize },
    /// The head is all there; the body is `missing` bytes short.
    BodyIncomplete { missing: usize },
    /// The input ended before the empty line that closes the head: fields
    /// may be missing, and the last one may be cut.
    HeadIncomplete,
    /// The Content-Length is unreadable or would make the message longer
    /// than [`MAX_MESSAGE`]: a stream cannot be cut here (drop it).
    BadLength,
}

/// The fields of one message, borrowed from its bytes. Duplicate headers:
/// the first one counts. Every field is `None` when absent or unreadable.
/// The addresses (From, To, Contact, Via) are found by [`parse`] and read
/// only when asked ([`Message::from`], ...): their URIs are most of the
/// work, and most messages need one of them at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub start: Start<'a>,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    contact: Option<&'a [u8]>,
    pub call_id: Option<SipText<'a>>,
    pub cseq: Option<CSeq<'a>>,
    via: Option<&'a [u8]>,
    pub user_agent: Option<SipText<'a>>,
    pub server: Option<SipText<'a>>,
    pub content_length: Option<usize>,
    /// The request carries Authorization or Proxy-Authorization: it answers
    /// a challenge (svcrack's guesses, a phone's second REGISTER).
    pub authorization: bool,
    pub framing: Framing,
}

impl<'a> Message<'a> {
    /// The method of a request; `None` for a response (see [`Message::cseq`]
    /// for the method a response answers).
    pub fn method(&self) -> Option<Method<'a>> {
        match self.start {
            Start::Request { method, .. } => Some(method),
            Start::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            Start::Response { status, .. } => Some(status),
            Start::Request { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<Uri<'a>> {
        match self.start {
            Start::Request { uri, .. } => Some(uri),
            Start::Response { .. } => None,
        }
    }

    /// The user of the Request-URI: the extension a request is aimed at.
    pub fn uri_user(&self) -> Option<SipText<'a>> {
        self.request_uri()?.user
    }

    pub fn from(&self) -> Option<NameAddr<'a>> {
        self.from.map(NameAddr::parse)
    }

    pub fn to(&self) -> Option<NameAddr<'a>> {
        self.to.map(NameAddr::parse)
    }

    /// The first Contact value.
    pub fn contact(&self) -> Option<NameAddr<'a>> {
        self.contact.map(NameAddr::parse)
    }

    /// The first Via value.
    pub fn via(&self) -> Option<Via<'a>> {
        self.via.and_then(Via::parse)
    }

    /// The From user: the account a REGISTER or a scanner claims.
    pub fn from_user(&self) -> Option<SipText<'a>> {
        self.from()?.uri.user
    }

    pub fn to_user(&self) -> Option<SipText<'a>> {
        self.to()?.uri.user
    }
}

/// The first header value of each kind, as found.
#[derive(Default)]
struct Raw<'a> {
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    contact: Option<&'a [u8]>,
    call_id: Option<&'a [u8]>,
    cseq: Option<&'a [u8]>,
    via: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
    server: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    authorization: bool,
}

impl<'a> Raw<'a> {
    fn keep_first(&mut self, name: &[u8], value: &'a [u8]) {
        let Some(known) = Known::of(name) else {
            return;
        };
        if known == Known::Authorization {
            self.authorization = true;
            return;
        }
        let slot = match known {
            Known::From => &mut self.from,
            Known::To => &mut self.to,
            Known::Contact => &mut self.contact,
            Known::CallId => &mut self.call_id,
            Known::CSeq => &mut self.cseq,
            Known::Via => &mut self.via,
            Known::UserAgent => &mut self.user_agent,
            Known::Server => &mut self.server,
            Known::ContentLength => &mut self.content_length,
            Known::Authorization => return,
        };
        slot.get_or_insert(value);
    }
}

/// Reads the message at the start of `input` (a datagram, or what a stream
/// has buffered). Never allocates; looks at no more than [`MAX_HEAD`] bytes
/// of head whatever the input's length.
pub fn parse(input: &[u8]) -> Result<Message<'_>, ParseError> {
    if input.is_empty() {
        return Err(ParseError::Empty);
    }
    // CRLFs before a start line are ignored (RFC 3261 §7.5); CRLFs alone
    // are a keepalive.
    let skip = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Keepalive { len: input.len() })?;
    let window = input.get(..MAX_HEAD).unwrap_or(input);
    let rest = window.get(skip..).unwrap_or_default();
    let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
        return Err(if input.len() > window.len() {
            ParseError::HeadTooLong { limit: MAX_HEAD }
        } else {
            ParseError::Incomplete
        });
    };
    let start = start_line(strip_crs(rest.get(..eol).unwrap_or_default()))?;

    let mut raw = Raw::default();
    let end = scan(input, skip + eol + 1, |name, value| {
        raw.keep_first(name, value)
    })?;

    let content_length_value = raw.content_length.map(content_length);
    let framing = match (end, content_length_value) {
        (HeadEnd::NotYet, _) => Framing::HeadIncomplete,
        (HeadEnd::At(_), Some(None)) => Framing::BadLength,
        (HeadEnd::At(head), Some(Some(body))) => frame(input.len(), head, body),
        (HeadEnd::At(head), None) => frame(input.len(), head, 0),
    };
    Ok(Message {
        start,
        from: raw.from,
        to: raw.to,
        contact: raw.contact,
        call_id: text(raw.call_id),
        cseq: raw.cseq.and_then(CSeq::parse),
        via: raw.via,
        user_agent: text(raw.user_agent),
        server: text(raw.server),
        content_length: content_length_value.flatten(),
        authorization: raw.authorization,
        framing,
    })
}

/// A trimmed text field; an empty one counts as absent.
fn text(value: Option<&[u8]>) -> Option<SipText<'_>> {
    value
        .map(|v| SipText::new(trim(v)))
        .filter(|t| !t.is_empty())
}

fn frame(available: usize, head: usize, body: usize) -> Framing {
    match head.checked_add(body) {
        Some(len) if len > MAX_MESSAGE => Framing::BadLength,
        Some(len) if len <= available => Framing::Complete { len },
        Some(len) => Framing::BodyIncomplete {
            missing: len - available,
        },
        None => Framing::BadLength,
    }
}

/// `SIP/2.0 401 Unauthorized` or `OPTIONS sip:100@host SIP/2.0`. Runs of
/// spaces and tabs between the parts are tolerated.
fn start_line(line: &[u8]) -> Result<Start<'_>, StartLineError> {
    let line = trim(line);
    let (first, rest) = split_at_first(line, is_ws);
    let rest = trim(rest);
    if is_sip_version(first) {
        let (code, reason) = split_at_first(rest, is_ws);
        let status = parse_decimal(code, 3)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or(StartLineError::StatusCode)?;
        return Ok(Start::Response {
            status,
            reason: SipText::new(trim(reason)),
        });
    }
    // METHOD uri SIP/2.0: the version is the last word.
    let (uri, version) = match rest.iter().rposition(|&b| is_ws(b)) {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i + 1..).unwrap_or_default(),
        ),
        None => (&[][..], rest),
    };
    if !is_sip_version(version) {
        return Err(StartLineError::NotSip);
    }
    if !is_token(first) {
        return Err(StartLineError::Method);
    }
    Ok(Start::Request {
        method: Method::from_token(first),
        uri: Uri::parse(uri),
    })
}

/// `SIP/` and something (any version: the PBX decides what it accepts).
fn is_sip_version(word: &[u8]) -> bool {
    word.len() > 4
        && word
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<SipText<'_>> {
        Some(SipText::new(s.as_bytes()))
    }

    #[test]
    fn start_lines() {
        assert_eq!(
            start_line(b"SIP/2.0 401 Unauthorized"),
            Ok(Start::Response {
                status: 401,
                reason: SipText::new(b"Unauthorized")
            })
        );
        assert_eq!(
            start_line(b"sip/2.0  200"),
            Ok(Start::Response {
                status: 200,
                reason: SipText::new(b"")
            })
        );
        let Ok(Start::Request { method, uri }) =
            start_line(b"OPTIONS  sip:100@[2001:db8:113::1]\tSIP/2.0 ")
        else {
            panic!("not a request");
        };
        assert_eq!(
            (method, uri.user, uri.host),
            (Method::Options, t("100"), t("2001:db8:113::1"))
        );
        assert_eq!(
            start_line(b"SIP/2.0 99 Low"),
            Err(StartLineError::StatusCode)
        );
        assert_eq!(
            start_line(b"SIP/2.0 700 High"),
            Err(StartLineError::StatusCode)
        );
        assert_eq!(
            start_line(b"SIP/2.0 4O1 Letter"),
            Err(StartLineError::StatusCode)
        );
        assert_eq!(start_line(b"SIP/2.0"), Err(StartLineError::StatusCode));
        assert_eq!(start_line(b"GET / HTTP/1.1"), Err(StartLineError::NotSip));
        assert_eq!(start_line(b"OPTIONS sip:x"), Err(StartLineError::NotSip));
        assert_eq!(start_line(b"OPTIONS"), Err(StartLineError::NotSip));
        assert_eq!(start_line(b""), Err(StartLineError::NotSip));
        assert_eq!(start_line(b"SIP/ 200 OK"), Err(StartLineError::NotSip));
        assert_eq!(
            start_line(b"OPT:IONS sip:x SIP/2.0"),
            Err(StartLineError::Method)
        );
        // The URI is whatever sits between method and version.
        let Ok(Start::Request { uri, .. }) = start_line(b"INVITE  SIP/2.0") else {
            panic!("not a request");
        };
        assert_eq!(uri.raw, SipText::new(b""));
    }

    #[test]
    fn keepalives_and_empty() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Keepalive { len: 4 }));
        assert_eq!(parse(b"\r\n"), Err(ParseError::Keepalive { len: 2 }));
        assert!(parse(b"\n").unwrap_err().is_keepalive());
        assert_eq!(
            parse(b"\r\n\r\nOPTIONS sip:x SIP/2.0"),
            Err(ParseError::Incomplete)
        );
        assert_eq!(
            parse(b" \r\n"),
            Err(ParseError::StartLine(StartLineError::NotSip))
        );
    }

    #[test]
    fn fields_first_wins_and_compact_forms() {
        let input = b"\r\nINVITE sip:600@h SIP/2.0\r\n\
              v: SIP/2.0/UDP first;branch=b1\r\n\
              Via: SIP/2.0/UDP second;branch=b2\r\n\
              f: <sip:1001@h>;tag=x\r\n\
              t: \"T\" <sip:600@h>\r\n\
              i: abc@h\r\n\
              Call-ID: other\r\n\
              m: <sip:1001@c>\r\n\
              CSeq: 7 INVITE\r\n\
              user-agent:   Some\r\n   Phone \r\n\
              SERVER: s\r\n\
              l: 3\r\n\
              \r\nxyzREST";
        let m = parse(input).unwrap();
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.uri_user(), t("600"));
        assert_eq!(m.via().and_then(|v| v.branch), t("b1"));
        assert_eq!((m.from_user(), m.to_user()), (t("1001"), t("600")));
        assert_eq!(m.call_id, t("abc@h"));
        assert_eq!(m.contact().and_then(|c| c.uri.host), t("c"));
        assert_eq!(
            m.cseq,
            Some(CSeq {
                seq: 7,
                method: Method::Invite
            })
        );
        assert_eq!(m.user_agent, t("Some\r\n   Phone"));
        assert_eq!(m.server, t("s"));
        assert_eq!(m.content_length, Some(3));
        assert_eq!(
            m.framing,
            Framing::Complete {
                len: input.len() - "REST".len()
            }
        );
    }

    #[test]
    fn a_hostile_user_agent_is_read_raw_and_shown_escaped() {
        let m = parse(
            b"REGISTER sip:h SIP/2.0\r\n\
              User-Agent: x\x1b[31m\r\n sipban[1]: unbanned 198.51.100.7\xff\r\n\
              Server:\r\n\
              Call-ID:  \r\n\
              \r\n",
        )
        .unwrap();
        let ua = m.user_agent.unwrap();
        assert_eq!(
            ua.as_bytes(),
            b"x\x1b[31m\r\n sipban[1]: unbanned 198.51.100.7\xff"
        );
        assert_eq!(ua.to_str(), None);
        assert_eq!(
            ua.to_string(),
            "x\\x1b[31m\\r\\n sipban[1]: unbanned 198.51.100.7\\xff"
        );
        assert_eq!(ua.to_sanitized(12), "x\\x1b[31m...");
        // Empty values are absent.
        assert_eq!((m.server, m.call_id), (None, None));
    }

    #[test]
    fn framing() {
        let msg =
            |cl: &str, body: &str| format!("SIP/2.0 200 OK\r\nContent-Length: {cl}\r\n\r\n{body}");
        let head = msg("0", "").len();
        let f = |cl: &str, body: &str| parse(msg(cl, body).as_bytes()).unwrap().framing;
        assert_eq!(f("0", ""), Framing::Complete { len: head });
        assert_eq!(f("0", "next"), Framing::Complete { len: head });
        assert_eq!(f("4", "ab"), Framing::BodyIncomplete { missing: 2 });
        assert_eq!(f("x", ""), Framing::BadLength);
        assert_eq!(f("99999999", ""), Framing::BadLength);
        assert_eq!(f("18446744073709551615", ""), Framing::BadLength);
        let m = parse(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\nbody").unwrap();
        assert_eq!(
            (m.framing, m.content_length),
            (Framing::Complete { len: 30 }, None)
        );
        let m = parse(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n").unwrap();
        assert_eq!((m.framing, m.call_id), (Framing::HeadIncomplete, t("a")));
    }

    #[test]
    fn limits_are_errors_that_say_which() {
        let mut big = b"OPTIONS sip:x SIP/2.0\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'y');
        assert_eq!(
            parse(&big),
            Err(ParseError::HeadTooLong { limit: MAX_HEAD })
        );
        let long_start = vec![b'A'; MAX_HEAD + 1];
        assert_eq!(
            parse(&long_start),
            Err(ParseError::HeadTooLong { limit: MAX_HEAD })
        );
        assert_eq!(parse(&long_start[..100]), Err(ParseError::Incomplete));
        assert_eq!(
            ParseError::TooManyHeaders { limit: 128 }.to_string(),
            "more than 128 header lines"
        );
        assert_eq!(
            ParseError::StartLine(StartLineError::NotSip).to_string(),
            "bad start line: not SIP (no SIP version where one belongs)"
        );
    }
}
