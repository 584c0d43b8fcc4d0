//! Campaign hierarchy and the task state machine.
//!
//! Hierarchy: campaign (营销案) → activity (营销活动) → task (营销任务) → bulk-send task
//! (群发任务, see [`crate::launch`]). A task may exist without an activity (urgent notice).
//!
//! States and allowed transitions (everything else is [`CampaignError::IllegalTransition`]):
//!
//! ```text
//! draft → submitted → approved → scheduled → running ⇄ paused → completed
//!            ↓                                  running/paused → completed
//!         rejected → draft (revise)
//! draft|submitted|rejected|approved|scheduled|running|paused → cancelled
//! ```
//!
//! Two owners move a task:
//! - The approval chain ([`crate::approval`]) owns every move among the states before sending
//!   (draft, submitted, rejected, approved) and their cancellation: `submitted` is "pending in
//!   its chain", and a task reaches `approved` only when the last step of its chain passes.
//!   [`transition`] refuses those moves ([`Blocked::ApprovalChain`]), so no caller can
//!   approve a task around its chain.
//! - [`transition`] owns execution: approved → scheduled → running ⇄ paused → completed, and
//!   cancelling from scheduled/running/paused. "Nothing sends before its chain completes":
//!   approved → scheduled also needs the task's activity and that activity's campaign (when it
//!   has them) approved ([`Blocked::ParentNotApproved`]).
//!
//! Every transition is written to `transitions` with who and when, in the same SQLite
//! transaction as the state change (so history and state never disagree). Only scheduled
//! and running tasks send.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

use crate::approval::{self, SubjectKind};
use crate::error::{CampaignError, Result};

/// Approval / execution state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Draft,
    Submitted,
    Approved,
    Rejected,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl TaskState {
    /// All states (for parsing and docs).
    pub const ALL: [Self; 9] = [
        Self::Draft,
        Self::Submitted,
        Self::Approved,
        Self::Rejected,
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Completed,
        Self::Cancelled,
    ];

    /// Stable lowercase name (stored in SQLite and used by the API).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The transition table.
    pub const fn can_go(self, to: Self) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Draft, Submitted)
                | (Submitted, Approved | Rejected)
                | (Rejected, Draft)
                | (Approved, Scheduled)
                | (Scheduled, Running)
                | (Running, Paused | Completed)
                | (Paused, Running | Completed)
                | (
                    Draft | Submitted | Rejected | Approved | Scheduled | Running | Paused,
                    Cancelled
                )
        )
    }

    /// Whether the move `self → to` belongs to the approval chain ([`crate::approval`]):
    /// every move out of a state before sending, except approved → scheduled.
    pub const fn approval_owned(self, to: Self) -> bool {
        matches!(
            self,
            Self::Draft | Self::Submitted | Self::Rejected | Self::Approved
        ) && !matches!(to, Self::Scheduled)
    }

    /// Whether a task in this state may hand messages to the dispatcher.
    pub const fn may_send(self) -> bool {
        matches!(self, Self::Scheduled | Self::Running)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = CampaignError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| CampaignError::invalid("state", format!("unknown state {s:?}")))
    }
}

/// Why [`transition`] refused a move (carried by [`CampaignError::IllegalTransition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// The state machine has no such edge.
    StateMachine,
    /// The move belongs to the approval chain: submit, approve, reject, revise or cancel
    /// through [`crate::approval`].
    ApprovalChain,
    /// approved → scheduled while the task's activity or campaign is not approved.
    ParentNotApproved { kind: SubjectKind, id: i64 },
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StateMachine => f.write_str("not in the state machine"),
            Self::ApprovalChain => {
                f.write_str("moves before sending go through the approval chain")
            }
            Self::ParentNotApproved { kind, id } => write!(f, "{kind} {id} is not approved"),
        }
    }
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    pub from: TaskState,
    pub to: TaskState,
    pub actor: String,
    /// Unix seconds.
    pub at: i64,
    pub note: String,
}

