//! Matching stored events to running triggers and handing the winners to the gateway.
//!
//! One [`step`] = [`plan`] (under the service lock) → [`crate::dispatch::Dispatcher::dispatch`]
//! (lock released) → [`commit`] (under the lock, one transaction). A step reads the events
//! after the durable cursor (`trigger_cursor`, at most `limit`) and the held matches, and
//! decides for every (trigger, event) match, in this order:
//!
//! 1. `dropped` / `stale`: the event is older than the trigger's `staleness_s`;
//! 2. held (`trigger_held`): outside the trigger's window — decided again every step until
//!    the window opens (then it goes on from 3 with `held_at` recorded) or it is stale;
//! 3. `control`: the subscriber is in the trigger's hold-out share (never sent);
//! 4. `suppressed` / `cooldown`: this trigger sent to the subscriber within `cooldown_s`;
//! 5. `lost` / `conflict_period`: any other task (triggered or batch) contacted the
//!    subscriber within the trigger's `conflict_period_s`;
//! 6. `suppressed` / `<rule>`: the contact rules of [`crate::rules`] (lists, conflicting
//!    offers, recently-marketed, caps — over the same contact history batch sends write),
//!    decided per candidate by [`crate::rules::Prepared::first_reason`].
//!
//! 4–6 and the daily budget read the contact history from [`ContactIndex`] (kept in
//! [`Matching`] with the compiled triggers, synced with the `contacts` table at the start
//! of every step), not with a query per candidate or per trigger.
//! 7. arbitration: of the candidates for one subscriber in the step, exactly one is sent —
//!    higher `priority`, then the higher `score_attr` value, then the lower
//!    [`super::unit_hash`] of (trigger, number) (fixed, and not always the same trigger);
//!    a candidate over its trigger's `daily_budget` is `suppressed` / `budget` and the next
//!    one is tried; the others are `lost` / `arbitration: trigger N won`;
//! 8. `sent`: accepted by the gateway (a contact row of the trigger's task, group
//!    `treated`), or `suppressed` / `public:<rule>` when the gateway's public contact
//!    rules refused it.
//!
//! Exactness: the cursor moves only in [`commit`], with every outcome and contact of the
//! step. A crash between dispatch and commit replays the step; the messages carry
//! `client_ref = "e{event seq}-t{trigger}"`, which the gateway deduplicates, so nothing
//! acknowledged is lost and no subscriber is sent twice. (A replay decided differently —
//! the window closed meanwhile — leaves that one gateway message without its contact row:
//! the gateway's in-flight window.) [`commit`] refuses a plan whose cursor is stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use jiff::Timestamp;
use rusqlite::{Connection, params};

use super::{Compiled, TREATED, unit_hash};
use crate::contact_index::ContactIndex;
use crate::dispatch::{Dispatched, Dispatcher, OutboundMessage};
use crate::error::{CampaignError, Result};
use crate::events::Event;
use crate::fxhash::FxHashMap;
use crate::launch::{MAX_BATCH, RunError};
use crate::rules::{self, Channel, RuleContext};
use crate::service::Campaigns;
use crate::table::{ColumnRef, SubscriberTable};

/// One decided (trigger, event) match.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Record {
    pub trigger: i64,
    pub task: i64,
    pub event_seq: i64,
    pub sub: u32,
    /// `sent`, `control`, `dropped`, `suppressed`, `lost`.
    pub outcome: &'static str,
    pub reason: String,
    pub offer: String,
    pub channel: &'static str,
    pub campaign_type: String,
    /// When the match was first held for its window, if it was.
    pub held_at: Option<i64>,
}

/// A match held until its trigger's window opens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    trigger: i64,
    event_seq: i64,
    sub: u32,
    held_at: i64,
}

