//! Approval chains (报批 / 报备) for campaigns, activities and tasks.
//!
//! An organisation configures, per subject kind, an ordered chain of steps. Each step names a
//! level relative to the subject's organisation (`self`, `parent`, `grandparent`, `root`) and
//! an action:
//! - `approve` (报批): the subject waits until an approver of that organisation approves;
//! - `file` (报备): the subject is recorded as filed with that organisation for its
//!   information and the step passes at once (trail actor `system`).
//!
//! With nothing configured for the subject's organisation the chain is one `approve` step at
//! `self`. A chain must hold at least one `approve` step, so nothing is approved by filing
//! alone.
//!
//! ```text
//!            submit (round n+1, step 0)      approve/file … last step
//! draft ───────────────────────────▶ pending ───────────────────────▶ approved
//!   ▲                                  │ reject (reason)
//!   └──────────── revise ──────────── rejected
//! draft | pending | rejected | approved (not yet sending) ── cancel ──▶ cancelled
//! ```
//!
//! Invariants:
//! - Submitting resolves the chain against the ancestry the caller passes (the subject's
//!   organisation, its parent, … up to the root) and freezes it for the round in
//!   `approval_rounds`: reconfiguring a chain never moves a subject already pending.
//! - Only an [`Actor`] with `can_approve` whose organisation is the current step's may approve
//!   or reject; never the submitter of the round; never twice in one round.
//! - The state is stored on the subject (`tasks.state` through [`lifecycle`], the
//!   `approval_state` column of `campaigns` and `activities`); the trail (`approval_trail`)
//!   is written in the same SQLite transaction, and the round, the current step and the
//!   submitter are read back from it, so state and trail never disagree.
//! - A task maps its chain onto [`TaskState`]: pending = `submitted`, rejected = `rejected`,
//!   chain complete = `approved` (and every later state). [`lifecycle::transition`] refuses
//!   those moves and lets approved → scheduled happen only when [`unapproved_parent`] finds
//!   the task's activity and campaign approved.
//!
//! Access (who may act on which organisation's objects, roles) is the HTTP layer's job; it
//! builds the [`Actor`] from the authenticated caller. Errors map to HTTP statuses with
//! [`ApprovalError::http_status`].

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::{CampaignError, StoreError};
use crate::lifecycle::{self, TaskState};

/// Schema of approval chains: the approval state of campaigns and activities, configured
/// chains, frozen per-round chains and the trail.
///
/// Campaigns and activities that already had a task approved under the one-level approval
/// this replaces are marked approved, so their tasks keep sending; a task left `submitted`
/// has no chain to wait in and goes back to `draft` (recorded) to be submitted again.
pub const APPROVAL_SCHEMA: &str = r#"
    ALTER TABLE campaigns ADD COLUMN approval_state TEXT NOT NULL DEFAULT 'draft';
    ALTER TABLE activities ADD COLUMN approval_state TEXT NOT NULL DEFAULT 'draft';
    UPDATE activities SET approval_state = 'approved' WHERE id IN (SELECT activity_id FROM tasks
        WHERE state IN ('approved', 'scheduled', 'running', 'paused', 'completed'));
    UPDATE campaigns SET approval_state = 'approved' WHERE id IN (SELECT campaign_id
        FROM activities WHERE approval_state = 'approved');
    INSERT INTO transitions (task_id, from_state, to_state, actor, at, note)
        SELECT id, 'submitted', 'draft', 'system', CAST(strftime('%s', 'now') AS INTEGER),
               'approval chains introduced: submit again'
        FROM tasks WHERE state = 'submitted';
    UPDATE tasks SET state = 'draft' WHERE state = 'submitted';
    CREATE TABLE approval_chains (org_id INTEGER NOT NULL, kind TEXT NOT NULL,
        steps TEXT NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, kind)) WITHOUT ROWID;
    CREATE TABLE approval_rounds (kind TEXT NOT NULL, subject_id INTEGER NOT NULL,
        round INTEGER NOT NULL, chain TEXT NOT NULL,
        PRIMARY KEY (kind, subject_id, round)) WITHOUT ROWID;
    CREATE TABLE approval_trail (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,
        subject_id INTEGER NOT NULL, round INTEGER NOT NULL, step INTEGER, org_id INTEGER,
        action TEXT NOT NULL, actor_id INTEGER, actor TEXT NOT NULL, at INTEGER NOT NULL,
        comment TEXT NOT NULL DEFAULT '');
    CREATE INDEX approval_trail_subject ON approval_trail(kind, subject_id, id);
"#;

/// The most steps a chain may have (a province tree is a handful of levels deep).
pub const MAX_STEPS: usize = 16;

/// Trail actor of steps that pass without a person (`file`).
pub const SYSTEM_ACTOR: &str = "system";

/// Who acts (built by the HTTP layer from the authenticated caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: i64,
    /// Login name, written to the trail.
    pub user: String,
    pub org_id: i64,
    /// Whether the user holds the approver role.
    pub can_approve: bool,
}

/// What is approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Campaign(i64),
    Activity(i64),
    Task(i64),
}

impl Subject {
    /// Kind of the subject.
    pub const fn kind(self) -> SubjectKind {
        match self {
            Self::Campaign(_) => SubjectKind::Campaign,
            Self::Activity(_) => SubjectKind::Activity,
            Self::Task(_) => SubjectKind::Task,
        }
    }

    /// Row id of the subject.
    pub const fn id(self) -> i64 {
        match self {
            Self::Campaign(id) | Self::Activity(id) | Self::Task(id) => id,
        }
    }
}

/// Kind of subject; chains are configured per organisation and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Campaign,
    Activity,
    Task,
}

impl SubjectKind {
    /// All kinds.
    pub const ALL: [Self; 3] = [Self::Campaign, Self::Activity, Self::Task];

