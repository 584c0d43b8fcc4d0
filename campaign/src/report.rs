//! Evaluation: funnel per task × group × channel, uplift vs control, daily report, channel
//! execution monitor.
//!
//! Funnel stages: targeted (group size after launch exclusions; control included) →
//! executed (messages handed to the gateway) → contacted (receipt `delivered`) → converted
//! (distinct subscribers with an order or reply attributed to the group; `converted_fallback`
//! of them by the latest-contact fallback, not an extension). `unsubscribed` counts distinct
//! subscribers who answered with an unsubscribe keyword; they are never conversions. Rates
//! are relative to `targeted`. Hours and days are local time in the given zone (hour of sending).

use std::collections::BTreeMap;
use std::io::Write;

use jiff::Timestamp;
use rusqlite::{Connection, params};

use crate::error::{CampaignError, Result};
use crate::launch;
use crate::stats::{Uplift, two_proportion};
use crate::window::time_zone;

/// One funnel row.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FunnelRow {
    pub group: String,
    pub channel: String,
    pub is_control: bool,
    pub targeted: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Stopped before they were submitted (the gateway's emergency stop): neither sent on
    /// nor failed.
    pub cancelled: u64,
    pub converted: u64,
    /// Of `converted`: subscribers whose reply reached no known extension and was credited
    /// by the latest-contact fallback.
    pub converted_fallback: u64,
    /// Distinct subscribers who answered with an unsubscribe keyword (never conversions).
    pub unsubscribed: u64,
    pub sent_rate: f64,
    pub delivered_rate: f64,
    pub conversion_rate: f64,
}

fn rate(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Funnel of a task: one row per (group, channel) over all its bulk sends.
///
/// # Errors
/// SQLite failure.
pub fn funnel(conn: &Connection, task: i64) -> Result<Vec<FunnelRow>> {
    let mut rows: BTreeMap<(String, String), FunnelRow> = BTreeMap::new();
    let mut st =
        conn.prepare("SELECT id FROM bulk_sends WHERE task_id = ?1 AND planned_at IS NOT NULL")?;
    let bulks: Vec<i64> = st
        .query_map([task], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for b in bulks {
        let spec = launch::load_bulk(conn, b)?.spec;
        let ch = spec.channel.as_str().to_owned();
        for (name, is_control, members) in launch::groups(conn, b)? {
            let row = rows.entry((name.clone(), ch.clone())).or_default();
            row.group = name;
            row.channel = ch.clone();
            row.is_control = is_control;
            row.targeted += members.len();
        }
    }
    let mut st = conn.prepare(
        "SELECT grp, channel, COUNT(*), SUM(state = 'delivered'),
                SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed')),
                SUM(state = 'cancelled')
         FROM contacts WHERE task_id = ?1 GROUP BY grp, channel",
    )?;
    let mut q = st.query([task])?;
    while let Some(r) = q.next()? {
        let key: (String, String) = (r.get(0)?, r.get(1)?);
        let row = rows.entry(key.clone()).or_default();
        row.group = key.0;
        row.channel = key.1;
        row.sent += r.get::<_, i64>(2)? as u64;
        row.delivered += r.get::<_, i64>(3)? as u64;
        row.failed += r.get::<_, i64>(4)? as u64;
        row.cancelled += r.get::<_, i64>(5)? as u64;
    }
    let mut st = conn.prepare(
        "SELECT grp, channel, COUNT(DISTINCT sub_id),
                COUNT(DISTINCT CASE WHEN via = 'latest_contact' THEN sub_id END)
         FROM conversions WHERE task_id = ?1 GROUP BY grp, channel",
    )?;
    let mut q = st.query([task])?;
    while let Some(r) = q.next()? {
        let key: (String, String) = (r.get(0)?, r.get(1)?);
        let row = rows.entry(key.clone()).or_default();
        row.group = key.0;
        row.channel = key.1;
        row.converted += r.get::<_, i64>(2)? as u64;
        row.converted_fallback += r.get::<_, i64>(3)? as u64;
    }
    let mut st = conn.prepare(
        "SELECT grp, channel, COUNT(DISTINCT sub_id) FROM unsubscribes WHERE task_id = ?1 GROUP BY grp, channel",
    )?;
    let mut q = st.query([task])?;
    while let Some(r) = q.next()? {
        let key: (String, String) = (r.get(0)?, r.get(1)?);
        let row = rows.entry(key.clone()).or_default();
        row.group = key.0;
        row.channel = key.1;
        row.unsubscribed += r.get::<_, i64>(2)? as u64;
    }
    Ok(rows
        .into_values()
        .map(|mut r| {
            r.sent_rate = rate(r.sent, r.targeted);
            r.delivered_rate = rate(r.delivered, r.targeted);
            r.conversion_rate = rate(r.converted, r.targeted);
            r
        })
        .collect())
}

/// Uplift of one variant over control.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UpliftRow {
    pub variant: String,
    pub control: String,
    pub channel: String,
    pub test: Option<Uplift>,
}

/// Uplift of every non-control group over the control group of the same channel.
///
/// # Errors
/// SQLite failure.
pub fn uplift(conn: &Connection, task: i64) -> Result<Vec<UpliftRow>> {
    let f = funnel(conn, task)?;
    let mut out = Vec::new();
    for c in f.iter().filter(|r| r.is_control) {
        for v in f.iter().filter(|r| !r.is_control && r.channel == c.channel) {
            out.push(UpliftRow {
                variant: v.group.clone(),
                control: c.group.clone(),
                channel: c.channel.clone(),
                test: two_proportion(v.converted, v.targeted, c.converted, c.targeted),
            });
        }
    }
    Ok(out)
}

/// One line of the daily report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DailyRow {
    /// Local date `YYYY-MM-DD`.
    pub date: String,
    pub task: i64,
    pub group: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub converted: u64,
}