/// What a step decided, before the gateway is asked.
#[derive(Debug, Default)]
pub struct Plan {
    from_seq: i64,
    to_seq: i64,
    now: i64,
    /// New events read.
    pub events: u64,
    /// Of those, events for numbers that are not subscribers.
    pub unknown: u64,
    /// (trigger, event) matches decided or held in this step.
    pub matched: u64,
    /// Decided outcomes other than the sends.
    pub records: Vec<Record>,
    held: Vec<Held>,
    released: Vec<(i64, i64)>,
    /// The sends, with the record each becomes once the gateway accepts it.
    pub sends: Vec<(Record, OutboundMessage)>,
}

impl Plan {
    /// The messages to hand to the gateway, in order.
    pub fn messages(&self) -> Vec<OutboundMessage> {
        self.sends.iter().map(|(_, m)| m.clone()).collect()
    }

    /// Whether more events may wait after this step's.
    pub const fn more(&self, limit: usize) -> bool {
        self.events as usize >= limit
    }
}

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepReport {
    pub events: u64,
    pub unknown_subscriber: u64,
    pub matched: u64,
    pub sent: u64,
    pub held: u64,
    /// Outcomes by `outcome/reason` (sent excluded).
    pub outcomes: BTreeMap<String, u64>,
}

struct Cand<'a> {
    t: usize,
    seq: i64,
    ev: &'a Event,
    sub: u32,
    held_at: Option<i64>,
}

fn read_events(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<(i64, Event, i64)>> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(p, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (seq, id, msisdn, kind, ts, attrs, extra) = r?;
        // Stored by the intake from a checked object; a row edited by hand reads as no attrs.
        let attrs = serde_json::from_str(&attrs).unwrap_or_default();
        out.push((
            seq,
            Event {
                id,
                msisdn: msisdn as u64,
                kind,
                ts,
                attrs,
            },
            extra,
        ));
    }
    Ok(out)
}

/// The durable matching cursor: every event with `seq` ≤ it is decided.
///
/// # Errors
/// SQLite failure.
pub fn cursor(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT seq FROM trigger_cursor WHERE id = 1", [], |r| {
            r.get(0)
        })?,
    )
}

fn score(t: &SubscriberTable, attr: Option<&str>, sub: u32) -> f64 {
    let v = attr.and_then(|a| match t.column(a)? {
        ColumnRef::Num(xs) => xs.get(sub as usize).copied(),
        ColumnRef::Msisdn(m) => m.get(sub as usize).map(|v| *v as f64),
        ColumnRef::Str(c) => c
            .codes
            .get(sub as usize)
            .and_then(|&code| c.dict.value(code).parse().ok()),
    });
    v.filter(|x: &f64| !x.is_nan()).unwrap_or(f64::NEG_INFINITY)
}

fn local_midnight(now: Timestamp, tz: &jiff::tz::TimeZone) -> i64 {
    let day = tz.to_datetime(now).date();
    tz.to_ambiguous_timestamp(day.to_datetime(jiff::civil::Time::midnight()))
        .compatible()
        .map_or(now.as_second(), Timestamp::as_second)
}

/// What matching keeps between steps (in [`Campaigns`]): the running triggers compiled,
/// and the contact history the per-candidate rules read. Neither is a record: both are
/// rebuilt from the store after a restart.
#[derive(Debug, Default)]
pub struct Matching {
    /// The running triggers, compiled, in id order.
    compiled: Vec<Compiled>,
    /// Per compiled trigger, what it was compiled from (spec JSON, source, task).
    from: Vec<(String, Option<String>)>,
    /// The contact history ([`ContactIndex`]).
    pub index: ContactIndex,
    /// When rows no running trigger needs were last dropped (Unix seconds).
    pruned_at: i64,
}

/// How often the history is pruned to what the running triggers read.
const PRUNE_EVERY_S: i64 = 600;

