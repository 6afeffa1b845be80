//! Capture files (classic pcap and pcapng) -> timestamped link-layer frames.
//!
//! The sensor replays captures through the same path as live traffic, so a
//! file is just another frame source: [`CaptureReader`] iterates over
//! [`Record`]s (time since the Unix epoch, [`LinkType`], frame bytes), and
//! every error names the file and the packet number (1-based, as Wireshark
//! counts; 0 is the file header).
//!
//! Parsing is the `pcap-file` crate's (2.0, the current stable release).
//! What it does with hostile input, and what this module adds:
//! - It reads through one buffer of fixed size (8 MB, allocated once per
//!   file), never one sized by a length field: a record claiming 4 GiB ends
//!   the file with an error once the buffer is full, nothing bigger is
//!   allocated. Records over [`MAX_RECORD`] (tcpdump's largest snap length)
//!   are refused here before they are copied out.
//! - Its classic-pcap reader rejects a record whose wire length exceeds the
//!   snap length, which is every packet of a capture taken with `-s 96`;
//!   so the raw record is read and checked here instead.
//! - For pcapng it hands back the Enhanced Packet Block timestamp as if it
//!   were nanoseconds, ignoring the interface's `if_tsresol` (fixed only in
//!   its 3.0 pre-releases); the tick count is converted here with the
//!   interface's resolution (default microseconds) and `if_tsoffset`.
//! - It keeps every Interface Description Block of a section: past
//!   [`MAX_INTERFACES`] the file is refused, so that list stays small.
//!
//! An error the reader can step over (a record too large, a bad timestamp,
//! an unknown interface) is yielded and reading goes on; an error inside the
//! file structure ends the iteration, since nothing after it can be trusted.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use ::pcap_file::pcap::PcapReader;
use ::pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use ::pcap_file::pcapng::{Block, PcapNgReader};
use ::pcap_file::{PcapError, TsResolution};

use super::packet::LinkType;

/// Largest frame accepted: 256 KiB, tcpdump's default and maximum snap
/// length. A SIP packet is at most 64 KiB (the largest IP datagram).
pub const MAX_RECORD: usize = 256 * 1024;

/// Most Interface Description Blocks accepted in one pcapng section.
pub const MAX_INTERFACES: usize = 256;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Capture time, since the Unix epoch.
    pub timestamp: Duration,
    /// Link layer the frame starts with.
    pub link: LinkType,
    /// The frame as captured (possibly cut at the snap length).
    pub data: Vec<u8>,
}

/// What went wrong, and where: the file and the packet number.
#[derive(Debug, thiserror::Error)]
pub struct CaptureError {
    /// The file (or the name given for a reader).
    pub path: String,
    /// 1-based number of the packet record; 0 for the file header.
    pub packet: u64,
    /// What went wrong.
    #[source]
    pub kind: CaptureErrorKind,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.packet == 0 {
            write!(f, "{}: file header: {}", self.path, self.kind)
        } else {
            write!(f, "{}: packet {}: {}", self.path, self.packet, self.kind)
        }
    }
}

/// The kinds of [`CaptureError`].
#[derive(Debug, thiserror::Error)]
pub enum CaptureErrorKind {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[source] io::Error),
    /// Neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file (magic {0:02x?})")]
    UnknownFormat([u8; 4]),
    /// The file structure is broken; reading stops here.
    #[error("{0}")]
    Format(#[source] PcapError),
    /// A record larger than [`MAX_RECORD`]; skipped.
    #[error("record of {0} bytes is over the {MAX_RECORD}-byte cap")]
    RecordTooLarge(usize),
    /// A timestamp that is not a valid time; skipped.
    #[error("invalid timestamp")]
    BadTimestamp,
    /// A pcapng packet for an interface no block described; skipped.
    #[error("packet of undescribed interface {0}")]
    UnknownInterface(u32),
    /// More than [`MAX_INTERFACES`] interfaces in one section.
    #[error("more than {MAX_INTERFACES} interfaces")]
    TooManyInterfaces,
}

/// The bytes read to tell the format, put back in front of the rest.
type Source<R> = io::Chain<io::Cursor<[u8; 4]>, R>;

