//! Emergency stop and pause switches, around the store ops that do the work (`store::stop`).
//!
//! - [`sweep`]: the background task that sweeps tag stops to the end in big commits,
//!   resumes unfinished sweeps after a restart, and retires stops whose hold ended.
//! - [`pause`]: the operators' per-channel and per-account pause switches: durable in the
//!   store, live in one watch per channel for dispatch.
//!
//! The HTTP side lives in ingress (`ingress::cancel` for accounts, `ingress::operator` for
//! operators); dispatch reads only the store's stop epoch and its channel's pause watch.

pub mod pause;
pub mod sweep;

pub use pause::Pauses;
pub use sweep::{SweepConfig, Sweeper};
