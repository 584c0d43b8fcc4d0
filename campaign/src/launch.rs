//! Bulk-send tasks: spec, launch planning, and slice execution with persisted cursors.
//!
//! Flow:
//! 1. [`create_bulk`] validates and stores a [`BulkSpec`] under a task.
//! 2. [`plan`] (launch) freezes the audience: segment → contact rules (phase `launch`) →
//!    groups (A/B/…/control) → slices (non-control members divided evenly in id order).
//!    Groups, slices and exclusion counts are persisted; planning twice returns the stored
//!    plan, so a restart never re-draws the audience. [`plan_with`] also gives the task its
//!    extension on the account's service number and freezes the bulk's source address
//!    (`service number + extension`, see [`crate::routing`]) in the same transaction.
//! 3. [`next_batch`] (sync) picks the first unfinished slice that may send now (start time
//!    reached, local time in its window). The first time a slice is touched, the rules run
//!    again on its pending members (phase `dispatch`) and the reduced membership is
//!    persisted; resuming a paused task re-arms this check.
//!    It then renders up to `batch_size` (≤ 10 000) messages after the slice cursor.
//! 4. The caller hands the batch to a [`Dispatcher`]; on success [`commit_batch`] writes one
//!    contact-history row per accepted message and advances the cursor in ONE SQLite
//!    transaction. A message the gateway's public contact rules refused gets no contact row:
//!    it is counted as an exclusion of phase `dispatch` with reason `public:<rule>` (e.g.
//!    `public:do_not_disturb/sms`), shown in the task report's exclusions.
//!
//! Exactness: the cursor is the next subscriber id to send in that slice. A crash after
//! dispatch but before commit re-sends the same batch with the same
//! `client_ref = "t{task}-s{subscriber}-{slice}"`, which the gateway deduplicates; nothing
//! is lost (the cursor only moves after the ids are stored) and nothing is sent twice.
//! [`commit_batch`] refuses a batch whose start cursor is stale (double commit).
//! [`run`] drives 3–4 asynchronously, checking the task state before every batch so that
//! pausing stops it at a batch boundary.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jiff::Timestamp;
use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};

use crate::dispatch::{DispatchError, Dispatched, Dispatcher, Lane, OutboundMessage, OutboundSi};
use crate::error::{CampaignError, Result, StoreError};
use crate::groups::{GroupSpec, split};
use crate::lifecycle::{TaskState, task_state};
use crate::routing::{self, MoSettings};
use crate::rules::{self, Channel, ContactPolicy, ExclusionCounts, Reason, RuleContext};
use crate::segment;
use crate::service::Campaigns;
use crate::store::{bitmap_to_blob, blob_to_bitmap};
use crate::table::SubscriberTable;
use crate::template::{MmsSpec, MmsTemplate, PushSpec, PushTemplate, Template};
use crate::window::{DEFAULT_TZ, TimeWindow, may_send, time_zone};

/// Largest batch the gateway accepts.
pub const MAX_BATCH: usize = 10_000;

/// A time slice: when it may start and its daily window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceSpec {
    pub start: Timestamp,
    /// `"HH:MM-HH:MM"` local time; `None` = any time after `start`.
    #[serde(default)]
    pub window: Option<String>,
}

fn default_tz() -> String {
    DEFAULT_TZ.to_owned()
}
fn default_batch() -> usize {
    MAX_BATCH
}

/// Everything a bulk send needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BulkSpec {
    pub segment: i64,
    /// Default template (see [`crate::template`]).
    pub template: String,
    /// Per-group template overrides (A/B tests of wording).
    #[serde(default)]
    pub group_templates: BTreeMap<String, String>,
    pub channel: Channel,
    /// The push URL (and SI action) of a bulk send on channel `wap_push`; required there,
    /// refused elsewhere. The SI text is the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSpec>,
    /// The MMS of a bulk send on channel `mms` (subject, first image, further slides);
    /// required there, refused elsewhere. The template is the text of the first slide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mms: Option<MmsSpec>,
    #[serde(default)]
    pub lane: Lane,
    /// Sender. When it is one of the account's service numbers (or absent and the account
    /// has some), messages go out from `service number + the task's extension` instead
    /// (see [`crate::routing`]).
    #[serde(default)]
    pub from: Option<String>,
    /// The task's extension code (1–6 digits) when the planner picks it; absent: the next
    /// free 4-digit extension is allocated at launch. Needs a service number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Offer code (for recently-marketed, conflicts and order attribution).
    #[serde(default)]
    pub offer: String,
    #[serde(default)]
    pub campaign_type: String,
    #[serde(default = "none_groups")]
    pub groups: GroupSpec,
    #[serde(default)]
    pub policy: ContactPolicy,
    /// Names of the custom exclusion lists this send applies; a custom list applies only
    /// to the sends that name it (the other list kinds apply to every send).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_lists: Vec<String>,
    pub slices: Vec<SliceSpec>,
    #[serde(default = "default_tz")]
    pub timezone: String,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn none_groups() -> GroupSpec {
    GroupSpec::None
}

