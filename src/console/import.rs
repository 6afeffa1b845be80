//! The CSV an `allow|deny import` brings, before anything is changed: sent
//! by the client (the lines after the command, up to a line holding only
//! `.`), or read from a file inside `[control] import_dir` and nowhere
//! else. Either way it is bounded and checked line by line like console
//! input, and a problem is reported by line number: the content of a
//! file is never echoed (an import of `/proc/self/environ` must not hand
//! out the daemon's environment).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::codec::{BadLine, Line, LineCodec};
use crate::policy::lists::ListError;

/// Lines one import may hold.
pub const MAX_IMPORT_LINES: usize = 100_000;
/// Bytes one import may hold.
pub const MAX_IMPORT_BYTES: usize = 16 << 20;
/// Problems listed in a reply; the rest are counted.
pub const MAX_LISTED: usize = 20;

/// An import's lines, gathered and checked.
#[derive(Debug, Default)]
pub struct Collected {
    /// The good lines, `\n`-ended, numbered as received.
    text: String,
    lines: usize,
    bad: Vec<(usize, BadLine)>,
    bad_count: usize,
    /// Past [`MAX_IMPORT_LINES`] or [`MAX_IMPORT_BYTES`]: the rest is
    /// counted, not kept.
    over: bool,
}

impl Collected {
    pub fn push(&mut self, line: Line) {
        self.lines += 1;
        if self.over || self.lines > MAX_IMPORT_LINES {
            self.over = true;
            return;
        }
        match line {
            Line::Text(t) if self.text.len() + t.len() < MAX_IMPORT_BYTES => {
                self.text.push_str(&t);
                self.text.push('\n');
            }
            Line::Text(_) => self.over = true,
            Line::Bad(b) => {
                self.bad_count += 1;
                if self.bad.len() < MAX_LISTED {
                    self.bad.push((self.lines, b));
                }
            }
        }
    }

    /// A file's bytes, split and checked as console lines are.
    pub fn from_bytes(mut bytes: &[u8]) -> Collected {
        let mut codec = LineCodec::new();
        let mut collected = Collected::default();
        while !bytes.is_empty() {
            let (used, line) = codec.feed(bytes);
            bytes = bytes.get(used..).unwrap_or_default();
            collected.extend(line);
            if used == 0 {
                break;
            }
        }
        collected.extend(codec.finish());
        collected
    }

    fn extend(&mut self, line: Option<Line>) {
        if let Some(line) = line {
            self.push(line);
        }
    }

    /// The text to parse, or why the import is refused as a whole.
    pub fn text(&self) -> Result<&str, String> {
        if self.over {
            return Err(format!(
                "over {MAX_IMPORT_LINES} lines or {} MiB",
                MAX_IMPORT_BYTES >> 20
            ));
        }
        if self.bad_count == 0 {
            return Ok(&self.text);
        }
        let mut out = format!(
            "{} bad line{}",
            self.bad_count,
            if self.bad_count == 1 { "" } else { "s" }
        );
        for (n, why) in &self.bad {
            out.push_str(&format!("\nline {n}: {}", why.reason()));
        }
        if self.bad_count > self.bad.len() {
            out.push_str(&format!(
                "\n... and {} more",
                self.bad_count - self.bad.len()
            ));
        }
        Err(out)
    }
}

/// What `from_csv` found wrong, by line number only.
pub fn csv_problem(e: &ListError) -> String {
    match e {
        ListError::BadLine { line, .. } => format!("line {line}: not an IP address or CIDR"),
        ListError::BadCsv { line, why, .. } => format!("line {line}: {why}"),
        ListError::BadNote { line, why, .. } => format!("line {line}: the note {why}"),
        ListError::Refused { line, why, .. } => format!("line {line}: {why}"),
        ListError::NotUtf8 { line, .. } => format!("line {line}: not valid UTF-8"),
        _ => "the CSV could not be read".to_string(),
    }
}

/// How to import without a file on the daemon's host.
const SEND_INSTEAD: &str = "send the content instead: the import command without a file, \
     then the CSV lines, then a line holding only \".\" (`sipban deny import FILE.csv` does this)";

/// `path` (relative to `dir`, or absolute) when it is a regular file inside
/// `dir` once symbolic links are followed.
pub fn resolve(dir: Option<&Path>, path: &Path) -> Result<PathBuf, String> {
    let Some(dir) = dir else {
        return Err(format!(
            "error: this console reads no files ([control] import_dir is not set); {SEND_INSTEAD}"
        ));
    };
    let dir = std::fs::canonicalize(dir).map_err(|e| {
        format!(
            "error: the import directory {} cannot be used: {e}",
            dir.display()
        )
    })?;
    let candidate = dir.join(path);
    match std::fs::canonicalize(&candidate) {
        Ok(real) if real.starts_with(&dir) && real.is_file() => Ok(real),
        // One answer whether it is missing or outside: no probing.
        _ => Err(format!(
            "error: {} is not a file inside the import directory {}; {SEND_INSTEAD}",
            path.display(),
            dir.display()
        )),
    }
}

/// Reads a resolved import file: not through a link swapped in since, not
/// a FIFO or device, at most [`MAX_IMPORT_BYTES`].
pub fn read(path: &Path) -> Result<Collected, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| format!("error: cannot read {}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(format!("error: {} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(format!(
            "error: nothing imported: {} is over {} MiB",
            path.display(),
            MAX_IMPORT_BYTES >> 20
        ));
    }
    Ok(Collected::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_named_by_line_never_by_content() {
        let c = Collected::from_bytes(b"address,note\r\nSECRET=hunter2\0\n10.0.0.1,x\n");
        let err = c.text().unwrap_err();
        assert_eq!(err, "1 bad line\nline 2: control byte 0x00 at column 15");
        assert!(!err.contains("hunter2"));

        let good = Collected::from_bytes(b"address,note\r10.0.0.1,x\r\n\n10.0.0.2");
        assert_eq!(
            good.text().unwrap(),
            "address,note\n10.0.0.1,x\n\n10.0.0.2\n"
        );

        let e = crate::policy::lists::AddressList::from_csv(
            "address\nPATH=/secret/bin\n",
            Path::new("x"),
        )
        .unwrap_err();
        assert_eq!(csv_problem(&e), "line 2: not an IP address or CIDR");
    }

    #[test]
    fn an_import_is_bounded() {
        let mut c = Collected::default();
        for _ in 0..=MAX_IMPORT_LINES {
            c.push(Line::Text("10.0.0.1".into()));
        }
        assert!(c.text().unwrap_err().starts_with("over 100000 lines"));
        assert!(c.text.len() < MAX_IMPORT_BYTES);
    }

    #[test]
    fn only_regular_files_inside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("in.csv");
        std::fs::write(&inside, "10.0.0.1\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.csv")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let d = Some(dir.path());
        assert!(resolve(d, Path::new("in.csv")).is_ok());
        assert!(resolve(d, &inside).is_ok());
        for outside in [
            "link.csv",
            "../in.csv",
            "/proc/self/environ",
            "sub",
            "missing.csv",
        ] {
            let err = resolve(d, Path::new(outside)).unwrap_err();
            assert!(
                err.contains("is not a file inside the import directory"),
                "{err}"
            );
        }
        let err = resolve(None, Path::new("/proc/self/environ")).unwrap_err();
        assert!(err.contains("import_dir is not set") && err.contains("send the content"));
        assert_eq!(read(&inside).unwrap().text().unwrap(), "10.0.0.1\n");
    }
}
