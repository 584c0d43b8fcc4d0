//! HTTP API of the campaign service (axum), mounted by the binary under `/v1/campaign`.
//!
//! Every route except `POST /login` (the gateway's signed webhooks `/webhooks/receipts` and `/webhooks/replies`
//! carry a signature instead of a user credential: the binary mounts
//! [`crate::feedback::webhook_router`] beside this router) requires `Authorization: Bearer <API key or session token>`; the
//! [`Caller`] it names decides what the request may do (roles, [`crate::identity`]) and
//! what it may see (its organisation and those below). Another tenant's id answers 404 with
//! the same body as an unknown id. The free-text `actor` of the old request bodies is gone:
//! transitions record the authenticated user (a body that still sends `actor` is accepted,
//! the field ignored).
//!
//! | method | path | role | body → answer |
//! |---|---|---|---|
//! | POST | `/login` | none | `{"user","password"}` → `{"token","expires_at"}` |
//! | POST | `/logout` | any | → 204 (ends the session of the bearer token) |
//! | GET | `/me` | any | → `Caller` |
//! | POST | `/orgs` | admin | `{"name","parent","level"}` → `{"id"}` |
//! | GET | `/orgs` | admin | → `[Org]` (visible ones) |
//! | POST | `/users` | admin | `{"name","org","roles":[…],"password"?}` → `{"id"}` |
//! | GET | `/users` | admin | → `[User]` |
//! | POST | `/users/{id}/disable` | admin | → `{"id"}` |
//! | POST | `/users/{id}/keys` | admin, or the user itself | `{"label"}` → `{"id","key"}` (key shown once) |
//! | DELETE | `/keys/{id}` | admin, or the key's user | → `{"id"}` (revoked) |
//! | POST | `/count` | read | `{"condition"}` → `{"count"}` |
//! | GET | `/segments` | read | → `[SegmentInfo]` |
//! | POST | `/segments` | plan | `{"name", "condition"}` \| `{"name","numbers":[…]}` \| `{"name","op","a","b"}` \| `{"name","steps":[…]}` \| `{"name","from_task","outcome"}` → `{"segment", "steps"?, "numbers"?}` |
//! | GET | `/segments/{id}/preview?n=` | read | → `[SubscriberRow]` |
//! | GET | `/segments/{id}/export` | read | → CSV |
//! | GET | `/campaigns`, `/activities`, `/tasks`, `/bulk` | read | `?limit&offset&state&owner&org&q` → page ([`crate::listing`]) |
//! | GET | `/campaigns/{id}` | read | → campaign with `activity_list` |
//! | POST | `/campaigns` | plan | `{"name"}` → `{"id"}` |
//! | POST | `/campaigns/{id}/activities` | plan | `{"name"}` → `{"id"}` |
//! | PATCH | `/campaigns/{id}`, `/activities/{id}`, `/tasks/{id}` | plan | `{"name"}` → `{"id","name"}`: edit a draft or rejected one (422 field `state` otherwise) |
//! | POST | `/tasks` | plan | `{"name","activity"?}` → `{"id"}` |
//! | POST | `/tasks/{id}/transitions` | by target state | `{"to","note"?}` → `{"state"}` (409 if illegal, 403 self-approval) |
//! | GET | `/tasks/{id}/history` | read | → `[Transition]` |
//! | POST | `/tasks/{id}/bulk` | plan | `BulkSpec` → `{"id"}` |
//! | POST | `/bulk/{id}/launch` | launch | → `PlanReport`; moves scheduled → running and starts sending |
//! | POST | `/tasks/{id}/pause` \| `/resume` | operate | → `{"state"}` |
//! | POST | `/tasks/{id}/stop` | operate | → `{"state","gateway"}`: emergency stop — the task ends `cancelled` and the gateway cancels every message tagged `task={id}` it has not yet submitted (its answer in `gateway`); 502 when the gateway could not be told |
//! | POST | `/tasks/{id}/stop` | operate | → `{"state","gateway"}`: emergency stop — the task ends `cancelled` and the gateway cancels every message tagged `task={id}` not yet submitted (its answer in `gateway`); 502 when the gateway could not be told |
//! | GET | `/tasks/{id}/stop/preview` | read | → `{"would_cancel"}`: the task's contacts handed to the gateway without a final receipt yet (what a stop can still cancel; those already at the center end as their receipts say) |
//! | GET | `/tasks/{id}/report` | read | → `{"funnel","uplift","exclusions"}` |
//! | GET | `/reports/daily?format=csv\|json` | read | daily report (caller's visible tasks) |
//! | GET | `/reports/channels?since=` | read | channel monitor (caller's visible tasks) |
//! | POST | `/orders?window_days=` | operate (root organisation) | order CSV → `OrdersReport` |
//!
//! Transition permissions by target state: `submitted`, `draft`, `scheduled` need plan;
//! `approved`, `rejected` need approve; `running`, `paused`, `completed` need operate;
//! `cancelled` needs plan or operate.
//!
//! Errors: 401 no / unknown / revoked / expired credential (`WWW-Authenticate: Bearer`),
//! 403 role missing or self-approval, 404 unknown id or another tenant's, 409 illegal
//! transition / not sendable, 422 invalid input (parse errors carry the column), 500 store
//! failure; body `{"error": "..."}`.
//! Handlers hold the service mutex only for short synchronous store calls; sending runs in
//! spawned tasks ([`crate::launch::run`]) that release the lock while the gateway answers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;

