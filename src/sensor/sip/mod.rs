//! A tolerant, zero-copy reader of the few SIP fields the sensor needs.
//!
//! [`parse`] takes one datagram (or what a stream has buffered) and returns
//! a [`Message`] that borrows it: the start line (method and Request-URI,
//! or status code), the From/To/Contact users and tags, Call-ID, CSeq, the
//! first Via (transport, host, branch), User-Agent and Server, and
//! Content-Length with where the message ends ([`Framing`]) so that a TCP
//! stream can be cut into messages. A CRLF keepalive is its own answer
//! ([`ParseError::Keepalive`]), not a malformed message.
//!
//! Why our own and not a SIP crate: the crates that are maintained (stacks
//! such as rsipstack, rvoip, ezk) parse into owned, allocating types and
//! reject what does not follow the grammar, and rsip has seen no release
//! since 2022. A passive sensor wants the opposite: scanner traffic is
//! malformed on purpose and is exactly what must be read, so every field is
//! looked for on its own and a broken one is `None`, not an error for the
//! whole message; nothing is copied or allocated while parsing, and every
//! scan is bounded ([`MAX_HEAD`], [`MAX_HEADERS`], [`MAX_MESSAGE`]) whatever
//! the bytes. Modelled on httparse: a partial message is a normal answer.
//!
//! What comes off the wire is [`SipText`]: raw bytes that only ever print
//! escaped and capped, so a User-Agent cannot inject log lines or terminal
//! escapes.
//!
//! Layout: `message` (start line, framing, errors), `header` (lines,
//! folding, names), `uri` (URIs and name-addr), `fields` (Via, CSeq,
//! Content-Length), `method`, `text` (wire text and byte helpers).

mod fields;
mod header;
mod message;
mod method;
mod text;
mod uri;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod prop_tests;

pub use fields::{CSeq, Transport, Via};
pub use message::{Framing, Message, ParseError, Start, StartLineError, parse};
pub use method::Method;
pub use text::{Escaped, SipText};
pub use uri::{NameAddr, Scheme, Uri};

/// Cap on the head (start line and headers, up to the empty line): past it
/// without an empty line, [`ParseError::HeadTooLong`]. Real heads are under
/// 1 KiB (the largest captured message, two REGISTERs, is 836 bytes).
pub const MAX_HEAD: usize = 16 * 1024;

/// Cap on header lines scanned: past it, [`ParseError::TooManyHeaders`].
/// Real messages carry about a dozen.
pub const MAX_HEADERS: usize = 128;

/// Cap on one whole message, head and body: a Content-Length that would go
/// past it gives [`Framing::BadLength`]. 64 KiB is also about the largest
/// UDP datagram.
pub const MAX_MESSAGE: usize = 64 * 1024;
