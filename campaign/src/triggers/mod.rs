//! Event-triggered marketing: triggered tasks, their matching, arbitration and evaluation.
//!
//! A trigger is a task kind beside the bulk send: it hangs under a task (one trigger per
//! task), so it shares the campaign → activity → task hierarchy, the task's organisation,
//! its approval chain and its state machine. A trigger matches only while its task is
//! `running` — and a task gets there only through `scheduled`, i.e. after every approval
//! chain above it completed ([`crate::approval`]).
//!
//! - [`condition`]: the condition (segment grammar) over one event and one subscriber.
//! - [`message`]: the template with event and subscriber fields.
//! - [`engine`]: reads stored events after a durable cursor, matches, holds or drops by
//!   window and staleness, applies control share, cooldown, daily budget, the contact
//!   rules and arbitration, hands the winners to the [`crate::dispatch::Dispatcher`] and
//!   records every outcome.
//! - [`evaluate`]: the funnel per trigger against its control group, and the live monitor.
//! - [`calendar`]: birthdays and holidays as daily generated events.
//!
//! Sends are ordinary contacts (`contacts` rows of the trigger's task, group `treated`),
//! so the contact rules, caps and conflicting-offer windows count batch and triggered
//! sends alike, and receipts, replies and orders reach them through [`crate::feedback`].

pub mod calendar;
pub mod condition;
pub mod engine;
pub mod evaluate;
pub mod message;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::dispatch::Lane;
use crate::error::{CampaignError, Result, StoreError};
use crate::lifecycle::task_state;
use crate::routing::{self, MoSettings};
use crate::rules::{self, Channel, ContactPolicy};
use crate::table::SubscriberTable;
use crate::window::{DEFAULT_TZ, TimeWindow, time_zone};

use self::condition::Condition;
use self::message::EventTemplate;

/// Schema of migration 8: stored events, the matching cursor, triggers, outcomes, held
/// matches, the holiday calendar.
pub const TRIGGER_SCHEMA: &str = r#"
    CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
        msisdn INTEGER NOT NULL, type TEXT NOT NULL, ts INTEGER NOT NULL,
        attrs TEXT NOT NULL, received_at INTEGER NOT NULL);
    CREATE INDEX events_received ON events(received_at);
    CREATE TABLE trigger_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
    INSERT INTO trigger_cursor (id, seq) VALUES (1, 0);
    CREATE TABLE triggers (id INTEGER PRIMARY KEY,
        task_id INTEGER NOT NULL UNIQUE REFERENCES tasks(id), event_type TEXT NOT NULL,
        spec TEXT NOT NULL, source TEXT, created_at INTEGER NOT NULL,
        created_by INTEGER REFERENCES users(id));
    CREATE TABLE trigger_outcomes (trigger_id INTEGER NOT NULL REFERENCES triggers(id),
        event_seq INTEGER NOT NULL, task_id INTEGER NOT NULL, sub_id INTEGER NOT NULL,
        outcome TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', offer TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL, held_at INTEGER, at INTEGER NOT NULL,
        PRIMARY KEY (trigger_id, event_seq));
    CREATE INDEX trigger_outcomes_at ON trigger_outcomes(at);
    CREATE INDEX trigger_outcomes_control ON trigger_outcomes(sub_id, at)
        WHERE outcome = 'control';
    CREATE TABLE trigger_held (trigger_id INTEGER NOT NULL REFERENCES triggers(id),
        event_seq INTEGER NOT NULL, sub_id INTEGER NOT NULL, held_at INTEGER NOT NULL,
        PRIMARY KEY (trigger_id, event_seq));
    CREATE TABLE calendar_days (day TEXT NOT NULL, name TEXT NOT NULL,
        PRIMARY KEY (day, name)) WITHOUT ROWID;
"#;

