//! How messages enter sluice.
//!
//! A batch flows: [`http`] (auth, content type, status mapping) → [`batch`] (streamed body →
//! validated items, via [`message`]) → [`screen`] (public contact rules: refused lines are
//! set aside) → [`account`] (rate charge) → [`accept`] (route, ids, one durable store commit)
//! → [`view`] (202 body). Nothing is acknowledged before the store's fsync'd commit, and
//! nothing of a batch is stored unless all of it is valid; a line a public rule refuses is
//! answered per line (`refused`) and never stored, while the rest of the batch is accepted.
//!
//! - [`wap_push`]: the `si` / `sl` objects of `wap_push` messages, encoded at ingress.
//! - [`mms`]: the `parts` of `mms` messages: checked per line, then (after screening) URL
//!   parts fetched, the content built and made durable in the store's content files before
//!   the batch commit that references it.
//! - [`place`]: route + windows → the channel and due time of each message.
//! - [`cancel`]: the emergency stop of an account's own messages (by ids or by tag).
//! - [`operator`]: operators' pause switches per channel and per account.
//! - [`channels_view`]: operators' live view of every channel (`GET /v1/channels`, and its
//!   SSE stream), read from `crate::status`, the pause switches and the store's depths.
//! - [`lookup`]: operators' message lookup by id or destination, with a timeline.
//! - [`smpp_server`]: ESMEs binding to sluice over SMPP; submits take the same validation,
//!   rate charge and durable accept (`http::prepare_items` and `http::commit_prepared`,
//!   the halves of `http::accept_items`) as the HTTP API.

pub mod accept;
pub mod account;
pub mod batch;
pub mod cancel;
pub mod channels_view;
pub mod http;
pub mod lookup;
pub mod message;
pub mod mms;
pub mod operator;
pub mod place;
pub mod screen;
pub mod smpp_server;
pub mod view;
pub mod wap_push;
