//! The sensor's packet layer against the real captures in
//! tests/fixtures/sip/ (Asterisk 20 under SIPVicious; see its README.md):
//! every frame decodes, the per-source counts are the ones each
//! `.meta.txt` states, and TCP reassembly yields every SIP message the
//! captures hold, including the ones split across segments and the ones
//! sharing a segment.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use sipban::sensor::packet::{TcpSegment, Transport, decode};
use sipban::sensor::pcap_file::CaptureReader;
use sipban::sensor::reassembly::{FlowKey, Reassembler, Stats};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip")
}

fn pcaps() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures())
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".pcap").map(str::to_owned))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "fixtures missing: {names:?}");
    names
}

/// One decoded packet, owned.
struct Seen {
    timestamp: Duration,
    key: FlowKey,
    frame_len: usize,
    tcp: Option<TcpSegment>,
    payload: Vec<u8>,
}

/// Every packet of a fixture; any read or decode error fails the test.
fn load(name: &str) -> Vec<Seen> {
    let path = fixtures().join(format!("{name}.pcap"));
    let reader = CaptureReader::open(&path).expect("open fixture");
    let mut seen = Vec::new();
    for (i, record) in reader.enumerate() {
        let record = record.unwrap_or_else(|e| panic!("{e}"));
        let packet = decode(record.link, &record.data)
            .unwrap_or_else(|e| panic!("{name}: packet {}: {e}", i + 1));
        seen.push(Seen {
            timestamp: record.timestamp,
            key: FlowKey::of(&packet),
            frame_len: record.data.len(),
            tcp: match packet.transport {
                Transport::Tcp(segment) => Some(segment),
                Transport::Udp => None,
            },
            payload: packet.payload.to_vec(),
        });
    }
    seen
}

/// What a `.meta.txt` says about one source.
#[derive(Debug, Default)]
struct Source {
    packets: usize,
    bytes: usize,
    messages: usize,
    /// "req METHOD[@port]" and "resp CODE METHOD[@port]" -> count.
    counts: BTreeMap<String, usize>,
}

/// A message the meta file lists in its TCP section.
#[derive(Debug)]
enum TcpEvent {
    Spanning {
        at: String,
        flow: FlowKey,
        start_line: String,
    },
    TwoInOne {
        at: String,
        flow: FlowKey,
    },
}

#[derive(Debug, Default)]
struct Meta {
    captured: usize,
    sip_messages: usize,
    /// (address, is TCP) -> source.
    sources: BTreeMap<(IpAddr, bool), Source>,
    tcp_events: Vec<TcpEvent>,
}

fn number_before(text: &str, word: &str) -> usize {
    let head = text.split(word).next().expect("word");
    let n = head.split_whitespace().last().expect("number");
    n.parse()
        .unwrap_or_else(|_| panic!("no number before {word:?} in {text:?}"))
}

fn parse_flow(text: &str) -> FlowKey {
    let end = |side: &str| {
        let (addr, port) = side.rsplit_once(':').expect("addr:port");
        SocketAddr::new(addr.parse().expect("address"), port.parse().expect("port"))
    };
    let (src, dst) = text.split_once("->").expect("flow");
    FlowKey {
        src: end(src),
        dst: end(dst),
    }
}

