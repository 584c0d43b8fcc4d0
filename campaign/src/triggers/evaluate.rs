//! How a trigger performs: its funnel against its hold-out control, and the live monitor.
//!
//! Funnel per trigger: `matched` (decided matches: every outcome but a still-held one) →
//! `sent` (accepted by the gateway) → `delivered` / `failed` / `cancelled` (receipts of its
//! contacts) → `converted` (distinct subscribers with a reply or order attributed to its
//! task, [`crate::feedback`]). The comparison is intent-to-treat over distinct subscribers:
//! `treated_targeted` = subscribers with a decided, non-control, non-dropped match (sent,
//! suppressed or lost: the trigger wanted them), `control_targeted` = subscribers held out;
//! uplift is the same two-proportion z-test as bulk sends ([`crate::stats`]).
//!
//! The monitor reads the store (so it is right after a restart and across processes):
//! events received and matches decided in the last minute per second, the matches held by
//! window now, and outcomes by reason.
//!
//! Outcome totals (the funnel's `matched`, `control`, `dropped_stale`, `held_total`,
//! `suppressed`, and the monitor's rates) come from `trigger_counts`, the per-trigger,
//! per-second counts the engine upserts in the commit that writes the decisions; only the
//! distinct-subscriber counts read decisions: `trigger_control` by its key, and a scan of
//! `trigger_decisions` (one row per event) for the treated side.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use super::{CONTROL, TREATED};
use crate::error::Result;
use crate::stats::{Uplift, two_proportion};

/// The funnel of one trigger.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TriggerFunnel {
    pub trigger: i64,
    pub task: i64,
    pub matched: u64,
    pub control: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub converted: u64,
    /// Matches held for the window at some point (resolved since, or still held).
    pub held_total: u64,
    /// Matches held for the window now.
    pub held_now: u64,
    pub dropped_stale: u64,
    /// `suppressed` and `lost` outcomes by reason (`cooldown`, `budget`, `channel_cap`,
    /// `public:do_not_disturb/sms`, `arbitration: trigger 3 won`, …).
    pub suppressed: BTreeMap<String, u64>,
    pub treated_targeted: u64,
    pub treated_converted: u64,
    pub control_targeted: u64,
    pub control_converted: u64,
    pub uplift: Option<Uplift>,
}

fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<u64> {
    Ok(u64::try_from(conn.query_row(sql, p, |r| r.get::<_, i64>(0))?).unwrap_or(0))
}

