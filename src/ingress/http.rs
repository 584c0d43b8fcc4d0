//! The HTTP API of docs/http-api.md on axum 0.8.
//!
//! Job: map requests to the ingress steps and every outcome to the contract's status and body:
//!
//! | outcome | status |
//! |---|---|
//! | batch durable | 202 `{"results":[…]}` (lines a public rule refused: `refused`, no id) |
//! | no / unknown key | 401 |
//! | account over its rate | 429 + `Retry-After` |
//! | not JSON | 400 `{error, line, column, reason}` |
//! | a message invalid / unroutable | 422 `{error, line, field, reason}` |
//! | too many messages / bytes | 413 |
//! | other Content-Type | 415 |
//! | draining for shutdown | 503 |
//! | store's disk full | 503 + `Retry-After` (nothing acknowledged; works again once space returns) |
//! | store failure | 500 (nothing acknowledged) |
//!
//! Order of checks for a batch: draining → auth → content type → read + validate the whole
//! body (streamed) → public contact rules (refused lines set aside) → MMS content (URL parts
//! fetched, size limit per channel, content files made durable) → rate charge for the
//! messages left → one durable store commit → 202. Nothing is stored unless every message is
//! valid and the charge succeeded; refused lines are never stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use super::accept::{AcceptError, PlaceFn, Prepared, prepare, store_prepared};
use super::account::{Account, Accounts};
use super::batch::{self, BatchError, BatchLimits, Format};
use super::mms::{self, MmsIngress, ResolveError};
use super::{screen, view};
use crate::metrics as m;
use crate::store::{GatewayStore, MessageId};

/// `Retry-After` of a batch refused for a full disk: an operator needs minutes, a client
/// should not hammer meanwhile.
pub const NO_SPACE_RETRY_SECS: u64 = 30;

/// Everything the handlers need; shared behind an `Arc`.
pub struct IngressState {
    /// Accounts and their keys and limits.
    pub accounts: Accounts,
    /// The durable store.
    pub store: GatewayStore,
    /// Channel and due time per message.
    pub place: PlaceFn,
    /// Called once per channel of a batch after its durable commit (wakes dispatch).
    pub on_commit: Arc<dyn Fn(&str) + Send + Sync>,
    /// Request size limits.
    pub limits: BatchLimits,
    /// Prometheus rendering for `/metrics` (`None`: 404).
    pub metrics: Option<PrometheusHandle>,
    /// `/readyz`: store open and channels bound.
    pub ready: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Current time in ms since the epoch: `serve`'s clock (a manual one in tests). Message
    /// ids, `created_ms` and placement (due time, expiry known at placement) read it.
    pub now_ms: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Set when shutdown starts: new batches get 503.
    pub draining: AtomicBool,
    /// The public contact rules every batch is screened with (`super::screen`).
    pub rules: Arc<crate::rules::Rules>,
    /// MMS content limits per channel and the fetcher of URL parts (`super::mms`).
    pub mms: MmsIngress,
}

impl std::fmt::Debug for IngressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressState")
            .field("accounts", &self.accounts)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The API routes.
pub fn router(state: Arc<IngressState>) -> Router {
    Router::new()
        .route("/v1/messages", post(post_messages))
        .route("/v1/messages/{id}", get(get_message))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// An error answer of the API.
#[derive(Debug)]
enum ApiError {
    Unauthorized,
    RateLimited {
        retry_after_secs: u64,
    },
    UnsupportedMediaType,
    Batch(BatchError),
    NoRoute {
        line: usize,
        field: String,
        reason: String,
    },
    Draining,
    /// The store's disk is full: retry later.
    NoSpace,
    Internal(String),
    NotFound,
}

impl ApiError {
    fn reason_label(&self) -> &'static str {
        match self {
            Self::Unauthorized => "auth",
            Self::RateLimited { .. } => "rate",
            Self::UnsupportedMediaType => "media_type",
            Self::Batch(BatchError::Malformed { .. } | BatchError::Body(_)) => "malformed",
            Self::Batch(BatchError::Invalid { .. } | BatchError::Empty) | Self::NoRoute { .. } => {
                "invalid"
            }
            Self::Batch(BatchError::TooManyMessages { .. } | BatchError::TooLarge { .. }) => {
                "too_large"
            }
            Self::Draining => "draining",
            Self::NoSpace => "no_space",
            Self::Internal(_) => "internal",
            Self::NotFound => "not_found",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Unauthorized => return crate::bearer::unauthorized(),
            Self::RateLimited { retry_after_secs } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": "rate limited", "retry_after": retry_after_secs})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": "unsupported media type",
                       "reason": "use application/json or application/x-ndjson"}),
            ),
            Self::Batch(BatchError::Malformed {
                line,
                column,
                reason,
            }) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "malformed JSON", "line": line, "column": column, "reason": reason}),
            ),
            Self::Batch(BatchError::Body(reason)) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "unreadable body", "reason": reason}),
            ),
            Self::Batch(BatchError::Invalid { line, error }) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid message", "line": line, "field": error.field,
                       "reason": error.reason}),
            ),
            Self::Batch(BatchError::Empty) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid message", "line": 0, "field": "messages",
                       "reason": "no messages in the batch"}),
            ),
            Self::NoRoute {
                line,
                field,
                reason,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid message", "line": line, "field": field, "reason": reason}),
            ),
            Self::Batch(BatchError::TooManyMessages { max, line }) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": "too many messages", "max": max, "line": line}),
            ),
            Self::Batch(BatchError::TooLarge { what, max }) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error": format!("{what} too large"), "max": max}),
            ),
            Self::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "shutting down"}),
            ),
            Self::NoSpace => {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(
                        json!({"error": "storage full", "retry_after": NO_SPACE_RETRY_SECS}),
                    ),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(NO_SPACE_RETRY_SECS));
                return r;
            }
            Self::Internal(reason) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error", "reason": reason}),
            ),
            Self::NotFound => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
        };
        (status, axum::Json(body)).into_response()
    }
}