use crate::approval::Subject;
use crate::dispatch::Dispatcher;
use crate::error::CampaignError;
use crate::feedback::{self, Shared};
use crate::identity::{self, Action, Caller, IdentityState, Object, OrgLevel, Role, Scope};
use crate::launch::{self, BulkSpec, RunOutcome};
use crate::lifecycle::{self, TaskState};
use crate::listing::{self, Kind, ListQuery};
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

impl<D> IdentityState for Arc<ApiState<D>> {
    fn campaigns(&self) -> &Shared {
        &self.svc
    }
}

/// A [`CampaignError`] as an HTTP answer (status by variant, body `{"error": …}`).
#[derive(Debug)]
pub struct ApiError(pub CampaignError);

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            CampaignError::Unauthenticated => {
                let mut r = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": self.0.to_string()})),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            CampaignError::Forbidden { .. } | CampaignError::SelfApproval { .. } => {
                StatusCode::FORBIDDEN
            }
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
            CampaignError::Gateway(_) => StatusCode::BAD_GATEWAY,
        };
        (status, Json(json!({"error": self.0.to_string()}))).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
type JsonResult = ApiResult<Json<serde_json::Value>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Campaigns> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_s() -> i64 {
    Timestamp::now().as_second()
}

/// Runs `f` in one SQLite transaction (creation + ownership stamp commit together).
fn in_tx<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> crate::Result<T>,
) -> crate::Result<T> {
    let tx = conn.unchecked_transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

// ---- identity: login, me, organisations, users, keys ----

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

async fn login<D>(State(st): State<Arc<ApiState<D>>>, Json(l): Json<Login>) -> JsonResult {
    // argon2 takes tens of milliseconds: off the async workers, and outside the lock.
    let svc = Arc::clone(&st.svc);
    let session = tokio::task::spawn_blocking(move || {
        identity::login(&lock(&svc).conn, &l.user, &l.password, now_s())
    })
    .await
    .map_err(|e| CampaignError::invalid("login", format!("login task failed: {e}")))??;
    match session {
        Some(s) => Ok(Json(json!(s))),
        None => Err(CampaignError::Unauthenticated.into()),
    }
}

async fn logout<D>(
    State(st): State<Arc<ApiState<D>>>,
    _caller: Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<StatusCode> {
    if let Some(token) = identity::bearer(&headers) {
        identity::logout(&lock(&st.svc).conn, token, now_s())?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: Caller) -> Json<Caller> {
    Json(caller)
}

#[derive(Deserialize)]
struct NewOrg {
    name: String,
    parent: i64,
    level: OrgLevel,
}

async fn create_org<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(o): Json<NewOrg>,
) -> JsonResult {
    caller.require(Action::Admin)?;
    if !caller.sees_org(o.parent) {
        return Err(not_found("org", o.parent));
    }
    let id = identity::create_org(&lock(&st.svc).conn, &o.name, Some(o.parent), o.level)?;
    Ok(Json(json!({"id": id})))
}

async fn list_orgs<D>(State(st): State<Arc<ApiState<D>>>, caller: Caller) -> JsonResult {
    caller.require(Action::Admin)?;
    Ok(Json(json!(identity::list_orgs(
        &lock(&st.svc).conn,
        &caller.visible_orgs
    )?)))
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    org: i64,
    roles: Vec<Role>,
    password: Option<String>,
}

async fn create_user<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(u): Json<NewUser>,
) -> JsonResult {
    caller.require(Action::Admin)?;
    if !caller.sees_org(u.org) {
        return Err(not_found("org", u.org));
    }
    let svc = Arc::clone(&st.svc);
    let id = tokio::task::spawn_blocking(move || {
        identity::create_user(
            &lock(&svc).conn,
            &u.name,
            u.org,
            &u.roles,
            u.password.as_deref(),
            Some(caller.user_id),
            now_s(),
        )
    })
    .await
    .map_err(|e| CampaignError::invalid("users", format!("task failed: {e}")))??;
    Ok(Json(json!({"id": id})))
}

async fn list_users<D>(State(st): State<Arc<ApiState<D>>>, caller: Caller) -> JsonResult {
    caller.require(Action::Admin)?;
    Ok(Json(json!(identity::list_users(
        &lock(&st.svc).conn,
        &caller.visible_orgs
    )?)))
}

/// The user `id` when the caller may manage it: itself (when `own_ok`), or as an admin of
/// its organisation; 404 for a user outside the caller's organisations, 403 otherwise.
fn managed_user(
    conn: &rusqlite::Connection,
    caller: &Caller,
    id: i64,
    own_ok: bool,
) -> crate::Result<()> {
    if own_ok && id == caller.user_id {
        return Ok(());
    }
    let u = identity::user(conn, id)?;
    if !caller.sees_org(u.org) {
        return Err(CampaignError::NotFound { what: "user", id });
    }
    caller.require(Action::Admin)
}

async fn disable_user<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    let c = lock(&st.svc);
    managed_user(&c.conn, &caller, id, false)?;
    identity::disable_user(&c.conn, id)?;
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize, Default)]
struct NewKey {
    #[serde(default)]
    label: String,
}

