//! The list file's and CSV's text: addresses as written and normalised,
//! notes a file can hold, CSV fields.

pub use crate::cidr::normalize;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::ListError;

pub(super) const FILE_HEADER: &str = "\
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
pub(super) struct Written {
    /// Normalised.
    pub(super) net: IpNet,
    /// The address had bits set past the prefix (`10.0.0.1/8`).
    pub(super) host_bits: bool,
}

pub(super) fn parse_written(s: &str) -> Option<Written> {
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
pub(super) fn utf8<'b>(bytes: &'b [u8], path: &Path) -> Result<&'b str, ListError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        ListError::NotUtf8 {
            path: path.to_path_buf(),
            line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
        }
    })
}

pub(super) fn address_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

pub(super) fn strip_bom(line: &str) -> &str {
    line.strip_prefix('\u{feff}').unwrap_or(line)
}

pub(super) fn starts_with_address(note: &str) -> bool {
    note.split_whitespace()
        .next()
        .is_some_and(|word| parse_net(word).is_some())
}

/// Trims `note` (empty is none) and refuses what the list file could not
/// read back as the same note.
pub(super) fn clean_note(note: &str) -> Result<Option<String>, &'static str> {
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
pub(super) fn csv_quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.trim() != field {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Splits one CSV line into fields (RFC 4180: `""` is a quote inside a
/// quoted field; spaces around a quoted field are allowed).
pub(super) fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
