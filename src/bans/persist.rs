//! The dump file: JSON written atomically (temp file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old or the new dump, never a
//! torn one. The original SIPban's format (`# [date]` then `ip,expiry` lines)
//! is read too, for migration.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::store::Ban;
use crate::clock::UnixTime;

/// Reason given to bans read from the original's dump, as it logged them.
pub const LEGACY_REASON: &str = "Sipban previous block";

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
    #[error("{path}: not a valid sipban dump: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}:{line}: {text:?}: {why}")]
    Legacy {
        path: PathBuf,
        line: usize,
        text: String,
        why: &'static str,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct DumpFile {
    version: u32,
    /// When the dump was written (unix seconds).
    written: UnixTime,
    bans: Vec<DumpEntry>,
    /// The policy's per-source ban history (escalation across restarts).
    #[serde(default)]
    history: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DumpEntry {
    pub ip: IpAddr,
    /// Unix time the ban ends.
    pub expiry: UnixTime,
    pub reason: String,
    pub count: u32,
}

/// Writes `bans` to `path` atomically.
pub fn write(path: &Path, bans: &[Ban], now: UnixTime) -> Result<(), DumpError> {
    write_rows(
        path,
        bans.iter()
            .map(|b| (b.ip, b.expires, b.reason.as_str(), b.count)),
        now,
        None,
    )
}

/// Streams `(ip, expiry, reason, count)` rows to `path` atomically, without
/// building the whole document in memory (100k bans stay cheap).
pub fn write_rows<'a>(
    path: &Path,
    rows: impl Iterator<Item = (IpAddr, UnixTime, &'a str, u32)>,
    now: UnixTime,
    history: Option<&str>,
) -> Result<(), DumpError> {
    let werr = |source| DumpError::Write {
        path: path.to_path_buf(),
        source,
    };
    crate::atomic_file::replace(path, |f| {
        write!(f, "{{\n  \"version\": 1,\n  \"written\": {now},\n")?;
        if let Some(h) = history {
            writeln!(f, "  \"history\": {h},")?;
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

/// A dump as read: the bans, and the policy's history (JSON dumps only).
#[derive(Debug, Default)]
pub struct Dump {
    pub bans: Vec<DumpEntry>,
    pub history: Option<serde_json::Value>,
}

/// Reads a dump in either format. `Ok(None)` when the file does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<DumpEntry>>, DumpError> {
    Ok(read_dump(path)?.map(|d| d.bans))
}

/// Like [`read`], with the history: the file is read and parsed once.
pub fn read_dump(path: &Path) -> Result<Option<Dump>, DumpError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DumpError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse_dump(&text, path).map(Some)
}

pub fn parse(text: &str, path: &Path) -> Result<Vec<DumpEntry>, DumpError> {
    parse_dump(text, path).map(|d| d.bans)
}

fn parse_dump(text: &str, path: &Path) -> Result<Dump, DumpError> {
    if text.trim_start().starts_with('{') {
        let dump: DumpFile = serde_json::from_str(text).map_err(|source| DumpError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let bans = dump
            .bans
            .into_iter()
            .map(|mut e| {
                e.ip = e.ip.to_canonical();
                e
            })
            .collect();
        return Ok(Dump {
            bans,
            history: dump.history,
        });
    }
    Ok(Dump {
        bans: parse_legacy(text, path)?,
        history: None,
    })
}

fn parse_legacy(text: &str, path: &Path) -> Result<Vec<DumpEntry>, DumpError> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why| DumpError::Legacy {
            path: path.to_path_buf(),
            line: idx + 1,
            text: line.to_string(),
            why,
        };
        let (ip, expiry) = line
            .split_once(',')
            .ok_or_else(|| bad("expected ip,expiry"))?;
        let ip: IpAddr = ip.trim().parse().map_err(|_| bad("not an IP address"))?;
        let expiry: UnixTime = expiry
            .trim()
            .parse()
            .map_err(|_| bad("expiry is not a unix time"))?;
        out.push(DumpEntry {
            ip: ip.to_canonical(),
            expiry,
            reason: LEGACY_REASON.to_string(),
            count: 1,
        });
    }
    Ok(out)
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
        let back = read(&path).unwrap().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].ip.to_string(), "2001:db8::1");
        assert_eq!((back[0].expiry, back[0].count), (100, 3));
        assert_eq!(back[0].reason, "Invalid Password");
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn legacy_format_is_read() {
        let text = "# [2024-01-02 03:04:05]\n203.0.113.7,1700000000\n2001:db8::9,1700000100\n";
        let got = parse(text, Path::new("/etc/sipban.dump")).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].ip.to_string(), "203.0.113.7");
        assert_eq!(got[0].expiry, 1_700_000_000);
        assert_eq!(got[0].reason, LEGACY_REASON);
    }

    #[test]
    fn bad_dumps_name_file_and_line() {
        let err = parse("1.2.3.4,10\nnonsense\n", Path::new("/d")).unwrap_err();
        assert_eq!(err.to_string(), "/d:2: \"nonsense\": expected ip,expiry");
        let err = parse("1.2.3.4,soon\n", Path::new("/d")).unwrap_err();
        assert!(err.to_string().contains("/d:1:"), "{err}");
        let err = parse("{\"version\":1,", Path::new("/d")).unwrap_err();
        assert!(
            err.to_string().starts_with("/d: not a valid sipban dump"),
            "{err}"
        );
    }
}
