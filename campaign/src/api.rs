//! HTTP API of the campaign service (axum), mounted by the binary under `/v1/campaign`.
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | POST | `/count` | `{"condition"}` → `{"count"}` |
//! | GET | `/segments` | → `[SegmentInfo]` |
//! | POST | `/segments` | `{"name", "condition"}` \| `{"name","numbers":[…]}` \| `{"name","op","a","b"}` \| `{"name","steps":[…]}` → `{"segment", "steps"?, "numbers"?}` |
//! | GET | `/segments/{id}/preview?n=` | → `[SubscriberRow]` |
//! | GET | `/segments/{id}/export` | → CSV |
//! | POST | `/campaigns` | `{"name"}` → `{"id"}` |
//! | POST | `/campaigns/{id}/activities` | `{"name"}` → `{"id"}` |
//! | POST | `/tasks` | `{"name","activity"?}` → `{"id"}` |
//! | POST | `/tasks/{id}/transitions` | `{"to","actor","note"?}` → `{"state"}` (409 if illegal) |
//! | GET | `/tasks/{id}/history` | → `[Transition]` |
//! | POST | `/tasks/{id}/bulk` | `BulkSpec` → `{"id"}` |
//! | POST | `/bulk/{id}/launch` | `{"actor"}` → `PlanReport`; moves scheduled → running and starts sending |
//! | POST | `/tasks/{id}/pause` \| `/resume` | `{"actor"}` → `{"state"}` |
//! | GET | `/tasks/{id}/report` | → `{"funnel","uplift","exclusions"}` |
//! | GET | `/reports/daily?format=csv\|json` | daily report |
//! | GET | `/reports/channels?since=` | channel monitor |
//! | POST | `/orders?window_days=` | order CSV → `OrdersReport` |
//! | POST | `/webhooks/receipts`, `/webhooks/replies` | gateway webhooks ([`crate::feedback`]) |
//!
//! Errors: 404 unknown id, 409 illegal transition / not sendable, 422 invalid input (parse
//! errors carry the column), 500 store failure; body `{"error": "..."}`.
//! Handlers hold the service mutex only for short synchronous store calls; sending runs in
//! spawned tasks ([`crate::launch::run`]) that release the lock while the gateway answers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::dispatch::Dispatcher;
use crate::error::CampaignError;
use crate::feedback::{self, Shared};
use crate::launch::{self, BulkSpec, RunOutcome};
use crate::lifecycle::{self, TaskState};
use crate::segment::{self, SetOp, Step};
use crate::service::Campaigns;
use crate::{report, window};

/// Router state: the service, the dispatcher and which bulk sends have a runner.
pub struct ApiState<D> {
    pub svc: Shared,
    pub dispatcher: Arc<D>,
    running: Mutex<HashSet<i64>>,
}

impl<D> ApiState<D> {
    /// New state.
    pub fn new(svc: Shared, dispatcher: Arc<D>) -> Arc<Self> {
        Arc::new(Self {
            svc,
            dispatcher,
            running: Mutex::new(HashSet::new()),
        })
    }
}

struct ApiError(CampaignError);

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            CampaignError::NotFound { .. } => StatusCode::NOT_FOUND,
            CampaignError::IllegalTransition { .. } | CampaignError::NotSendable { .. } => {
                StatusCode::CONFLICT
            }
            CampaignError::Parse(p) => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({"error": self.0.to_string(), "column": p.column, "expected": p.expected, "found": p.found})),
                )
                    .into_response();
            }
            CampaignError::Eval(_) | CampaignError::Invalid { .. } | CampaignError::Csv(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            CampaignError::Store(_) | CampaignError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Campaigns> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Deserialize)]
struct Cond {
    condition: String,
}

async fn count<D>(
    State(st): State<Arc<ApiState<D>>>,
    Json(c): Json<Cond>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!({"count": lock(&st.svc).count(&c.condition)?})))
}

#[derive(Deserialize)]
struct NewSegment {
    name: String,
    condition: Option<String>,
    numbers: Option<Vec<String>>,
    op: Option<SetOp>,
    a: Option<i64>,
    b: Option<i64>,
    steps: Option<Vec<Step>>,
}