async fn create_key<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
    body: Option<Json<NewKey>>,
) -> JsonResult {
    let label = body.map(|Json(k)| k.label).unwrap_or_default();
    let c = lock(&st.svc);
    managed_user(&c.conn, &caller, id, true)?;
    Ok(Json(json!(identity::create_key(
        &c.conn,
        id,
        &label,
        None,
        now_s()
    )?)))
}

async fn revoke_key<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    let c = lock(&st.svc);
    let owner = identity::key_owner(&c.conn, id)?.ok_or_else(|| not_found("key", id).0)?;
    managed_user(&c.conn, &caller, owner, true).map_err(|e| match e {
        CampaignError::NotFound { .. } => CampaignError::NotFound { what: "key", id },
        e => e,
    })?;
    identity::revoke_key(&c.conn, id, now_s())?;
    Ok(Json(json!({"id": id})))
}

fn not_found(what: &'static str, id: i64) -> ApiError {
    CampaignError::NotFound { what, id }.into()
}

// ---- segments ----

#[derive(Deserialize)]
struct Cond {
    condition: String,
}

async fn count<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(c): Json<Cond>,
) -> JsonResult {
    caller.require(Action::Read)?;
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
    /// With `outcome`: a second-round segment from this task's results.
    from_task: Option<i64>,
    outcome: Option<segment::Outcome>,
}