fn parse_meta(name: &str) -> Meta {
    let text = fs::read_to_string(fixtures().join(format!("{name}.meta.txt"))).expect("meta");
    let mut meta = Meta::default();
    let mut current: Option<(IpAddr, bool)> = None;
    let mut mode = "";
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with("packets captured") {
            meta.captured = number_before(trimmed, "packets captured");
        } else if trimmed.starts_with("pcap ") {
            meta.sip_messages = number_before(trimmed, "SIP messages");
        } else if let Some(rest) = trimmed.strip_prefix("== source ") {
            let (addr, rest) = rest.split_once(" (").expect("source line");
            let (proto, rest) = rest.split_once("):").expect("proto");
            let key = (addr.parse().expect("address"), proto.starts_with("tcp"));
            let source = Source {
                packets: number_before(rest, "packets"),
                bytes: number_before(rest, "bytes"),
                messages: number_before(rest, "SIP messages"),
                counts: BTreeMap::new(),
            };
            meta.sources.insert(key, source);
            current = Some(key);
            mode = "";
        } else if trimmed.starts_with("requests sent by source") {
            mode = "req";
        } else if trimmed.starts_with("responses PBX sent") {
            mode = "resp";
        } else if let Some((n, what)) = trimmed.split_once("  ").filter(|_| !mode.is_empty()) {
            match (n.parse::<usize>(), current) {
                (Ok(n), Some(key)) => {
                    let source = meta.sources.get_mut(&key).expect("current source");
                    source.counts.insert(format!("{mode} {}", what.trim()), n);
                }
                _ => mode = "",
            }
        } else if trimmed.contains(" message reassembled from 2 segments: ") {
            let (head, start_line) = trimmed.split_once(" message reassembled").expect("line");
            let start_line = start_line.split_once(": ").expect("start").1.to_owned();
            let (at, flow) = head.split_once(' ').expect("at flow");
            meta.tcp_events.push(TcpEvent::Spanning {
                at: at.to_owned(),
                flow: parse_flow(flow),
                start_line,
            });
        } else if trimmed.ends_with(" one segment completed 2 messages") {
            let mut words = trimmed.split(' ');
            let at = words.next().expect("at").to_owned();
            let flow = parse_flow(words.next().expect("flow"));
            meta.tcp_events.push(TcpEvent::TwoInOne { at, flow });
        } else if !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
            mode = "";
        }
    }
    assert!(!meta.sources.is_empty(), "{name}: no sources in meta");
    meta
}

fn at(timestamp: Duration) -> String {
    format!("{}.{:06}", timestamp.as_secs(), timestamp.subsec_micros())
}

/// A SIP message as the sensor will see it.
struct Message {
    at: String,
    flow: FlowKey,
    tcp: bool,
    bytes: Bytes,
    /// Began in an earlier segment than the one that completed it.
    spanned: bool,
    /// Messages the completing segment completed.
    batch: usize,
}

/// Every SIP message of a capture: whole UDP datagrams (keepalives left
/// out) and the messages cut from the reassembled TCP streams.
fn messages(packets: &[Seen]) -> (Vec<Message>, Stats) {
    let mut reassembler = Reassembler::default();
    let mut out = Vec::new();
    for p in packets {
        let Some(segment) = p.tcp else {
            if p.payload.iter().any(|&b| b != b'\r' && b != b'\n') {
                let bytes = Bytes::copy_from_slice(&p.payload);
                out.push(Message {
                    at: at(p.timestamp),
                    flow: p.key,
                    tcp: false,
                    bytes,
                    spanned: false,
                    batch: 1,
                });
            }
            continue;
        };
        let carried = reassembler.flow_buffered(&p.key).unwrap_or(0) > 0;
        let done = reassembler.push(p.timestamp, p.key, segment, &p.payload);
        let batch = done.len();
        for (i, bytes) in done.into_iter().enumerate() {
            let spanned = i == 0 && carried;
            out.push(Message {
                at: at(p.timestamp),
                flow: p.key,
                tcp: true,
                bytes,
                spanned,
                batch,
            });
        }
    }
    (out, reassembler.stats())
}

fn start_line(message: &[u8]) -> String {
    let line = message.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned()
}

fn cseq_method(message: &[u8]) -> String {
    let line = message
        .split(|&b| b == b'\n')
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case(b"cseq:"))
        .expect("CSeq header");
    let value = String::from_utf8_lossy(&line[5..]);
    value
        .split_whitespace()
        .nth(1)
        .expect("CSeq method")
        .to_owned()
}

const PBX: [&str; 2] = ["203.0.113.1", "2001:db8:113::1"];

fn is_pbx(addr: IpAddr) -> bool {
    PBX.iter().any(|p| p.parse::<IpAddr>().ok() == Some(addr))
}

