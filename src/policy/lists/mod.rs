//! Allow and deny lists: files of IP addresses and CIDR networks, with notes.
//!
//! The file format is a superset of the old white list (which is read
//! unchanged and becomes the allow list): one IPv4/IPv6 address or CIDR per
//! line, optionally followed by a note (the rest of the line, trimmed); `#`
//! starts a comment, so a note cannot contain one; blank lines are ignored.
//! Addresses are normalised so that what an operator writes and what Asterisk
//! reports compare equal: IPv4-mapped IPv6 becomes IPv4 and host bits of a
//! CIDR are cleared. A bad line is an error naming file:line, in the white
//! list's wording, so operators see one style. Lines that are read but are
//! probably not what the operator meant (host bits set, a repeated network,
//! a deny entry covering everything) are [`ListWarning`]s, kept with the
//! list for the daemon to log and `--check-config` to print. An allow entry
//! covering everything (`0.0.0.0/0`, `::/0`) would turn the daemon off and
//! is an error.
//!
//! Lookups go through a hash index per prefix length: one probe per distinct
//! prefix length present (at most 33 for IPv4, 129 for IPv6), whatever the
//! number of entries, so a 50k-entry deny list costs the event path no more
//! than a five-entry one. The most specific entry wins.
//!
//! Invariant kept by every constructor and mutation: each note can be written
//! to the list file and to CSV and read back unchanged (trimmed, no `#`, no
//! line break, not starting with an address), so `save` and `to_csv` always
//! round-trip.
//!
//! Here: the list, its lookups and changes, and the pair judged together;
//! `read` turns a file or CSV into a list (refusals, warnings), `text` the
//! address and note syntax, `index` the prefix index.

mod index;
mod read;
mod text;

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use thiserror::Error;

use index::PrefixIndex;
pub use read::{ListKind, ListWarning, WarningKind};
use text::{FILE_HEADER, address_text, clean_note, csv_quote};
pub use text::{normalize, parse_net};

#[derive(Debug, Error)]
pub enum ListError {
    /// Same wording as the white list's error.
    #[error("{path}:{line}: {text:?} is not an IP address or CIDR")]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// A CSV line that is not `address,note` with RFC 4180 quoting.
    #[error("{path}:{line}: {text:?}: {why}")]
    BadCsv {
        path: PathBuf,
        line: usize,
        text: String,
        why: &'static str,
    },
    /// A note the list file could not hold: from CSV, or a stray carriage
    /// return inside a list-file line.
    #[error("{path}:{line}: note {note:?} {why}")]
    BadNote {
        path: PathBuf,
        line: usize,
        note: String,
        why: &'static str,
    },
    /// A network the list may not hold (see [`ListKind::refuses`]).
    #[error("{path}:{line}: {text:?} {why}")]
    Refused {
        path: PathBuf,
        line: usize,
        text: String,
        why: &'static str,
    },
    #[error("{path}:{line}: not valid UTF-8")]
    NotUtf8 { path: PathBuf, line: usize },
    /// A note given to [`AddressList::add`] the list file could not hold.
    #[error("note {note:?} {why}")]
    Note { note: String, why: &'static str },
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

/// One address or network of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Normalised: host bits cleared, IPv4-mapped IPv6 turned into IPv4.
    pub net: IpNet,
    pub note: Option<String>,
    /// 1-based line of the file (or CSV) it was read from; 0 when added at
    /// run time.
    pub line: usize,
}

impl ListEntry {
    /// The address as written to files: a bare address for a single host
    /// (as operators write them), `net/len` otherwise.
    pub fn address(&self) -> String {
        address_text(&self.net)
    }
}

/// The list-file form: `address` or `address note`.
impl fmt::Display for ListEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())?;
        if let Some(note) = &self.note {
            write!(f, " {note}")?;
        }
        Ok(())
    }
}

/// An allow or deny list: entries in file order plus the prefix index.
#[derive(Clone, Debug, Default)]
pub struct AddressList {
    entries: Vec<ListEntry>,
    v4: PrefixIndex<u32>,
    v6: PrefixIndex<u128>,
    duplicates: Vec<ListEntry>,
    warnings: Vec<ListWarning>,
}