fn local_date(hour: i64, tz: &jiff::tz::TimeZone) -> String {
    Timestamp::from_second(hour * 3600)
        .map_or_else(|_| "?".into(), |t| tz.to_datetime(t).date().to_string())
}

/// The row keyed by the (hour, task_id, grp) columns 0–2 of `r`, created when first seen.
fn daily_row<'a>(
    rows: &'a mut BTreeMap<(String, i64, String), DailyRow>,
    r: &rusqlite::Row<'_>,
    tz: &jiff::tz::TimeZone,
) -> Result<&'a mut DailyRow> {
    let (date, task, group) = (
        local_date(r.get(0)?, tz),
        r.get::<_, i64>(1)?,
        r.get::<_, String>(2)?,
    );
    Ok(rows
        .entry((date.clone(), task, group.clone()))
        .or_insert_with(|| DailyRow {
            date,
            task,
            group,
            ..Default::default()
        }))
}

/// Daily report over all tasks (sending / conversion day, local time).
///
/// # Errors
/// Unknown time zone; SQLite failure.
pub fn daily(conn: &Connection, tz: &str) -> Result<Vec<DailyRow>> {
    daily_for(conn, tz, None)
}

/// JSON array of task ids for `json_each` (NULL = no filter).
fn task_filter(tasks: Option<&[i64]>) -> Option<String> {
    tasks.map(|t| serde_json::Value::from(t.to_vec()).to_string())
}

/// Daily report over the tasks in `tasks` (all tasks when `None`; a caller's visible tasks
/// for the HTTP API).
///
/// # Errors
/// Unknown time zone; SQLite failure.
pub fn daily_for(conn: &Connection, tz: &str, tasks: Option<&[i64]>) -> Result<Vec<DailyRow>> {
    let tz = time_zone(tz)?;
    let filter = task_filter(tasks);
    let mut rows: BTreeMap<(String, i64, String), DailyRow> = BTreeMap::new();
    let mut st = conn.prepare(
        "SELECT at / 3600, task_id, grp, COUNT(*), SUM(state = 'delivered'),
                SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed'))
         FROM contacts WHERE ?1 IS NULL OR task_id IN (SELECT value FROM json_each(?1))
         GROUP BY at / 3600, task_id, grp",
    )?;
    let mut q = st.query([&filter])?;
    while let Some(r) = q.next()? {
        let row = daily_row(&mut rows, r, &tz)?;
        row.sent += r.get::<_, i64>(3)? as u64;
        row.delivered += r.get::<_, i64>(4)? as u64;
        row.failed += r.get::<_, i64>(5)? as u64;
    }
    let mut st = conn.prepare(
        "SELECT at / 3600, task_id, grp, COUNT(*) FROM conversions
         WHERE ?1 IS NULL OR task_id IN (SELECT value FROM json_each(?1))
         GROUP BY at / 3600, task_id, grp",
    )?;
    let mut q = st.query([&filter])?;
    while let Some(r) = q.next()? {
        let row = daily_row(&mut rows, r, &tz)?;
        row.converted += r.get::<_, i64>(3)? as u64;
    }
    Ok(rows.into_values().collect())
}

