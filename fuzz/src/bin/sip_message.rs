//! Arbitrary bytes through the SIP field reader (`sensor::sip::parse`),
//! once as a datagram and once as a stream cut into messages the way a TCP
//! reader would (by `Framing::Complete` lengths and keepalives).
//!
//! The seed corpus is the real fixtures (tests/fixtures/sip/messages).
//!
//! Checked: no panic; every text field lies inside the input; every text
//! shows escaped (no control characters) and within its cap, owned copies
//! too; a complete message reads the same without what follows it; the
//! stream is consumed in steps that each take at least one byte.

use sipban::sensor::sip::{Framing, Message, ParseError, Scheme, SipText, Start, Uri, parse};

fn uri<'a>(u: &Uri<'a>, out: &mut Vec<SipText<'a>>) {
    out.extend([Some(u.raw), u.user, u.host].into_iter().flatten());
    if let Scheme::Other(t) = u.scheme {
        out.push(t);
    }
}

fn texts<'a>(m: &Message<'a>) -> Vec<SipText<'a>> {
    let mut out = Vec::new();
    match m.start {
        Start::Request { uri: u, .. } => uri(&u, &mut out),
        Start::Response { reason, .. } => out.push(reason),
    }
    for a in [m.from(), m.to(), m.contact()].into_iter().flatten() {
        out.extend([a.display_name, a.tag].into_iter().flatten());
        uri(&a.uri, &mut out);
    }
    if let Some(v) = m.via() {
        out.extend([v.host, v.branch].into_iter().flatten());
    }
    out.extend([m.call_id, m.user_agent, m.server].into_iter().flatten());
    out
}

fn check(input: &[u8]) -> Result<Message<'_>, ParseError> {
    let parsed = parse(input);
    let m = match parsed {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return parsed;
        }
    };
    let range = input.as_ptr_range();
    for t in texts(&m) {
        let b = t.as_bytes();
        if !b.is_empty() {
            let r = b.as_ptr_range();
            assert!(
                range.start <= r.start && r.end <= range.end,
                "text outside the input"
            );
        }
        let shown = t.to_string();
        assert!(shown.len() <= SipText::DISPLAY_MAX);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(t.to_sanitized(40).len() <= 40);
    }
    let _ = (
        m.method().map(|m| m.to_string()),
        m.cseq.map(|c| c.method.to_string()),
    );
    if let Framing::Complete { len } = m.framing {
        assert!(len <= input.len());
        assert_eq!(
            parse(&input[..len]),
            Ok(m),
            "the bytes after a message changed it"
        );
    }
    Ok(m)
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = check(data);
        let mut rest = data;
        loop {
            let step = match check(rest) {
                Ok(Message {
                    framing: Framing::Complete { len },
                    ..
                }) => len,
                Err(ParseError::Keepalive { len }) => len,
                _ => break,
            };
            assert!(
                step > 0 && step <= rest.len(),
                "step {step} of {}",
                rest.len()
            );
            rest = &rest[step..];
        }
    });
}
