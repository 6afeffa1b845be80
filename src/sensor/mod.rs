//! Source: SIP traffic seen passively, next to [`ami`](crate::ami). Where
//! the AMI reports what Asterisk decided, the sensor reads the SIP messages
//! themselves (requests from scanners and phones, the PBX's answers), so
//! that attacks show even where Asterisk raises no event. [`sip`] reads the
//! fields of one message, tolerantly and without copying.

pub mod sip;
