//! Source: a passive SIP sensor. It watches the PBX's own SIP traffic
//! (requests in, answers out) on the wire instead of asking Asterisk, so it
//! sees who knocks before any authentication, and keeps watching when the
//! AMI link is down. Frames from the interface ([`capture`]) or a capture
//! file ([`pcap_file`]) -> UDP/TCP packets ([`packet`]) -> SIP messages,
//! one per UDP datagram or cut out of a reassembled TCP stream
//! ([`reassembly`], by [`framing`]'s message boundaries) -> the few fields
//! that matter ([`sip`]) -> events for the policy ([`signals`]).

pub mod capture;
pub mod framing;
pub mod live;
pub mod packet;
pub mod pcap_file;
pub mod pipeline;
pub mod reassembly;
pub mod signals;
pub mod sip;
