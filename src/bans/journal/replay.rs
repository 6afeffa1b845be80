//! Reading the journal back: which files there are, which generation a new
//! run writes to, and the records of the generations a dump does not hold.

use std::fs;
use std::path::{Path, PathBuf};

use super::Record;

/// The journal file of generation `g` of `dump`.
pub fn file_of(dump: &Path, g: u64) -> PathBuf {
    let mut name = dump.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".journal.{g}"));
    dump.with_file_name(name)
}

/// The journal files of `dump` that exist, by generation.
pub fn files(dump: &Path) -> Vec<(u64, PathBuf)> {
    let dir = match dump.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = dump.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!("{base}.journal.");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let g = name.to_str()?.strip_prefix(&prefix)?.parse::<u64>().ok()?;
            Some((g, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The generation a new run writes to: after every journal file there
/// is, and not before the one the dump names (its older files may all be
/// pruned).
pub fn next_generation(dump: &Path) -> u64 {
    let files = files(dump).last().map_or(0, |(g, _)| *g);
    files.max(crate::bans::persist::journal_of(dump)) + 1
}

/// What the journals from generation `from` on hold, in order.
#[derive(Debug, Default)]
pub struct Replayed {
    pub records: Vec<Record>,
    /// One line per skipped record (file:line and why).
    pub warnings: Vec<String>,
    /// The highest generation found (0 if none).
    pub last_generation: u64,
}

/// Reads the journals of `dump` from generation `from` on. A last line
/// without its newline is a record the crash cut short: it is skipped
/// quietly; any other bad line is skipped with a warning.
pub fn replay(dump: &Path, from: u64) -> Replayed {
    let mut out = Replayed::default();
    for (g, path) in files(dump) {
        out.last_generation = out.last_generation.max(g);
        if g < from {
            continue;
        }
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                out.warnings
                    .push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (idx, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            // A last line without its newline: cut short by the crash.
            let torn = idx + 1 == lines.len() && !complete;
            match Record::parse(line) {
                Ok(r) if !torn => out.records.push(r),
                Ok(_) => {}
                Err(_) if torn => {}
                Err(why) => {
                    if out.warnings.len() < 20 {
                        let shown: String = line.chars().take(60).collect();
                        out.warnings.push(format!(
                            "{}:{}: record {shown:?} skipped: {why}",
                            path.display(),
                            idx + 1
                        ));
                    }
                }
            }
        }
    }
    out
}
