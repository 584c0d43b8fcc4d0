//! sluice-loadtest: a fake SMSC / ISMG ([`sim`]) and a load generator ([`load`]).
//!
//! The simulator behaves like real centers (latency, windows, throttling, errors, receipts
//! before responses, disconnects, stalls, MO replies) and counts exactly what it received
//! ([`tally`]), so tests can assert that nothing was lost or duplicated. The load generator
//! drives any SMPP server as an ESME, sluice's HTTP batch API, or Kannel's sendsms, and
//! reports throughput and latency percentiles. [`cli`] has the clap `Args` the `sluice`
//! binary mounts as `sluice sim` / `sluice loadtest`.

pub mod bucket;
pub mod cli;
pub mod config;
pub mod dist;
pub mod load;
pub mod sim;
pub mod tally;

pub use config::{ListenerConfig, Protocol, SimConfig};
pub use sim::{SimHandle, Simulator};
pub use tally::TallySnapshot;