/// A pcapng interface: its link type and how its timestamps count.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Raw `if_tsresol`: 10^-n seconds per tick, or 2^-n with the top bit.
    resolution: u8,
    /// `if_tsoffset`, seconds (a signed number on the wire).
    offset: i64,
}

impl Interface {
    fn from_block(block: &InterfaceDescriptionBlock<'_>) -> Interface {
        let mut interface = Interface {
            link: LinkType::from_dlt(u32::from(block.linktype)),
            snaplen: block.snaplen,
            resolution: 6,
            offset: 0,
        };
        for option in &block.options {
            match option {
                InterfaceDescriptionOption::IfTsResol(r) => interface.resolution = *r,
                InterfaceDescriptionOption::IfTsOffset(o) => {
                    interface.offset = i64::from_be_bytes(o.to_be_bytes());
                }
                _ => {}
            }
        }
        interface
    }

    /// The time of a packet `ticks` units after the epoch (plus offset).
    fn timestamp(&self, ticks: u64) -> Option<Duration> {
        const NANOS: u128 = 1_000_000_000;
        let ticks = u128::from(ticks);
        let exponent = u32::from(self.resolution & 0x7F);
        let nanos = if self.resolution & 0x80 == 0 {
            match 9u32.checked_sub(exponent) {
                Some(up) => ticks * 10u128.pow(up),
                None => 10u128
                    .checked_pow(exponent - 9)
                    .map_or(0, |down| ticks / down),
            }
        } else {
            // < 2^94, and the exponent is below 128.
            (ticks * NANOS) >> exponent
        };
        let secs = u64::try_from(nanos / NANOS).ok()?;
        let secs = secs.checked_add_signed(self.offset)?;
        let subsec = u32::try_from(nanos % NANOS).ok()?;
        Some(Duration::new(secs, subsec))
    }
}

enum Format<R: Read> {
    Pcap {
        reader: Box<PcapReader<Source<R>>>,
        link: LinkType,
        resolution: TsResolution,
    },
    PcapNg {
        reader: Box<PcapNgReader<Source<R>>>,
        interfaces: Vec<Interface>,
    },
}

/// Reads the records of a pcap or pcapng file, in file order.
pub struct CaptureReader<R: Read> {
    path: String,
    format: Format<R>,
    /// Number of the last packet record read.
    packet: u64,
    /// The last packet's time: a Simple Packet Block has none of its own.
    last_timestamp: Duration,
    done: bool,
}

