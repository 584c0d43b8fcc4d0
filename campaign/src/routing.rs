//! Reply routing: service numbers, per-task extension codes, unsubscribe keywords.
//!
//! Job: give every task that sends from one of the account's service numbers (gateway config
//! `[[accounts]] service_numbers`, handed to the service as [`MoSettings`]) its own
//! extension code, so its messages go out with source address `service number + extension`
//! and a reply to that address is credited to that task ([`resolve`]); and tell an
//! unsubscribe reply ([`MoSettings::is_unsubscribe`]) from any other.
//!
//! Invariants:
//! - `task_extensions` holds at most one row per task; the task keeps its extension for
//!   every bulk send and across restarts (the row is written in the launch transaction).
//! - An extension is unique among the *live* tasks (not completed, cancelled or rejected)
//!   of the same service number; a finished task keeps its row, so late replies still
//!   reach it until a new live task takes the extension over. Automatic extensions are
//!   4 digits, handed out round-robin after the last one given on that service number, so
//!   a finished task's extension is reused as late as possible.
//! - A reply is routed by the longest `service number + extension` that prefixes its
//!   destination (handsets may append digits); among tasks that held the same extension,
//!   the newest first.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{CampaignError, Result};

/// Default unsubscribe keywords (matched case-insensitively on the trimmed reply text).
pub const DEFAULT_UNSUBSCRIBE_KEYWORDS: [&str; 5] = ["TD", "T", "退订", "STOP", "UNSUB"];

/// Digits of an automatically allocated extension.
pub const AUTO_EXTENSION_DIGITS: usize = 4;

/// Longest extension a planner may give.
pub const MAX_EXTENSION_DIGITS: usize = 6;

/// Longest source address (`service number + extension`) SMPP and CMPP carry.
pub const MAX_SOURCE_DIGITS: usize = 20;

/// Task states whose extension may be taken over by another task.
const FINISHED: [&str; 3] = ["completed", "cancelled", "rejected"];

/// What the service needs to route replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoSettings {
    /// Service numbers of the account the service sends with (digits, gateway config);
    /// empty: no extensions, sends keep the bulk's `from`.
    pub service_numbers: Vec<String>,
    /// Unsubscribe keywords.
    pub unsubscribe_keywords: Vec<String>,
}

impl Default for MoSettings {
    fn default() -> Self {
        Self {
            service_numbers: Vec::new(),
            unsubscribe_keywords: DEFAULT_UNSUBSCRIBE_KEYWORDS
                .iter()
                .map(|k| (*k).to_owned())
                .collect(),
        }
    }
}

impl MoSettings {
    /// Whether `text` (trimmed, case-insensitive) is an unsubscribe keyword.
    pub fn is_unsubscribe(&self, text: &str) -> bool {
        let t = text.trim().to_lowercase();
        !t.is_empty()
            && self
                .unsubscribe_keywords
                .iter()
                .any(|k| k.trim().to_lowercase() == t)
    }

    /// The service number a bulk send with sender `from` sends from: `from` itself when it
    /// is one of the service numbers, the first service number when `from` is absent,
    /// otherwise none (the bulk keeps its explicit sender and gets no extension).
    pub fn service_number_for(&self, from: Option<&str>) -> Option<&str> {
        match from {
            Some(f) => {
                let f = f.trim().trim_start_matches('+');
                self.service_numbers
                    .iter()
                    .find(|s| s.as_str() == f)
                    .map(String::as_str)
            }
            None => self.service_numbers.first().map(String::as_str),
        }
    }
}

/// A task's extension.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskExtension {
    pub task: i64,
    pub service_number: String,
    pub extension: String,
}

impl TaskExtension {
    /// The source address of the task's messages.
    pub fn source(&self) -> String {
        format!("{}{}", self.service_number, self.extension)
    }
}

/// Checks a planner-given extension: 1 to [`MAX_EXTENSION_DIGITS`] ASCII digits.
///
/// # Errors
/// [`CampaignError::Invalid`] on field `extension`.
pub fn check_extension(e: &str) -> Result<()> {
    if e.is_empty() || e.len() > MAX_EXTENSION_DIGITS || !e.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CampaignError::invalid(
            "extension",
            format!("{e:?} is not 1 to {MAX_EXTENSION_DIGITS} digits"),
        ));
    }
    Ok(())
}

