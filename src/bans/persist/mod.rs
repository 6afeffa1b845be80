//! The dump file: JSON written atomically (temp file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old or the new dump, never a
//! torn one. The original SIPban's formats are read too, for migration: the
//! legacy `# [date]` then `ip,expiry` lines, and the 2024 version's `ipset
//! save` output (remaining timeouts kept).
//!
//! Reading keeps the good parts: a bad entry (a bogus address, a line cut
//! by a full disk or an editor) is skipped with a warning naming
//! file:line, and every other entry is restored ([`read`]).

pub(crate) mod read;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::store::Ban;
use crate::clock::UnixTime;

pub use read::{parse, parse_dump, parse_dump_at};

/// Reason given to bans read from the original's dump, as it logged them.
pub const LEGACY_REASON: &str = "Sipban previous block";

/// Longest reason kept from a dump or journal (ours are a few dozen bytes).
pub const MAX_REASON: usize = 256;

#[derive(Debug, Error)]
pub enum DumpError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
pub struct DumpEntry {
    pub ip: IpAddr,
    /// Unix time the ban ends.
    pub expiry: UnixTime,
    pub reason: String,
    pub count: u32,
}

/// A dump as read: the bans, the policy's history (JSON dumps only) and
/// what had to be skipped.
#[derive(Debug, Default)]
pub struct Dump {
    pub bans: Vec<DumpEntry>,
    /// The policy's per-source ban history, as written.
    pub history: Option<serde_json::Value>,
    /// Bans of whole networks.
    pub nets: Vec<crate::bans::networks::NetBan>,
    /// The first journal generation the dump does not include: journals of
    /// this generation and later are replayed on top of it.
    pub journal: u64,
    /// One line per skipped entry, naming file:line and why.
    pub warnings: Vec<String>,
}

/// Writes `bans` to `path` atomically.
pub fn write(path: &Path, bans: &[Ban], now: UnixTime) -> Result<(), DumpError> {
    write_rows(
        path,
        bans.iter()
            .map(|b| (b.ip, b.expires, b.reason.as_str(), b.count)),
        Header {
            written: now,
            ..Header::default()
        },
    )
}

/// Writes the `history` value of a dump (one line of JSON) straight into
/// the file, so a large history is never built as one string first.
pub type HistoryWriter = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()> + Send>;

/// What a dump holds besides its address bans, each on one line before
/// them.
#[derive(Default)]
pub struct Header {
    /// When the dump was written (unix seconds).
    pub written: UnixTime,
    /// See [`Dump::journal`].
    pub journal: u64,
    /// The policy's per-source ban history.
    pub history: Option<HistoryWriter>,
    /// Bans of whole networks.
    pub nets: Vec<crate::bans::networks::NetBan>,
}

/// Streams `(ip, expiry, reason, count)` rows to `path` atomically, one
/// ban per line, without building the whole document in memory (100k bans
/// stay cheap). `journal`: see [`Dump::journal`].
pub fn write_rows<'a>(
    path: &Path,
    rows: impl Iterator<Item = (IpAddr, UnixTime, &'a str, u32)>,
    head: Header,
) -> Result<(), DumpError> {
    let werr = |source| DumpError::Write {
        path: path.to_path_buf(),
        source,
    };
    let Header {
        written,
        journal,
        history,
        nets,
    } = head;
    crate::atomic_file::replace(path, |f| {
        write!(
            f,
            "{{\n  \"version\": 1,\n  \"written\": {written},\n  \"journal\": {journal},\n"
        )?;
        if !nets.is_empty() {
            f.write_all(b"  \"nets\": ")?;
            serde_json::to_writer(&mut *f, &nets).map_err(std::io::Error::other)?;
            f.write_all(b",\n")?;
        }
        if let Some(h) = history {
            f.write_all(b"  \"history\": ")?;
            h(f)?;
            f.write_all(b",\n")?;
        }
        write!(f, "  \"bans\": [")?;
        for (i, (ip, expiry, reason, count)) in rows.enumerate() {
            let reason = serde_json::to_string(reason).map_err(std::io::Error::other)?;
            let sep = if i == 0 { "" } else { "," };
            write!(
                f,
                "{sep}\n    {{ \"ip\": \"{ip}\", \"expiry\": {expiry}, \"reason\": {reason}, \"count\": {count} }}"
            )?;
        }
        f.write_all(b"\n  ]\n}\n")
    })
    .map_err(werr)
}

/// Reads a dump in either format. `Ok(None)` when the file does not exist.
/// Skipped entries are dropped silently here; use [`read_dump`] to see them.
pub fn read(path: &Path) -> Result<Option<Vec<DumpEntry>>, DumpError> {
    Ok(read_dump(path)?.map(|d| d.bans))
}

/// Reads and parses the dump once: bans, history, warnings. An `ipset
/// save` dump's remaining timeouts count from the system clock's now.
pub fn read_dump(path: &Path) -> Result<Option<Dump>, DumpError> {
    read_dump_at(path, crate::clock::Clock::system().now())
}

/// As [`read_dump`], remaining timeouts counting from `now`.
pub fn read_dump_at(path: &Path, now: UnixTime) -> Result<Option<Dump>, DumpError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DumpError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Ok(Some(parse_dump_at(
        &String::from_utf8_lossy(&bytes),
        path,
        now,
    )))
}

/// The journal generation named in the dump's header (0 if none), read
/// without parsing the bans.
pub fn journal_of(path: &Path) -> u64 {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let reader = std::io::BufReader::new(file);
    for line in reader.split(b'\n').take(16).map_while(Result::ok) {
        let text = String::from_utf8_lossy(&line);
        let t = text.trim();
        if t.starts_with("\"bans\"") {
            break;
        }
        if let Some(n) = t.strip_prefix("\"journal\":") {
            return n.trim().trim_end_matches(',').parse().unwrap_or(0);
        }
    }
    0
}

/// Checks that the dump can be written where it is configured: its
/// directory exists and takes a new file (the atomic replacement writes a
/// temp file there), and an existing dump can be read. Start-up refuses to
/// run otherwise, rather than logging an error at every change and losing
/// the bans at stop.
pub fn check_writable(path: &Path) -> Result<(), DumpError> {
    let werr = |source| DumpError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::atomic_file::probe(path).map_err(werr)?;
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DumpError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(ip: &str, expires: UnixTime) -> Ban {
        Ban {
            ip: ip.parse().unwrap(),
            expires,
            reason: "Invalid Password".into(),
            count: 3,
            active: true,
        }
    }

    #[test]
    fn json_round_trip_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sipban.dump");
        assert!(read(&path).unwrap().is_none());
        write(&path, &[ban("192.0.2.1", 100), ban("2001:db8::1", 200)], 50).unwrap();
        let back = read_dump(&path).unwrap().unwrap();
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        let back = back.bans;
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].ip.to_string(), "2001:db8::1");
        assert_eq!((back[0].expiry, back[0].count), (100, 3));
        assert_eq!(back[0].reason, "Invalid Password");
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn unwritable_places_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(&dir.path().join("sipban.dump")).is_ok());
        let err = check_writable(&dir.path().join("missing/sipban.dump")).unwrap_err();
        assert!(err.to_string().contains("missing/sipban.dump"), "{err}");
    }
}
