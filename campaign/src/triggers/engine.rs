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
//!    subscriber within the trigger's `conflict_period_s` (the `contacts` table);
//! 6. `suppressed` / `<rule>`: the contact rules of [`crate::rules`] (lists, conflicting
//!    offers, recently-marketed, caps — over the same contact history batch sends write);
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
use roaring::RoaringBitmap;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Compiled, TREATED, unit_hash};
use crate::dispatch::{Dispatched, Dispatcher, OutboundMessage};
use crate::error::{CampaignError, Result};
use crate::events::Event;
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

/// Decides the next step at `now` over at most `limit` new events (plus the held ones).
///
/// # Errors
/// SQLite failure.
pub fn plan(c: &Campaigns, now: Timestamp, limit: usize) -> Result<Plan> {
    let conn = &c.conn;
    let table = &c.table;
    let now_s = now.as_second();
    let active = super::active(conn, table)?;
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

    // 4–6: cooldown, conflict period, contact rules — per candidate.
    let mut last_sent =
        conn.prepare_cached("SELECT MAX(at) FROM contacts WHERE task_id = ?1 AND sub_id = ?2")?;
    let mut other = conn.prepare_cached(
        "SELECT task_id, offer FROM contacts WHERE sub_id = ?1 AND at >= ?2 AND task_id != ?3
         ORDER BY at DESC LIMIT 1",
    )?;
    let mut eligible: Vec<bool> = vec![true; cands.len()];
    let mut per_trigger: BTreeMap<usize, RoaringBitmap> = BTreeMap::new();
    for (i, cd) in cands.iter().enumerate() {
        let s = &active[cd.t].trigger.spec;
        if s.cooldown_s > 0 {
            let at: Option<i64> =
                last_sent.query_row(params![active[cd.t].trigger.task, cd.sub], |r| r.get(0))?;
            if at.is_some_and(|at| at > now_s - i64::from(s.cooldown_s)) {
                p.records.push(record(
                    &active[cd.t],
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
            let hit: Option<(i64, String)> = other
                .query_row(
                    params![
                        cd.sub,
                        now_s - i64::from(s.conflict_period_s),
                        active[cd.t].trigger.task
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((task, offer)) = hit {
                p.records.push(record(
                    &active[cd.t],
                    cd.seq,
                    cd.sub,
                    "lost",
                    format!("conflict_period: task {task} offer {offer:?}"),
                    cd.held_at,
                ));
                eligible[i] = false;
                continue;
            }
        }
        per_trigger.entry(cd.t).or_default().insert(cd.sub);
    }
    let mut excluded: HashMap<(usize, u32), &'static str> = HashMap::new();
    for (ti, subs) in &per_trigger {
        let s = &active[*ti].trigger.spec;
        let ctx = RuleContext {
            channel: s.channel,
            offer: &s.offer,
            campaign_type: &s.campaign_type,
            policy: &s.policy,
            custom_lists: &s.custom_lists,
            table,
        };
        let (_, sets) = rules::apply_sets(conn, &ctx, subs, now_s)?;
        for (reason, set) in sets {
            for sub in set {
                excluded.insert((*ti, sub), reason.as_str());
            }
        }
    }
    for (i, cd) in cands.iter().enumerate() {
        if eligible[i]
            && let Some(reason) = excluded.get(&(cd.t, cd.sub))
        {
            p.records.push(record(
                &active[cd.t],
                cd.seq,
                cd.sub,
                "suppressed",
                (*reason).to_owned(),
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
            let used: i64 = conn.query_row(
                "SELECT COUNT(*) FROM contacts WHERE task_id = ?1 AND at >= ?2",
                params![t.trigger.task, local_midnight(now, &t.tz)],
                |r| r.get(0),
            )?;
            budget_left.insert(ti, i64::from(b) - used);
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

/// Records a dispatched plan: outcomes, contacts of the accepted sends, held matches, the
/// cursor — in one transaction.
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
        let mut out = tx.prepare_cached(
            "INSERT INTO trigger_outcomes (trigger_id, event_seq, task_id, sub_id,
                outcome, reason, offer, channel, held_at, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut contact = tx.prepare_cached(
            "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                campaign_type, at, gateway_id)
             VALUES (?1, ?2, 0, 0, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut write = |r: &Record, outcome: &str, reason: &str| -> Result<()> {
            out.execute(params![
                r.trigger,
                r.event_seq,
                r.task,
                r.sub,
                outcome,
                reason,
                r.offer,
                r.channel,
                r.held_at,
                p.now
            ])?;
            if outcome != "sent" {
                *rep.outcomes
                    .entry(format!("{outcome}/{reason}"))
                    .or_default() += 1;
            }
            Ok(())
        };
        for r in &p.records {
            write(r, r.outcome, &r.reason)?;
        }
        for ((r, _), o) in p.sends.iter().zip(outcomes) {
            match o {
                Ok(gid) => {
                    write(r, "sent", "")?;
                    contact.execute(params![
                        r.sub,
                        r.task,
                        TREATED,
                        r.channel,
                        r.offer,
                        r.campaign_type,
                        p.now,
                        gid
                    ])?;
                    rep.sent += 1;
                }
                Err(refusal) => write(r, "suppressed", &format!("public:{}", refusal.rule()))?,
            }
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
        let c = svc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        plan(&c, now, limit)?
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
