//! The ban journal: every accepted ban (and unban) appended as one JSON
//! line and fsynced in groups, so what was acknowledged survives a kill -9
//! between two dumps. The dump is its compaction: a dump records the first
//! journal generation it does not include, and the older journal files are
//! deleted once that dump is durable.
//!
//! One writer thread owns the file. Records queue without blocking; the
//! thread takes everything queued, writes it, calls `fdatasync` once for
//! the lot (group commit) and then publishes the highest sequence number
//! that is durable. A write that fails (a full disk) is cut back to the last
//! good record, logged (at most once a minute), and the sequence numbers
//! are published anyway: those bans are still in the kernel, and the next
//! dump that succeeds holds them.
//!
//! Files: `<dump>.journal.<generation>` next to the dump. A record is
//! `{"ban":"203.0.113.5","expiry":1763816016,"reason":"Invalid Account","count":1}`
//! or `{"unban":"203.0.113.5"}`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use tokio::sync::watch;

use super::networks::NetBan;
use super::persist::DumpEntry;
use super::persist::read::{bounded, entry_from, net_entry_from};

mod replay;
use crate::clock::UnixTime;
pub use replay::{Replayed, file_of, files, next_generation, replay};

/// A ban as journaled; the reason is the store's shared copy, so a storm
/// of records allocates no reason per ban.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banned {
    pub ip: IpAddr,
    pub expiry: UnixTime,
    pub reason: Arc<str>,
    pub count: u32,
}

impl From<Banned> for DumpEntry {
    fn from(b: Banned) -> DumpEntry {
        DumpEntry {
            ip: b.ip,
            expiry: b.expiry,
            reason: b.reason.to_string(),
            count: b.count,
        }
    }
}

/// One change, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// Banned (or its ban extended) until `expiry`.
    Ban(Banned),
    Unban(IpAddr),
    /// A network banned (or its ban extended) until its expiry.
    BanNet(NetBan),
    UnbanNet(IpNet),
}

impl Record {
    fn line(&self) -> String {
        match self {
            Record::Ban(e) => {
                let reason = serde_json::to_string(&*e.reason).unwrap_or_else(|_| "\"\"".into());
                format!(
                    "{{\"ban\":\"{}\",\"expiry\":{},\"reason\":{reason},\"count\":{}}}\n",
                    e.ip, e.expiry, e.count
                )
            }
            Record::Unban(ip) => format!("{{\"unban\":\"{ip}\"}}\n"),
            Record::BanNet(b) => {
                let reason = serde_json::to_string(&b.reason).unwrap_or_else(|_| "\"\"".into());
                format!(
                    "{{\"ban_net\":\"{}\",\"expiry\":{},\"reason\":{reason},\"count\":{}}}\n",
                    b.net, b.expiry, b.count
                )
            }
            Record::UnbanNet(net) => format!("{{\"unban_net\":\"{net}\"}}\n"),
        }
    }

    fn parse(line: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(ip) = v.get("unban") {
            let ip: IpAddr = ip
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or("\"unban\" is not an IP address")?;
            return Ok(Record::Unban(ip.to_canonical()));
        }
        if let Some(net) = v.get("unban_net") {
            return net
                .as_str()
                .and_then(|s| s.parse::<IpNet>().ok())
                .map(|n| Record::UnbanNet(crate::cidr::normalize(n)))
                .ok_or_else(|| "\"unban_net\" is not a network".to_string());
        }
        let Value::Object(mut map) = v else {
            return Err("not a JSON object".into());
        };
        if let Some(net) = map.remove("ban_net") {
            map.insert("net".into(), net);
            return net_entry_from(&Value::Object(map)).map(Record::BanNet);
        }
        let ip = map.remove("ban").ok_or("neither \"ban\" nor \"unban\"")?;
        map.insert("ip".into(), ip);
        entry_from(Some(&Value::Object(map))).map(|e| {
            Record::Ban(Banned {
                ip: e.ip,
                expiry: e.expiry,
                reason: Arc::from(e.reason),
                count: e.count,
            })
        })
    }
}

