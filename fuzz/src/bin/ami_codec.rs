//! AMI bytes, split into arbitrary reads, through `AmiCodec` (decode, then
//! decode_eof) and every decoded message through the security-event
//! mapping (remote address parsing included).
//!
//! Shape byte: bits 0-1 pick the codec (with banner, without banner, a
//! 64-byte or a 512-byte cap, so the oversized paths run often), bits 2-7
//! the read sizes.
//!
//! Checked: no panic; the buffer never holds more than the cap after a
//! decode that wants more bytes; a message decoded is the same whatever
//! the read boundaries.

use bytes::BytesMut;
use sipban::ami::security::from_message;
use sipban::ami::{AmiCodec, AmiFrame};
use sipban_fuzz::{reads, shape_and_payload};
use tokio_util::codec::Decoder;

fn codec(kind: u8) -> (AmiCodec, usize) {
    match kind & 3 {
        0 => (AmiCodec::new(), sipban::ami::codec::MAX_MESSAGE),
        1 => (AmiCodec::without_banner(), sipban::ami::codec::MAX_MESSAGE),
        2 => (AmiCodec::with_max(64), 64),
        _ => (AmiCodec::with_max(512), 512),
    }
}

/// Every frame of `input` fed in `parts`, and whether the end was clean.
fn decode(kind: u8, parts: &[&[u8]]) -> (Vec<AmiFrame>, bool) {
    let (mut codec, max) = codec(kind);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(e) => panic!("decode failed: {e}"),
            }
        }
        assert!(buf.len() <= max, "{} bytes buffered, cap {max}", buf.len());
    }
    let clean = loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => out.push(frame),
            Ok(None) => break true,
            Err(e) => {
                let _ = e.to_string();
                break false;
            }
        }
    };
    (out, clean)
}

fn messages(frames: &[AmiFrame]) -> Vec<&AmiFrame> {
    frames
        .iter()
        .filter(|f| matches!(f, AmiFrame::Message(_)))
        .collect()
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((shape, payload)) = shape_and_payload(data) else {
            return;
        };
        let kind = shape & 3;
        let (frames, _) = decode(kind, &reads(payload, shape >> 2));
        for frame in &frames {
            if let AmiFrame::Message(msg) = frame {
                let _ = msg.to_string();
                match from_message(msg) {
                    Ok(Some(event)) => {
                        let _ = (event.kind.reason(), event.kind.to_string());
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
        // One read holding a whole banner longer than the cap takes it as
        // the banner; split reads give up on it at the cap. Both are fine.
        let (_, max) = codec(kind);
        let long_banner = kind != 1
            && payload
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(payload.len())
                >= max;
        if shape >> 2 != 0 && !long_banner {
            let (whole, _) = decode(kind, &[payload]);
            assert_eq!(
                messages(&frames),
                messages(&whole),
                "messages depend on the read boundaries"
            );
        }
    });
}