    /// Stable name (SQLite, API, chain routes).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Campaign => "campaign",
            Self::Activity => "activity",
            Self::Task => "task",
        }
    }

    /// Plural used in HTTP paths (`/campaigns/{id}/…`).
    pub const fn plural(self) -> &'static str {
        match self {
            Self::Campaign => "campaigns",
            Self::Activity => "activities",
            Self::Task => "tasks",
        }
    }

    /// The subject of this kind with row id `id`.
    pub const fn subject(self, id: i64) -> Subject {
        match self {
            Self::Campaign => Subject::Campaign(id),
            Self::Activity => Subject::Activity(id),
            Self::Task => Subject::Task(id),
        }
    }
}

impl FromStr for SubjectKind {
    type Err = ApprovalError;
    /// Accepts the singular and the plural (`task`, `tasks`).
    fn from_str(s: &str) -> Result<Self, ApprovalError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.plural() == s)
            .ok_or_else(|| ApprovalError::InvalidChain {
                at: "kind".into(),
                reason: format!("unknown subject kind {s:?} (campaign, activity, task)"),
            })
    }
}

/// `Display` of the enums whose one text form is `as_str` (trail rows, the API, error
/// messages): written once so the shown name can never drift from the stored one.
macro_rules! display_as_str {
    ($($t:ty),+) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

display_as_str!(SubjectKind, ApprovalState, Level, Action);

/// Approval state of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Draft,
    Pending,
    Rejected,
    Approved,
    Cancelled,
}

impl ApprovalState {
    /// All states.
    pub const ALL: [Self; 5] = [
        Self::Draft,
        Self::Pending,
        Self::Rejected,
        Self::Approved,
        Self::Cancelled,
    ];

    /// Stable name (the `approval_state` columns, the API).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Pending => "pending",
            Self::Rejected => "rejected",
            Self::Approved => "approved",
            Self::Cancelled => "cancelled",
        }
    }

    /// The approval state a task's lifecycle state stands for: every state after `approved`
    /// means the chain completed.
    pub const fn of_task(s: TaskState) -> Self {
        match s {
            TaskState::Draft => Self::Draft,
            TaskState::Submitted => Self::Pending,
            TaskState::Rejected => Self::Rejected,
            TaskState::Approved
            | TaskState::Scheduled
            | TaskState::Running
            | TaskState::Paused
            | TaskState::Completed => Self::Approved,
            TaskState::Cancelled => Self::Cancelled,
        }
    }
}

impl FromStr for ApprovalState {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self, CampaignError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| CampaignError::invalid("approval_state", format!("unknown state {s:?}")))
    }
}

/// Where a step's organisation sits relative to the subject's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    #[serde(rename = "self")]
    Own,
    Parent,
    Grandparent,
    Root,
}

impl Level {
    const ALL: [Self; 4] = [Self::Own, Self::Parent, Self::Grandparent, Self::Root];

    /// Name in chain JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Own => "self",
            Self::Parent => "parent",
            Self::Grandparent => "grandparent",
            Self::Root => "root",
        }
    }

    /// The organisation at this level of `ancestry` (subject's org first, root last).
    fn resolve(self, ancestry: &[i64]) -> Option<i64> {
        match self {
            Self::Own => ancestry.first().copied(),
            Self::Parent => ancestry.get(1).copied(),
            Self::Grandparent => ancestry.get(2).copied(),
            Self::Root => ancestry.last().copied(),
        }
    }
}

/// What a step asks of its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// 报批: blocks until an approver of the organisation approves.
    Approve,
    /// 报备: recorded for the organisation's information; passes at once.
    File,
}

impl StepAction {
    const ALL: [Self; 2] = [Self::Approve, Self::File];

    /// Name in chain JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::File => "file",
        }
    }
}

/// One configured step: a level relative to the subject's organisation and an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainStep {
    pub level: Level,
    pub action: StepAction,
}

/// One step of a round's frozen chain: the organisation it resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedStep {
    pub level: Level,
    pub org_id: i64,
    pub action: StepAction,
}

/// An organisation's chain for one kind, and whether it was configured or is the default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    pub steps: Vec<ChainStep>,
    pub configured: bool,
}

/// The chain used when an organisation configured none: its own approvers approve.
pub const DEFAULT_CHAIN: [ChainStep; 1] = [ChainStep {
    level: Level::Own,
    action: StepAction::Approve,
}];

/// What happened, as recorded in the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Submit,
    Approve,
    File,
    Reject,
    Revise,
    Cancel,
}

impl Action {
    const ALL: [Self; 6] = [
        Self::Submit,
        Self::Approve,
        Self::File,
        Self::Reject,
        Self::Revise,
        Self::Cancel,
    ];

    /// Stable name (trail rows, API).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Approve => "approve",
            Self::File => "file",
            Self::Reject => "reject",
            Self::Revise => "revise",
            Self::Cancel => "cancel",
        }
    }

    /// Whether the action passes a step of the chain.
    pub const fn passes_step(self) -> bool {
        matches!(self, Self::Approve | Self::File)
    }
}

/// One trail row: who did what to which step, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrailEntry {
    /// Submission round (1 for the first submit; 0 before any, e.g. cancelling a draft).
    pub round: u32,
    /// Chain step acted on (approve, file, reject); `None` for submit, revise, cancel.
    pub step: Option<u32>,
    /// The step's organisation (approve, file, reject), the subject's organisation (submit)
    /// or the actor's (revise, cancel).
    pub org_id: Option<i64>,
    pub action: Action,
    /// `None` for the system (`file` steps).
    pub actor_id: Option<i64>,
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
    pub comment: String,
}

