//! The control console (`telnet localhost 4451`): a view of, and commands
//! on, the ban store. It never touches the firewall directly.

pub mod command;
pub mod server;

pub use command::Command;
pub use server::{ConsoleContext, PROMPT, serve};
