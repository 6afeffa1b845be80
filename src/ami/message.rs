//! One AMI message: the `Key: Value` lines between blank lines, in order.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AmiMessage {
    fields: Vec<(String, String)>,
}

impl AmiMessage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder used for actions we send.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.fields.push((key.to_string(), value.into()));
        self
    }

    /// Parses the text of one message (without its terminating blank line).
    /// Keys are trimmed; one run of spaces after the colon is dropped; a line
    /// without a colon is kept with an empty key (command output does that).
    pub fn parse(text: &str) -> Self {
        let fields = text
            .lines()
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(|line| match line.split_once(':') {
                Some((k, v)) => (k.trim().to_string(), v.trim_start().to_string()),
                None => (String::new(), line.to_string()),
            })
            .collect();
        AmiMessage { fields }
    }

    /// First value of `key`, compared case-insensitively as Asterisk does.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for AmiMessage {
    /// Wire form: `Key: Value\r\n` lines and the terminating blank line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.fields {
            write!(f, "{k}: {v}\r\n")?;
        }
        f.write_str("\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