/// Schema of migration 9: what a step decided, written as one row per event instead of one
/// per (trigger, event) match — the per-match rows (a rowid table, its key index and an
/// `at` index) were most of a matching step's cost.
///
/// - `trigger_decisions`: one row per event and step that decided it, the decisions of all
///   its triggers packed as JSON `[[trigger, outcome, reason, held_at], …]` (outcome
///   `sent`, `suppressed`, `lost`, `dropped`); a held match decided later adds a row of a
///   later step for the same event.
/// - `trigger_control`: hold-out decisions, one row each (order attribution looks them up
///   by subscriber and offer, [`crate::feedback`]); never in `trigger_decisions`.
/// - `trigger_counts`: per trigger, per second, per outcome and reason: how many matches
///   were decided (and of those, held first), upserted in the same commit; the funnel's
///   totals and the monitor read it instead of scanning decisions.
///
/// Existing `trigger_outcomes` rows are converted, so funnels and monitors read the same
/// numbers after the upgrade.
pub const TRIGGER_DECISIONS_SCHEMA: &str = r#"
    CREATE TABLE trigger_decisions (id INTEGER PRIMARY KEY, event_seq INTEGER NOT NULL,
        sub_id INTEGER NOT NULL, at INTEGER NOT NULL, decisions TEXT NOT NULL);
    CREATE TABLE trigger_control (trigger_id INTEGER NOT NULL REFERENCES triggers(id),
        event_seq INTEGER NOT NULL, task_id INTEGER NOT NULL, sub_id INTEGER NOT NULL,
        offer TEXT NOT NULL, channel TEXT NOT NULL, held_at INTEGER, at INTEGER NOT NULL,
        PRIMARY KEY (trigger_id, event_seq));
    CREATE INDEX trigger_control_sub ON trigger_control(sub_id, at);
    CREATE TABLE trigger_counts (trigger_id INTEGER NOT NULL REFERENCES triggers(id),
        at INTEGER NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL,
        n INTEGER NOT NULL, held INTEGER NOT NULL,
        PRIMARY KEY (trigger_id, at, outcome, reason)) WITHOUT ROWID;
    CREATE INDEX trigger_counts_at ON trigger_counts(at);
    INSERT INTO trigger_counts (trigger_id, at, outcome, reason, n, held)
        SELECT trigger_id, at, outcome, reason, COUNT(*), SUM(held_at IS NOT NULL)
        FROM trigger_outcomes GROUP BY trigger_id, at, outcome, reason;
    INSERT INTO trigger_control (trigger_id, event_seq, task_id, sub_id, offer, channel,
            held_at, at)
        SELECT trigger_id, event_seq, task_id, sub_id, offer, channel, held_at, at
        FROM trigger_outcomes WHERE outcome = 'control';
    INSERT INTO trigger_decisions (event_seq, sub_id, at, decisions)
        SELECT event_seq, sub_id, at,
            json_group_array(json_array(trigger_id, outcome, reason, held_at))
        FROM (SELECT * FROM trigger_outcomes WHERE outcome <> 'control'
              ORDER BY event_seq, trigger_id)
        GROUP BY event_seq, sub_id, at ORDER BY event_seq, at;
    DROP TABLE trigger_outcomes;
"#;

/// Contact-history group of a triggered send; its hold-out counterpart is [`CONTROL`].
pub const TREATED: &str = "treated";
/// Group name of a trigger's hold-out control.
pub const CONTROL: &str = "control";

fn default_tz() -> String {
    DEFAULT_TZ.to_owned()
}
const fn default_staleness() -> u32 {
    3_600
}
const fn default_channel() -> Channel {
    Channel::Sms
}

/// Everything a triggered task needs (`POST /tasks/{id}/trigger`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The event type it reacts to (`roaming_arrival`, …).
    pub event_type: String,
    /// Condition over `attrs.<name>`, `type` and subscriber attributes; empty = any.
    #[serde(default)]
    pub condition: String,
    /// Text with `{attrs.<name>}`, `{event.type}` and subscriber `{field}`s.
    pub template: String,
    #[serde(default = "default_channel")]
    pub channel: Channel,
    #[serde(default)]
    pub lane: Lane,
    /// Sender (a service number gives the task an extension, as for bulk sends).
    #[serde(default)]
    pub from: Option<String>,
    /// Offer code: conflicts, recently-marketed and order attribution, as for bulk sends.
    #[serde(default)]
    pub offer: String,
    #[serde(default)]
    pub campaign_type: String,
    /// Allowed local window `"HH:MM-HH:MM"`; an event outside it is held until it opens.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Seconds after the event's `ts` past which it is dropped instead of sent or held.
    #[serde(default = "default_staleness")]
    pub staleness_s: u32,
    /// No second send of this trigger to a subscriber within this many seconds.
    #[serde(default)]
    pub cooldown_s: u32,
    /// At most this many sends per local day (`None`: no budget).
    #[serde(default)]
    pub daily_budget: Option<u32>,
    /// Matching starts / ends at these times (`None`: open).
    #[serde(default)]
    pub valid_from: Option<Timestamp>,
    #[serde(default)]
    pub valid_until: Option<Timestamp>,
    /// Share of subscribers held out as control (deterministic per trigger and number).
    #[serde(default)]
    pub control_share: f64,
    /// Arbitration: higher wins; then the higher `score_attr`, then a fixed hash.
    #[serde(default)]
    pub priority: i32,
    /// Subscriber attribute holding a personalised score (e.g. a propensity column).
    #[serde(default)]
    pub score_attr: Option<String>,
    /// Arbitration window: a subscriber sent any other offer (triggered or batch) within
    /// this many seconds is not sent this one.
    #[serde(default)]
    pub conflict_period_s: u32,
    /// Contact rules (caps, recently-marketed, conflicting offers), as for bulk sends.
    #[serde(default)]
    pub policy: ContactPolicy,
    #[serde(default)]
    pub custom_lists: Vec<String>,
}

