//! # sipban
//!
//! Bans SIP brute-force attackers the moment Asterisk reports them, as a
//! drop-in replacement for the original SIPban (same config file, console
//! and log format).
//!
//! # Layout
//! Data flows one way, and the modules follow it:
//!
//! - [`ami`]: source. Codec, security-event mapping, the client that keeps
//!   the manager connection alive (login, ping, reconnect).
//! - [`sensor`]: source. SIP traffic read passively; [`sensor::sip`] reads
//!   the fields of one message.
//! - [`event`]: what sources produce: one security event about one address.
//! - [`policy`]: what an event means: never-ban rules (white list,
//!   loopback, the AMI host) first, then the event rules.
//! - [`bans`]: the ban store, its expiry task, the journal and the dump,
//!   restore (with what a crashed run left in the kernel), and when a ban
//!   counts as done (in the kernel and on disk).
//! - [`firewall`]: one backend per firewall type behind one trait, and the
//!   single applier thread that batches changes.
//! - [`console`]: the telnet console, a view of and commands on the bans.
//! - [`daemon`]: wires the above together; [`replay`] runs a capture
//!   through the same pieces with the dry-run firewall.
//! - [`config`], [`logging`], [`clock`]: settings, the original's log line
//!   format, and injectable time; [`cidr`]: network arithmetic shared by the
//!   lists and the firewall; [`atomic_file`]: crash-safe file replacement; [`stats`] counts for the console's report;
//!   [`client`] is the command-line client of the console.

pub mod ami;
pub mod atomic_file;
pub mod bans;
pub mod cidr;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod event;
pub mod firewall;
pub mod logging;
pub mod policy;
pub mod replay;
pub mod sensor;
pub mod stats;

/// Hands memory freed after a burst (a storm, a big batch or dump) back to
/// the system, so the daemon's RSS follows its live bans, not its peak.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0);
    }
}
