//! The emergency stop of an account's own messages: `POST /v1/messages/cancel` and
//! `GET /v1/messages/cancel/{stop}` (docs/http-api.md, "Emergency stop").
//!
//! Job: authenticate the account (as `POST /v1/messages`), turn the body into a store stop,
//! and answer with its counts. The stop is committed durably before the answer, and from that
//! commit on no lease hands out a matching message (`store::stop`), so the answer is the
//! point after which nothing more of it reaches a worker.
//!
//! - `{"ids": […]}` is settled in that one commit: `200` with the final counts (`in_flight`:
//!   leased at the call; each is cancelled when it comes back, or ends as submitted).
//! - `{"tag": {"task": "42"}}` may match millions of queued messages: the call records the
//!   stop, wakes the sweeper and answers `202` at once with the counts so far and
//!   `Location: /v1/messages/cancel/{stop}`; `GET` there until `"done": true`.
//! - `GET /v1/messages/cancel/preview?tag=KEY:VALUE` answers `{"would_cancel": N}` before
//!   anything is stopped (the console's confirmation names it): the messages a tag stop would
//!   end now, counted through the same tag index the sweep walks.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::http::IngressState;
use crate::metrics::CANCELLED;
use crate::store::{MessageId, StopFilter, StopRecord};

/// Most ids one cancel call takes (the body limit allows about this many).
pub const MAX_IDS: usize = 100_000;

/// What the cancel routes need.
#[derive(Clone)]
pub struct CancelState {
    /// Accounts, store and clock of the HTTP API.
    pub ingress: Arc<IngressState>,
    /// Wakes the stop sweeper (`stop::Sweeper`) after a tag stop is recorded.
    pub sweep: Arc<Notify>,
    /// How long a stop keeps filtering leases after its sweep ended, ms: at least the lease
    /// time, so every message in flight at the call comes back while it still filters.
    pub hold_ms: u64,
}

impl std::fmt::Debug for CancelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelState")
            .field("hold_ms", &self.hold_ms)
            .finish_non_exhaustive()
    }
}

/// The cancel routes.
pub fn router(state: CancelState) -> Router {
    Router::new()
        .route("/v1/messages/cancel", post(post_cancel))
        .route("/v1/messages/cancel/preview", get(get_preview))
        .route("/v1/messages/cancel/{stop}", get(get_cancel))
        .with_state(state)
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    tag: Option<BTreeMap<String, String>>,
}

fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "reason": reason})),
    )
        .into_response()
}

/// The JSON view of a stop (both routes answer it).
pub fn view(r: &StopRecord) -> Value {
    let c = r.counts;
    json!({
        "stop": r.id,
        "done": r.done(),
        "cancelled": c.cancelled,
        "already_submitted": c.already_submitted,
        "already_final": c.already_final,
        "unknown": c.unknown,
        "in_flight": c.in_flight,
    })
}

async fn post_cancel(
    State(state): State<CancelState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(account) = state.ingress.accounts.authenticate_headers(&headers) else {
        return crate::bearer::unauthorized();
    };
    let req: CancelRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed JSON", &e.to_string()),
    };
    let (filter, unparsable) = match (req.ids, req.tag) {
        (Some(ids), None) => {
            if ids.len() > MAX_IDS {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too many ids",
                    &format!("at most {MAX_IDS} per call"),
                );
            }
            let parsed: Vec<MessageId> = ids.iter().filter_map(|s| s.parse().ok()).collect();
            let bad = (ids.len() - parsed.len()) as u64;
            (StopFilter::Ids { ids: parsed }, bad)
        }
        (None, Some(tag)) => {
            let mut it = tag.into_iter();
            match (it.next(), it.next()) {
                (Some((key, value)), None) if !key.is_empty() => {
                    (StopFilter::Tag { key, value }, 0)
                }
                _ => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid cancel",
                        "tag must hold exactly one non-empty name and its value",
                    );
                }
            }
        }
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid cancel",
                "give either ids or tag",
            );
        }
    };
    let is_tag = matches!(filter, StopFilter::Tag { .. });
    let now = (state.ingress.now_ms)();
    let mut rec = match state
        .ingress
        .store
        .stop(account.name(), filter, now, state.hold_ms)
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(reason)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid cancel", &reason);
        }
        Err(e) => {
            tracing::error!(error = %e, "Store failed while recording a stop.");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                &e.to_string(),
            );
        }
    };
    rec.counts.unknown += unparsable;
    tracing::warn!(account = %account.name(), stop = rec.id, filter = ?rec.filter, "Emergency stop recorded.");
    if is_tag {
        state.sweep.notify_one();
        let location = format!("/v1/messages/cancel/{}", rec.id);
        let mut r = (StatusCode::ACCEPTED, axum::Json(view(&rec))).into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    } else {
        if rec.counts.cancelled > 0 {
            metrics::counter!(CANCELLED).increment(rec.counts.cancelled);
        }
        (StatusCode::OK, axum::Json(view(&rec))).into_response()
    }
}

async fn get_cancel(
    State(state): State<CancelState>,
    headers: HeaderMap,
    Path(stop): Path<String>,
) -> Response {
    let Some(account) = state.ingress.accounts.authenticate_headers(&headers) else {
        return crate::bearer::unauthorized();
    };
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "not found"})),
        )
            .into_response()
    };
    let Ok(id) = stop.parse::<u64>() else {
        return not_found();
    };
    match state.ingress.store.stop_status(id) {
        Ok(Some(r)) if r.account == account.name() => axum::Json(view(&r)).into_response(),
        Ok(_) => not_found(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
            &e.to_string(),
        ),
    }
}

/// The preview's query: `tag=KEY:VALUE` (split at the first `:`).
#[derive(Debug, Deserialize)]
struct PreviewQuery {
    tag: Option<String>,
}

async fn get_preview(
    State(state): State<CancelState>,
    headers: HeaderMap,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let Some(account) = state.ingress.accounts.authenticate_headers(&headers) else {
        return crate::bearer::unauthorized();
    };
    let Some((key, value)) = q
        .tag
        .as_deref()
        .and_then(|t| t.split_once(':'))
        .filter(|(k, _)| !k.is_empty())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid preview",
            "give tag=KEY:VALUE with a non-empty KEY",
        );
    };
    match state.ingress.store.would_cancel(account.name(), key, value) {
        Ok(Ok(n)) => axum::Json(json!({"would_cancel": n})).into_response(),
        Ok(Err(reason)) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid preview", &reason),
        Err(e) => {
            tracing::error!(error = %e, "Store failed while counting a stop preview.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                &e.to_string(),
            )
        }
    }
}
