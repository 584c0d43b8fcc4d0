//! sluice gateway library: configuration, the durable store, scheduling and routing, and on
//! top of them egress channels, ingress, receipts and metrics (see docs/ARCHITECTURE.md).

pub mod bearer;
pub mod campaign_cmd;
pub mod channel;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod dispatch;
pub mod ingress;
pub mod metrics;
pub mod receipt;
pub mod route;
pub mod rules;
pub mod schedule;
pub mod serve;
pub mod status;
pub mod stop;
pub mod store;
pub mod tls;
