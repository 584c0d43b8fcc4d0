//! Public contact rules, applied by the gateway to ALL traffic of the lanes they bind
//! (`[rules] exempt_lanes`; marketing by default), whoever the client is.
//!
//! Operators keep lists keyed by msisdn (blacklist, graylist, do-not-disturb per channel or
//! for every channel), contact caps per channel and overall per period, and quiet hours.
//! Ingress asks [`Rules::check`] for every message of a bound lane and refuses listed or
//! capped recipients per line (`blocked: do_not_disturb/sms`), never storing them; quiet
//! hours defer (placement adds them to the message's quiet windows).
//!
//! - [`model`]: lists, channels, caps, periods, refusals and the one msisdn key.
//! - [`view`]: the in-memory view the hot path reads.
//! - [`db`]: `rules.db` (SQLite, WAL, `synchronous=FULL`): entries, settings, contact
//!   counts, audit.
//! - [`engine`]: [`Rules`], the write-through pair of both.
//! - [`feedback`]: delivered receipts → contact counts; unsubscribe replies → do-not-disturb.
//! - [`import`]: list files with progress and per-line errors.
//! - [`auth`]: [`OperatorAuth`], who may manage the rules.
//! - [`http`]: the `/v1/rules` management API.

pub mod auth;
pub mod db;
pub mod engine;
pub mod feedback;
pub mod http;
pub mod import;
pub mod model;
pub mod view;

pub use auth::{AnyOperator, OperatorAuth};
pub use engine::{Rules, RulesError};
pub use model::{Channel, ListKind, Refusal};
