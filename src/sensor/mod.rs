//! Source: a passive SIP sensor. Frames from a capture file or socket ->
//! UDP/TCP packets (`packet`, `pcap_file`) -> SIP messages, one per UDP
//! datagram or cut out of a reassembled TCP stream (`reassembly`, by
//! `framing`'s message boundaries).

pub mod framing;
pub mod packet;
pub mod pcap_file;
pub mod reassembly;
