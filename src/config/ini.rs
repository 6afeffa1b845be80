//! The INI reader behind `/etc/sipban.conf`: bytes in, sections of
//! `key = value` entries out, each with its line.
//!
//! Our own rather than a crate: the INI crates (configparser among them)
//! merge a repeated section or key silently, last one winning, and keep no
//! line numbers, while an operator must be told about both lines. The
//! format is the original SIPban's: `[section]` headers, `key = value`,
//! values optionally in double quotes (a `#` inside them is part of the
//! value), `#` and `;` comment lines, and ` # comment` after an unquoted
//! value. Section and key names compare case-insensitively.

use std::collections::HashMap;

use thiserror::Error;

/// What is wrong with one line; the caller adds the file name.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("section header {0:?} has no closing ']'")]
    Unclosed(String),
    #[error("section header {0:?} names no section")]
    EmptySection(String),
    #[error("unexpected text after the section header {0:?}")]
    AfterSection(String),
    #[error("{0:?} has no key name before '='")]
    EmptyKey(String),
    #[error("value {0:?} has no closing '\"'")]
    UnclosedQuote(String),
    #[error("unexpected text after the quoted value {0:?}")]
    AfterQuote(String),
    #[error("section [{name}] appears twice (first at line {first})")]
    DuplicateSection { name: String, first: usize },
    #[error("[{section}] {key} is set twice (first at line {first})")]
    DuplicateKey {
        section: String,
        key: String,
        first: usize,
    },
    #[error("key {key:?} outside any section is set twice (first at line {first})")]
    DuplicateLooseKey { key: String, first: usize },
}

/// A [`SyntaxError`] and its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("line {line}: {error}")]
pub struct IniError {
    pub line: usize,
    pub error: SyntaxError,
}

/// One `key = value` line. A line without `=` is a key with an empty value
/// (so `port` alone is reported as a bad port, on its own line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Lower case.
    pub name: String,
    /// Quotes and trailing comment removed.
    pub value: String,
    pub line: usize,
}

/// A `[section]` and its keys in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Lower case; `None` for the keys before the first header.
    pub name: Option<String>,
    /// The header's line; 0 for the keys before the first header.
    pub line: usize,
    pub keys: Vec<Key>,
}

/// A whole file: the keys before any header first (possibly none), then
/// each section once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ini {
    sections: Vec<Section>,
}

impl Ini {
    /// Reads a whole file. The first bad line is the error: invalid UTF-8,
    /// a broken header or quote, or a section or key given twice.
    pub fn parse(bytes: &[u8]) -> Result<Ini, IniError> {
        let mut sections = vec![Section {
            name: None,
            line: 0,
            keys: Vec::new(),
        }];
        let mut seen_sections: HashMap<String, usize> = HashMap::new();
        let mut seen_keys: HashMap<String, usize> = HashMap::new();
        for (idx, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = idx + 1;
            let fail = |error| IniError { line, error };
            let text = std::str::from_utf8(raw).map_err(|_| fail(SyntaxError::NotUtf8))?;
            let text = if idx == 0 {
                text.strip_prefix('\u{feff}').unwrap_or(text)
            } else {
                text
            };
            let text = text.trim();
            if text.is_empty() || text.starts_with(['#', ';']) {
                continue;
            }
            if text.starts_with('[') {
                let name = section_name(text).map_err(fail)?;
                if let Some(&first) = seen_sections.get(&name) {
                    return Err(fail(SyntaxError::DuplicateSection { name, first }));
                }
                seen_sections.insert(name.clone(), line);
                seen_keys.clear();
                sections.push(Section {
                    name: Some(name),
                    line,
                    keys: Vec::new(),
                });
                continue;
            }
            let (name, raw_value) = text.split_once('=').unwrap_or((text, ""));
            let name = name.trim().to_lowercase();
            if name.is_empty() {
                return Err(fail(SyntaxError::EmptyKey(text.to_string())));
            }
            let value = unquote(raw_value).map_err(fail)?;
            let Some(section) = sections.last_mut() else {
                continue;
            };
            if let Some(&first) = seen_keys.get(&name) {
                return Err(fail(match &section.name {
                    Some(s) => SyntaxError::DuplicateKey {
                        section: s.clone(),
                        key: name,
                        first,
                    },
                    None => SyntaxError::DuplicateLooseKey { key: name, first },
                }));
            }
            seen_keys.insert(name.clone(), line);
            section.keys.push(Key { name, value, line });
        }
        Ok(Ini { sections })
    }

    /// Every section in file order, the keys before any header first.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The key `key` of `[section]` (both lower case).
    pub fn get(&self, section: &str, key: &str) -> Option<&Key> {
        self.sections
            .iter()
            .find(|s| s.name.as_deref() == Some(section))?
            .keys
            .iter()
            .find(|k| k.name == key)
    }
}