impl CaptureReader<File> {
    /// Opens a capture file and reads its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| CaptureError {
            path: name.clone(),
            packet: 0,
            kind: CaptureErrorKind::Io(e),
        })?;
        CaptureReader::new(file, name)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the header of a capture from `reader`; `path` names it in errors.
    pub fn new(mut reader: R, path: impl Into<String>) -> Result<Self, CaptureError> {
        let path = path.into();
        let header_error = |kind| CaptureError {
            path: path.clone(),
            packet: 0,
            kind,
        };
        let mut magic = [0u8; 4];
        reader
            .read_exact(&mut magic)
            .map_err(|e| header_error(CaptureErrorKind::Io(e)))?;
        let source = io::Cursor::new(magic).chain(reader);
        let format = match magic {
            [0xA1, 0xB2, 0xC3, 0xD4]
            | [0xD4, 0xC3, 0xB2, 0xA1]
            | [0xA1, 0xB2, 0x3C, 0x4D]
            | [0x4D, 0x3C, 0xB2, 0xA1] => {
                let reader = PcapReader::new(source)
                    .map_err(|e| header_error(CaptureErrorKind::Format(e)))?;
                let header = reader.header();
                Format::Pcap {
                    link: LinkType::from_dlt(u32::from(header.datalink)),
                    resolution: header.ts_resolution,
                    reader: Box::new(reader),
                }
            }
            [0x0A, 0x0D, 0x0D, 0x0A] => Format::PcapNg {
                reader: Box::new(
                    PcapNgReader::new(source)
                        .map_err(|e| header_error(CaptureErrorKind::Format(e)))?,
                ),
                interfaces: Vec::new(),
            },
            other => return Err(header_error(CaptureErrorKind::UnknownFormat(other))),
        };
        Ok(CaptureReader {
            path,
            format,
            packet: 0,
            last_timestamp: Duration::ZERO,
            done: false,
        })
    }

    fn error(&self, kind: CaptureErrorKind) -> CaptureError {
        CaptureError {
            path: self.path.clone(),
            packet: self.packet,
            kind,
        }
    }

    /// The next record, or why there is none; `Err(fatal)` also ends it.
    fn read_next(&mut self) -> Option<Result<Record, (CaptureErrorKind, bool)>> {
        match &mut self.format {
            Format::Pcap {
                reader,
                link,
                resolution,
            } => {
                let raw = match reader.next_raw_packet()? {
                    Ok(raw) => raw,
                    Err(e) => return Some(Err((CaptureErrorKind::Format(e), true))),
                };
                self.packet += 1;
                let frac_per_sec = match resolution {
                    TsResolution::MicroSecond => 1_000_000,
                    TsResolution::NanoSecond => 1_000_000_000,
                };
                if raw.ts_frac >= frac_per_sec {
                    return Some(Err((CaptureErrorKind::BadTimestamp, false)));
                }
                let nanos = raw.ts_frac * (1_000_000_000 / frac_per_sec);
                let timestamp = Duration::new(u64::from(raw.ts_sec), nanos);
                Some(record(timestamp, *link, &raw.data))
            }
            Format::PcapNg { reader, interfaces } => loop {
                let block = match reader.next_block()? {
                    Ok(block) => block,
                    Err(e) => return Some(Err((CaptureErrorKind::Format(e), true))),
                };
                let (interface_id, ticks, data) = match block {
                    Block::SectionHeader(_) => {
                        interfaces.clear();
                        continue;
                    }
                    Block::InterfaceDescription(idb) => {
                        if interfaces.len() >= MAX_INTERFACES {
                            return Some(Err((CaptureErrorKind::TooManyInterfaces, true)));
                        }
                        interfaces.push(Interface::from_block(&idb));
                        continue;
                    }
                    Block::EnhancedPacket(epb) => {
                        // pcap-file stored the tick count as nanoseconds.
                        let ticks = u64::try_from(epb.timestamp.as_nanos()).ok();
                        (epb.interface_id, ticks, epb.data)
                    }
                    Block::Packet(pb) => (u32::from(pb.interface_id), Some(pb.timestamp), pb.data),
                    Block::SimplePacket(spb) => {
                        self.packet += 1;
                        let Some(interface) = interfaces.first() else {
                            return Some(Err((CaptureErrorKind::UnknownInterface(0), false)));
                        };
                        // The block's data is padded; the packet is the
                        // shorter of its wire length and the snap length.
                        let mut len = usize::try_from(spb.original_len).unwrap_or(usize::MAX);
                        if interface.snaplen > 0 {
                            len = len.min(usize::try_from(interface.snaplen).unwrap_or(usize::MAX));
                        }
                        let data = spb.data.get(..len).unwrap_or(&spb.data);
                        return Some(record(self.last_timestamp, interface.link, data));
                    }
                    _ => continue,
                };
                self.packet += 1;
                let Some(interface) = usize::try_from(interface_id)
                    .ok()
                    .and_then(|i| interfaces.get(i))
                else {
                    return Some(Err((
                        CaptureErrorKind::UnknownInterface(interface_id),
                        false,
                    )));
                };
                let Some(timestamp) = ticks.and_then(|t| interface.timestamp(t)) else {
                    return Some(Err((CaptureErrorKind::BadTimestamp, false)));
                };
                return Some(record(timestamp, interface.link, &data));
            },
        }
    }
}

/// A record of `data`, copied out if it is within [`MAX_RECORD`].
fn record(
    timestamp: Duration,
    link: LinkType,
    data: &[u8],
) -> Result<Record, (CaptureErrorKind, bool)> {
    if data.len() > MAX_RECORD {
        return Err((CaptureErrorKind::RecordTooLarge(data.len()), false));
    }
    Ok(Record {
        timestamp,
        link,
        data: data.to_vec(),
    })
}