/// Where a subject stands in its chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub state: ApprovalState,
    /// Current round (0 before the first submit).
    pub round: u32,
    /// Steps of the round's chain passed so far (= chain length when approved).
    pub step: u32,
    /// Organisation whose approvers the subject waits for (pending only).
    pub awaiting_org: Option<i64>,
    /// Login of the round's submitter.
    pub submitted_by: Option<String>,
    /// User id of the round's submitter.
    pub submitted_by_id: Option<i64>,
    /// The round's frozen chain (empty before the first submit).
    pub chain: Vec<ResolvedStep>,
}

/// Errors of approval operations. [`ApprovalError::http_status`] maps them for the API.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// Store failure, unknown subject, or a lifecycle refusal.
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// The action is not allowed from the subject's current state (submit from pending,
    /// revise from draft, cancel once sending, …).
    #[error("{kind} {id} is {state}: cannot {action}")]
    WrongState {
        kind: SubjectKind,
        id: i64,
        action: Action,
        state: ApprovalState,
    },
    /// Approve or reject on a subject that is not pending in its chain.
    #[error("{kind} {id} is {state}, not pending approval")]
    NotPending {
        kind: SubjectKind,
        id: i64,
        state: ApprovalState,
    },
    /// The actor does not hold the approver role.
    #[error("user {user_id} is not an approver")]
    NotApprover { user_id: i64 },
    /// The current step waits for another organisation's approvers.
    #[error("step {step} awaits organisation {awaiting_org}, not organisation {org_id}")]
    NotYourStep {
        step: u32,
        awaiting_org: i64,
        org_id: i64,
    },
    /// The actor submitted this round and may not decide on it (approve or reject).
    #[error("user {user_id} cannot approve or reject their own submission")]
    SelfApproval { user_id: i64 },
    /// The actor already approved an earlier step of this round.
    #[error("user {user_id} already approved step {step} of this round")]
    AlreadyApproved { user_id: i64, step: u32 },
    /// Reject without a reason.
    #[error("reject needs a reason")]
    ReasonRequired,
    /// A task's activity or campaign is not approved (scheduling is refused).
    #[error("{kind} {id} is not approved")]
    ParentNotApproved { kind: SubjectKind, id: i64 },
    /// Cancelling an approved campaign or activity while one of its tasks is sending.
    #[error("{kind} {id}: task {task} is sending; stop it first")]
    Sending {
        kind: SubjectKind,
        id: i64,
        task: i64,
    },
    /// A chain configuration (or kind) is invalid; `at` names the step and field
    /// (`steps[1].level`).
    #[error("chain {at}: {reason}")]
    InvalidChain { at: String, reason: String },
    /// A chain step names a level the subject's ancestry does not reach.
    #[error(
        "chain step {step} ({level}) needs an organisation the ancestry of {depth} does not have"
    )]
    LevelMissing {
        step: u32,
        level: Level,
        depth: usize,
    },
}

impl ApprovalError {
    /// HTTP status for the API: 403 for who may not act, 409 for the wrong state, 422 for
    /// bad input, and the campaign API's mapping for wrapped errors.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Self::NotApprover { .. }
            | Self::NotYourStep { .. }
            | Self::SelfApproval { .. }
            | Self::AlreadyApproved { .. } => StatusCode::FORBIDDEN,
            Self::WrongState { .. }
            | Self::NotPending { .. }
            | Self::ParentNotApproved { .. }
            | Self::Sending { .. } => StatusCode::CONFLICT,
            Self::ReasonRequired | Self::InvalidChain { .. } | Self::LevelMissing { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Campaign(e) => match e {
                CampaignError::Unauthenticated => StatusCode::UNAUTHORIZED,
                CampaignError::Forbidden { .. } | CampaignError::SelfApproval { .. } => {
                    StatusCode::FORBIDDEN
                }
                CampaignError::NotFound { .. } => StatusCode::NOT_FOUND,
                CampaignError::IllegalTransition { .. } | CampaignError::NotSendable { .. } => {
                    StatusCode::CONFLICT
                }
                CampaignError::Parse(_)
                | CampaignError::Eval(_)
                | CampaignError::Invalid { .. }
                | CampaignError::Csv(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CampaignError::Store(_) | CampaignError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
                CampaignError::Gateway(_) => StatusCode::BAD_GATEWAY,
            },
        }
    }
}

impl From<rusqlite::Error> for ApprovalError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Campaign(e.into())
    }
}

type Result<T, E = ApprovalError> = std::result::Result<T, E>;

// ---- chain configuration ----