fn authenticate<'s>(state: &'s IngressState, headers: &HeaderMap) -> Result<&'s Account, ApiError> {
    state
        .accounts
        .authenticate_headers(headers)
        .ok_or(ApiError::Unauthorized)
}

fn format_of(headers: &HeaderMap) -> Result<Format, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(Format::Ndjson),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

async fn post_messages(
    State(state): State<Arc<IngressState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    match submit_batch(&state, &headers, body).await {
        Ok(response) => {
            metrics::histogram!(m::BATCH_ACCEPT_LATENCY).record(started.elapsed().as_secs_f64());
            response
        }
        Err(e) => {
            metrics::counter!(m::INGRESS_REJECTED, m::LABEL_REASON => e.reason_label())
                .increment(1);
            tracing::debug!(reason = e.reason_label(), "Batch rejected.");
            e.into_response()
        }
    }
}

async fn submit_batch(
    state: &IngressState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if state.draining.load(Ordering::Acquire) {
        return Err(ApiError::Draining);
    }
    let account = authenticate(state, headers)?;
    let format = format_of(headers)?;
    let items = batch::read(
        body.into_data_stream(),
        format,
        state.limits,
        &account.spec.senders,
    )
    .await
    .map_err(ApiError::Batch)?;
    let (items, refused) = screen::screen(&state.rules, items, &|client_ref| {
        matches!(
            state.store.by_client_ref(account.name(), client_ref),
            Ok(Some(_))
        )
    });
    if items.is_empty() {
        let body = view::batch_results(&[], &[], &refused);
        return Ok(accepted_response(body));
    }
    let mut items = items;
    let now_ms = (state.now_ms)();
    // Held until the batch's commit: the content files stay until their references exist.
    let mut pins = Vec::new();
    let result = store_batch(state, account, &mut items, now_ms, &mut pins, refused).await;
    if result.is_err() && !pins.is_empty() {
        // Nothing references what was written for this batch: remove it now rather than
        // at the next start.
        state.store.discard_content(pins);
    }
    result
}

/// MMS content, rate charge and the durable accept of a screened batch.
async fn store_batch(
    state: &IngressState,
    account: &Account,
    items: &mut Vec<batch::Item>,
    now_ms: u64,
    pins: &mut Vec<crate::store::ContentPin>,
    refused: Vec<screen::RefusedLine>,
) -> Result<Response, ApiError> {
    mms::resolve(
        &state.mms,
        &state.store,
        items,
        |s| {
            (state.place)(account.name(), s, now_ms)
                .ok()
                .map(|p| p.channel)
        },
        pins,
    )
    .await
    .map_err(|e| match e {
        ResolveError::Invalid(b) => ApiError::Batch(b),
        ResolveError::NoSpace(reason) => {
            tracing::warn!(%reason, "MMS content refused: the disk is full.");
            metrics::counter!(m::STORE_NO_SPACE).increment(1);
            ApiError::NoSpace
        }
        ResolveError::Content(reason) => {
            tracing::error!(%reason, "MMS content could not be stored.");
            ApiError::Internal(reason)
        }
    })?;
    let items = std::mem::take(items);
    account
        .charge(items.len())
        .map_err(|r| ApiError::RateLimited {
            retry_after_secs: r.retry_after_secs(),
        })?;
    let client_refs: Vec<Option<String>> = items
        .iter()
        .map(|i| i.submission.client_ref.clone())
        .collect();
    let accepted = accept_items(state, account, items, Vec::new())
        .await
        .map_err(|e| match e {
            AcceptError::Unplaceable { line, error } => ApiError::NoRoute {
                line,
                field: error.field,
                reason: error.reason,
            },
            AcceptError::Store(e) if e.is_no_space() => ApiError::NoSpace,
            AcceptError::Store(e) => ApiError::Internal(e.to_string()),
            AcceptError::Refused { line, reason } => {
                ApiError::Internal(format!("line {line}: {reason}"))
            }
        })?;
    let body = view::batch_results(&accepted, &client_refs, &refused);
    Ok(accepted_response(body))
}

