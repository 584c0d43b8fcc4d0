//! The planner's management endpoints (issue 16 §5): subscriber import over HTTP, exclusion
//! lists and offer conflicts, roll-up reports. Mount [`router`] under `/v1/campaign` next
//! to [`crate::api::router`]. Every route needs a credential (the [`Caller`] extractor: 401
//! without one) and the role in the table (403 otherwise).
//!
//! | method | path | role | body → answer |
//! |---|---|---|---|
//! | POST | `/subscribers/import` | plan, root organisation | CSV stream (header names the columns) → `202 {"job"}` at once |
//! | GET | `/subscribers/imports/{id}` | read | → [`ImportStatus`] |
//! | GET | `/lists/{kind}?channel=&name=&after=&limit=` | read | → `{"entries":[ListEntry], "next_after"}` |
//! | POST | `/lists/{kind}` | plan (`custom`), operate (the others) | `{"action":"add"\|"remove","numbers":[…],"channel"?,"name"?}` → [`ListChange`] |
//! | GET | `/conflicts` | read | → `[{"a","b"}]` |
//! | POST | `/conflicts` | plan | `{"action":"add"\|"remove","a","b"}` → `[{"a","b"}]` |
//! | GET | `/reports/rollup?by=&period=&format=&tz=` | read | → `[RollupRow]` or CSV ([`crate::report::rollup`]) over the caller's visible tasks |
//!
//! The subscriber table and the non-custom exclusion lists are province-wide: importing
//! subscribers needs the root organisation, editing blacklist / graylist / staff /
//! do-not-disturb lists the operator role.
//!
//! Segments from a task's outcome are created through `POST /segments` of
//! [`crate::api::router`] (one route per path: a second `POST /segments` would collide when
//! the two routers are merged); the library is [`crate::segment::create_from_outcome`].
//!
//! Import: the request body is never held in memory. An async task forwards its chunks into a
//! bounded channel ([`IMPORT_CHUNKS`] chunks); a blocking task reads the channel as a
//! `std::io::Read` ([`BodyReader`]) into an anonymous spool file, then feeds the file to
//! [`Campaigns::import_subscribers`], which writes through to SQLite, so the running service
//! sees the rows as soon as the import commits (no restart). The service lock is taken only
//! once the body is complete (the table is being rewritten; other calls wait for that part),
//! never while a slow client is still sending. Progress (`bytes`, `rows` read so far) is counted
//! by the reader without the lock, so `GET /subscribers/imports/{id}` answers during the
//! import. The last [`KEPT_JOBS`] jobs are remembered, in memory only.

use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{ApiError, ApiResult};
use crate::error::CampaignError;
use crate::feedback::Shared;
use crate::identity::{self, Action as IdAction, Caller, IdentityState};
use crate::report::{self, Period, RollupBy};
use crate::rules::{self, Channel, ListChange, ListKind};
use crate::service::Campaigns;
use crate::window;

/// Body chunks buffered between the connection and the CSV reader.
pub const IMPORT_CHUNKS: usize = 16;
/// Import jobs remembered for `GET /subscribers/imports/{id}`.
pub const KEPT_JOBS: usize = 100;
/// Line errors reported per import job.
pub const REPORTED_ERRORS: usize = 100;
/// Largest page of `GET /lists/{kind}`.
pub const MAX_PAGE: u32 = 10_000;

/// One reported bad line of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportLineError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// Progress and outcome of an import job.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportStatus {
    pub job: u64,
    /// Body bytes read so far.
    pub bytes: u64,
    /// Data rows read so far (lines after the header; exact once done).
    pub rows: u64,
    /// Rows accepted / new / merged / rejected (once done).
    pub accepted: u64,
    pub new: u64,
    pub merged: u64,
    pub rejected: u64,
    /// The first [`REPORTED_ERRORS`] bad lines (once done).
    pub errors: Vec<ImportLineError>,
    pub done: bool,
    /// Why the import failed as a whole (nothing was written), when it did.
    pub failure: Option<String>,
}

/// A running or finished import.
#[derive(Debug, Default)]
struct ImportJob {
    bytes: AtomicU64,
    newlines: AtomicU64,
    done: AtomicBool,
    /// Set once, when done.
    result: Mutex<Option<ImportStatus>>,
}

impl ImportJob {
    fn status(&self, id: u64) -> ImportStatus {
        if self.done.load(Ordering::Acquire) {
            let r = self
                .result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(s) = r.as_ref() {
                return s.clone();
            }
        }
        ImportStatus {
            job: id,
            bytes: self.bytes.load(Ordering::Relaxed),
            rows: self.newlines.load(Ordering::Relaxed).saturating_sub(1),
            ..ImportStatus::default()
        }
    }
}

