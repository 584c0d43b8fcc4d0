//! How messages enter sluice.
//!
//! - [`message`]: the wire shape of one message and its validation.
//! - [`batch`]: reading a JSON / NDJSON body into validated messages.
//! - `smpp_server`: ESMEs binding to sluice (a later issue; not built yet).

pub mod batch;
pub mod message;