fn accepted_response(body: Vec<u8>) -> Response {
    (
        StatusCode::ACCEPTED,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Stores validated, rate-charged items of `account` durably, wakes their channels and
/// counts them: the one accept path shared by the HTTP API and the SMPP server
/// (`ingress::smpp_server`, which calls its two halves, [`prepare_items`] per submit and
/// [`commit_prepared`] per batch of submits). Resolves after the store's commit.
///
/// # Errors
/// [`AcceptError`]: nothing was acknowledged (store failures are logged here).
pub async fn accept_items(
    state: &IngressState,
    account: &Account,
    items: Vec<batch::Item>,
    ids: Vec<MessageId>,
) -> Result<Vec<super::accept::Accepted>, AcceptError> {
    let prepared = prepare_items(state, account, items, ids)?;
    commit_prepared(state, account, prepared).await
}

/// Routes `items` of `account` and makes their store records (the first taking `ids`);
/// nothing is written.
///
/// # Errors
/// As [`accept::prepare`](super::accept::prepare).
pub fn prepare_items(
    state: &IngressState,
    account: &Account,
    items: Vec<batch::Item>,
    ids: Vec<MessageId>,
) -> Result<Prepared, AcceptError> {
    prepare(
        &*state.store,
        &state.place,
        account.name(),
        items,
        ids,
        (state.now_ms)(),
    )
    .inspect_err(log_accept_error)
}

/// Stores `prepared` (records of `account`) in one commit, wakes their channels and counts
/// them. Resolves after the commit.
///
/// # Errors
/// [`AcceptError`]: nothing was acknowledged (store failures are logged here).
pub async fn commit_prepared(
    state: &IngressState,
    account: &Account,
    prepared: Prepared,
) -> Result<Vec<super::accept::Accepted>, AcceptError> {
    let n = prepared.len();
    let batch = store_prepared(&*state.store, prepared)
        .await
        .inspect_err(log_accept_error)?;
    for channel in &batch.channels {
        (state.on_commit)(channel);
    }
    let accepted = batch.results;
    let dups = accepted.iter().filter(|a| a.duplicate).count();
    let label = account.name().to_owned();
    tracing::debug!(account = %label, messages = n, duplicates = dups, "Batch accepted.");
    metrics::counter!(m::INGRESS_ACCEPTED, m::LABEL_ACCOUNT => label.clone())
        .increment(u64::try_from(n - dups).unwrap_or(u64::MAX));
    if dups > 0 {
        metrics::counter!(m::INGRESS_DUPLICATES, m::LABEL_ACCOUNT => label)
            .increment(u64::try_from(dups).unwrap_or(u64::MAX));
    }
    metrics::histogram!(m::BATCH_SIZE).record(n as f64);
    Ok(accepted)
}

/// Logs what an operator must see of a failed accept; a client's unplaceable line is the
/// client's to see (in its answer), not the log's.
fn log_accept_error(e: &AcceptError) {
    match e {
        AcceptError::Store(e) if e.is_no_space() => {
            tracing::warn!(error = %e, "Store disk full; batch refused.");
            metrics::counter!(m::STORE_NO_SPACE).increment(1);
        }
        AcceptError::Store(e) => {
            tracing::error!(error = %e, "Store failed while accepting a batch.");
        }
        AcceptError::Refused { line, reason } => {
            tracing::error!(line, %reason, "Store refused a validated message.");
        }
        AcceptError::Unplaceable { .. } => {}
    }
}

async fn get_message(
    State(state): State<Arc<IngressState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = (|| {
        let account = authenticate(&state, &headers)?;
        let id: MessageId = id.parse().map_err(|_| ApiError::NotFound)?;
        let message = state
            .store
            .get(id)
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .filter(|msg| msg.account == account.name())
            .ok_or(ApiError::NotFound)?;
        Ok::<_, ApiError>(axum::Json(view::message(&message)).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<Arc<IngressState>>) -> Response {
    let ready = !state.draining.load(Ordering::Acquire) && (state.ready)();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"ready": ready}))).into_response()
}

async fn metrics_text(State(state): State<Arc<IngressState>>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            h.render(),
        )
            .into_response(),
        None => ApiError::NotFound.into_response(),
    }
}