async fn create_segment<D>(
    State(st): State<Arc<ApiState<D>>>,
    Json(s): Json<NewSegment>,
) -> ApiResult<Json<serde_json::Value>> {
    let now = Timestamp::now();
    let mut c = lock(&st.svc);
    if let Some(cond) = s.condition {
        return Ok(Json(
            json!({"segment": c.segment_from_condition(&s.name, &cond, now)?}),
        ));
    }
    if let Some(nums) = s.numbers {
        let text = nums.join("\n");
        let (info, rep) = c.segment_from_numbers(&s.name, text.as_bytes(), now)?;
        return Ok(Json(json!({"segment": info, "numbers": rep})));
    }
    if let (Some(op), Some(a), Some(b)) = (s.op, s.a, s.b) {
        return Ok(Json(
            json!({"segment": c.segment_from_algebra(&s.name, op, a, b, now)?}),
        ));
    }
    if let Some(steps) = s.steps {
        let (info, counts) = c.segment_from_steps(&s.name, &steps, now)?;
        return Ok(Json(json!({"segment": info, "steps": counts})));
    }
    Err(CampaignError::invalid("segment", "need condition, numbers, op+a+b or steps").into())
}

async fn list_segments<D>(
    State(st): State<Arc<ApiState<D>>>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!(segment::list(&lock(&st.svc).conn)?)))
}

#[derive(Deserialize)]
struct PreviewQ {
    n: Option<usize>,
}

async fn preview<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQ>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = lock(&st.svc);
    let m = segment::members(&c.conn, id)?;
    Ok(Json(json!(segment::sample(
        &c.table,
        &m,
        q.n.unwrap_or(20).min(1000)
    ))))
}

async fn export<D>(State(st): State<Arc<ApiState<D>>>, Path(id): Path<i64>) -> ApiResult<Response> {
    let c = lock(&st.svc);
    let m = segment::members(&c.conn, id)?;
    let mut out = Vec::new();
    segment::export_csv(&c.table, &m, &mut out)?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

#[derive(Deserialize)]
struct Named {
    name: String,
    activity: Option<i64>,
}

async fn create_campaign<D>(
    State(st): State<Arc<ApiState<D>>>,
    Json(n): Json<Named>,
) -> ApiResult<Json<serde_json::Value>> {
    let id =
        lifecycle::create_campaign(&lock(&st.svc).conn, &n.name, Timestamp::now().as_second())?;
    Ok(Json(json!({"id": id})))
}

async fn create_activity<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(campaign): Path<i64>,
    Json(n): Json<Named>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = lifecycle::create_activity(&lock(&st.svc).conn, campaign, &n.name)?;
    Ok(Json(json!({"id": id})))
}

async fn create_task<D>(
    State(st): State<Arc<ApiState<D>>>,
    Json(n): Json<Named>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = lifecycle::create_task(
        &lock(&st.svc).conn,
        n.activity,
        &n.name,
        Timestamp::now().as_second(),
    )?;
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct Move {
    to: TaskState,
    actor: String,
    #[serde(default)]
    note: String,
}

async fn transition<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
    Json(m): Json<Move>,
) -> ApiResult<Json<serde_json::Value>> {
    lock(&st.svc).transition(task, m.to, &m.actor, Timestamp::now(), &m.note)?;
    Ok(Json(json!({"state": m.to})))
}

async fn history<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!(lifecycle::history(&lock(&st.svc).conn, task)?)))
}

async fn create_bulk<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
    Json(spec): Json<BulkSpec>,
) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(json!({"id": lock(&st.svc).create_bulk(task, &spec)?})))
}

#[derive(Deserialize)]
struct Actor {
    actor: String,
}

