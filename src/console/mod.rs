//! The control console (`telnet localhost 4451`): a view of, and commands
//! on, the ban store. It never touches the firewall directly.
//!
//! - [`codec`]: bytes to checked lines (any line end, no control bytes).
//! - [`input`]: lines under the idle and per-line deadlines.
//! - [`registry`]: the session slots; a full console makes room.
//! - [`auth`]: the `[control] secret` login.
//! - [`command`]: lines to typed commands.
//! - [`session`]: one session's loop; [`server`]: the accept loop.
//! - [`exec`], [`list_commands`], [`import`], [`network_block`],
//!   [`whois`]: what commands do.

pub mod auth;
pub mod codec;
pub mod command;
pub mod exec;
pub mod import;
pub mod input;
pub mod list_commands;
pub mod network_block;
pub mod registry;
pub mod server;
pub mod session;
pub mod whois;

pub use command::Command;
pub use exec::execute;
pub use server::{ConsoleContext, PROMPT, serve};