/// A stored trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub id: i64,
    pub task: i64,
    pub spec: TriggerSpec,
    /// Source address frozen at activation (`service number + extension`), if any.
    pub source: Option<String>,
}

/// A trigger ready to match: its spec compiled against the subscriber table.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub trigger: Trigger,
    pub condition: Condition,
    pub template: EventTemplate,
    pub window: Option<TimeWindow>,
    pub tz: TimeZone,
}

impl Compiled {
    /// Compiles `t` against `table`.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn new(t: Trigger, table: &SubscriberTable) -> Result<Self> {
        let s = &t.spec;
        Ok(Self {
            condition: Condition::parse(&s.condition, table)?,
            template: EventTemplate::parse(&s.template, table)?,
            window: s.window.as_deref().map(str::parse).transpose()?,
            tz: time_zone(&s.timezone)?,
            trigger: t,
        })
    }

    /// Whether `now` is inside the validity period.
    pub fn valid_at(&self, now: Timestamp) -> bool {
        let s = &self.trigger.spec;
        s.valid_from.is_none_or(|f| now >= f) && s.valid_until.is_none_or(|u| now < u)
    }

    /// Whether the local time at `now` is inside the window.
    pub fn window_open(&self, now: Timestamp) -> bool {
        crate::window::may_send(Timestamp::UNIX_EPOCH, self.window, now, &self.tz)
    }

    /// Whether `msisdn` is in this trigger's hold-out control: a fixed hash of (trigger,
    /// number) below the share, so a subscriber stays in control for the trigger's life.
    pub fn in_control(&self, msisdn: u64) -> bool {
        let share = self.trigger.spec.control_share;
        share > 0.0 && unit_hash(self.trigger.id, msisdn) < share
    }
}