/// Starts a background runner for `bulk` unless one is active.
pub fn spawn_runner<D: Dispatcher + 'static>(st: &Arc<ApiState<D>>, bulk: i64) {
    {
        let mut r = st
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !r.insert(bulk) {
            return;
        }
    }
    let st = Arc::clone(st);
    tokio::spawn(async move {
        let out = launch::run(&st.svc, &*st.dispatcher, bulk, Timestamp::now).await;
        match &out {
            Ok(o) => tracing::info!(bulk, outcome = ?o, "Bulk send runner stopped."),
            Err(e) => {
                tracing::warn!(bulk, error = %e, "Bulk send runner failed; cursor kept for retry.")
            }
        }
        if let Ok(RunOutcome::Finished { .. }) = out {
            let mut c = lock(&st.svc);
            if let Ok(task) = launch::load_bulk(&c.conn, bulk).map(|b| b.task)
                && all_finished(&c.conn, task).unwrap_or(false)
            {
                let _ = c.transition(
                    task,
                    TaskState::Completed,
                    "system",
                    Timestamp::now(),
                    "all slices sent",
                );
            }
        }
        st.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&bulk);
    });
}

fn all_finished(conn: &rusqlite::Connection, task: i64) -> crate::Result<bool> {
    let open: i64 = conn.query_row(
        "SELECT COUNT(*) FROM slices s JOIN bulk_sends b ON b.id = s.bulk_id WHERE b.task_id = ?1 AND s.done = 0",
        [task],
        |r| r.get(0),
    )?;
    let unplanned: i64 = conn.query_row(
        "SELECT COUNT(*) FROM bulk_sends WHERE task_id = ?1 AND planned_at IS NULL",
        [task],
        |r| r.get(0),
    )?;
    Ok(open == 0 && unplanned == 0)
}

/// Starts runners for every planned bulk send of every running task (call periodically so
/// slices whose window opens later get sent).
///
/// # Errors
/// SQLite failure.
pub fn tick<D: Dispatcher + 'static>(st: &Arc<ApiState<D>>) -> crate::Result<()> {
    let bulks: Vec<i64> = {
        let c = lock(&st.svc);
        let mut q = c.conn.prepare(
            "SELECT b.id FROM bulk_sends b JOIN tasks t ON t.id = b.task_id
             WHERE t.state = 'running' AND b.planned_at IS NOT NULL",
        )?;
        q.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for b in bulks {
        spawn_runner(st, b);
    }
    Ok(())
}

async fn launch_bulk<D: Dispatcher + 'static>(
    State(st): State<Arc<ApiState<D>>>,
    Path(bulk): Path<i64>,
    Json(a): Json<Actor>,
) -> ApiResult<Json<serde_json::Value>> {
    // Planning scans millions of ids and runs SQL: keep it off the async worker threads.
    let svc = Arc::clone(&st.svc);
    let plan = tokio::task::spawn_blocking(move || -> crate::Result<launch::PlanReport> {
        let mut c = lock(&svc);
        let now = Timestamp::now();
        let plan = c.plan(bulk, now)?;
        let task = launch::load_bulk(&c.conn, bulk)?.task;
        if lifecycle::task_state(&c.conn, task)? == TaskState::Scheduled {
            c.transition(task, TaskState::Running, &a.actor, now, "launch")?;
        }
        Ok(plan)
    })
    .await
    .map_err(|e| CampaignError::invalid("launch", format!("planning task failed: {e}")))??;
    spawn_runner(&st, bulk);
    Ok(Json(json!(plan)))
}

async fn pause<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
    Json(a): Json<Actor>,
) -> ApiResult<Json<serde_json::Value>> {
    lock(&st.svc).transition(task, TaskState::Paused, &a.actor, Timestamp::now(), "pause")?;
    Ok(Json(json!({"state": TaskState::Paused})))
}

async fn resume<D: Dispatcher + 'static>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
    Json(a): Json<Actor>,
) -> ApiResult<Json<serde_json::Value>> {
    lock(&st.svc).transition(
        task,
        TaskState::Running,
        &a.actor,
        Timestamp::now(),
        "resume",
    )?;
    tick(&st)?;
    Ok(Json(json!({"state": TaskState::Running})))
}