async fn create_segment<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(s): Json<NewSegment>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = Timestamp::now();
    let mut c = lock(&st.svc);
    let stamp = |conn: &rusqlite::Connection, id: i64| {
        identity::stamp_created(
            conn,
            Object::Segment,
            id,
            caller.org_id,
            caller.user_id,
            now.as_second(),
        )
    };
    if let Some(cond) = s.condition {
        let c = &*c;
        let info = in_tx(&c.conn, |tx| {
            let info =
                segment::create_from_condition(tx, &c.table, &s.name, &cond, now.as_second())?;
            stamp(tx, info.id)?;
            Ok(info)
        })?;
        return Ok(Json(json!({"segment": info})));
    }
    if let Some(nums) = s.numbers {
        let text = nums.join("\n");
        let c = &*c;
        let (info, rep) = in_tx(&c.conn, |tx| {
            let r = segment::create_from_numbers(
                tx,
                &c.table,
                &s.name,
                text.as_bytes(),
                now.as_second(),
            )?;
            stamp(tx, r.0.id)?;
            Ok(r)
        })?;
        return Ok(Json(json!({"segment": info, "numbers": rep})));
    }
    if let (Some(op), Some(a), Some(b)) = (s.op, s.a, s.b) {
        identity::ensure_visible(&c.conn, &caller, Object::Segment, a)?;
        identity::ensure_visible(&c.conn, &caller, Object::Segment, b)?;
        let info = in_tx(&c.conn, |tx| {
            let info = segment::create_from_algebra(tx, &s.name, op, a, b, now.as_second())?;
            stamp(tx, info.id)?;
            Ok(info)
        })?;
        return Ok(Json(json!({"segment": info})));
    }
    if let Some(steps) = s.steps {
        // Steps build in their own transaction; the stamp follows under the same lock. A
        // crash in between leaves the segment with the root organisation (visible to the
        // province only), never with another tenant.
        let (info, counts) = c.segment_from_steps(&s.name, &steps, now)?;
        stamp(&c.conn, info.id)?;
        return Ok(Json(json!({"segment": info, "steps": counts})));
    }
    if let (Some(task), Some(outcome)) = (s.from_task, s.outcome) {
        identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
        let info = in_tx(&c.conn, |tx| {
            let info = segment::create_from_outcome(
                tx,
                &c.table,
                &s.name,
                task,
                outcome,
                now.as_second(),
            )?;
            stamp(tx, info.id)?;
            Ok(info)
        })?;
        return Ok(Json(json!({ "segment": info })));
    }
    Err(CampaignError::invalid(
        "segment",
        "need condition, numbers, op+a+b, steps or from_task+outcome",
    )
    .into())
}

async fn list_segments<D>(State(st): State<Arc<ApiState<D>>>, caller: Caller) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    let visible = visible_ids(&c.conn, &caller, Object::Segment)?;
    let mut all = segment::list(&c.conn)?;
    all.retain(|s| visible.contains(&s.id));
    Ok(Json(json!(all)))
}

/// Ids of every `obj` the caller may see.
pub(crate) fn visible_ids(
    conn: &rusqlite::Connection,
    caller: &Caller,
    obj: Object,
) -> crate::Result<Vec<i64>> {
    let mut st = conn.prepare(&format!(
        "SELECT x.id FROM {} x WHERE {} ORDER BY x.id",
        obj.table(),
        Scope::sql("x")
    ))?;
    let scope = caller.scope();
    let ids = st.query_map(
        rusqlite::named_params! {":scope_visible": scope.visible},
        |r| r.get(0),
    )?;
    Ok(ids.collect::<Result<_, _>>()?)
}

#[derive(Deserialize)]
struct PreviewQ {
    n: Option<usize>,
}

