//! Arbitrary text through the allow/deny list-file parser and the CSV
//! parser, for both kinds of list, and the written forms read back.
//!
//! Checked: no panic; what a parser accepted, written as a list file
//! (`to_text`) and as CSV (`to_csv`), reads back to the same entries.

use std::path::Path;

use sipban::policy::lists::{AddressList, ListKind};

fn entries(list: &AddressList) -> Vec<(String, Option<String>)> {
    list.entries()
        .iter()
        .map(|e| (e.net.to_string(), e.note.clone()))
        .collect()
}

fn round_trip(list: &AddressList, kind: ListKind) {
    let path = Path::new("written");
    let want = entries(list);
    let text = list.to_text();
    match AddressList::parse_as(&text, path, kind) {
        Ok(back) => assert_eq!(entries(&back), want, "list file:\n{text}"),
        Err(e) => panic!("the written list file does not load: {e}\n{text}"),
    }
    let csv = list.to_csv();
    match AddressList::from_csv_as(&csv, path, kind) {
        Ok(back) => assert_eq!(entries(&back), want, "CSV:\n{csv}"),
        Err(e) => panic!("the written CSV does not load: {e}\n{csv}"),
    }
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        let path = Path::new("/etc/sipban.wl");
        for kind in [ListKind::Allow, ListKind::Deny] {
            for parsed in [
                AddressList::parse_as(&text, path, kind),
                AddressList::from_csv_as(&text, path, kind),
            ] {
                match parsed {
                    Ok(list) => {
                        for w in list.warnings() {
                            let _ = w.to_string();
                        }
                        round_trip(&list, kind);
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
    });
}
