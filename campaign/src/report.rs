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
    let tz = time_zone(tz)?;
    let mut rows: BTreeMap<(String, i64, String), DailyRow> = BTreeMap::new();
    let mut st = conn.prepare(
        "SELECT at / 3600, task_id, grp, COUNT(*), SUM(state = 'delivered'),
                SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed'))
         FROM contacts GROUP BY at / 3600, task_id, grp",
    )?;
    let mut q = st.query([])?;
    while let Some(r) = q.next()? {
        let row = daily_row(&mut rows, r, &tz)?;
        row.sent += r.get::<_, i64>(3)? as u64;
        row.delivered += r.get::<_, i64>(4)? as u64;
        row.failed += r.get::<_, i64>(5)? as u64;
    }
    let mut st = conn.prepare("SELECT at / 3600, task_id, grp, COUNT(*) FROM conversions GROUP BY at / 3600, task_id, grp")?;
    let mut q = st.query([])?;
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
    let tz = time_zone(tz)?;
    let mut st = conn.prepare(
        "SELECT channel, at / 3600, COUNT(*), SUM(state = 'delivered'),
                SUM(state IN ('undeliverable', 'expired', 'rejected', 'failed'))
         FROM contacts WHERE at >= ?1 GROUP BY channel, at / 3600 ORDER BY channel, at / 3600",
    )?;
    let rows = st.query_map(params![since.as_second()], |r| {
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
