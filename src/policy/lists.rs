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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::fs;
use std::hash::Hash;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use thiserror::Error;

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

/// Which list a file holds: they differ in what they refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Allow,
    Deny,
}

impl ListKind {
    /// Why `net` (normalised) may not be on this list, if it may not: an
    /// allow entry of prefix length 0 would let every source in, so nothing
    /// would ever be banned. The console's `add` can use the same rule.
    pub fn refuses(self, net: IpNet) -> Option<&'static str> {
        (self == ListKind::Allow && net.prefix_len() == 0)
            .then_some("would allow every address: nothing would ever be banned")
    }
}

/// A line that was read but is probably not what the operator meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListWarning {
    pub path: PathBuf,
    pub line: usize,
    pub kind: WarningKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// `10.0.0.1/8`: read as the network it means.
    HostBits { written: String, means: IpNet },
    /// The network is already listed; this line is ignored.
    Repeated { net: IpNet, first: usize },
    /// A deny entry of prefix length 0: every source of that family not on
    /// the allow list is banned for good.
    DeniesEverything { net: IpNet },
}

impl fmt::Display for ListWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.path.display(), self.line)?;
        match &self.kind {
            WarningKind::HostBits { written, means } => {
                write!(f, "{written} has host bits set; it means {means}")
            }
            WarningKind::Repeated { net, first } => write!(
                f,
                "{} is listed twice (first at line {first}); this line is ignored",
                address_text(net)
            ),
            WarningKind::DeniesEverything { net } => {
                let family = if net.addr().is_ipv4() { "IPv4" } else { "IPv6" };
                write!(
                    f,
                    "{net} covers every {family} address: every such source not on the allow \
                     list is banned for good"
                )
            }
        }
    }
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

    /// Parses the list-file format; `path` only names the file in errors
    /// and warnings.
    ///
    /// A repeated network keeps its first line (and note); later ones are
    /// ignored, listed by [`duplicates`](Self::duplicates) and warned about
    /// in [`warnings`](Self::warnings). A second address where the note
    /// should start (`192.0.2.1 192.0.2.2`) is an error, as in the white
    /// list: the operator meant two entries, not an address with a note.
    pub fn parse_as(text: &str, path: &Path, kind: ListKind) -> Result<Self, ListError> {
        let mut reader = Reader::new(path, kind);
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let raw = if idx == 0 { strip_bom(raw) } else { raw };
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let bad_line = || ListError::BadLine {
                path: path.to_path_buf(),
                line,
                text: raw.trim().to_string(),
            };
            let (addr, note) = match content.split_once(char::is_whitespace) {
                Some((addr, note)) => (addr, note.trim()),
                None => (content, ""),
            };
            let written = parse_written(addr).ok_or_else(bad_line)?;
            if starts_with_address(note) {
                return Err(bad_line());
            }
            let note = clean_note(note).map_err(|why| ListError::BadNote {
                path: path.to_path_buf(),
                line,
                note: note.to_string(),
                why,
            })?;
            reader.accept(written, addr, note, line, raw)?;
        }
        Ok(reader.list)
    }

    /// Reads and parses `path`. A missing file is an empty list and
    /// `found` is false, so the caller can warn (the white list behaved so).
    pub fn load_as(path: &Path, kind: ListKind) -> Result<(Self, bool), ListError> {
        match fs::read(path) {
            Ok(bytes) => Ok((Self::parse_as(utf8(&bytes, path)?, path, kind)?, true)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((Self::new(), false)),
            Err(source) => Err(ListError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses `address,note` CSV (RFC 4180 quoting, optional `address`
    /// header, blank lines skipped, note column optional). A quoted field
    /// must end on its line: notes cannot hold line breaks. Entry lines are
    /// CSV lines; duplicates and warnings are handled as in
    /// [`parse_as`](Self::parse_as).
    pub fn from_csv_as(text: &str, path: &Path, kind: ListKind) -> Result<Self, ListError> {
        let mut reader = Reader::new(path, kind);
        let mut first_record = true;
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            let raw = if idx == 0 { strip_bom(raw) } else { raw };
            if raw.trim().is_empty() {
                continue;
            }
            let bad_csv = |why| ListError::BadCsv {
                path: path.to_path_buf(),
                line,
                text: raw.trim().to_string(),
                why,
            };
            let fields = csv_fields(raw).map_err(bad_csv)?;
            let addr = fields.first().map(|f| f.trim()).unwrap_or_default();
            if std::mem::take(&mut first_record) && addr.eq_ignore_ascii_case("address") {
                continue;
            }
            if fields.len() > 2 {
                return Err(bad_csv(
                    "expected address,note (quote notes holding commas)",
                ));
            }
            let written = parse_written(addr).ok_or_else(|| ListError::BadLine {
                path: path.to_path_buf(),
                line,
                text: raw.trim().to_string(),
            })?;
            let note = fields.get(1).map(String::as_str).unwrap_or_default();
            let note = clean_note(note).map_err(|why| ListError::BadNote {
                path: path.to_path_buf(),
                line,
                note: note.to_string(),
                why,
            })?;
            reader.accept(written, addr, note, line, raw)?;
        }
        Ok(reader.list)
    }

    /// [`parse_as`](Self::parse_as) a deny list: any network is read (one
    /// covering everything with a warning). Allow lists must name their
    /// kind, so that `0.0.0.0/0` is refused.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ListError> {
        Self::parse_as(text, path, ListKind::Deny)
    }

    /// [`load_as`](Self::load_as) a deny list; see [`parse`](Self::parse).
    pub fn load(path: &Path) -> Result<(Self, bool), ListError> {
        Self::load_as(path, ListKind::Deny)
    }

    /// [`from_csv_as`](Self::from_csv_as) a deny list; see
    /// [`parse`](Self::parse).
    pub fn from_csv(text: &str, path: &Path) -> Result<Self, ListError> {
        Self::from_csv_as(text, path, ListKind::Deny)
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

/// Builds a list from parsed lines: refusals, warnings, repetitions.
struct Reader<'a> {
    list: AddressList,
    path: &'a Path,
    kind: ListKind,
}

impl<'a> Reader<'a> {
    fn new(path: &'a Path, kind: ListKind) -> Self {
        Reader {
            list: AddressList::new(),
            path,
            kind,
        }
    }

    /// Adds the network read from line `line` (`addr` as written, `raw`
    /// the whole line for an error).
    fn accept(
        &mut self,
        written: Written,
        addr: &str,
        note: Option<String>,
        line: usize,
        raw: &str,
    ) -> Result<(), ListError> {
        let net = written.net;
        if let Some(why) = self.kind.refuses(net) {
            return Err(ListError::Refused {
                path: self.path.to_path_buf(),
                line,
                text: raw.trim().to_string(),
                why,
            });
        }
        let warn = |kind| ListWarning {
            path: self.path.to_path_buf(),
            line,
            kind,
        };
        let mut warnings = Vec::new();
        if written.host_bits {
            warnings.push(warn(WarningKind::HostBits {
                written: addr.to_string(),
                means: net,
            }));
        }
        let entry = ListEntry { net, note, line };
        match self.list.get(net).map(|first| first.line) {
            Some(first) => {
                warnings.push(warn(WarningKind::Repeated { net, first }));
                self.list.duplicates.push(entry);
            }
            None => {
                if net.prefix_len() == 0 {
                    warnings.push(warn(WarningKind::DeniesEverything { net }));
                }
                self.list.insert(entry);
            }
        }
        self.list.warnings.extend(warnings);
        Ok(())
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

const FILE_HEADER: &str = "\
# sipban address list: one IPv4/IPv6 address or CIDR network per line,
# optionally followed by a note. \"#\" starts a comment; blank lines are
# ignored. Written by sipban: comments are not kept when sipban rewrites
# this file (console allow/deny add|del).
";

/// `192.0.2.1`, `192.0.2.0/24`, `2001:db8::/32`, normalised (see
/// [`normalize`]); `None` if `s` is neither an address nor a CIDR.
pub fn parse_net(s: &str) -> Option<IpNet> {
    parse_written(s).map(|w| w.net)
}

/// An address or network as written in a file.
struct Written {
    /// Normalised.
    net: IpNet,
    /// The address had bits set past the prefix (`10.0.0.1/8`).
    host_bits: bool,
}

fn parse_written(s: &str) -> Option<Written> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(Written {
        net: normalize(net),
        host_bits: net.addr() != net.network(),
    })
}

/// The file's text, or the line of its first byte that is not UTF-8.
fn utf8<'b>(bytes: &'b [u8], path: &Path) -> Result<&'b str, ListError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        ListError::NotUtf8 {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })
}

/// Clears host bits (`192.0.2.7/24` is `192.0.2.0/24`) and turns networks
/// inside `::ffff:0:0/96` into IPv4 (`::ffff:192.0.2.0/120` is
/// `192.0.2.0/24`), because lookups see mapped sources as IPv4.
pub fn normalize(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 => n
            .network()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, n.prefix_len() - 96).ok())
            .map_or(IpNet::V6(n), IpNet::V4),
        other => other,
    }
}