async fn preview<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
    Query(q): Query<PreviewQ>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Segment, id)?;
    let m = segment::members(&c.conn, id)?;
    Ok(Json(json!(segment::sample(
        &c.table,
        &m,
        q.n.unwrap_or(20).min(1000)
    ))))
}

async fn export<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Segment, id)?;
    let m = segment::members(&c.conn, id)?;
    let mut out = Vec::new();
    segment::export_csv(&c.table, &m, &mut out)?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
}

// ---- hierarchy ----

#[derive(Deserialize)]
struct Named {
    name: String,
    activity: Option<i64>,
}

async fn create_campaign<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(n): Json<Named>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = now_s();
    let id = in_tx(&lock(&st.svc).conn, |tx| {
        let id = lifecycle::create_campaign(tx, &n.name, now)?;
        identity::stamp_created(tx, Object::Campaign, id, caller.org_id, caller.user_id, now)?;
        Ok(id)
    })?;
    Ok(Json(json!({"id": id})))
}

async fn create_activity<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(campaign): Path<i64>,
    Json(n): Json<Named>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = now_s();
    let c = lock(&st.svc);
    let org = identity::ensure_visible(&c.conn, &caller, Object::Campaign, campaign)?;
    let id = in_tx(&c.conn, |tx| {
        let id = lifecycle::create_activity(tx, campaign, &n.name)?;
        identity::stamp_created(tx, Object::Activity, id, org, caller.user_id, now)?;
        identity::stamp_updated(tx, Object::Campaign, campaign, caller.user_id, now)?;
        Ok(id)
    })?;
    Ok(Json(json!({"id": id})))
}

async fn create_task<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Json(n): Json<Named>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = now_s();
    let c = lock(&st.svc);
    let org = match n.activity {
        Some(a) => identity::ensure_visible(&c.conn, &caller, Object::Activity, a)?,
        None => caller.org_id,
    };
    let id = in_tx(&c.conn, |tx| {
        let id = lifecycle::create_task(tx, n.activity, &n.name, now)?;
        identity::stamp_created(tx, Object::Task, id, org, caller.user_id, now)?;
        Ok(id)
    })?;
    Ok(Json(json!({"id": id})))
}

async fn list_of<D>(kind: Kind, st: &ApiState<D>, caller: &Caller, q: &ListQuery) -> JsonResult {
    caller.require(Action::Read)?;
    Ok(Json(listing::list(&lock(&st.svc).conn, caller, kind, q)?))
}

async fn list_campaigns<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> JsonResult {
    list_of(Kind::Campaigns, &st, &caller, &q).await
}

async fn list_activities<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> JsonResult {
    list_of(Kind::Activities, &st, &caller, &q).await
}

async fn list_tasks<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> JsonResult {
    list_of(Kind::Tasks, &st, &caller, &q).await
}

async fn list_bulk<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> JsonResult {
    list_of(Kind::Bulk, &st, &caller, &q).await
}

async fn show_campaign<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    Ok(Json(listing::campaign(&lock(&st.svc).conn, &caller, id)?))
}

#[derive(Deserialize)]
struct NewName {
    name: String,
}

/// Edits the name of a campaign, activity or task the caller sees, while it is a draft or
/// rejected ([`lifecycle::rename`]).
fn rename<D>(st: &ApiState<D>, caller: &Caller, subject: Subject, name: &str) -> JsonResult {
    let obj = match subject {
        Subject::Campaign(_) => Object::Campaign,
        Subject::Activity(_) => Object::Activity,
        Subject::Task(_) => Object::Task,
    };
    let id = subject.id();
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, caller, obj, id)?;
    caller.require(Action::Plan)?;
    in_tx(&c.conn, |tx| {
        lifecycle::rename(tx, subject, name)?;
        identity::stamp_updated(tx, obj, id, caller.user_id, now_s())
    })?;
    Ok(Json(json!({"id": id, "name": name.trim()})))
}

async fn rename_campaign<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(n): Json<NewName>,
) -> JsonResult {
    rename(&st, &caller, Subject::Campaign(id), &n.name)
}

