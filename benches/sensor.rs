//! SIP sensor throughput on one core, from memory (issue 9's figures): the
//! shared captures (tests/fixtures/sip) replayed through the pipeline
//! (decode, TCP reassembly, SIP fields, signals) until a second has passed,
//! and a synthetic flood of 1M packets from 100k sources (REGISTERs, each
//! answered 401 by the PBX, every source under the request-rate rule).
//! Prints packets/s and MB/s against the goal (> 500k packets/s); asserts
//! only correctness, never speed.
//!
//! `cargo bench --bench sensor` runs the full figures; without `--bench`
//! (under `cargo test --all-targets`) a small smoke pass.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sipban::event::{EventKind, SecurityEvent};
use sipban::sensor::packet::LinkType;
use sipban::sensor::pcap_file::{CaptureReader, Record};
use sipban::sensor::pipeline::Pipeline;
use sipban::sensor::signals::{Direction, SignalConfig};

const GOAL_PPS: f64 = 500_000.0;
const PBX: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn fixtures() -> Vec<Record> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip");
    let mut out = Vec::new();
    for name in [
        "s1-svmap",
        "s2-svwar",
        "s3-svcrack",
        "s4-wrongpass-unknownuser",
        "s5-office",
        "s6-mixed",
        "s8-tcp",
    ] {
        for r in CaptureReader::open(format!("{dir}/{name}.pcap")).expect("fixture") {
            out.push(r.expect("record"));
        }
    }
    out
}

/// An Ethernet/IPv4/UDP frame (checksums left zero: nothing checks them).
fn frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    let udp = (8 + payload.len()) as u16;
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[(udp >> 8) as u8, udp as u8, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// `packets` frames (half REGISTERs, half their 401s) from `sources`
/// sources, one microsecond apart.
fn flood(packets: usize, sources: u32) -> Vec<(Duration, Vec<u8>)> {
    let t0 = Duration::from_secs(1_764_600_000);
    let mut out = Vec::with_capacity(packets);
    for i in 0..packets / 2 {
        let n = i as u32 % sources;
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + n);
        let user = 1000 + (i % 1000);
        let call = format!("{i}@{src}");
        let req = format!(
            "REGISTER sip:{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK-{i}\r\n\
             From: <sip:{user}@{PBX}>;tag={i}\r\nTo: <sip:{user}@{PBX}>\r\nCall-ID: {call}\r\n\
             CSeq: 1 REGISTER\r\nUser-Agent: Yealink SIP-T46S 66.86.0.15\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let ans = format!(
            "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP {src}:5060;branch=z9hG4bK-{i}\r\n\
             From: <sip:{user}@{PBX}>;tag={i}\r\nTo: <sip:{user}@{PBX}>;tag=z9hG4bK-{i}\r\n\
             Call-ID: {call}\r\nCSeq: 1 REGISTER\r\n\
             WWW-Authenticate: Digest realm=\"asterisk\",nonce=\"1764600000/ab\",algorithm=MD5,qop=\"auth\"\r\n\
             Server: Asterisk PBX 20.20.1\r\nContent-Length:  0\r\n\r\n"
        );
        let at = t0 + Duration::from_micros(2 * i as u64);
        out.push((at, frame(src, 5060, PBX, 5060, req.as_bytes())));
        out.push((
            at + Duration::from_micros(1),
            frame(PBX, 5060, src, 5060, ans.as_bytes()),
        ));
    }
    out
}

#[derive(Default)]
struct Figures {
    packets: u64,
    bytes: u64,
    elapsed: Duration,
    events: Vec<SecurityEvent>,
}

fn line(label: &str, f: &Figures) -> String {
    let secs = f.elapsed.as_secs_f64().max(1e-9);
    let pps = f.packets as f64 / secs;
    format!(
        "{label:<52} {:>9} packets in {:.3} s: {:>6.0}k packets/s, {:>6.1} MB/s   goal > 500k packets/s: {}",
        f.packets,
        secs,
        pps / 1000.0,
        f.bytes as f64 / secs / 1e6,
        if pps > GOAL_PPS { "met" } else { "MISSED" }
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    println!(
        "sipban sensor benchmark ({}): the pipeline on one core, frames from memory",
        if full { "full" } else { "smoke" }
    );
    // The real captures, over and over (each pass with a fresh pipeline, as
    // a new capture), for about a second.
    let records = fixtures();
    let budget = if full {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(20)
    };
    let mut f = Figures::default();
    let start = Instant::now();
    while start.elapsed() < budget {
        let mut p = Pipeline::new(SignalConfig::default(), vec![5061]);
        for r in &records {
            p.frame(
                r.timestamp,
                r.link,
                &r.data,
                Direction::Unknown,
                &mut f.events,
            );
            f.packets += 1;
            f.bytes += r.data.len() as u64;
        }
        f.events.clear();
    }
    f.elapsed = start.elapsed();
    println!(
        "{}",
        line(
            &format!("the 7 shared captures ({} packets)", records.len()),
            &f
        )
    );

    let (packets, sources) = if full {
        (1_000_000, 100_000)
    } else {
        (4_000, 400)
    };
    let frames = flood(packets, sources);
    let mut p = Pipeline::new(SignalConfig::default(), vec![5061]);
    let mut f = Figures::default();
    let start = Instant::now();
    for (at, data) in &frames {
        p.frame(
            *at,
            LinkType::Ethernet,
            data,
            Direction::Unknown,
            &mut f.events,
        );
        f.packets += 1;
        f.bytes += data.len() as u64;
    }
    let last = frames.last().map(|(t, _)| *t).unwrap_or_default();
    p.tick(last + p.settle_time(), &mut f.events);
    f.elapsed = start.elapsed();
    println!(
        "{}",
        line(
            &format!("flood: {packets} packets from {sources} sources"),
            &f
        )
    );
    let failures = f
        .events
        .iter()
        .filter(|e| e.kind == EventKind::SipFailure)
        .count();
    let s = p.signal_stats();
    println!(
        "{:<52} {} messages, {} failures reported, {} dialogs not tracked (table of {} full), {} floods",
        "",
        p.stats().messages,
        failures,
        s.untracked,
        SignalConfig::default().max_sources,
        s.floods
    );
    assert_eq!(
        p.stats().messages,
        packets as u64,
        "every flood packet read as SIP"
    );
    assert_eq!(s.floods, 0, "no source was over the request rate");
    assert!(failures > 0, "unanswered challenges become failures");
}