fn address_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn strip_bom(line: &str) -> &str {
    line.strip_prefix('\u{feff}').unwrap_or(line)
}

fn starts_with_address(note: &str) -> bool {
    note.split_whitespace()
        .next()
        .is_some_and(|word| parse_net(word).is_some())
}

/// Trims `note` (empty is none) and refuses what the list file could not
/// read back as the same note.
fn clean_note(note: &str) -> Result<Option<String>, &'static str> {
    let note = note.trim();
    if note.is_empty() {
        return Ok(None);
    }
    if note.contains('#') {
        return Err("may not contain '#' (it starts a comment in the list file)");
    }
    if note.contains(['\n', '\r']) {
        return Err("may not contain a line break");
    }
    if starts_with_address(note) {
        return Err("may not start with an address (it would read as a second address)");
    }
    Ok(Some(note.to_string()))
}

/// Quotes a CSV field when RFC 4180 requires it.
fn csv_quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.trim() != field {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Splits one CSV line into fields (RFC 4180: `""` is a quote inside a
/// quoted field; spaces around a quoted field are allowed).
fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    let blank = |c: &char| *c == ' ' || *c == '\t';
    loop {
        while chars.next_if(blank).is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field (notes cannot span lines)"),
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            while chars.next_if(blank).is_some() {}
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a closing quote"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return Err("quote inside an unquoted field"),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// An address family's bits as an integer, most significant bit first.
trait Bits: Copy + Eq + Hash {
    const WIDTH: u32;
    /// Keeps the first `len` bits, clears the rest.
    fn keep(self, len: u8) -> Self;
}

impl Bits for u32 {
    const WIDTH: u32 = 32;
    fn keep(self, len: u8) -> Self {
        self & u32::MAX
            .checked_shl(Self::WIDTH.saturating_sub(len.into()))
            .unwrap_or(0)
    }
}

impl Bits for u128 {
    const WIDTH: u32 = 128;
    fn keep(self, len: u8) -> Self {
        self & u128::MAX
            .checked_shl(Self::WIDTH.saturating_sub(len.into()))
            .unwrap_or(0)
    }
}

/// Networks of one family indexed by prefix length: a lookup masks the
/// address once per length present, longest first, and probes that length's
/// hash map, so the first hit is the most specific entry. Cost depends on
/// the number of distinct lengths (<= 33 or 129), not on the entries.
#[derive(Clone, Debug)]
struct PrefixIndex<K> {
    /// Non-empty levels, longest prefix first.
    levels: Vec<Level<K>>,
}

#[derive(Clone, Debug)]
struct Level<K> {
    len: u8,
    /// Network bits -> position in the entry vector.
    slots: HashMap<K, usize>,
}

impl<K> Default for PrefixIndex<K> {
    fn default() -> Self {
        PrefixIndex { levels: Vec::new() }
    }
}

impl<K: Bits> PrefixIndex<K> {
    fn longest(&self, addr: K) -> Option<usize> {
        self.levels
            .iter()
            .find_map(|l| l.slots.get(&addr.keep(l.len)).copied())
    }

    fn level(&self, len: u8) -> Result<usize, usize> {
        // Sorted by descending length.
        self.levels.binary_search_by(|l| len.cmp(&l.len))
    }

    fn exact(&self, network: K, len: u8) -> Option<usize> {
        let at = self.level(len).ok()?;
        self.levels.get(at)?.slots.get(&network.keep(len)).copied()
    }

    /// False (and nothing changed) if the network is already indexed.
    fn insert(&mut self, network: K, len: u8, pos: usize) -> bool {
        let at = match self.level(len) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(
                    at,
                    Level {
                        len,
                        slots: HashMap::new(),
                    },
                );
                at
            }
        };
        let Some(level) = self.levels.get_mut(at) else {
            return false;
        };
        match level.slots.entry(network.keep(len)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(pos);
                true
            }
        }
    }

    /// The removed network's position; an emptied level goes, so lookups
    /// never probe it.
    fn remove(&mut self, network: K, len: u8) -> Option<usize> {
        let at = self.level(len).ok()?;
        let level = self.levels.get_mut(at)?;
        let pos = level.slots.remove(&network.keep(len))?;
        if level.slots.is_empty() {
            self.levels.remove(at);
        }
        Some(pos)
    }

    /// The entry at `pos` left the vector: later ones moved down by one.
    fn forget_position(&mut self, pos: usize) {
        for level in &mut self.levels {
            for p in level.slots.values_mut() {
                if *p > pos {
                    *p -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx4(nets: &[(&str, u8)]) -> PrefixIndex<u32> {
        let mut idx = PrefixIndex::default();
        for (pos, (addr, len)) in nets.iter().enumerate() {
            let a: std::net::Ipv4Addr = addr.parse().unwrap();
            assert!(idx.insert(u32::from(a), *len, pos));
        }
        idx
    }

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn keep_masks_every_length_without_overflow() {
        assert_eq!(0xffff_ffffu32.keep(0), 0);
        assert_eq!(0xffff_ffffu32.keep(1), 0x8000_0000);
        assert_eq!(0xffff_ffffu32.keep(24), 0xffff_ff00);
        assert_eq!(0xffff_ffffu32.keep(32), 0xffff_ffff);
        assert_eq!(0xffff_ffffu32.keep(200), 0xffff_ffff);
        assert_eq!(u128::MAX.keep(0), 0);
        assert_eq!(u128::MAX.keep(64), u128::MAX << 64);
        assert_eq!(u128::MAX.keep(128), u128::MAX);
    }

    #[test]
    fn index_levels_are_sorted_longest_first_and_longest_wins() {
        let idx = idx4(&[
            ("10.0.0.0", 8),
            ("10.1.2.3", 32),
            ("10.1.0.0", 16),
            ("0.0.0.0", 0),
            ("10.1.2.0", 24),
        ]);
        let lens: Vec<u8> = idx.levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, [32, 24, 16, 8, 0]);
        assert_eq!(idx.longest(v4("10.1.2.3")), Some(1));
        assert_eq!(idx.longest(v4("10.1.2.4")), Some(4));
        assert_eq!(idx.longest(v4("10.1.3.4")), Some(2));
        assert_eq!(idx.longest(v4("10.2.3.4")), Some(0));
        assert_eq!(idx.longest(v4("11.2.3.4")), Some(3));
    }

    #[test]
    fn index_refuses_duplicates_and_finds_exact() {
        let mut idx = idx4(&[("192.0.2.0", 24)]);
        assert!(!idx.insert(v4("192.0.2.0"), 24, 9));
        assert_eq!(idx.exact(v4("192.0.2.0"), 24), Some(0));
        assert_eq!(idx.exact(v4("192.0.2.0"), 25), None);
        assert_eq!(idx.exact(v4("192.0.3.0"), 24), None);
    }

    #[test]
    fn index_remove_drops_empty_levels_and_shifts_positions() {
        let mut idx = idx4(&[("10.0.0.0", 8), ("10.1.0.0", 16), ("10.1.2.0", 24)]);
        assert_eq!(idx.remove(v4("10.1.0.0"), 16), Some(1));
        idx.forget_position(1);
        assert_eq!(idx.levels.len(), 2);
        assert_eq!(idx.longest(v4("10.1.2.9")), Some(1));
        assert_eq!(idx.longest(v4("10.1.3.9")), Some(0));
        assert_eq!(idx.remove(v4("10.1.0.0"), 16), None);
        assert_eq!(idx.remove(v4("10.1.0.0"), 12), None);
    }

    #[test]
    fn index_v6() {
        let mut idx = PrefixIndex::<u128>::default();
        let a = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        assert!(idx.insert(a("2001:db8::"), 32, 0));
        assert!(idx.insert(a("2001:db8:1::"), 48, 1));
        assert!(idx.insert(a("2001:db8:1::7"), 128, 2));
        assert_eq!(idx.longest(a("2001:db8:1::7")), Some(2));
        assert_eq!(idx.longest(a("2001:db8:1::8")), Some(1));
        assert_eq!(idx.longest(a("2001:db8:2::8")), Some(0));
        assert_eq!(idx.longest(a("2001:db9::")), None);
    }

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

    #[test]
    fn normalize_mapped_networks() {
        let n = |s: &str| normalize(s.parse().unwrap()).to_string();
        assert_eq!(n("::ffff:192.0.2.7/120"), "192.0.2.0/24");
        assert_eq!(n("::ffff:0:0/96"), "0.0.0.0/0");
        assert_eq!(n("::ffff:0:0/95"), "::fffe:0:0/95");
        assert_eq!(n("2001:db8::1/64"), "2001:db8::/64");
    }

    #[test]
    fn csv_fields_follow_rfc4180() {
        assert_eq!(csv_fields("a,b").unwrap(), ["a", "b"]);
        assert_eq!(csv_fields("a").unwrap(), ["a"]);
        assert_eq!(csv_fields("a,").unwrap(), ["a", ""]);
        assert_eq!(
            csv_fields(r#"a, "x, ""y"" z" "#).unwrap(),
            ["a", r#"x, "y" z"#]
        );
        assert!(csv_fields(r#"a,"open"#).is_err());
        assert!(csv_fields(r#"a,"x"y"#).is_err());
        assert!(csv_fields(r#"a,x"y"#).is_err());
    }
}
