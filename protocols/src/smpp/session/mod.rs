//! Sans-IO SMPP session state machines (quinn-proto shape: `handle_*` in, `poll_*` out, the
//! clock passed in as `now`).
//!
//! - [`smsc`]: the message-center side — ESMEs bind to us, submit, and take deliver_sm.

pub mod smsc;