impl AddressList {
    pub fn new() -> Self {
        Self::default()
    }

    /// `address,note` CSV with a header, one entry per line in file order;
    /// notes are quoted when they hold a comma or a quote (RFC 4180).
    /// Lines end in `\n` (both are read back).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("address,note\n");
        for e in &self.entries {
            out.push_str(&e.address());
            out.push(',');
            if let Some(note) = &e.note {
                out.push_str(&csv_quote(note));
            }
            out.push('\n');
        }
        out
    }

    /// The list-file text [`save`](Self::save) writes: a header comment,
    /// then `address note` lines in order.
    pub fn to_text(&self) -> String {
        let mut out = String::from(FILE_HEADER);
        for e in &self.entries {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }

    /// Writes the list to `path` atomically (temp file, fsync, rename, fsync
    /// of the directory): a crash leaves the old or the new file, never a
    /// torn one that would fail the next load. A symbolic link is followed,
    /// so a list kept elsewhere stays where it is. Comments of the old file
    /// are not kept (the header says so).
    pub fn save(&self, path: &Path) -> Result<(), ListError> {
        let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let text = self.to_text();
        crate::atomic_file::replace(&target, |f| f.write_all(text.as_bytes())).map_err(|source| {
            ListError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The most specific entry covering `ip` (longest prefix), if any.
    /// IPv4-mapped IPv6 is looked up as IPv4.
    pub fn find(&self, ip: IpAddr) -> Option<&ListEntry> {
        let pos = match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.longest(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.longest(u128::from(v6)),
        }?;
        self.entries.get(pos)
    }

    /// The entry for exactly `net` (after normalisation), not a covering one.
    pub fn get(&self, net: IpNet) -> Option<&ListEntry> {
        let pos = match normalize(net) {
            IpNet::V4(n) => self.v4.exact(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self.v6.exact(u128::from(n.network()), n.prefix_len()),
        }?;
        self.entries.get(pos)
    }

    /// Adds `net` (normalised) at the end with `note` and line 0. `Ok(false)`
    /// when the network is already listed: the existing entry and its note
    /// are left alone. A note the file could not hold is an error.
    pub fn add(&mut self, net: IpNet, note: Option<&str>) -> Result<bool, ListError> {
        let text = note.unwrap_or_default();
        let note = clean_note(text).map_err(|why| ListError::Note {
            note: text.to_string(),
            why,
        })?;
        Ok(self.insert(ListEntry {
            net: normalize(net),
            note,
            line: 0,
        }))
    }

    /// Removes the entry for exactly `net` (after normalisation); a covering
    /// or covered network is not touched. O(n), as befits a console command.
    pub fn remove(&mut self, net: IpNet) -> bool {
        let pos = match normalize(net) {
            IpNet::V4(n) => self.v4.remove(u32::from(n.network()), n.prefix_len()),
            IpNet::V6(n) => self.v6.remove(u128::from(n.network()), n.prefix_len()),
        };
        let Some(pos) = pos else {
            return false;
        };
        if pos < self.entries.len() {
            self.entries.remove(pos);
        }
        self.v4.forget_position(pos);
        self.v6.forget_position(pos);
        true
    }

    /// Entries in file order (added ones at the end).
    /// The networks, for the firewall.
    pub fn nets(&self) -> Vec<IpNet> {
        self.entries().iter().map(|e| e.net).collect()
    }

    pub fn entries(&self) -> &[ListEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Later repetitions ignored while parsing (with their own line and
    /// note); the first occurrence is the one in force. Each is also a
    /// [`WarningKind::Repeated`] warning.
    pub fn duplicates(&self) -> &[ListEntry] {
        &self.duplicates
    }

    /// What to warn about, met while parsing, in file order; `add` and
    /// `remove` leave it alone.
    pub fn warnings(&self) -> &[ListWarning] {
        &self.warnings
    }

    /// Appends `entry` (already normalised) unless its network is listed.
    fn insert(&mut self, entry: ListEntry) -> bool {
        let pos = self.entries.len();
        let fresh = match entry.net {
            IpNet::V4(n) => self.v4.insert(u32::from(n.network()), n.prefix_len(), pos),
            IpNet::V6(n) => self.v6.insert(u128::from(n.network()), n.prefix_len(), pos),
        };
        if fresh {
            self.entries.push(entry);
        }
        fresh
    }
}

/// What the lists say about an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListVerdict<'a> {
    /// Never banned, whatever the deny list or the events say.
    Allowed(&'a ListEntry),
    /// Banned permanently.
    Denied(&'a ListEntry),
    Neither,
}

/// The allow list and the deny list, judged together.
#[derive(Clone, Debug, Default)]
pub struct Lists {
    pub allow: AddressList,
    pub deny: AddressList,
}

/// The result of [`Lists::load`].
#[derive(Debug)]
pub struct Loaded {
    pub lists: Lists,
    /// Files that did not exist (read as empty lists), for a warning.
    pub missing: Vec<PathBuf>,
    /// Both lists' warnings, allow list first: to be logged.
    pub warnings: Vec<ListWarning>,
}

/// What [`Lists::reload`] reports besides the new lists.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub missing: Vec<PathBuf>,
    pub warnings: Vec<ListWarning>,
}

impl Lists {
    /// The allow list wins over everything, however specific the deny
    /// entry: an operator who allows an address means it (a denied /24 with
    /// one allowed /32 lets that /32 in; an allowed /16 beats a denied /32
    /// inside it).
    pub fn verdict(&self, ip: IpAddr) -> ListVerdict<'_> {
        if let Some(e) = self.allow.find(ip) {
            return ListVerdict::Allowed(e);
        }
        match self.deny.find(ip) {
            Some(e) => ListVerdict::Denied(e),
            None => ListVerdict::Neither,
        }
    }

    /// Reads both files; a missing one is an empty list and is reported in
    /// [`Loaded::missing`]. The first bad line (allow file first) is the
    /// error; the lines to warn about are in [`Loaded::warnings`].
    pub fn load(allow_path: &Path, deny_path: &Path) -> Result<Loaded, ListError> {
        let mut missing = Vec::new();
        let (allow, found) = AddressList::load_as(allow_path, ListKind::Allow)?;
        if !found {
            missing.push(allow_path.to_path_buf());
        }
        let (deny, found) = AddressList::load_as(deny_path, ListKind::Deny)?;
        if !found {
            missing.push(deny_path.to_path_buf());
        }
        let warnings = allow
            .warnings()
            .iter()
            .chain(deny.warnings())
            .cloned()
            .collect();
        Ok(Loaded {
            lists: Lists { allow, deny },
            missing,
            warnings,
        })
    }

    /// Re-reads both files (SIGHUP, console `reload`) and replaces both
    /// lists only if both parse: on error the old lists stay in force, whole,
    /// and the error names file:line. Reports what `load` reports.
    pub fn reload(&mut self, allow_path: &Path, deny_path: &Path) -> Result<Reloaded, ListError> {
        let Loaded {
            lists,
            missing,
            warnings,
        } = Self::load(allow_path, deny_path)?;
        *self = lists;
        Ok(Reloaded { missing, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_remove_keeps_index_and_order_in_step() {
        let mut l = AddressList::parse(
            "10.0.0.0/8 a\n10.1.0.0/16 b\n10.1.2.0/24 c\n2001:db8::/32 d\n",
            Path::new("t"),
        )
        .unwrap();
        assert!(l.remove("10.1.0.0/16".parse().unwrap()));
        assert!(!l.remove("10.1.0.0/16".parse().unwrap()));
        let notes: Vec<_> = l
            .entries()
            .iter()
            .filter_map(|e| e.note.as_deref())
            .collect();
        assert_eq!(notes, ["a", "c", "d"]);
        let note = |ip: &str| l.find(ip.parse().unwrap()).and_then(|e| e.note.clone());
        assert_eq!(note("10.1.2.3").as_deref(), Some("c"));
        assert_eq!(note("10.1.3.3").as_deref(), Some("a"));
        assert_eq!(note("2001:db8::1").as_deref(), Some("d"));
    }
}
