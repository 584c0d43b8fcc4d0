//! HTTP routes of event intake and triggered tasks. Mount [`router`] under `/v1/campaign`
//! next to [`crate::api::router`] (the binary also answers `POST /v1/events`, the path of
//! the issue, with the same handler: [`events_router`]). Every route needs a credential.
//!
//! | method | path | role | body → answer |
//! |---|---|---|---|
//! | POST | `/events` | operate | JSON array or NDJSON of `{id, msisdn, type, ts, attrs}`, ≤ 10 000 lines → `{"lines","accepted","duplicates","errors":[{"line","field","reason"}]}` once durable |
//! | POST | `/tasks/{id}/trigger` | plan | [`TriggerSpec`] → `{"id"}` (one trigger per task, no bulk send beside it) |
//! | GET | `/triggers` | read | → `[{"trigger","state","task":{"task_name","activity","activity_name","campaign","campaign_name"}}]` (visible tasks; the names are for the console's list) |
//! | GET | `/triggers/monitor` | read | → [`Monitor`] |
//! | GET | `/triggers/{id}` | read | → `{"trigger","state"}` |
//! | POST | `/triggers/{id}/activate` | launch | → `{"state"}`: scheduled → running (the approval chains are complete); matching starts |
//! | GET | `/triggers/{id}/report` | read | → [`TriggerFunnel`] (funnel, control, uplift, suppressed by reason) |
//! | POST | `/calendar/holidays` | operate | `{"day":"YYYY-MM-DD","name"}` → `{"day","name"}` |
//!
//! Pausing, resuming, stopping a triggered task and its approval go through the task routes
//! of [`crate::api`] and [`crate::approval_api`] unchanged: a trigger matches only while its
//! task is `running`.
//!
//! Matching runs in a background task ([`TriggerRuntime`]): woken by every intake, and once
//! a second for held matches whose window opened and for the daily calendar events. It
//! holds the service lock only to plan and to commit a step, never while the gateway
//! answers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::api::{ApiError, ApiResult, ApiState};
use crate::dispatch::Dispatcher;
use crate::error::CampaignError;
use crate::events::intake::{Batch, LineSplitter};
use crate::feedback::Shared;
use crate::identity::{self, Action, Caller, IdentityState, Object};
use crate::lifecycle::{self, TaskState};
use crate::service::Campaigns;
use crate::triggers::{self, TriggerSpec, calendar, engine, evaluate};

/// Largest JSON-array body accepted (an array is parsed whole; NDJSON is streamed).
pub const MAX_ARRAY_BYTES: usize = 32 << 20;

/// The triggered tasks' runtime: the campaign API state and the matcher's wake-up.
pub struct TriggerRuntime<D> {
    pub api: Arc<ApiState<D>>,
    wake: Arc<Notify>,
    busy: tokio::sync::Mutex<Option<jiff::civil::Date>>,
}

impl<D> IdentityState for Arc<TriggerRuntime<D>> {
    fn campaigns(&self) -> &Shared {
        &self.api.svc
    }
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Campaigns> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<D: Dispatcher + 'static> TriggerRuntime<D> {
    /// A runtime over `api`; call [`Self::spawn`] (or [`router`], which does) to match.
    pub fn new(api: Arc<ApiState<D>>) -> Arc<Self> {
        Arc::new(Self {
            api,
            wake: Arc::new(Notify::new()),
            busy: tokio::sync::Mutex::new(None),
        })
    }

    /// Asks the matcher to run now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs matching until no new event is left; emits the day's calendar events first when
    /// the local date changed since the last run. One run at a time.
    ///
    /// # Errors
    /// As [`engine::drain`].
    pub async fn run_once(&self) -> Result<engine::StepReport, crate::launch::RunError> {
        let mut last_day = self.busy.lock().await;
        let now = Timestamp::now();
        let today = crate::window::time_zone(crate::window::DEFAULT_TZ)
            .map(|tz| tz.to_datetime(now).date())
            .ok();
        if today.is_some() && *last_day != today {
            let svc = Arc::clone(&self.api.svc);
            let day = today;
            let r = tokio::task::spawn_blocking(move || -> crate::Result<u64> {
                let c = lock(&svc);
                let tz = crate::window::time_zone(crate::window::DEFAULT_TZ)?;
                match day {
                    Some(d) => calendar::emit(
                        &c.conn,
                        &c.table,
                        d,
                        &tz,
                        calendar::BIRTHDAY_ATTR,
                        now.as_second(),
                    ),
                    None => Ok(0),
                }
            })
            .await;
            match r {
                Ok(Ok(n)) => {
                    if n > 0 {
                        tracing::info!(events = n, "Calendar events emitted.");
                    }
                    *last_day = today;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "Calendar events not emitted; retrying."),
                Err(e) => tracing::warn!(error = %e, "Calendar task failed; retrying."),
            }
        }
        engine::drain(&self.api.svc, &*self.api.dispatcher, Timestamp::now).await
    }