impl Matching {
    /// Reads the running triggers and compiles only those that are new or changed since
    /// the last step (a spec or source edited, a task resumed); the others are kept.
    fn refresh(&mut self, conn: &Connection, table: &SubscriberTable) -> Result<()> {
        let mut st = conn.prepare_cached(
            "SELECT g.id, g.task_id, g.spec, g.source FROM triggers g
             JOIN tasks t ON t.id = g.task_id WHERE t.state = 'running' ORDER BY g.id",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut old: HashMap<i64, (Compiled, (String, Option<String>))> = self
            .compiled
            .drain(..)
            .zip(self.from.drain(..))
            .map(|(c, f)| (c.trigger.id, (c, f)))
            .collect();
        for r in rows {
            let (id, task, spec, source) = r?;
            if let Some((c, f)) = old.remove(&id)
                && c.trigger.task == task
                && f.0 == spec
                && f.1 == source
            {
                self.compiled.push(c);
                self.from.push(f);
                continue;
            }
            match super::from_row(id, task, &spec, source.clone())
                .and_then(|t| Compiled::new(t, table))
            {
                Ok(c) => {
                    self.compiled.push(c);
                    self.from.push((spec, source));
                }
                Err(e) => {
                    tracing::warn!(trigger = id, error = %e, "Trigger skipped: it no longer compiles.");
                }
            }
        }
        Ok(())
    }

    /// Every [`PRUNE_EVERY_S`], drops the history older than any running trigger reads.
    fn prune(
        index: &mut ContactIndex,
        pruned_at: &mut i64,
        compiled: &[Compiled],
        conn: &Connection,
        table: &SubscriberTable,
        now: Timestamp,
    ) -> Result<()> {
        let now_s = now.as_second();
        if now_s - *pruned_at < PRUNE_EVERY_S || index.is_empty() {
            return Ok(());
        }
        let mut since = now_s;
        for t in compiled {
            let s = &t.trigger.spec;
            let ctx = RuleContext {
                channel: s.channel,
                offer: &s.offer,
                campaign_type: &s.campaign_type,
                policy: &s.policy,
                custom_lists: &s.custom_lists,
                table,
            };
            since = since.min(history_since(t, &rules::prepare(conn, &ctx, now_s)?, now_s));
            if s.daily_budget.is_some() {
                since = since.min(local_midnight(now, &t.tz));
            }
        }
        index.prune(since);
        *pruned_at = now_s;
        Ok(())
    }
}

/// The earliest contact time trigger `t` reads at `now_s`: its contact rules, cooldown
/// and conflict period (`i64::MAX`: none).
fn history_since(t: &Compiled, rules: &rules::Prepared, now_s: i64) -> i64 {
    let s = &t.trigger.spec;
    let mut since = rules.since().unwrap_or(i64::MAX);
    if s.cooldown_s > 0 {
        since = since.min(now_s - i64::from(s.cooldown_s));
    }
    if s.conflict_period_s > 0 {
        since = since.min(now_s - i64::from(s.conflict_period_s));
    }
    since
}

/// Decides the next step at `now` over at most `limit` new events (plus the held ones).
///
/// # Errors
/// SQLite failure.
pub fn plan(c: &mut Campaigns, now: Timestamp, limit: usize) -> Result<Plan> {
    let conn = &c.conn;
    let table = &c.table;
    let now_s = now.as_second();
    let state = &mut c.matching;
    state.refresh(conn, table)?;
    let active: &[Compiled] = &state.compiled;
    let from_seq = cursor(conn)?;
    let events = read_events(
        conn,
        "SELECT seq, id, msisdn, type, ts, attrs, 0 FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![from_seq, limit as i64],
    )?;
    let held = read_events(
        conn,
        "SELECT e.seq, e.id, e.msisdn, e.type, e.ts, e.attrs, h.trigger_id FROM trigger_held h
         JOIN events e ON e.seq = h.event_seq ORDER BY e.seq",
        [],
    )?;
    let held_at: HashMap<(i64, i64), i64> = {
        let mut st =
            conn.prepare_cached("SELECT trigger_id, event_seq, held_at FROM trigger_held")?;
        st.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
            .collect::<std::result::Result<_, _>>()?
    };
    let mut p = Plan {
        from_seq,
        to_seq: events.last().map_or(from_seq, |e| e.0),
        now: now_s,
        events: events.len() as u64,
        ..Plan::default()
    };
    let mut by_type: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in active.iter().enumerate() {
        by_type
            .entry(t.trigger.spec.event_type.as_str())
            .or_default()
            .push(i);
    }
    let by_id: HashMap<i64, usize> = active
        .iter()
        .enumerate()
        .map(|(i, t)| (t.trigger.id, i))
        .collect();
    let record = |t: &Compiled,
                  seq: i64,
                  sub: u32,
                  outcome: &'static str,
                  reason: String,
                  held_at: Option<i64>| Record {
        trigger: t.trigger.id,
        task: t.trigger.task,
        event_seq: seq,
        sub,
        outcome,
        reason,
        offer: t.trigger.spec.offer.clone(),
        channel: t.trigger.spec.channel.as_str(),
        campaign_type: t.trigger.spec.campaign_type.clone(),
        held_at,
    };

    // 1–3: staleness, window, control.
    let mut cands: Vec<Cand<'_>> = Vec::new();
    let mut matches: Vec<(usize, i64, usize, bool, u32, Option<i64>)> = Vec::new();
    for (ei, (seq, ev, _)) in events.iter().enumerate() {
        let Some(sub) = table.id_of(ev.msisdn) else {
            p.unknown += 1;
            continue;
        };
        for &ti in by_type.get(ev.kind.as_str()).into_iter().flatten() {
            let t = &active[ti];
            if t.valid_at(now) && t.condition.matches(ev, table, sub) {
                matches.push((ti, *seq, ei, false, sub, None));
            }
        }
    }
    for (ei, (seq, ev, trig)) in held.iter().enumerate() {
        // A held match of a trigger that is not running now (paused) waits.
        let (Some(&ti), Some(sub)) = (by_id.get(trig), table.id_of(ev.msisdn)) else {
            continue;
        };
        matches.push((
            ti,
            *seq,
            ei,
            true,
            sub,
            held_at.get(&(*trig, *seq)).copied(),
        ));
    }
    p.matched = matches.iter().filter(|m| !m.3).count() as u64;
    for (ti, seq, ei, from_held, sub, was_held) in matches {
        let t = &active[ti];
        let ev = if from_held {
            &held[ei].1
        } else {
            &events[ei].1
        };
        if from_held {
            if !t.window_open(now) && now_s - ev.ts <= i64::from(t.trigger.spec.staleness_s) {
                continue;
            }
            p.released.push((t.trigger.id, seq));
        }
        if now_s - ev.ts > i64::from(t.trigger.spec.staleness_s) {
            p.records
                .push(record(t, seq, sub, "dropped", "stale".into(), was_held));
        } else if !t.window_open(now) {
            p.held.push(Held {
                trigger: t.trigger.id,
                event_seq: seq,
                sub,
                held_at: now_s,
            });
        } else if t.in_control(ev.msisdn) {
            p.records
                .push(record(t, seq, sub, "control", String::new(), was_held));
        } else {
            cands.push(Cand {
                t: ti,
                seq,
                ev,
                sub,
                held_at: was_held,
            });
        }
    }

    // 4–6: cooldown, conflict period, contact rules — per candidate, over the in-memory
    // contact history (the same rules batch launches apply as sets over the tables).
    let mut prepared: HashMap<usize, rules::Prepared> = HashMap::new();
    let mut since = i64::MAX;
    let mut lists = false;
    for cd in &cands {
        if prepared.contains_key(&cd.t) {
            continue;
        }
        let t = &active[cd.t];
        let s = &t.trigger.spec;
        let ctx = RuleContext {
            channel: s.channel,
            offer: &s.offer,
            campaign_type: &s.campaign_type,
            policy: &s.policy,
            custom_lists: &s.custom_lists,
            table,
        };
        let r = rules::prepare(conn, &ctx, now_s)?;
        since = since.min(history_since(t, &r, now_s));
        lists |= r.reads_lists();
        prepared.insert(cd.t, r);
    }
    for t in active {
        if t.trigger.spec.daily_budget.is_some() {
            since = since.min(local_midnight(now, &t.tz));
        }
    }
    if since != i64::MAX {
        state.index.cover(conn, since)?;
    }
    Matching::prune(
        &mut state.index,
        &mut state.pruned_at,
        active,
        conn,
        table,
        now,
    )?;
    let index = &state.index;
    let lists = lists && rules::any_listed(conn)?;
    let mut listed: FxHashMap<u32, Vec<rules::Listing>> = FxHashMap::default();
    let mut eligible: Vec<bool> = vec![true; cands.len()];
    for (i, cd) in cands.iter().enumerate() {
        let t = &active[cd.t];
        let s = &t.trigger.spec;
        if s.cooldown_s > 0 {
            let after = now_s - i64::from(s.cooldown_s);
            if index
                .contacts(cd.sub, after)
                .any(|c| c.task == t.trigger.task && c.at > after)
            {
                p.records.push(record(
                    t,
                    cd.seq,
                    cd.sub,
                    "suppressed",
                    "cooldown".into(),
                    cd.held_at,
                ));
                eligible[i] = false;
                continue;
            }
        }
        if s.conflict_period_s > 0 {
            // The latest other contact (the last written among equal times).
            let hit = index
                .contacts(cd.sub, now_s - i64::from(s.conflict_period_s))
                .filter(|c| c.task != t.trigger.task)
                .max_by_key(|c| c.at);
            if let Some(c) = hit {
                p.records.push(record(
                    t,
                    cd.seq,
                    cd.sub,
                    "lost",
                    format!("conflict_period: task {} offer {:?}", c.task, c.offer),
                    cd.held_at,
                ));
                eligible[i] = false;
                continue;
            }
        }
        let Some(rs) = prepared.get(&cd.t) else {
            continue;
        };
        let on = if lists {
            match listed.entry(cd.sub) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(rules::listings(conn, cd.ev.msisdn)?)
                }
            }
        } else {
            &Vec::new()
        };
        if let Some(reason) = rs.first_reason(cd.sub, on, index) {
            p.records.push(record(
                t,
                cd.seq,
                cd.sub,
                "suppressed",
                reason.as_str().to_owned(),
                cd.held_at,
            ));
            eligible[i] = false;
        }
    }

    // 7: arbitration per subscriber, in event order.
    let mut by_sub: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, cd) in cands.iter().enumerate() {
        if eligible[i] {
            by_sub.entry(cd.sub).or_default().push(i);
        }
    }
    let mut subs: Vec<(i64, u32)> = by_sub
        .iter()
        .map(|(sub, is)| (is.iter().map(|&i| cands[i].seq).min().unwrap_or(0), *sub))
        .collect();
    subs.sort_unstable();
    let mut budget_left: HashMap<usize, i64> = HashMap::new();
    for (ti, t) in active.iter().enumerate() {
        if let Some(b) = t.trigger.spec.daily_budget {
            let used = index.task_count(t.trigger.task, local_midnight(now, &t.tz));
            budget_left.insert(ti, i64::from(b) - used as i64);
        }
    }
    for (_, sub) in subs {
        let mut is = by_sub.remove(&sub).unwrap_or_default();
        let key = |i: &usize| {
            let cd = &cands[*i];
            let t = &active[cd.t];
            (
                std::cmp::Reverse(t.trigger.spec.priority),
                std::cmp::Reverse(ordered(score(
                    table,
                    t.trigger.spec.score_attr.as_deref(),
                    cd.sub,
                ))),
                ordered(unit_hash(t.trigger.id, cd.ev.msisdn)),
                cd.seq,
            )
        };
        is.sort_by_key(key);
        let mut winner: Option<i64> = None;
        for i in is {
            let cd = &cands[i];
            let t = &active[cd.t];
            if let Some(w) = winner {
                p.records.push(record(
                    t,
                    cd.seq,
                    cd.sub,
                    "lost",
                    format!("arbitration: trigger {w} won"),
                    cd.held_at,
                ));
                continue;
            }
            if let Some(left) = budget_left.get_mut(&cd.t) {
                if *left <= 0 {
                    p.records.push(record(
                        t,
                        cd.seq,
                        cd.sub,
                        "suppressed",
                        "budget".into(),
                        cd.held_at,
                    ));
                    continue;
                }
                *left -= 1;
            }
            winner = Some(t.trigger.id);
            let mut tags = BTreeMap::new();
            tags.insert("task".to_owned(), t.trigger.task.to_string());
            tags.insert("trigger".to_owned(), t.trigger.id.to_string());
            tags.insert("subscriber".to_owned(), cd.sub.to_string());
            tags.insert("event".to_owned(), cd.seq.to_string());
            tags.insert("group".to_owned(), TREATED.to_owned());
            let text = t.template.render(table, cd.sub, cd.ev);
            // On the mms channel the rendered text is the message's one text slide: an MMS
            // carries its texts in parts, never in `text`.
            let (text, parts) = if t.trigger.spec.channel == Channel::Mms {
                let slide = crate::template::MmsPart {
                    url: None,
                    text: Some(text),
                };
                (None, Some(vec![slide]))
            } else {
                (Some(text), None)
            };
            let msg = OutboundMessage {
                to: cd.ev.msisdn.to_string(),
                from: t
                    .trigger
                    .source
                    .clone()
                    .or_else(|| t.trigger.spec.from.clone()),
                text,
                kind: t.trigger.spec.channel.as_str().to_owned(),
                si: None,
                subject: None,
                parts,
                lane: t.trigger.spec.lane,
                window: None,
                client_ref: format!("e{}-t{}", cd.seq, t.trigger.id),
                tags,
            };
            p.sends.push((
                record(t, cd.seq, cd.sub, "sent", String::new(), cd.held_at),
                msg,
            ));
        }
    }
    Ok(p)
}