/// Creates a campaign; returns its id.
///
/// # Errors
/// SQLite failure.
pub fn create_campaign(conn: &Connection, name: &str, now: i64) -> Result<i64> {
    conn.execute(
        "INSERT INTO campaigns (name, created_at) VALUES (?1, ?2)",
        params![name, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Creates an activity under a campaign.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown campaign.
pub fn create_activity(conn: &Connection, campaign: i64, name: &str) -> Result<i64> {
    exists(conn, "campaigns", "campaign", campaign)?;
    conn.execute(
        "INSERT INTO activities (campaign_id, name) VALUES (?1, ?2)",
        params![campaign, name],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Creates a task in `draft` (under an activity, or standalone for urgent notices).
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown activity.
pub fn create_task(conn: &Connection, activity: Option<i64>, name: &str, now: i64) -> Result<i64> {
    if let Some(a) = activity {
        exists(conn, "activities", "activity", a)?;
    }
    conn.execute(
        "INSERT INTO tasks (activity_id, name, state, created_at) VALUES (?1, ?2, 'draft', ?3)",
        params![activity, name, now],
    )?;
    Ok(conn.last_insert_rowid())
}

fn exists(conn: &Connection, table: &str, what: &'static str, id: i64) -> Result<()> {
    let found: Option<i64> = conn
        .query_row(
            &format!("SELECT id FROM {table} WHERE id = ?1"),
            [id],
            |r| r.get(0),
        )
        .optional()?;
    found
        .map(|_| ())
        .ok_or(CampaignError::NotFound { what, id })
}

/// Current state of a task.
///
/// # Errors
/// [`CampaignError::NotFound`] for an unknown task.
pub fn task_state(conn: &Connection, task: i64) -> Result<TaskState> {
    let s: Option<String> = conn
        .query_row("SELECT state FROM tasks WHERE id = ?1", [task], |r| {
            r.get(0)
        })
        .optional()?;
    s.ok_or(CampaignError::NotFound {
        what: "task",
        id: task,
    })?
    .parse()
}

/// Moves a task to `to` along the execution part of the state machine, recording `actor`,
/// `now` and `note` (no authenticated user: the local CLI and the runner; see
/// [`transition_by`]).
///
/// # Errors
/// [`CampaignError::IllegalTransition`] (nothing changes) when the state machine forbids the
/// move, when the approval chain owns it, or when scheduling a task whose activity or
/// campaign is not approved.
pub fn transition(
    conn: &mut Connection,
    task: i64,
    to: TaskState,
    actor: &str,
    now: i64,
    note: &str,
) -> Result<()> {
    transition_by(conn, task, to, actor, None, now, note)
}

/// Moves a task to `to` along the execution part of the state machine on behalf of
/// authenticated user `user` (named `actor`), recording who and when on the transition and
/// on the task (`updated_by`, `updated_at`).
///
/// # Errors
/// [`CampaignError::IllegalTransition`] (nothing changes) when the state machine forbids the
/// move, when the approval chain owns it (submitting, approving — so nobody approves what
/// they submitted, see [`crate::approval`]), or when scheduling a task whose activity or
/// campaign is not approved.
pub fn transition_by(
    conn: &mut Connection,
    task: i64,
    to: TaskState,
    actor: &str,
    user: Option<i64>,
    now: i64,
    note: &str,
) -> Result<()> {
    let tx = conn.transaction()?;
    let from = task_state(&tx, task)?;
    let refuse = |why| CampaignError::IllegalTransition {
        task,
        from,
        to,
        why,
    };
    if !from.can_go(to) {
        return Err(refuse(Blocked::StateMachine));
    }
    if from.approval_owned(to) {
        return Err(refuse(Blocked::ApprovalChain));
    }
    if to == TaskState::Scheduled
        && let Some((kind, id)) = approval::unapproved_parent(&tx, task)?
    {
        return Err(refuse(Blocked::ParentNotApproved { kind, id }));
    }
    record(&tx, task, from, to, actor, user, now, note)?;
    tx.commit()?;
    Ok(())
}

/// Writes the move `from → to` (state, who/when on the task, history row) inside the
/// caller's transaction; `user` is the authenticated user (None: the CLI, the runner).
///
/// The one writer of `tasks.state`: [`transition_by`] and the approval chain both call it
/// after their own checks.
///
/// # Errors
/// [`CampaignError::IllegalTransition`] if the state machine has no such edge.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    conn: &Connection,
    task: i64,
    from: TaskState,
    to: TaskState,
    actor: &str,
    user: Option<i64>,
    now: i64,
    note: &str,
) -> Result<()> {
    if !from.can_go(to) {
        return Err(CampaignError::IllegalTransition {
            task,
            from,
            to,
            why: Blocked::StateMachine,
        });
    }
    conn.execute(
        "UPDATE tasks SET state = ?1, updated_by = COALESCE(?3, updated_by), updated_at = ?4
         WHERE id = ?2",
        params![to.as_str(), task, user, now],
    )?;
    conn.execute(
        "INSERT INTO transitions (task_id, from_state, to_state, actor, at, note, user_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![task, from.as_str(), to.as_str(), actor, now, note, user],
    )?;
    Ok(())
}

/// Transition history of a task, oldest first.
///
/// # Errors
/// SQLite failure.
pub fn history(conn: &Connection, task: i64) -> Result<Vec<Transition>> {
    let mut st = conn.prepare(
        "SELECT from_state, to_state, actor, at, note FROM transitions WHERE task_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([task], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (f, t, actor, at, note) = r?;
        out.push(Transition {
            from: f.parse()?,
            to: t.parse()?,
            actor,
            at,
            note,
        });
    }
    Ok(out)
}

/// Renames a campaign, activity or task. Only while it may still change: a draft (never
/// submitted, or revised) or a rejected one; once submitted, what the approvers see is what
/// sends, so a pending, approved or sending object keeps its name.
///
/// # Errors
/// [`CampaignError::Invalid`] for an empty name or a state that may not change (field
/// `state`), [`CampaignError::NotFound`], SQLite failure.
pub fn rename(conn: &Connection, subject: approval::Subject, name: &str) -> Result<()> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CampaignError::invalid("name", "empty"));
    }
    let state = approval::state(conn, subject).map_err(|e| match e {
        approval::ApprovalError::Campaign(c) => c,
        other => CampaignError::invalid("state", other.to_string()),
    })?;
    if !matches!(
        state,
        approval::ApprovalState::Draft | approval::ApprovalState::Rejected
    ) {
        return Err(CampaignError::invalid(
            "state",
            format!(
                "{} {} is {}: only a draft or rejected one can be edited",
                subject.kind().as_str(),
                subject.id(),
                state.as_str()
            ),
        ));
    }
    let table = match subject.kind() {
        SubjectKind::Campaign => "campaigns",
        SubjectKind::Activity => "activities",
        SubjectKind::Task => "tasks",
    };
    conn.execute(
        &format!("UPDATE {table} SET name = ?1 WHERE id = ?2"),
        params![name, subject.id()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::{self, Actor, Subject, testing};
    use crate::store::open_in_memory;
    use TaskState::*;

    /// A fresh store with a root organisation, planner alice and approver bob in it.
    fn store() -> (Connection, Actor, Actor) {
        let mut c = open_in_memory().unwrap();
        let root = testing::tree(&mut c).province;
        let alice = testing::person(&c, "alice", root, false);
        let bob = testing::person(&c, "bob", root, true);
        (c, alice, bob)
    }

    /// Submits and approves `subject` in the root's default chain (alice submits, bob
    /// approves).
    fn approve(c: &mut Connection, subject: Subject, at: i64) {
        let (alice, bob) = people(c);
        let root = [alice.org_id];
        approval::submit(c, subject, &root, &alice, at, "").unwrap();
        approval::approve(c, subject, &bob, at + 1, "ok").unwrap();
    }

    /// A campaign with one activity holding one draft task, nothing approved:
    /// (campaign, activity, task).
    fn hierarchy(c: &Connection) -> (i64, i64, i64) {
        let camp = create_campaign(c, "spring", 1).unwrap();
        let act = create_activity(c, camp, "data pack").unwrap();
        let t = create_task(c, Some(act), "sms blast", 2).unwrap();
        (camp, act, t)
    }

    fn people(c: &Connection) -> (Actor, Actor) {
        let get = |name: &str| {
            let (user_id, org_id): (i64, i64) = c
                .query_row(
                    "SELECT id, org_id FROM users WHERE name = ?1",
                    [name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            Actor {
                user_id,
                user: name.into(),
                org_id,
                can_approve: name == "bob",
            }
        };
        (get("alice"), get("bob"))
    }

    #[test]
    fn happy_path_records_who_and_when() {
        let (mut c, ..) = store();
        let (camp, act, t) = hierarchy(&c);
        approve(&mut c, Subject::Campaign(camp), 3);
        approve(&mut c, Subject::Activity(act), 5);
        approve(&mut c, Subject::Task(t), 10);
        let steps = [
            (Scheduled, "alice"),
            (Running, "sys"),
            (Paused, "ops"),
            (Running, "ops"),
            (Completed, "sys"),
        ];
        for (i, (s, who)) in steps.iter().enumerate() {
            transition(&mut c, t, *s, who, 12 + i as i64, "").unwrap();
        }
        let h = history(&c, t).unwrap();
        assert_eq!(h.len(), steps.len() + 2);
        assert_eq!(
            h[1],
            Transition {
                from: Submitted,
                to: Approved,
                actor: "bob".into(),
                at: 11,
                note: "approval chain complete".into()
            }
        );
        assert_eq!(task_state(&c, t).unwrap(), Completed);
    }

    #[test]
    fn illegal_transitions_are_typed_errors_and_change_nothing() {
        let (mut c, alice, bob) = store();
        let t = create_task(&c, None, "urgent notice", 0).unwrap();
        for bad in [Approved, Running, Scheduled, Completed, Paused, Rejected] {
            let e = transition(&mut c, t, bad, "x", 1, "").unwrap_err();
            assert!(
                matches!(e, CampaignError::IllegalTransition { from: Draft, to, why: Blocked::StateMachine, .. } if to == bad)
            );
        }
        // Moves before sending belong to the approval chain.
        for owned in [Submitted, Cancelled] {
            let e = transition(&mut c, t, owned, "x", 1, "").unwrap_err();
            assert!(matches!(
                e,
                CampaignError::IllegalTransition {
                    why: Blocked::ApprovalChain,
                    ..
                }
            ));
        }
        assert_eq!(task_state(&c, t).unwrap(), Draft);
        assert!(history(&c, t).unwrap().is_empty());
        let task = Subject::Task(t);
        let root = [alice.org_id];
        approval::submit(&mut c, task, &root, &alice, 1, "").unwrap();
        approval::reject(&mut c, task, &bob, 2, "missing opt-out").unwrap();
        assert!(transition(&mut c, t, Approved, "b", 3, "").is_err());
        approval::revise(&mut c, task, &alice, 4, "").unwrap();
        approval::cancel(&mut c, task, &alice, 5, "").unwrap();
        assert!(transition(&mut c, t, Draft, "a", 6, "").is_err());
        let moves: Vec<_> = history(&c, t)
            .unwrap()
            .into_iter()
            .map(|h| (h.from, h.to))
            .collect();
        assert_eq!(
            moves,
            [
                (Draft, Submitted),
                (Submitted, Rejected),
                (Rejected, Draft),
                (Draft, Cancelled)
            ]
        );
        assert!(matches!(
            create_activity(&c, 99, "x"),
            Err(CampaignError::NotFound {
                what: "campaign",
                id: 99
            })
        ));
    }

    #[test]
    fn scheduling_waits_for_activity_and_campaign() {
        let (mut c, ..) = store();
        let (camp, act, t) = hierarchy(&c);
        approve(&mut c, Subject::Task(t), 2);
        let blocked = |c: &mut Connection| match transition(c, t, Scheduled, "p", 5, "") {
            Err(CampaignError::IllegalTransition {
                why: Blocked::ParentNotApproved { kind, id },
                ..
            }) => Some((kind, id)),
            Err(e) => panic!("{e}"),
            Ok(()) => None,
        };
        assert_eq!(blocked(&mut c), Some((SubjectKind::Campaign, camp)));
        approve(&mut c, Subject::Campaign(camp), 3);
        assert_eq!(blocked(&mut c), Some((SubjectKind::Activity, act)));
        assert_eq!(task_state(&c, t).unwrap(), Approved);
        approve(&mut c, Subject::Activity(act), 4);
        assert_eq!(blocked(&mut c), None);
        assert_eq!(task_state(&c, t).unwrap(), Scheduled);
    }

    #[test]
    fn only_scheduled_and_running_send() {
        let sending: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| s.may_send())
            .collect();
        assert_eq!(sending, vec![Scheduled, Running]);
    }
}