enum Msg {
    Record(u64, Record),
    /// Later records go to generation `.0`.
    Rotate(u64),
    /// Delete the files of generations below `.0` (a dump holds them).
    Prune(u64),
}

/// Handle to the writer thread.
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    durable: watch::Receiver<u64>,
    generation: AtomicU64,
}

/// How long a failing disk stays quiet in the log between two reports.
const ERROR_EVERY: Duration = Duration::from_secs(60);

/// Most bytes gathered into one write (one fsync).
const GROUP_BYTES: usize = 1 << 20;

impl Journal {
    /// Starts the writer; records go to generation `generation` of `dump`'s
    /// journal. The file is created at the first record.
    pub fn start(dump: &Path, generation: u64) -> std::io::Result<Journal> {
        let (tx, rx) = mpsc::channel();
        let (durable_tx, durable) = watch::channel(0);
        let writer = Writer {
            dump: dump.to_path_buf(),
            generation,
            file: None,
            good_len: 0,
            failed_batches: 0,
            last_report: None,
            durable: durable_tx,
        };
        std::thread::Builder::new()
            .name("sipban-journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(Journal {
            tx,
            durable,
            generation: AtomicU64::new(generation),
        })
    }

    /// Queues `record` as change number `seq` (numbers must grow).
    pub fn append(&self, seq: u64, record: Record) {
        let _ = self.tx.send(Msg::Record(seq, record));
    }

    /// Starts a new generation and returns its number: call it in the same
    /// critical section that snapshots the state for a dump, then write
    /// that number into the dump.
    pub fn rotate(&self) -> u64 {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.tx.send(Msg::Rotate(g));
        g
    }

    /// A dump holding everything before generation `generation` is durable:
    /// the older files can go.
    pub fn prune(&self, generation: u64) {
        let _ = self.tx.send(Msg::Prune(generation));
    }

    /// Follows the highest durable change number.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }
}

struct Writer {
    dump: PathBuf,
    generation: u64,
    file: Option<File>,
    /// Bytes of the current file known to hold whole records.
    good_len: u64,
    failed_batches: u64,
    last_report: Option<Instant>,
    durable: watch::Sender<u64>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut buf = Vec::new();
        let mut through = 0;
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(seq, record) => {
                        buf.extend_from_slice(record.line().as_bytes());
                        through = through.max(seq);
                    }
                    Msg::Rotate(g) => {
                        self.write_out(&mut buf);
                        self.file = None;
                        self.good_len = 0;
                        self.generation = g;
                    }
                    Msg::Prune(g) => {
                        self.write_out(&mut buf);
                        self.prune(g);
                    }
                }
                if buf.len() < GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            self.write_out(&mut buf);
            // A storm's buffer would keep its peak size for good.
            if buf.capacity() > GROUP_BYTES / 16 {
                buf = Vec::new();
            }
            self.durable.send_if_modified(|d| {
                let moved = through > *d;
                *d = (*d).max(through);
                moved
            });
        }
    }

    /// Appends `buf` and syncs it; on failure cuts the file back to its
    /// last whole record, so a later append never follows a torn line.
    fn write_out(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() {
            return;
        }
        let result = self.append(buf);
        match result {
            Ok(()) => {
                self.good_len += buf.len() as u64;
                if self.failed_batches > 0 {
                    tracing::info!(
                        "JOURNAL => {} written again after {} failed writes",
                        self.path().display(),
                        self.failed_batches
                    );
                    self.failed_batches = 0;
                    self.last_report = None;
                }
            }
            Err(e) => {
                if let Some(f) = &self.file {
                    let _ = f.set_len(self.good_len);
                }
                self.failed_batches += 1;
                if self.last_report.is_none_or(|t| t.elapsed() >= ERROR_EVERY) {
                    self.last_report = Some(Instant::now());
                    tracing::error!(
                        "JOURNAL => cannot write {}: {e}; bans stay in the kernel and go to the next dump that succeeds",
                        self.path().display()
                    );
                }
            }
        }
        buf.clear();
    }

    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let path = self.path();
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.good_len = file.metadata()?.len();
            // The new name itself must survive a crash.
            sync_dir(&path)?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
        file.write_all(buf)?;
        file.sync_data()
    }

    fn path(&self) -> PathBuf {
        file_of(&self.dump, self.generation)
    }

    fn prune(&self, below: u64) {
        for (g, path) in files(&self.dump) {
            if g < below
                && g != self.generation
                && let Err(e) = fs::remove_file(&path)
            {
                tracing::warn!("JOURNAL => cannot remove {}: {e}", path.display());
            }
        }
    }
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// One journal line as replay reads it (public for the fuzzer).
pub fn parse_record(line: &str) -> Result<Record, String> {
    Record::parse(line)
}

