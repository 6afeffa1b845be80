//! Console bytes, split into arbitrary reads, through the line codec and
//! every accepted line through `Command::parse`.
//!
//! Shape byte: the read sizes (0 = one read).
//!
//! Checked: no panic; the codec never holds more than `MAX_LINE` bytes nor
//! consumes more than it was given; an accepted line has no control
//! character; the lines are the same whatever the read boundaries.

use sipban::console::Command;
use sipban::console::codec::{Line, LineCodec, MAX_LINE};
use sipban_fuzz::{reads, shape_and_payload};

fn lines(parts: &[&[u8]]) -> Vec<Line> {
    let mut codec = LineCodec::new();
    let mut out = Vec::new();
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let (used, line) = codec.feed(rest);
            assert!(used <= rest.len(), "used {used} of {}", rest.len());
            assert!(codec.buffered() <= MAX_LINE);
            out.extend(line);
            if used == 0 {
                break;
            }
            rest = rest.get(used..).unwrap_or_default();
        }
    }
    out.extend(codec.finish());
    out
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((shape, payload)) = shape_and_payload(data) else {
            return;
        };
        let got = lines(&reads(payload, shape));
        for line in &got {
            match line {
                Line::Text(text) => {
                    assert!(text.len() <= MAX_LINE);
                    assert!(!text.chars().any(|c| c.is_control() && c != '\t'));
                    if let Command::Error(reply) = Command::parse(text) {
                        assert!(!reply.is_empty());
                    }
                }
                Line::Bad(bad) => {
                    let _ = bad.to_string();
                }
            }
        }
        if shape != 0 {
            assert_eq!(
                got,
                lines(&[payload]),
                "lines depend on the read boundaries"
            );
        }
    });
}
