//! Console lines from raw socket bytes. Telnet, `nc` and scripts end lines
//! differently, so LF, CRLF, a bare CR and telnet's CR NUL each end a line.
//! A line is checked whole before anything reads it: a NUL or another
//! control byte, bytes that are not UTF-8, or more than [`MAX_LINE`] bytes
//! make it a [`BadLine`] that runs nothing (the session goes on). Nothing
//! is stripped silently, so `bl\0ock` is an error, not `block`.
//!
//! The codec keeps at most [`MAX_LINE`] bytes however long the line: the
//! rest of an over-long line is counted, not stored.

use std::fmt;

/// The longest line accepted, in bytes (line end excluded).
pub const MAX_LINE: usize = 1024;

/// One line as the session sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// Valid UTF-8 without control characters (tab aside).
    Text(String),
    Bad(BadLine),
}

/// Why a line was refused; the text is the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadLine {
    TooLong,
    /// A control character (C0, DEL or C1) at a 1-based character column.
    Control {
        ch: char,
        column: usize,
    },
    /// The first byte that is not UTF-8, 1-based.
    NotUtf8 {
        byte: usize,
    },
}

impl BadLine {
    /// What is wrong, without the reply's framing: `control byte 0x00 at
    /// column 3` (for the lines of an import).
    pub fn reason(&self) -> String {
        match self {
            BadLine::TooLong => format!("line too long (over {MAX_LINE} bytes)"),
            BadLine::Control { ch, column } if u32::from(*ch) < 0x80 => {
                format!("control byte 0x{:02x} at column {column}", u32::from(*ch))
            }
            BadLine::Control { ch, column } => format!(
                "control character U+{:04X} at column {column}",
                u32::from(*ch)
            ),
            BadLine::NotUtf8 { byte } => format!("not valid UTF-8 at byte {byte}"),
        }
    }
}

/// The reply to a bad line.
impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The wording the client already knows as an error.
            BadLine::TooLong => write!(f, "{}, ignored", self.reason()),
            _ => write!(f, "error: {}; line ignored", self.reason()),
        }
    }
}

/// Splits a byte stream into [`Line`]s, whatever the read boundaries.
#[derive(Debug, Default)]
pub struct LineCodec {
    /// The line so far, never more than `MAX_LINE` bytes.
    line: Vec<u8>,
    /// The line went past `MAX_LINE`; its rest is dropped up to its end.
    overflow: bool,
    /// The last line ended in CR: a LF or NUL right after belongs to it.
    after_cr: bool,
}

impl LineCodec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes `input` up to the end of the first line it completes.
    /// Returns how many bytes were consumed and that line; with `None`, all
    /// of `input` was consumed and the line is not complete yet.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Line>) {
        let mut used = 0;
        if self.after_cr
            && let Some(&first) = input.first()
        {
            self.after_cr = false;
            if first == b'\n' || first == 0 {
                used = 1;
            }
        }
        let rest = input.get(used..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(end) => {
                let (body, tail) = rest.split_at(end);
                self.push(body);
                self.after_cr = tail.first() == Some(&b'\r');
                (used + end + 1, Some(self.take_line()))
            }
            None => {
                self.push(rest);
                (input.len(), None)
            }
        }
    }

    /// The end of the stream: a last line without its line end still
    /// counts.
    pub fn finish(&mut self) -> Option<Line> {
        self.after_cr = false;
        (self.in_line()).then(|| self.take_line())
    }

    /// Part of a line has arrived (the per-line deadline runs).
    pub fn in_line(&self) -> bool {
        !self.line.is_empty() || self.overflow
    }

    /// Bytes held; never more than [`MAX_LINE`].
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.line.len());
        if bytes.len() <= room {
            self.line.extend_from_slice(bytes);
        } else {
            self.line
                .extend_from_slice(bytes.get(..room).unwrap_or_default());
            self.overflow = true;
        }
    }

    fn take_line(&mut self) -> Line {
        let bytes = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.overflow) {
            return Line::Bad(BadLine::TooLong);
        }
        check(bytes)
    }
}

