//! The approver's inbox: what waits for the caller's decision, with what an approver needs
//! to decide without opening five pages (the console's Approvals page reads it). Mount
//! [`router`] under `/v1/campaign` next to [`crate::approval_api::router`].
//!
//! | method | path | role | answer |
//! |---|---|---|---|
//! | GET | `/approvals/inbox` | read | `{"items":[InboxItem]}` |
//!
//! An item is a pending campaign, activity or task, visible to the caller, whose current
//! chain step awaits the caller's organisation, that the caller did not submit, for a
//! caller with the approver role (anyone else gets an empty list: the same rules as
//! [`crate::approval::approve`], so what the inbox offers can be approved). A task's item
//! carries its bulk sends: segment and its size, channel, lane, contact caps and windows,
//! exclusion lists named, schedule (slices, timezone) and a few sample messages rendered
//! from the template for members of the segment; a triggered task's item carries its
//! trigger instead.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::Connection;
use serde::Serialize;
use serde_json::{Value, json};

use crate::approval::{self, ApprovalError, Subject, SubjectKind, TrailEntry};
use crate::approval_api::ApprovalApiError;
use crate::error::CampaignError;
use crate::identity::{Action, Caller, IdentityState, Scope};
use crate::launch::{self, BulkSpec};
use crate::segment;
use crate::service::Campaigns;
use crate::template::Template;

/// Sample messages rendered per bulk send.
pub const SAMPLES: usize = 3;

/// One thing awaiting the caller.
#[derive(Debug, Serialize)]
pub struct InboxItem {
    pub kind: SubjectKind,
    pub id: i64,
    pub name: String,
    pub org_id: Option<i64>,
    pub status: approval::Status,
    pub trail: Vec<TrailEntry>,
    /// A task's bulk sends (empty for campaigns and activities).
    pub bulk: Vec<BulkSummary>,
    /// A triggered task's trigger (event, condition, template, window, limits): what the
    /// approver approves when there is no bulk send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::triggers::Trigger>,
}

/// What a bulk send will do, as an approver reads it.
#[derive(Debug, Serialize)]
pub struct BulkSummary {
    pub id: i64,
    pub segment: i64,
    pub segment_name: String,
    /// Members of the segment (before exclusions, which are applied at launch).
    pub segment_size: u64,
    pub spec: BulkSpec,
    /// `{"msisdn","text"}` for a few members, rendered from the default template.
    pub samples: Vec<Value>,
}

/// The inbox route, for a state that resolves callers.
pub fn router<S>() -> Router<S>
where
    S: IdentityState + Clone + Send + Sync + 'static,
{
    Router::new().route("/approvals/inbox", get(inbox::<S>))
}

async fn inbox<S: IdentityState>(
    State(st): State<S>,
    caller: Caller,
) -> Result<Json<Value>, ApprovalApiError> {
    caller.require(Action::Read)?;
    let c = st
        .campaigns()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(Json(json!({ "items": items(&c, &caller)? })))
}

/// The caller's inbox, oldest object first within each kind.
///
/// # Errors
/// Store failures.
pub fn items(c: &Campaigns, caller: &Caller) -> Result<Vec<InboxItem>, ApprovalError> {
    if !caller.may(Action::Approve) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for kind in SubjectKind::ALL {
        let (table, pending) = match kind {
            SubjectKind::Campaign => ("campaigns", "approval_state = 'pending'"),
            SubjectKind::Activity => ("activities", "approval_state = 'pending'"),
            SubjectKind::Task => ("tasks", "state = 'submitted'"),
        };
        let sql = format!(
            "SELECT t.id, t.name, t.org_id FROM {table} t WHERE t.{pending} AND {} ORDER BY t.id",
            Scope::sql("t")
        );
        let rows = pending_rows(&c.conn, &sql, caller)?;
        for (id, name, org_id) in rows {
            let subject = kind.subject(id);
            let status = approval::status(&c.conn, subject)?;
            if status.awaiting_org != Some(caller.org_id)
                || status.submitted_by_id == Some(caller.user_id)
            {
                continue;
            }
            let (bulk, trigger) = match subject {
                Subject::Task(t) => (
                    bulk_summaries(c, t)?,
                    crate::triggers::of_task(&c.conn, t)?
                        .map(|id| crate::triggers::load(&c.conn, id))
                        .transpose()?,
                ),
                _ => (Vec::new(), None),
            };
            out.push(InboxItem {
                kind,
                id,
                name,
                org_id,
                trail: approval::trail(&c.conn, subject)?,
                status,
                bulk,
                trigger,
            });
        }
    }
    Ok(out)
}

/// Rows `(id, name, org_id)` of one kind's pending objects visible to the caller.
fn pending_rows(
    conn: &Connection,
    sql: &str,
    caller: &Caller,
) -> Result<Vec<(i64, String, Option<i64>)>, CampaignError> {
    let mut q = conn.prepare(sql)?;
    let rows = q
        .query_map(
            rusqlite::named_params! {":scope_visible": caller.scope().visible},
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn bulk_summaries(c: &Campaigns, task: i64) -> Result<Vec<BulkSummary>, CampaignError> {
    let ids: Vec<i64> = {
        let mut q = c
            .conn
            .prepare("SELECT id FROM bulk_sends WHERE task_id = ?1 ORDER BY id")?;
        q.query_map([task], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    ids.into_iter()
        .map(|id| {
            let b = launch::load_bulk(&c.conn, id)?;
            let (segment_name, segment_size) = segment_meta(&c.conn, b.spec.segment)?;
            let members = segment::members(&c.conn, b.spec.segment)?;
            // A template that no longer parses (a column dropped since) shows no samples
            // rather than hiding the item: launch reports the error.
            let samples = match Template::parse(&b.spec.template, &c.table) {
                Ok(tpl) => segment::sample(&c.table, &members, SAMPLES)
                    .into_iter()
                    .filter_map(|row| {
                        let id = c.table.id_of(row.msisdn)?;
                        Some(json!({"msisdn": row.msisdn.to_string(), "text": tpl.render(&c.table, id)}))
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            Ok(BulkSummary {
                id,
                segment: b.spec.segment,
                segment_name,
                segment_size,
                spec: b.spec,
                samples,
            })
        })
        .collect()
}

fn segment_meta(conn: &Connection, id: i64) -> Result<(String, u64), CampaignError> {
    let (name, count): (String, i64) = conn.query_row(
        "SELECT name, count FROM segments WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((name, u64::try_from(count).unwrap_or(0)))
}
