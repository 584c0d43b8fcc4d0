//! SMPP egress: the ESME side of sluice toward an SMSC.
//!
//! - [`session`]: sans-IO state machine of one bind (window, sequences, timers).
//! - [`bind`]: the tokio task that drives one session over TCP and reconnects.
//! - [`inbound`]: deliver_sm → receipt / MO events (MO reassembly).
//! - [`parts`]: message → submit_sm bodies (encoding, splitting, concatenation mode).
//! - [`classify`]: what a submit_sm_resp status means (accepted / throttled / temporary /
//!   permanent).
//! - [`config`]: the worker's settings (and their derivation from the gateway config).
//! - [`worker`]: the channel worker: rate, AIMD, retries, outcomes.

pub mod bind;
pub mod classify;
pub mod config;
pub mod inbound;
pub mod parts;
pub mod session;
pub mod worker;
