//! HTTP routes of the approval chains ([`crate::approval`]): a [`Router`] the campaign API
//! nests under `/v1/campaign` next to [`crate::api::router`].
//!
//! | method | path | role | body → answer |
//! |---|---|---|---|
//! | POST | `/{campaigns\|activities\|tasks}/{id}/submit` | plan | `{"comment"?}` → `Status` |
//! | POST | `…/{id}/approve` | approve (403 otherwise) | `{"comment"?}` → `Status` |
//! | POST | `…/{id}/reject` | approve (403 otherwise) | `{"comment"}` (reason) → `Status` |
//! | POST | `…/{id}/revise` | plan | `{"comment"?}` → `Status` |
//! | POST | `…/{id}/cancel` | plan or operate | `{"comment"?}` → `Status` |
//! | GET | `…/{id}/approval` | read | → `{"status": Status, "trail": [TrailEntry]}` |
//! | GET, PUT | `/orgs/{id}/chains/{kind}` | read / admin | `[{"level","action"}]` → `Chain` / the stored steps |
//!
//! Every route needs the bearer credential of [`Caller`]. The object must be visible to the
//! caller (its organisation or one below): another tenant's id answers 404 like an unknown
//! one, before any approval rule. Submitting resolves the chain against the object's
//! organisation and its ancestors; approving and rejecting act as the caller's organisation
//! with the approver role as `can_approve`, so the chain's rules decide (403
//! `NotYourStep` names `awaiting_org`, 403 own submission, 409 not pending, 422 no reason).

use std::sync::PoisonError;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::approval::{self, Action, Actor, ApprovalError, Subject, SubjectKind};
use crate::error::CampaignError;
use crate::identity::{self, Caller, IdentityState, Object};
use crate::service::Campaigns;

/// The actions with a POST route, by path segment.
const ACTIONS: [(&str, Action); 5] = [
    ("submit", Action::Submit),
    ("approve", Action::Approve),
    ("reject", Action::Reject),
    ("revise", Action::Revise),
    ("cancel", Action::Cancel),
];

/// The approval routes, for a state that resolves callers.
pub fn router<S>() -> Router<S>
where
    S: IdentityState + Clone + Send + Sync + 'static,
{
    let mut r = Router::new();
    for kind in SubjectKind::ALL {
        for (segment, action) in ACTIONS {
            r =
                r.route(
                    &format!("/{}/{{id}}/{segment}", kind.plural()),
                    post(
                        move |State(st): State<S>,
                              caller: Caller,
                              Path(id): Path<i64>,
                              body: Bytes| async move {
                            act(&st, &caller, kind.subject(id), action, &body)
                        },
                    ),
                );
        }
        r = r.route(
            &format!("/{}/{{id}}/approval", kind.plural()),
            get(
                move |State(st): State<S>, caller: Caller, Path(id): Path<i64>| async move {
                    show(&st, &caller, kind.subject(id))
                },
            ),
        );
    }
    r.route(
        "/orgs/{id}/chains/{kind}",
        get(get_chain::<S>).put(put_chain::<S>),
    )
}

/// Every (method, path) of [`router`] (all need a credential).
pub fn routes() -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for kind in SubjectKind::ALL {
        for (segment, _) in ACTIONS {
            out.push((Method::POST, format!("/{}/{{id}}/{segment}", kind.plural())));
        }
        out.push((Method::GET, format!("/{}/{{id}}/approval", kind.plural())));
    }
    out.push((Method::GET, "/orgs/{id}/chains/{kind}".into()));
    out.push((Method::PUT, "/orgs/{id}/chains/{kind}".into()));
    out
}

/// An approval error as an HTTP answer: its own status for the chain's refusals, the
/// campaign API's for wrapped errors (404, 401, …).
#[derive(Debug)]
pub struct ApprovalApiError(pub ApprovalError);

impl From<ApprovalError> for ApprovalApiError {
    fn from(e: ApprovalError) -> Self {
        Self(e)
    }
}