async fn rename_activity<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(n): Json<NewName>,
) -> JsonResult {
    rename(&st, &caller, Subject::Activity(id), &n.name)
}

async fn rename_task<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(id): Path<i64>,
    Json(n): Json<NewName>,
) -> JsonResult {
    rename(&st, &caller, Subject::Task(id), &n.name)
}

// ---- task lifecycle ----

/// The permissions a move to `to` needs (any of them).
const fn transition_needs(to: TaskState) -> &'static [Action] {
    match to {
        TaskState::Submitted | TaskState::Draft | TaskState::Scheduled => &[Action::Plan],
        TaskState::Approved | TaskState::Rejected => &[Action::Approve],
        TaskState::Running | TaskState::Paused | TaskState::Completed => &[Action::Operate],
        TaskState::Cancelled => &[Action::Plan, Action::Operate],
    }
}

/// Body of a transition. `actor` is accepted for compatibility and ignored: the history
/// records the authenticated user.
#[derive(Deserialize)]
struct Move {
    to: TaskState,
    #[serde(default)]
    note: String,
}

/// Moves visible task `task` on behalf of `caller` (checks visibility first, so another
/// tenant's id is a 404 whatever the role).
fn move_task(
    c: &mut Campaigns,
    caller: &Caller,
    task: i64,
    to: TaskState,
    note: &str,
) -> crate::Result<()> {
    identity::ensure_visible(&c.conn, caller, Object::Task, task)?;
    c.transition_by(
        task,
        to,
        &caller.user,
        Some(caller.user_id),
        Timestamp::now(),
        note,
    )
}

async fn transition<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
    Json(m): Json<Move>,
) -> JsonResult {
    let mut c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    caller.require_any(transition_needs(m.to))?;
    move_task(&mut c, &caller, task, m.to, &m.note)?;
    Ok(Json(json!({"state": m.to})))
}

async fn history<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    Ok(Json(json!(lifecycle::history(&c.conn, task)?)))
}

async fn create_bulk<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
    Json(spec): Json<BulkSpec>,
) -> JsonResult {
    caller.require(Action::Plan)?;
    let now = now_s();
    let c = lock(&st.svc);
    let org = identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    identity::ensure_visible(&c.conn, &caller, Object::Segment, spec.segment)?;
    let id = in_tx(&c.conn, |tx| {
        let id = launch::create_bulk(tx, &c.table, task, &spec)?;
        identity::stamp_created(tx, Object::Bulk, id, org, caller.user_id, now)?;
        identity::stamp_updated(tx, Object::Task, task, caller.user_id, now)?;
        Ok(id)
    })?;
    Ok(Json(json!({"id": id})))
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
    caller: Caller,
    Path(bulk): Path<i64>,
) -> JsonResult {
    {
        let c = lock(&st.svc);
        identity::ensure_visible(&c.conn, &caller, Object::Bulk, bulk)?;
    }
    caller.require(Action::Launch)?;
    // Planning scans millions of ids and runs SQL: keep it off the async worker threads.
    let svc = Arc::clone(&st.svc);
    let plan = tokio::task::spawn_blocking(move || -> crate::Result<launch::PlanReport> {
        let mut c = lock(&svc);
        let now = Timestamp::now();
        let plan = c.plan(bulk, now)?;
        let task = launch::load_bulk(&c.conn, bulk)?.task;
        identity::stamp_updated(&c.conn, Object::Bulk, bulk, caller.user_id, now.as_second())?;
        if lifecycle::task_state(&c.conn, task)? == TaskState::Scheduled {
            c.transition_by(
                task,
                TaskState::Running,
                &caller.user,
                Some(caller.user_id),
                now,
                "launch",
            )?;
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
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    let mut c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    caller.require(Action::Operate)?;
    move_task(&mut c, &caller, task, TaskState::Paused, "pause")?;
    Ok(Json(json!({"state": TaskState::Paused})))
}

/// Emergency stop of a task: the task ends `cancelled` (when its state allows; a completed
/// task stays completed — all its slices were handed over, but the gateway may still hold
/// them) and the gateway cancels every message tagged with the task that it has not yet
/// submitted. The runner stops at its next batch (it sends only while the task runs); a batch
/// it was handing over at that moment carries the tag too and is caught by the gateway's
/// stop, which filters every lease.
async fn stop<D: Dispatcher + 'static>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    let state = {
        let mut c = lock(&st.svc);
        identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
        caller.require(Action::Operate)?;
        let state = lifecycle::task_state(&c.conn, task)?;
        if state.can_go(TaskState::Cancelled) {
            move_task(
                &mut c,
                &caller,
                task,
                TaskState::Cancelled,
                "emergency stop",
            )?;
            TaskState::Cancelled
        } else {
            state
        }
    };
    let gateway = st
        .dispatcher
        .cancel_tag("task", &task.to_string())
        .await
        .map_err(|e| CampaignError::Gateway(e.to_string()))?;
    tracing::warn!(task, user = %caller.user, "Task stopped: gateway told to cancel what it still holds.");
    Ok(Json(json!({"state": state, "gateway": gateway})))
}

/// What a stop of the task would cancel, for the console's confirmation: the task's
/// contacts the gateway accepted that have no final receipt yet. An upper bound of what
/// the gateway's stop will report cancelled: some of them may already sit at a center, and
/// those end as their receipts say. Contacts not yet handed over are never sent after a
/// stop (the runner sends only while the task runs), so they are not counted.
async fn stop_preview<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
    Ok(Json(
        json!({"would_cancel": report::unfinished_contacts(&c.conn, task)?}),
    ))
}