/// The journal record of a ban (`reason` as the store holds it).
pub fn ban_record(ip: IpAddr, expiry: UnixTime, reason: Arc<str>, count: u32) -> Record {
    let reason = if reason.len() > super::persist::MAX_REASON {
        Arc::from(bounded(&reason))
    } else {
        reason
    };
    Record::Ban(Banned {
        ip,
        expiry,
        reason,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn wait_durable(j: &Journal, seq: u64) {
        let mut rx = j.durable();
        rx.wait_for(|d| *d >= seq).await.unwrap();
    }

    #[tokio::test]
    async fn records_are_durable_in_order_and_rotation_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("sipban.dump");
        let j = Journal::start(&dump, 1).unwrap();
        j.append(
            1,
            ban_record(ip("192.0.2.1"), 100, "Invalid Account".into(), 1),
        );
        j.append(2, Record::Unban(ip("192.0.2.1")));
        j.append(3, ban_record(ip("2001:db8::1"), 200, "r \"q\"".into(), 2));
        wait_durable(&j, 3).await;
        let r = replay(&dump, 0);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.records[1], Record::Unban(ip("192.0.2.1")));
        let Record::Ban(e) = &r.records[2] else {
            panic!()
        };
        assert_eq!((&*e.reason, e.count), ("r \"q\"", 2));

        let g = j.rotate();
        assert_eq!(g, 2);
        j.append(4, ban_record(ip("192.0.2.9"), 300, "x".into(), 1));
        j.prune(g);
        wait_durable(&j, 4).await;
        // Prune is ordered after the record: wait for the old file to go.
        for _ in 0..100 {
            if files(&dump).len() == 1 {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(files(&dump), vec![(2, file_of(&dump, 2))]);
        let r = replay(&dump, 2);
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.last_generation, 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped_quietly_a_bad_middle_line_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("d");
        let text = "{\"ban\":\"192.0.2.1\",\"expiry\":5,\"reason\":\"r\",\"count\":1}\n\
                    garbage\n\
                    {\"unban\":\"192.0.2.1\"}\n\
                    {\"ban\":\"192.0.2.2\",\"expiry\":5,\"rea";
        fs::write(file_of(&dump, 3), text).unwrap();
        let r = replay(&dump, 0);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.warnings.len(), 1);
        assert!(r.warnings[0].ends_with(".journal.3:2: record \"garbage\" skipped: not JSON: expected value at line 1 column 1"), "{:?}", r.warnings);
        // Older generations than asked for are not read.
        assert!(replay(&dump, 4).records.is_empty());
    }

    proptest! {
        #[test]
        fn record_lines_round_trip(a in any::<[u8; 16]>(), expiry in any::<u64>(), reason in ".{0,300}", count in any::<u32>(), v4 in any::<bool>()) {
            let ip = if v4 { IpAddr::from([a[0], a[1], a[2], a[3]]) } else { IpAddr::from(a).to_canonical() };
            let r = ban_record(ip, expiry, reason.as_str().into(), count);
            let line = r.line();
            prop_assert_eq!(Record::parse(line.trim_end()).unwrap(), r);
        }

        #[test]
        fn parse_never_panics(line in ".{0,200}") {
            let _ = Record::parse(&line);
        }
    }
}
