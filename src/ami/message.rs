//! One AMI message: the `Key: Value` lines between blank lines, in order.
//!
//! The text is kept whole and each field is a pair of spans into it, so a
//! message costs two allocations however many fields it has (a storm is
//! 100k messages of ten fields each: per-field strings were most of the cost
//! of reading it). Spans are only ever made at a line end or after a `:`,
//! which are ASCII, so every span starts and ends on a character boundary.

use std::fmt;
use std::ops::Range;

#[derive(Clone, Default)]
pub struct AmiMessage {
    text: String,
    fields: Vec<Field>,
}

/// Two messages are equal when their fields are (the line ends and the
/// spacing around the colons do not count).
impl PartialEq for AmiMessage {
    fn eq(&self, other: &Self) -> bool {
        self.fields().eq(other.fields())
    }
}

impl Eq for AmiMessage {}

impl fmt::Debug for AmiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields()).finish()
    }
}

#[derive(Clone, Debug)]
struct Field {
    key: Range<usize>,
    value: Range<usize>,
}

impl AmiMessage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder used for actions we send.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let k = self.text.len()..self.text.len() + key.len();
        self.text.push_str(key);
        let v = self.text.len()..self.text.len() + value.len();
        self.text.push_str(&value);
        self.fields.push(Field { key: k, value: v });
        self
    }

    /// Parses the text of one message (without its terminating blank line).
    /// Keys are trimmed; one run of spaces after the colon is dropped; a line
    /// without a colon is kept with an empty key (command output does that).
    pub fn parse(text: &str) -> Self {
        Self::from_text(text.to_string())
    }

    /// As [`AmiMessage::parse`], taking the text it keeps.
    pub fn from_text(text: String) -> Self {
        let mut fields = Vec::with_capacity(12);
        let mut start = 0;
        let bytes = text.as_bytes();
        while start < bytes.len() {
            // Bytes, not chars: `\n` and `:` are ASCII, so every offset found
            // is a character boundary, and a byte search is far cheaper.
            let end = bytes
                .get(start..)
                .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
                .map_or(bytes.len(), |i| start + i + 1);
            let line = text.get(start..end).unwrap_or_default();
            // As `str::lines` then one more `\r` off: what the line
            // reader always did.
            let body = match line.strip_suffix('\n') {
                Some(b) => b.strip_suffix('\r').unwrap_or(b),
                None => line,
            };
            let body = body.strip_suffix('\r').unwrap_or(body);
            let line_start = start;
            start = end;
            if body.is_empty() {
                continue;
            }
            let body_end = line_start + body.len();
            fields.push(match body.bytes().position(|b| b == b':') {
                Some(colon) => {
                    let key = span_trimmed(&text, line_start..line_start + colon);
                    let value_start = line_start + colon + 1;
                    let skipped = text
                        .get(value_start..body_end)
                        .map_or(0, |v| v.len() - v.trim_start().len());
                    Field {
                        key,
                        value: value_start + skipped..body_end,
                    }
                }
                None => Field {
                    key: line_start..line_start,
                    value: line_start..body_end,
                },
            });
        }
        AmiMessage { text, fields }
    }

    fn at(&self, r: &Range<usize>) -> &str {
        self.text.get(r.clone()).unwrap_or_default()
    }

    /// First value of `key`, compared case-insensitively as Asterisk does.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| self.at(&f.key).eq_ignore_ascii_case(key))
            .map(|f| self.at(&f.value))
    }

    /// The fields in order, as `(key, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|f| (self.at(&f.key), self.at(&f.value)))
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// `r` without the whitespace at either end of the text it spans.
fn span_trimmed(text: &str, r: Range<usize>) -> Range<usize> {
    let s = text.get(r.clone()).unwrap_or_default();
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead + trail >= s.len() {
        return r.start..r.start;
    }
    r.start + lead..r.end - trail
}

impl fmt::Display for AmiMessage {
    /// Wire form: `Key: Value\r\n` lines and the terminating blank line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in self.fields() {
            write!(f, "{k}: {v}\r\n")?;
        }
        f.write_str("\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_fields_and_empty_values() {
        let m = AmiMessage::parse("Event: ChallengeSent\r\nChallenge: \r\nAccountID: 1001\r\n");
        assert_eq!(m.get("event"), Some("ChallengeSent"));
        assert_eq!(m.get("Challenge"), Some(""));
        assert_eq!(m.get("AccountId"), Some("1001"));
        assert_eq!(m.get("missing"), None);
    }

    #[test]
    fn value_keeps_inner_colons() {
        let m = AmiMessage::parse("RemoteAddress: IPV6/UDP/2001:db8::1/5060\n");
        assert_eq!(m.get("RemoteAddress"), Some("IPV6/UDP/2001:db8::1/5060"));
    }

    #[test]
    fn display_is_wire_form() {
        let m = AmiMessage::new()
            .with("Action", "Ping")
            .with("ActionID", "7");
        assert_eq!(m.to_string(), "Action: Ping\r\nActionID: 7\r\n\r\n");
    }

    #[test]
    fn keys_trimmed_lines_without_colon_and_multibyte_text() {
        let m = AmiMessage::parse(
            "  Key é :   välue \r\nno colon here\n\n: empty key\nAccountID:1é\r\n",
        );
        let fields: Vec<(&str, &str)> = m.fields().collect();
        assert_eq!(
            fields,
            [
                ("Key é", "välue "),
                ("", "no colon here"),
                ("", "empty key"),
                ("AccountID", "1é")
            ]
        );
    }

    /// The field list the spans give is the one a plain per-line parse
    /// gives, for any text.
    fn naive(text: &str) -> Vec<(String, String)> {
        text.lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(|line| match line.split_once(':') {
                Some((k, v)) => (k.trim().to_string(), v.trim_start().to_string()),
                None => (String::new(), line.to_string()),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn spans_match_a_plain_parse(text in "[a-zA-Z :\\r\\n\\té€]{0,120}") {
            let m = AmiMessage::parse(&text);
            let got: Vec<(String, String)> = m.fields().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!(got, naive(&text));
        }

        #[test]
        fn never_panics(text in ".{0,300}") {
            let m = AmiMessage::parse(&text);
            let _ = m.get("Event");
            let _ = m.to_string();
        }
    }
}
