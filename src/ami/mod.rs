//! Source: the Asterisk Manager Interface. Bytes -> frames (`codec`) ->
//! messages (`message`) -> security events (`security`), over a connection
//! kept alive by `client`.

pub mod client;
pub mod codec;
pub mod message;
pub mod remote_address;
pub mod security;

pub use client::{AmiError, AmiHandle, AmiSettings, Backoff, LinkState, Secret};
pub use codec::{AmiCodec, AmiFrame};
pub use message::AmiMessage;
