//! SMPP egress: the ESME side of sluice toward an SMSC.
//!
//! - [`session`]: sans-IO state machine of one bind (window, sequences, timers).

pub mod session;
