//! Where one SIP message ends in a byte stream (RFC 3261 18.3).
//!
//! Over TCP nothing but the message itself says where it ends: the header
//! block runs to the first empty line, and `Content-Length` (mandatory on
//! stream transports) gives the body. [`frame`] answers for the front of a
//! buffer, as httparse does: a whole message, a keepalive to drop, "need
//! more bytes", or a stream that can never frame (garbage, or over the
//! caps), which the caller must resynchronise by dropping what it holds
//! rather than by buffering more.
//!
//! Only bytes are compared: nothing is decoded as text, no position is
//! assumed. Lines may end in CRLF or a bare LF (PJSIP takes both), header
//! names are case-insensitive, the compact form `l` counts, whitespace
//! around the colon and value is any run of SP/HTAB, and a value folded
//! onto a continuation line is still found. Two Content-Length headers
//! that disagree make the stream invalid: which one the PBX believes would
//! be a guess, and a wrong guess splits every message after it wrongly.
//!
//! The start line is checked just enough to resynchronise fast after a
//! mid-stream pickup or garbage: a request line ends in ` SIP/x.y`, a
//! status line begins with `SIP/`. Anything else is
//! [`FrameError::BadStartLine`] as soon as its first line is complete, not
//! 16 KiB later.

/// Caps on one message; both are checked before the bytes arrive, so a
/// stream over a cap is rejected as soon as its header block says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest header block, start line and empty line included.
    pub max_header: usize,
    /// Largest Content-Length accepted.
    pub max_body: usize,
}

impl FrameLimits {
    /// The longest message these limits let through.
    pub fn max_message(&self) -> usize {
        self.max_header.saturating_add(self.max_body)
    }
}

impl Default for FrameLimits {
    /// 16 KiB of headers and 64 KiB of body: a real SIP message is a few
    /// hundred bytes (836 for two REGISTERs in the fixtures), an INVITE
    /// with a large SDP a few KiB.
    fn default() -> Self {
        FrameLimits {
            max_header: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes (headers, empty line, body).
    Complete(usize),
    /// This many CR/LF bytes before a message: RFC 5626 keepalive pings
    /// (CRLFCRLF), pongs (CRLF), or stray line ends RFC 3261 7.5 says to
    /// ignore. Drop them.
    Keepalive(usize),
    /// The message is not complete yet.
    Partial,
    /// The stream cannot be framed from here.
    Invalid(FrameError),
}

/// Why a stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No `Content-Length`: on TCP the end of the body is unknowable.
    #[error("no Content-Length header")]
    MissingContentLength,
    /// A `Content-Length` value that is not a plain decimal number.
    #[error("Content-Length is not a number")]
    BadContentLength,
    /// Two `Content-Length` headers with different values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// The header block is longer than `max_header`.
    #[error("header block over the size cap")]
    HeaderTooLong,
    /// The body is larger than `max_body`.
    #[error("body over the size cap")]
    BodyTooLarge,
    /// Neither a request line nor a status line.
    #[error("not a SIP start line")]
    BadStartLine,
    /// A control byte (not CR, LF or HTAB) in the header block: binary data.
    #[error("control byte in the header block")]
    ControlByte,
}

/// Frames the front of `buf` with the default limits.
pub fn frame(buf: &[u8]) -> Frame {
    frame_with(buf, &FrameLimits::default())
}

/// Frames the front of `buf`.
pub fn frame_with(buf: &[u8], limits: &FrameLimits) -> Frame {
    let line_ends = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if line_ends > 0 {
        return Frame::Keepalive(line_ends);
    }
    if buf.is_empty() {
        return Frame::Partial;
    }
    let header_len = match header_block_len(buf, limits.max_header) {
        Ok(Some(len)) => len,
        Ok(None) => return Frame::Partial,
        Err(err) => return Frame::Invalid(err),
    };
    let Some(headers) = buf.get(..header_len) else {
        return Frame::Partial;
    };
    let body_len = match content_length(headers) {
        Ok(len) if len > limits.max_body => return Frame::Invalid(FrameError::BodyTooLarge),
        Ok(len) => len,
        Err(err) => return Frame::Invalid(err),
    };
    let total = header_len.saturating_add(body_len);
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Partial
    }
}