/// Writes rows as CSV with a header.
///
/// # Errors
/// I/O errors.
pub fn write_csv<W: Write, T: serde::Serialize>(rows: &[T], out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    for r in rows {
        w.serialize(r).map_err(CampaignError::from)?;
    }
    w.flush()?;
    Ok(())
}

/// Channel execution monitor line: one channel, one local hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelHour {
    pub channel: String,
    /// Local `YYYY-MM-DDTHH:00`.
    pub hour: String,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
}

/// Sent / delivered / failed per channel per hour of sending, for contacts at or after `since`.
///
/// # Errors
/// Unknown time zone; SQLite failure.
pub fn channel_monitor(conn: &Connection, since: Timestamp, tz: &str) -> Result<Vec<ChannelHour>> {
    channel_monitor_for(conn, since, tz, None)
}

/// [`channel_monitor`] over the contacts of the tasks in `tasks` (all when `None`).
///
/// # Errors
/// Unknown time zone; SQLite failure.
pub fn channel_monitor_for(
    conn: &Connection,
    since: Timestamp,
    tz: &str,
    tasks: Option<&[i64]>,
) -> Result<Vec<ChannelHour>> {
    let tz = time_zone(tz)?;
    let mut st = conn.prepare(
        "SELECT channel, at / 3600, COUNT(*), SUM(state = 'delivered'),
                SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed'))
         FROM contacts WHERE at >= ?1
           AND (?2 IS NULL OR task_id IN (SELECT value FROM json_each(?2)))
         GROUP BY channel, at / 3600 ORDER BY channel, at / 3600",
    )?;
    let rows = st.query_map(params![since.as_second(), task_filter(tasks)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (channel, h, s, d, f) = r?;
        let hour = Timestamp::from_second(h * 3600).map_or_else(
            |_| "?".into(),
            |t| tz.to_datetime(t).strftime("%Y-%m-%dT%H:00").to_string(),
        );
        out.push(ChannelHour {
            channel,
            hour,
            sent: s as u64,
            delivered: d as u64,
            failed: f as u64,
        });
    }
    Ok(out)
}

/// What a roll-up report groups by. Each dimension is a set of group keys
/// ([`RollupKey`]); adding one (the organisation) is one more variant and one more key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollupBy {
    /// The campaign of the task's activity (tasks without one: no campaign).
    Campaign,
    /// Campaign and activity.
    Activity,
    /// The subscriber's city (from the subscriber table).
    City,
    /// The organisation that owns the task (tasks from before organisations existed belong
    /// to the root).
    Org,
}

/// Roll-up period, in local time of the report's zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// `YYYY-MM-DD`.
    #[default]
    Day,
    /// `YYYY-MM`.
    Month,
}

/// The group keys of a roll-up row; a dimension sets the keys it groups by, the others
/// stay `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct RollupKey {
    pub campaign: Option<i64>,
    pub activity: Option<i64>,
    pub city: Option<String>,
    pub org: Option<i64>,
}

/// Funnel stages of a roll-up row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RollupFunnel {
    /// Group members at planning (control included), counted in the planning period.
    pub targeted: u64,
    /// Messages handed to the gateway.
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Replies credited to the tasks (any outcome, unsubscribes included).
    pub replied: u64,
    /// Distinct subscribers with a conversion (order or reply).
    pub converted: u64,
}

/// One roll-up row: a period and a group.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RollupRow {
    pub period: String,
    #[serde(flatten)]
    pub key: RollupKey,
    pub campaign_name: Option<String>,
    pub activity_name: Option<String>,
    pub funnel: RollupFunnel,
    /// Distinct subscribers contacted.
    pub contacts: u64,
    /// Conversion records (orders and converting replies).
    pub conversions: u64,
    /// Non-control groups over control groups of this row (targeted vs distinct converted),
    /// when the row has both.
    pub uplift: Option<Uplift>,
}

/// Per-row accumulator.
#[derive(Default)]
struct Acc {
    funnel: RollupFunnel,
    contacts: std::collections::HashSet<u32>,
    conversions: u64,
    /// (targeted, converted subscribers) of the non-control and control groups.
    variant: (u64, std::collections::HashSet<u32>),
    control: (u64, std::collections::HashSet<u32>),
    converted: std::collections::HashSet<u32>,
}

/// A task's (campaign, activity, owning organisation); `None` above a task without an
/// activity.
type Place = (Option<i64>, Option<i64>, Option<i64>);

