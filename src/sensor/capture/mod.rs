//! Live capture for the sensor: the kernel keeps only SIP packets (a
//! classic BPF program, [`bpf`]) on an `AF_PACKET` socket ([`socket`]) and
//! hands each one over as a [`Frame`] starting at its IP header.
//!
//! No C library at build time: the socket, the filter and the counters are
//! plain syscalls through `libc`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sipban::sensor::capture::{Capture, Interface, PortMatch};
//! let ports: Vec<PortMatch> = ["udp/5060", "tcp/5060-5061"]
//!     .iter()
//!     .map(|p| p.parse())
//!     .collect::<Result<_, _>>()?;
//! let mut capture = Capture::open(&Interface::parse("eth0"), &ports)?;
//! loop {
//!     let frame = capture.recv().await?;
//!     println!("{} bytes {:?} {}", frame.data.len(), frame.direction, frame.ethertype);
//! }
//! # }
//! ```

pub mod bpf;
mod frame;
mod interface;
pub mod socket;
mod sys;

pub use bpf::{FilterError, PortMatch, PortMatchError, Transport};
pub use frame::{Direction, EtherType, FRAME_MAX, Frame};
pub use interface::Interface;
pub use socket::{Capture, CaptureError, CaptureOptions, DEFAULT_RECEIVE_BUFFER, Stats};