/// A total order on f64 scores (NaN never reaches here: [`score`] maps it to −∞).
fn ordered(x: f64) -> i64 {
    let b = x.to_bits() as i64;
    if b < 0 { b ^ i64::MAX } else { b }
}

/// Records a dispatched plan: decisions (one packed row per event, hold-outs apart, counts
/// per trigger), contacts of the accepted sends, held matches, the cursor — in one
/// transaction.
///
/// # Errors
/// [`CampaignError::Invalid`] (`plan`) when the outcome count does not match or the cursor
/// moved since the plan (nothing is written then); SQLite failure.
pub fn commit(conn: &Connection, p: &Plan, outcomes: &[Dispatched]) -> Result<StepReport> {
    if outcomes.len() != p.sends.len() {
        return Err(CampaignError::invalid(
            "plan",
            format!("{} outcomes for {} sends", outcomes.len(), p.sends.len()),
        ));
    }
    let tx = conn.unchecked_transaction()?;
    let at = cursor(&tx)?;
    if at != p.from_seq {
        return Err(CampaignError::invalid(
            "plan",
            format!("stale plan: cursor is {at}, plan starts at {}", p.from_seq),
        ));
    }
    let mut rep = StepReport {
        events: p.events,
        unknown_subscriber: p.unknown,
        matched: p.matched,
        held: p.held.len() as u64,
        ..StepReport::default()
    };
    {
        // Outcomes and contacts go in as multi-row inserts: one statement per
        // `ROWS_PER_INSERT` rows instead of one per row.
        let mut rows: Vec<(&Record, &str, String)> =
            Vec::with_capacity(p.records.len() + p.sends.len());
        let mut contacts: Vec<(&Record, &str)> = Vec::with_capacity(p.sends.len());
        for r in &p.records {
            rows.push((r, r.outcome, r.reason.clone()));
        }
        for ((r, _), o) in p.sends.iter().zip(outcomes) {
            match o {
                Ok(gid) => {
                    rows.push((r, "sent", String::new()));
                    contacts.push((r, gid.as_str()));
                    rep.sent += 1;
                }
                Err(refusal) => {
                    rows.push((r, "suppressed", format!("public:{}", refusal.rule())));
                }
            }
        }
        // The step's outcomes per (trigger, outcome, reason): one upsert per key into
        // `trigger_counts` (the funnel's and the monitor's totals) instead of an index
        // entry per row.
        let mut counts: BTreeMap<(i64, &str, &str), (i64, i64)> = BTreeMap::new();
        for (r, outcome, reason) in &rows {
            if *outcome != "sent" {
                *rep.outcomes
                    .entry(format!("{outcome}/{reason}"))
                    .or_default() += 1;
            }
            let c = counts
                .entry((r.trigger, outcome, reason.as_str()))
                .or_default();
            c.0 += 1;
            c.1 += i64::from(r.held_at.is_some());
        }
        let mut count = tx.prepare_cached(
            "INSERT INTO trigger_counts (trigger_id, at, outcome, reason, n, held)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (trigger_id, at, outcome, reason)
             DO UPDATE SET n = n + excluded.n, held = held + excluded.held",
        )?;
        for ((trigger, outcome, reason), (n, held)) in &counts {
            count.execute(params![trigger, p.now, outcome, reason, n, held])?;
        }
        // One `trigger_decisions` row per event of the step (its triggers' decisions
        // packed), one `trigger_control` row per hold-out.
        let mut decided: BTreeMap<i64, (u32, Vec<Decision<'_>>)> = BTreeMap::new();
        let mut control: Vec<&Record> = Vec::new();
        for (r, outcome, reason) in &rows {
            if *outcome == "control" {
                control.push(r);
            } else {
                decided
                    .entry(r.event_seq)
                    .or_insert((r.sub, Vec::new()))
                    .1
                    .push((r.trigger, outcome, reason.as_str(), r.held_at));
            }
        }
        let packed: Vec<(i64, u32, String)> = decided
            .into_iter()
            .map(|(seq, (sub, mut d))| {
                d.sort_unstable_by_key(|e| e.0);
                let json = serde_json::to_string(&d).map_err(|e| {
                    CampaignError::invalid("plan", format!("decisions not encodable: {e}"))
                })?;
                Ok((seq, sub, json))
            })
            .collect::<Result<_>>()?;
        for chunk in packed.chunks(ROWS_PER_INSERT) {
            let mut vals: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 4);
            for (seq, sub, json) in chunk {
                vals.extend([seq as &dyn rusqlite::ToSql, sub, &p.now, json]);
            }
            insert_rows(
                &tx,
                "INSERT INTO trigger_decisions (event_seq, sub_id, at, decisions) VALUES ",
                chunk.len(),
                &vals,
            )?;
        }
        for chunk in control.chunks(ROWS_PER_INSERT) {
            let mut vals: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 8);
            for r in chunk {
                vals.extend([
                    &r.trigger as &dyn rusqlite::ToSql,
                    &r.event_seq,
                    &r.task,
                    &r.sub,
                    &r.offer,
                    &r.channel,
                    &r.held_at,
                    &p.now,
                ]);
            }
            insert_rows(
                &tx,
                "INSERT INTO trigger_control (trigger_id, event_seq, task_id, sub_id, offer,
                    channel, held_at, at) VALUES ",
                chunk.len(),
                &vals,
            )?;
        }
        for chunk in contacts.chunks(ROWS_PER_INSERT) {
            let mut vals: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * 10);
            for (r, gid) in chunk {
                vals.extend([
                    &r.sub as &dyn rusqlite::ToSql,
                    &r.task,
                    &0,
                    &0,
                    &TREATED,
                    &r.channel,
                    &r.offer,
                    &r.campaign_type,
                    &p.now,
                    gid,
                ]);
            }
            insert_rows(
                &tx,
                "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                    campaign_type, at, gateway_id) VALUES ",
                chunk.len(),
                &vals,
            )?;
        }
        let mut hold = tx.prepare_cached(
            "INSERT OR IGNORE INTO trigger_held (trigger_id, event_seq, sub_id, held_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for h in &p.held {
            hold.execute(params![h.trigger, h.event_seq, h.sub, h.held_at])?;
        }
        let mut release =
            tx.prepare_cached("DELETE FROM trigger_held WHERE trigger_id = ?1 AND event_seq = ?2")?;
        for (t, s) in &p.released {
            release.execute(params![t, s])?;
        }
    }
    tx.execute(
        "UPDATE trigger_cursor SET seq = ?1 WHERE id = 1",
        [p.to_seq],
    )?;
    tx.commit()?;
    Ok(rep)
}