    /// Starts the background matcher: woken by intakes, else every `every`. It ends once
    /// the runtime is dropped (the router is gone).
    pub fn spawn(self: &Arc<Self>, every: Duration) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let wake = Arc::clone(&self.wake);
        handle.spawn(async move {
            loop {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(every) => {}
                }
                let Some(rt) = weak.upgrade() else { return };
                if let Err(e) = rt.run_once().await {
                    tracing::warn!(error = %e, "Trigger matching step failed; it is retried.");
                }
            }
        });
    }
}

type JsonResult = ApiResult<Json<Value>>;

/// The routes (mount under `/v1/campaign`); starts the matcher when a Tokio runtime is
/// running.
pub fn router<D: Dispatcher + 'static>(api: Arc<ApiState<D>>) -> Router {
    let rt = TriggerRuntime::new(api);
    rt.spawn(Duration::from_secs(1));
    routes(rt)
}

/// The routes over an existing runtime.
pub fn routes<D: Dispatcher + 'static>(rt: Arc<TriggerRuntime<D>>) -> Router {
    Router::new()
        .route("/events", post(post_events::<D>))
        .route("/tasks/{id}/trigger", post(create::<D>))
        .route("/triggers", get(list::<D>))
        .route("/triggers/monitor", get(monitor::<D>))
        .route("/triggers/{id}", get(show::<D>))
        .route("/triggers/{id}/activate", post(activate::<D>))
        .route("/triggers/{id}/report", get(report::<D>))
        .route("/calendar/holidays", post(holiday::<D>))
        .with_state(rt)
}

/// `POST /v1/events` (the path) over the same runtime: mount at the root.
pub fn events_router<D: Dispatcher + 'static>(rt: Arc<TriggerRuntime<D>>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events::<D>))
        .with_state(rt)
}

async fn post_events<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    body: Body,
) -> JsonResult {
    caller.require(Action::Operate)?;
    let mut stream = body.into_data_stream();
    let mut batch = Batch::default();
    let mut split = LineSplitter::default();
    let mut array: Option<Vec<u8>> = None;
    let mut started = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CampaignError::invalid("body", e.to_string()))?;
        if !started {
            match chunk.iter().find(|c| !c.is_ascii_whitespace()) {
                Some(b'[') => array = Some(Vec::new()),
                Some(_) => {}
                None => continue,
            }
            started = true;
        }
        match &mut array {
            Some(buf) => {
                if buf.len() + chunk.len() > MAX_ARRAY_BYTES {
                    return Err(ApiError(CampaignError::invalid(
                        "body",
                        format!("a JSON array is limited to {MAX_ARRAY_BYTES} bytes; send NDJSON"),
                    )));
                }
                buf.extend_from_slice(&chunk);
            }
            None => split.feed(&chunk, |n, l| batch.push_line(n, l))?,
        }
    }
    match array {
        Some(buf) => batch = crate::events::intake::parse_body(&buf)?,
        None => split.finish(|n, l| batch.push_line(n, l))?,
    }
    let svc = Arc::clone(&rt.api.svc);
    let rep = tokio::task::spawn_blocking(move || {
        let c = lock(&svc);
        batch.commit(&c.conn, Timestamp::now().as_second())
    })
    .await
    .map_err(|e| CampaignError::invalid("events", format!("intake task failed: {e}")))??;
    if rep.accepted > 0 {
        rt.wake();
    }
    Ok(Json(json!(rep)))
}