impl From<CampaignError> for ApprovalApiError {
    fn from(e: CampaignError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApprovalApiError {
    fn into_response(self) -> Response {
        match self.0 {
            ApprovalError::Campaign(e) => ApiError(e).into_response(),
            e => {
                let mut body = json!({"error": e.to_string()});
                if let ApprovalError::NotYourStep { awaiting_org, .. } = e {
                    body["awaiting_org"] = json!(awaiting_org);
                }
                (e.http_status(), Json(body)).into_response()
            }
        }
    }
}

type ApiResult = Result<Json<Value>, ApprovalApiError>;

fn lock<S: IdentityState>(st: &S) -> std::sync::MutexGuard<'_, Campaigns> {
    st.campaigns()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

const fn object(kind: SubjectKind) -> Object {
    match kind {
        SubjectKind::Campaign => Object::Campaign,
        SubjectKind::Activity => Object::Activity,
        SubjectKind::Task => Object::Task,
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn act<S: IdentityState>(
    st: &S,
    caller: &Caller,
    subject: Subject,
    action: Action,
    body: &[u8],
) -> ApiResult {
    let comment = comment(body)?;
    match action {
        Action::Submit | Action::Revise => caller.require(identity::Action::Plan)?,
        Action::Cancel => {
            caller.require_any(&[identity::Action::Plan, identity::Action::Operate])?;
        }
        // The chain decides (approver role, the step's organisation, not the submitter).
        Action::Approve | Action::Reject => {}
        Action::File => {
            return Err(CampaignError::invalid("action", "file steps pass by themselves").into());
        }
    }
    let actor = Actor {
        user_id: caller.user_id,
        user: caller.user.clone(),
        org_id: caller.org_id,
        can_approve: caller.may(identity::Action::Approve),
    };
    let mut c = lock(st);
    let org = identity::ensure_visible(&c.conn, caller, object(subject.kind()), subject.id())?;
    let now = now();
    let status = match action {
        Action::Submit => {
            let ancestry = identity::ancestry(&c.conn, org)?;
            approval::submit(&mut c.conn, subject, &ancestry, &actor, now, &comment)?
        }
        Action::Approve => approval::approve(&mut c.conn, subject, &actor, now, &comment)?,
        Action::Reject => approval::reject(&mut c.conn, subject, &actor, now, &comment)?,
        Action::Revise => approval::revise(&mut c.conn, subject, &actor, now, &comment)?,
        Action::Cancel | Action::File => {
            approval::cancel(&mut c.conn, subject, &actor, now, &comment)?
        }
    };
    Ok(Json(json!(status)))
}

/// The optional `{"comment": "…"}` body (empty body: no comment).
fn comment(body: &[u8]) -> Result<String, ApprovalApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        comment: String,
    }
    serde_json::from_slice::<Body>(body)
        .map(|b| b.comment)
        .map_err(|e| CampaignError::invalid("body", e.to_string()).into())
}

fn show<S: IdentityState>(st: &S, caller: &Caller, subject: Subject) -> ApiResult {
    caller.require(identity::Action::Read)?;
    let c = lock(st);
    identity::ensure_visible(&c.conn, caller, object(subject.kind()), subject.id())?;
    Ok(Json(json!({
        "status": approval::status(&c.conn, subject)?,
        "trail": approval::trail(&c.conn, subject)?,
    })))
}

/// The organisation when the caller sees it; 404 like an unknown one otherwise.
fn visible_org(caller: &Caller, org: i64) -> Result<(), ApprovalApiError> {
    if caller.sees_org(org) {
        Ok(())
    } else {
        Err(CampaignError::NotFound {
            what: "org",
            id: org,
        }
        .into())
    }
}

async fn get_chain<S: IdentityState>(
    State(st): State<S>,
    caller: Caller,
    Path((org, kind)): Path<(i64, String)>,
) -> ApiResult {
    caller.require(identity::Action::Read)?;
    visible_org(&caller, org)?;
    let kind: SubjectKind = kind.parse()?;
    let c = lock(&st);
    Ok(Json(json!(approval::chain(&c.conn, org, kind)?)))
}

async fn put_chain<S: IdentityState>(
    State(st): State<S>,
    caller: Caller,
    Path((org, kind)): Path<(i64, String)>,
    body: Bytes,
) -> ApiResult {
    caller.require(identity::Action::Admin)?;
    visible_org(&caller, org)?;
    let kind: SubjectKind = kind.parse()?;
    let steps: Value = serde_json::from_slice(&body).map_err(|e| ApprovalError::InvalidChain {
        at: "steps".into(),
        reason: format!("not JSON: {e}"),
    })?;
    let c = lock(&st);
    Ok(Json(json!(approval::set_chain(
        &c.conn,
        org,
        kind,
        &steps,
        now()
    )?)))
}
