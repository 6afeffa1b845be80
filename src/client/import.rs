//! `allow|deny import FILE.csv` run by the client: FILE is read here, on
//! the client's side, and its lines are sent after the import command
//! (the console reads no file unless `[control] import_dir` allows it).
//! The lines are checked as the console checks them, so a bad file is
//! refused before anything is sent.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::console::codec::{Line, LineCodec};
use crate::console::import::{MAX_IMPORT_BYTES, MAX_IMPORT_LINES};

/// What the client does with a line typed for the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalLine {
    /// Sent as it is.
    Send,
    /// `allow|deny import [--force] PATH`: read PATH, send its lines.
    Import {
        list: &'static str,
        force: bool,
        path: PathBuf,
    },
    /// Misused; the text says how to use it.
    Usage(String),
}

/// How `line` is run. The path is the rest of the line, so it may hold
/// single spaces.
pub fn local_line(line: &str) -> LocalLine {
    let (name, rest) = word(line);
    let list = match name.to_ascii_lowercase().as_str() {
        "allow" => "allow",
        "deny" => "deny",
        _ => return LocalLine::Send,
    };
    let (op, rest) = word(rest);
    if !op.eq_ignore_ascii_case("import") {
        return LocalLine::Send;
    }
    let (flag, after_flag) = word(rest);
    let (force, path) = match flag {
        "--force" => (true, after_flag.trim()),
        _ => (false, rest.trim()),
    };
    if path.is_empty() {
        let force = if list == "deny" { "[--force] " } else { "" };
        return LocalLine::Usage(format!(
            "usage: {list} import {force}FILE.csv (the client reads FILE and sends its lines)"
        ));
    }
    LocalLine::Import {
        list,
        force,
        path: PathBuf::from(path),
    }
}

/// The first word of `s` and the rest (spaces kept).
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_once(char::is_whitespace).unwrap_or((s, ""))
}

/// The lines of an import file, or why it cannot be sent: named by
/// `FILE:line`, never by its content.
pub fn read_import(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(format!(
            "{shown} is over {} MiB: split it",
            MAX_IMPORT_BYTES >> 20
        ));
    }
    let mut codec = LineCodec::new();
    let mut lines = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let (used, line) = codec.feed(rest);
        rest = rest.get(used..).unwrap_or_default();
        if let Some(line) = line {
            keep(&mut lines, line, &shown)?;
        }
    }
    if let Some(line) = codec.finish() {
        keep(&mut lines, line, &shown)?;
    }
    Ok(lines)
}

/// Adds one line of the file, or says why the file cannot be sent.
fn keep(lines: &mut Vec<String>, line: Line, shown: &impl std::fmt::Display) -> Result<(), String> {
    let n = lines.len() + 1;
    if n > MAX_IMPORT_LINES {
        return Err(format!(
            "{shown} has over {MAX_IMPORT_LINES} lines: split it"
        ));
    }
    match line {
        Line::Text(t) if t.trim() == "." => Err(format!(
            "{shown}:{n}: a line holding only \".\" would end the import early"
        )),
        Line::Text(t) => {
            lines.push(t);
            Ok(())
        }
        Line::Bad(bad) => Err(format!("{shown}:{n}: {}; nothing sent", bad.reason())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_read_by_the_client() {
        assert_eq!(local_line("deny add 10.0.0.0/8"), LocalLine::Send);
        assert_eq!(local_line("block"), LocalLine::Send);
        assert_eq!(
            local_line("DENY import --force my lists/bulk.csv "),
            LocalLine::Import {
                list: "deny",
                force: true,
                path: "my lists/bulk.csv".into()
            }
        );
        assert_eq!(
            local_line("allow import a.csv"),
            LocalLine::Import {
                list: "allow",
                force: false,
                path: "a.csv".into()
            }
        );
        assert!(matches!(local_line("deny import"), LocalLine::Usage(u) if u.contains("FILE.csv")));
        assert!(matches!(
            local_line("deny import --force"),
            LocalLine::Usage(_)
        ));
    }

    #[test]
    fn a_file_is_checked_before_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.csv");
        std::fs::write(&good, "address,note\r\n10.0.0.1,a\n\n10.0.0.2").unwrap();
        assert_eq!(
            read_import(&good).unwrap(),
            ["address,note", "10.0.0.1,a", "", "10.0.0.2"]
        );
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "10.0.0.1\nTOKEN=s3cret\x07\n").unwrap();
        let err = read_import(&bad).unwrap_err();
        assert!(
            err.ends_with("bad.csv:2: control byte 0x07 at column 13; nothing sent"),
            "{err}"
        );
        assert!(!err.contains("s3cret"));
        let dot = dir.path().join("dot.csv");
        std::fs::write(&dot, "10.0.0.1\n.\n10.0.0.2\n").unwrap();
        assert!(read_import(&dot).unwrap_err().contains("dot.csv:2:"));
        assert!(read_import(&dir.path().join("missing")).is_err());
    }
}