/// Validates a chain given as JSON (`[{"level": "self", "action": "approve"}, …]`).
///
/// # Errors
/// [`ApprovalError::InvalidChain`] naming the step and field.
pub fn parse_chain(steps: &Value) -> Result<Vec<ChainStep>> {
    let bad = |at: String, reason: String| ApprovalError::InvalidChain { at, reason };
    let list = steps
        .as_array()
        .ok_or_else(|| bad("steps".into(), "must be an array of steps".into()))?;
    if list.is_empty() || list.len() > MAX_STEPS {
        return Err(bad(
            "steps".into(),
            format!("needs 1 to {MAX_STEPS} steps, got {}", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let obj = v
            .as_object()
            .ok_or_else(|| bad(format!("steps[{i}]"), "must be an object".into()))?;
        if let Some(k) = obj.keys().find(|k| *k != "level" && *k != "action") {
            return Err(bad(
                format!("steps[{i}].{k}"),
                "unknown field (level, action)".into(),
            ));
        }
        let level = pick(obj, i, "level", &Level::ALL, Level::as_str)?;
        let action = pick(obj, i, "action", &StepAction::ALL, StepAction::as_str)?;
        out.push(ChainStep { level, action });
    }
    if !out.iter().any(|s| s.action == StepAction::Approve) {
        return Err(bad(
            "steps".into(),
            "needs at least one approve step (filing alone approves nothing)".into(),
        ));
    }
    Ok(out)
}

fn pick<T: Copy>(
    obj: &serde_json::Map<String, Value>,
    i: usize,
    field: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T> {
    let names: Vec<_> = all.iter().map(|t| name(*t)).collect();
    let v = obj.get(field).ok_or_else(|| ApprovalError::InvalidChain {
        at: format!("steps[{i}].{field}"),
        reason: format!("missing (one of {})", names.join(", ")),
    })?;
    v.as_str()
        .and_then(|s| all.iter().copied().find(|t| name(*t) == s))
        .ok_or_else(|| ApprovalError::InvalidChain {
            at: format!("steps[{i}].{field}"),
            reason: format!("{v} is not one of {}", names.join(", ")),
        })
}

/// Validates and stores `org_id`'s chain for `kind`; returns the parsed steps. Subjects
/// already pending keep the chain frozen at their submit.
///
/// # Errors
/// [`ApprovalError::InvalidChain`] (nothing stored), store errors.
pub fn set_chain(
    conn: &Connection,
    org_id: i64,
    kind: SubjectKind,
    steps: &Value,
    now: i64,
) -> Result<Vec<ChainStep>> {
    let parsed = parse_chain(steps)?;
    conn.execute(
        "INSERT INTO approval_chains (org_id, kind, steps, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (org_id, kind) DO UPDATE SET steps = excluded.steps,
             updated_at = excluded.updated_at",
        params![org_id, kind.as_str(), to_json(&parsed), now],
    )?;
    Ok(parsed)
}

/// `org_id`'s chain for `kind`, or [`DEFAULT_CHAIN`] when it configured none.
///
/// # Errors
/// Store errors, a corrupt stored chain.
pub fn chain(conn: &Connection, org_id: i64, kind: SubjectKind) -> Result<Chain> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT steps FROM approval_chains WHERE org_id = ?1 AND kind = ?2",
            params![org_id, kind.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match stored {
        Some(json) => Chain {
            steps: from_json(&json, "approval_chains", org_id)?,
            configured: true,
        },
        None => Chain {
            steps: DEFAULT_CHAIN.to_vec(),
            configured: false,
        },
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Plain structs of enums and integers always serialize.
    serde_json::to_string(v).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, table: &'static str, id: i64) -> Result<T> {
    serde_json::from_str(s)
        .map_err(|source| CampaignError::Store(StoreError::Json { table, id, source }).into())
}

// ---- subject state ----

/// The approval state of `subject`.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown subject.
pub fn state(conn: &Connection, subject: Subject) -> Result<ApprovalState> {
    let id = subject.id();
    match subject {
        Subject::Task(t) => Ok(ApprovalState::of_task(lifecycle::task_state(conn, t)?)),
        Subject::Campaign(_) | Subject::Activity(_) => {
            let table = table(subject.kind());
            let s: Option<String> = conn
                .query_row(
                    &format!("SELECT approval_state FROM {table} WHERE id = ?1"),
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            let s = s.ok_or(CampaignError::NotFound {
                what: subject.kind().as_str(),
                id,
            })?;
            Ok(s.parse()?)
        }
    }
}

fn table(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::Campaign => "campaigns",
        SubjectKind::Activity => "activities",
        SubjectKind::Task => "tasks",
    }
}

/// Moves the stored state and records who and when on the subject; a task moves through
/// [`lifecycle::record`] (history row included).
fn set_state(
    conn: &Connection,
    subject: Subject,
    from: ApprovalState,
    to: ApprovalState,
    actor: &Actor,
    now: i64,
    note: &str,
) -> Result<()> {
    match subject {
        Subject::Task(t) => {
            let from_task = lifecycle::task_state(conn, t)?;
            let to_task = match to {
                ApprovalState::Draft => TaskState::Draft,
                ApprovalState::Pending => TaskState::Submitted,
                ApprovalState::Rejected => TaskState::Rejected,
                ApprovalState::Approved => TaskState::Approved,
                ApprovalState::Cancelled => TaskState::Cancelled,
            };
            debug_assert_eq!(ApprovalState::of_task(from_task), from);
            lifecycle::record(
                conn,
                t,
                from_task,
                to_task,
                &actor.user,
                Some(actor.user_id),
                now,
                note,
            )?;
        }
        Subject::Campaign(id) | Subject::Activity(id) => {
            conn.execute(
                &format!(
                    "UPDATE {} SET approval_state = ?1, updated_by = ?3, updated_at = ?4
                     WHERE id = ?2",
                    table(subject.kind())
                ),
                params![to.as_str(), id, actor.user_id, now],
            )?;
        }
    }
    Ok(())
}

/// The first of a task's campaign and activity that is not approved, if any (campaign
/// first). A task without an activity has no parents.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown task, store errors.
pub fn unapproved_parent(
    conn: &Connection,
    task: i64,
) -> std::result::Result<Option<(SubjectKind, i64)>, CampaignError> {
    let row: Option<Option<(i64, String, i64, String)>> = conn
        .query_row(
            "SELECT a.id, a.approval_state, c.id, c.approval_state FROM tasks t
             LEFT JOIN activities a ON a.id = t.activity_id
             LEFT JOIN campaigns c ON c.id = a.campaign_id WHERE t.id = ?1",
            [task],
            |r| {
                let a: Option<i64> = r.get(0)?;
                match a {
                    None => Ok(None),
                    Some(a) => Ok(Some((a, r.get(1)?, r.get(2)?, r.get(3)?))),
                }
            },
        )
        .optional()?;
    let Some(parents) = row else {
        return Err(CampaignError::NotFound {
            what: "task",
            id: task,
        });
    };
    let Some((activity, a_state, campaign, c_state)) = parents else {
        return Ok(None);
    };
    let approved = ApprovalState::Approved.as_str();
    Ok(if c_state != approved {
        Some((SubjectKind::Campaign, campaign))
    } else if a_state != approved {
        Some((SubjectKind::Activity, activity))
    } else {
        None
    })
}

// ---- trail and status ----

/// The full trail of `subject`, oldest first, every round.
///
/// # Errors
/// Store errors.
pub fn trail(conn: &Connection, subject: Subject) -> Result<Vec<TrailEntry>> {
    trail_since(conn, subject, 0)
}

fn trail_since(conn: &Connection, subject: Subject, round: u32) -> Result<Vec<TrailEntry>> {
    let mut st = conn.prepare_cached(
        "SELECT round, step, org_id, action, actor_id, actor, at, comment FROM approval_trail
         WHERE kind = ?1 AND subject_id = ?2 AND round >= ?3 ORDER BY id",
    )?;
    let rows = st.query_map(params![subject.kind().as_str(), subject.id(), round], |r| {
        Ok((
            TrailEntry {
                round: r.get(0)?,
                step: r.get(1)?,
                org_id: r.get(2)?,
                action: Action::Submit,
                actor_id: r.get(4)?,
                actor: r.get(5)?,
                at: r.get(6)?,
                comment: r.get(7)?,
            },
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut e, action) = row?;
        e.action = Action::ALL
            .into_iter()
            .find(|a| a.as_str() == action)
            .ok_or_else(|| CampaignError::invalid("approval_trail.action", action))?;
        out.push(e);
    }
    Ok(out)
}

/// Where `subject` stands: state, round, step, awaited organisation, submitter, chain.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown subject, store errors.
pub fn status(conn: &Connection, subject: Subject) -> Result<Status> {
    let state = state(conn, subject)?;
    let round: Option<(u32, String)> = conn
        .query_row(
            "SELECT round, chain FROM approval_rounds WHERE kind = ?1 AND subject_id = ?2
             ORDER BY round DESC LIMIT 1",
            params![subject.kind().as_str(), subject.id()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((round, chain_json)) = round else {
        return Ok(Status {
            state,
            round: 0,
            step: 0,
            awaiting_org: None,
            submitted_by: None,
            submitted_by_id: None,
            chain: Vec::new(),
        });
    };
    let chain: Vec<ResolvedStep> = from_json(&chain_json, "approval_rounds", subject.id())?;
    let entries = trail_since(conn, subject, round)?;
    let step = entries.iter().filter(|e| e.action.passes_step()).count() as u32;
    let submit = entries.iter().find(|e| e.action == Action::Submit);
    let awaiting_org = (state == ApprovalState::Pending)
        .then(|| chain.get(step as usize).map(|s| s.org_id))
        .flatten();
    Ok(Status {
        state,
        round,
        step,
        awaiting_org,
        submitted_by: submit.map(|e| e.actor.clone()),
        submitted_by_id: submit.and_then(|e| e.actor_id),
        chain,
    })
}

/// One trail row to write.
struct Entry<'a> {
    subject: Subject,
    round: u32,
    step: Option<u32>,
    org_id: Option<i64>,
    action: Action,
    actor_id: Option<i64>,
    actor: &'a str,
    at: i64,
    comment: &'a str,
}

impl<'a> Entry<'a> {
    /// The row of what `actor` did, at no chain step and filed under the actor's
    /// organisation; a submit or a decision on a step overrides `step` and `org_id`.
    fn by(
        actor: &'a Actor,
        subject: Subject,
        round: u32,
        action: Action,
        at: i64,
        comment: &'a str,
    ) -> Self {
        Entry {
            subject,
            round,
            step: None,
            org_id: Some(actor.org_id),
            action,
            actor_id: Some(actor.user_id),
            actor: &actor.user,
            at,
            comment,
        }
    }
}

fn append(conn: &Connection, e: &Entry<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO approval_trail (kind, subject_id, round, step, org_id, action, actor_id,
             actor, at, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        e.subject.kind().as_str(),
        e.subject.id(),
        e.round,
        e.step,
        e.org_id,
        e.action.as_str(),
        e.actor_id,
        e.actor,
        e.at,
        e.comment,
    ])?;
    Ok(())
}

// ---- actions ----

/// Submits (or resubmits) `subject`: draft → pending at step 0 of a new round, its chain
/// resolved against `ancestry` (the subject's organisation, its parent, … the root) and
/// frozen. Leading `file` steps pass at once.
///
/// # Errors
/// [`ApprovalError::WrongState`] unless draft, [`ApprovalError::LevelMissing`] when a step's
/// level is above the root, [`ApprovalError::InvalidChain`] for an empty ancestry; nothing
/// changes on error.
pub fn submit(
    conn: &mut Connection,
    subject: Subject,
    ancestry: &[i64],
    actor: &Actor,
    now: i64,
    comment: &str,
) -> Result<Status> {
    let tx = conn.transaction()?;
    let from = state(&tx, subject)?;
    if from != ApprovalState::Draft {
        return Err(wrong_state(subject, Action::Submit, from));
    }
    let Some(&own_org) = ancestry.first() else {
        return Err(ApprovalError::InvalidChain {
            at: "ancestry".into(),
            reason: "empty: needs the subject's organisation first".into(),
        });
    };
    let configured = chain(&tx, own_org, subject.kind())?;
    let resolved = configured
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let org_id = s
                .level
                .resolve(ancestry)
                .ok_or(ApprovalError::LevelMissing {
                    step: i as u32,
                    level: s.level,
                    depth: ancestry.len(),
                })?;
            Ok(ResolvedStep {
                level: s.level,
                org_id,
                action: s.action,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let round: u32 = tx.query_row(
        "SELECT COALESCE(MAX(round), 0) + 1 FROM approval_rounds
         WHERE kind = ?1 AND subject_id = ?2",
        params![subject.kind().as_str(), subject.id()],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO approval_rounds (kind, subject_id, round, chain) VALUES (?1, ?2, ?3, ?4)",
        params![
            subject.kind().as_str(),
            subject.id(),
            round,
            to_json(&resolved)
        ],
    )?;
    append(
        &tx,
        &Entry {
            org_id: Some(own_org),
            ..Entry::by(actor, subject, round, Action::Submit, now, comment)
        },
    )?;
    set_state(
        &tx,
        subject,
        from,
        ApprovalState::Pending,
        actor,
        now,
        note(Action::Submit, comment),
    )?;
    pass_filings(&tx, subject, round, &resolved, 0, actor, now)?;
    commit(tx, subject)
}

/// Approves the current step of `subject`'s chain; the following `file` steps pass at once,
/// and passing the last step makes the subject approved.
///
/// # Errors
/// [`ApprovalError::NotPending`], [`ApprovalError::NotApprover`],
/// [`ApprovalError::SelfApproval`], [`ApprovalError::NotYourStep`],
/// [`ApprovalError::AlreadyApproved`]; nothing changes on error.
pub fn approve(
    conn: &mut Connection,
    subject: Subject,
    actor: &Actor,
    now: i64,
    comment: &str,
) -> Result<Status> {
    let tx = conn.transaction()?;
    let (status, step) = decidable(&tx, subject, actor)?;
    let entries = trail_since(&tx, subject, status.round)?;
    if let Some(prev) = entries
        .iter()
        .find(|e| e.action == Action::Approve && e.actor_id == Some(actor.user_id))
    {
        return Err(ApprovalError::AlreadyApproved {
            user_id: actor.user_id,
            step: prev.step.unwrap_or_default(),
        });
    }
    append(
        &tx,
        &Entry {
            step: Some(status.step),
            org_id: Some(step.org_id),
            ..Entry::by(actor, subject, status.round, Action::Approve, now, comment)
        },
    )?;
    pass_filings(
        &tx,
        subject,
        status.round,
        &status.chain,
        status.step as usize + 1,
        actor,
        now,
    )?;
    commit(tx, subject)
}

/// Rejects `subject` at its current step with `reason` (pending → rejected).
///
/// # Errors
/// [`ApprovalError::ReasonRequired`] for a blank reason, and the refusals of [`approve`]
/// except [`ApprovalError::AlreadyApproved`]; nothing changes on error.
pub fn reject(
    conn: &mut Connection,
    subject: Subject,
    actor: &Actor,
    now: i64,
    reason: &str,
) -> Result<Status> {
    let tx = conn.transaction()?;
    let (status, step) = decidable(&tx, subject, actor)?;
    if reason.trim().is_empty() {
        return Err(ApprovalError::ReasonRequired);
    }
    append(
        &tx,
        &Entry {
            step: Some(status.step),
            org_id: Some(step.org_id),
            ..Entry::by(actor, subject, status.round, Action::Reject, now, reason)
        },
    )?;
    set_state(
        &tx,
        subject,
        ApprovalState::Pending,
        ApprovalState::Rejected,
        actor,
        now,
        note(Action::Reject, reason),
    )?;
    commit(tx, subject)
}

/// Takes a rejected subject back to draft for editing; [`submit`] then starts a new round.
///
/// # Errors
/// [`ApprovalError::WrongState`] unless rejected.
pub fn revise(
    conn: &mut Connection,
    subject: Subject,
    actor: &Actor,
    now: i64,
    comment: &str,
) -> Result<Status> {
    simple(
        conn,
        subject,
        actor,
        now,
        comment,
        Action::Revise,
        &[ApprovalState::Rejected],
        ApprovalState::Draft,
        |_, _| Ok(()),
    )
}

/// Cancels `subject` from draft, pending, rejected or approved-but-not-sending: a task must
/// not be scheduled yet, and an approved campaign or activity must have no task sending.
///
/// # Errors
/// [`ApprovalError::WrongState`] from any other state, [`ApprovalError::Sending`].
pub fn cancel(
    conn: &mut Connection,
    subject: Subject,
    actor: &Actor,
    now: i64,
    comment: &str,
) -> Result<Status> {
    simple(
        conn,
        subject,
        actor,
        now,
        comment,
        Action::Cancel,
        &[
            ApprovalState::Draft,
            ApprovalState::Pending,
            ApprovalState::Rejected,
            ApprovalState::Approved,
        ],
        ApprovalState::Cancelled,
        not_sending,
    )
}

/// Refuses cancelling what is sending: a task past `approved` (stopping a send is the
/// lifecycle's and the emergency stop's job), a campaign or activity with a sending task.
fn not_sending(conn: &Connection, subject: Subject) -> Result<()> {
    if let Subject::Task(t) = subject {
        let s = lifecycle::task_state(conn, t)?;
        if ApprovalState::of_task(s) == ApprovalState::Approved && s != TaskState::Approved {
            return Err(wrong_state(
                subject,
                Action::Cancel,
                ApprovalState::Approved,
            ));
        }
    } else if let Some(task) = sending_task(conn, subject)? {
        return Err(ApprovalError::Sending {
            kind: subject.kind(),
            id: subject.id(),
            task,
        });
    }
    Ok(())
}

/// A task under a campaign or activity that is scheduled, running or paused.
fn sending_task(conn: &Connection, subject: Subject) -> Result<Option<i64>> {
    let filter = match subject {
        Subject::Campaign(_) => {
            "t.activity_id IN (SELECT id FROM activities WHERE campaign_id = ?1)"
        }
        Subject::Activity(_) => "t.activity_id = ?1",
        Subject::Task(_) => return Ok(None),
    };
    Ok(conn
        .query_row(
            &format!(
                "SELECT t.id FROM tasks t WHERE {filter}
                 AND t.state IN ('scheduled', 'running', 'paused') ORDER BY t.id LIMIT 1"
            ),
            [subject.id()],
            |r| r.get(0),
        )
        .optional()?)
}

/// A state change with no chain step: records it in the trail of the current round.
#[allow(clippy::too_many_arguments)]
fn simple(
    conn: &mut Connection,
    subject: Subject,
    actor: &Actor,
    now: i64,
    comment: &str,
    action: Action,
    allowed: &[ApprovalState],
    to: ApprovalState,
    guard: fn(&Connection, Subject) -> Result<()>,
) -> Result<Status> {
    let tx = conn.transaction()?;
    let status = status(&tx, subject)?;
    if !allowed.contains(&status.state) {
        return Err(wrong_state(subject, action, status.state));
    }
    guard(&tx, subject)?;
    append(
        &tx,
        &Entry::by(actor, subject, status.round, action, now, comment),
    )?;
    set_state(
        &tx,
        subject,
        status.state,
        to,
        actor,
        now,
        note(action, comment),
    )?;
    commit(tx, subject)
}

/// Checks that `actor` may decide (approve or reject) the current step; returns the status
/// and that step.
fn decidable(conn: &Connection, subject: Subject, actor: &Actor) -> Result<(Status, ResolvedStep)> {
    let status = status(conn, subject)?;
    if status.state != ApprovalState::Pending {
        return Err(ApprovalError::NotPending {
            kind: subject.kind(),
            id: subject.id(),
            state: status.state,
        });
    }
    if !actor.can_approve {
        return Err(ApprovalError::NotApprover {
            user_id: actor.user_id,
        });
    }
    if status.submitted_by_id == Some(actor.user_id) {
        return Err(ApprovalError::SelfApproval {
            user_id: actor.user_id,
        });
    }
    // Pending always has a step left: the last pass makes the subject approved.
    let step = status
        .chain
        .get(status.step as usize)
        .copied()
        .ok_or_else(|| CampaignError::invalid("approval_rounds", "pending past its last step"))?;
    if step.org_id != actor.org_id {
        return Err(ApprovalError::NotYourStep {
            step: status.step,
            awaiting_org: step.org_id,
            org_id: actor.org_id,
        });
    }
    Ok((status, step))
}

/// Passes the `file` steps from `from` on (trail actor `system`, org filed to) up to the next
/// `approve` step; past the last step the subject becomes approved (history actor `by`, who
/// passed the last person's step).
fn pass_filings(
    conn: &Connection,
    subject: Subject,
    round: u32,
    chain: &[ResolvedStep],
    from: usize,
    by: &Actor,
    now: i64,
) -> Result<()> {
    let mut next = from;
    while let Some(step) = chain.get(next).filter(|s| s.action == StepAction::File) {
        append(
            conn,
            &Entry {
                subject,
                round,
                step: Some(next as u32),
                org_id: Some(step.org_id),
                action: Action::File,
                actor_id: None,
                actor: SYSTEM_ACTOR,
                at: now,
                comment: "",
            },
        )?;
        next += 1;
    }
    if next >= chain.len() {
        set_state(
            conn,
            subject,
            ApprovalState::Pending,
            ApprovalState::Approved,
            by,
            now,
            "approval chain complete",
        )?;
    }
    Ok(())
}

/// Commits an action's transaction and answers with the subject's status as committed (what
/// every action returns), read inside the transaction so it is exactly what was written.
fn commit(tx: rusqlite::Transaction<'_>, subject: Subject) -> Result<Status> {
    let status = status(&tx, subject)?;
    tx.commit()?;
    Ok(status)
}

fn wrong_state(subject: Subject, action: Action, state: ApprovalState) -> ApprovalError {
    ApprovalError::WrongState {
        kind: subject.kind(),
        id: subject.id(),
        action,
        state,
    }
}

/// Note of the lifecycle history row: the comment, or the action when there is none.
fn note(action: Action, comment: &str) -> &str {
    if comment.is_empty() {
        action.as_str()
    } else {
        comment
    }
}

/// Organisations and users for tests: actors must be real users (the subject rows and the
/// task history reference them).
#[cfg(test)]
pub(crate) mod testing {
    use rusqlite::Connection;

    use super::Actor;
    use crate::identity::{self, OrgLevel, Role};

    /// A province (the root, bootstrapped with an admin), a city below it, a county below
    /// that.
    pub(crate) struct Tree {
        pub province: i64,
        pub city: i64,
        pub county: i64,
    }

    pub(crate) fn tree(conn: &mut Connection) -> Tree {
        let b = identity::bootstrap(conn, "Province", "admin", None, None, 0)
            .unwrap()
            .unwrap();
        let city = identity::create_org(conn, "City", Some(b.org), OrgLevel::City).unwrap();
        let county = identity::create_org(conn, "County", Some(city), OrgLevel::County).unwrap();
        Tree {
            province: b.org,
            city,
            county,
        }
    }

    /// A planner, or an approver when `approver`, of `org`.
    pub(crate) fn person(conn: &Connection, name: &str, org: i64, approver: bool) -> Actor {
        let role = if approver {
            Role::Approver
        } else {
            Role::Planner
        };
        let user_id = identity::create_user(conn, name, org, &[role], None, None, 0).unwrap();
        Actor {
            user_id,
            user: name.into(),
            org_id: org,
            can_approve: approver,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::open_in_memory;

    /// planner, two county approvers, a city approver, a province approver.
    fn actors(conn: &Connection, t: &testing::Tree) -> [Actor; 5] {
        let p = |name, org, approver| testing::person(conn, name, org, approver);
        [
            p("planner", t.county, false),
            p("county-a", t.county, true),
            p("county-b", t.county, true),
            p("city", t.city, true),
            p("province", t.province, true),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit(usize),
        Approve(usize),
        Reject(usize, bool),
        Revise(usize),
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..5usize).prop_map(Op::Submit),
            6 => (0..5usize).prop_map(Op::Approve),
            2 => (0..5usize, any::<bool>()).prop_map(|(a, r)| Op::Reject(a, r)),
            2 => (0..5usize).prop_map(Op::Revise),
            1 => (0..5usize).prop_map(Op::Cancel),
        ]
    }

    /// The state the trail implies, for a chain of `len` steps.
    fn replay(trail: &[TrailEntry], len: usize) -> ApprovalState {
        let mut state = ApprovalState::Draft;
        let mut passed = 0;
        for e in trail {
            state = match e.action {
                Action::Submit => {
                    passed = 0;
                    ApprovalState::Pending
                }
                Action::Approve | Action::File => {
                    passed += 1;
                    if passed == len {
                        ApprovalState::Approved
                    } else {
                        ApprovalState::Pending
                    }
                }
                Action::Reject => ApprovalState::Rejected,
                Action::Revise => ApprovalState::Draft,
                Action::Cancel => ApprovalState::Cancelled,
            };
        }
        state
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of actions by anyone: the stored state is the trail's, refusals
        /// change nothing, and "approved" always means every step passed in order, each
        /// approve step by a distinct approver of its organisation who did not submit.
        #[test]
        fn state_follows_the_trail_and_approval_needs_every_step(
            ops in proptest::collection::vec(op(), 1..40)
        ) {
            let mut c = open_in_memory().unwrap();
            let tree = testing::tree(&mut c);
            let actors = actors(&c, &tree);
            let ancestry = [tree.county, tree.city, tree.province];
            set_chain(&c, tree.county, SubjectKind::Task, &serde_json::json!([
                {"level": "self", "action": "approve"},
                {"level": "self", "action": "approve"},
                {"level": "parent", "action": "file"},
                {"level": "root", "action": "approve"},
            ]), 0).unwrap();
            let len = 4;
            let t = Subject::Task(lifecycle::create_task(&c, None, "t", 0).unwrap());
            for (at, op) in ops.into_iter().enumerate() {
                let at = at as i64;
                let before = (status(&c, t).unwrap(), trail(&c, t).unwrap());
                let r = match op {
                    Op::Submit(a) => submit(&mut c, t, &ancestry, &actors[a], at, ""),
                    Op::Approve(a) => approve(&mut c, t, &actors[a], at, ""),
                    Op::Reject(a, reason) => {
                        reject(&mut c, t, &actors[a], at, if reason { "why" } else { "" })
                    }
                    Op::Revise(a) => revise(&mut c, t, &actors[a], at, ""),
                    Op::Cancel(a) => cancel(&mut c, t, &actors[a], at, ""),
                };
                let st = status(&c, t).unwrap();
                let tr = trail(&c, t).unwrap();
                if r.is_err() {
                    prop_assert_eq!(&before, &(st.clone(), tr.clone()));
                }
                prop_assert_eq!(st.state, replay(&tr, len));
                let history = lifecycle::history(&c, t.id()).unwrap();
                if let Some(last) = history.last() {
                    prop_assert_eq!(ApprovalState::of_task(last.to), st.state);
                }
                if st.state == ApprovalState::Pending {
                    prop_assert_eq!(st.chain[st.step as usize].action, StepAction::Approve);
                }
                if st.state == ApprovalState::Approved {
                    let round: Vec<_> = tr.iter().filter(|e| e.round == st.round).collect();
                    let submitter = round[0].actor_id;
                    prop_assert_eq!(round[0].action, Action::Submit);
                    let passes: Vec<_> = round.iter().filter(|e| e.action.passes_step()).collect();
                    prop_assert_eq!(passes.len(), len);
                    let mut approvers = Vec::new();
                    for (i, (e, step)) in passes.iter().zip(&st.chain).enumerate() {
                        prop_assert_eq!(e.step, Some(i as u32));
                        prop_assert_eq!(e.org_id, Some(step.org_id));
                        match step.action {
                            StepAction::File => prop_assert_eq!(e.action, Action::File),
                            StepAction::Approve => {
                                prop_assert_eq!(e.action, Action::Approve);
                                prop_assert_ne!(e.actor_id, submitter);
                                let who = actors.iter().find(|a| Some(a.user_id) == e.actor_id);
                                prop_assert!(who.is_some_and(|a| a.can_approve && a.org_id == step.org_id));
                                prop_assert!(!approvers.contains(&e.actor_id));
                                approvers.push(e.actor_id);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_schema_upgrade_keeps_approved_work_sendable() {
        // Build the schema as it was before this migration, whatever its number.
        let pos = crate::store::MIGRATIONS
            .iter()
            .position(|m| *m == APPROVAL_SCHEMA)
            .expect("approval schema is a migration");
        let c = Connection::open_in_memory().unwrap();
        for m in &crate::store::MIGRATIONS[..pos] {
            c.execute_batch(m).unwrap();
        }
        c.execute_batch(
            "INSERT INTO campaigns (id, name, created_at) VALUES (1, 'old', 0), (2, 'new', 0);
             INSERT INTO activities (id, campaign_id, name) VALUES (1, 1, 'a'), (2, 2, 'b');
             INSERT INTO tasks (id, activity_id, name, state, created_at) VALUES
                 (1, 1, 'running', 'running', 0), (2, 2, 'waiting', 'submitted', 0);",
        )
        .unwrap();
        c.execute_batch(APPROVAL_SCHEMA).unwrap();
        assert_eq!(
            state(&c, Subject::Campaign(1)).unwrap(),
            ApprovalState::Approved
        );
        assert_eq!(
            state(&c, Subject::Activity(1)).unwrap(),
            ApprovalState::Approved
        );
        assert_eq!(
            state(&c, Subject::Campaign(2)).unwrap(),
            ApprovalState::Draft
        );
        assert_eq!(unapproved_parent(&c, 1).unwrap(), None);
        // The waiting task has no chain to wait in: back to draft, recorded.
        assert_eq!(state(&c, Subject::Task(2)).unwrap(), ApprovalState::Draft);
        let h = lifecycle::history(&c, 2).unwrap();
        assert_eq!(
            (h[0].from, h[0].to),
            (TaskState::Submitted, TaskState::Draft)
        );
    }
}
