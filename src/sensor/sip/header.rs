//! The header section: lines, folding, header names.
//!
//! One pass over the head, bounded by [`MAX_HEAD`](super::MAX_HEAD) bytes
//! and [`MAX_HEADERS`](super::MAX_HEADERS) fields. Lines end at LF, with
//! any CRs before it dropped (CRLF, bare LF and the `CR CR LF` a real TCP
//! client sent all work). A line that starts with a space or tab continues
//! the field before it (RFC 3261 §7.3.1 folding); its value is then one
//! slice with the CRLF inside, which the field parsers read as whitespace.
//! A line without a colon is skipped, not an error: scanners send junk and
//! the fields around it still count.

use super::text::{split_once, trim};
use super::{MAX_HEAD, MAX_HEADERS, ParseError};

/// The headers this parser reads, by full and compact name (RFC 3261 §7.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Known {
    CallId,
    From,
    To,
    Via,
    ContentLength,
    Contact,
    CSeq,
    UserAgent,
    Server,
    /// Authorization or Proxy-Authorization: the request answers a
    /// challenge (only its presence is read).
    Authorization,
}

impl Known {
    /// Header names are case-insensitive.
    pub(super) fn of(name: &[u8]) -> Option<Known> {
        const NAMES: [(&[u8], Known); 17] = [
            (b"call-id", Known::CallId),
            (b"i", Known::CallId),
            (b"from", Known::From),
            (b"f", Known::From),
            (b"to", Known::To),
            (b"t", Known::To),
            (b"via", Known::Via),
            (b"v", Known::Via),
            (b"content-length", Known::ContentLength),
            (b"l", Known::ContentLength),
            (b"contact", Known::Contact),
            (b"m", Known::Contact),
            (b"cseq", Known::CSeq),
            (b"user-agent", Known::UserAgent),
            (b"server", Known::Server),
            (b"authorization", Known::Authorization),
            (b"proxy-authorization", Known::Authorization),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, k)| k)
    }
}

/// Where the head ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeadEnd {
    /// At the empty line; the body starts at this offset of the input.
    At(usize),
    /// The input ran out first.
    NotYet,
}

/// A field being collected (it may still get continuation lines).
struct Pending<'a> {
    name: &'a [u8],
    value_start: usize,
    value_end: usize,
}

/// Calls `field(name, value)` for every header field from offset `pos` of
/// `input` (just after the start line) to the empty line, in order.
pub(super) fn scan<'a>(
    input: &'a [u8],
    mut pos: usize,
    mut field: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<HeadEnd, ParseError> {
    let window = input.get(..MAX_HEAD).unwrap_or(input);
    let mut pending: Option<Pending<'a>> = None;
    let mut count = 0usize;
    let mut flush = |pending: &mut Option<Pending<'a>>| {
        if let Some(p) = pending.take() {
            field(
                p.name,
                window.get(p.value_start..p.value_end).unwrap_or_default(),
            );
        }
    };
    loop {
        let rest = window.get(pos..).unwrap_or_default();
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i).unwrap_or_default(), Some(pos + i + 1)),
            None if input.len() > window.len() => {
                return Err(ParseError::HeadTooLong { limit: MAX_HEAD });
            }
            None => (rest, None),
        };
        let line = strip_crs(line);
        if line.is_empty() {
            flush(&mut pending);
            return Ok(match next {
                Some(body) => HeadEnd::At(body),
                None => HeadEnd::NotYet,
            });
        }
        let line_end = pos + line.len();
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // Folded: the field before goes on (or, with none, the line is junk).
            if let Some(p) = pending.as_mut() {
                p.value_end = line_end;
            }
        } else {
            flush(&mut pending);
            count += 1;
            if count > MAX_HEADERS {
                return Err(ParseError::TooManyHeaders { limit: MAX_HEADERS });
            }
            if let Some((name, value)) = split_once(line, b':') {
                let name = trim(name);
                if !name.is_empty() {
                    pending = Some(Pending {
                        name,
                        value_start: line_end - value.len(),
                        value_end: line_end,
                    });
                }
            }
        }
        match next {
            Some(n) => pos = n,
            None => {
                flush(&mut pending);
                return Ok(HeadEnd::NotYet);
            }
        }
    }
}

/// A line without the CRs before its LF.
pub(super) fn strip_crs(mut line: &[u8]) -> &[u8] {
    while let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(input: &[u8]) -> (Vec<(String, String)>, Result<HeadEnd, ParseError>) {
        let mut out = Vec::new();
        let end = scan(input, 0, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        });
        (out, end)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|&(n, v)| (n.into(), v.into())).collect()
    }

    #[test]
    fn names_are_case_insensitive_with_compact_forms() {
        assert_eq!(Known::of(b"CALL-ID"), Some(Known::CallId));
        assert_eq!(Known::of(b"I"), Some(Known::CallId));
        assert_eq!(Known::of(b"l"), Some(Known::ContentLength));
        assert_eq!(Known::of(b"m"), Some(Known::Contact));
        assert_eq!(Known::of(b"User-agent"), Some(Known::UserAgent));
        assert_eq!(Known::of(b"x"), None);
        assert_eq!(Known::of(b""), None);
    }

    #[test]
    fn lines_folding_and_junk() {
        let (f, end) =
            fields(b"A: 1\r\nB : 2\r\n  more\r\n\tand more\r\njunk line\r\nC:\r\r\n\r\nbody");
        assert_eq!(
            f,
            pairs(&[("A", " 1"), ("B", " 2\r\n  more\r\n\tand more"), ("C", "")])
        );
        assert_eq!(end, Ok(HeadEnd::At(50)));
        let (f, end) = fields(b"A: 1\nB: 2\n\nbody");
        assert_eq!(f, pairs(&[("A", " 1"), ("B", " 2")]));
        assert_eq!(end, Ok(HeadEnd::At(11)));
        // A continuation with nothing before it, an empty name.
        let (f, _) = fields(b" lost\r\n: x\r\nA: 1\r\n\r\n");
        assert_eq!(f, pairs(&[("A", " 1")]));
    }

    #[test]
    fn a_head_cut_short_gives_what_was_there() {
        let (f, end) = fields(b"A: 1\r\nB: par");
        assert_eq!(f, pairs(&[("A", " 1"), ("B", " par")]));
        assert_eq!(end, Ok(HeadEnd::NotYet));
        let (f, end) = fields(b"A: 1\r\n");
        assert_eq!(f, pairs(&[("A", " 1")]));
        assert_eq!(end, Ok(HeadEnd::NotYet));
        assert_eq!(fields(b"").1, Ok(HeadEnd::NotYet));
    }

    #[test]
    fn limits() {
        let many = "X: y\r\n".repeat(MAX_HEADERS + 1) + "\r\n";
        assert_eq!(
            fields(many.as_bytes()).1,
            Err(ParseError::TooManyHeaders { limit: MAX_HEADERS })
        );
        let enough = "X: y\r\n".repeat(MAX_HEADERS) + "\r\n";
        assert!(fields(enough.as_bytes()).1.is_ok());
        let long = format!("X: {}\r\n\r\n", "y".repeat(MAX_HEAD));
        assert_eq!(
            fields(long.as_bytes()).1,
            Err(ParseError::HeadTooLong { limit: MAX_HEAD })
        );
        // A long body after a short head is not the head's business.
        let body = format!("X: y\r\n\r\n{}", "b".repeat(2 * MAX_HEAD));
        assert_eq!(fields(body.as_bytes()).1, Ok(HeadEnd::At(8)));
    }
}