async fn task_report<D>(
    State(st): State<Arc<ApiState<D>>>,
    Path(task): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let c = lock(&st.svc);
    let mut excl = serde_json::Map::new();
    let mut q = c
        .conn
        .prepare("SELECT id FROM bulk_sends WHERE task_id = ?1")
        .map_err(CampaignError::from)?;
    let ids: Vec<i64> = q
        .query_map([task], |r| r.get(0))
        .map_err(CampaignError::from)?
        .collect::<Result<_, _>>()
        .map_err(CampaignError::from)?;
    for id in ids {
        excl.insert(
            id.to_string(),
            json!({
                "launch": launch::exclusion_report(&c.conn, id, "launch")?,
                "dispatch": launch::exclusion_report(&c.conn, id, "dispatch")?,
            }),
        );
    }
    Ok(Json(json!({
        "funnel": report::funnel(&c.conn, task)?,
        "uplift": report::uplift(&c.conn, task)?,
        "exclusions": excl,
    })))
}

#[derive(Deserialize)]
struct DailyQ {
    format: Option<String>,
    tz: Option<String>,
}

async fn daily<D>(
    State(st): State<Arc<ApiState<D>>>,
    Query(q): Query<DailyQ>,
) -> ApiResult<Response> {
    let rows = report::daily(
        &lock(&st.svc).conn,
        q.tz.as_deref().unwrap_or(window::DEFAULT_TZ),
    )?;
    if q.format.as_deref() == Some("csv") {
        let mut out = Vec::new();
        report::write_csv(&rows, &mut out)?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    Ok(Json(json!(rows)).into_response())
}

#[derive(Deserialize)]
struct ChannelsQ {
    since: Option<Timestamp>,
    tz: Option<String>,
}

async fn channels<D>(
    State(st): State<Arc<ApiState<D>>>,
    Query(q): Query<ChannelsQ>,
) -> ApiResult<Json<serde_json::Value>> {
    let since = q.since.unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(Json(json!(report::channel_monitor(
        &lock(&st.svc).conn,
        since,
        q.tz.as_deref().unwrap_or(window::DEFAULT_TZ)
    )?)))
}

#[derive(Deserialize)]
struct OrdersQ {
    window_days: Option<u32>,
}

async fn orders<D>(
    State(st): State<Arc<ApiState<D>>>,
    Query(q): Query<OrdersQ>,
    body: axum::body::Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let svc = Arc::clone(&st.svc);
    let rep = tokio::task::spawn_blocking(move || {
        let mut c = lock(&svc);
        let c = &mut *c;
        feedback::import_orders(
            &mut c.conn,
            &c.table,
            &body[..],
            q.window_days.unwrap_or(feedback::DEFAULT_WINDOW_DAYS),
            window::DEFAULT_TZ,
        )
    })
    .await
    .map_err(|e| CampaignError::invalid("orders", format!("import task failed: {e}")))??;
    Ok(Json(json!(rep)))
}

/// The campaign API router (mount under `/v1/campaign`).
pub fn router<D: Dispatcher + 'static>(st: Arc<ApiState<D>>) -> Router {
    Router::new()
        .route("/count", post(count::<D>))
        .route(
            "/segments",
            get(list_segments::<D>).post(create_segment::<D>),
        )
        .route("/segments/{id}/preview", get(preview::<D>))
        .route("/segments/{id}/export", get(export::<D>))
        .route("/campaigns", post(create_campaign::<D>))
        .route("/campaigns/{id}/activities", post(create_activity::<D>))
        .route("/tasks", post(create_task::<D>))
        .route("/tasks/{id}/transitions", post(transition::<D>))
        .route("/tasks/{id}/history", get(history::<D>))
        .route("/tasks/{id}/bulk", post(create_bulk::<D>))
        .route("/tasks/{id}/pause", post(pause::<D>))
        .route("/tasks/{id}/resume", post(resume::<D>))
        .route("/tasks/{id}/report", get(task_report::<D>))
        .route("/bulk/{id}/launch", post(launch_bulk::<D>))
        .route("/reports/daily", get(daily::<D>))
        .route("/reports/channels", get(channels::<D>))
        .route("/orders", post(orders::<D>))
        .with_state(Arc::clone(&st))
        .nest("/webhooks", feedback::webhook_router(Arc::clone(&st.svc)))
}