impl<R: Read> Iterator for CaptureReader<R> {
    type Item = Result<Record, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            None => {
                self.done = true;
                None
            }
            Some(Ok(record)) => {
                self.last_timestamp = record.timestamp;
                Some(Ok(record))
            }
            Some(Err((kind, fatal))) => {
                if fatal {
                    self.done = true;
                    // The record that failed to parse is the next one.
                    self.packet += 1;
                }
                Some(Err(self.error(kind)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(bytes: &[u8]) -> Vec<Result<Record, CaptureError>> {
        match CaptureReader::new(bytes, "test.pcap") {
            Ok(reader) => reader.take(10_000).collect(),
            Err(e) => vec![Err(e)],
        }
    }

    /// Classic pcap, little-endian, microseconds, Ethernet, snaplen 96.
    fn pcap_header(magic: [u8; 4]) -> Vec<u8> {
        let mut out = magic.to_vec();
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&96u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out
    }

    fn pcap_record(out: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8], orig_len: u32) {
        let incl = u32::try_from(data.len()).expect("small");
        for v in [sec, frac, incl, orig_len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(data);
    }

    const LE_MICROS: [u8; 4] = [0xD4, 0xC3, 0xB2, 0xA1];

    #[test]
    fn classic_pcap_records() {
        let mut file = pcap_header(LE_MICROS);
        pcap_record(&mut file, 1_796_156_316, 292_026, b"frame one", 9);
        // Cut at the snap length: the wire length is larger (tcpdump -s 96).
        pcap_record(&mut file, 1_796_156_317, 5, &[7; 96], 1500);
        let records: Vec<Record> = read_all(&file)
            .into_iter()
            .map(|r| r.expect("record"))
            .collect();
        assert_eq!(records.len(), 2);
        let first = records.first().expect("first");
        assert_eq!(first.timestamp, Duration::new(1_796_156_316, 292_026_000));
        assert_eq!(first.link, LinkType::Ethernet);
        assert_eq!(first.data, b"frame one");
        assert_eq!(records.get(1).map(|r| r.data.len()), Some(96));
    }

    #[test]
    fn nanosecond_big_endian_pcap() {
        let mut file = vec![0xA1, 0xB2, 0x3C, 0x4D, 0, 2, 0, 4];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_be_bytes());
        file.extend_from_slice(&113u32.to_be_bytes());
        for v in [10u32, 999_999_999, 3, 3] {
            file.extend_from_slice(&v.to_be_bytes());
        }
        file.extend_from_slice(b"abc");
        let records = read_all(&file);
        let record = records
            .first()
            .and_then(|r| r.as_ref().ok())
            .expect("record");
        assert_eq!(record.timestamp, Duration::new(10, 999_999_999));
        assert_eq!(record.link, LinkType::LinuxSll);
    }

    #[test]
    fn skippable_errors_do_not_end_the_file() {
        let mut file = pcap_header(LE_MICROS);
        pcap_record(&mut file, 1, 0, &vec![0; MAX_RECORD + 1], 300_000);
        pcap_record(&mut file, 2, 1_000_000, b"bad micros", 10);
        pcap_record(&mut file, 3, 0, b"fine", 4);
        let results = read_all(&file);
        assert_eq!(results.len(), 3);
        let err = results
            .first()
            .and_then(|r| r.as_ref().err())
            .expect("too large");
        assert!(matches!(err.kind, CaptureErrorKind::RecordTooLarge(n) if n == MAX_RECORD + 1));
        assert_eq!(err.packet, 1);
        let err = results
            .get(1)
            .and_then(|r| r.as_ref().err())
            .expect("timestamp");
        assert!(matches!(err.kind, CaptureErrorKind::BadTimestamp));
        assert_eq!(err.to_string(), "test.pcap: packet 2: invalid timestamp");
        assert_eq!(
            results
                .get(2)
                .and_then(|r| r.as_ref().ok())
                .map(|r| r.data.as_slice()),
            Some(&b"fine"[..])
        );
    }

    #[test]
    fn broken_structure_ends_with_one_error() {
        let mut file = pcap_header(LE_MICROS);
        pcap_record(&mut file, 1, 0, b"whole", 5);
        let mut hostile = file.clone();
        // A length field claiming 4 GiB: an error, no 4 GiB buffer.
        for v in [2u32, 0, u32::MAX, u32::MAX] {
            hostile.extend_from_slice(&v.to_le_bytes());
        }
        hostile.extend_from_slice(&[0; 100]);
        // A record cut short by the end of the file.
        let mut cut = file.clone();
        pcap_record(&mut cut, 2, 0, b"cut short", 9);
        cut.truncate(cut.len() - 3);
        for bytes in [hostile, cut] {
            let results = read_all(&bytes);
            assert_eq!(results.len(), 2);
            assert!(results.first().is_some_and(Result::is_ok));
            let err = results
                .get(1)
                .and_then(|r| r.as_ref().err())
                .expect("error");
            assert!(matches!(err.kind, CaptureErrorKind::Format(_)), "{err}");
            assert_eq!(err.packet, 2);
            assert!(
                err.to_string().starts_with("test.pcap: packet 2: "),
                "{err}"
            );
        }
    }

    #[test]
    fn not_a_capture() {
        let err = read_all(b"GIF89a....").into_iter().next().expect("one");
        let err = err.expect_err("not a capture");
        assert!(matches!(err.kind, CaptureErrorKind::UnknownFormat(_)));
        assert!(
            err.to_string().starts_with("test.pcap: file header: "),
            "{err}"
        );
        let err = CaptureReader::new(&b"\xd4\xc3"[..], "x")
            .err()
            .expect("short");
        assert!(matches!(err.kind, CaptureErrorKind::Io(_)));
        assert!(CaptureReader::open("/nonexistent/x.pcap").is_err());
    }

    // pcapng by hand, little-endian.
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = u32::try_from(body.len() + 12).expect("small");
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&len.to_le_bytes());
    }

