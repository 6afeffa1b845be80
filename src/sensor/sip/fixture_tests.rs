//! Real messages: `tests/fixtures/sip/messages/*.sip` are UDP payloads and
//! reassembled TCP stream bytes, byte-exact, taken from the captures of a
//! real Asterisk 20 under SIPVicious and real phones (shared fixtures
//! `s1`..`s8`; see their README). Each is summed up in one line of the
//! fields read, so a changed field shows as a changed line.

use std::fmt::Write;

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/sip/messages/",
                $name,
                ".sip"
            )),
        )
    };
}

/// Every fixture, by file name.
pub(super) const FIXTURES: [(&str, &[u8]); 28] = [
    fixture!("svmap-options-v4"),
    fixture!("svmap-options-v6"),
    fixture!("pjsip-401-options-v4"),
    fixture!("pjsip-401-options-v6"),
    fixture!("chansip-404-options"),
    fixture!("svwar-register"),
    fixture!("svwar-invite-sdp"),
    fixture!("svwar-ack"),
    fixture!("svwar-options"),
    fixture!("svcrack-register"),
    fixture!("svcrack-register-auth"),
    fixture!("pjsip-401-register"),
    fixture!("svcrack-register-auth-v6"),
    fixture!("yealink-register"),
    fixture!("yealink-register-auth"),
    fixture!("pjsip-200-register"),
    fixture!("pjsip-200-options"),
    fixture!("keepalive-udp"),
    fixture!("pytest-register-chansip"),
    fixture!("chansip-401-register"),
    fixture!("pytest-register-auth-chansip"),
    fixture!("chansip-403-register"),
    fixture!("grandstream-register-tcp"),
    fixture!("grandstream-two-registers-tcp"),
    fixture!("grandstream-two-registers-tcp-v6"),
    fixture!("grandstream-invite-sdp-tcp"),
    fixture!("grandstream-ack-tcp"),
    fixture!("keepalive-tcp"),
];

fn opt(t: Option<SipText<'_>>) -> String {
    t.map_or("-".into(), |t| t.to_string())
}

/// One line of everything read from a message.
pub(super) fn summary(m: &Message<'_>) -> String {
    let mut s = String::new();
    match m.start {
        Start::Request { method, uri } => {
            let _ = write!(s, "{method} {} user={}", uri.raw, opt(uri.user));
        }
        Start::Response { status, reason } => {
            let _ = write!(s, "{status} {reason}");
        }
    }
    for (name, a) in [("from", m.from()), ("to", m.to()), ("contact", m.contact())] {
        let _ = match a {
            Some(a) => write!(
                s,
                " | {name} {:?} {} tag={}",
                a.display_name.map(|d| d.to_string()),
                a.uri.raw,
                opt(a.tag)
            ),
            None => write!(s, " | {name} -"),
        };
    }
    let _ = write!(s, " | call-id {}", opt(m.call_id));
    let _ = match m.cseq {
        Some(c) => write!(s, " | cseq {} {}", c.seq, c.method),
        None => write!(s, " | cseq -"),
    };
    let _ = match m.via() {
        Some(v) => write!(
            s,
            " | via {:?} {} {:?} {}",
            v.transport,
            opt(v.host),
            v.port,
            opt(v.branch)
        ),
        None => write!(s, " | via -"),
    };
    let _ = write!(
        s,
        " | ua {} | server {} | length {:?} | {:?}",
        opt(m.user_agent),
        opt(m.server),
        m.content_length,
        m.framing
    );
    s
}