/// Where tasks sit in the hierarchy: task → (campaign, activity, org), for the tasks in
/// `only` (every task when `None`).
fn task_places(conn: &Connection, only: Option<&[i64]>) -> Result<BTreeMap<i64, Place>> {
    let mut st = conn.prepare(
        "SELECT t.id, a.campaign_id, t.activity_id,
                COALESCE(t.org_id, (SELECT id FROM orgs WHERE parent_id IS NULL))
         FROM tasks t LEFT JOIN activities a ON a.id = t.activity_id
         WHERE ?1 IS NULL OR t.id IN (SELECT value FROM json_each(?1))",
    )?;
    let rows = st.query_map([task_filter(only)], |r| {
        Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })?;
    Ok(rows.collect::<std::result::Result<_, _>>()?)
}

/// Roll-up report over the tasks in `tasks` (every task when `None`; a caller's visible
/// tasks for the HTTP API): funnel, contacts, conversions and uplift per `by` group and
/// `period` (local time in `tz`). Contacts count in the period they were sent, conversions
/// and replies in theirs, targeted in the period the bulk send was planned.
///
/// # Errors
/// Unknown time zone; SQLite failure.
pub fn rollup(
    conn: &Connection,
    table: &crate::table::SubscriberTable,
    by: RollupBy,
    period: Period,
    tz: &str,
    tasks: Option<&[i64]>,
) -> Result<Vec<RollupRow>> {
    let tz = time_zone(tz)?;
    let places = task_places(conn, tasks)?;
    let mut periods: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut period_of = |at: i64| -> String {
        let hour = at.div_euclid(3600);
        periods
            .entry(hour)
            .or_insert_with(|| {
                Timestamp::from_second(hour * 3600).map_or_else(
                    |_| "?".into(),
                    |t| {
                        let d = tz.to_datetime(t).date();
                        match period {
                            Period::Day => d.to_string(),
                            Period::Month => d.strftime("%Y-%m").to_string(),
                        }
                    },
                )
            })
            .clone()
    };
    // `None`: the task is outside the report (another tenant's).
    let key_of = |task: i64, sub: Option<u32>| -> Option<RollupKey> {
        let (campaign, activity, org) = *places.get(&task)?;
        Some(match by {
            RollupBy::Org => RollupKey {
                org,
                ..RollupKey::default()
            },
            RollupBy::Campaign => RollupKey {
                campaign,
                ..RollupKey::default()
            },
            RollupBy::Activity => RollupKey {
                campaign,
                activity,
                ..RollupKey::default()
            },
            RollupBy::City => RollupKey {
                city: Some(sub.map_or_else(String::new, |s| table.str_value("city", s).to_owned())),
                ..RollupKey::default()
            },
        })
    };
    let mut rows: BTreeMap<(String, RollupKey), Acc> = BTreeMap::new();
    let mut control: std::collections::HashSet<(i64, String)> = std::collections::HashSet::new();

    // Targeted, from the planned groups.
    let mut st = conn.prepare(
        "SELECT g.bulk_id, b.task_id, b.planned_at, g.name, g.is_control, g.members
         FROM bulk_groups g JOIN bulk_sends b ON b.id = g.bulk_id WHERE b.planned_at IS NOT NULL",
    )?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let (bulk, task, at): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let (name, is_control): (String, bool) = (r.get(3)?, r.get(4)?);
        let members = crate::store::blob_to_bitmap(&r.get::<_, Vec<u8>>(5)?, "bulk_groups", bulk)?;
        if is_control {
            control.insert((bulk, name));
        }
        let p = period_of(at);
        let mut add = |key: RollupKey, n: u64| {
            let acc = rows.entry((p.clone(), key)).or_default();
            acc.funnel.targeted += n;
            if is_control {
                acc.control.0 += n;
            } else {
                acc.variant.0 += n;
            }
        };
        if by == RollupBy::City {
            let mut per_city: BTreeMap<RollupKey, u64> = BTreeMap::new();
            for id in &members {
                let Some(k) = key_of(task, Some(id)) else {
                    break;
                };
                *per_city.entry(k).or_default() += 1;
            }
            for (k, n) in per_city {
                add(k, n);
            }
        } else if let Some(k) = key_of(task, None) {
            add(k, members.len());
        }
    }

    // Sent / delivered / failed and distinct contacts.
    let mut st = conn.prepare("SELECT task_id, sub_id, at, state FROM contacts")?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let (task, sub, at, state): (i64, i64, i64, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let sub = u32::try_from(sub).ok();
        let Some(k) = key_of(task, sub) else {
            continue;
        };
        let acc = rows.entry((period_of(at), k)).or_default();
        acc.funnel.sent += 1;
        match state.as_str() {
            "delivered" => acc.funnel.delivered += 1,
            "undeliverable" | "expired" | "rejected" | "failed" => acc.funnel.failed += 1,
            _ => {}
        }
        if let Some(s) = sub {
            acc.contacts.insert(s);
        }
    }

    // Conversions.
    let mut st = conn.prepare("SELECT task_id, bulk_id, grp, sub_id, at FROM conversions")?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let (task, bulk, grp, sub, at): (i64, i64, String, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        let Ok(sub) = u32::try_from(sub) else {
            continue;
        };
        let Some(k) = key_of(task, Some(sub)) else {
            continue;
        };
        let acc = rows.entry((period_of(at), k)).or_default();
        acc.conversions += 1;
        acc.converted.insert(sub);
        if control.contains(&(bulk, grp)) {
            acc.control.1.insert(sub);
        } else {
            acc.variant.1.insert(sub);
        }
    }

    // Replies credited to a task.
    let mut st =
        conn.prepare("SELECT task_id, msisdn, at FROM replies WHERE task_id IS NOT NULL")?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let (task, msisdn, at): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Some(k) = key_of(task, table.id_of(msisdn as u64)) else {
            continue;
        };
        rows.entry((period_of(at), k)).or_default().funnel.replied += 1;
    }

    let names = |sql: &str| -> Result<BTreeMap<i64, String>> {
        let mut st = conn.prepare(sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    };
    let campaigns = names("SELECT id, name FROM campaigns")?;
    let activities = names("SELECT id, name FROM activities")?;
    Ok(rows
        .into_iter()
        .map(|((period, key), acc)| {
            let mut funnel = acc.funnel;
            funnel.converted = acc.converted.len() as u64;
            RollupRow {
                campaign_name: key.campaign.and_then(|c| campaigns.get(&c).cloned()),
                activity_name: key.activity.and_then(|a| activities.get(&a).cloned()),
                period,
                key,
                funnel,
                contacts: acc.contacts.len() as u64,
                conversions: acc.conversions,
                uplift: two_proportion(
                    acc.variant.1.len() as u64,
                    acc.variant.0,
                    acc.control.1.len() as u64,
                    acc.control.0,
                ),
            }
        })
        .collect())
}