fn check(bytes: Vec<u8>) -> Line {
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return Line::Bad(BadLine::NotUtf8 {
                byte: e.utf8_error().valid_up_to() + 1,
            });
        }
    };
    let control = text
        .chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() && c != '\t');
    match control {
        Some((i, ch)) => Line::Bad(BadLine::Control { ch, column: i + 1 }),
        None => Line::Text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every line of `input` fed in pieces of the given sizes (cycled).
    fn decode(input: &[u8], pieces: &[usize]) -> Vec<Line> {
        let mut codec = LineCodec::new();
        let mut out = Vec::new();
        let mut rest = input;
        let mut sizes = pieces.iter().copied().filter(|&n| n > 0).cycle();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
            let (mut chunk, tail) = rest.split_at(n);
            rest = tail;
            while !chunk.is_empty() {
                let (used, line) = codec.feed(chunk);
                assert!(used <= chunk.len());
                assert!(codec.buffered() <= MAX_LINE);
                chunk = &chunk[used..];
                out.extend(line);
                if used == 0 {
                    break;
                }
            }
        }
        out.extend(codec.finish());
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.into())
    }

    #[test]
    fn every_line_end_counts_once() {
        assert_eq!(
            decode(b"block\r\nwl\nuptime\rping\r\0status\r\r\nhelp", &[]),
            ["block", "wl", "uptime", "ping", "status", "", "help"].map(text)
        );
        // A CR at the end of one read and its LF in the next: one line end.
        assert_eq!(decode(b"a\r\nb\r\n", &[2, 1]), [text("a"), text("b")]);
        let mixed = b"a\r\0b\r\nc\rd\ne\r\r\n\0f";
        assert_eq!(decode(mixed, &[1]), decode(mixed, &[]));
    }

    #[test]
    fn control_bytes_are_named_not_stripped() {
        let bad = decode(b"bl\0ock\n", &[]);
        assert_eq!(
            bad,
            [Line::Bad(BadLine::Control {
                ch: '\0',
                column: 3
            })]
        );
        assert_eq!(
            BadLine::Control {
                ch: '\0',
                column: 3
            }
            .to_string(),
            "error: control byte 0x00 at column 3; line ignored"
        );
        assert_eq!(
            decode("é\u{85}x\n".as_bytes(), &[]),
            [Line::Bad(BadLine::Control {
                ch: '\u{85}',
                column: 2
            })]
        );
        assert_eq!(decode(b"a\x1b[2J\n", &[]).len(), 1);
        assert_eq!(decode(b"deny\tlist\n", &[]), [text("deny\tlist")]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_error() {
        assert_eq!(
            decode(b"ab\xffcd\n", &[]),
            [Line::Bad(BadLine::NotUtf8 { byte: 3 })]
        );
        assert_eq!(
            BadLine::NotUtf8 { byte: 3 }.to_string(),
            "error: not valid UTF-8 at byte 3; line ignored"
        );
    }

    #[test]
    fn a_long_line_is_reported_once_and_the_next_one_is_read() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\nhelp\n");
        assert_eq!(
            decode(&input, &[]),
            [Line::Bad(BadLine::TooLong), text("help")]
        );
        // Exactly the cap is fine.
        let mut input = vec![b'x'; MAX_LINE];
        input.push(b'\n');
        assert!(matches!(&decode(&input, &[])[..], [Line::Text(t)] if t.len() == MAX_LINE));
    }

    #[test]
    fn the_last_line_without_its_end_still_counts() {
        assert_eq!(decode(b"wl\nuptime", &[]), [text("wl"), text("uptime")]);
        assert_eq!(decode(b"wl\r", &[]), [text("wl")]);
        assert!(decode(b"", &[]).is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_under_the_cap(
            input in proptest::collection::vec(any::<u8>(), 0..4000),
        ) {
            // decode() checks the cap after every feed.
            let lines = decode(&input, &[]);
            for line in lines {
                if let Line::Text(t) = line {
                    prop_assert!(t.len() <= MAX_LINE);
                    prop_assert!(!t.chars().any(|c| c.is_control() && c != '\t'));
                }
            }
        }

        #[test]
        fn the_lines_do_not_depend_on_how_the_input_is_split(
            parts in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::collection::vec(
                        prop_oneof![
                            4 => Just(b'a'), 1 => Just(b'\r'), 1 => Just(b'\n'),
                            1 => Just(0u8), 1 => any::<u8>(),
                        ],
                        1..16,
                    ),
                    // Over the cap, so that long lines are split too.
                    1 => Just(vec![b'x'; MAX_LINE + 3]),
                ],
                0..24,
            ),
            pieces in proptest::collection::vec(1usize..700, 1..8),
        ) {
            let input = parts.concat();
            prop_assert_eq!(decode(&input, &pieces), decode(&input, &[]));
        }
    }
}