    fn section(out: &mut Vec<u8>) {
        let mut body = vec![0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0];
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(out, 0x0A0D_0D0A, &body);
    }

    fn interface(out: &mut Vec<u8>, dlt: u16, snaplen: u32, options: &[(u16, &[u8])]) {
        let mut body = dlt.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&snaplen.to_le_bytes());
        if !options.is_empty() {
            for (code, value) in options {
                body.extend_from_slice(&code.to_le_bytes());
                let len = u16::try_from(value.len()).expect("small");
                body.extend_from_slice(&len.to_le_bytes());
                body.extend_from_slice(value);
                while !body.len().is_multiple_of(4) {
                    body.push(0);
                }
            }
            body.extend_from_slice(&[0; 4]);
        }
        block(out, 1, &body);
    }

    fn enhanced(out: &mut Vec<u8>, interface: u32, ticks: u64, data: &[u8]) {
        let mut body = interface.to_le_bytes().to_vec();
        let high = u32::try_from(ticks >> 32).expect("high");
        let low = u32::try_from(ticks & 0xFFFF_FFFF).expect("low");
        let len = u32::try_from(data.len()).expect("small");
        for v in [high, low, len, len] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.extend_from_slice(data);
        block(out, 6, &body);
    }

    fn ok_records(bytes: &[u8]) -> Vec<Record> {
        read_all(bytes)
            .into_iter()
            .map(|r| r.expect("record"))
            .collect()
    }

    #[test]
    fn pcapng_timestamps_follow_the_interface_resolution() {
        let mut file = Vec::new();
        section(&mut file);
        interface(&mut file, 1, 0, &[]); // default: microseconds
        interface(&mut file, 101, 0, &[(9, &[9])]); // nanoseconds
        interface(
            &mut file,
            276,
            0,
            &[(9, &[0x80 | 10]), (14, &100u64.to_le_bytes())],
        );
        interface(&mut file, 147, 0, &[]);
        enhanced(&mut file, 0, 1_796_156_316_292_026, b"a");
        enhanced(&mut file, 1, 1_796_156_316_292_026_123, b"b");
        enhanced(&mut file, 2, 1024 * 5 + 512, b"c");
        enhanced(&mut file, 3, 0, b"d");
        let records = ok_records(&file);
        let got: Vec<(Duration, LinkType)> =
            records.iter().map(|r| (r.timestamp, r.link)).collect();
        assert_eq!(
            got,
            vec![
                (
                    Duration::new(1_796_156_316, 292_026_000),
                    LinkType::Ethernet
                ),
                (Duration::new(1_796_156_316, 292_026_123), LinkType::RawIp),
                (Duration::new(105, 500_000_000), LinkType::LinuxSll2),
                (Duration::ZERO, LinkType::Other(147)),
            ]
        );
    }

    #[test]
    fn pcapng_simple_packets_and_sections() {
        let mut file = Vec::new();
        section(&mut file);
        interface(&mut file, 1, 0, &[]);
        enhanced(&mut file, 0, 7_000_000, b"epb");
        let mut spb = 5u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"simple"); // wire length 5: "simpl"
        block(&mut file, 3, &spb);
        enhanced(&mut file, 4, 0, b"no such interface");
        block(&mut file, 0x0BAD, b"unknown block");
        // A new section forgets the interfaces of the last one.
        section(&mut file);
        enhanced(&mut file, 0, 0, b"stale interface");
        interface(&mut file, 101, 0, &[]);
        enhanced(&mut file, 0, 0, b"raw");
        let results = read_all(&file);
        assert_eq!(results.len(), 5);
        let ok = |i: usize| {
            results
                .get(i)
                .and_then(|r| r.as_ref().ok())
                .expect("record")
        };
        assert_eq!(ok(0).data, b"epb");
        assert_eq!(ok(1).data, b"simpl");
        assert_eq!(
            ok(1).timestamp,
            Duration::from_secs(7),
            "SPB takes the last time"
        );
        for (i, packet) in [(2, 3), (3, 4)] {
            let err = results
                .get(i)
                .and_then(|r| r.as_ref().err())
                .expect("error");
            assert!(
                matches!(err.kind, CaptureErrorKind::UnknownInterface(_)),
                "{err}"
            );
            assert_eq!(err.packet, packet);
        }
        assert_eq!(ok(4).link, LinkType::RawIp);
    }

    #[test]
    fn pcapng_interface_flood_is_refused() {
        let mut file = Vec::new();
        section(&mut file);
        for _ in 0..MAX_INTERFACES + 10 {
            interface(&mut file, 1, 0, &[]);
        }
        enhanced(&mut file, 0, 0, b"late");
        let results = read_all(&file);
        assert_eq!(results.len(), 1);
        let err = results
            .first()
            .and_then(|r| r.as_ref().err())
            .expect("error");
        assert!(matches!(err.kind, CaptureErrorKind::TooManyInterfaces));
    }

    #[test]
    fn interface_timestamp_extremes() {
        let mut i = Interface {
            link: LinkType::Ethernet,
            snaplen: 0,
            resolution: 127,
            offset: 0,
        };
        assert_eq!(i.timestamp(u64::MAX), Some(Duration::ZERO));
        i.resolution = 0xFF;
        assert_eq!(i.timestamp(u64::MAX), Some(Duration::ZERO));
        i.resolution = 0;
        assert_eq!(i.timestamp(u64::MAX), Some(Duration::from_secs(u64::MAX)));
        i.offset = 1;
        assert_eq!(i.timestamp(u64::MAX), None);
        i.offset = -5;
        assert_eq!(i.timestamp(3), None);
    }

    proptest! {
        #[test]
        fn arbitrary_pcap_bodies_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut file = pcap_header(LE_MICROS);
            file.extend_from_slice(&tail);
            for record in read_all(&file).into_iter().flatten() {
                prop_assert!(record.data.len() <= MAX_RECORD);
            }
        }

        #[test]
        fn arbitrary_pcapng_bodies_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400), dlt in any::<u16>()) {
            let mut file = Vec::new();
            section(&mut file);
            interface(&mut file, dlt, 0, &[]);
            file.extend_from_slice(&tail);
            let _ = read_all(&file);
        }

        #[test]
        fn pcapng_blocks_of_arbitrary_bodies_never_panic(kind in 0u32..8, body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut file = Vec::new();
            section(&mut file);
            interface(&mut file, 1, 0, &[]);
            block(&mut file, kind, &body);
            enhanced(&mut file, 0, 1, b"after");
            let _ = read_all(&file);
        }

        #[test]
        fn arbitrary_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_all(&bytes);
        }
    }
}
