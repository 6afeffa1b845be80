//! Bytes to AMI frames and back (tokio-util codec).
//!
//! The stream is one banner line (`Asterisk Call Manager/9.0.0`) followed by
//! messages, each a run of `Key: Value` lines closed by an empty line. CRLF
//! and bare LF are both accepted. A message may arrive split across any number
//! of reads; nothing is decoded until its closing empty line is here, so no
//! partial line is ever thrown away. A message longer than the cap is dropped
//! (reported as [`AmiFrame::Oversized`]) and decoding resumes at the next
//! message boundary.

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use super::message::AmiMessage;

/// Cap on one message, banner included.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AmiFrame {
    /// The first line of a connection.
    Banner(String),
    Message(AmiMessage),
    /// A message over the cap was skipped; `bytes` were discarded.
    Oversized {
        bytes: usize,
    },
}

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("connection closed in the middle of a message ({0} bytes pending)")]
    Truncated(usize),
    #[error("refusing to send a field containing CR or LF: {0:?}")]
    BadField(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug)]
pub struct AmiCodec {
    max: usize,
    expect_banner: bool,
    /// Start of the line currently being scanned, relative to the buffer.
    line_start: usize,
    /// How far the buffer has been searched for '\n'.
    scanned: usize,
    /// Inside an oversized message: bytes dropped so far.
    discarding: Option<usize>,
    /// In discard mode: the start of the current line was already dropped,
    /// so that line cannot be the empty terminator.
    dropped_mid_line: bool,
}

impl Default for AmiCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl AmiCodec {
    pub fn new() -> Self {
        Self::with_max(MAX_MESSAGE)
    }

    /// For a stream that starts directly with messages (no banner).
    pub fn without_banner() -> Self {
        AmiCodec {
            expect_banner: false,
            ..Self::new()
        }
    }

    pub fn with_max(max: usize) -> Self {
        AmiCodec {
            max,
            expect_banner: true,
            line_start: 0,
            scanned: 0,
            discarding: None,
            dropped_mid_line: false,
        }
    }

    fn reset_scan(&mut self) {
        self.line_start = 0;
        self.scanned = 0;
    }

    fn decode_banner(&mut self, buf: &mut BytesMut) -> Option<AmiFrame> {
        let nl = buf.iter().position(|&b| b == b'\n')?;
        let line = buf.split_to(nl + 1);
        self.expect_banner = false;
        let text = String::from_utf8_lossy(&line);
        Some(AmiFrame::Banner(
            text.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }

    /// In discard mode: drop whole lines until an empty one ends the message.
    fn discard(&mut self, buf: &mut BytesMut, dropped: usize) -> Option<AmiFrame> {
        let mut dropped = dropped;
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let empty = !self.dropped_mid_line && (nl == 0 || (nl == 1 && buf[0] == b'\r'));
            buf.advance(nl + 1);
            dropped += nl + 1;
            self.dropped_mid_line = false;
            if empty {
                self.discarding = None;
                self.reset_scan();
                return Some(AmiFrame::Oversized { bytes: dropped });
            }
        }
        // No line end yet. Keep a lone '\r' at a line start: it may be the
        // first half of the terminating CRLF.
        let keep = usize::from(!self.dropped_mid_line && buf.len() == 1 && buf[0] == b'\r');
        let drop = buf.len() - keep;
        if drop > 0 {
            buf.advance(drop);
            dropped += drop;
            self.dropped_mid_line = true;
        }
        self.discarding = Some(dropped);
        None
    }
}

impl Decoder for AmiCodec {
    type Item = AmiFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<AmiFrame>, CodecError> {
        if self.expect_banner {
            match self.decode_banner(buf) {
                Some(frame) => return Ok(Some(frame)),
                None if buf.len() > self.max => {
                    // Not an AMI server; drop what we have and look for messages.
                    self.expect_banner = false;
                    self.discarding = Some(0);
                    self.dropped_mid_line = false;
                }
                None => return Ok(None),
            }
        }
        loop {
            if let Some(dropped) = self.discarding {
                return Ok(self.discard(buf, dropped));
            }
            let Some(rel) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = buf.len();
                if buf.len() > self.max {
                    let partial_line = self.line_start < buf.len();
                    let lone_cr = buf.len() - self.line_start == 1 && buf[buf.len() - 1] == b'\r';
                    let keep = usize::from(lone_cr);
                    let drop = buf.len() - keep;
                    buf.advance(drop);
                    self.reset_scan();
                    self.dropped_mid_line = partial_line && !lone_cr;
                    self.discarding = Some(drop);
                    continue;
                }
                return Ok(None);
            };
            let nl = self.scanned + rel;
            let line = &buf[self.line_start..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                self.line_start = nl + 1;
                self.scanned = nl + 1;
                continue;
            }
            if self.line_start == 0 {
                // Blank line between messages (or a stray one): skip it.
                buf.advance(nl + 1);
                self.reset_scan();
                continue;
            }
            let body_end = self.line_start;
            let raw = buf.split_to(nl + 1);
            self.reset_scan();
            if raw.len() > self.max {
                return Ok(Some(AmiFrame::Oversized { bytes: raw.len() }));
            }
            let body = raw.get(..body_end).unwrap_or_default();
            // The strict check is much faster on the ASCII of real events;
            // anything else is made text the lossy way.
            let text = match std::str::from_utf8(body) {
                Ok(t) => t.to_owned(),
                Err(_) => String::from_utf8_lossy(body).into_owned(),
            };
            return Ok(Some(AmiFrame::Message(AmiMessage::from_text(text))));
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<AmiFrame>, CodecError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if let Some(dropped) = self.discarding.take() {
            buf.clear();
            self.reset_scan();
            return Ok(Some(AmiFrame::Oversized {
                bytes: dropped + buf.len(),
            }));
        }
        let pending = buf.iter().filter(|b| !b.is_ascii_whitespace()).count();
        if pending == 0 {
            buf.clear();
            self.reset_scan();
            return Ok(None);
        }
        let len = buf.len();
        buf.clear();
        self.reset_scan();
        Err(CodecError::Truncated(len))
    }
}

impl Encoder<&AmiMessage> for AmiCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: &AmiMessage, dst: &mut BytesMut) -> Result<(), CodecError> {
        for (k, v) in msg.fields() {
            if [k, v].iter().any(|s| s.contains(['\r', '\n'])) {
                return Err(CodecError::BadField(k.to_string()));
            }
        }
        dst.extend_from_slice(msg.to_string().as_bytes());
        Ok(())
    }
}