/// The meta file's key for a message: requests from the source by method,
/// responses to it by status and CSeq method; `@port` when not 5060.
fn count_key(m: &Message) -> ((IpAddr, bool), String) {
    let line = start_line(&m.bytes);
    let from_pbx = is_pbx(m.flow.src.ip());
    let (source, pbx_port) = if from_pbx {
        (m.flow.dst, m.flow.src)
    } else {
        (m.flow.src, m.flow.dst)
    };
    let port = match pbx_port.port() {
        5060 => String::new(),
        other => format!("@{other}"),
    };
    let key = if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let code = rest.split(' ').next().expect("status");
        format!("resp {code} {}{port}", cseq_method(&m.bytes))
    } else {
        let method = line.split(' ').next().expect("method");
        format!("req {method}{port}")
    };
    ((source.ip(), m.tcp), key)
}

#[test]
fn every_fixture_decodes_without_errors() {
    for name in pcaps() {
        let packets = load(&name);
        let meta = parse_meta(&name);
        assert_eq!(packets.len(), meta.captured, "{name}");
        assert!(packets.iter().all(|p| p.frame_len > 0));
    }
}

#[test]
fn packet_counts_per_source_match_the_meta_files() {
    let mut checked = Vec::new();
    for name in pcaps() {
        let meta = parse_meta(&name);
        let mut got: BTreeMap<(IpAddr, bool), (usize, usize)> = BTreeMap::new();
        for p in load(&name) {
            let source = if is_pbx(p.key.src.ip()) {
                p.key.dst.ip()
            } else {
                p.key.src.ip()
            };
            let entry = got.entry((source, p.tcp.is_some())).or_default();
            entry.0 += 1;
            entry.1 += p.frame_len;
        }
        let want: BTreeMap<(IpAddr, bool), (usize, usize)> = meta
            .sources
            .iter()
            .map(|(k, s)| (*k, (s.packets, s.bytes)))
            .collect();
        assert_eq!(got, want, "{name}: (packets, bytes) per (source, tcp)");
        checked.push(name);
    }
    assert!(checked.iter().any(|n| n == "s6-mixed") && checked.iter().any(|n| n == "s8-tcp"));
}

#[test]
fn sip_messages_per_source_match_the_meta_files() {
    for name in pcaps() {
        let meta = parse_meta(&name);
        let (messages, stats) = messages(&load(&name));
        assert_eq!(messages.len(), meta.sip_messages, "{name}: SIP messages");
        assert_eq!(
            (stats.invalid_frames, stats.overflows, stats.gaps),
            (0, 0, 0),
            "{name}"
        );
        let mut got: BTreeMap<(IpAddr, bool), (usize, BTreeMap<String, usize>)> = BTreeMap::new();
        for m in &messages {
            let (source, key) = count_key(m);
            let entry = got.entry(source).or_default();
            entry.0 += 1;
            *entry.1.entry(key).or_default() += 1;
        }
        for (source, want) in &meta.sources {
            assert!(
                !want.counts.is_empty(),
                "{name}: {source:?}: no counts parsed"
            );
            let (count, counts) = got.remove(source).unwrap_or_default();
            assert_eq!(count, want.messages, "{name}: {source:?} messages");
            assert_eq!(
                counts, want.counts,
                "{name}: {source:?} requests and responses"
            );
        }
        assert!(
            got.is_empty(),
            "{name}: messages of sources the meta file does not list: {got:?}"
        );
    }
}