/// Router state: the service and the import jobs.
pub struct ManageState {
    svc: Shared,
    jobs: Mutex<Jobs>,
}

#[derive(Default)]
struct Jobs {
    next: u64,
    by_id: BTreeMap<u64, Arc<ImportJob>>,
}

impl IdentityState for Arc<ManageState> {
    fn campaigns(&self) -> &Shared {
        &self.svc
    }
}

/// The management router (mount under `/v1/campaign`); merges into a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(svc: Shared) -> Router<S> {
    let st = Arc::new(ManageState {
        svc,
        jobs: Mutex::new(Jobs::default()),
    });
    Router::new()
        .route("/subscribers/import", axum::routing::post(import))
        .route("/subscribers/imports/{id}", get(import_status))
        .route("/lists/{kind}", get(list_entries).post(change_list))
        .route("/conflicts", get(conflicts).post(change_conflict))
        .route("/reports/rollup", get(rollup))
        .with_state(st)
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Campaigns> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `std::io::Read` over body chunks arriving on a bounded channel (blocking receive: use it
/// on a blocking thread only). Counts bytes and newlines into the job as it goes.
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    cur: Bytes,
    job: Arc<ImportJob>,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        let chunk = self.cur.split_to(n);
        out[..n].copy_from_slice(&chunk);
        self.job.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let lines = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        self.job.newlines.fetch_add(lines, Ordering::Relaxed);
        Ok(n)
    }
}

async fn import(caller: Caller, State(st): State<Arc<ManageState>>, body: Body) -> Response {
    if let Err(e) = caller.require(IdAction::Plan).and_then(|()| {
        identity::require_root(
            &lock(&st.svc).conn,
            &caller,
            "the subscriber table is province-wide: only the root organisation changes it",
        )
    }) {
        return ApiError(e).into_response();
    }
    let job = Arc::new(ImportJob::default());
    let id = {
        let mut jobs = st
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        jobs.next += 1;
        let id = jobs.next;
        jobs.by_id.insert(id, Arc::clone(&job));
        while jobs.by_id.len() > KEPT_JOBS {
            let oldest_done = jobs
                .by_id
                .iter()
                .find(|(_, j)| j.done.load(Ordering::Acquire))
                .map(|(k, _)| *k);
            match oldest_done {
                Some(k) => jobs.by_id.remove(&k),
                None => break,
            };
        }
        id
    };
    let (tx, rx) = tokio::sync::mpsc::channel(IMPORT_CHUNKS);
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(std::io::Error::other);
            let failed = item.is_err();
            // The reader gone (import failed early) ends the forwarding.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let svc = Arc::clone(&st.svc);
    let reader = BodyReader {
        rx,
        cur: Bytes::new(),
        job: Arc::clone(&job),
    };
    let worker = Arc::clone(&job);
    tokio::task::spawn_blocking(move || {
        // Spool first, then import: the service lock must not wait on a slow client (every
        // other call, credential checks included, needs it).
        let mut reader = reader;
        let spooled = tempfile::tempfile().and_then(|mut f| {
            std::io::copy(&mut reader, &mut f)?;
            f.seek(std::io::SeekFrom::Start(0))?;
            Ok(f)
        });
        let outcome = match spooled {
            Ok(f) => lock(&svc).import_subscribers(std::io::BufReader::new(f), None),
            Err(e) => Err(CampaignError::Io(e)),
        };
        let mut status = ImportStatus {
            job: id,
            bytes: worker.bytes.load(Ordering::Relaxed),
            done: true,
            ..ImportStatus::default()
        };
        match outcome {
            Ok(rep) => {
                status.rows = rep.rows;
                status.accepted = rep.accepted;
                status.new = rep.new;
                status.merged = rep.merged;
                status.rejected = rep.rejected;
                status.errors = rep
                    .errors
                    .into_iter()
                    .take(REPORTED_ERRORS)
                    .map(|e| ImportLineError {
                        line: e.line,
                        field: e.field,
                        reason: e.reason,
                    })
                    .collect();
            }
            Err(e) => {
                tracing::warn!(job = id, error = %e, "Subscriber import failed; nothing written.");
                status.rows = worker.newlines.load(Ordering::Relaxed).saturating_sub(1);
                status.failure = Some(e.to_string());
            }
        }
        *worker
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
        worker.done.store(true, Ordering::Release);
    });
    (StatusCode::ACCEPTED, Json(json!({"job": id}))).into_response()
}