/// One trigger's decision in a `trigger_decisions` row, serialised as
/// `[trigger, outcome, reason, held_at]`.
type Decision<'a> = (i64, &'a str, &'a str, Option<i64>);

/// Rows per multi-row insert (10 columns: 2 000 parameters, under SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

/// Runs a multi-row insert of `rows` rows. A full chunk's statement is cached; the step's
/// last, shorter one is not (its length changes every step, and would push the other
/// statements out of the cache).
fn insert_rows(
    conn: &Connection,
    head: &str,
    rows: usize,
    vals: &[&dyn rusqlite::ToSql],
) -> Result<()> {
    let sql = multi_row(head, vals.len() / rows.max(1), rows);
    if rows == ROWS_PER_INSERT {
        conn.prepare_cached(&sql)?.execute(vals)?;
    } else {
        conn.prepare(&sql)?.execute(vals)?;
    }
    Ok(())
}

/// `head` followed by `rows` groups of `cols` placeholders.
fn multi_row(head: &str, cols: usize, rows: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    let mut sql = String::with_capacity(head.len() + rows * (group.len() + 2));
    sql.push_str(head);
    sql.push_str(&vec![group; rows].join(", "));
    sql
}

/// Events read per step (one gateway batch at most).
pub const STEP_EVENTS: usize = MAX_BATCH;

