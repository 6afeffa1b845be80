//! Hostile input: arbitrary bytes, SIP-shaped junk, and the real fixtures
//! cut, flipped, shuffled and padded. Nothing may panic, every field must
//! point into the input, every rendering must stay escaped and capped, and
//! junk around a real message must not change what is read from it.

use proptest::prelude::*;

use super::fixture_tests::FIXTURES;
use super::*;

fn uri_texts<'a>(u: &Uri<'a>, out: &mut Vec<SipText<'a>>) {
    out.extend([Some(u.raw), u.user, u.host].into_iter().flatten());
    if let Scheme::Other(t) = u.scheme {
        out.push(t);
    }
}

fn method_texts<'a>(m: Method<'a>, out: &mut Vec<SipText<'a>>) {
    if let Method::Other(t) = m {
        out.push(t);
    }
}

/// Every piece of text a message holds.
fn texts<'a>(m: &Message<'a>) -> Vec<SipText<'a>> {
    let mut out = Vec::new();
    match m.start {
        Start::Request { method, uri } => {
            method_texts(method, &mut out);
            uri_texts(&uri, &mut out);
        }
        Start::Response { reason, .. } => out.push(reason),
    }
    for a in [m.from(), m.to(), m.contact()].into_iter().flatten() {
        out.extend([a.display_name, a.tag].into_iter().flatten());
        uri_texts(&a.uri, &mut out);
    }
    if let Some(c) = m.cseq {
        method_texts(c.method, &mut out);
    }
    if let Some(v) = m.via() {
        out.extend([v.host, v.branch].into_iter().flatten());
        if let Transport::Other(t) = v.transport {
            out.push(t);
        }
    }
    out.extend([m.call_id, m.user_agent, m.server].into_iter().flatten());
    out
}

/// What must hold for any input, whatever `parse` made of it; with
/// `render`, every text is also shown (the slow part in a debug build).
fn check_with(input: &[u8], render: bool) {
    let m = match parse(input) {
        Ok(m) => m,
        Err(e) => {
            // Every error renders, and a keepalive is only ever CR/LF.
            let _ = e.to_string();
            if let ParseError::Keepalive { len } = e {
                assert_eq!(len, input.len());
                assert!(input.iter().all(|&b| b == b'\r' || b == b'\n'));
            }
            return;
        }
    };
    let range = input.as_ptr_range();
    for t in texts(&m) {
        let b = t.as_bytes();
        if !b.is_empty() {
            let r = b.as_ptr_range();
            assert!(
                range.start <= r.start && r.end <= range.end,
                "{t:?} is not in the input"
            );
        }
        if render {
            let shown = t.to_string();
            assert!(
                shown.len() <= SipText::DISPLAY_MAX,
                "{} bytes shown",
                shown.len()
            );
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
            assert!(t.to_sanitized(16).len() <= 16);
            let _ = format!("{t:?}");
        }
    }
    match m.framing {
        Framing::Complete { len } => {
            assert!(len <= input.len() && len <= MAX_MESSAGE);
            // What follows a message changes nothing in it.
            assert_eq!(parse(&input[..len]), Ok(m));
        }
        Framing::BodyIncomplete { missing } => assert!(missing > 0 && missing <= MAX_MESSAGE),
        Framing::HeadIncomplete | Framing::BadLength => {}
    }
    let _ = (
        m.method(),
        m.status(),
        m.uri_user(),
        m.from_user(),
        m.to_user(),
    );
}

fn check(input: &[u8]) {
    check_with(input, true);
}

fn fixture() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(FIXTURES.iter().map(|&(_, b)| b).collect::<Vec<_>>())
}

/// The real fixtures that are messages (not keepalives), first message only.
fn message_fixture() -> impl Strategy<Value = &'static [u8]> {
    let messages: Vec<&'static [u8]> = FIXTURES
        .iter()
        .filter_map(|&(_, b)| match parse(b).ok()?.framing {
            Framing::Complete { len } => b.get(..len),
            _ => None,
        })
        .collect();
    prop::sample::select(messages)
}

/// The start line, the header lines and the body of a fixture message
/// (whose head ends in CRLF CRLF).
fn split_head(msg: &[u8]) -> (&[u8], Vec<&[u8]>, &[u8]) {
    let m = parse(msg).unwrap();
    let Framing::Complete { len } = m.framing else {
        panic!("{:?}", m.framing)
    };
    let head_len = len - m.content_length.unwrap_or(0);
    let mut lines = msg[..head_len - 2].split_inclusive(|&b| b == b'\n');
    let start = lines.next().unwrap_or_default();
    (start, lines.collect(), &msg[head_len..])
}