fn get(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, b)| b)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn parsed(name: &str) -> Message<'static> {
    parse(get(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_reads_as_expected() {
    let want: [(&str, &str); 26] = [
        (
            "svmap-options-v4",
            "OPTIONS sip:100@203.0.113.1 user=100 | from Some(\"sipvicious\") sip:100@1.1.1.1 tag=6362303037313031313363340133333732313634313637 | to Some(\"sipvicious\") sip:100@1.1.1.1 tag=- | contact None sip:100@127.0.0.1:5060 tag=- | call-id 92600361164538893881115 | cseq 1 OPTIONS | via Udp 127.0.0.1 Some(5060) z9hG4bK-1620776056 | ua friendly-scanner | server - | length Some(0) | Complete { len: 403 }",
        ),
        (
            "svmap-options-v6",
            "OPTIONS sip:100@[2001:db8:113::1] user=100 | from Some(\"sipvicious\") sip:100@[2001:db8:113::1] tag=32303031646238313133313133633401343239353736393030 | to Some(\"sipvicious\") sip:100@[2001:db8:113::1] tag=- | contact None sip:100@127.0.0.1:5060 tag=- | call-id 263807624749111705108370 | cseq 1 OPTIONS | via Udp 127.0.0.1 Some(5060) z9hG4bK-4189794612 | ua friendly-scanner | server - | length Some(0) | Complete { len: 434 }",
        ),
        (
            "pjsip-401-options-v4",
            "401 Unauthorized | from Some(\"sipvicious\") sip:100@1.1.1.1 tag=6362303037313031313363340133333732313634313637 | to Some(\"sipvicious\") sip:100@1.1.1.1 tag=z9hG4bK-1620776056 | contact - | call-id 92600361164538893881115 | cseq 1 OPTIONS | via Udp 127.0.0.1 Some(5060) z9hG4bK-1620776056 | ua - | server Asterisk PBX 20.20.1 | length Some(0) | Complete { len: 515 }",
        ),
        (
            "pjsip-401-options-v6",
            "401 Unauthorized | from Some(\"sipvicious\") sip:100@[2001:db8:113::1] tag=32303031646238313133313133633401343239353736393030 | to Some(\"sipvicious\") sip:100@[2001:db8:113::1] tag=z9hG4bK-4189794612 | contact - | call-id 263807624749111705108370 | cseq 1 OPTIONS | via Udp 127.0.0.1 Some(5060) z9hG4bK-4189794612 | ua - | server Asterisk PBX 20.20.1 | length Some(0) | Complete { len: 544 }",
        ),
        (
            "chansip-404-options",
            "404 Not Found | from Some(\"sipvicious\") sip:100@1.1.1.1 tag=6362303037313031313363650133323431393635343536 | to Some(\"sipvicious\") sip:100@1.1.1.1 tag=as5854fb25 | contact - | call-id 130384433109872100240393 | cseq 1 OPTIONS | via Udp 127.0.0.1 Some(5060) z9hG4bK-2830189873 | ua - | server Asterisk PBX 20.20.1 (chan_sip) | length Some(0) | Complete { len: 512 }",
        ),
        (
            "svwar-register",
            "REGISTER sip:203.0.113.1 user=- | from Some(\"3386206594\") sip:3386206594@203.0.113.1 tag=3333383632303635393401333330383638353434 | to Some(\"3386206594\") sip:3386206594@203.0.113.1 tag=- | contact None sip:3386206594@203.0.113.1 tag=- | call-id 3216877251 | cseq 1 REGISTER | via Udp 203.0.113.11 Some(5060) z9hG4bK-3387809286 | ua friendly-scanner | server - | length Some(0) | Complete { len: 411 }",
        ),
        (
            "svwar-invite-sdp",
            "INVITE sip:1514724476@203.0.113.1 user=1514724476 | from Some(\"1514724476\") sip:1514724476@203.0.113.1 tag=313531343732343437360133303733313137383639 | to Some(\"1514724476\") sip:1514724476@203.0.113.1 tag=- | contact None sip:1514724476@203.0.113.1 tag=- | call-id 2327178509 | cseq 1 INVITE | via Udp 203.0.113.11 Some(5060) z9hG4bK-2006408661 | ua friendly-scanner | server - | length Some(167) | Complete { len: 620 }",
        ),
        (
            "svwar-ack",
            "ACK sip:1514724476@203.0.113.1 user=1514724476 | from Some(\"1514724476\") sip:1514724476@203.0.113.1 tag=313531343732343437360133303733313137383639 | to Some(\"1514724476\") sip:1514724476@203.0.113.1 tag=z9hG4bK-2006408661 | contact - | call-id 2327178509 | cseq 1 ACK | via Udp 203.0.113.11 Some(5060) z9hG4bK-2006408661 | ua friendly-scanner | server - | length Some(0) | Complete { len: 376 }",
        ),
        (
            "svwar-options",
            "OPTIONS sip:2199182957@203.0.113.1 user=2199182957 | from Some(\"2199182957\") sip:2199182957@203.0.113.1 tag=323139393138323935370131333232303836393630 | to Some(\"2199182957\") sip:2199182957@203.0.113.1 tag=- | contact None sip:2199182957@203.0.113.1 tag=- | call-id 1528853281 | cseq 1 OPTIONS | via Udp 203.0.113.11 Some(5060) z9hG4bK-689732565 | ua friendly-scanner | server - | length Some(0) | Complete { len: 421 }",
        ),
        (
            "svcrack-register",
            "REGISTER sip:203.0.113.1 user=- | from Some(\"1002\") sip:1002@203.0.113.1 tag=3206210844 | to Some(\"1002\") sip:1002@203.0.113.1 tag=- | contact None sip:1002@203.0.113.1 tag=- | call-id 4160856734 | cseq 1 REGISTER | via Udp 203.0.113.12 Some(5060) z9hG4bK-4016999674 | ua friendly-scanner | server - | length Some(0) | Complete { len: 353 }",
        ),
        (
            "svcrack-register-auth",
            "REGISTER sip:203.0.113.1 user=- | from Some(\"1002\") sip:1002@203.0.113.1 tag=313030323a313030320132393734393232373236 | to Some(\"1002\") sip:1002@203.0.113.1 tag=- | contact None sip:1002@203.0.113.1 tag=- | call-id 4160856734 | cseq 2 REGISTER | via Udp 203.0.113.12 Some(5060) z9hG4bK-3352849841 | ua friendly-scanner | server - | length Some(0) | Complete { len: 660 }",
        ),
        (
            "pjsip-401-register",
            "401 Unauthorized | from Some(\"1002\") sip:1002@203.0.113.1 tag=313030323a313030320132393734393232373236 | to Some(\"1002\") sip:1002@203.0.113.1 tag=z9hG4bK-3352849841 | contact - | call-id 4160856734 | cseq 2 REGISTER | via Udp 203.0.113.12 Some(5060) z9hG4bK-3352849841 | ua - | server Asterisk PBX 20.20.1 | length Some(0) | Complete { len: 498 }",
        ),
        (
            "svcrack-register-auth-v6",
            "REGISTER sip:[2001:db8:113::1] user=- | from Some(\"1002\") sip:1002@[2001:db8:113::1] tag=313030323a313030320132383234323135393836 | to Some(\"1002\") sip:1002@[2001:db8:113::1] tag=- | contact None sip:1002@[2001:db8:113::1] tag=- | call-id 2773807679 | cseq 2 REGISTER | via Udp 2001:db8:113::11 Some(5060) z9hG4bK-233790401 | ua friendly-scanner | server - | length Some(0) | Complete { len: 695 }",
        ),
        (
            "yealink-register",
            "REGISTER sip:203.0.113.1:5060 user=- | from None sip:1001@203.0.113.1 tag=dffe8f0c | to None sip:1001@203.0.113.1 tag=- | contact None sip:1001@203.0.113.50:5060;transport=udp tag=- | call-id f4952dba4032e2cd@203.0.113.50 | cseq 1 REGISTER | via Udp 203.0.113.50 Some(5060) z9hG4bK5f6d0868a9 | ua Yealink SIP-T46S 66.86.0.15 | server - | length Some(0) | Complete { len: 381 }",
        ),
        (
            "yealink-register-auth",
            "REGISTER sip:203.0.113.1:5060 user=- | from None sip:1001@203.0.113.1 tag=dffe8f0c | to None sip:1001@203.0.113.1 tag=- | contact None sip:1001@203.0.113.50:5060;transport=udp tag=- | call-id f4952dba4032e2cd@203.0.113.50 | cseq 2 REGISTER | via Udp 203.0.113.50 Some(5060) z9hG4bK6545f954bd | ua Yealink SIP-T46S 66.86.0.15 | server - | length Some(0) | Complete { len: 639 }",
        ),
        (
            "pjsip-200-register",
            "200 OK | from None sip:1001@203.0.113.1 tag=dffe8f0c | to None sip:1001@203.0.113.1 tag=z9hG4bK6545f954bd | contact None sip:1001@203.0.113.50:5060 tag=- | call-id f4952dba4032e2cd@203.0.113.50 | cseq 2 REGISTER | via Udp 203.0.113.50 Some(5060) z9hG4bK6545f954bd | ua - | server Asterisk PBX 20.20.1 | length Some(0) | Complete { len: 413 }",
        ),
        (
            "pjsip-200-options",
            "200 OK | from None sip:1001@203.0.113.1 tag=f66d16b8 | to None sip:1001@203.0.113.1 tag=z9hG4bKe917526f4a | contact - | call-id 7787e501051074b2@203.0.113.50 | cseq 2 OPTIONS | via Udp 203.0.113.50 Some(5060) z9hG4bKe917526f4a | ua - | server Asterisk PBX 20.20.1 | length Some(0) | Complete { len: 512 }",
        ),
        (
            "pytest-register-chansip",
            "REGISTER sip:203.0.113.1:5070 user=- | from None sip:2001@203.0.113.1 tag=be42c291 | to None sip:2001@203.0.113.1 tag=- | contact None sip:2001@203.0.113.12:55729;transport=udp tag=- | call-id 79ab60d4d341701e@203.0.113.12 | cseq 1 REGISTER | via Udp 203.0.113.12 Some(55729) z9hG4bK5a1336d34c | ua pytest-sipreg/1.0 | server - | length Some(0) | Complete { len: 373 }",
        ),
        (
            "chansip-401-register",
            "401 Unauthorized | from None sip:2001@203.0.113.1 tag=be42c291 | to None sip:2001@203.0.113.1 tag=as0220ae6c | contact - | call-id 79ab60d4d341701e@203.0.113.12 | cseq 1 REGISTER | via Udp 203.0.113.12 Some(55729) z9hG4bK5a1336d34c | ua - | server Asterisk PBX 20.20.1 (chan_sip) | length Some(0) | Complete { len: 524 }",
        ),
        (
            "pytest-register-auth-chansip",
            "REGISTER sip:203.0.113.1:5070 user=- | from None sip:2001@203.0.113.1 tag=be42c291 | to None sip:2001@203.0.113.1 tag=- | contact None sip:2001@203.0.113.12:55729;transport=udp tag=- | call-id 79ab60d4d341701e@203.0.113.12 | cseq 2 REGISTER | via Udp 203.0.113.12 Some(55729) z9hG4bK356702c40e | ua pytest-sipreg/1.0 | server - | length Some(0) | Complete { len: 531 }",
        ),
        (
            "chansip-403-register",
            "403 Forbidden | from None sip:2001@203.0.113.1 tag=be42c291 | to None sip:2001@203.0.113.1 tag=as0220ae6c | contact - | call-id 79ab60d4d341701e@203.0.113.12 | cseq 2 REGISTER | via Udp 203.0.113.12 Some(55729) z9hG4bK356702c40e | ua - | server Asterisk PBX 20.20.1 (chan_sip) | length Some(0) | Complete { len: 445 }",
        ),
        (
            "grandstream-register-tcp",
            "REGISTER sip:203.0.113.1:5060 user=- | from None sip:1001@203.0.113.1 tag=c8f4c3aa | to None sip:1001@203.0.113.1 tag=- | contact None sip:1001@203.0.113.14:41824;transport=tcp tag=- | call-id 11d05284809d6c8a@203.0.113.14 | cseq 1 REGISTER | via Tcp 203.0.113.14 Some(41824) z9hG4bK10903a714a | ua Grandstream GXP2170 1.0.11.6 | server - | length Some(0) | Complete { len: 384 }",
        ),
        (
            "grandstream-two-registers-tcp",
            "REGISTER sip:203.0.113.1:5060 user=- | from None sip:1002@203.0.113.1 tag=cf9a5063 | to None sip:1002@203.0.113.1 tag=- | contact None sip:1002@203.0.113.14:41824;transport=tcp tag=- | call-id 5d49774ce2de7d9e@203.0.113.14 | cseq 1 REGISTER | via Tcp 203.0.113.14 Some(41824) z9hG4bKdcd3f376d1 | ua Grandstream GXP2170 1.0.11.6 | server - | length Some(0) | Complete { len: 384 }",
        ),
        (
            "grandstream-two-registers-tcp-v6",
            "REGISTER sip:[2001:db8:113::1]:5060 user=- | from None sip:1002@[2001:db8:113::1] tag=4579f359 | to None sip:1002@[2001:db8:113::1] tag=- | contact None sip:1002@[2001:db8:113::14]:37196;transport=tcp tag=- | call-id f3bf70b33683114c@2001:db8:113::14 | cseq 1 REGISTER | via Tcp 2001:db8:113::14 Some(37196) z9hG4bKb65310edc0 | ua Grandstream GXP2170 1.0.11.6 | server - | length Some(0) | Complete { len: 418 }",
        ),
        (
            "grandstream-invite-sdp-tcp",
            "INVITE sip:600@203.0.113.1:5060 user=600 | from None sip:1001@203.0.113.1 tag=817b3cfa | to None sip:600@203.0.113.1 tag=- | contact None sip:1001@203.0.113.14:41824;transport=tcp tag=- | call-id f87d3a947c24e05@203.0.113.14 | cseq 1 INVITE | via Tcp 203.0.113.14 Some(41824) z9hG4bKda6f9e5c21 | ua Grandstream GXP2170 1.0.11.6 | server - | length Some(118) | Complete { len: 520 }",
        ),
        (
            "grandstream-ack-tcp",
            "ACK sip:600@203.0.113.1:5060 user=600 | from None sip:1001@203.0.113.1 tag=817b3cfa | to None sip:600@203.0.113.1 tag=z9hG4bKda6f9e5c21 | contact - | call-id f87d3a947c24e05@203.0.113.14 | cseq 1 ACK | via Tcp 203.0.113.14 Some(41824) z9hG4bKda6f9e5c21 | ua Grandstream GXP2170 1.0.11.6 | server - | length Some(0) | Complete { len: 333 }",
        ),
    ];
    let mut failed = Vec::new();
    for (name, line) in want {
        let got = summary(&parsed(name));
        if got != line {
            failed.push(format!("{name}:\n  want {line}\n  got  {got}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // Every fixture but the keepalives is in the table.
    let keepalives = ["keepalive-udp", "keepalive-tcp"];
    for (name, _) in FIXTURES {
        assert!(
            keepalives.contains(&name) || want.iter().any(|(n, _)| *n == name),
            "{name} is not checked"
        );
    }
}

#[test]
fn keepalives_are_their_own_answer() {
    assert_eq!(
        parse(get("keepalive-udp")),
        Err(ParseError::Keepalive { len: 4 })
    );
    assert_eq!(
        parse(get("keepalive-tcp")),
        Err(ParseError::Keepalive { len: 4 })
    );
}

/// Cuts a stream into messages as a TCP reader would: the summaries of
/// each, and what was left over.
fn split_stream(mut stream: &[u8]) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    loop {
        match parse(stream) {
            Ok(m) => match m.framing {
                Framing::Complete { len } => {
                    out.push(summary(&m));
                    stream = stream.get(len..).unwrap_or_default();
                }
                _ => return (out, stream.len()),
            },
            Err(ParseError::Keepalive { len }) => {
                out.push("keepalive".into());
                stream = stream.get(len..).unwrap_or_default();
            }
            Err(ParseError::Empty) => return (out, 0),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn two_messages_in_one_segment_split_at_the_content_length() {
    let (msgs, left) = split_stream(get("grandstream-two-registers-tcp"));
    assert_eq!(left, 0);
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].contains("call-id 5d49774ce2de7d9e@203.0.113.14"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].contains("call-id 3d0bb6c9dbced5a1@203.0.113.14 | cseq 1 REGISTER"),
        "{}",
        msgs[1]
    );
    assert!(
        msgs[1].contains("from None sip:7777@203.0.113.1 tag=b19aeeaf"),
        "{}",
        msgs[1]
    );
    let (msgs, left) = split_stream(get("grandstream-two-registers-tcp-v6"));
    assert_eq!((msgs.len(), left), (2, 0));
    assert!(
        msgs[1].contains("call-id eb482e6675da4c4e@2001:db8:113::14"),
        "{}",
        msgs[1]
    );
}

#[test]
fn a_stream_of_fixtures_and_keepalives_splits_back_into_the_messages() {
    let names = [
        "grandstream-register-tcp",
        "keepalive-tcp",
        "grandstream-invite-sdp-tcp",
        "grandstream-ack-tcp",
        "keepalive-tcp",
        "grandstream-two-registers-tcp",
        "keepalive-tcp",
    ];
    let stream: Vec<u8> = names.iter().flat_map(|n| get(n).iter().copied()).collect();
    let (msgs, left) = split_stream(&stream);
    assert_eq!(left, 0);
    let kinds: Vec<&str> = msgs
        .iter()
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    // CRLFs before a start line belong to that message (RFC 3261 §7.5);
    // only CRLFs with nothing after them are a keepalive of their own.
    assert_eq!(
        kinds,
        [
            "REGISTER",
            "INVITE",
            "ACK",
            "REGISTER",
            "REGISTER",
            "keepalive"
        ]
    );
}

#[test]
fn a_message_split_across_segments_waits_for_the_rest() {
    // s8: the INVITE's head in one segment, its SDP in the next.
    let invite = get("grandstream-invite-sdp-tcp");
    let head = invite.len() - 118;
    let m = parse(&invite[..head]).unwrap();
    assert_eq!(m.framing, Framing::BodyIncomplete { missing: 118 });
    assert_eq!(
        m.call_id,
        Some(SipText::new(b"f87d3a947c24e05@203.0.113.14"))
    );
    // s8: a REGISTER cut inside `Call-ID` (201 bytes in the first segment).
    let register = get("grandstream-register-tcp");
    let m = parse(&register[..201]).unwrap();
    assert_eq!((m.framing, m.call_id), (Framing::HeadIncomplete, None));
    // Every cut before the end is incomplete, never a message of its own.
    for (name, bytes) in FIXTURES {
        let Ok(whole) = parse(bytes) else { continue };
        let Framing::Complete { len } = whole.framing else {
            panic!("{name}: {:?}", whole.framing)
        };
        for cut in 0..len {
            if let Ok(m) = parse(&bytes[..cut]) {
                assert!(
                    !matches!(m.framing, Framing::Complete { .. }),
                    "{name} cut at {cut}: {:?}",
                    m.framing
                );
            }
        }
    }
}

#[test]
fn users_of_every_shape() {
    let m = parsed("svmap-options-v6");
    assert_eq!(m.uri_user(), Some(SipText::new(b"100")));
    assert_eq!(
        m.request_uri().and_then(|u| u.host),
        Some(SipText::new(b"2001:db8:113::1"))
    );
    assert_eq!(m.from_user(), Some(SipText::new(b"100")));
    assert_eq!(m.to_user(), Some(SipText::new(b"100")));
    // A REGISTER's Request-URI has no user: the account is in From/To.
    let m = parsed("yealink-register");
    assert_eq!(m.uri_user(), None);
    assert_eq!(m.from_user(), Some(SipText::new(b"1001")));
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.status(), None);
    let m = parsed("chansip-403-register");
    assert_eq!((m.status(), m.method()), (Some(403), None));
    assert_eq!(m.cseq.map(|c| c.method), Some(Method::Register));
}