/// `[name]`, optionally followed by a comment; the name in lower case.
fn section_name(text: &str) -> Result<String, SyntaxError> {
    let inner = text.strip_prefix('[').unwrap_or(text);
    let Some((name, rest)) = inner.split_once(']') else {
        return Err(SyntaxError::Unclosed(text.to_string()));
    };
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with(['#', ';'])) {
        return Err(SyntaxError::AfterSection(text.to_string()));
    }
    let name = name.trim();
    if name.is_empty() {
        return Err(SyntaxError::EmptySection(text.to_string()));
    }
    Ok(name.to_lowercase())
}

/// `"value"` -> `value` (a comment may follow the closing quote); an
/// unquoted value loses a trailing ` # comment`.
fn unquote(raw: &str) -> Result<String, SyntaxError> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix('"') {
        let Some((inside, after)) = rest.split_once('"') else {
            return Err(SyntaxError::UnclosedQuote(raw.to_string()));
        };
        let after = after.trim_start();
        if !(after.is_empty() || after.starts_with(['#', ';'])) {
            return Err(SyntaxError::AfterQuote(raw.to_string()));
        }
        return Ok(inside.to_string());
    }
    let value = raw.split_once(" #").map_or(raw, |(value, _)| value);
    Ok(value.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Ini, IniError> {
        Ini::parse(text.as_bytes())
    }

    fn value(ini: &Ini, section: &str, key: &str) -> Option<(String, usize)> {
        ini.get(section, key).map(|k| (k.value.clone(), k.line))
    }

    #[test]
    fn quotes_comments_and_lines() {
        let ini = parse(
            "# comment\n; also a comment\n[AMI]\npass = \"get#out\"\nhost = \"a b\" # note\n\
             ping = 600 # ten minutes\nuser=plain\n  Port  =  5038  \n",
        )
        .unwrap();
        assert_eq!(value(&ini, "ami", "pass"), Some(("get#out".into(), 4)));
        assert_eq!(value(&ini, "ami", "host"), Some(("a b".into(), 5)));
        assert_eq!(value(&ini, "ami", "ping"), Some(("600".into(), 6)));
        assert_eq!(value(&ini, "ami", "user"), Some(("plain".into(), 7)));
        assert_eq!(value(&ini, "ami", "port"), Some(("5038".into(), 8)));
        assert_eq!(ini.sections()[1].line, 3);
    }

    #[test]
    fn crlf_bom_loose_keys_and_keys_without_value() {
        let ini = parse("\u{feff}verbose = yes\r\n[ami] ; the manager\r\nport\r\n").unwrap();
        let loose = &ini.sections()[0];
        assert_eq!(loose.name, None);
        assert_eq!(loose.keys[0].name, "verbose");
        assert_eq!(loose.keys[0].value, "yes");
        assert_eq!(value(&ini, "ami", "port"), Some((String::new(), 3)));
    }

    #[test]
    fn repeats_name_both_lines() {
        let err = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            err("[ami]\nport = 1\n\n[timer]\n[Ami]\n"),
            IniError {
                line: 5,
                error: SyntaxError::DuplicateSection {
                    name: "ami".into(),
                    first: 1
                }
            }
        );
        assert_eq!(
            err("[ami]\nport = 1\nPORT = 2\n").to_string(),
            "line 3: [ami] port is set twice (first at line 2)"
        );
        assert_eq!(
            err("a = 1\n# x\na = 2\n").to_string(),
            "line 3: key \"a\" outside any section is set twice (first at line 1)"
        );
        // The same key in two sections is fine.
        assert!(parse("[ami]\nport = 1\n[control]\nport = 2\n").is_ok());
    }

    #[test]
    fn broken_lines_are_errors_with_their_line() {
        let cases = [
            (
                "[ami]\n[timer\n",
                "section header \"[timer\" has no closing ']'",
            ),
            ("[ami]\n[ ]\n", "section header \"[ ]\" names no section"),
            (
                "[ami]\n[log] x\n",
                "unexpected text after the section header \"[log] x\"",
            ),
            ("[ami]\n= 5\n", "\"= 5\" has no key name before '='"),
            (
                "[ami]\npass = \"open\n",
                "value \"\\\"open\" has no closing '\"'",
            ),
            (
                "[ami]\npass = \"a\"b\n",
                "unexpected text after the quoted value \"\\\"a\\\"b\"",
            ),
        ];
        for (text, why) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(
                (e.line, e.error.to_string()),
                (2, why.to_string()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let e = Ini::parse(b"[ami]\npass = ok\n\nuser = \xff\xfe\n").unwrap_err();
        assert_eq!(e.to_string(), "line 4: not valid UTF-8");
    }
}
