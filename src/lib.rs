//! sluice gateway library: configuration, the durable store, scheduling and routing.
//! Ingress, channels and receipts build on these (see DESIGN.md §2–§3).

pub mod clock;
pub mod config;
pub mod route;
pub mod schedule;
pub mod store;
