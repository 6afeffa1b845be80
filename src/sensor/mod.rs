//! Source: a passive SIP sensor. It watches the PBX's own SIP traffic
//! (requests in, answers out) on the wire instead of asking Asterisk, so it
//! needs nothing from the PBX's configuration. [`capture`] takes the
//! packets off the interface.

pub mod capture;