#[test]
fn s8_reassembly_yields_every_listed_message() {
    let meta = parse_meta("s8-tcp");
    let (messages, stats) = messages(&load("s8-tcp"));

    assert_eq!(
        meta.tcp_events.len(),
        8,
        "the meta file lists 6 spanning messages and 2 shared segments"
    );
    for event in &meta.tcp_events {
        match event {
            TcpEvent::Spanning {
                at,
                flow,
                start_line: line,
            } => {
                let found = messages.iter().any(|m| {
                    &m.at == at && m.flow == *flow && m.spanned && &start_line(&m.bytes) == line
                });
                assert!(
                    found,
                    "no message spanning segments at {at} on {flow:?}: {line}"
                );
            }
            TcpEvent::TwoInOne { at, flow } => {
                let batch: Vec<&Message> = messages
                    .iter()
                    .filter(|m| &m.at == at && m.flow == *flow)
                    .collect();
                assert_eq!(batch.len(), 2, "one segment, two messages at {at}");
                assert!(
                    batch
                        .iter()
                        .all(|m| m.batch == 2 && start_line(&m.bytes).starts_with("REGISTER "))
                );
            }
        }
    }
    // The meta file's totals: "6 messages spanning >1 segment",
    // "2 segments completing >1 message".
    assert_eq!(messages.iter().filter(|m| m.spanned).count(), 6);
    assert_eq!(messages.iter().filter(|m| m.batch == 2).count(), 4);

    // The INVITEs with SDP, body sent in a segment of its own.
    let invites: Vec<&Message> = messages
        .iter()
        .filter(|m| m.bytes.starts_with(b"INVITE "))
        .collect();
    assert_eq!(invites.len(), 2, "v4 and v6");
    for invite in invites {
        let text = String::from_utf8_lossy(&invite.bytes);
        let (headers, body) = text.split_once("\r\n\r\n").expect("header end");
        assert!(headers.contains("Content-Type: application/sdp"));
        assert!(
            body.starts_with("v=0\r\n") && body.ends_with("a=rtpmap:0 PCMU/8000\r\n"),
            "{body:?}"
        );
        assert!(headers.contains(&format!("Content-Length: {}", body.len())));
        assert!(invite.spanned);
    }

    // 7 connections, both directions opened by a SYN and closed by a FIN;
    // one CRLFCRLF ping per tcpsip.py connection (the meta file counts two
    // per source: it also counts the segment that only carried the
    // CRLFCRLF ending a header block).
    assert_eq!(stats.flows_opened, 14);
    assert_eq!(stats.flows_closed, 14);
    assert_eq!(stats.keepalives, 2);
    assert_eq!(
        (stats.retransmissions, stats.out_of_order, stats.evictions),
        (0, 0, 0)
    );
}

/// The real client stream of one connection (tcpsip.py over IPv4: messages
/// split inside a header line, at the end of the headers, two in a segment,
/// an INVITE with SDP, a ping), re-cut at every offset: the same messages.
#[test]
fn s8_client_stream_split_at_every_offset() {
    let packets = load("s8-tcp");
    let client: SocketAddr = "203.0.113.14:41824".parse().expect("addr");
    let flow: Vec<&Seen> = packets.iter().filter(|p| p.key.src == client).collect();
    let first = flow.first().and_then(|p| p.tcp).expect("SYN");
    assert!(first.syn);
    let stream: Vec<u8> = flow
        .iter()
        .flat_map(|p| p.payload.iter().copied())
        .collect();
    let (all, _) = messages(&packets);
    let expected: Vec<Bytes> = all
        .into_iter()
        .filter(|m| m.flow.src == client)
        .map(|m| m.bytes)
        .collect();
    assert_eq!(expected.len(), 8);

    let key = FlowKey {
        src: client,
        dst: "203.0.113.1:5060".parse().expect("addr"),
    };
    let data_seq = first.seq.wrapping_add(1);
    let segment = |offset: usize| TcpSegment {
        seq: data_seq.wrapping_add(offset as u32),
        syn: false,
        fin: false,
        rst: false,
    };
    for cut in 1..stream.len() {
        let mut r = Reassembler::default();
        let mut got = r.push(Duration::ZERO, key, first, b"");
        got.extend(r.push(Duration::ZERO, key, segment(0), &stream[..cut]));
        got.extend(r.push(Duration::ZERO, key, segment(cut), &stream[cut..]));
        // And the first part once more, as a retransmission.
        got.extend(r.push(Duration::ZERO, key, segment(0), &stream[..cut]));
        assert_eq!(got, expected, "cut at {cut}");
    }
}
