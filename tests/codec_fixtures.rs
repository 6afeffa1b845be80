//! The AMI codec on real Asterisk 20 captures: whole, and split into random
//! chunks (1 byte up), must yield exactly the same frames.

mod support;

use bytes::BytesMut;
use sipban::ami::codec::{AmiCodec, AmiFrame, decode_all};
use sipban::ami::security;
use sipban::event::EventKind;
use tokio_util::codec::Decoder;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ami");

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ami"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 13, "all captures present");
    out
}

/// Deterministic pseudo-random chunk sizes (xorshift), so a failure replays.
struct Chunks(u64);

impl Chunks {
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}

fn decode_chunked(bytes: &[u8], seed: u64, max_chunk: usize) -> Vec<AmiFrame> {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rng = Chunks(seed);
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rng.next(max_chunk).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
        out.push(frame);
    }
    out
}

fn security_events(frames: &[AmiFrame]) -> Vec<sipban::event::SecurityEvent> {
    frames
        .iter()
        .filter_map(|f| match f {
            AmiFrame::Message(m) => security::from_message(m).expect("every captured event parses"),
            _ => None,
        })
        .collect()
}

#[test]
fn every_capture_decodes_the_same_whole_and_in_chunks() {
    for (name, bytes) in fixtures() {
        let whole = decode_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            whole.first(),
            Some(&AmiFrame::Banner("Asterisk Call Manager/9.0.0".into())),
            "{name}"
        );
        assert!(
            !whole
                .iter()
                .any(|f| matches!(f, AmiFrame::Oversized { .. })),
            "{name}"
        );
        for (seed, max) in [(1, 1), (7, 3), (42, 17), (99, 256), (12345, 8192)] {
            let chunked = decode_chunked(&bytes, seed, max);
            assert_eq!(chunked, whole, "{name}: chunks up to {max} (seed {seed})");
        }
        // Bare-LF line endings decode to the same messages.
        let lf = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
        assert_eq!(decode_all(lf.as_bytes()).unwrap(), whole, "{name} with LF");
    }
}

#[test]
fn captures_hold_the_documented_events() {
    let all: std::collections::HashMap<_, _> = fixtures()
        .into_iter()
        .map(|(n, b)| (n, security_events(&decode_all(&b).unwrap())))
        .collect();
    // mixed-doc-range: 99 security events from the documented hosts.
    let mixed = &all["mixed-doc-range.ami"];
    assert_eq!(mixed.len(), 99);
    for ip in [
        "203.0.113.11",
        "203.0.113.12",
        "203.0.113.13",
        "203.0.113.14",
        "203.0.113.50",
        "2001:db8:113::11",
    ] {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        assert!(
            mixed.iter().any(|e| e.source == ip),
            "{ip} in mixed capture"
        );
    }
    // The office phone only ever sends ChallengeSent / SuccessfulAuth.
    let office = &all["office-legit.ami"];
    assert!(!office.is_empty());
    assert!(
        office
            .iter()
            .all(|e| matches!(e.kind, EventKind::ChallengeSent | EventKind::SuccessfulAuth))
    );
    // PJSIP never reports InvalidPassword; chan_sip does.
    assert!(
        !all["a-pjsip-wrong-password.ami"]
            .iter()
            .any(|e| e.kind == EventKind::InvalidPassword)
    );
    assert!(
        all["a-pjsip-wrong-password.ami"]
            .iter()
            .any(|e| e.kind == EventKind::ChallengeResponseFailed)
    );
    assert!(
        all["e1-chansip-wrong-password.ami"]
            .iter()
            .any(|e| e.kind == EventKind::InvalidPassword && e.service == "SIP")
    );
    // IPv6 sources without brackets.
    assert!(all["f-pjsip-ipv6.ami"].iter().any(|e| e.source.is_ipv6()));
    assert!(
        all["h-pjsip-failed-acl.ami"]
            .iter()
            .any(|e| e.kind == EventKind::FailedAcl)
    );
    // AMI's own security events, with pings mixed in.
    let ami = &all["i-ami-misc-watched-by-sipban.ami"];
    assert!(
        ami.iter()
            .any(|e| e.service == "AMI" && e.kind == EventKind::InvalidPassword)
    );
    assert!(ami.iter().any(|e| e.kind == EventKind::RequestBadFormat));
}

#[test]
fn ping_replies_and_login_reply_are_messages_not_events() {
    let bytes = std::fs::read(format!("{FIXTURES}/i-ami-misc-watched-by-sipban.ami")).unwrap();
    let frames = decode_all(&bytes).unwrap();
    let pongs = frames
        .iter()
        .filter(|f| matches!(f, AmiFrame::Message(m) if m.get("Ping") == Some("Pong")))
        .count();
    assert!(pongs > 0);
    let AmiFrame::Message(login) = &frames[1] else {
        panic!("login reply expected")
    };
    assert_eq!(login.get("Message"), Some("Authentication accepted"));
}

/// The original SIPban loses events when a message straddles its 8 KiB
/// reads; every one of a 10k-event burst must come out here.
#[test]
fn ten_thousand_event_burst_in_8k_reads_loses_nothing() {
    let mut stream = b"Asterisk Call Manager/9.0.0\r\n".to_vec();
    for i in 0..10_000u32 {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        stream.extend_from_slice(
            support::security_event("InvalidAccountID", "PJSIP", &i.to_string(), &ip).as_bytes(),
        );
    }
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::new();
    let mut events = 0;
    for chunk in stream.chunks(8192) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            if let AmiFrame::Message(m) = frame {
                security::from_message(&m).unwrap().unwrap();
                events += 1;
            }
        }
    }
    assert_eq!(events, 10_000);
}