/// Decodes a whole capture (banner + messages) in one go, e.g. for `replay`.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<AmiFrame>, CodecError> {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf)? {
        out.push(frame);
    }
    while let Some(frame) = codec.decode_eof(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(codec: &mut AmiCodec, buf: &mut BytesMut, bytes: &[u8], out: &mut Vec<AmiFrame>) {
        buf.extend_from_slice(bytes);
        while let Some(f) = codec.decode(buf).unwrap() {
            out.push(f);
        }
    }

    #[test]
    fn banner_then_messages_crlf_and_lf() {
        let frames = decode_all(
            b"Asterisk Call Manager/9.0.0\r\nResponse: Success\r\n\r\nEvent: A\nX: 1\n\n",
        )
        .unwrap();
        assert_eq!(
            frames[0],
            AmiFrame::Banner("Asterisk Call Manager/9.0.0".into())
        );
        let AmiFrame::Message(m) = &frames[1] else {
            panic!()
        };
        assert_eq!(m.get("Response"), Some("Success"));
        let AmiFrame::Message(m) = &frames[2] else {
            panic!()
        };
        assert_eq!(m.get("X"), Some("1"));
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn oversized_message_is_dropped_and_stream_stays_in_sync() {
        let mut codec = AmiCodec::with_max(100);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        feed(&mut codec, &mut buf, b"banner\r\n", &mut out);
        let mut big = b"Event: Big\r\n".to_vec();
        for i in 0..50 {
            big.extend_from_slice(format!("Field{i}: {}\r\n", "x".repeat(20)).as_bytes());
        }
        big.extend_from_slice(b"\r\nEvent: Small\r\n\r\n");
        for chunk in big.chunks(7) {
            feed(&mut codec, &mut buf, chunk, &mut out);
        }
        assert!(matches!(out[1], AmiFrame::Oversized { .. }), "{out:?}");
        let AmiFrame::Message(m) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(m.get("Event"), Some("Small"));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn oversized_single_line_without_newline() {
        let mut codec = AmiCodec::with_max(64);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        feed(&mut codec, &mut buf, b"banner\n", &mut out);
        feed(&mut codec, &mut buf, &[b'a'; 200], &mut out);
        feed(&mut codec, &mut buf, b"\r\n", &mut out);
        // The long line was not empty, so the message is not over yet.
        assert_eq!(out.len(), 1);
        feed(&mut codec, &mut buf, b"\r\nEvent: Next\r\n\r\n", &mut out);
        assert!(matches!(out[1], AmiFrame::Oversized { .. }));
        assert!(matches!(&out[2], AmiFrame::Message(m) if m.get("Event") == Some("Next")));
    }

    #[test]
    fn eof_mid_message_is_an_error_clean_eof_is_not() {
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&b"banner\r\nEvent: Half\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(CodecError::Truncated(_))
        ));
        let mut buf = BytesMut::from(&b"\r\n"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encoder_refuses_header_injection() {
        let mut codec = AmiCodec::new();
        let mut dst = BytesMut::new();
        let bad = AmiMessage::new().with("Secret", "x\r\nAction: Originate");
        assert!(codec.encode(&bad, &mut dst).is_err());
        assert!(dst.is_empty());
    }
}