/// Length of the header block up to and including its empty line, `None`
/// while it is incomplete. Validates the start line and the bytes on the
/// way (not the body's: a body may be binary), so garbage is refused early.
fn header_block_len(buf: &[u8], max_header: usize) -> Result<Option<usize>, FrameError> {
    if buf.first().is_some_and(|&b| !is_token(b)) {
        return Err(FrameError::BadStartLine);
    }
    let window = buf.get(..max_header).unwrap_or(buf);
    let mut line_start = 0;
    let mut first_line = true;
    for (i, &b) in window.iter().enumerate() {
        if b == b'\n' {
            let line = trim_cr(window.get(line_start..i).unwrap_or_default());
            if first_line {
                check_start_line(line)?;
                first_line = false;
            } else if line.is_empty() {
                return Ok(Some(i + 1));
            }
            line_start = i + 1;
        } else if is_control(b) {
            return Err(FrameError::ControlByte);
        }
    }
    if buf.len() >= max_header {
        Err(FrameError::HeaderTooLong)
    } else {
        Ok(None)
    }
}

/// RFC 3261 `token` characters: what a method (or `SIP/`) starts with.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn is_control(b: u8) -> bool {
    (b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t') || b == 0x7F
}

/// Checks a complete first line (CR already trimmed).
fn check_start_line(line: &[u8]) -> Result<(), FrameError> {
    let is_version = |token: &[u8]| {
        token.len() > 4
            && token
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    };
    let first = line.split(|&b| b == b' ').next().unwrap_or_default();
    let last = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let is_request = !first.is_empty() && first.len() < line.len() && is_version(last);
    if is_version(first) || is_request {
        Ok(())
    } else {
        Err(FrameError::BadStartLine)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_wsp(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_wsp(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_wsp(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The body length the header block announces. `headers` is the whole
/// block, start line and empty line included.
fn content_length(headers: &[u8]) -> Result<usize, FrameError> {
    let mut lines = headers
        .split(|&b| b == b'\n')
        .map(trim_cr)
        .skip(1)
        .peekable();
    let mut found: Option<usize> = None;
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = trim_wsp(name);
        if line.first().is_some_and(|&b| is_wsp(b))
            || !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l"))
        {
            continue;
        }
        // The value, and any continuation lines folded under it: exactly
        // one non-empty piece.
        let mut pieces = std::iter::once(trim_wsp(value.get(1..).unwrap_or_default()))
            .chain(std::iter::from_fn(|| {
                lines
                    .next_if(|l| l.first().is_some_and(|&b| is_wsp(b)))
                    .map(trim_wsp)
            }))
            .filter(|piece| !piece.is_empty());
        let digits = pieces.next();
        let extra = pieces.next().is_some();
        // Drain the rest of the folded value so it is not read as a header.
        pieces.for_each(drop);
        let value = match (digits, extra) {
            (Some(d), false) => parse_decimal(d)?,
            _ => return Err(FrameError::BadContentLength),
        };
        match found {
            Some(previous) if previous != value => {
                return Err(FrameError::ConflictingContentLength);
            }
            _ => found = Some(value),
        }
    }
    found.ok_or(FrameError::MissingContentLength)
}

/// A plain decimal number; leading zeros are fine, overflow is
/// [`FrameError::BodyTooLarge`] (it is over any cap).
fn parse_decimal(digits: &[u8]) -> Result<usize, FrameError> {
    if digits.is_empty() {
        return Err(FrameError::BadContentLength);
    }
    digits.iter().try_fold(0usize, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(FrameError::BadContentLength);
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(b - b'0')))
            .ok_or(FrameError::BodyTooLarge)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real messages from the s8-tcp fixture (wan4 over TCP): a REGISTER,
    /// PJSIP's 401 with its two-space `Content-Length:  0`, an INVITE with
    /// SDP, and the tool's ACK with its `\r\r\n` line ends.
    pub(crate) const REGISTER: &[u8] = b"REGISTER sip:203.0.113.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/TCP 203.0.113.14:41824;branch=z9hG4bK10903a714a;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@203.0.113.1>;tag=c8f4c3aa\r\n\
To: <sip:1001@203.0.113.1>\r\n\
Call-ID: 11d05284809d6c8a@203.0.113.14\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:1001@203.0.113.14:41824;transport=tcp>\r\n\
Expires: 60\r\n\
User-Agent: Grandstream GXP2170 1.0.11.6\r\n\
Content-Length: 0\r\n\
\r\n";

    pub(crate) const UNAUTHORIZED: &[u8] = b"SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/TCP 203.0.113.14:41824;rport=41824;received=203.0.113.14;branch=z9hG4bK10903a714a\r\n\
Call-ID: 11d05284809d6c8a@203.0.113.14\r\n\
From: <sip:1001@203.0.113.1>;tag=c8f4c3aa\r\n\
To: <sip:1001@203.0.113.1>;tag=z9hG4bK10903a714a\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"asterisk\",nonce=\"1796156318/173199346a68f997a80441dfb1c510f1\",opaque=\"026f9dde7449756c\",algorithm=MD5,qop=\"auth\"\r\n\
Server: Asterisk PBX 20.20.1\r\n\
Content-Length:  0\r\n\
\r\n";

    pub(crate) const INVITE: &[u8] = b"INVITE sip:600@203.0.113.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/TCP 203.0.113.14:41824;branch=z9hG4bKda6f9e5c21;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@203.0.113.1>;tag=817b3cfa\r\n\
To: <sip:600@203.0.113.1>\r\n\
Call-ID: f87d3a947c24e05@203.0.113.14\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:1001@203.0.113.14:41824;transport=tcp>\r\n\
User-Agent: Grandstream GXP2170 1.0.11.6\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 118\r\n\
\r\n\
v=0\r\n\
o=- 1 1 IN IP4 203.0.113.14\r\n\
s=-\r\n\
c=IN IP4 203.0.113.14\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    pub(crate) const ACK: &[u8] = b"ACK sip:600@203.0.113.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/TCP 203.0.113.14:41824;branch=z9hG4bKda6f9e5c21;rport\r\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@203.0.113.1>;tag=817b3cfa\r\n\
To: <sip:600@203.0.113.1>;tag=z9hG4bKda6f9e5c21\r\r\n\
Call-ID: f87d3a947c24e05@203.0.113.14\r\n\
CSeq: 1 ACK\r\n\
User-Agent: Grandstream GXP2170 1.0.11.6\r\n\
Content-Length: 0\r\n\
\r\n";

    pub(crate) const REAL: [&[u8]; 4] = [REGISTER, UNAUTHORIZED, INVITE, ACK];

    fn msg(head: &str, body: &str) -> Vec<u8> {
        format!("OPTIONS sip:100@203.0.113.1 SIP/2.0\r\n{head}\r\n{body}").into_bytes()
    }

    #[test]
    fn real_messages_frame_exactly() {
        for m in REAL {
            assert_eq!(frame(m), Frame::Complete(m.len()));
            let mut two = m.to_vec();
            two.extend_from_slice(REGISTER);
            assert_eq!(frame(&two), Frame::Complete(m.len()));
        }
        assert_eq!(
            INVITE.len()
                - INVITE
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .unwrap_or(0)
                - 4,
            118
        );
    }

    #[test]
    fn every_prefix_is_partial() {
        for m in REAL {
            for cut in 1..m.len() {
                let prefix = m.get(..cut).unwrap_or_default();
                assert_eq!(
                    frame(prefix),
                    Frame::Partial,
                    "cut {cut} of {:?}",
                    String::from_utf8_lossy(m)
                );
            }
        }
        assert_eq!(frame(b""), Frame::Partial);
    }

    #[test]
    fn content_length_spellings() {
        for head in [
            "Content-Length: 5\r\n",
            "content-length:5\r\n",
            "CONTENT-LENGTH  :\t 5 \r\n",
            "l: 5\r\n",
            "L:5\r\n",
            "Content-Length: 005\r\n",
            "Content-Length:\r\n  5\r\n",
            "Content-Length: 5\r\nl: 5\r\n",
        ] {
            let m = msg(head, "hello");
            assert_eq!(frame(&m), Frame::Complete(m.len()), "{head:?}");
        }
        // `Content-Lengthy` and a header merely containing the name don't count.
        let m = msg("Content-Lengthy: 5\r\nX-L: 7\r\nContent-Length: 0\r\n", "");
        assert_eq!(frame(&m), Frame::Complete(m.len()));
    }

    #[test]
    fn bare_line_feeds() {
        let m = b"SIP/2.0 200 OK\nCSeq: 2 REGISTER\nContent-Length: 2\n\nok";
        assert_eq!(frame(m), Frame::Complete(m.len()));
    }

    #[test]
    fn keepalives() {
        assert_eq!(frame(b"\r\n\r\n"), Frame::Keepalive(4));
        assert_eq!(frame(b"\r\n"), Frame::Keepalive(2));
        let mut after = b"\r\n\r\n".to_vec();
        after.extend_from_slice(REGISTER);
        assert_eq!(frame(&after), Frame::Keepalive(4));
        assert_eq!(
            frame(after.get(4..).unwrap_or_default()),
            Frame::Complete(REGISTER.len())
        );
    }

    #[test]
    fn unframeable_streams() {
        let invalid = |m: &[u8]| match frame(m) {
            Frame::Invalid(e) => e,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(m)),
        };
        assert_eq!(
            invalid(&msg("CSeq: 1 OPTIONS\r\n", "")),
            FrameError::MissingContentLength
        );
        assert_eq!(
            invalid(&msg("Content-Length: 5\r\nl: 6\r\n", "")),
            FrameError::ConflictingContentLength
        );
        for bad in ["-1", "5a", "0x10", "", "1 2", "+5"] {
            let m = msg(&format!("Content-Length: {bad}\r\n"), "");
            assert_eq!(invalid(&m), FrameError::BadContentLength, "{bad:?}");
        }
        let huge = msg("Content-Length: 99999999999999999999999999\r\n", "");
        assert_eq!(invalid(&huge), FrameError::BodyTooLarge);
        let big = msg("Content-Length: 65537\r\n", "");
        assert_eq!(invalid(&big), FrameError::BodyTooLarge);
        assert_eq!(
            invalid(b"v=0\r\no=- 1 1 IN IP4 203.0.113.14\r\n"),
            FrameError::BadStartLine
        );
        assert_eq!(invalid(b"\x16\x03\x01\x02\x00"), FrameError::BadStartLine);
        assert_eq!(invalid(b"GET\x00 / HTTP/1.1"), FrameError::ControlByte);
        assert_eq!(invalid(b"GET / HTTP/1.1\r\n"), FrameError::BadStartLine);
    }

    #[test]
    fn a_binary_body_is_fine() {
        let m = msg("Content-Length: 4\r\n", "\0\x01\x02\x7f");
        assert_eq!(frame(&m), Frame::Complete(m.len()));
    }

    #[test]
    fn header_cap() {
        let limits = FrameLimits {
            max_header: 128,
            max_body: 10,
        };
        let mut long = b"OPTIONS sip:a SIP/2.0\r\nX: ".to_vec();
        long.resize(127, b'a');
        assert_eq!(frame_with(&long, &limits), Frame::Partial);
        long.push(b'a');
        assert_eq!(
            frame_with(&long, &limits),
            Frame::Invalid(FrameError::HeaderTooLong)
        );
        let body = msg("Content-Length: 11\r\n", "");
        assert_eq!(
            frame_with(&body, &limits),
            Frame::Invalid(FrameError::BodyTooLarge)
        );
        let fits = msg("Content-Length: 10\r\n", "0123456789");
        assert_eq!(frame_with(&fits, &limits), Frame::Complete(fits.len()));
        // Nothing past the cap is read: the header block ends beyond it.
        let mut late = b"OPTIONS sip:a SIP/2.0\r\nX: ".to_vec();
        late.resize(140, b'a');
        late.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            frame_with(&late, &limits),
            Frame::Invalid(FrameError::HeaderTooLong)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            match frame(&buf) {
                Frame::Complete(n) => prop_assert!(n > 0 && n <= buf.len()),
                Frame::Keepalive(n) => prop_assert!(n > 0 && n <= buf.len()),
                Frame::Partial | Frame::Invalid(_) => {}
            }
        }

        #[test]
        fn sip_like_bytes_never_panic(parts in proptest::collection::vec(prop_oneof![
            Just(&b"\r\n"[..]), Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b":"[..]),
            Just(&b" "[..]), Just(&b"\t"[..]), Just(&b"l"[..]), Just(&b"Content-Length"[..]),
            Just(&b"SIP/2.0"[..]), Just(&b"INVITE"[..]), Just(&b"12"[..]), Just(&b"\x00"[..]),
        ], 0..40)) {
            let buf = parts.concat();
            if let Frame::Complete(n) = frame(&buf) {
                prop_assert!(n <= buf.len());
                // A complete message is complete in any longer buffer too.
                let mut longer = buf.clone();
                longer.extend_from_slice(b"garbage");
                prop_assert_eq!(frame(&longer), Frame::Complete(n));
            }
        }
    }
}
