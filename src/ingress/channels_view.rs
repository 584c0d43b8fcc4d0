//! Operators' view of the channels: `GET /v1/channels` and `GET /v1/channels/stream`
//! (docs/http-api.md, "Channels view").
//!
//! Job: put together, per configured channel, facts that each have one owner elsewhere —
//! binds up, the AIMD rate, window use, throttles, sent rate, last errors and receipt latency
//! from the channel's [`ChannelStatus`] (the worker's watches and counters, the receipt
//! layer's latency window), the pause switch from [`Pauses`], the backlog per lane from the
//! store's queue counters — and answer them as one JSON body. Nothing is computed here that
//! another module also knows.
//!
//! The stream is Server-Sent Events: the same body as a `channels` event at once and then
//! every [`STREAM_EVERY`]; it ends when the gateway drains (so shutdown never waits on an
//! open console tab). Both routes want an operator (`rules::OperatorAuth`): 401 without a
//! valid credential, 403 for a valid one that is not an operator's.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::{Value, json};

use super::operator::{OperatorState, authorize};
use crate::clock::rfc3339;
use crate::status::{ChannelStatus, ChannelStatuses};
use crate::store::Lane;

/// How often the stream sends the body.
pub const STREAM_EVERY: Duration = Duration::from_secs(1);

/// What the channel view needs.
#[derive(Clone)]
pub struct ChannelsViewState {
    /// Who is an operator, the pause switches, the store (through ingress).
    pub operator: OperatorState,
    /// Every channel's live status, in config order.
    pub statuses: Arc<ChannelStatuses>,
}

impl std::fmt::Debug for ChannelsViewState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelsViewState")
            .field("statuses", &self.statuses)
            .finish_non_exhaustive()
    }
}

/// The channel view routes.
pub fn router(state: ChannelsViewState) -> Router {
    Router::new()
        .route("/v1/channels", get(get_channels))
        .route("/v1/channels/stream", get(get_stream))
        .with_state(state)
}

/// The body of both routes.
pub fn body(state: &ChannelsViewState) -> Value {
    let depths = state.operator.ingress.store.queue_depths();
    let channels: Vec<Value> = state
        .statuses
        .iter()
        .map(|(protocol, s)| {
            let name = s.name();
            let mut backlog = serde_json::Map::new();
            for lane in Lane::ALL {
                backlog.insert(lane.as_str().to_owned(), json!(depths.ready(name, lane)));
            }
            channel(
                protocol,
                s,
                state.operator.pauses.channel_paused(name),
                Value::Object(backlog),
            )
        })
        .collect();
    json!({ "channels": channels })
}

fn channel(protocol: &str, s: &ChannelStatus, paused: bool, backlog: Value) -> Value {
    let latency = s.receipt_latency();
    let errors: Vec<Value> = s
        .last_errors()
        .into_iter()
        .map(|e| json!({"at": rfc3339(e.at_ms), "text": e.text}))
        .collect();
    json!({
        "name": s.name(),
        "protocol": protocol,
        "binds_up": s.binds_up(),
        "binds_configured": s.binds_configured(),
        "paused": paused,
        "rate_limit": s.rate_limit(),
        "rate_aimd": s.rate_aimd(),
        "sent_per_s": s.sent_per_s(),
        "window": {"size": s.window_size(), "in_use": s.window_in_use()},
        "backlog": backlog,
        "throttled_total": s.throttled_total(),
        "receipt_latency_ms": {"p50": latency.p50, "p99": latency.p99},
        "last_errors": errors,
    })
}

async fn get_channels(State(state): State<ChannelsViewState>, headers: HeaderMap) -> Response {
    if let Err(d) = authorize(&state.operator, &headers) {
        return d.into_response();
    }
    axum::Json(body(&state)).into_response()
}

async fn get_stream(State(state): State<ChannelsViewState>, headers: HeaderMap) -> Response {
    if let Err(d) = authorize(&state.operator, &headers) {
        return d.into_response();
    }
    Sse::new(events(state))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A `channels` event now and every [`STREAM_EVERY`], until ingress drains.
fn events(state: ChannelsViewState) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut tick = tokio::time::interval(STREAM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold((state, tick), |(state, mut tick)| async move {
        tick.tick().await;
        if state.operator.ingress.draining.load(Ordering::Acquire) {
            return None;
        }
        let event = Event::default()
            .event("channels")
            .data(body(&state).to_string());
        Some((Ok(event), (state, tick)))
    })
}