async fn create<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
    Json(spec): Json<TriggerSpec>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = Timestamp::now().as_second();
    let c = lock(&rt.api.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    let tx = c
        .conn
        .unchecked_transaction()
        .map_err(CampaignError::from)?;
    let id = triggers::create(&tx, &c.table, task, &spec, Some(caller.user_id), now)?;
    identity::stamp_updated(&tx, Object::Task, task, caller.user_id, now)?;
    tx.commit().map_err(CampaignError::from)?;
    Ok(Json(json!({"id": id})))
}

/// The trigger `id` when the caller sees its task (404 otherwise, as for unknown ids).
fn visible(c: &Campaigns, caller: &Caller, id: i64) -> crate::Result<triggers::Trigger> {
    let t = triggers::load(&c.conn, id)?;
    identity::ensure_visible(&c.conn, caller, Object::Task, t.task).map_err(|e| match e {
        CampaignError::NotFound { .. } => CampaignError::NotFound {
            what: "trigger",
            id,
        },
        e => e,
    })?;
    Ok(t)
}

async fn list<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&rt.api.svc);
    let tasks = crate::api::visible_ids(&c.conn, &caller, Object::Task)?;
    let mut names = c
        .conn
        .prepare_cached(
            "SELECT t.name, t.activity_id, a.name, a.campaign_id, g.name FROM tasks t
             LEFT JOIN activities a ON a.id = t.activity_id
             LEFT JOIN campaigns g ON g.id = a.campaign_id WHERE t.id = ?1",
        )
        .map_err(CampaignError::from)?;
    let mut rows = Vec::new();
    for (t, state) in triggers::list(&c.conn, Some(&tasks))? {
        let where_ = names
            .query_row([t.task], |r| {
                Ok(json!({"task_name": r.get::<_, String>(0)?,
                    "activity": r.get::<_, Option<i64>>(1)?,
                    "activity_name": r.get::<_, Option<String>>(2)?,
                    "campaign": r.get::<_, Option<i64>>(3)?,
                    "campaign_name": r.get::<_, Option<String>>(4)?}))
            })
            .map_err(CampaignError::from)?;
        rows.push(json!({"trigger": t, "state": state, "task": where_}));
    }
    Ok(Json(json!(rows)))
}

async fn show<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&rt.api.svc);
    let t = visible(&c, &caller, id)?;
    let state = lifecycle::task_state(&c.conn, t.task)?;
    Ok(Json(json!({"trigger": t, "state": state})))
}

async fn activate<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    let state = {
        let mut c = lock(&rt.api.svc);
        let t = visible(&c, &caller, id)?;
        caller.require(Action::Launch)?;
        let now = Timestamp::now();
        let mo = c.mo.clone();
        triggers::prepare(&c.conn, id, &mo, now.as_second())?;
        if lifecycle::task_state(&c.conn, t.task)? == TaskState::Scheduled {
            c.transition_by(
                t.task,
                TaskState::Running,
                &caller.user,
                Some(caller.user_id),
                now,
                "activate trigger",
            )?;
        }
        lifecycle::task_state(&c.conn, t.task)?
    };
    rt.wake();
    Ok(Json(json!({"state": state})))
}

async fn report<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&rt.api.svc);
    let t = visible(&c, &caller, id)?;
    Ok(Json(json!(evaluate::funnel(&c.conn, t.id, t.task)?)))
}

async fn monitor<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&rt.api.svc);
    let tasks = crate::api::visible_ids(&c.conn, &caller, Object::Task)?;
    Ok(Json(json!(evaluate::monitor(
        &c.conn,
        Timestamp::now().as_second(),
        Some(&tasks)
    )?)))
}

#[derive(Deserialize)]
struct Holiday {
    day: jiff::civil::Date,
    name: String,
}

async fn holiday<D: Dispatcher + 'static>(
    State(rt): State<Arc<TriggerRuntime<D>>>,
    caller: Caller,
    Json(h): Json<Holiday>,
) -> JsonResult {
    caller.require(Action::Operate)?;
    let c = lock(&rt.api.svc);
    calendar::add_holiday(&c.conn, h.day, &h.name)?;
    Ok(Json(json!({"day": h.day, "name": h.name.trim()})))
}
