//! sluice gateway library.

pub mod ingress;
pub mod metrics;
