//! sluice gateway library: configuration, the durable store, scheduling and routing, and
//! the egress channels that build on them (see DESIGN.md §2–§3).

pub mod channel;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod route;
pub mod schedule;
pub mod store;
