//! Text that came off the wire, and the byte helpers the field parsers share.
//!
//! A field such as a User-Agent is whatever the sender put there: any bytes,
//! not necessarily UTF-8, possibly with CR, LF or an ANSI escape meant to
//! forge a log line or repaint an operator's console. [`SipText`] keeps the
//! raw bytes (borrowed, nothing is copied while parsing) and only ever shows
//! them escaped and capped, so a value can go into a log line or the console
//! as it is. Whoever needs the exact bytes asks for them by name
//! ([`SipText::as_bytes`]).

use std::fmt::{self, Write};

/// Bytes of one field as they were on the wire (trimmed of surrounding
/// whitespace), borrowed from the message.
///
/// `Display` and `Debug` escape (see [`SipText::escaped`]) and cap at
/// [`SipText::DISPLAY_MAX`] bytes of output (`{:.N}` sets another cap), so
/// `format!("{}", text)` is always safe to log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SipText<'a>(&'a [u8]);

/// Appended when a capped rendering had to stop early. ASCII, so that a
/// telnet console shows it whatever its character set.
const ELLIPSIS: &str = "...";

impl<'a> SipText<'a> {
    /// Cap on `Display`/`Debug` output in bytes: a User-Agent is a few dozen
    /// bytes; a longer one is still recognisable from its first 256.
    pub const DISPLAY_MAX: usize = 256;

    pub const fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, unescaped: for comparisons and keys, never for output.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The text as `&str` when it is valid UTF-8 (it may still hold control
    /// characters: print [`SipText::escaped`], not this).
    pub fn to_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.0).ok()
    }

    pub const fn len(&self) -> usize {
        self.0.len()
    }

    pub const fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn eq_ignore_ascii_case(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other.as_bytes())
    }

    /// A `Display` of the text with everything that could act on a terminal
    /// or split a log line escaped, at most `max` bytes long (with `...` at
    /// the end when cut). Escaped: C0 and C1 controls and DEL (`\r`, `\n`,
    /// `\t`, `\x1b`, `\u{85}`), Unicode line/paragraph separators and bidi
    /// controls (`\u{202e}`, which can reorder what an operator reads),
    /// bytes that are not UTF-8 (`\xff`), and the backslash itself (`\\`),
    /// so that the output reads back unambiguously.
    pub fn escaped(&self, max: usize) -> Escaped<'a> {
        Escaped { bytes: self.0, max }
    }

    /// An owned, escaped copy of at most `max` bytes (see
    /// [`SipText::escaped`]): what a record that outlives the packet keeps.
    pub fn to_sanitized(&self, max: usize) -> String {
        let mut out = String::with_capacity(max.min(self.0.len().saturating_add(ELLIPSIS.len())));
        // Writing into a String cannot fail.
        let _ = write_capped(&mut out, self.0, max);
        out
    }
}

impl PartialEq<&str> for SipText<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl fmt::Display for SipText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_capped(f, self.0, f.precision().unwrap_or(Self::DISPLAY_MAX))
    }
}

impl fmt::Debug for SipText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_capped(f, self.0, Self::DISPLAY_MAX)?;
        f.write_char('"')
    }
}

/// See [`SipText::escaped`].
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a> {
    bytes: &'a [u8],
    max: usize,
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_capped(f, self.bytes, self.max)
    }
}

/// One unit of escaped output.
#[derive(Clone, Copy)]
enum Piece<'a> {
    /// A run of characters shown as they are.
    Plain(&'a str),
    Named(&'static str),
    Byte(u8),
    Unicode(u32),
}

impl Piece<'_> {
    /// The escape for `c`, or `None` when it is shown as it is.
    fn escape(c: char) -> Option<Piece<'static>> {
        Some(match c {
            '\\' => Piece::Named("\\\\"),
            '\r' => Piece::Named("\\r"),
            '\n' => Piece::Named("\\n"),
            '\t' => Piece::Named("\\t"),
            c if c.is_ascii_control() => Piece::Byte(c as u8),
            c if c.is_control() || is_invisible_format(c) => Piece::Unicode(u32::from(c)),
            _ => return None,
        })
    }

    fn len(self) -> usize {
        match self {
            Piece::Plain(s) | Piece::Named(s) => s.len(),
            Piece::Byte(_) => 4,
            // `\u{` + hex digits + `}`
            Piece::Unicode(u) => 4 + hex_digits(u),
        }
    }

    fn write(self, out: &mut impl Write) -> fmt::Result {
        match self {
            Piece::Plain(s) | Piece::Named(s) => out.write_str(s),
            Piece::Byte(b) => write!(out, "\\x{b:02x}"),
            Piece::Unicode(u) => write!(out, "\\u{{{u:x}}}"),
        }
    }
}

fn hex_digits(u: u32) -> usize {
    let bits = 32 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(4)
}

/// Format characters that change how the text around them is shown or
/// read: line and paragraph separators (some log viewers break lines there)
/// and the bidirectional controls ("Trojan Source").
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
    )
}

/// The escaped text as runs of plain text and single escapes.
struct Pieces<'a> {
    chunks: std::str::Utf8Chunks<'a>,
    valid: &'a str,
    invalid: &'a [u8],
}

