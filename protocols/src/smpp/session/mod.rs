//! SMPP session state machines, one per role, sans-IO (quinn-proto's shape): PDUs and timer
//! instants go in, PDUs to write and events come out. No sockets, no clock reads, no tokio:
//! the gateway's channels, its SMPP server, the simulator and the load generator drive them
//! from thin I/O loops, and the tests drive two of them against each other in memory.
//!
//! - [`esme`]: the client side (sluice's egress binds to an SMSC).

pub mod esme;