/// A stable hash of (trigger, number) mapped to `[0, 1)` (SplitMix64 finaliser: fixed
/// across builds and platforms, unlike `std`'s randomised hasher).
pub fn unit_hash(trigger: i64, msisdn: u64) -> f64 {
    let mut z = (trigger as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(msisdn);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn check(spec: &TriggerSpec, conn: &Connection, table: &SubscriberTable) -> Result<()> {
    let t = Trigger {
        id: 0,
        task: 0,
        spec: spec.clone(),
        source: None,
    };
    Compiled::new(t, table)?;
    if spec.event_type.is_empty()
        || !spec
            .event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(CampaignError::invalid(
            "event_type",
            "a–z, 0–9, _ or - (the event's `type`)",
        ));
    }
    if matches!(spec.channel, Channel::Web | Channel::WapPush) {
        return Err(CampaignError::invalid(
            "channel",
            format!("triggers send sms or mms, not {}", spec.channel),
        ));
    }
    if !(0.0..1.0).contains(&spec.control_share) {
        return Err(CampaignError::invalid("control_share", "must be in [0, 1)"));
    }
    if let Some(a) = &spec.score_attr
        && table.column(a).is_none()
    {
        return Err(CampaignError::invalid(
            "score_attr",
            format!("unknown subscriber attribute `{a}`"),
        ));
    }
    if let (Some(f), Some(u)) = (spec.valid_from, spec.valid_until)
        && u <= f
    {
        return Err(CampaignError::invalid(
            "valid_until",
            "must be after valid_from",
        ));
    }
    rules::check_custom_lists(conn, &spec.custom_lists)
}

/// Validates and stores a trigger under `task` (one per task).
///
/// # Errors
/// [`CampaignError::Invalid`] naming the field (`task` when it already has a trigger or
/// bulk sends); unknown task.
pub fn create(
    conn: &Connection,
    table: &SubscriberTable,
    task: i64,
    spec: &TriggerSpec,
    user: Option<i64>,
    now: i64,
) -> Result<i64> {
    task_state(conn, task)?;
    check(spec, conn, table)?;
    let taken: i64 = conn.query_row(
        "SELECT (SELECT COUNT(*) FROM triggers WHERE task_id = ?1)
              + (SELECT COUNT(*) FROM bulk_sends WHERE task_id = ?1)",
        [task],
        |r| r.get(0),
    )?;
    if taken > 0 {
        return Err(CampaignError::invalid(
            "task",
            format!("task {task} already has a trigger or a bulk send: one kind per task"),
        ));
    }
    let json =
        serde_json::to_string(spec).map_err(|e| CampaignError::invalid("spec", e.to_string()))?;
    conn.execute(
        "INSERT INTO triggers (task_id, event_type, spec, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![task, spec.event_type, json, now, user],
    )?;
    Ok(conn.last_insert_rowid())
}

fn from_row(id: i64, task: i64, spec: &str, source: Option<String>) -> Result<Trigger> {
    let spec = serde_json::from_str(spec).map_err(|source| StoreError::Json {
        table: "triggers",
        id,
        source,
    })?;
    Ok(Trigger {
        id,
        task,
        spec,
        source,
    })
}

/// Loads a trigger.
///
/// # Errors
/// [`CampaignError::NotFound`]; corrupt spec.
pub fn load(conn: &Connection, id: i64) -> Result<Trigger> {
    let row: Option<(i64, String, Option<String>)> = conn
        .query_row(
            "SELECT task_id, spec, source FROM triggers WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (task, spec, source) = row.ok_or(CampaignError::NotFound {
        what: "trigger",
        id,
    })?;
    from_row(id, task, &spec, source)
}

/// Every trigger with its task's state, optionally only those of `tasks`.
///
/// # Errors
/// SQLite failure or a corrupt spec.
pub fn list(conn: &Connection, tasks: Option<&[i64]>) -> Result<Vec<(Trigger, String)>> {
    let mut st = conn.prepare(
        "SELECT g.id, g.task_id, g.spec, g.source, t.state FROM triggers g
         JOIN tasks t ON t.id = g.task_id ORDER BY g.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (id, task, spec, source, state) = r?;
        if tasks.is_some_and(|ts| !ts.contains(&task)) {
            continue;
        }
        out.push((from_row(id, task, &spec, source)?, state));
    }
    Ok(out)
}

/// The trigger of `task`, if it has one.
///
/// # Errors
/// SQLite failure.
pub fn of_task(conn: &Connection, task: i64) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT id FROM triggers WHERE task_id = ?1", [task], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Freezes the trigger's source address before it first matches: when it sends from one
/// of `mo`'s service numbers, its task gets an extension ([`routing::assign`]) so replies
/// reach it. Idempotent.
///
/// # Errors
/// [`CampaignError::NotSendable`] unless the task is scheduled or running; routing errors.
pub fn prepare(conn: &Connection, id: i64, mo: &MoSettings, now: i64) -> Result<Trigger> {
    let t = load(conn, id)?;
    let state = task_state(conn, t.task)?;
    if !state.may_send() {
        return Err(CampaignError::NotSendable {
            task: t.task,
            state,
        });
    }
    if t.source.is_some() {
        return Ok(t);
    }
    let source = match mo.service_number_for(t.spec.from.as_deref()) {
        Some(sn) => Some(routing::assign(conn, t.task, sn, None, now)?.source()),
        None => t.spec.from.clone(),
    };
    conn.execute(
        "UPDATE triggers SET source = ?1 WHERE id = ?2",
        params![source, id],
    )?;
    load(conn, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_hash_is_stable_and_near_its_share() {
        assert_eq!(unit_hash(7, 13_800_000_001), unit_hash(7, 13_800_000_001));
        assert_ne!(unit_hash(7, 13_800_000_001), unit_hash(8, 13_800_000_001));
        let n = 100_000u64;
        let below = (0..n)
            .filter(|i| unit_hash(3, 13_800_000_000 + i) < 0.1)
            .count() as f64;
        assert!((below / n as f64 - 0.1).abs() < 0.005, "{below}");
    }
}