/// A persisted bulk send.
#[derive(Debug, Clone, PartialEq)]
pub struct Bulk {
    pub id: i64,
    pub task: i64,
    pub spec: BulkSpec,
    pub planned_at: Option<i64>,
    /// Source address frozen at launch (`service number + extension`); `None`: `spec.from`.
    pub source: Option<String>,
}

/// Group sizes in a plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GroupCount {
    pub name: String,
    pub is_control: bool,
    pub count: u64,
}

/// Outcome of planning (launch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlanReport {
    pub bulk: i64,
    /// Segment size.
    pub audience: u64,
    /// Excluded at launch, by first reason.
    pub excluded: ExclusionCounts,
    pub groups: Vec<GroupCount>,
    /// Members per slice (non-control).
    pub slices: Vec<u64>,
}

/// Validates and stores a bulk send under `task`.
///
/// # Errors
/// [`CampaignError::Invalid`] naming the bad field; unknown task/segment.
pub fn create_bulk(
    conn: &Connection,
    table: &SubscriberTable,
    task: i64,
    spec: &BulkSpec,
) -> Result<i64> {
    task_state(conn, task)?;
    segment::list(conn)?
        .iter()
        .find(|s| s.id == spec.segment)
        .ok_or(CampaignError::NotFound {
            what: "segment",
            id: spec.segment,
        })?;
    Template::parse(&spec.template, table)?;
    for t in spec.group_templates.values() {
        Template::parse(t, table)?;
    }
    if spec.channel.is_passive() {
        return Err(CampaignError::invalid(
            "channel",
            "passive channels cannot be sent to",
        ));
    }
    push_template(spec, table)?;
    mms_template(spec, table)?;
    if spec.slices.is_empty() {
        return Err(CampaignError::invalid("slices", "need at least one slice"));
    }
    for s in &spec.slices {
        if let Some(w) = &s.window {
            w.parse::<TimeWindow>()?;
        }
    }
    if !(1..=MAX_BATCH).contains(&spec.batch_size) {
        return Err(CampaignError::invalid(
            "batch_size",
            format!("{} not in 1..=10000", spec.batch_size),
        ));
    }
    time_zone(&spec.timezone)?;
    if let Some(e) = &spec.extension {
        routing::check_extension(e)?;
    }
    rules::check_custom_lists(conn, &spec.custom_lists)?;
    let json =
        serde_json::to_string(spec).map_err(|e| CampaignError::invalid("spec", e.to_string()))?;
    conn.execute(
        "INSERT INTO bulk_sends (task_id, spec) VALUES (?1, ?2)",
        params![task, json],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Loads a bulk send.
///
/// # Errors
/// [`CampaignError::NotFound`]; corrupt spec JSON.
pub fn load_bulk(conn: &Connection, id: i64) -> Result<Bulk> {
    let row: Option<(i64, String, Option<i64>, Option<String>)> = conn
        .query_row(
            "SELECT task_id, spec, planned_at, source FROM bulk_sends WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let (task, spec, planned_at, source) = row.ok_or(CampaignError::NotFound {
        what: "bulk send",
        id,
    })?;
    let spec = serde_json::from_str(&spec).map_err(|source| StoreError::Json {
        table: "bulk_sends",
        id,
        source,
    })?;
    Ok(Bulk {
        id,
        task,
        spec,
        planned_at,
        source,
    })
}

/// The parsed push part: `Some` exactly for channel `wap_push`.
fn push_template(spec: &BulkSpec, table: &SubscriberTable) -> Result<Option<PushTemplate>> {
    match (&spec.push, spec.channel) {
        (Some(p), Channel::WapPush) => PushTemplate::parse(p, table).map(Some),
        (None, Channel::WapPush) => Err(CampaignError::invalid(
            "push",
            "channel wap_push needs push.href (the SI text is the template)",
        )),
        (Some(_), c) => Err(CampaignError::invalid(
            "push",
            format!("only for channel wap_push, not {c}"),
        )),
        (None, _) => Ok(None),
    }
}

/// The parsed MMS part: `Some` exactly for channel `mms`.
fn mms_template(spec: &BulkSpec, table: &SubscriberTable) -> Result<Option<MmsTemplate>> {
    match (&spec.mms, spec.channel) {
        (Some(m), Channel::Mms) => MmsTemplate::parse(m, table).map(Some),
        (None, Channel::Mms) => Err(CampaignError::invalid(
            "mms",
            "channel mms needs mms (subject, image, slides; the template is the first text)",
        )),
        (Some(_), c) => Err(CampaignError::invalid(
            "mms",
            format!("only for channel mms, not {c}"),
        )),
        (None, _) => Ok(None),
    }
}

fn ctx<'a>(spec: &'a BulkSpec, table: &'a SubscriberTable) -> RuleContext<'a> {
    RuleContext {
        channel: spec.channel,
        offer: &spec.offer,
        campaign_type: &spec.campaign_type,
        policy: &spec.policy,
        custom_lists: &spec.custom_lists,
        table,
    }
}

/// Plans (launches) a bulk send without service numbers (no extensions); idempotent.
///
/// # Errors
/// As [`plan_with`].
pub fn plan(
    conn: &mut Connection,
    table: &SubscriberTable,
    bulk_id: i64,
    now: i64,
) -> Result<PlanReport> {
    plan_with(conn, table, bulk_id, now, &MoSettings::default())
}

/// Plans (launches) a bulk send; idempotent. When the bulk sends from one of `mo`'s
/// service numbers ([`MoSettings::service_number_for`]), its task gets an extension
/// ([`routing::assign`], in the planning transaction) and the bulk's source address
/// `service number + extension` is frozen with the plan.
///
/// # Errors
/// [`CampaignError::NotSendable`] unless the task is scheduled or running; rule/group errors;
/// [`CampaignError::Invalid`] (`extension`) for an extension without a service number or
/// one held by another live task.
pub fn plan_with(
    conn: &mut Connection,
    table: &SubscriberTable,
    bulk_id: i64,
    now: i64,
    mo: &MoSettings,
) -> Result<PlanReport> {
    let bulk = load_bulk(conn, bulk_id)?;
    let state = task_state(conn, bulk.task)?;
    if !state.may_send() {
        return Err(CampaignError::NotSendable {
            task: bulk.task,
            state,
        });
    }
    if bulk.planned_at.is_some() {
        return plan_report(conn, bulk_id);
    }
    let service_number = mo.service_number_for(bulk.spec.from.as_deref());
    if service_number.is_none() && bulk.spec.extension.is_some() {
        return Err(CampaignError::invalid(
            "extension",
            "needs a service number: the sending account has none, or `from` is not one",
        ));
    }
    let audience = segment::members(conn, bulk.spec.segment)?;
    let (kept, excluded) = rules::apply(conn, &ctx(&bulk.spec, table), &audience, now)?;
    let groups = split(&bulk.spec.groups, &kept, table)?;
    let mut sendable = RoaringBitmap::new();
    for g in groups.iter().filter(|g| !g.is_control) {
        sendable |= &g.members;
    }
    let n = bulk.spec.slices.len() as u64;
    let total = sendable.len();
    let tx = conn.transaction()?;
    for (reason, count) in &excluded {
        tx.execute(
            "INSERT INTO bulk_exclusions (bulk_id, phase, reason, count) VALUES (?1, 'launch', ?2, ?3)",
            params![bulk_id, reason.as_str(), *count as i64],
        )?;
    }
    for g in &groups {
        tx.execute(
            "INSERT INTO bulk_groups (bulk_id, name, is_control, members) VALUES (?1, ?2, ?3, ?4)",
            params![bulk_id, g.name, g.is_control, bitmap_to_blob(&g.members)],
        )?;
    }
    // Slice k gets ranks [k*total/n, (k+1)*total/n) of the sendable set, in id order.
    let mut iter = sendable.iter();
    for (k, s) in bulk.spec.slices.iter().enumerate() {
        let k = k as u64;
        let take = ((k + 1) * total / n - k * total / n) as usize;
        let members: RoaringBitmap = iter.by_ref().take(take).collect();
        tx.execute(
            "INSERT INTO slices (bulk_id, idx, start_at, window, members) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![bulk_id, k as i64, s.start.as_second(), s.window, bitmap_to_blob(&members)],
        )?;
    }
    let source = match service_number {
        Some(sn) => {
            Some(routing::assign(&tx, bulk.task, sn, bulk.spec.extension.as_deref(), now)?.source())
        }
        None => None,
    };
    tx.execute(
        "UPDATE bulk_sends SET planned_at = ?1, source = ?2 WHERE id = ?3",
        params![now, source, bulk_id],
    )?;
    tx.commit()?;
    tracing::info!(
        bulk = bulk_id,
        audience = audience.len(),
        sendable = total,
        "Bulk send planned."
    );
    plan_report(conn, bulk_id)
}

/// Exclusion counts of a bulk send per phase (`launch` / `dispatch`).
///
/// # Errors
/// SQLite failure.
pub fn exclusions(conn: &Connection, bulk_id: i64, phase: &str) -> Result<ExclusionCounts> {
    let mut st = conn.prepare(
        "SELECT reason, SUM(count) FROM bulk_exclusions WHERE bulk_id = ?1 AND phase = ?2 GROUP BY reason",
    )?;
    let mut out = ExclusionCounts::new();
    let rows = st.query_map(params![bulk_id, phase], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for r in rows {
        let (reason, n) = r?;
        if let Some(reason) = rules::ORDER.iter().find(|x| x.as_str() == reason) {
            out.insert(*reason, n as u64);
        }
    }
    Ok(out)
}

/// Every exclusion count of a bulk send in `phase` by reason name: the contact rules'
/// reasons and the gateway's public rules (`public:<rule>`), for reports.
///
/// # Errors
/// SQLite failure.
pub fn exclusion_report(
    conn: &Connection,
    bulk_id: i64,
    phase: &str,
) -> Result<BTreeMap<String, u64>> {
    let mut st = conn.prepare(
        "SELECT reason, SUM(count) FROM bulk_exclusions WHERE bulk_id = ?1 AND phase = ?2 GROUP BY reason",
    )?;
    let rows = st.query_map(params![bulk_id, phase], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (reason, n) = r?;
        out.insert(reason, u64::try_from(n).unwrap_or(0));
    }
    Ok(out)
}

/// Persisted groups of a bulk send: (name, is_control, members).
///
/// # Errors
/// SQLite failure or corrupt BLOB.
pub fn groups(conn: &Connection, bulk_id: i64) -> Result<Vec<(String, bool, RoaringBitmap)>> {
    let mut st = conn.prepare(
        "SELECT name, is_control, members FROM bulk_groups WHERE bulk_id = ?1 ORDER BY rowid",
    )?;
    let rows = st.query_map([bulk_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (n, c, b) = r?;
        out.push((n, c, blob_to_bitmap(&b, "bulk_groups", bulk_id)?));
    }
    Ok(out)
}

/// The stored plan of a bulk send.
///
/// # Errors
/// SQLite failure.
pub fn plan_report(conn: &Connection, bulk_id: i64) -> Result<PlanReport> {
    let bulk = load_bulk(conn, bulk_id)?;
    let audience = segment::members(conn, bulk.spec.segment)?.len();
    let groups = groups(conn, bulk_id)?
        .into_iter()
        .map(|(name, is_control, m)| GroupCount {
            name,
            is_control,
            count: m.len(),
        })
        .collect();
    let slices = slice_states(conn, bulk_id)?
        .iter()
        .map(|s| s.members.len())
        .collect();
    Ok(PlanReport {
        bulk: bulk_id,
        audience,
        excluded: exclusions(conn, bulk_id, "launch")?,
        groups,
        slices,
    })
}

/// Persisted state of one slice.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceState {
    pub idx: u32,
    pub start: i64,
    pub window: Option<String>,
    pub members: RoaringBitmap,
    /// Next subscriber id to send.
    pub cursor: u32,
    /// Whether the dispatch-time rule check has run.
    pub checked: bool,
    pub done: bool,
}

/// All slices of a bulk send, by index.
///
/// # Errors
/// SQLite failure or corrupt BLOB.
pub fn slice_states(conn: &Connection, bulk_id: i64) -> Result<Vec<SliceState>> {
    let mut st = conn.prepare(
        "SELECT idx, start_at, window, members, cursor, checked, done FROM slices WHERE bulk_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map([bulk_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get::<_, Vec<u8>>(3)?,
            r.get::<_, i64>(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (idx, start, window, blob, cursor, checked, done) = r?;
        out.push(SliceState {
            idx: idx as u32,
            start,
            window,
            members: blob_to_bitmap(&blob, "slices", bulk_id)?,
            cursor: cursor as u32,
            checked,
            done,
        });
    }
    Ok(out)
}

/// A rendered batch waiting to be dispatched and committed.
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    pub bulk: i64,
    pub task: i64,
    pub slice: u32,
    /// Cursor this batch starts at (checked at commit).
    pub from_cursor: u32,
    /// Cursor after this batch.
    pub next_cursor: u32,
    /// True if this batch finishes the slice.
    pub finishes_slice: bool,
    pub subscribers: Vec<u32>,
    pub groups: Vec<String>,
    pub messages: Vec<OutboundMessage>,
}

/// What [`next_batch`] found.
#[derive(Debug)]
pub enum Next {
    Batch(PreparedBatch),
    /// Unfinished slices exist but none may send at `now`.
    Waiting,
    /// Every slice is done.
    Finished,
}

/// Whether subscriber `sub` of bulk send `bulk_id` may still get its contact row: the task
/// can still send (scheduled, running or paused) and an unfinished slice holds `sub` at or
/// after its cursor. The gateway can report a message of a batch whose commit has not
/// happened yet — the runner commits only after the gateway acknowledged the batch, and a
/// crash between the two leaves the batch to be re-sent (same `client_ref`s, same ids) and
/// committed after the restart — so a receipt for such a subscriber must be kept and
/// retried rather than counted unmatched. `false` once the cursor passed `sub` (a message
/// without a contact row then was refused by a public rule) or the task ended.
///
/// # Errors
/// Unknown bulk send; SQLite failure or corrupt BLOB.
pub fn awaiting_commit(conn: &Connection, bulk_id: i64, sub: u32) -> Result<bool> {
    let bulk = load_bulk(conn, bulk_id)?;
    let state = task_state(conn, bulk.task)?;
    if !(state.may_send() || state == TaskState::Paused) {
        return Ok(false);
    }
    Ok(slice_states(conn, bulk_id)?
        .iter()
        .any(|s| !s.done && sub >= s.cursor && s.members.contains(sub)))
}

/// Marks every unfinished slice of `task` for a fresh dispatch-time rule check (on resume).
///
/// # Errors
/// SQLite failure.
pub fn recheck_unfinished(conn: &Connection, task: i64) -> Result<()> {
    conn.execute(
        "UPDATE slices SET checked = 0 WHERE done = 0
         AND bulk_id IN (SELECT id FROM bulk_sends WHERE task_id = ?1)",
        [task],
    )?;
    Ok(())
}

/// Re-applies the rules to a slice's pending members (first touch, and again after a
/// resume) and persists the result.
fn check_slice(
    conn: &mut Connection,
    table: &SubscriberTable,
    bulk: &Bulk,
    s: &mut SliceState,
    now: i64,
) -> Result<()> {
    let pending: RoaringBitmap = s.members.iter().filter(|&id| id >= s.cursor).collect();
    let (kept, counts) = rules::apply(conn, &ctx(&bulk.spec, table), &pending, now)?;
    let removed = &pending - &kept;
    s.members -= &removed;
    s.checked = true;
    let tx = conn.transaction()?;
    for (reason, n) in &counts {
        tx.execute(
            "INSERT INTO bulk_exclusions (bulk_id, phase, reason, count) VALUES (?1, 'dispatch', ?2, ?3)",
            params![bulk.id, reason.as_str(), *n as i64],
        )?;
    }
    tx.execute(
        "UPDATE slices SET members = ?1, checked = 1 WHERE bulk_id = ?2 AND idx = ?3",
        params![bitmap_to_blob(&s.members), bulk.id, s.idx],
    )?;
    tx.commit()?;
    Ok(())
}

/// Prepares the next batch to send at `now`.
///
/// # Errors
/// [`CampaignError::NotSendable`] unless the task is scheduled/running; store errors.
pub fn next_batch(
    conn: &mut Connection,
    table: &SubscriberTable,
    bulk_id: i64,
    now: Timestamp,
) -> Result<Next> {
    let bulk = load_bulk(conn, bulk_id)?;
    let state = task_state(conn, bulk.task)?;
    if !state.may_send() {
        return Err(CampaignError::NotSendable {
            task: bulk.task,
            state,
        });
    }
    if bulk.planned_at.is_none() {
        return Err(CampaignError::invalid(
            "bulk",
            format!("bulk send {bulk_id} is not planned (launch it first)"),
        ));
    }
    let tz = time_zone(&bulk.spec.timezone)?;
    let mut any_open = false;
    for mut s in slice_states(conn, bulk_id)? {
        if s.done {
            continue;
        }
        any_open = true;
        let window = s
            .window
            .as_deref()
            .map(str::parse::<TimeWindow>)
            .transpose()?;
        let start = Timestamp::from_second(s.start)
            .map_err(|e| CampaignError::invalid("start", e.to_string()))?;
        if !may_send(start, window, now, &tz) {
            continue;
        }
        if !s.checked {
            check_slice(conn, table, &bulk, &mut s, now.as_second())?;
        }
        return Ok(Next::Batch(render(&bulk, table, conn, &s)?));
    }
    Ok(if any_open {
        Next::Waiting
    } else {
        Next::Finished
    })
}

fn render(
    bulk: &Bulk,
    table: &SubscriberTable,
    conn: &Connection,
    s: &SliceState,
) -> Result<PreparedBatch> {
    let spec = &bulk.spec;
    let ids: Vec<u32> = s.members.range(s.cursor..).take(spec.batch_size).collect();
    let next_cursor = ids.last().map_or(s.cursor, |l| l + 1);
    let finishes_slice = s.members.range(next_cursor..).next().is_none();
    let groups = groups(conn, bulk.id)?;
    let default_tpl = Template::parse(&spec.template, table)?;
    let mut tpls = BTreeMap::new();
    for (g, t) in &spec.group_templates {
        tpls.insert(g.as_str(), Template::parse(t, table)?);
    }
    let push = push_template(spec, table)?;
    let mms = mms_template(spec, table)?;
    let mut messages = Vec::with_capacity(ids.len());
    let mut group_names = Vec::with_capacity(ids.len());
    for &id in &ids {
        let group = groups
            .iter()
            .find(|(_, _, m)| m.contains(id))
            .map_or("", |(n, _, _)| n.as_str());
        let tpl = tpls.get(group).unwrap_or(&default_tpl);
        let mut tags = BTreeMap::new();
        tags.insert("task".to_owned(), bulk.task.to_string());
        tags.insert("group".to_owned(), group.to_owned());
        tags.insert("subscriber".to_owned(), id.to_string());
        tags.insert("bulk".to_owned(), bulk.id.to_string());
        let text = tpl.render(table, id);
        let (mut subject, mut parts) = (None, None);
        let (text, si) = match (&push, &mms) {
            (Some(p), _) => (
                None,
                Some(OutboundSi {
                    href: p.href(table, id),
                    text,
                    action: p.action().map(str::to_owned),
                }),
            ),
            (None, Some(m)) => {
                subject = m.subject().map(str::to_owned);
                parts = Some(m.parts(table, id, text));
                (None, None)
            }
            (None, None) => (Some(text), None),
        };
        messages.push(OutboundMessage {
            to: table.msisdn(id).map(|m| m.to_string()).unwrap_or_default(),
            from: bulk.source.clone().or_else(|| spec.from.clone()),
            text,
            si,
            subject,
            parts,
            kind: spec.channel.as_str().to_owned(),
            lane: spec.lane,
            window: s.window.clone(),
            client_ref: format!("t{}-s{}-{}", bulk.task, id, s.idx),
            tags,
        });
        group_names.push(group.to_owned());
    }
    Ok(PreparedBatch {
        bulk: bulk.id,
        task: bulk.task,
        slice: s.idx,
        from_cursor: s.cursor,
        next_cursor,
        finishes_slice,
        subscribers: ids,
        groups: group_names,
        messages,
    })
}

/// Records a dispatched batch: contact history for the accepted messages, exclusions for
/// the ones the gateway's public rules refused, and the cursor, atomically.
///
/// # Errors
/// [`CampaignError::Invalid`] if `gateway_ids` does not match the batch or the slice cursor
/// moved since the batch was prepared (nothing is written then).
pub fn commit_batch(
    conn: &mut Connection,
    b: &PreparedBatch,
    gateway_ids: &[Dispatched],
    now: i64,
) -> Result<()> {
    if gateway_ids.len() != b.subscribers.len() {
        return Err(CampaignError::invalid(
            "gateway_ids",
            format!(
                "{} ids for {} messages",
                gateway_ids.len(),
                b.subscribers.len()
            ),
        ));
    }
    let bulk = load_bulk(conn, b.bulk)?;
    let tx = conn.transaction()?;
    let cursor: i64 = tx.query_row(
        "SELECT cursor FROM slices WHERE bulk_id = ?1 AND idx = ?2",
        params![b.bulk, b.slice],
        |r| r.get(0),
    )?;
    if cursor != i64::from(b.from_cursor) {
        return Err(CampaignError::invalid(
            "batch",
            format!(
                "stale batch: cursor is {cursor}, batch starts at {}",
                b.from_cursor
            ),
        ));
    }
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer, campaign_type, at, gateway_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut refused: BTreeMap<String, i64> = BTreeMap::new();
        for ((sub, grp), outcome) in b.subscribers.iter().zip(&b.groups).zip(gateway_ids) {
            let gid = match outcome {
                Ok(gid) => gid,
                Err(r) => {
                    *refused.entry(format!("public:{}", r.rule())).or_default() += 1;
                    continue;
                }
            };
            ins.execute(params![
                sub,
                b.task,
                b.bulk,
                b.slice,
                grp,
                bulk.spec.channel.as_str(),
                bulk.spec.offer,
                bulk.spec.campaign_type,
                now,
                gid
            ])?;
        }
        for (reason, n) in &refused {
            tx.execute(
                "INSERT INTO bulk_exclusions (bulk_id, phase, reason, count) VALUES (?1, 'dispatch', ?2, ?3)",
                params![b.bulk, reason, n],
            )?;
        }
    }
    tx.execute(
        "UPDATE slices SET cursor = ?1, done = ?2 WHERE bulk_id = ?3 AND idx = ?4",
        params![b.next_cursor, b.finishes_slice, b.bulk, b.slice],
    )?;
    tx.commit()?;
    Ok(())
}

/// Why [`run`] returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RunOutcome {
    /// Every slice is sent.
    Finished { sent: u64 },
    /// The task left `running` (paused/cancelled) — stopped at a batch boundary.
    Stopped { sent: u64, state: TaskState },
    /// No slice may send now (before start / outside window).
    Waiting { sent: u64 },
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    /// The dispatcher failed; the cursor did not move, so a later run retries the batch.
    #[error("dispatch failed after {sent} messages: {source}")]
    Dispatch {
        sent: u64,
        #[source]
        source: DispatchError,
    },
}