async fn resume<D: Dispatcher + 'static>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    {
        let mut c = lock(&st.svc);
        identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
        caller.require(Action::Operate)?;
        move_task(&mut c, &caller, task, TaskState::Running, "resume")?;
    }
    tick(&st)?;
    Ok(Json(json!({"state": TaskState::Running})))
}

async fn task_report<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Path(task): Path<i64>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let c = lock(&st.svc);
    identity::ensure_visible(&c.conn, &caller, Object::Task, task)?;
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
    caller: Caller,
    Query(q): Query<DailyQ>,
) -> ApiResult<Response> {
    caller.require(Action::Read)?;
    let rows = {
        let c = lock(&st.svc);
        let tasks = visible_ids(&c.conn, &caller, Object::Task)?;
        report::daily_for(
            &c.conn,
            q.tz.as_deref().unwrap_or(window::DEFAULT_TZ),
            Some(&tasks),
        )?
    };
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
    caller: Caller,
    Query(q): Query<ChannelsQ>,
) -> JsonResult {
    caller.require(Action::Read)?;
    let since = q.since.unwrap_or(Timestamp::UNIX_EPOCH);
    let c = lock(&st.svc);
    let tasks = visible_ids(&c.conn, &caller, Object::Task)?;
    Ok(Json(json!(report::channel_monitor_for(
        &c.conn,
        since,
        q.tz.as_deref().unwrap_or(window::DEFAULT_TZ),
        Some(&tasks),
    )?)))
}

#[derive(Deserialize)]
struct OrdersQ {
    window_days: Option<u32>,
}

/// Order files are province-wide data (conversions are attributed to whichever task
/// contacted the subscriber, in any organisation), so importing one is a job for an
/// operator of the root organisation: a city could otherwise credit a sibling's tasks.
async fn orders<D>(
    State(st): State<Arc<ApiState<D>>>,
    caller: Caller,
    Query(q): Query<OrdersQ>,
    body: axum::body::Bytes,
) -> JsonResult {
    caller.require(Action::Operate)?;
    identity::require_root(
        &lock(&st.svc).conn,
        &caller,
        "order files are province-wide: only the root organisation imports them",
    )?;
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

/// Builds a router and the list of (method, path) it serves, so tests can walk every
/// authenticated route.
struct Routes<S> {
    router: Router<S>,
    list: Vec<(Method, &'static str)>,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    fn new() -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, h: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::DELETE => MethodFilter::DELETE,
            Method::PATCH => MethodFilter::PATCH,
            _ => MethodFilter::POST,
        };
        self.router = self.router.route(path, on(filter, h));
        self.list.push((method, path));
        self
    }
}

