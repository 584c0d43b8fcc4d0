//! Campaign hierarchy and the task approval state machine.
//!
//! Hierarchy: campaign (营销案) → activity (营销活动) → task (营销任务) → bulk-send task
//! (群发任务, see [`crate::launch`]). A task may exist without an activity (urgent notice).
//!
//! States and allowed transitions (everything else is [`CampaignError::IllegalTransition`]):
//!
//! ```text
//! draft → submitted → approved → scheduled → running ⇄ paused → completed
//!            ↓  ↑(revise)                       running/paused → completed
//!         rejected → draft
//! draft|submitted|approved|scheduled|running|paused → cancelled
//! ```
//!
//! Every transition is written to `transitions` with who and when, in the same SQLite
//! transaction as the state change (so history and state never disagree). Only scheduled
//! and running tasks send.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

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
                | (Submitted, Approved | Rejected | Draft)
                | (Rejected, Draft)
                | (Approved, Scheduled)
                | (Scheduled, Running)
                | (Running, Paused | Completed)
                | (Paused, Running | Completed)
                | (
                    Draft | Submitted | Approved | Scheduled | Running | Paused,
                    Cancelled
                )
        )
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

/// Moves a task to `to`, recording `actor`, `now` and `note` (no authenticated user: the
/// local CLI and the runner; see [`transition_by`]).
///
/// # Errors
/// [`CampaignError::IllegalTransition`] if the state machine forbids it (nothing changes).
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

/// Moves a task to `to` on behalf of authenticated user `user` (named `actor`), recording
/// who and when on the transition and on the task (`updated_by`, `updated_at`).
///
/// A user may not approve a task whose latest move to `submitted` they made themselves.
///
/// # Errors
/// [`CampaignError::IllegalTransition`] if the state machine forbids it,
/// [`CampaignError::SelfApproval`] for an approval by the submitter (nothing changes).
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
    if !from.can_go(to) {
        return Err(CampaignError::IllegalTransition { task, from, to });
    }
    if to == TaskState::Approved
        && let Some(u) = user
    {
        let submitter: Option<Option<i64>> = tx
            .query_row(
                "SELECT user_id FROM transitions WHERE task_id = ?1 AND to_state = 'submitted'
                 ORDER BY id DESC LIMIT 1",
                [task],
                |r| r.get(0),
            )
            .optional()?;
        if submitter == Some(Some(u)) {
            return Err(CampaignError::SelfApproval { task });
        }
    }
    tx.execute(
        "UPDATE tasks SET state = ?1, updated_by = COALESCE(?3, updated_by), updated_at = ?4
         WHERE id = ?2",
        params![to.as_str(), task, user, now],
    )?;
    tx.execute(
        "INSERT INTO transitions (task_id, from_state, to_state, actor, at, note, user_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![task, from.as_str(), to.as_str(), actor, now, note, user],
    )?;
    tx.commit()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open_in_memory;
    use TaskState::*;

    #[test]
    fn happy_path_records_who_and_when() {
        let mut c = open_in_memory().unwrap();
        let camp = create_campaign(&c, "spring", 1).unwrap();
        let act = create_activity(&c, camp, "data pack").unwrap();
        let t = create_task(&c, Some(act), "sms blast", 2).unwrap();
        let steps = [
            (Submitted, "alice"),
            (Approved, "bob"),
            (Scheduled, "alice"),
            (Running, "sys"),
            (Paused, "ops"),
            (Running, "ops"),
            (Completed, "sys"),
        ];
        for (i, (s, who)) in steps.iter().enumerate() {
            transition(&mut c, t, *s, who, 10 + i as i64, "").unwrap();
        }
        let h = history(&c, t).unwrap();
        assert_eq!(h.len(), steps.len());
        assert_eq!(
            h[1],
            Transition {
                from: Submitted,
                to: Approved,
                actor: "bob".into(),
                at: 11,
                note: String::new()
            }
        );
        assert_eq!(task_state(&c, t).unwrap(), Completed);
    }

    #[test]
    fn illegal_transitions_are_typed_errors_and_change_nothing() {
        let mut c = open_in_memory().unwrap();
        let t = create_task(&c, None, "urgent notice", 0).unwrap();
        for bad in [Approved, Running, Scheduled, Completed, Paused, Rejected] {
            let e = transition(&mut c, t, bad, "x", 1, "").unwrap_err();
            assert!(
                matches!(e, CampaignError::IllegalTransition { from: Draft, to, .. } if to == bad)
            );
        }
        assert_eq!(task_state(&c, t).unwrap(), Draft);
        assert!(history(&c, t).unwrap().is_empty());
        transition(&mut c, t, Submitted, "a", 1, "").unwrap();
        transition(&mut c, t, Rejected, "b", 2, "missing opt-out").unwrap();
        assert!(transition(&mut c, t, Approved, "b", 3, "").is_err());
        transition(&mut c, t, Draft, "a", 4, "").unwrap();
        transition(&mut c, t, Cancelled, "a", 5, "").unwrap();
        assert!(transition(&mut c, t, Draft, "a", 6, "").is_err());
        assert!(matches!(
            create_activity(&c, 99, "x"),
            Err(CampaignError::NotFound {
                what: "campaign",
                id: 99
            })
        ));
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