fn pieces(bytes: &[u8]) -> Pieces<'_> {
    Pieces {
        chunks: bytes.utf8_chunks(),
        valid: "",
        invalid: &[],
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        loop {
            if !self.valid.is_empty() {
                let escape = self
                    .valid
                    .char_indices()
                    .find_map(|(i, c)| Some((i, c, Piece::escape(c)?)));
                let (piece, rest) = match escape {
                    Some((0, c, piece)) => (piece, self.valid.get(c.len_utf8()..)),
                    Some((i, _, _)) => (
                        Piece::Plain(self.valid.get(..i).unwrap_or_default()),
                        self.valid.get(i..),
                    ),
                    None => (Piece::Plain(self.valid), Some("")),
                };
                self.valid = rest.unwrap_or_default();
                return Some(piece);
            }
            if let Some((&b, rest)) = self.invalid.split_first() {
                self.invalid = rest;
                return Some(Piece::Byte(b));
            }
            let chunk = self.chunks.next()?;
            self.valid = chunk.valid();
            self.invalid = chunk.invalid();
        }
    }
}

/// Writes the escaped text, cut to at most `max` bytes.
fn write_capped(out: &mut impl Write, bytes: &[u8], max: usize) -> fmt::Result {
    let fits = pieces(bytes)
        .try_fold(0usize, |used, p| {
            let used = used.saturating_add(p.len());
            (used <= max).then_some(used)
        })
        .is_some();
    if fits {
        return pieces(bytes).try_for_each(|p| p.write(out));
    }
    let mut budget = max.saturating_sub(ELLIPSIS.len());
    for p in pieces(bytes) {
        if p.len() > budget {
            // A plain run is cut between characters; an escape stays whole.
            if let Piece::Plain(s) = p {
                out.write_str(s.get(..s.floor_char_boundary(budget)).unwrap_or_default())?;
            }
            break;
        }
        p.write(out)?;
        budget -= p.len();
    }
    if max >= ELLIPSIS.len() {
        out.write_str(ELLIPSIS)?;
    }
    Ok(())
}

/// SIP linear whitespace, as the field parsers see it: a folded header
/// value keeps its CR LF inside, so those count as whitespace too.
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| !is_ws(b)).unwrap_or(bytes.len());
    let rest = bytes.get(start..).unwrap_or_default();
    let end = rest.iter().rposition(|&b| !is_ws(b)).map_or(0, |i| i + 1);
    rest.get(..end).unwrap_or_default()
}

/// Splits at the first `sep`: the part before and the part after it.
pub(super) fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == sep)?;
    Some((bytes.get(..i)?, bytes.get(i + 1..)?))
}

/// Splits at the first byte matching `pred`; without one, all is before.
pub(super) fn split_at_first(bytes: &[u8], pred: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&b| pred(b)) {
        Some(i) => (
            bytes.get(..i).unwrap_or_default(),
            bytes.get(i..).unwrap_or_default(),
        ),
        None => (bytes, &[]),
    }
}

/// A decimal number of at most `max_digits` digits, nothing else.
pub(super) fn parse_decimal(bytes: &[u8], max_digits: usize) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > max_digits {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        let d = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(bytes: &[u8]) -> String {
        SipText::new(bytes).to_string()
    }

    #[test]
    fn plain_text_is_shown_as_it_is() {
        assert_eq!(
            shown(b"Yealink SIP-T46S 66.86.0.15"),
            "Yealink SIP-T46S 66.86.0.15"
        );
        assert_eq!(shown("Télé 電話".as_bytes()), "Télé 電話");
    }

    #[test]
    fn line_breaks_escapes_and_bad_bytes_cannot_reach_the_output() {
        let ua = b"friendly\r\n2026-12-01 sipban: unbanned 1.2.3.4\x1b[2J\x1b]0;x\x07\xff\xc3";
        let s = shown(ua);
        assert_eq!(
            s,
            "friendly\\r\\n2026-12-01 sipban: unbanned 1.2.3.4\\x1b[2J\\x1b]0;x\\x07\\xff\\xc3"
        );
        assert!(s.bytes().all(|b| (0x20..0x7f).contains(&b)));
        assert_eq!(
            shown("a\u{202e}b\u{85}c\u{2028}".as_bytes()),
            "a\\u{202e}b\\u{85}c\\u{2028}"
        );
        assert_eq!(shown(b"back\\slash\x7f"), "back\\\\slash\\x7f");
    }

    #[test]
    fn output_is_capped_with_a_marker() {
        let long = [b'a'; 1000];
        assert_eq!(shown(&long).len(), SipText::DISPLAY_MAX);
        assert!(shown(&long).ends_with("a..."));
        assert_eq!(format!("{:.10}", SipText::new(&long)), "aaaaaaa...");
        assert_eq!(SipText::new(&long).to_sanitized(5), "aa...");
        assert_eq!(SipText::new(b"abcde").to_sanitized(5), "abcde");
        assert_eq!(SipText::new(b"abcdef").to_sanitized(2), "");
        // An escape is never cut in half.
        assert_eq!(SipText::new(b"ab\x1bcdef").to_sanitized(8), "ab...");
        assert_eq!(format!("{:?}", SipText::new(b"x\ny")), "\"x\\ny\"");
    }

    #[test]
    fn helpers() {
        assert_eq!(trim(b" \t\r\n x y \r\n"), b"x y");
        assert_eq!(trim(b" \r\n "), b"");
        assert_eq!(split_once(b"a:b:c", b':'), Some((&b"a"[..], &b"b:c"[..])));
        assert_eq!(parse_decimal(b"0042", 5), Some(42));
        assert_eq!(parse_decimal(b"99999999999999999999", 20), None);
        assert_eq!(parse_decimal(b"4x", 5), None);
        assert_eq!(parse_decimal(b"", 5), None);
        assert_eq!(hex_digits(0x85), 2);
        assert_eq!(hex_digits(0x202e), 4);
        assert_eq!(hex_digits(0), 1);
    }
}
