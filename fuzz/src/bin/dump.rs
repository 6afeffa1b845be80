//! Arbitrary text through the ban dump reader (`persist::parse_dump`: our
//! JSON layout line by line, other JSON whole, the original's `ip,expiry`
//! lines) and every line through the journal's record parser; the bans
//! read are written back with `persist::write_rows` and read again, and
//! a `history` found is loaded into a detector as the daemon does.
//!
//! Checked: no panic; a reason is at most `MAX_REASON` bytes; what was read
//! survives being written and read back (bans, history, journal number).

use std::path::{Path, PathBuf};

use sipban::bans::journal::{Record, parse_record};
use sipban::bans::persist::{self, MAX_REASON, parse_dump};
use sipban::policy::detector::{Detector, DetectorConfig, History};

/// Where the round trip writes: memory-backed, one file per process.
fn scratch() -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("sipban-fuzz-dump.{}", std::process::id()))
}

/// The history as the detector reads it (`None` if it is not one).
fn typed(history: &Option<serde_json::Value>) -> Option<History> {
    serde_json::from_value::<History>(history.clone()?).ok()
}

fn main() {
    let scratch = scratch();
    let now = 1_764_600_000;
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            match parse_record(line) {
                Ok(Record::Ban(e)) => assert!(e.reason.len() <= MAX_REASON),
                Ok(Record::Unban(ip)) => assert_eq!(ip, ip.to_canonical()),
                Ok(Record::BanNet(b)) => assert!(b.reason.len() <= MAX_REASON),
                Ok(Record::UnbanNet(_)) => {}
                Err(why) => assert!(!why.is_empty()),
            }
        }
        let dump = parse_dump(&text, Path::new("/etc/sipban.dump"));
        assert!(dump.bans.iter().all(|b| b.reason.len() <= MAX_REASON));
        assert!(
            dump.warnings.len() <= 21,
            "{} warnings",
            dump.warnings.len()
        );
        if let Some(history) = typed(&dump.history) {
            let mut d = Detector::new(DetectorConfig::default()).expect("valid");
            d.load_history(history, now * 1000);
        }
        if dump.bans.is_empty() && dump.history.is_none() && dump.nets.is_empty() {
            return;
        }
        let history = dump.history.as_ref().map(|h| h.to_string());
        let history: Option<persist::HistoryWriter> = history.map(|h| {
            Box::new(move |w: &mut dyn std::io::Write| w.write_all(h.as_bytes()))
                as persist::HistoryWriter
        });
        let rows = dump
            .bans
            .iter()
            .map(|b| (b.ip, b.expiry, b.reason.as_str(), b.count));
        let head = persist::Header {
            written: now,
            journal: dump.journal,
            history,
            nets: dump.nets.clone(),
        };
        persist::write_rows(&scratch, rows, head)
            .expect("scratch dump written");
        let back = persist::read_dump(&scratch)
            .expect("scratch dump read")
            .expect("scratch dump exists");
        assert_eq!(back.warnings, Vec::<String>::new());
        assert_eq!(back.bans, dump.bans);
        // As JSON text a float may move by one unit in the last place
        // (serde_json without `float_roundtrip`); the history the detector
        // reads from it is what must not change.
        assert_eq!(back.history.is_some(), dump.history.is_some());
        assert_eq!(typed(&back.history), typed(&dump.history));
        assert_eq!(back.journal, dump.journal);
        assert_eq!(back.nets, dump.nets);
    });
}