/// Drives a running task's bulk send until it finishes, waits for a window, or is paused.
///
/// `now` is called before each batch (inject a fake clock in tests). The lock is held only
/// for the synchronous steps, never across the dispatcher's await.
///
/// # Errors
/// [`RunError`]; the persisted cursor always reflects exactly what was committed.
pub async fn run<D: Dispatcher, F: Fn() -> Timestamp>(
    svc: &Mutex<Campaigns>,
    dispatcher: &D,
    bulk_id: i64,
    now: F,
) -> Result<RunOutcome, RunError> {
    let mut sent = 0u64;
    loop {
        let t = now();
        let batch = {
            let mut g = svc
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let c = &mut *g;
            let task = load_bulk(&c.conn, bulk_id)?.task;
            let state = task_state(&c.conn, task)?;
            if state != TaskState::Running {
                return Ok(RunOutcome::Stopped { sent, state });
            }
            match next_batch(&mut c.conn, &c.table, bulk_id, t)? {
                Next::Batch(b) => b,
                Next::Waiting => return Ok(RunOutcome::Waiting { sent }),
                Next::Finished => return Ok(RunOutcome::Finished { sent }),
            }
        };
        let ids = if batch.messages.is_empty() {
            Vec::new()
        } else {
            dispatcher
                .dispatch(&batch.messages)
                .await
                .map_err(|source| RunError::Dispatch { sent, source })?
        };
        let mut g = svc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        commit_batch(&mut g.conn, &batch, &ids, now().as_second())?;
        sent += ids.iter().filter(|o| o.is_ok()).count() as u64;
    }
}

/// Reason names for reports.
pub fn reason_names(c: &ExclusionCounts) -> BTreeMap<&'static str, u64> {
    c.iter()
        .map(|(r, n): (&Reason, &u64)| (r.as_str(), *n))
        .collect()
}