/// Every authenticated route of [`router`] as (method, path), in registration order.
pub fn authenticated_routes<D: Dispatcher + 'static>() -> Vec<(Method, &'static str)> {
    authenticated::<D>().list
}

fn authenticated<D: Dispatcher + 'static>() -> Routes<Arc<ApiState<D>>> {
    use Method as M;
    Routes::new()
        .add(M::POST, "/logout", logout::<D>)
        .add(M::GET, "/me", me)
        .add(M::POST, "/orgs", create_org::<D>)
        .add(M::GET, "/orgs", list_orgs::<D>)
        .add(M::POST, "/users", create_user::<D>)
        .add(M::GET, "/users", list_users::<D>)
        .add(M::POST, "/users/{id}/disable", disable_user::<D>)
        .add(M::POST, "/users/{id}/keys", create_key::<D>)
        .add(M::DELETE, "/keys/{id}", revoke_key::<D>)
        .add(M::POST, "/count", count::<D>)
        .add(M::GET, "/segments", list_segments::<D>)
        .add(M::POST, "/segments", create_segment::<D>)
        .add(M::GET, "/segments/{id}/preview", preview::<D>)
        .add(M::GET, "/segments/{id}/export", export::<D>)
        .add(M::GET, "/campaigns", list_campaigns::<D>)
        .add(M::POST, "/campaigns", create_campaign::<D>)
        .add(M::GET, "/campaigns/{id}", show_campaign::<D>)
        .add(M::PATCH, "/campaigns/{id}", rename_campaign::<D>)
        .add(M::PATCH, "/activities/{id}", rename_activity::<D>)
        .add(M::PATCH, "/tasks/{id}", rename_task::<D>)
        .add(M::POST, "/campaigns/{id}/activities", create_activity::<D>)
        .add(M::GET, "/activities", list_activities::<D>)
        .add(M::GET, "/tasks", list_tasks::<D>)
        .add(M::POST, "/tasks", create_task::<D>)
        .add(M::POST, "/tasks/{id}/transitions", transition::<D>)
        .add(M::GET, "/tasks/{id}/history", history::<D>)
        .add(M::POST, "/tasks/{id}/bulk", create_bulk::<D>)
        .add(M::POST, "/tasks/{id}/pause", pause::<D>)
        .add(M::POST, "/tasks/{id}/resume", resume::<D>)
        .add(M::POST, "/tasks/{id}/stop", stop::<D>)
        .add(M::GET, "/tasks/{id}/stop/preview", stop_preview::<D>)
        .add(M::GET, "/tasks/{id}/report", task_report::<D>)
        .add(M::GET, "/bulk", list_bulk::<D>)
        .add(M::POST, "/bulk/{id}/launch", launch_bulk::<D>)
        .add(M::GET, "/reports/daily", daily::<D>)
        .add(M::GET, "/reports/channels", channels::<D>)
        .add(M::POST, "/orders", orders::<D>)
}

/// Rejects a request without a valid credential before any handler runs (so no route in
/// the authenticated set can be forgotten); the resolved [`Caller`] rides in the request's
/// extensions for the handler's own extractor.
async fn authenticate(
    _caller: Caller,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    next.run(req).await
}

/// The campaign API router (mount under `/v1/campaign`).
pub fn router<D: Dispatcher + 'static>(st: Arc<ApiState<D>>) -> Router {
    authenticated::<D>()
        .router
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&st),
            authenticate,
        ))
        .route("/login", post(login::<D>))
        .with_state(Arc::clone(&st))
}