/// The extension of `task`, if it has one.
///
/// # Errors
/// SQLite failure.
pub fn of_task(conn: &Connection, task: i64) -> Result<Option<TaskExtension>> {
    Ok(conn
        .query_row(
            "SELECT service_number, extension FROM task_extensions WHERE task_id = ?1",
            [task],
            |r| {
                Ok(TaskExtension {
                    task,
                    service_number: r.get(0)?,
                    extension: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// The live task (other than `task`) holding `extension` on `service_number`.
fn holder(
    conn: &Connection,
    service_number: &str,
    extension: &str,
    task: i64,
) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT e.task_id FROM task_extensions e JOIN tasks t ON t.id = e.task_id
             WHERE e.service_number = ?1 AND e.extension = ?2 AND e.task_id != ?3
               AND t.state NOT IN (?4, ?5, ?6)
             LIMIT 1",
            params![
                service_number,
                extension,
                task,
                FINISHED[0],
                FINISHED[1],
                FINISHED[2]
            ],
            |r| r.get(0),
        )
        .optional()?)
}

/// Gives `task` an extension on `service_number` (the requested one, or the next free
/// 4-digit one) unless it has one already; returns the task's extension. Run it inside the
/// launch transaction.
///
/// # Errors
/// [`CampaignError::Invalid`] (field `extension`) when the requested extension is malformed,
/// held by another live task, differs from the one the task already has, or makes the
/// source address longer than [`MAX_SOURCE_DIGITS`]; when every 4-digit extension is taken;
/// SQLite failure.
pub fn assign(
    conn: &Connection,
    task: i64,
    service_number: &str,
    requested: Option<&str>,
    now: i64,
) -> Result<TaskExtension> {
    if let Some(e) = requested {
        check_extension(e)?;
    }
    if let Some(have) = of_task(conn, task)? {
        if let Some(e) = requested
            && e != have.extension
        {
            return Err(CampaignError::invalid(
                "extension",
                format!(
                    "task {task} already sends with extension {:?}",
                    have.extension
                ),
            ));
        }
        return Ok(have);
    }
    let extension = match requested {
        Some(e) => {
            if let Some(other) = holder(conn, service_number, e, task)? {
                return Err(CampaignError::invalid(
                    "extension",
                    format!("{e:?} on {service_number} is in use by live task {other}"),
                ));
            }
            e.to_owned()
        }
        None => next_free(conn, service_number, task)?,
    };
    if service_number.len() + extension.len() > MAX_SOURCE_DIGITS {
        return Err(CampaignError::invalid(
            "extension",
            format!("{service_number}{extension} is longer than {MAX_SOURCE_DIGITS} digits"),
        ));
    }
    conn.execute(
        "INSERT INTO task_extensions (task_id, service_number, extension, assigned_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![task, service_number, extension, now],
    )?;
    Ok(TaskExtension {
        task,
        service_number: service_number.to_owned(),
        extension,
    })
}

/// The next 4-digit extension after the last one allocated on `service_number` that no
/// live task holds (`0001`…`9999`, wrapping).
fn next_free(conn: &Connection, service_number: &str, task: i64) -> Result<String> {
    let last: Option<String> = conn
        .query_row(
            "SELECT extension FROM task_extensions
             WHERE service_number = ?1 AND length(extension) = ?2
             ORDER BY assigned_at DESC, rowid DESC LIMIT 1",
            params![service_number, AUTO_EXTENSION_DIGITS as i64],
            |r| r.get(0),
        )
        .optional()?;
    let last: u32 = last.and_then(|l| l.parse().ok()).unwrap_or(0);
    for k in 1..=9999u32 {
        let candidate = format!("{:04}", (last + k - 1) % 9999 + 1);
        if holder(conn, service_number, &candidate, task)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(CampaignError::invalid(
        "extension",
        format!("every 4-digit extension of {service_number} is held by a live task"),
    ))
}

/// Tasks whose `service number + extension` is the longest prefix of the reply destination
/// `to`, newest assignment first; empty when no extension matches.
///
/// # Errors
/// SQLite failure.
pub fn resolve(conn: &Connection, to: &str) -> Result<Vec<i64>> {
    let to = to.trim().trim_start_matches('+');
    if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Vec::new());
    }
    let mut st = conn.prepare_cached(
        "SELECT task_id, length(service_number) + length(extension) AS n FROM task_extensions
         WHERE substr(?1, 1, length(service_number) + length(extension))
               = service_number || extension
         ORDER BY n DESC, assigned_at DESC, rowid DESC",
    )?;
    let rows: Vec<(i64, i64)> = st
        .query_map([to], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let longest = rows.first().map(|(_, n)| *n);
    Ok(rows
        .into_iter()
        .take_while(|(_, n)| Some(*n) == longest)
        .map(|(t, _)| t)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{self, TaskState};
    use crate::store;

    fn task(conn: &mut Connection, state: TaskState) -> i64 {
        let t = lifecycle::create_task(conn, None, "t", 0).expect("task");
        conn.execute(
            "UPDATE tasks SET state = ?1 WHERE id = ?2",
            params![state.as_str(), t],
        )
        .expect("state");
        t
    }

    #[test]
    fn keywords_match_trimmed_and_case_insensitive() {
        let s = MoSettings::default();
        for t in ["TD", " td ", "t", "退订", "Stop\n", "unsub"] {
            assert!(s.is_unsubscribe(t), "{t:?}");
        }
        for t in ["", "TDX", "Y", "please stop", "退"] {
            assert!(!s.is_unsubscribe(t), "{t:?}");
        }
    }

    #[test]
    fn service_number_follows_the_bulk_sender() {
        let s = MoSettings {
            service_numbers: vec!["10658000".into(), "10658001".into()],
            ..MoSettings::default()
        };
        assert_eq!(s.service_number_for(None), Some("10658000"));
        assert_eq!(s.service_number_for(Some("10658001")), Some("10658001"));
        assert_eq!(s.service_number_for(Some("10690000")), None);
        assert_eq!(MoSettings::default().service_number_for(None), None);
    }

    #[test]
    fn extensions_are_unique_among_live_tasks_and_round_robin() {
        let mut conn = store::open_in_memory().expect("db");
        let a = task(&mut conn, TaskState::Running);
        let b = task(&mut conn, TaskState::Scheduled);
        let c = task(&mut conn, TaskState::Scheduled);
        let ea = assign(&conn, a, "10658000", None, 1).expect("a");
        assert_eq!(ea.source(), "106580000001");
        // Idempotent for the same task; a different request is refused.
        assert_eq!(assign(&conn, a, "10658000", None, 2).expect("again"), ea);
        let err = assign(&conn, a, "10658000", Some("0002"), 2).expect_err("differs");
        assert!(err.to_string().contains("extension"), "{err}");
        // Requested and in use by a live task: refused; another service number is free.
        let err = assign(&conn, b, "10658000", Some("0001"), 3).expect_err("taken");
        assert!(err.to_string().contains("live task"), "{err}");
        assert_eq!(
            assign(&conn, b, "10658999", Some("0001"), 3)
                .expect("other number")
                .extension,
            "0001"
        );
        // Automatic: the next after the last one given.
        assert_eq!(
            assign(&conn, c, "10658000", None, 4).expect("c").extension,
            "0002"
        );
        // A finished task's extension can be requested again.
        conn.execute("UPDATE tasks SET state = 'completed' WHERE id = ?1", [a])
            .expect("finish");
        let d = task(&mut conn, TaskState::Scheduled);
        assert_eq!(
            assign(&conn, d, "10658000", Some("0001"), 5)
                .expect("reuse")
                .extension,
            "0001"
        );
        // Malformed.
        let e = task(&mut conn, TaskState::Scheduled);
        for bad in ["", "12a", "1234567"] {
            assert!(
                assign(&conn, e, "10658000", Some(bad), 6).is_err(),
                "{bad:?}"
            );
        }
        // Newest holder first, longest prefix wins, appended digits still route.
        assert_eq!(resolve(&conn, "106580000001").expect("r"), vec![d, a]);
        assert_eq!(resolve(&conn, "+10658000000199").expect("r"), vec![d, a]);
        assert_eq!(resolve(&conn, "106580000002").expect("r"), vec![c]);
        assert!(resolve(&conn, "10658000").expect("r").is_empty());
        assert!(resolve(&conn, "106580000003").expect("r").is_empty());
        assert!(resolve(&conn, "abc").expect("r").is_empty());
    }

    #[test]
    fn round_robin_wraps_and_skips_live_holders() {
        let mut conn = store::open_in_memory().expect("db");
        let a = task(&mut conn, TaskState::Running);
        assign(&conn, a, "1065", Some("0001"), 1).expect("a");
        let b = task(&mut conn, TaskState::Running);
        assign(&conn, b, "1065", Some("9999"), 2).expect("b");
        let c = task(&mut conn, TaskState::Running);
        // After 9999 comes 0001 (held by live a), so 0002.
        assert_eq!(
            assign(&conn, c, "1065", None, 3).expect("c").extension,
            "0002"
        );
        let long = task(&mut conn, TaskState::Running);
        let err = assign(&conn, long, "1065800012345678", Some("123456"), 4).expect_err("long");
        assert!(err.to_string().contains("longer"), "{err}");
    }
}
