//! sluice gateway library.

pub mod channel;
