//! SMPP session state machines, one per role, sans-IO (quinn-proto's shape): PDUs and timer
//! instants go in, PDUs to write and events come out. No sockets, no clock reads, no tokio:
//! the gateway's channels and its SMPP server drive them from thin I/O loops, and the tests
//! drive them against peers in memory on a manual clock.
//!
//! - [`esme`]: the client side (sluice's egress binds to an SMSC).
//! - [`smsc`]: the message-center side — ESMEs bind to sluice, submit, and take deliver_sm.

pub mod esme;
pub mod smsc;
