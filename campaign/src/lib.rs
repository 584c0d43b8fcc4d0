//! sluice-campaign: the campaign service core.
//!
//! Map of the crate:
//! - [`store`]: SQLite file, versioned migrations, bitmap BLOBs.
//! - [`table`] / [`persist`] / [`import`] / [`synth`]: the columnar subscriber table, its
//!   persistence, streaming CSV import and the synthetic-city generator.
//! - [`expr`]: condition language (lexer + Pratt parser + column-scan evaluator).
//! - [`identity`]: organisations, users, roles, API keys, sessions, the `Caller` extractor
//!   and tenant scoping; [`listing`]: paged search of campaigns, activities, tasks, bulk sends.
//! - [`segment`]: customer segments (file, condition, set algebra, accumulated rules).
//! - [`lifecycle`]: campaign → activity → task → bulk-send, the task state machine.
//! - [`approval`]: approval chains (报批 approve / 报备 file) per organisation for campaigns,
//!   activities and tasks, the trail, and the "nothing sends before its chain completes" gate;
//!   [`approval_api`]: its HTTP routes.
//! - [`groups`], [`rules`], [`window`], [`template`]: A/B/control split, contact rules,
//!   time slices and message templates.
//! - [`contact_index`]: the contact history per subscriber in memory, following the
//!   `contacts` and `conversions` tables (the per-candidate contact rules of triggers).
//! - [`dispatch`] / [`launch`]: planning, the `Dispatcher` trait (+ HTTP implementation),
//!   slice execution with persisted cursors (pause/resume/restart).
//! - [`feedback`], [`stats`], [`report`]: receipts, replies, orders; z-test; funnels and
//!   daily / channel reports.
//! - [`signature`] / [`webhook_guard`]: HMAC-SHA256 webhook signatures (signed by the
//!   gateway, checked here) and the middleware that refuses unsigned, forged or stale ones.
//! - [`routing`]: service numbers, per-task extension codes, unsubscribe keywords.
//! - [`manage_api`]: the planner's management endpoints (subscriber import over HTTP,
//!   lists and conflicts, roll-up reports), merged beside [`api`].
//! - [`events`]: subscriber events (`{id, msisdn, type, ts, attrs}`): the durable intake
//!   (dedup by id, per-line errors) and the source seam (HTTP, file replay, later a bus).
//! - [`triggers`]: triggered tasks — matching stored events, windows, cooldown, budget,
//!   control share, contact rules, arbitration between offers, the funnel and the monitor;
//!   [`trigger_api`]: their HTTP routes (`/events`, `/triggers…`), merged beside [`api`].
//! - [`service`]: [`service::Campaigns`], the facade the CLI and [`api`] (axum) call.

pub mod api;
pub mod approval;
pub mod approval_api;
pub mod console;
pub mod contact_index;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod expr;
pub mod feedback;
pub mod fxhash;
pub mod groups;
pub mod identity;
pub mod import;
pub mod inbox;
pub mod launch;
pub mod lifecycle;
pub mod listing;
pub mod manage_api;
pub mod msisdn;
pub mod persist;
pub mod report;
pub mod routing;
pub mod rules;
pub mod segment;
pub mod service;
pub mod signature;
pub mod stats;
pub mod store;
pub mod synth;
pub mod table;
pub mod template;
pub mod trigger_api;
pub mod triggers;
pub mod webhook_guard;
pub mod window;

pub use error::{CampaignError, Result, StoreError};
pub use service::Campaigns;
