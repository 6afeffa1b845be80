//! Reading a list file or CSV into an [`AddressList`]: what each kind of
//! list refuses, and the lines it reads but warns about.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::text::{
    Written, address_text, clean_note, csv_fields, parse_written, starts_with_address, strip_bom,
    utf8,
};
use super::{AddressList, ListEntry, ListError};

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

impl AddressList {
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