async fn import_status(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
    Path(id): Path<u64>,
) -> ApiResult<Json<ImportStatus>> {
    caller.require(IdAction::Read)?;
    let job = st
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .by_id
        .get(&id)
        .cloned()
        .ok_or(CampaignError::NotFound {
            what: "import job",
            id: i64::try_from(id).unwrap_or(i64::MAX),
        })?;
    Ok(Json(job.status(id)))
}

#[derive(Deserialize)]
struct ListQ {
    channel: Option<String>,
    name: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

fn channel_of(s: Option<&str>) -> Result<Option<Channel>, CampaignError> {
    s.filter(|c| !c.is_empty())
        .map(str::parse::<Channel>)
        .transpose()
}

async fn list_entries(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
    Path(kind): Path<String>,
    Query(q): Query<ListQ>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(IdAction::Read)?;
    let kind: ListKind = kind.parse()?;
    let channel = channel_of(q.channel.as_deref())?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_PAGE);
    let c = lock(&st.svc);
    let entries = rules::list_entries(
        &c.conn,
        &c.table,
        kind,
        channel,
        q.name.as_deref(),
        q.after,
        limit,
    )?;
    let next_after = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.msisdn))
        .flatten();
    Ok(Json(json!({"entries": entries, "next_after": next_after})))
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Add,
    Remove,
}

#[derive(Deserialize)]
struct ListChangeReq {
    action: Action,
    numbers: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    name: String,
}

async fn change_list(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
    Path(kind): Path<String>,
    Json(r): Json<ListChangeReq>,
) -> ApiResult<Json<ListChange>> {
    let kind: ListKind = kind.parse()?;
    caller.require(if kind == ListKind::Custom {
        IdAction::Plan
    } else {
        IdAction::Operate
    })?;
    let channel = channel_of(r.channel.as_deref())?;
    if channel.is_some() && kind != ListKind::DoNotDisturb {
        return Err(
            CampaignError::invalid("channel", "only do_not_disturb lists have a channel").into(),
        );
    }
    if kind == ListKind::Custom && r.name.trim().is_empty() {
        return Err(CampaignError::invalid(
            "name",
            "a custom list needs a name (bulk specs apply it by `custom_lists`)",
        )
        .into());
    }
    let numbers: Vec<&str> = r.numbers.iter().map(String::as_str).collect();
    let c = lock(&st.svc);
    let change = match r.action {
        Action::Add => rules::add_to_list(&c.conn, &c.table, kind, channel, &r.name, &numbers)?,
        Action::Remove => {
            rules::remove_from_list(&c.conn, &c.table, kind, channel, &r.name, &numbers)?
        }
    };
    Ok(Json(change))
}

fn conflict_list(c: &Campaigns) -> Result<serde_json::Value, CampaignError> {
    Ok(json!(
        rules::conflicts(&c.conn)?
            .into_iter()
            .map(|(a, b)| json!({"a": a, "b": b}))
            .collect::<Vec<_>>()
    ))
}

async fn conflicts(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(IdAction::Read)?;
    Ok(Json(conflict_list(&lock(&st.svc))?))
}

#[derive(Deserialize)]
struct ConflictReq {
    action: Action,
    a: String,
    b: String,
}

async fn change_conflict(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
    Json(r): Json<ConflictReq>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(IdAction::Plan)?;
    let c = lock(&st.svc);
    match r.action {
        Action::Add => rules::add_conflict(&c.conn, &r.a, &r.b)?,
        Action::Remove => {
            rules::remove_conflict(&c.conn, &r.a, &r.b)?;
        }
    }
    Ok(Json(conflict_list(&c)?))
}

#[derive(Deserialize)]
struct RollupQ {
    by: RollupBy,
    #[serde(default)]
    period: Period,
    format: Option<String>,
    tz: Option<String>,
}

async fn rollup(
    caller: Caller,
    State(st): State<Arc<ManageState>>,
    Query(q): Query<RollupQ>,
) -> ApiResult<Response> {
    caller.require(IdAction::Read)?;
    let tz = q.tz.as_deref().unwrap_or(window::DEFAULT_TZ);
    let rows = {
        let c = lock(&st.svc);
        let tasks = crate::api::visible_ids(&c.conn, &caller, identity::Object::Task)?;
        report::rollup(&c.conn, &c.table, q.by, q.period, tz, Some(&tasks))?
    };
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(rows).into_response()),
        "csv" => {
            let mut out = Vec::new();
            report::write_rollup_csv(&rows, &mut out)?;
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
        }
        other => Err(CampaignError::invalid("format", format!("{other:?}: json or csv")).into()),
    }
}
