//! The management API of the public rules, under `/v1/rules` (docs/http-api.md).
//!
//! Job: map operator requests onto [`Rules`] and [`Imports`]; every change takes effect in
//! the running process as soon as it is answered (the engine writes SQLite, then the view)
//! and is recorded in the audit trail under the operator's name.
//!
//! | request | answer |
//! |---|---|
//! | no `Authorization` header | 401 |
//! | a credential that is not an operator's | 403 |
//! | unknown list / import id | 404 |
//! | bad msisdn, channel, lane, cap or window | 422 `{error, field, reason}` |
//! | database failure | 500 (nothing changed) |

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::OperatorAuth;
use super::engine::{Rules, RulesError};
use super::import::Imports;
use super::model::{Cap, Channel, ListEdit, ListKind, Scope, parse_msisdn};
use crate::store::Lane;

/// Default page size of a list.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page of a list.
pub const MAX_PAGE: usize = 10_000;
/// Most numbers in one add / remove request.
pub const MAX_EDIT: usize = 100_000;

/// What the handlers share.
pub struct RulesApi {
    /// The rules.
    pub rules: Arc<Rules>,
    /// Who may manage them.
    pub auth: Arc<dyn OperatorAuth>,
    /// Import jobs.
    pub imports: Arc<Imports>,
}

impl std::fmt::Debug for RulesApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesApi")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// The `/v1/rules` routes.
pub fn router(api: Arc<RulesApi>) -> Router {
    Router::new()
        .route(
            "/v1/rules/lists/{list}",
            get(list_page).post(|s, h, l, b| list_edit(ListEdit::Add, s, h, l, b)),
        )
        .route(
            "/v1/rules/lists/{list}/remove",
            post(|s, h, l, b| list_edit(ListEdit::Remove, s, h, l, b)),
        )
        .route("/v1/rules/lists/{list}/import", post(list_import))
        .route("/v1/rules/imports/{id}", get(import_progress))
        .route("/v1/rules/caps", get(caps_get).put(caps_put))
        .route("/v1/rules/quiet_hours", get(quiet_get).put(quiet_put))
        .route("/v1/rules/check", get(check))
        .route("/v1/rules/audit", get(audit))
        .with_state(api)
}

#[derive(Debug)]
enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound(&'static str),
    Invalid { field: String, reason: String },
    Internal(String),
}

impl ApiError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Invalid { field, reason } => Self::Invalid { field, reason },
            RulesError::Db(e) => {
                tracing::error!(error = %e, "Rules database failed.");
                Self::Internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Unauthorized => return crate::bearer::unauthorized(),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"error": "forbidden", "reason": "operators only"}),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not found", "reason": what}),
            ),
            Self::Invalid { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "field": field, "reason": reason}),
            ),
            Self::Internal(reason) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal error", "reason": reason}),
            ),
        };
        (status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// The operator behind the request (401 without a credential, 403 for a non-operator).
fn operator(api: &RulesApi, headers: &HeaderMap) -> Result<String, ApiError> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::Unauthorized);
    }
    api.auth.operator(headers).ok_or(ApiError::Forbidden)
}

fn list_kind(s: &str) -> Result<ListKind, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound("unknown list"))
}

fn scope(channel: Option<&str>) -> Result<Scope, ApiError> {
    channel
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<Channel>()
                .map_err(|r| ApiError::invalid("channel", r))
        })
        .transpose()
}

fn key(field: &str, raw: &str) -> Result<u64, ApiError> {
    parse_msisdn(raw).map_err(|e| ApiError::invalid(field, format!("{e}: {raw:?}")))
}

/// Runs a blocking rules call (SQLite commits) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RulesError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)
}