/// Roll-up rows as CSV: key columns, funnel, contacts, conversions, uplift (empty when
/// there is none).
///
/// # Errors
/// I/O errors.
pub fn write_rollup_csv<W: Write>(rows: &[RollupRow], out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "period",
        "campaign",
        "campaign_name",
        "activity",
        "activity_name",
        "city",
        "org",
        "targeted",
        "sent",
        "delivered",
        "failed",
        "replied",
        "converted",
        "contacts",
        "conversions",
        "uplift_variant_rate",
        "uplift_control_rate",
        "uplift_difference",
        "uplift_p_value",
    ])
    .map_err(CampaignError::from)?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in rows {
        let f = &r.funnel;
        let u = r.uplift.as_ref();
        w.write_record([
            r.period.clone(),
            opt(r.key.campaign.map(|c| c.to_string())),
            opt(r.campaign_name.clone()),
            opt(r.key.activity.map(|a| a.to_string())),
            opt(r.activity_name.clone()),
            opt(r.key.city.clone()),
            opt(r.key.org.map(|o| o.to_string())),
            f.targeted.to_string(),
            f.sent.to_string(),
            f.delivered.to_string(),
            f.failed.to_string(),
            f.replied.to_string(),
            f.converted.to_string(),
            r.contacts.to_string(),
            r.conversions.to_string(),
            opt(u.map(|u| u.variant_rate.to_string())),
            opt(u.map(|u| u.control_rate.to_string())),
            opt(u.map(|u| u.difference.to_string())),
            opt(u.map(|u| u.p_value.to_string())),
        ])
        .map_err(CampaignError::from)?;
    }
    w.flush()?;
    Ok(())
}

/// Contacts of `task` the gateway accepted (they carry its message id) that have no final
/// receipt yet: what an emergency stop can still cancel (the stop confirmation's count).
///
/// # Errors
/// SQLite failure.
pub fn unfinished_contacts(conn: &Connection, task: i64) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM contacts WHERE task_id = ?1 AND gateway_id IS NOT NULL
         AND state NOT IN ('delivered', 'undeliverable', 'expired', 'rejected', 'failed',
                           'cancelled')",
        [task],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}