/// SIP-looking input with junk inside: a start line from a set, header
/// names from the ones read (compact forms, odd case) and random values.
fn sip_shaped() -> impl Strategy<Value = Vec<u8>> {
    let start = prop::sample::select(vec![
        "REGISTER sip:203.0.113.1 SIP/2.0",
        "OPTIONS sip:100@[2001:db8::1] SIP/2.0",
        "INVITE tel:+123;x SIP/2.0",
        "SIP/2.0 401 Unauthorized",
        "SIP/2.0 999 No",
        "FOO \u{1b}[2J SIP/2.0",
        "",
    ]);
    let name = prop::sample::select(vec![
        "Via",
        "v",
        "From",
        "f",
        "TO",
        "t",
        "Call-ID",
        "i",
        "CSeq",
        "Contact",
        "m",
        "Content-Length",
        "l",
        "User-Agent",
        "Server",
        "X-Junk",
        " folded",
    ]);
    let value = prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(b" <>\";:@[]/=,sip:SIP/2.0/UDP tag=branch=0123456789".to_vec()),
            1 => any::<u8>(),
        ],
        0..40,
    );
    let eol = prop::sample::select(vec!["\r\n", "\n", "\r\r\n"]);
    (
        start,
        prop::collection::vec((name, value, eol), 0..16),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(start, headers, close, body)| {
            let mut out = format!("{start}\r\n").into_bytes();
            for (name, value, eol) in headers {
                out.extend_from_slice(name.as_bytes());
                out.push(b':');
                out.extend(value);
                out.extend_from_slice(eol.as_bytes());
            }
            if close {
                out.extend_from_slice(b"\r\n");
            }
            out.extend(body);
            out
        })
}

#[test]
fn every_fixture_cut_at_every_offset_is_safe() {
    for (_, bytes) in FIXTURES {
        // Rendering is checked on every fixture below and by the
        // properties; here the cuts, where a field ends is what changes.
        check(bytes);
        for cut in 0..=bytes.len() {
            check_with(&bytes[..cut], false);
            check_with(&bytes[cut..], false);
        }
    }
}

#[test]
fn huge_inputs_are_bounded() {
    let mut big = FIXTURES[0].1.to_vec();
    big.extend(std::iter::repeat_n(b'x', 4 * MAX_MESSAGE));
    check(&big);
    let lines = "X: y\r\n".repeat(10 * MAX_HEADERS);
    check(format!("SIP/2.0 200 OK\r\n{lines}").as_bytes());
    check(&vec![b'\n'; 4 * MAX_MESSAGE]);
    check(&vec![b' '; 4 * MAX_MESSAGE]);
    let folded = format!(
        "SIP/2.0 200 OK\r\nCall-ID: a{}\r\n\r\n",
        "\r\n b".repeat(MAX_HEAD)
    );
    check(folded.as_bytes());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes);
    }

    #[test]
    fn sip_shaped_junk_never_panics(bytes in sip_shaped()) {
        check(&bytes);
    }

    #[test]
    fn fixtures_with_bytes_flipped_never_panic(
        bytes in fixture(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
    ) {
        let mut bytes = bytes.to_vec();
        for (at, value) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
        }
        check(&bytes);
    }

    #[test]
    fn junk_appended_keeps_the_call_id(
        msg in message_fixture(),
        junk in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let want = parse(msg).unwrap();
        let mut bytes = msg.to_vec();
        bytes.extend(junk);
        check(&bytes);
        let got = parse(&bytes).unwrap();
        prop_assert_eq!(got.call_id, want.call_id);
        prop_assert_eq!(got.framing, want.framing);
    }

    #[test]
    fn headers_shuffled_and_junk_lines_keep_the_fields(
        (msg, order) in message_fixture().prop_flat_map(|msg| {
            let n = split_head(msg).1.len();
            (Just(msg), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
        junk_lines in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 0..60)),
            0..6,
        ),
    ) {
        let want = parse(msg).unwrap();
        let (start, lines, body) = split_head(msg);
        let mut head: Vec<Vec<u8>> = order.iter().map(|&i| lines[i].to_vec()).collect();
        for (at, junk) in junk_lines {
            // A junk line: not a continuation (no leading space) and no line end inside.
            let mut line = b"#".to_vec();
            line.extend(junk.into_iter().filter(|&b| b != b'\r' && b != b'\n'));
            line.extend_from_slice(b"\r\n");
            head.insert(at.index(head.len() + 1), line);
        }
        let mut bytes = start.to_vec();
        bytes.extend(head.concat());
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        check(&bytes);
        let got = parse(&bytes).unwrap();
        prop_assert_eq!(got.call_id, want.call_id);
        prop_assert_eq!(got.cseq, want.cseq);
        prop_assert_eq!(got.via(), want.via());
        prop_assert_eq!(got.from(), want.from());
        prop_assert_eq!(got.user_agent, want.user_agent);
        prop_assert_eq!(got.start, want.start);
    }
}