/// One step at `now`: plan under the lock, dispatch without it, commit under it.
///
/// # Errors
/// [`RunError::Dispatch`] when the gateway did not take the batch (nothing is committed:
/// the next step retries it with the same client_refs); store errors.
pub async fn step<D: Dispatcher>(
    svc: &Mutex<Campaigns>,
    dispatcher: &D,
    now: Timestamp,
    limit: usize,
) -> std::result::Result<(StepReport, bool), RunError> {
    let p = {
        let mut c = svc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        plan(&mut c, now, limit)?
    };
    // Held matches released with a full step of new events can exceed what one gateway
    // request takes: hand them over in requests of at most MAX_BATCH. A failure after an
    // accepted chunk commits nothing; the replayed step re-sends that chunk with the same
    // client_refs, which the gateway deduplicates.
    let messages = p.messages();
    let mut outcomes = Vec::with_capacity(messages.len());
    for chunk in messages.chunks(MAX_BATCH) {
        outcomes.extend(
            dispatcher
                .dispatch(chunk)
                .await
                .map_err(|source| RunError::Dispatch { sent: 0, source })?,
        );
    }
    let c = svc
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let rep = commit(&c.conn, &p, &outcomes)?;
    Ok((rep, p.more(limit)))
}

/// Steps until no new event is left, summing the reports.
///
/// # Errors
/// As [`step`]; steps before the failing one are committed.
pub async fn drain<D: Dispatcher>(
    svc: &Mutex<Campaigns>,
    dispatcher: &D,
    now: impl Fn() -> Timestamp,
) -> std::result::Result<StepReport, RunError> {
    let mut total = StepReport::default();
    loop {
        let (r, more) = step(svc, dispatcher, now(), STEP_EVENTS).await?;
        total.events += r.events;
        total.unknown_subscriber += r.unknown_subscriber;
        total.matched += r.matched;
        total.sent += r.sent;
        total.held = r.held;
        for (k, v) in r.outcomes {
            *total.outcomes.entry(k).or_default() += v;
        }
        if !more {
            return Ok(total);
        }
    }
}