#[derive(Deserialize)]
struct PageQuery {
    channel: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_page(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Path(list): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult {
    operator(&api, &headers)?;
    let list = list_kind(&list)?;
    let scope = scope(q.channel.as_deref())?;
    let after = match q.after.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => key("after", a)?,
        None => 0,
    };
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let rules = Arc::clone(&api.rules);
    let page = blocking(move || rules.page(list, scope, after, limit)).await?;
    let next_after = (page.len() == limit)
        .then(|| page.last().map(u64::to_string))
        .flatten();
    Ok(axum::Json(json!({
        "list": list.as_str(),
        "channel": scope.map(Channel::as_str),
        "entries": page.iter().map(u64::to_string).collect::<Vec<_>>(),
        "next_after": next_after,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    msisdns: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
}

fn edit_keys(edit: &Edit) -> Result<Vec<u64>, ApiError> {
    if edit.msisdns.len() > MAX_EDIT {
        return Err(ApiError::invalid(
            "msisdns",
            format!("more than {MAX_EDIT} numbers: use the import endpoint"),
        ));
    }
    edit.msisdns
        .iter()
        .enumerate()
        .map(|(i, m)| key(&format!("msisdns[{i}]"), m))
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", e.to_string()))
}

/// Both list edits (`POST /lists/{list}` adds, `POST /lists/{list}/remove` removes): the same
/// checks and the same commit, answered `{"added": n}` or `{"removed": n}`.
async fn list_edit(
    edit: ListEdit,
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Path(list): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let who = operator(&api, &headers)?;
    let list = list_kind(&list)?;
    let body: Edit = parse_json(&body)?;
    let scope = scope(body.channel.as_deref())?;
    let keys = edit_keys(&body)?;
    let rules = Arc::clone(&api.rules);
    let changed = blocking(move || rules.edit(&who, edit, list, scope, &keys)).await?;
    Ok(axum::Json(json!({ edit.counted_as(): changed })).into_response())
}

#[derive(Deserialize)]
struct ChannelQuery {
    channel: Option<String>,
}

async fn list_import(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Path(list): Path<String>,
    Query(q): Query<ChannelQuery>,
    body: Body,
) -> ApiResult {
    let who = operator(&api, &headers)?;
    let list = list_kind(&list)?;
    let scope = scope(q.channel.as_deref())?;
    let id = api
        .imports
        .start(
            Arc::clone(&api.rules),
            who,
            list,
            scope,
            body.into_data_stream(),
        )
        .await;
    let progress = api.imports.progress(id);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({"id": id, "progress": progress})),
    )
        .into_response())
}

async fn import_progress(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    operator(&api, &headers)?;
    let p = id
        .parse::<u64>()
        .ok()
        .and_then(|id| api.imports.progress(id))
        .ok_or(ApiError::NotFound("unknown import"))?;
    Ok(axum::Json(p).into_response())
}

async fn caps_get(State(api): State<Arc<RulesApi>>, headers: HeaderMap) -> ApiResult {
    operator(&api, &headers)?;
    Ok(axum::Json(json!({"caps": api.rules.caps()})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsBody {
    caps: Vec<Cap>,
}

async fn caps_put(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let who = operator(&api, &headers)?;
    let b: CapsBody = parse_json(&body)?;
    let rules = Arc::clone(&api.rules);
    blocking(move || rules.set_caps(&who, b.caps)).await?;
    Ok(axum::Json(json!({"caps": api.rules.caps()})).into_response())
}

async fn quiet_get(State(api): State<Arc<RulesApi>>, headers: HeaderMap) -> ApiResult {
    operator(&api, &headers)?;
    Ok(axum::Json(json!({"windows": api.rules.quiet_hours()})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietBody {
    windows: Vec<String>,
}

async fn quiet_put(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let who = operator(&api, &headers)?;
    let b: QuietBody = parse_json(&body)?;
    let rules = Arc::clone(&api.rules);
    blocking(move || rules.set_quiet_hours(&who, &b.windows)).await?;
    Ok(axum::Json(json!({"windows": api.rules.quiet_hours()})).into_response())
}

#[derive(Deserialize)]
struct CheckQuery {
    msisdn: String,
    channel: Option<String>,
    lane: Option<String>,
}

async fn check(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Query(q): Query<CheckQuery>,
) -> ApiResult {
    operator(&api, &headers)?;
    let n = key("msisdn", &q.msisdn)?;
    let channel = scope(q.channel.as_deref())?.unwrap_or(Channel::Sms);
    let lane = match q.lane.as_deref().filter(|l| !l.is_empty()) {
        None => Lane::Marketing,
        Some(l) => Lane::ALL
            .into_iter()
            .find(|x| x.as_str() == l)
            .ok_or_else(|| ApiError::invalid("lane", format!("unknown lane {l:?}")))?,
    };
    let exempt = !api.rules.binds(lane);
    let refusal = if exempt {
        None
    } else {
        api.rules.check_key(n, channel, api.rules.today())
    };
    Ok(axum::Json(json!({
        "msisdn": n.to_string(),
        "channel": channel.as_str(),
        "lane": lane.as_str(),
        "exempt": exempt,
        "refused": refusal.map(|r| r.to_string()),
        "rule": refusal.map(|r| r.rule()),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(
    State(api): State<Arc<RulesApi>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult {
    operator(&api, &headers)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE).clamp(1, 1000);
    let rules = Arc::clone(&api.rules);
    let entries = blocking(move || rules.audit(limit)).await?;
    let entries: Vec<_> = entries
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": crate::clock::rfc3339(u64::try_from(e.at_ms).unwrap_or(0)),
                "who": e.who,
                "action": e.action,
                "detail": serde_json::from_str::<serde_json::Value>(&e.detail)
                    .unwrap_or(serde_json::Value::String(e.detail)),
            })
        })
        .collect();
    Ok(axum::Json(json!({"entries": entries})).into_response())
}