/// The funnel of trigger `id` (of task `task`).
///
/// # Errors
/// SQLite failure.
pub fn funnel(conn: &Connection, id: i64, task: i64) -> Result<TriggerFunnel> {
    let mut f = TriggerFunnel {
        trigger: id,
        task,
        ..TriggerFunnel::default()
    };
    let mut st = conn.prepare_cached(
        "SELECT outcome, reason, SUM(n), SUM(held) FROM trigger_counts
         WHERE trigger_id = ?1 GROUP BY outcome, reason",
    )?;
    let mut q = st.query([id])?;
    while let Some(r) = q.next()? {
        let (outcome, reason): (String, String) = (r.get(0)?, r.get(1)?);
        let n = r.get::<_, i64>(2)? as u64;
        f.matched += n;
        f.held_total += r.get::<_, i64>(3)? as u64;
        match outcome.as_str() {
            "control" => f.control += n,
            "dropped" => f.dropped_stale += n,
            "suppressed" | "lost" => *f.suppressed.entry(reason).or_default() += n,
            _ => {}
        }
    }
    f.held_now = count(
        conn,
        "SELECT COUNT(*) FROM trigger_held WHERE trigger_id = ?1",
        [id],
    )?;
    f.held_total += f.held_now;
    let mut st = conn.prepare_cached(
        "SELECT COUNT(*), COALESCE(SUM(state = 'delivered'), 0),
                COALESCE(SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed')), 0),
                COALESCE(SUM(state = 'cancelled'), 0)
         FROM contacts WHERE task_id = ?1 AND grp = ?2",
    )?;
    let (s, d, x, c): (i64, i64, i64, i64) = st.query_row(params![task, TREATED], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    (f.sent, f.delivered, f.failed, f.cancelled) = (s as u64, d as u64, x as u64, c as u64);
    let conv = |grp: &str| {
        count(
            conn,
            "SELECT COUNT(DISTINCT sub_id) FROM conversions WHERE task_id = ?1 AND grp = ?2",
            params![task, grp],
        )
    };
    f.treated_converted = conv(TREATED)?;
    f.control_converted = conv(CONTROL)?;
    f.converted = f.treated_converted;
    f.treated_targeted = count(
        conn,
        "SELECT COUNT(DISTINCT d.sub_id) FROM trigger_decisions d, json_each(d.decisions) j
         WHERE instr(d.decisions, '[' || ?1 || ',') > 0 AND j.value ->> 0 = ?1
         AND j.value ->> 1 IN ('sent', 'suppressed', 'lost')",
        [id],
    )?;
    f.control_targeted = count(
        conn,
        "SELECT COUNT(DISTINCT sub_id) FROM trigger_control WHERE trigger_id = ?1",
        [id],
    )?;
    f.uplift = two_proportion(
        f.treated_converted.min(f.treated_targeted),
        f.treated_targeted,
        f.control_converted.min(f.control_targeted),
        f.control_targeted,
    );
    Ok(f)
}

/// The live monitor.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Monitor {
    /// Events received per second over the last [`Monitor::over_s`] seconds.
    pub events_per_s: f64,
    /// Matches decided per second over the same span.
    pub matches_per_s: f64,
    /// Sends accepted per second over the same span.
    pub sent_per_s: f64,
    pub over_s: i64,
    /// Events stored and not yet matched.
    pub pending_events: u64,
    /// Matches held by window now, per trigger.
    pub held_by_window: BTreeMap<i64, u64>,
    /// `outcome/reason` → count, over the last hour, for triggers of `tasks`.
    pub outcomes_last_hour: BTreeMap<String, u64>,
}

/// The monitor at `now` (Unix seconds), limited to the triggers of `tasks` where given
/// (event intake rates are province-wide).
///
/// # Errors
/// SQLite failure.
pub fn monitor(conn: &Connection, now: i64, tasks: Option<&[i64]>) -> Result<Monitor> {
    const SPAN: i64 = 60;
    let visible = |task: i64| tasks.is_none_or(|t| t.contains(&task));
    let mut m = Monitor {
        over_s: SPAN,
        ..Monitor::default()
    };
    m.events_per_s = count(
        conn,
        "SELECT COUNT(*) FROM events WHERE received_at > ?1",
        [now - SPAN],
    )? as f64
        / SPAN as f64;
    m.pending_events = count(
        conn,
        "SELECT COUNT(*) FROM events WHERE seq > (SELECT seq FROM trigger_cursor WHERE id = 1)",
        [],
    )?;
    let mut st = conn.prepare_cached(
        "SELECT g.task_id, c.outcome, c.reason, c.at, c.n FROM trigger_counts c
         JOIN triggers g ON g.id = c.trigger_id WHERE c.at > ?1",
    )?;
    let mut q = st.query([now - 3_600])?;
    let (mut matches, mut sent) = (0u64, 0u64);
    while let Some(r) = q.next()? {
        let (task, outcome, reason, at): (i64, String, String, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let n = u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0);
        if !visible(task) {
            continue;
        }
        if at > now - SPAN {
            matches += n;
            if outcome == "sent" {
                sent += n;
            }
        }
        if outcome != "sent" {
            let key = if reason.is_empty() {
                outcome
            } else {
                format!("{outcome}/{reason}")
            };
            *m.outcomes_last_hour.entry(key).or_default() += n;
        }
    }
    m.matches_per_s = matches as f64 / SPAN as f64;
    m.sent_per_s = sent as f64 / SPAN as f64;
    let mut st = conn.prepare_cached(
        "SELECT h.trigger_id, g.task_id, COUNT(*) FROM trigger_held h
         JOIN triggers g ON g.id = h.trigger_id GROUP BY h.trigger_id",
    )?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let (t, task, n): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if visible(task) {
            m.held_by_window.insert(t, n as u64);
        }
    }
    Ok(m)
}
